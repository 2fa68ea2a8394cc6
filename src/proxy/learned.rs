//! The learned cookie table (DESIGN §1): `(pool, cookie name, value) ->
//! node`, filled from the nodes' `Set-Cookie` for the pool's TGT and
//! session cookies, read by the `tgc` and `session` rules.
//!
//! Bounded by construction: two generations of at most `capacity / 2`
//! entries each; inserting into a full current generation (or one older
//! than half the TTL) drops the previous generation and starts a new one.
//! An entry lives between TTL/2 and TTL, and memory stays flat under a flood
//! of distinct cookies. Keys are a 128-bit keyed hash of the triple, so the
//! table holds no cookie value (they are credentials) and a lookup
//! allocates nothing.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::routing::{Learned, NodeId, PoolId};

type Key = u128;

struct Generation {
    entries: HashMap<Key, (NodeId, Instant)>,
    started: Instant,
}

/// The table; cheap to share behind an `Arc`.
pub struct LearnedTable {
    hashers: (RandomState, RandomState),
    half_capacity: usize,
    ttl: Duration,
    /// Lookups (every request with an opaque TGC or session id) share the
    /// read lock; only learning and forgetting write.
    gens: RwLock<(Generation, Generation)>,
}

impl LearnedTable {
    pub fn new(capacity: usize, ttl: Duration) -> LearnedTable {
        let gen = || Generation {
            entries: HashMap::new(),
            started: Instant::now(),
        };
        LearnedTable {
            hashers: (RandomState::new(), RandomState::new()),
            half_capacity: (capacity / 2).max(1),
            ttl,
            gens: RwLock::new((gen(), gen())),
        }
    }

    fn key(&self, pool: PoolId, cookie: &[u8], value: &[u8]) -> Key {
        let half = |s: &RandomState| s.hash_one((pool, cookie, value));
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
        };
        LearnedTable {
            hashers: self.hashers.clone(),
            half_capacity: (capacity / 2).max(1),
            ttl,
            gens: RwLock::new((copy(&g.0), copy(&g.1))),
        }
    }

    /// Whether a configuration with `capacity` and `ttl` can keep this table.
    pub fn fits(&self, capacity: usize, ttl: Duration) -> bool {
        self.half_capacity == (capacity / 2).max(1) && self.ttl == ttl
    }

    /// Remembers that `node` set `cookie=value`.
    pub fn learn(&self, pool: PoolId, cookie: &[u8], value: &[u8], node: NodeId, now: Instant) {
        let key = self.key(pool, cookie, value);
        let mut g = self.gens.write().unwrap_or_else(PoisonError::into_inner);
        let (current, previous) = &mut *g;
        let full =
            current.entries.len() >= self.half_capacity && !current.entries.contains_key(&key);
        if full || now.duration_since(current.started) >= self.ttl / 2 {
            *previous = std::mem::replace(
                current,
                Generation {
                    entries: HashMap::with_capacity(self.half_capacity.min(1024)),
                    started: now,
                },
            );
        }
        previous.entries.remove(&key);
        current.entries.insert(key, (node, now));
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

impl Learned for LearnedTable {
    fn lookup(&self, pool: PoolId, cookie: &[u8], value: &[u8]) -> Option<NodeId> {
        self.find(pool, cookie, value, Instant::now())
    }
}

/// A `Set-Cookie` header's name and (unquoted) value, and whether it
/// expires the cookie: `Max-Age` of 0 or less, or, without `Max-Age`
/// (which wins, RFC 6265 §5.3), an `Expires` date in the past, as CAS
/// writes them on logout (`Max-Age=0; Expires=Thu, 01 Jan 1970 ...`).
pub fn parse_set_cookie(header: &[u8]) -> Option<(&[u8], &[u8], bool)> {
    // The clock is read only for an `Expires` without `Max-Age`.
    parse_set_cookie_with(header, || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}

/// The same at `now` (seconds since the Unix epoch).
pub fn parse_set_cookie_at(header: &[u8], now: u64) -> Option<(&[u8], &[u8], bool)> {
    parse_set_cookie_with(header, || now)
}

fn parse_set_cookie_with(header: &[u8], now: impl FnOnce() -> u64) -> Option<(&[u8], &[u8], bool)> {
    let pair = header.split(|&b| b == b';').next()?;
    let eq = pair.iter().position(|&b| b == b'=')?;
    let name = pair[..eq].trim_ascii();
    // Unquoted, as the routing core reads the value a browser sends back.
    let value = crate::routing::parse::unquote(pair[eq + 1..].trim_ascii());
    let (mut max_age, mut expires) = (None, None);
    for (key, v) in set_cookie_attrs(header) {
        if key.eq_ignore_ascii_case(b"max-age") {
            // RFC 6265 §5.2.2: a value that is not a number is ignored.
            if let Some(n) = std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.parse::<i64>().ok())
            {
                max_age = Some(n);
            }
        } else if key.eq_ignore_ascii_case(b"expires") {
            expires = cookie_date(v).or(expires);
        }
    }
    let expired = match (max_age, expires) {
        (Some(n), _) => n <= 0,
        (None, Some(at)) => at <= now(),
        (None, None) => false,
    };
    (!name.is_empty()).then_some((name, value, expired))
}

/// A `Set-Cookie` header's attributes after its `name=value`, as
/// (name, value) pairs trimmed (a flag's value is empty).
pub fn set_cookie_attrs(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    header.split(|&b| b == b';').skip(1).map(|attr| {
        let attr = attr.trim_ascii();
        match attr.iter().position(|&b| b == b'=') {
            Some(eq) => (attr[..eq].trim_ascii(), attr[eq + 1..].trim_ascii()),
            None => (attr, &attr[attr.len()..]),
        }
    })
}

/// A cookie date (RFC 6265 §5.1.1, lenient as browsers are: `Thu, 01 Jan
/// 1970 00:00:10 GMT`, `Thursday, 01-Jan-70 ...`, `Thu Jan  1 00:00:10
/// 1970`) in seconds since the Unix epoch; `None` if it is not one.
pub fn cookie_date(s: &[u8]) -> Option<u64> {
    const MONTHS: [&[u8; 3]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    let delimiter = |b: &u8| !(b.is_ascii_alphanumeric() || *b == b':' || *b >= 0x80);
    let (mut time, mut day, mut month, mut year) = (None, None, None, None);
    let digits = |t: &[u8], min: usize, max: usize| -> Option<u64> {
        let n = t.iter().take_while(|b| b.is_ascii_digit()).count();
        (min..=max).contains(&n).then(|| {
            t[..n]
                .iter()
                .fold(0u64, |v, &d| v * 10 + u64::from(d - b'0'))
        })
    };
    for token in s.split(delimiter).filter(|t| !t.is_empty()) {
        if time.is_none() {
            let mut hms = token.splitn(3, |&b| b == b':');
            let parsed = (|| {
                let h = digits(hms.next()?, 1, 2)?;
                let m = digits(hms.next()?, 1, 2)?;
                let s = digits(hms.next()?, 1, 2)?;
                Some((h, m, s))
            })();
            if parsed.is_some() {
                time = parsed;
                continue;
            }
        }
        if day.is_none() {
            if let Some(d) = digits(token, 1, 2) {
                day = Some(d);
                continue;
            }
        }
        if month.is_none() && token.len() >= 3 {
            let m = token[..3].to_ascii_lowercase();
            if let Some(i) = MONTHS.iter().position(|n| n[..] == m[..]) {
                month = Some(i as u64 + 1);
                continue;
            }
        }
        if year.is_none() {
            if let Some(y) = digits(token, 2, 4) {
                year = Some(match y {
                    70..=99 => y + 1900,
                    0..=69 => y + 2000,
                    y => y,
                });
            }
        }
    }
    let ((h, m, sec), d, mo, y) = (time?, day?, month?, year?);
    if !(1..=31).contains(&d) || y < 1601 || h > 23 || m > 59 || sec > 59 {
        return None;
    }
    // Days from 1970-01-01 to y-mo-d (Howard Hinnant's days_from_civil).
    let (y, mo, d) = (y as i64, mo as i64, d as i64);
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + (h * 3600 + m * 60 + sec) as i64;
    // Before the epoch is as past as the epoch.
    Some(secs.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remapped_copy_follows_moved_nodes() {
        let t = LearnedTable::new(100, Duration::from_secs(60));
        let now = Instant::now();
        t.learn(0, b"TGC", b"a", 1, now);
        t.learn(0, b"TGC", b"b", 2, now);
        let r = t.remapped(100, Duration::from_secs(60), |n| (n == 1).then_some(5));
        assert_eq!(r.find(0, b"TGC", b"a", now), Some(5));
        assert_eq!(r.find(0, b"TGC", b"b", now), None);
        assert!(t.fits(101, Duration::from_secs(60)));
        assert!(!t.fits(100, Duration::from_secs(61)));
    }

    #[test]
    fn learns_forgets_and_expires() {
        let t = LearnedTable::new(100, Duration::from_secs(60));
        let now = Instant::now();
        t.learn(0, b"JSESSIONID", b"abc", 2, now);
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
            t.learn(0, b"JSESSIONID", &i.to_le_bytes(), 1, now);
            assert!(t.len() <= 1000);
        }
        // The most recent half-capacity entries are all still known.
        for i in 100_000 - 500..100_000u32 {
            assert_eq!(t.find(0, b"JSESSIONID", &i.to_le_bytes(), now), Some(1));
        }
        assert_eq!(t.find(0, b"JSESSIONID", &0u32.to_le_bytes(), now), None);
    }

    #[test]
    fn set_cookie_headers() {
        assert_eq!(
            parse_set_cookie(b"JSESSIONID=ABC.cas1; Path=/cas; HttpOnly"),
            Some((&b"JSESSIONID"[..], &b"ABC.cas1"[..], false))
        );
        assert_eq!(
            parse_set_cookie(b"TGC=\"\"; Max-Age=0; Path=/cas"),
            Some((&b"TGC"[..], &b""[..], true))
        );
        assert_eq!(
            parse_set_cookie(b"x=1; max-age=-1").map(|c| c.2),
            Some(true)
        );
        assert_eq!(
            parse_set_cookie(b"x=1; Max-Age=10").map(|c| c.2),
            Some(false)
        );
        assert_eq!(parse_set_cookie(b"noequals"), None);
        assert_eq!(parse_set_cookie(b"=v"), None);
    }

    #[test]
    fn expires_in_the_past_expires_unless_max_age_says_otherwise() {
        let now = 1_800_000_000; // 2027
        let expired = |h: &str| parse_set_cookie_at(h.as_bytes(), now).map(|c| c.2);
        // What CAS (Spring's CookieGenerator) writes on logout.
        assert_eq!(
            expired("TGC=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:10 GMT; Path=/cas"),
            Some(true)
        );
        assert_eq!(
            expired("TGC=; Expires=Thu, 01-Jan-1970 00:00:10 GMT"),
            Some(true)
        );
        assert_eq!(
            expired("TGC=x; Expires=Wed, 01 Jan 2025 00:00:00 GMT"),
            Some(true)
        );
        assert_eq!(
            expired("TGC=x; Expires=Fri, 01 Jan 2100 00:00:00 GMT"),
            Some(false)
        );
        // Max-Age wins over Expires.
        assert_eq!(
            expired("TGC=x; Expires=Thu, 01 Jan 1970 00:00:10 GMT; Max-Age=60"),
            Some(false)
        );
        assert_eq!(
            expired("TGC=x; Expires=Fri, 01 Jan 2100 00:00:00 GMT; Max-Age=0"),
            Some(true)
        );
        // A date that is not one is ignored.
        assert_eq!(expired("TGC=x; Expires=yesterday"), Some(false));
        assert_eq!(expired("TGC=x; Max-Age=soon"), Some(false));
    }

    #[test]
    fn set_cookie_attributes() {
        let attrs: Vec<_> = set_cookie_attrs(b"TGC=x; path = /cas/ ; Secure; Max-Age=60").collect();
        assert_eq!(
            attrs,
            [
                (&b"path"[..], &b"/cas/"[..]),
                (b"Secure", b""),
                (b"Max-Age", b"60")
            ]
        );
        assert_eq!(set_cookie_attrs(b"Path=/x").count(), 0);
    }

    #[test]
    fn cookie_dates() {
        assert_eq!(cookie_date(b"Thu, 01 Jan 1970 00:00:10 GMT"), Some(10));
        assert_eq!(
            cookie_date(b"Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            cookie_date(b"Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(cookie_date(b"Sun Nov  6 08:49:37 1994"), Some(784_111_777));
        assert_eq!(
            cookie_date(b"Tue, 29 Feb 2028 23:59:59 GMT"),
            Some(1_835_481_599)
        );
        for bad in [
            &b""[..],
            b"Thu, 01 Jan 1970",
            b"32 Jan 1970 00:00:00",
            b"01 Foo 1970 00:00:00",
            b"01 Jan 1970 24:00:00",
        ] {
            assert_eq!(cookie_date(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    proptest::proptest! {
        #[test]
        fn set_cookie_parsing_never_panics(h in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse_set_cookie_at(&h, 1_800_000_000);
            let _ = cookie_date(&h);
        }
    }
}
