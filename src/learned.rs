//! The learned cookie table: `(pool, cookie name, value) ->
//! node`, filled from the nodes' `Set-Cookie` for the pool's TGT and
//! session cookies, read by the `tgc` and `session` rules.
//!
//! Bounded by construction: two generations of at most `capacity / 2`
//! entries each; inserting into a full current generation (or one older
//! than half the TTL) drops the previous generation and starts a new one.
//! An entry lives between TTL/2 and TTL, and memory stays flat under a flood
//! of distinct cookies. Keys are a 128-bit keyed hash (two SipHash-1-3 of
//! random keys) of the triple, so the table holds no cookie value (they are
//! credentials) and a lookup allocates nothing. A binary upgrade hands the
//! table, its hash keys included, to the new process ([`Exported`]).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::routing::{Learned, NodeId, PoolId};

type Key = u128;

struct Generation {
    entries: HashMap<Key, (NodeId, Instant)>,
    started: Instant,
    /// Entries this generation learned per client address (an IPv6 /64
    /// as one): no more distinct sources than entries.
    by_source: HashMap<IpAddr, usize>,
}

impl Generation {
    fn new(now: Instant) -> Generation {
        Generation {
            entries: HashMap::new(),
            started: now,
            by_source: HashMap::new(),
        }
    }
}

/// One SipHash-1-3 key.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct SipKey(u64, u64);

impl BuildHasher for SipKey {
    type Hasher = siphasher::sip::SipHasher13;

    fn build_hasher(&self) -> Self::Hasher {
        siphasher::sip::SipHasher13::new_with_keys(self.0, self.1)
    }
}

impl SipKey {
    fn random() -> SipKey {
        SipKey(rand::random(), rand::random())
    }
}

/// The table; cheap to share behind an `Arc`.
pub struct LearnedTable {
    hashers: (SipKey, SipKey),
    half_capacity: usize,
    ttl: Duration,
    /// Lookups (every request with an opaque TGC or session id) share the
    /// read lock; only learning and forgetting write.
    gens: RwLock<(Generation, Generation)>,
}

impl LearnedTable {
    pub fn new(capacity: usize, ttl: Duration) -> LearnedTable {
        let gen = || Generation::new(Instant::now());
        LearnedTable {
            hashers: (SipKey::random(), SipKey::random()),
            half_capacity: (capacity / 2).max(1),
            ttl,
            gens: RwLock::new((gen(), gen())),
        }
    }

    fn key(&self, pool: PoolId, cookie: &[u8], value: &[u8]) -> Key {
        let half = |s: &SipKey| s.hash_one((pool, cookie, value));
        u128::from(half(&self.hashers.0)) << 64 | u128::from(half(&self.hashers.1))
    }

    /// A copy for a reloaded configuration whose pools are the same (keys
    /// hold the pool's index) but whose nodes moved: each entry's node
    /// becomes `map(node)`, and entries of removed nodes are dropped.
    pub fn remapped(
        &self,
        capacity: usize,
        ttl: Duration,
        map: impl Fn(NodeId) -> Option<NodeId>,
    ) -> LearnedTable {
        let g = self.gens.read().unwrap_or_else(PoisonError::into_inner);
        let copy = |gen: &Generation| Generation {
            entries: gen
                .entries
                .iter()
                .filter_map(|(k, (n, at))| Some((*k, (map(*n)?, *at))))
                .collect(),
            started: gen.started,
            by_source: gen.by_source.clone(),
        };
        LearnedTable {
            hashers: self.hashers,
            half_capacity: (capacity / 2).max(1),
            ttl,
            gens: RwLock::new((copy(&g.0), copy(&g.1))),
        }
    }

    /// Whether a configuration with `capacity` and `ttl` can keep this table.
    pub fn fits(&self, capacity: usize, ttl: Duration) -> bool {
        self.half_capacity == (capacity / 2).max(1) && self.ttl == ttl
    }

    /// The most entries one client address (an IPv6 /64 as one) may add
    /// to a generation: three quarters of it, so that no address alone
    /// fills a generation and turns the table over, flushing everyone
    /// else's cookies; a campus behind one NAT keeps most of the room.
    fn share(&self) -> usize {
        (self.half_capacity * 3 / 4).max(1)
    }

    /// Remembers that `node` set `cookie=value` in answer to a client at
    /// `source`. `false`: not learned, `source` has added its share of
    /// the current generation already.
    pub fn learn(
        &self,
        pool: PoolId,
        cookie: &[u8],
        value: &[u8],
        node: NodeId,
        now: Instant,
        source: IpAddr,
    ) -> bool {
        let key = self.key(pool, cookie, value);
        let source = crate::edge::client_key(source);
        let mut g = self.gens.write().unwrap_or_else(PoisonError::into_inner);
        let (current, previous) = &mut *g;
        let known = current.entries.contains_key(&key);
        if !known && current.by_source.get(&source).copied().unwrap_or(0) >= self.share() {
            return false;
        }
        let full = current.entries.len() >= self.half_capacity && !known;
        if full || now.duration_since(current.started) >= self.ttl / 2 {
            let mut next = Generation::new(now);
            next.entries.reserve(self.half_capacity.min(1024));
            *previous = std::mem::replace(current, next);
        }
        previous.entries.remove(&key);
        if current.entries.insert(key, (node, now)).is_none() {
            *current.by_source.entry(source).or_insert(0) += 1;
        }
        true
    }

    /// Forgets `cookie=value` (the node expired the cookie: logout).
    pub fn forget(&self, pool: PoolId, cookie: &[u8], value: &[u8]) {
        let key = self.key(pool, cookie, value);
        let mut g = self.gens.write().unwrap_or_else(PoisonError::into_inner);
        g.0.entries.remove(&key);
        g.1.entries.remove(&key);
    }

    /// The node that set `cookie=value` less than the TTL ago.
    pub fn find(&self, pool: PoolId, cookie: &[u8], value: &[u8], now: Instant) -> Option<NodeId> {
        let key = self.key(pool, cookie, value);
        let g = self.gens.read().unwrap_or_else(PoisonError::into_inner);
        let (node, at) = g.0.entries.get(&key).or_else(|| g.1.entries.get(&key))?;
        (now.duration_since(*at) < self.ttl).then_some(*node)
    }

    /// Entries held (both generations).
    pub fn len(&self) -> usize {
        let g = self.gens.read().unwrap_or_else(PoisonError::into_inner);
        g.0.entries.len() + g.1.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A table as handed to another process: its hash keys, and each entry
/// with its node (by index in the exporter's configuration) and age.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Exported {
    hashers: Option<(SipKey, SipKey)>,
    /// Current generation first: (key, node, milliseconds since learned).
    current: Vec<(u128, NodeId, u64)>,
    previous: Vec<(u128, NodeId, u64)>,
}

impl LearnedTable {
    /// Everything the table holds, for a successor process.
    pub fn export(&self) -> Exported {
        let now = Instant::now();
        let g = self.gens.read().unwrap_or_else(PoisonError::into_inner);
        let entries = |gen: &Generation| -> Vec<(u128, NodeId, u64)> {
            (gen.entries.iter())
                .map(|(k, (n, at))| {
                    let age = now.saturating_duration_since(*at).as_millis();
                    (*k, *n, u64::try_from(age).unwrap_or(u64::MAX))
                })
                .collect()
        };
        Exported {
            hashers: Some(self.hashers),
            current: entries(&g.0),
            previous: entries(&g.1),
        }
    }

    /// A table of `capacity` and `ttl` holding what `exported` held (its
    /// nodes through `map`; entries of nodes gone, or past the TTL, are
    /// dropped, and the newest kept when there are more than fit).
    pub fn import(
        exported: &Exported,
        capacity: usize,
        ttl: Duration,
        map: impl Fn(NodeId) -> Option<NodeId>,
    ) -> LearnedTable {
        let mut table = LearnedTable::new(capacity, ttl);
        let Some(hashers) = exported.hashers else {
            return table;
        };
        table.hashers = hashers;
        let now = Instant::now();
        let fill = |entries: &[(u128, NodeId, u64)]| {
            let mut gen = Generation::new(now);
            let mut kept: Vec<_> = (entries.iter())
                .filter(|(_, _, age)| Duration::from_millis(*age) < ttl)
                .filter_map(|(k, n, age)| Some((*k, map(*n)?, *age)))
                .collect();
            kept.sort_unstable_by_key(|(_, _, age)| *age);
            kept.truncate(table.half_capacity);
            for (k, n, age) in kept {
                let at = now.checked_sub(Duration::from_millis(age)).unwrap_or(now);
                gen.entries.insert(k, (n, at));
            }
            gen
        };
        table.gens = RwLock::new((fill(&exported.current), fill(&exported.previous)));
        table
    }
}

impl Learned for LearnedTable {
    fn lookup(&self, pool: PoolId, cookie: &[u8], value: &[u8]) -> Option<NodeId> {
        self.find(pool, cookie, value, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client address, one per `i`.
    fn from(i: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 | i))
    }

    #[test]
    fn a_remapped_copy_follows_moved_nodes() {
        let t = LearnedTable::new(100, Duration::from_secs(60));
        let now = Instant::now();
        t.learn(0, b"TGC", b"a", 1, now, from(1));
        t.learn(0, b"TGC", b"b", 2, now, from(1));
        let r = t.remapped(100, Duration::from_secs(60), |n| (n == 1).then_some(5));
        assert_eq!(r.find(0, b"TGC", b"a", now), Some(5));
        assert_eq!(r.find(0, b"TGC", b"b", now), None);
        assert!(t.fits(101, Duration::from_secs(60)));
        assert!(!t.fits(100, Duration::from_secs(61)));
    }

    #[test]
    fn an_exported_table_is_found_again_in_its_successor() {
        let ttl = Duration::from_secs(60);
        let t = LearnedTable::new(100, ttl);
        let now = Instant::now();
        t.learn(0, b"TGC", b"a", 1, now, from(1));
        t.learn(0, b"JSESSIONID", b"b", 2, now, from(1));
        // Through JSON, as the upgrade channel carries it.
        let text = serde_json::to_string(&t.export()).unwrap();
        assert!(!text.contains("\"a\""), "{text}");
        let exported: Exported = serde_json::from_str(&text).unwrap();
        let n = LearnedTable::import(&exported, 100, ttl, |n| (n == 1).then_some(7));
        let later = Instant::now();
        assert_eq!(n.find(0, b"TGC", b"a", later), Some(7));
        assert_eq!(
            n.find(0, b"JSESSIONID", b"b", later),
            None,
            "its node is gone"
        );
        assert_eq!(n.len(), 1);
        // Without hash keys (an exporter that had no table): empty.
        assert!(LearnedTable::import(&Exported::default(), 100, ttl, Some).is_empty());
    }

    #[test]
    fn learns_forgets_and_expires() {
        let t = LearnedTable::new(100, Duration::from_secs(60));
        let now = Instant::now();
        t.learn(0, b"JSESSIONID", b"abc", 2, now, from(1));
        assert_eq!(t.find(0, b"JSESSIONID", b"abc", now), Some(2));
        assert_eq!(t.find(1, b"JSESSIONID", b"abc", now), None, "per pool");
        assert_eq!(t.find(0, b"TGC", b"abc", now), None, "per cookie name");
        assert_eq!(
            t.find(0, b"JSESSIONID", b"abc", now + Duration::from_secs(61)),
            None,
            "past the TTL"
        );
        t.forget(0, b"JSESSIONID", b"abc");
        assert_eq!(t.find(0, b"JSESSIONID", b"abc", now), None);
    }

    #[test]
    fn memory_stays_bounded_and_recent_entries_survive() {
        let t = LearnedTable::new(1000, Duration::from_secs(3600));
        let now = Instant::now();
        for i in 0..100_000u32 {
            assert!(t.learn(0, b"JSESSIONID", &i.to_le_bytes(), 1, now, from(i)));
            assert!(t.len() <= 1000);
        }
        // The most recent half-capacity entries are all still known.
        for i in 100_000 - 500..100_000u32 {
            assert_eq!(t.find(0, b"JSESSIONID", &i.to_le_bytes(), now), Some(1));
        }
        assert_eq!(t.find(0, b"JSESSIONID", &0u32.to_le_bytes(), now), None);
    }

    /// One address (an IPv6 /64 as one) cannot turn the table over: past
    /// its share of a generation it learns nothing more, and what others
    /// taught the table stays.
    #[test]
    fn one_address_cannot_flush_the_table() {
        let t = LearnedTable::new(1000, Duration::from_secs(3600));
        let now = Instant::now();
        assert!(t.learn(0, b"TGC", b"victim", 2, now, from(1)));
        let flood: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let mut learned = 0;
        for i in 0..100_000u32 {
            // A new address in the same /64 each time.
            let source = match flood {
                IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) + u128::from(i)).into()),
                v4 => v4,
            };
            learned += usize::from(t.learn(0, b"TGC", &i.to_le_bytes(), 1, now, source));
        }
        assert_eq!(learned, 375, "three quarters of a generation of 500");
        assert_eq!(t.find(0, b"TGC", b"victim", now), Some(2));
        // A value already learned is refreshed even past the share.
        assert!(t.learn(0, b"TGC", &0u32.to_le_bytes(), 1, now, flood));
        // Another address still learns.
        assert!(t.learn(0, b"TGC", b"other", 3, now, from(2)));
    }
}
