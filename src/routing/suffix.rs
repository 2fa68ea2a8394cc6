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
    /// The bytes this node stands for, in ticket order: `labels[label..label + label_len]`.
    label: u32,
    label_len: u16,
    /// Children are `edges[first..first + len]`, keyed by the last byte of
    /// the child's label (the next byte read going backwards), sorted.
    first: u32,
    len: u16,
    owner: Option<(NodeId, SuffixKind)>,
}

/// An immutable suffix index, built once per configuration: a radix tree
/// (chains of single-child nodes merged into one label) over the suffixes
/// read from the end.
#[derive(Clone, Debug, Default)]
pub struct SuffixIndex {
    nodes: Vec<TrieNode>,
    edges: Vec<(u8, u32)>,
    labels: Vec<u8>,
}

/// A suffix claimed twice while building.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub suffix: Vec<u8>,
    pub first: NodeId,
    pub second: NodeId,
}

/// The uncompressed trie the index is built from.
#[derive(Default)]
struct Build {
    children: std::collections::BTreeMap<u8, usize>,
    owner: Option<(NodeId, SuffixKind)>,
}

impl SuffixIndex {
    /// Builds the index. A suffix claimed by two nodes keeps its first owner
    /// and is reported (configuration validation rejects such a file before
    /// it gets here). Empty suffixes are ignored.
    pub fn build<'a>(
        suffixes: impl IntoIterator<Item = (&'a [u8], NodeId, SuffixKind)>,
    ) -> (SuffixIndex, Vec<Conflict>) {
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
        index.add(&trie, 0, Vec::new());
        (index, conflicts)
    }

    /// Adds the compressed node that starts at `trie[start]` (reached by the
    /// bytes `walked`, in reverse order); returns its index.
    fn add(&mut self, trie: &[Build], start: usize, mut walked: Vec<u8>) -> u32 {
        let mut at = start;
        while trie[at].owner.is_none() && trie[at].children.len() == 1 {
            let Some((&b, &child)) = trie[at].children.iter().next() else {
                break;
            };
            walked.push(b);
            at = child;
        }
        walked.reverse();
        let idx = self.nodes.len();
        self.nodes.push(TrieNode {
            label: self.labels.len() as u32,
            label_len: walked.len() as u16,
            owner: trie[at].owner,
            ..TrieNode::default()
        });
        self.labels.extend_from_slice(&walked);
        let children: Vec<(u8, u32)> = trie[at]
            .children
            .iter()
            .map(|(&b, &child)| (b, self.add(trie, child, vec![b])))
            .collect();
        self.nodes[idx].first = self.edges.len() as u32;
        self.nodes[idx].len = children.len() as u16;
        self.edges.extend(children);
        idx as u32
    }

    /// The owner of the longest configured suffix `s` such that `id` ends in
    /// `-s` and that `-` comes after index `min_dash` (the ticket prefix's
    /// dash: `ST-cas1` has no suffix).
    pub fn lookup(&self, id: &[u8], min_dash: usize) -> Option<(NodeId, SuffixKind)> {
        let mut at = 0usize;
        let mut best = None;
        let mut i = id.len();
        loop {
            let node = self.nodes.get(at)?;
            let start = node.label as usize;
            let label = self.labels.get(start..start + usize::from(node.label_len))?;
            // Compared from the end, byte by byte: labels are short.
            if label.len() > i || !id[..i].iter().rev().zip(label.iter().rev()).all(|(a, b)| a == b) {
                return best;
            }
            i -= label.len();
            if let Some(owner) = node.owner {
                if i >= 1 && i - 1 > min_dash && id[i - 1] == b'-' {
                    best = Some(owner);
                }
            }
            if i == 0 {
                return best;
            }
            let first = node.first as usize;
            let edges = self.edges.get(first..first + usize::from(node.len))?;
            at = match edges.binary_search_by_key(&id[i - 1], |&(b, _)| b) {
                Ok(k) => edges[k].1 as usize,
                Err(_) => return best,
            };
        }
    }

    /// Number of radix-tree nodes (memory grows with the total suffix length).
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
    fn chains_are_compressed() {
        let ix = index(&[("cas-001.example.edu", 0), ("cas-002.example.edu", 1), ("cas-011.example.edu", 2)]);
        // ".example.edu" -> { "1" -> { "cas-00", "cas-01" }, "cas-002" }
        assert_eq!(ix.size(), 5);
        let id = |s: &str| ix.lookup(s.as_bytes(), 2).map(|o| o.0);
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
