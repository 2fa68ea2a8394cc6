//! What casfront changes in a request on its way to a node and in the
//! response on its way back: hop-by-hop headers removed, `X-Forwarded-*`
//! set (client-sent ones, and every header of the forwarding family in any
//! spelling, dropped, unless the peer is a trusted proxy: then its
//! `X-Forwarded-For` is appended to and its other forwarding headers
//! kept), HTTP/2 turned into HTTP/1.1 (`Host` from `:authority`, `cookie`
//! headers joined with `"; "`, RFC 9113 §8.2.3), origin-form URI with
//! exactly one `Host`, the one checked; trailers declared only for names
//! no client may set.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};

use crate::client::ClientConn;
use crate::config::HeaderRules;

/// Headers that tell a node who the client is or what it asked for, as
/// front ends and frameworks read them: a client may set none of them
/// (casfront sets its own `X-Forwarded-*`). Lowercase, every `-` as `_`:
/// names are compared with `-` and `_` folded, as servers that map headers
/// to CGI-style variables do. Any `x_forwarded_*` is one too.
const FORWARDING: [&str; 13] = [
    "forwarded",
    "x_real_ip",
    "true_client_ip",
    "x_client_ip",
    "client_ip",
    "cf_connecting_ip",
    "x_cluster_client_ip",
    "fastly_client_ip",
    "x_original_url",
    "x_rewrite_url",
    "x_original_forwarded_for",
    "x_originating_ip",
    "x_remote_addr",
];

/// Whether `name` (lowercase, as `HeaderName`s are) is of the forwarding
/// family.
pub fn is_forwarding(name: &str) -> bool {
    // Most names start with none of the family's first letters.
    if !matches!(name.as_bytes().first(), Some(b'x' | b'f' | b't' | b'c')) {
        return false;
    }
    let folded = |b: u8| if b == b'-' { b'_' } else { b };
    let starts = |prefix: &[u8]| {
        name.len() >= prefix.len() && (name.bytes().zip(prefix)).all(|(a, &b)| folded(a) == b)
    };
    starts(b"x_forwarded_")
        || FORWARDING.iter().any(|f| {
            f.len() == name.len() && (name.bytes().zip(f.bytes())).all(|(a, b)| folded(a) == b)
        })
}

/// Rewrites `req` in place for the node. An HTTP/1.1 origin-form request
/// whose header map has room is rewritten without allocating.
pub fn prepare_request<B>(req: &mut Request<B>, client: &ClientConn) {
    *req.version_mut() = Version::HTTP_11;
    // Absolute-form (HTTP/2 `:scheme`/`:authority`, or a proxy-style
    // request line): keep the path and query, reusing their bytes.
    let mut authority = None;
    if req.uri().scheme().is_some() || req.uri().authority().is_some() {
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        authority = parts.authority.take();
        parts.scheme = None;
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    // The node gets exactly one Host, the one checked: from the absolute
    // URI (HTTP/2 `:authority`, or an HTTP/1.1 proxy-style request line
    // without Host), which `admit` compared with any Host sent.
    if let (false, Some(a)) = (headers.contains_key(header::HOST), authority) {
        if let Ok(v) = HeaderValue::from_str(a.as_str()) {
            headers.insert(header::HOST, v);
        }
    }
    join_cookies(headers);
    if client.trusted {
        forward_trusted(headers, client);
        return;
    }
    remove_forwarding(headers);
    headers.insert(XFF, client.forwarded_for.clone());
    headers.insert(XFP, HeaderValue::from_static("https"));
    if let Some(host) = headers.get(header::HOST).cloned() {
        headers.insert(XFH, host);
    }
    headers.insert(XFPORT, client.forwarded_port.clone());
}

const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
const XFH: HeaderName = HeaderName::from_static("x-forwarded-host");
const XFPORT: HeaderName = HeaderName::from_static("x-forwarded-port");

/// From a trusted proxy: the peer is appended to its `X-Forwarded-For`
/// (several headers joined into one list); the proxy's own
/// `X-Forwarded-Proto/-Host/-Port`, `X-Real-IP` and `Forwarded` describe
/// the original request and are kept, ours set only where it sent none.
fn forward_trusted(headers: &mut HeaderMap, client: &ClientConn) {
    let mut list: Vec<&[u8]> = headers
        .get_all(&XFF)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    list.push(client.forwarded_for.as_bytes());
    let xff = HeaderValue::from_bytes(&list.join(&b", "[..]))
        .unwrap_or_else(|_| client.forwarded_for.clone());
    headers.insert(XFF, xff);
    if !headers.contains_key(&XFP) {
        headers.insert(XFP, HeaderValue::from_static("https"));
    }
    if let (false, Some(host)) = (headers.contains_key(&XFH), headers.get(header::HOST)) {
        let host = host.clone();
        headers.insert(XFH, host);
    }
    if !headers.contains_key(&XFPORT) {
        headers.insert(XFPORT, client.forwarded_port.clone());
    }
}

/// A pool's `[pool.headers]` rules on a request to one of its nodes,
/// applied after casfront's own changes (so they may also remove an
/// `X-Forwarded-*` header).
pub fn request_rules(rules: &HeaderRules, headers: &mut HeaderMap) {
    apply(headers, &rules.request_remove, &rules.request_set);
}

/// The same on a node's response.
pub fn response_rules(rules: &HeaderRules, headers: &mut HeaderMap) {
    apply(headers, &rules.response_remove, &rules.response_set);
}

fn apply(headers: &mut HeaderMap, remove: &[HeaderName], set: &[(HeaderName, HeaderValue)]) {
    for name in remove {
        headers.remove(name);
    }
    for (name, value) in set {
        headers.insert(name.clone(), value.clone());
    }
}

/// Adds `Secure` to every `Set-Cookie` without it: the client reached
/// casfront over https, whatever the node believes. Values are changed in
/// place; one that has it already is left alone (no allocation).
pub fn secure_cookies(headers: &mut HeaderMap) {
    let header::Entry::Occupied(mut cookies) = headers.entry(header::SET_COOKIE) else {
        return;
    };
    for v in cookies.iter_mut() {
        let secure = crate::routing::set_cookie::set_cookie_attrs(v.as_bytes())
            .any(|(k, _)| k.eq_ignore_ascii_case(b"secure"));
        if !secure {
            let mut s = Vec::with_capacity(v.len() + 8);
            s.extend_from_slice(v.as_bytes());
            s.extend_from_slice(b"; Secure");
            // Checked again, but not copied again.
            if let Ok(secured) = HeaderValue::from_maybe_shared(bytes::Bytes::from(s)) {
                *v = secured;
            }
        }
    }
}

/// Removes hop-by-hop headers from a response.
pub fn prepare_response<B>(resp: &mut Response<B>) {
    strip_hop_by_hop(resp.headers_mut());
}

/// Connection and the headers it names, Keep-Alive, TE, Upgrade,
/// Transfer-Encoding (hyper frames the body itself) and every `Proxy-*`.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names finds what is there (usually nothing): a
    // removal by name hashes it even when it is absent.
    let mut proxy = false;
    let found = present(headers, &HOP_BY_HOP, |k| proxy |= k.starts_with("proxy-"));
    if found[0] {
        // The values are shared buffers: copying one allocates nothing (nor
        // does collecting none), and removing by `&str` looks the name up
        // without making a `HeaderName`.
        if let Some(first) = headers.get(header::CONNECTION).cloned() {
            let more: Vec<HeaderValue> = (headers.get_all(header::CONNECTION).iter())
                .skip(1)
                .cloned()
                .collect();
            for v in std::iter::once(&first).chain(&more) {
                remove_named(headers, v);
            }
        }
    }
    for (name, _) in HOP_BY_HOP.iter().zip(found).filter(|(_, f)| *f) {
        headers.remove(*name);
    }
    if proxy {
        let proxy: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str().starts_with("proxy-"))
            .cloned()
            .collect();
        for name in proxy {
            headers.remove(name);
        }
    }
}

/// Connection first: the names it lists are removed before it is.
const HOP_BY_HOP: [&str; 5] = [
    "connection",
    "te",
    "upgrade",
    "transfer-encoding",
    "keep-alive",
];

/// Which of `names` the map holds, in one pass over its (lowercase) names;
/// `other` sees each name that is none of them.
fn present<const N: usize>(
    headers: &HeaderMap,
    names: &[&str; N],
    mut other: impl FnMut(&str),
) -> [bool; N] {
    let mut found = [false; N];
    for k in headers.keys() {
        let k = k.as_str();
        match names.iter().position(|n| *n == k) {
            Some(i) => found[i] = true,
            None => other(k),
        }
    }
    found
}

/// Several `cookie` headers (HTTP/2) become one, joined with `"; "`.
fn join_cookies(headers: &mut HeaderMap) {
    if headers.get_all(header::COOKIE).iter().nth(1).is_none() {
        return;
    }
    let joined: Vec<&[u8]> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    if let Ok(v) = HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
        headers.insert(header::COOKIE, v);
    }
}

/// Removes the headers a `Connection` value names, except `Host`: the
/// node gets the Host casfront checked, whatever the client lists.
fn remove_named(headers: &mut HeaderMap, connection: &HeaderValue) {
    let Ok(v) = connection.to_str() else { return };
    for token in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if !token.eq_ignore_ascii_case("host") {
            headers.remove(token);
        }
    }
}

/// Removes every header of the forwarding family ([`is_forwarding`]).
/// The usual ones (what a browser behind a proxy brings) are removed by
/// name, without allocating; only an unusual spelling costs a list.
fn remove_forwarding(headers: &mut HeaderMap) {
    const USUAL: [&str; 6] = [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-real-ip",
        "forwarded",
    ];
    let mut unusual = false;
    let usual = present(headers, &USUAL, |k| unusual |= is_forwarding(k));
    for (name, _) in USUAL.iter().zip(usual).filter(|(_, hit)| *hit) {
        headers.remove(*name);
    }
    if unusual {
        let found: Vec<HeaderName> = (headers.keys())
            .filter(|k| is_forwarding(k.as_str()))
            .cloned()
            .collect();
        for name in found {
            headers.remove(&name);
        }
    }
}

/// Keeps in `Trailer` only the names `allowed` passes, across every
/// `Trailer` header the client sent (one joined header, or none). A node's
/// HTTP/1.1 connection carries only the trailer fields a `Trailer` header
/// declares, so a name left out never reaches the node after the body.
pub fn declared_trailers(headers: &mut HeaderMap, allowed: impl Fn(&str) -> bool) {
    let mut values = headers.get_all(header::TRAILER).iter();
    if values.next().is_none() {
        return;
    }
    let mut kept: Vec<String> = Vec::new();
    for value in headers.get_all(header::TRAILER) {
        let Ok(list) = value.to_str() else { continue };
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let name = name.to_ascii_lowercase();
            if allowed(&name) && !kept.contains(&name) {
                kept.push(name);
            }
        }
    }
    headers.remove(header::TRAILER);
    if let Ok(v) = HeaderValue::from_str(&kept.join(", ")) {
        if !kept.is_empty() {
            headers.insert(header::TRAILER, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cookie_leaves_secure() {
        let mut h = HeaderMap::new();
        for v in [
            "JSESSIONID=A.cas1; Path=/cas; HttpOnly",
            "TGC=x; Path=/cas; secure; HttpOnly; SameSite=None",
            "lang=fr",
        ] {
            h.append(header::SET_COOKIE, HeaderValue::from_static(v));
        }
        secure_cookies(&mut h);
        let set: Vec<&HeaderValue> = h.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(
            set,
            [
                "JSESSIONID=A.cas1; Path=/cas; HttpOnly; Secure",
                "TGC=x; Path=/cas; secure; HttpOnly; SameSite=None",
                "lang=fr; Secure",
            ]
        );
    }

    #[test]
    fn trailers_declare_only_names_no_client_may_set() {
        use crate::client_cert::CertHeaders;
        use crate::config::ClientCertHeaders;
        let certs = CertHeaders::new(&ClientCertHeaders::default());
        let allowed = |n: &str| !certs.strips(n) && !is_forwarding(n);
        let mut h = HeaderMap::new();
        h.append(header::TRAILER, HeaderValue::from_static("x-checksum"));
        h.append(
            header::TRAILER,
            HeaderValue::from_static("Ssl-Client-Cert, ssl_client_verify, X_Forwarded_For, x-sum"),
        );
        declared_trailers(&mut h, allowed);
        let declared: Vec<&HeaderValue> = h.get_all(header::TRAILER).iter().collect();
        assert_eq!(declared, ["x-checksum, x-sum"]);
        h.insert(
            header::TRAILER,
            HeaderValue::from_static("ssl_client_verify"),
        );
        declared_trailers(&mut h, allowed);
        assert!(h.get(header::TRAILER).is_none());
    }

    #[test]
    fn the_forwarding_family_in_any_spelling() {
        for name in [
            "x-forwarded-for",
            "x_forwarded_for",
            "x-forwarded-prefix",
            "x-forwarded-proto",
            "forwarded",
            "x-real-ip",
            "x_real_ip",
            "true-client-ip",
            "x-original-url",
            "x-rewrite-url",
            "x-client-ip",
            "client-ip",
            "cf-connecting-ip",
            "x-cluster-client-ip",
        ] {
            assert!(is_forwarding(name), "{name}");
        }
        for name in [
            "x-forwarded",
            "cookie",
            "content-type",
            "forwarded-x",
            "x-request-id",
        ] {
            assert!(!is_forwarding(name), "{name}");
        }
    }

    fn client() -> ClientConn {
        ClientConn::new("192.0.2.7:50000".parse().unwrap(), 8443, false)
    }

    #[test]
    fn a_trusted_proxy_is_appended_to() {
        let mut req = Request::builder()
            .uri("/cas/login")
            .header("host", "cas.example.edu")
            .header("x-forwarded-for", "198.51.100.1, 10.0.0.1")
            .header("x-forwarded-for", "10.0.0.2")
            .header("x-forwarded-port", "443")
            .header("x-real-ip", "198.51.100.1")
            .body(())
            .unwrap();
        let proxy = ClientConn::new("192.0.2.7:50000".parse().unwrap(), 8443, true);
        prepare_request(&mut req, &proxy);
        let h = req.headers();
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(
            h["x-forwarded-for"],
            "198.51.100.1, 10.0.0.1, 10.0.0.2, 192.0.2.7"
        );
        assert_eq!(h["x-forwarded-port"], "443");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "cas.example.edu");
        assert_eq!(h["x-real-ip"], "198.51.100.1");
    }

    #[test]
    fn forwarding_headers_are_ours() {
        let mut req = Request::builder()
            .uri("https://cas.example.edu/cas/login?service=x")
            .header("host", "cas.example.edu")
            .header("x-forwarded-for", "6.6.6.6")
            .header("X-Real-IP", "6.6.6.6")
            .header("forwarded", "for=6.6.6.6")
            .header("connection", "keep-alive, x-secret")
            .header("x-secret", "1")
            .header("keep-alive", "timeout=5")
            .header("proxy-authorization", "Basic x")
            .header("te", "trailers")
            .header("x-kept", "yes")
            .body(())
            .unwrap();
        prepare_request(&mut req, &client());
        let h = req.headers();
        assert_eq!(req.uri(), "/cas/login?service=x");
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "cas.example.edu");
        assert_eq!(h["x-forwarded-port"], "8443");
        assert_eq!(h["x-kept"], "yes");
        for gone in [
            "x-real-ip",
            "forwarded",
            "connection",
            "x-secret",
            "keep-alive",
            "proxy-authorization",
            "te",
        ] {
            assert!(!h.contains_key(gone), "{gone}");
        }
    }

    #[test]
    fn http2_becomes_http11() {
        let mut req = Request::builder()
            .version(Version::HTTP_2)
            .uri("https://cas.example.edu:8443/cas/login")
            .header("cookie", "a=1")
            .header("cookie", "CASTGC=TGT-1-x-cas1")
            .body(())
            .unwrap();
        prepare_request(&mut req, &client());
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.headers()["host"], "cas.example.edu:8443");
        assert_eq!(req.headers().get_all("cookie").iter().count(), 1);
        assert_eq!(req.headers()["cookie"], "a=1; CASTGC=TGT-1-x-cas1");
    }
}
