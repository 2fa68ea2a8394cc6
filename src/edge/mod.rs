//! Edge protection: what casfront refuses before a request is routed.
//! Submodules: [`gate`] (connection caps), [`logins`] (the failed-login
//! throttle), [`proxy_header`] (the PROXY protocol), [`rate`] (request
//! rate limits). Here: the client address
//! limits are counted by, and the request-target checks (`Host` against
//! the absolute URI, the `listen.hosts` allow-list).

pub mod gate;
pub mod logins;
pub mod proxy_header;
pub mod rate;

use std::net::{IpAddr, Ipv6Addr};

use http::{header, HeaderMap, Uri, Version};

use crate::config::Listen;

/// The address a client is counted by: IPv4 (an IPv4-mapped IPv6 address
/// too) as is, IPv6 by its /64, as one subscriber usually has a /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// The client's address: the peer's, or when the peer is a trusted proxy
/// the rightmost `X-Forwarded-For` entry that is not itself a trusted proxy
/// (entries to its left are the client's own claims). Entries are read one
/// by one (`ip`, `ip:port` or `[ipv6]:port`); the walk stops at one that is
/// none of these, keeping the last address found.
pub fn client_addr(peer: IpAddr, trusted: bool, headers: &HeaderMap, listen: &Listen) -> IpAddr {
    if !trusted {
        return peer;
    }
    let mut found = peer;
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        for entry in value.as_bytes().rsplit(|&b| b == b',') {
            let Some(ip) = forwarded_ip(entry) else {
                return found;
            };
            found = ip;
            if !listen.trusts(ip) {
                return found;
            }
        }
    }
    found
}

/// One `X-Forwarded-For` entry's address.
fn forwarded_ip(entry: &[u8]) -> Option<IpAddr> {
    let entry = std::str::from_utf8(entry).ok()?.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

/// Why a request's target is refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TargetError {
    /// HTTP/1.1 without `Host`, or a `Host` that is not an authority: 400.
    NoHost,
    /// The absolute URI (or HTTP/2 `:authority`) and `Host` differ: 400.
    HostMismatch,
    /// Not a name in `listen.hosts`: 421.
    NotServed,
    /// The authority carries user information (`user:pass@host`): 400.
    /// The host checked would not be the host a node reads.
    UserInfo,
}

/// Checks the name a request is for: its absolute URI's authority (or
/// HTTP/2 `:authority`) and its `Host` must agree, HTTP/1.1 needs one of
/// them, and with an allow-list the name must be on it. The name asked
/// for, without its port (`None`: neither, allowed for HTTP/1.0).
pub fn check_target<'a>(
    version: Version,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    hosts: &[String],
) -> Result<Option<&'a str>, TargetError> {
    let mut values = headers.get_all(header::HOST).iter();
    let host = match (values.next(), values.next()) {
        (Some(v), None) => Some(split_host(v.as_bytes()).ok_or(TargetError::NoHost)?),
        (None, _) => None,
        (Some(_), Some(_)) => return Err(TargetError::NoHost),
    };
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(TargetError::UserInfo);
    }
    let authority = uri.authority().map(|a| (a.host(), a.port_u16()));
    let name = match (authority, host) {
        (Some(a), Some(h)) if !same_authority(a, h, uri) => return Err(TargetError::HostMismatch),
        (Some((name, _)), _) | (None, Some((name, _))) => name,
        (None, None) if version == Version::HTTP_11 => return Err(TargetError::NoHost),
        (None, None) if hosts.is_empty() => return Ok(None),
        (None, None) => return Err(TargetError::NotServed),
    };
    if hosts.is_empty() || hosts.iter().any(|h| host_matches(h, name)) {
        Ok(Some(name))
    } else {
        Err(TargetError::NotServed)
    }
}

/// A `Host` value as host and port, without allocating: `name`,
/// `name:port`, `[v6]` or `[v6]:port`; `None` if it is not one.
fn split_host(value: &[u8]) -> Option<(&str, Option<u16>)> {
    let s = std::str::from_utf8(value).ok()?;
    let (host, port) = match s.strip_prefix('[') {
        Some(rest) => {
            let (v6, after) = rest.split_once(']')?;
            v6.parse::<Ipv6Addr>().ok()?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return None,
            };
            (&s[..v6.len() + 2], port)
        }
        None => match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        },
    };
    let name_ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
    let bracketed = host.starts_with('[');
    if host.is_empty() || (!bracketed && !host.bytes().all(name_ok)) {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    Some((host, port))
}

/// Host names equal (case-insensitive), ports equal once the scheme's
/// default is filled in.
fn same_authority(a: (&str, Option<u16>), b: (&str, Option<u16>), uri: &Uri) -> bool {
    let default = if uri.scheme_str() == Some("http") {
        80
    } else {
        443
    };
    a.0.eq_ignore_ascii_case(b.0) && a.1.unwrap_or(default) == b.1.unwrap_or(default)
}

/// `pattern` is a lowercase name or `*.parent` (one label).
pub fn host_matches(pattern: &str, name: &str) -> bool {
    let name = name.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(parent) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(parent)),
        None => name.eq_ignore_ascii_case(pattern),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn keys_group_ipv6_by_64() {
        let k = |s: &str| client_key(s.parse().unwrap()).to_string();
        assert_eq!(k("192.0.2.1"), "192.0.2.1");
        assert_eq!(k("::ffff:192.0.2.1"), "192.0.2.1");
        assert_eq!(k("2001:db8:a:b:1:2:3:4"), "2001:db8:a:b::");
    }

    #[test]
    fn client_behind_trusted_proxies() {
        let listen = Listen {
            https: "0.0.0.0:443".parse().unwrap(),
            http: None,
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
            hosts: vec![],
            proxy_protocol: vec![],
        };
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.4"),
            ("x-forwarded-for", "10.1.1.1"),
        ]);
        // The client's own claim (6.6.6.6) is skipped: the first proxy
        // saw 198.51.100.4.
        assert_eq!(
            client_addr(peer, true, &h, &listen),
            "198.51.100.4".parse::<IpAddr>().unwrap()
        );
        // Untrusted peers are counted by their own address.
        assert_eq!(client_addr(peer, false, &h, &listen), peer);
        let junk = headers(&[("x-forwarded-for", "nonsense, 10.1.1.1")]);
        assert_eq!(
            client_addr(peer, true, &junk, &listen),
            "10.1.1.1".parse::<IpAddr>().unwrap()
        );
        // A bad entry on the client's side of the line does not hide the
        // address the proxy saw; ports are accepted.
        let mut mixed = HeaderMap::new();
        mixed.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff, 198.51.100.9:4711").unwrap(),
        );
        assert_eq!(
            client_addr(peer, true, &mixed, &listen),
            "198.51.100.9".parse::<IpAddr>().unwrap()
        );
        let v6 = headers(&[("x-forwarded-for", "[2001:db8::7]:443")]);
        assert_eq!(
            client_addr(peer, true, &v6, &listen),
            "2001:db8::7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn targets() {
        let hosts = ["cas.example.edu".to_owned(), "*.example.org".to_owned()];
        let check = |version, uri: &str, h: &[(&str, &str)], hosts: &[String]| {
            check_target(version, &uri.parse().unwrap(), &headers(h), hosts).map(|_| ())
        };
        let name = |uri: &str, h: &[(&str, &str)]| {
            let (uri, h) = (uri.parse().unwrap(), headers(h));
            check_target(Version::HTTP_11, &uri, &h, &[]).map(|n| n.map(str::to_owned))
        };
        assert_eq!(
            name("/", &[("host", "a.test:8443")]),
            Ok(Some("a.test".into()))
        );
        assert_eq!(name("https://b.test/x", &[]), Ok(Some("b.test".into())));
        assert_eq!(
            name("https://u:p@b.test/x", &[]),
            Err(TargetError::UserInfo)
        );
        use TargetError::*;
        let v11 = Version::HTTP_11;
        assert_eq!(
            check(
                v11,
                "/cas/login",
                &[("host", "CAS.example.edu:443")],
                &hosts
            ),
            Ok(())
        );
        assert_eq!(
            check(v11, "/cas/login", &[("host", "a.example.org")], &hosts),
            Ok(())
        );
        assert_eq!(
            check(v11, "/cas/login", &[("host", "example.org")], &hosts),
            Err(NotServed)
        );
        assert_eq!(
            check(v11, "/cas/login", &[("host", "evil.test")], &hosts),
            Err(NotServed)
        );
        assert_eq!(
            check(v11, "/cas/login", &[("host", "evil.test")], &[]),
            Ok(())
        );
        assert_eq!(check(v11, "/cas/login", &[], &[]), Err(NoHost));
        assert_eq!(
            check(v11, "/cas/login", &[("host", "a b")], &[]),
            Err(NoHost)
        );
        assert_eq!(
            check(v11, "/", &[("host", "a.test"), ("host", "b.test")], &[]),
            Err(NoHost)
        );
        assert_eq!(check(Version::HTTP_10, "/cas/login", &[], &[]), Ok(()));
        assert_eq!(
            check(Version::HTTP_10, "/cas/login", &[], &hosts),
            Err(NotServed)
        );
        // Absolute form: the URI names the host, Host must agree.
        assert_eq!(
            check(
                v11,
                "https://evil.test/cas/login",
                &[("host", "cas.example.edu")],
                &[]
            ),
            Err(HostMismatch)
        );
        assert_eq!(
            check(
                v11,
                "https://cas.example.edu/cas/login",
                &[("host", "CAS.example.edu:443")],
                &hosts
            ),
            Ok(())
        );
        assert_eq!(
            check(Version::HTTP_2, "https://evil.test/cas/login", &[], &hosts),
            Err(NotServed)
        );
    }

    #[test]
    fn host_values() {
        assert_eq!(
            split_host(b"cas.example.edu"),
            Some(("cas.example.edu", None))
        );
        assert_eq!(
            split_host(b"cas.example.edu:8443"),
            Some(("cas.example.edu", Some(8443)))
        );
        assert_eq!(
            split_host(b"[2001:db8::1]:443"),
            Some(("[2001:db8::1]", Some(443)))
        );
        assert_eq!(split_host(b"[2001:db8::1]"), Some(("[2001:db8::1]", None)));
        for bad in [
            &b""[..],
            b"a b",
            b"a:",
            b"a:x",
            b"a:99999",
            b"[::1",
            b"[::1]x",
            b"u@h",
            b"h/p",
            b":80",
        ] {
            assert_eq!(split_host(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
