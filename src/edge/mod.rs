//! Edge protection: what casfront refuses before a request is routed.
//! Submodules: [`gate`] (connection caps), [`proxy_header`] (the PROXY
//! protocol), [`rate`] (request rate limits). Here: the client address
//! limits are counted by, and the request-target checks (`Host` against
//! the absolute URI, the `listen.hosts` allow-list).

pub mod gate;
pub mod proxy_header;
pub mod rate;

use std::net::{IpAddr, Ipv6Addr};

use http::uri::Authority;
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
/// (entries to its left are the client's own claims).
pub fn client_addr(peer: IpAddr, trusted: bool, headers: &HeaderMap, listen: &Listen) -> IpAddr {
    if !trusted {
        return peer;
    }
    let mut found = peer;
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(list) = value.to_str() else {
            return found;
        };
        for entry in list.rsplit(',') {
            let Ok(ip) = entry.trim().parse::<IpAddr>() else {
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

/// Why a request's target is refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TargetError {
    /// HTTP/1.1 without `Host`, or a `Host` that is not an authority: 400.
    NoHost,
    /// The absolute URI (or HTTP/2 `:authority`) and `Host` differ: 400.
    HostMismatch,
    /// Not a name in `listen.hosts`: 421.
    NotServed,
}

/// Checks the name a request is for: its absolute URI's authority (or
/// HTTP/2 `:authority`) and its `Host` must agree, HTTP/1.1 needs one of
/// them, and with an allow-list the name must be on it.
pub fn check_target(
    version: Version,
    uri: &Uri,
    headers: &HeaderMap,
    hosts: &[String],
) -> Result<(), TargetError> {
    let host = match headers.get(header::HOST) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|h| h.parse::<Authority>().ok())
                .ok_or(TargetError::NoHost)?,
        ),
        None => None,
    };
    if headers.get_all(header::HOST).iter().nth(1).is_some() {
        return Err(TargetError::NoHost);
    }
    let name = match (uri.authority(), &host) {
        (Some(a), Some(h)) if !same_authority(a, h, uri) => return Err(TargetError::HostMismatch),
        (Some(a), _) => a.host(),
        (None, Some(h)) => h.host(),
        (None, None) if version == Version::HTTP_11 => return Err(TargetError::NoHost),
        (None, None) => {
            return if hosts.is_empty() {
                Ok(())
            } else {
                Err(TargetError::NotServed)
            }
        }
    };
    if hosts.is_empty() || hosts.iter().any(|h| host_matches(h, name)) {
        Ok(())
    } else {
        Err(TargetError::NotServed)
    }
}

/// Host names equal (case-insensitive), ports equal once the scheme's
/// default is filled in.
fn same_authority(a: &Authority, b: &Authority, uri: &Uri) -> bool {
    let default = if uri.scheme_str() == Some("http") {
        80
    } else {
        443
    };
    a.host().eq_ignore_ascii_case(b.host())
        && a.port_u16().unwrap_or(default) == b.port_u16().unwrap_or(default)
}

/// `pattern` is a lowercase name or `*.parent` (one label).
fn host_matches(pattern: &str, name: &str) -> bool {
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
    }

    #[test]
    fn targets() {
        let hosts = ["cas.example.edu".to_owned(), "*.example.org".to_owned()];
        let check = |version, uri: &str, h: &[(&str, &str)], hosts: &[String]| {
            check_target(version, &uri.parse().unwrap(), &headers(h), hosts)
        };
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
}
