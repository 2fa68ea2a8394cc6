//! Byte-level scanners for the places a request carries a ticket: query
//! parameters, cookies, path parameters; percent-decoding into a stack
//! buffer; and the shape of a CAS ticket id. Nothing here allocates or
//! panics, whatever the bytes.

use super::Headers;

/// The longest decoded value the core will route by suffix. CAS ticket ids
/// are about 30 to 120 bytes; anything longer is not a ticket id.
pub const MAX_TICKET_LEN: usize = 512;

/// A stack buffer for a decoded value.
pub type DecodeBuf = [u8; MAX_TICKET_LEN];

/// The `name=value` pairs of a query string (or a form body), in order;
/// a name with no `=` has an empty value. Values stay raw (encoded).
fn pairs(query: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = Some(query);
    std::iter::from_fn(move || {
        let r = rest?;
        let end = memchr::memchr(b'&', r).unwrap_or(r.len());
        let pair = &r[..end];
        rest = r.get(end + 1..);
        Some(match find(b'=', pair) {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &pair[pair.len()..]),
        })
    })
}

/// Whether the pair name `k` is `name` (after percent-decoding `k`, as
/// servlet containers do; `escaped`: `k` has `%` or `+`).
fn key_is(k: &[u8], name: &[u8], escaped: bool) -> bool {
    k.len() == name.len() && starts_with(k, name) || escaped && decoded_eq(k, name, true)
}

/// The first `name=value` pair of a query string whose name is exactly
/// `name` (after percent-decoding the name, as servlet containers do).
/// Returns the raw, still-encoded value; a name with no `=` has an empty value.
pub fn query_param<'q>(query: &'q [u8], name: &[u8]) -> Option<&'q [u8]> {
    pairs(query).find_map(|(k, v)| key_is(k, name, has_escape(k)).then_some(v))
}

/// The first value of each of `names` in one pass over a query string
/// (`found[i]` for `names[i]`; names compared as [`query_param`] does).
pub fn query_params<'q>(query: &'q [u8], names: &[&[u8]], found: &mut [Option<&'q [u8]>]) {
    for (k, v) in pairs(query) {
        let escaped = has_escape(k);
        for (name, slot) in names.iter().zip(found.iter_mut()) {
            if slot.is_none() && key_is(k, name, escaped) {
                *slot = Some(v);
            }
        }
    }
}

/// The first `needle` in `hay`: a plain loop for short haystacks (query
/// keys, pairs, relative paths), where `memchr`'s set-up costs more than
/// it saves, `memchr` otherwise.
#[inline]
pub fn find(needle: u8, hay: &[u8]) -> Option<usize> {
    if hay.len() < 32 {
        hay.iter().position(|&b| b == needle)
    } else {
        memchr::memchr(needle, hay)
    }
}

/// Whether `a` starts with `b`, as a byte loop: for the short names
/// compared here it is cheaper than the `memcmp` call of `<[u8]>::starts_with`.
pub fn starts_with(a: &[u8], b: &[u8]) -> bool {
    a.len() >= b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

fn has_escape(k: &[u8]) -> bool {
    k.iter().any(|&b| b == b'%' || b == b'+')
}

/// The first cookie named exactly `name` across all `Cookie` headers, in
/// order (browsers on HTTP/2 send several). The value is trimmed and
/// unquoted but not decoded.
pub fn cookie<'h, H: Headers + ?Sized>(headers: &'h H, name: &[u8]) -> Option<&'h [u8]> {
    let mut found = [None];
    cookies(headers, &[name], &mut found);
    found[0]
}

/// One pass over all `Cookie` headers that records, for each of `names`,
/// the first cookie of that name (`found[i]` for `names[i]`; `found` must be
/// at least as long as `names`).
pub fn cookies<'h, H, N>(headers: &'h H, names: &[N], found: &mut [Option<&'h [u8]>])
where
    H: Headers + ?Sized,
    N: AsRef<[u8]>,
{
    for h in headers.values("cookie") {
        if cookies_in(h, names, found) {
            break;
        }
    }
}

/// [`cookies`] over one header value; true when every name was found. Each
/// pair is compared where it starts (first byte, then the rest), then the
/// scan jumps to the next `;`.
fn cookies_in<'h, N: AsRef<[u8]>>(
    header: &'h [u8],
    names: &[N],
    found: &mut [Option<&'h [u8]>],
) -> bool {
    let mut pos = 0;
    while let Some(&first) = header.get(pos) {
        if first == b' ' || first == b'\t' {
            pos += 1;
            continue;
        }
        let rest = &header[pos..];
        let end = memchr::memchr(b';', rest).unwrap_or(rest.len());
        for (name, slot) in names.iter().zip(found.iter_mut()) {
            let name = name.as_ref();
            if name.first() == Some(&first) && slot.is_none() && starts_with(&rest[..end], name) {
                if let Some(v) = rest[name.len()..end].trim_ascii_start().strip_prefix(b"=") {
                    *slot = Some(unquote(trim(v)));
                    break;
                }
            }
        }
        pos += end + 1;
    }
    found.iter().take(names.len()).all(Option::is_some)
}

/// The value of the path parameter `;name=value` in any segment of `path`
/// (`name` is matched exactly; `jsessionid` for Tomcat).
pub fn path_param<'p>(path: &'p [u8], name: &[u8]) -> Option<&'p [u8]> {
    let mut rest = path;
    while let Some(semi) = memchr::memchr(b';', rest) {
        rest = &rest[semi + 1..];
        let end = rest
            .iter()
            .position(|&b| b == b';' || b == b'/')
            .unwrap_or(rest.len());
        let param = &rest[..end];
        if let Some(v) = param.strip_prefix(name).and_then(|r| r.strip_prefix(b"=")) {
            return Some(v);
        }
    }
    None
}

/// Calls `f` with `raw` percent-decoded (and `+` as space when `plus` is
/// set, for query strings): `raw` itself when there is nothing to decode,
/// else a copy in a stack buffer made only then; `None` when the decoded
/// value is longer than [`MAX_TICKET_LEN`]. Invalid escapes are kept.
pub fn with_decoded<R>(raw: &[u8], plus: bool, f: impl FnOnce(Option<&[u8]>) -> R) -> R {
    let needs = if plus {
        memchr::memchr2(b'%', b'+', raw).is_some()
    } else {
        memchr::memchr(b'%', raw).is_some()
    };
    if !needs {
        return f(Some(raw));
    }
    let mut buf: DecodeBuf = [0; MAX_TICKET_LEN];
    let n = decode_into(raw, plus, &mut buf);
    f(n.map(|n| &buf[..n]))
}

/// Percent-decodes `raw` into `buf`, always copying; the decoded length, or
/// `None` when it does not fit.
fn decode_into(raw: &[u8], plus: bool, buf: &mut DecodeBuf) -> Option<usize> {
    let mut n = 0;
    let mut i = 0;
    while i < raw.len() {
        let (byte, used) = decode_at(raw, i, plus);
        *buf.get_mut(n)? = byte;
        n += 1;
        i += used;
    }
    Some(n)
}

/// The byte at `raw[i]` decoded, and how many input bytes it used.
fn decode_at(raw: &[u8], i: usize, plus: bool) -> (u8, usize) {
    match raw[i] {
        b'%' => match (raw.get(i + 1).and_then(hex), raw.get(i + 2).and_then(hex)) {
            (Some(h), Some(l)) => (h << 4 | l, 3),
            _ => (b'%', 1),
        },
        b'+' if plus => (b' ', 1),
        b => (b, 1),
    }
}

fn hex(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether `raw`, percent-decoded, equals `want` (no buffer needed).
pub fn decoded_eq(raw: &[u8], want: &[u8], plus: bool) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < raw.len() {
        let (byte, used) = decode_at(raw, i, plus);
        if want.get(j) != Some(&byte) {
            return false;
        }
        i += used;
        j += 1;
    }
    j == want.len()
}

/// If `id` looks like a CAS ticket id (`[A-Z]+-` at the start), the index
/// of that first `-`. JWS/JWE cookies and opaque tokens never do.
pub fn ticket_prefix_end(id: &[u8]) -> Option<usize> {
    let dash = id.iter().position(|&b| !b.is_ascii_uppercase())?;
    (dash > 0 && id[dash] == b'-').then_some(dash)
}

/// Optional whitespace around cookie pairs (RFC 6265 §5.4 is lenient).
pub fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

/// A cookie value without its surrounding double quotes, if any.
pub fn unquote(v: &[u8]) -> &[u8] {
    match v {
        [b'"', inner @ .., b'"'] => inner,
        _ => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_first_exact_name_wins() {
        let q = b"service=x&xticket=ST-1-a-bad&ticket=ST-2-b-good&ticket=ST-3-c-late";
        assert_eq!(query_param(q, b"ticket"), Some(&b"ST-2-b-good"[..]));
        assert_eq!(query_param(b"ticketx=1", b"ticket"), None);
        assert_eq!(query_param(b"ticket", b"ticket"), Some(&b""[..]));
        assert_eq!(query_param(b"t%69cket=v", b"ticket"), Some(&b"v"[..]));
        assert_eq!(query_param(b"", b"ticket"), None);
        assert_eq!(query_param(b"&&=&ticket=a=b", b"ticket"), Some(&b"a=b"[..]));
    }

    #[test]
    fn cookies_across_headers() {
        let h: &[(&str, &str)] = &[
            ("Cookie", "a=1; XCASTGC=TGT-9-x-bad"),
            ("cookie", " CASTGC = \"TGT-1-y-good\" ;CASTGC=TGT-2-z-late"),
        ];
        assert_eq!(cookie(h, b"CASTGC"), Some(&b"TGT-1-y-good"[..]));
        assert_eq!(cookie(h, b"a"), Some(&b"1"[..]));
        assert_eq!(cookie(h, b"castgc"), None);
        let odd: &[(&str, &str)] = &[("Cookie", "noequals; =v; k=")];
        assert_eq!(cookie(odd, b"k"), Some(&b""[..]));
        let mut found = [None; 3];
        cookies(h, &["CASTGC", "a", "zz"], &mut found);
        assert_eq!(found, [Some(&b"TGT-1-y-good"[..]), Some(&b"1"[..]), None]);
    }

    #[test]
    fn path_params() {
        let p = b"/cas/login;jsessionid=ABC.cas1;other=1";
        assert_eq!(path_param(p, b"jsessionid"), Some(&b"ABC.cas1"[..]));
        assert_eq!(
            path_param(b"/cas;jsessionid=X.n2/login", b"jsessionid"),
            Some(&b"X.n2"[..])
        );
        assert_eq!(path_param(b"/cas/login;xjsessionid=1", b"jsessionid"), None);
        assert_eq!(path_param(b"/cas/login;jsessionid", b"jsessionid"), None);
        assert_eq!(path_param(b";", b"jsessionid"), None);
    }

    #[test]
    fn decoding() {
        let dec = |raw: &[u8], plus| with_decoded(raw, plus, |v| v.map(<[u8]>::to_vec));
        assert_eq!(
            dec(b"ST-1%2Dab-cas%2e01", false).as_deref(),
            Some(&b"ST-1-ab-cas.01"[..])
        );
        assert_eq!(dec(b"a+b%zz%4", true).as_deref(), Some(&b"a b%zz%4"[..]));
        assert_eq!(dec(b"a+b", false).as_deref(), Some(&b"a+b"[..]));
        assert_eq!(dec(&[b'%'; MAX_TICKET_LEN + 1], false), None);
        let fits = b"%41".repeat(MAX_TICKET_LEN);
        assert_eq!(dec(&fits, false).map(|v| v.len()), Some(MAX_TICKET_LEN));
        // Long values with nothing to decode are passed through whole.
        assert_eq!(dec(&[b'a'; 2000], true).map(|v| v.len()), Some(2000));
    }

    #[test]
    fn ticket_shape() {
        assert_eq!(ticket_prefix_end(b"ST-1-a"), Some(2));
        assert_eq!(ticket_prefix_end(b"TGT-"), Some(3));
        assert_eq!(ticket_prefix_end(b"-1-a"), None);
        assert_eq!(ticket_prefix_end(b"St-1"), None);
        assert_eq!(ticket_prefix_end(b"eyJhbGciOiJIUzUxMiJ9.e30.sig"), None);
        assert_eq!(ticket_prefix_end(b"ST"), None);
        assert_eq!(ticket_prefix_end(b""), None);
    }
}
