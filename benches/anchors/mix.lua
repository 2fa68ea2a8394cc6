-- wrk script: the CAS request mix (docs/benchmarks.md) against three nodes cas1..cas3,
-- in turn: a service ticket validation (CAS 3 protocol), a proxy ticket
-- request with a PGT, a login with a CASTGC cookie among others, and a
-- login whose JSESSIONID carries a jvmRoute. Ticket lengths are CAS 6's.
local random = "tG0k5-yQ8pZ3mRw2LfXv9b7NcJhAeD4sU1"
local service = "https%3A%2F%2Fapp.example.edu%2F"
local requests = {}
-- Built in init, once wrk has set its Host header (HTTP/1.1 needs one:
-- casfront answers 400 without it, as RFC 9112 §3.2 asks).
init = function(args)
  for i = 1, 3 do
    local node = "cas" .. i
    table.insert(requests, wrk.format("GET",
      "/cas/p3/serviceValidate?service=" .. service .. "&ticket=ST-12345-" .. random .. "-" .. node))
    table.insert(requests, wrk.format("GET",
      "/cas/proxy?targetService=" .. service .. "&pgt=PGT-77-" .. random .. random .. "-" .. node))
    table.insert(requests, wrk.format("GET", "/cas/login?service=" .. service, {
      ["Cookie"] = "_ga=GA1.2.1234567890.1700000000; lang=en; CASTGC=TGT-4-"
        .. random .. random .. "-" .. node .. "; _gid=GA1.2.987654321.1700000000" }))
    table.insert(requests, wrk.format("GET", "/cas/login?service=" .. service, {
      ["Cookie"] = "lang=en; JSESSIONID=8F3A2B1C9D0E7F6A5B4C3D2E1F0A9B8C." .. node }))
  end
end
local n = 0
request = function()
  n = n % #requests + 1
  return requests[n]
end
