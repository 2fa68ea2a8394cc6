//! The ticket-suffix index of one pool: a trie over the suffixes' bytes read
//! from the end, flattened into two arrays. A lookup walks the ticket id
//! backwards once, so its cost depends on the longest suffix, not on the
//! number of nodes; the deepest suffix preceded by `-` wins (longest match),
//! which is how `cas-02.example.edu` beats `02.example.edu`.

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

#[derive(Clone, Debug, Default)]
struct TrieNode {
    /// Children are `edges[first..first + len]`, sorted by byte.
    first: u32,
    len: u16,
    owner: Option<(NodeId, SuffixKind)>,
}

/// An immutable suffix index, built once per configuration.
#[derive(Clone, Debug, Default)]
pub struct SuffixIndex {
    nodes: Vec<TrieNode>,
    edges: Vec<(u8, u32)>,
}

/// A suffix claimed twice while building.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub suffix: Vec<u8>,
    pub first: NodeId,
    pub second: NodeId,
}

impl SuffixIndex {
    /// Builds the index. A suffix claimed by two nodes keeps its first owner
    /// and is reported (configuration validation rejects such a file before
    /// it gets here). Empty suffixes are ignored.
    pub fn build<'a>(
        suffixes: impl IntoIterator<Item = (&'a [u8], NodeId, SuffixKind)>,
    ) -> (SuffixIndex, Vec<Conflict>) {
        // A pointer trie first, flattened afterwards.
        #[derive(Default)]
        struct Build {
            children: std::collections::BTreeMap<u8, usize>,
            owner: Option<(NodeId, SuffixKind)>,
        }
        let mut trie = vec![Build::default()];
        let mut conflicts = Vec::new();
        for (suffix, node, kind) in suffixes {
            if suffix.is_empty() {
                continue;
            }
            let mut at = 0;
            for &b in suffix.iter().rev() {
                let next = trie.len();
                at = *trie[at].children.entry(b).or_insert(next);
                if at == next {
                    trie.push(Build::default());
                }
            }
            match trie[at].owner {
                Some((first, _)) => conflicts.push(Conflict {
                    suffix: suffix.to_vec(),
                    first,
                    second: node,
                }),
                None => trie[at].owner = Some((node, kind)),
            }
        }
        let mut index = SuffixIndex::default();
        for b in &trie {
            let first = index.edges.len() as u32;
            index.edges.extend(
                b.children
                    .iter()
                    .map(|(&byte, &child)| (byte, child as u32)),
            );
            index.nodes.push(TrieNode {
                first,
                len: b.children.len() as u16,
                owner: b.owner,
            });
        }
        (index, conflicts)
    }

    /// The owner of the longest configured suffix `s` such that `id` ends in
    /// `-s` and that `-` comes after index `min_dash` (the ticket prefix's
    /// dash: `ST-cas1` has no suffix).
    pub fn lookup(&self, id: &[u8], min_dash: usize) -> Option<(NodeId, SuffixKind)> {
        let mut at = 0usize;
        let mut best = None;
        let mut i = id.len();
        while i > 0 {
            let Some(next) = self.child(at, id[i - 1]) else {
                break;
            };
            at = next;
            i -= 1;
            if let Some(owner) = self.nodes[at].owner {
                if i >= 1 && i - 1 > min_dash && id[i - 1] == b'-' {
                    best = Some(owner);
                }
            }
        }
        best
    }

    fn child(&self, at: usize, byte: u8) -> Option<usize> {
        let n = self.nodes.get(at)?;
        let edges = self
            .edges
            .get(n.first as usize..n.first as usize + usize::from(n.len))?;
        edges
            .binary_search_by_key(&byte, |&(b, _)| b)
            .ok()
            .map(|k| edges[k].1 as usize)
    }

    /// Number of trie nodes (memory grows with the total suffix length).
    pub fn size(&self) -> usize {
        self.nodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(list: &[(&str, NodeId)]) -> SuffixIndex {
        let (ix, conflicts) = SuffixIndex::build(
            list.iter()
                .map(|&(s, n)| (s.as_bytes(), n, SuffixKind::Name)),
        );
        assert!(conflicts.is_empty());
        ix
    }

    #[test]
    fn longest_match_with_dots_and_dashes() {
        let ix = index(&[
            ("02.example.edu", 1),
            ("cas-02.example.edu", 2),
            ("cas1", 3),
        ]);
        let id = |s: &str| ix.lookup(s.as_bytes(), 2).map(|o| o.0);
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
    fn f5_names() {
        // Known MD5 digests of the dotted strings.
        assert_eq!(
            f5_md5("127.0.0.1".parse().unwrap()),
            "f528764d624db129b32c21fbca0cb8d6"
        );
        assert_eq!(f5_md5("10.0.0.12".parse().unwrap()).len(), 32);
    }

    #[test]
    fn conflicts_are_reported() {
        let (_, c) = SuffixIndex::build([
            (&b"a1"[..], 0, SuffixKind::Name),
            (&b"a1"[..], 1, SuffixKind::F5Md5),
            (&b""[..], 2, SuffixKind::Name),
        ]);
        assert_eq!(
            c,
            vec![Conflict {
                suffix: b"a1".to_vec(),
                first: 0,
                second: 1
            }]
        );
    }
}
