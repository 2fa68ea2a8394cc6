//! The ticket-suffix index of one pool: a hash map from suffix to node and
//! the longest suffix length. A lookup tries each `-` among the id's last
//! `max + 1` bytes, leftmost (longest candidate) first, so its cost depends
//! on the longest suffix, not on the number of nodes, and the longest match
//! wins: `cas-02.example.edu` beats `02.example.edu`.

use rustc_hash::FxHashMap;

use super::NodeId;

/// How a suffix names its node.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum SuffixKind {
    /// One of the node's `ticket_suffixes`.
    Name,
    /// The lowercase hex MD5 of the node's IPv4 address (F5 style).
    F5Md5,
}

/// The F5-style name of a node: the lowercase hex MD5 of its dotted-decimal
/// IPv4 address (`md5("10.0.0.12")`), as Yale's Cushy configuration made it.
pub fn f5_md5(ip: std::net::Ipv4Addr) -> String {
    use md5::{Digest, Md5};
    let digest = Md5::digest(ip.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The pool member an F5 `BIGipServer<pool>` persistence cookie names
/// (F5 article K6917): `ADDRESS.PORT.0000`, the IPv4 address as the
/// decimal of its four bytes read little-endian and the port as the
/// decimal of its two bytes swapped (`10.1.1.100:8080` is
/// `1677787402.36895.0000`). Other encodings (route domains, IPv6, an
/// encrypted cookie) give `None`.
pub fn bigip_member(value: &[u8]) -> Option<std::net::SocketAddrV4> {
    let mut parts = value.split(|&b| b == b'.');
    let (ip, port, tail) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || tail != b"0000" {
        return None;
    }
    let number = |s: &[u8]| -> Option<u64> {
        if s.is_empty() || s.len() > 10 || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(s.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
    };
    let ip = u32::try_from(number(ip)?).ok()?;
    let port = u16::try_from(number(port)?).ok()?;
    Some(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::from(ip.to_le_bytes()),
        port.swap_bytes(),
    ))
}

/// An immutable suffix index, built once per configuration. Keys come from
/// the configuration, so a fast non-keyed hash is safe: a client's lookups
/// cannot grow or degrade the map.
#[derive(Clone, Debug, Default)]
pub struct SuffixIndex {
    owners: FxHashMap<Box<[u8]>, (NodeId, SuffixKind)>,
    min: usize,
    max: usize,
}

/// What [`SuffixIndex::lookup`] found.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SuffixMatch {
    pub node: NodeId,
    pub kind: SuffixKind,
    /// The length of the suffix that matched (without its `-`).
    pub len: usize,
}

impl SuffixIndex {
    /// Builds the index; empty suffixes are ignored, and a suffix claimed
    /// twice keeps its first owner (configuration validation reports such a
    /// file before it gets here).
    pub fn build<'a>(
        suffixes: impl IntoIterator<Item = (&'a [u8], NodeId, SuffixKind)>,
    ) -> SuffixIndex {
        let mut index = SuffixIndex {
            min: usize::MAX,
            ..SuffixIndex::default()
        };
        for (suffix, node, kind) in suffixes {
            if suffix.is_empty() || index.owners.contains_key(suffix) {
                continue;
            }
            index.owners.insert(suffix.into(), (node, kind));
            index.min = index.min.min(suffix.len());
            index.max = index.max.max(suffix.len());
        }
        index
    }

    /// The longest configured suffix `s` such that `id` ends in `-s` and
    /// that `-` comes after index `min_dash` (the ticket prefix's dash:
    /// `ST-cas1` has no suffix).
    pub fn lookup(&self, id: &[u8], min_dash: usize) -> Option<SuffixMatch> {
        let from = id.len().saturating_sub(self.max + 1).max(min_dash + 1);
        let window = id.get(from..)?;
        for dash in window
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'-')
            .map(|(k, _)| k)
        {
            let tail = &window[dash + 1..];
            if tail.len() < self.min {
                break;
            }
            if let Some(&(node, kind)) = self.owners.get(tail) {
                return Some(SuffixMatch {
                    node,
                    kind,
                    len: tail.len(),
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(list: &[(&str, NodeId)]) -> SuffixIndex {
        SuffixIndex::build(
            list.iter()
                .map(|&(s, n)| (s.as_bytes(), n, SuffixKind::Name)),
        )
    }

    #[test]
    fn longest_match_with_dots_and_dashes() {
        let ix = index(&[
            ("02.example.edu", 1),
            ("cas-02.example.edu", 2),
            ("cas1", 3),
        ]);
        let id = |s: &str| ix.lookup(s.as_bytes(), 2).map(|m| m.node);
        assert_eq!(id("ST-1-abc-cas-02.example.edu"), Some(2));
        assert_eq!(id("ST-1-abc-02.example.edu"), Some(1));
        // The random part may end in `cas` by chance: still the longest.
        assert_eq!(id("ST-1-xy-cas-02.example.edu"), Some(2));
        assert_eq!(id("ST-1-abcas-02.example.edu"), Some(1));
        assert_eq!(id("ST-1-a-b-cas1"), Some(3));
        assert_eq!(id("ST-1-a-bcas1"), None);
        assert_eq!(id("ST-1-a-cas1x"), None);
        assert_eq!(id("ST-cas1"), None);
        assert_eq!(id("cas1"), None);
        assert_eq!(id(""), None);
    }

    #[test]
    fn shared_tails() {
        let ix = index(&[
            ("cas-001.example.edu", 0),
            ("cas-002.example.edu", 1),
            ("cas-011.example.edu", 2),
        ]);
        let id = |s: &str| ix.lookup(s.as_bytes(), 2).map(|m| m.node);
        assert_eq!(id("ST-1-a-cas-011.example.edu"), Some(2));
        assert_eq!(id("ST-1-a-cas-002.example.edu"), Some(1));
        assert_eq!(id("ST-1-a-cas-012.example.edu"), None);
        assert_eq!(id("ST-1-a-cas-001.example.ed"), None);
        assert_eq!(id(".example.edu"), None);
        let empty = index(&[]);
        assert_eq!(empty.lookup(b"ST-1-a-b", 2), None);
    }

    #[test]
    fn f5_names() {
        // Known MD5 digests of the dotted strings.
        assert_eq!(
            f5_md5("127.0.0.1".parse().unwrap()),
            "f528764d624db129b32c21fbca0cb8d6"
        );
        assert_eq!(f5_md5("10.0.0.12".parse().unwrap()).len(), 32);
    }

    #[test]
    fn first_claim_wins_and_lengths_are_reported() {
        let ix = SuffixIndex::build([
            (&b"a1b"[..], 0, SuffixKind::Name),
            (&b"a1b"[..], 1, SuffixKind::F5Md5),
            (&b""[..], 2, SuffixKind::Name),
        ]);
        let m = ix.lookup(b"ST-1-x-a1b", 2);
        assert_eq!(
            m,
            Some(SuffixMatch {
                node: 0,
                kind: SuffixKind::Name,
                len: 3
            })
        );
        assert_eq!(ix.lookup(b"ST-1-x-", 2), None);
    }

    proptest::proptest! {
        #[test]
        fn bigip_members_round_trip(ip in proptest::num::u32::ANY, port in proptest::num::u16::ANY, junk in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            let v = format!("{}.{}.0000", ip, port);
            let m = bigip_member(v.as_bytes()).unwrap();
            proptest::prop_assert_eq!(u32::from_le_bytes(m.ip().octets()), ip);
            proptest::prop_assert_eq!(m.port().swap_bytes(), port);
            let _ = bigip_member(&junk);
        }
    }

    #[test]
    fn bigip_cookies_decode_as_f5_documents() {
        let member = |v: &str| bigip_member(v.as_bytes()).map(|a| a.to_string());
        // F5 K6917's example.
        assert_eq!(
            member("1677787402.36895.0000").as_deref(),
            Some("10.1.1.100:8080")
        );
        assert_eq!(
            member("185903296.21765.0000").as_deref(),
            Some("192.168.20.11:1365")
        );
        for bad in [
            "",
            "1677787402.36895",
            "1677787402.36895.0001",
            "1677787402.36895.0000.1",
            "4294967296.36895.0000",
            "1677787402.65536.0000",
            "-1.36895.0000",
            "rd5o00000000000000000000ffffc0000201o80",
            "vi20010112000000000000000000000030.20480",
            "!Zx1vZ2l...encrypted",
        ] {
            assert_eq!(member(bad), None, "{bad}");
        }
    }
}
