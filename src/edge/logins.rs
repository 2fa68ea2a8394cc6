//! The failed-login throttle: what CAS's own throttling does, once for the
//! whole cluster (each node throttles alone, so N nodes behind round robin
//! give a guesser N times the attempts), counting **failures**, never
//! successes. Two limits (`[rate_limit]`):
//!
//! - per (address, user): `login_failures` failures in `login_window`,
//!   then one more every `login_window / login_failures` (a GCRA); a
//!   success for that pair clears it. A guesser at one account from one
//!   address is slowed to a crawl while the address logs in other users
//!   and the user logs in from elsewhere.
//! - per address: failures and successes counted over a sliding
//!   `login_window`; the address is cut off while its failures are at
//!   least `address_failures` *and* at least `address_failure_share` of
//!   its attempts, or past `address_failure_ceiling` whatever the share.
//!   A sprayer (one password over many accounts: nearly all failures) is
//!   cut off after `address_failures`; a campus NAT whose users mistype
//!   now and then (mostly successes) never is.
//!
//! Users are held as a keyed hash (SipHash-1-3, a random key per process)
//! of the lowercased name: no name is kept or logged. Both stores are
//! bounded: two generations of at most `max_clients / 2` entries each, the
//! older dropped whole when the newer fills.

use std::collections::HashMap;
use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::client_key;
use crate::config::RateLimit;

/// What became of a login attempt, from the node's answer.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Outcome {
    Success = 0,
    Failure = 1,
    /// Neither (a node error, a throttle of the node's own, a redirect
    /// elsewhere): not counted.
    Other = 2,
}

/// Why a login attempt is refused, and whole seconds until it may try.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Throttled {
    pub address_wide: bool,
    pub retry_after: u64,
}

/// A user's keyed hash.
pub type UserKey = u64;

/// A map of at most `2 × half` entries in two generations.
struct Gens<K, V> {
    current: HashMap<K, V>,
    previous: HashMap<K, V>,
    half: usize,
}

impl<K: std::hash::Hash + Eq + Copy, V> Gens<K, V> {
    fn new(half: usize) -> Gens<K, V> {
        Gens {
            current: HashMap::new(),
            previous: HashMap::new(),
            half: half.max(1),
        }
    }

    fn get(&self, k: &K) -> Option<&V> {
        self.current.get(k).or_else(|| self.previous.get(k))
    }

    fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        match self.current.get_mut(k) {
            Some(v) => Some(v),
            None => self.previous.get_mut(k),
        }
    }

    /// The entry for `k`, moved to the current generation (made by `new`).
    fn entry(&mut self, k: K, new: impl FnOnce() -> V) -> &mut V {
        let fresh = !self.current.contains_key(&k);
        let carried = if fresh {
            self.previous.remove(&k)
        } else {
            None
        };
        if fresh && self.current.len() >= self.half {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current
            .entry(k)
            .or_insert_with(|| carried.unwrap_or_else(new))
    }

    fn remove(&mut self, k: &K) {
        self.current.remove(k);
        self.previous.remove(k);
    }

    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    fn values(&self) -> impl Iterator<Item = &V> {
        self.current.values().chain(self.previous.values())
    }
}

/// One address's attempts over a sliding window: two fixed windows, the
/// previous one weighted by how much of it the sliding window still covers.
#[derive(Clone, Copy, Debug)]
struct Window {
    start: Instant,
    failures: [u32; 2],
    successes: [u32; 2],
}

impl Window {
    fn new(now: Instant) -> Window {
        Window {
            start: now,
            failures: [0; 2],
            successes: [0; 2],
        }
    }

    /// Rolls the fixed windows forward to `now`.
    fn roll(&mut self, now: Instant, len: Duration) {
        let elapsed = now.saturating_duration_since(self.start);
        if elapsed >= len * 2 {
            *self = Window::new(now);
        } else if elapsed >= len {
            self.start += len;
            self.failures = [self.failures[1], 0];
            self.successes = [self.successes[1], 0];
        }
    }

    /// (failures, successes) over the sliding window ending at `now`.
    fn counts(&self, now: Instant, len: Duration) -> (f64, f64) {
        let into = now.saturating_duration_since(self.start).as_secs_f64();
        let weight = (1.0 - into / len.as_secs_f64()).clamp(0.0, 1.0);
        let sum = |c: [u32; 2]| f64::from(c[0]) * weight + f64::from(c[1]);
        (sum(self.failures), sum(self.successes))
    }
}

struct Stores {
    /// (address, user) -> the GCRA's theoretical arrival time.
    pairs: Gens<(IpAddr, UserKey), Instant>,
    addresses: Gens<IpAddr, Window>,
}

/// The throttle of one `[rate_limit]` configuration's login limits.
pub struct LoginThrottle {
    config: RateLimit,
    hasher: (u64, u64),
    stores: Mutex<Stores>,
}

impl LoginThrottle {
    pub fn new(config: &RateLimit) -> LoginThrottle {
        let half = config.max_clients / 2;
        LoginThrottle {
            config: config.clone(),
            hasher: (rand::random(), rand::random()),
            stores: Mutex::new(Stores {
                pairs: Gens::new(half),
                addresses: Gens::new(half),
            }),
        }
    }

    /// The configuration it enforces (a reload keeps the counts when the
    /// login limits are unchanged).
    pub fn config(&self) -> &RateLimit {
        &self.config
    }

    /// Whether any limit is on.
    pub fn enabled(&self) -> bool {
        self.config.login_failures > 0 || self.config.address_failures > 0
    }

    /// The keyed hash of a user name, as a directory compares names:
    /// Unicode compatibility-normalised (NFKC), lower case, without
    /// surrounding blanks, so that `Alice`, ` alice ` and `ａｌｉｃｅ` are one
    /// user.
    pub fn user(&self, name: &[u8]) -> UserKey {
        use unicode_normalization::UnicodeNormalization;
        let text = String::from_utf8_lossy(name);
        let folded = text.trim().nfkc().collect::<String>().to_lowercase();
        let (k0, k1) = self.hasher;
        let mut h = siphasher::sip::SipHasher13::new_with_keys(k0, k1);
        h.write(folded.trim().as_bytes());
        h.finish()
    }

    fn window(&self) -> Duration {
        self.config.login_window.max(Duration::from_secs(1))
    }

    /// The GCRA's emission interval: the window over the failures allowed.
    fn interval(&self) -> Duration {
        self.window() / self.config.login_failures.max(1)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Stores> {
        self.stores.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// May `client` try to log in as `user` now? If so, the attempt counts
    /// as a failure until [`LoginThrottle::finish`] says otherwise, so that
    /// attempts sent at once (many streams, many connections) cannot all
    /// pass before the first failure is known.
    pub fn begin(&self, client: IpAddr, user: UserKey, now: Instant) -> Result<(), Throttled> {
        let addr = client_key(client);
        let (window, interval) = (self.window(), self.interval());
        let mut s = self.lock();
        if self.config.address_failures > 0 {
            if let Some(w) = s.addresses.get(&addr) {
                let mut w = *w;
                w.roll(now, window);
                if self.cut_off(&w, now) {
                    return Err(Throttled {
                        address_wide: true,
                        retry_after: self.address_retry(&w, now),
                    });
                }
            }
        }
        if self.config.login_failures > 0 {
            if let Some(tat) = s.pairs.get(&(addr, user)) {
                // Allowed while the arrival time is within the window
                // less one interval (the GCRA's burst tolerance).
                let tolerance = window - interval;
                let over = tat.saturating_duration_since(now);
                if over > tolerance {
                    return Err(Throttled {
                        address_wide: false,
                        retry_after: whole_secs(over - tolerance),
                    });
                }
            }
        }
        if self.config.address_failures > 0 {
            let w = s.addresses.entry(addr, || Window::new(now));
            w.roll(now, window);
            w.failures[1] = w.failures[1].saturating_add(1);
        }
        if self.config.login_failures > 0 {
            let tat = s.pairs.entry((addr, user), || now);
            *tat = (*tat).max(now) + interval;
        }
        Ok(())
    }

    /// Whole seconds until an address cut off (window `w`) is let through
    /// again if it tries nothing more.
    fn address_retry(&self, w: &Window, now: Instant) -> u64 {
        let window = self.window();
        let left = (w.start + window).saturating_duration_since(now);
        for tenth in 0..=10 {
            let at = now + left + window * tenth / 10;
            let mut later = *w;
            later.roll(at, window);
            if !self.cut_off(&later, at) {
                return whole_secs(at - now);
            }
        }
        whole_secs(left + window)
    }

    fn cut_off(&self, w: &Window, now: Instant) -> bool {
        let (failures, successes) = w.counts(now, self.window());
        let c = &self.config;
        let ceiling =
            c.address_failure_ceiling > 0 && failures >= f64::from(c.address_failure_ceiling);
        let share = failures / (failures + successes).max(1.0);
        ceiling || (failures >= f64::from(c.address_failures) && share >= c.address_failure_share)
    }

    /// Settles an attempt [`LoginThrottle::begin`] let through: a failure
    /// stays counted; a success is counted as one and clears its pair; an
    /// attempt that was neither (no answer from a node, a node error) is
    /// given back.
    pub fn finish(&self, client: IpAddr, user: UserKey, outcome: Outcome, now: Instant) {
        if outcome == Outcome::Failure || !self.enabled() {
            return;
        }
        let addr = client_key(client);
        let (window, interval) = (self.window(), self.interval());
        let mut s = self.lock();
        if self.config.address_failures > 0 {
            if let Some(w) = s.addresses.get_mut(&addr) {
                w.roll(now, window);
                // The reservation is in the current fixed window, or in
                // the one before if the window turned since.
                if w.failures[1] > 0 {
                    w.failures[1] -= 1;
                } else {
                    w.failures[0] = w.failures[0].saturating_sub(1);
                }
                if outcome == Outcome::Success {
                    w.successes[1] = w.successes[1].saturating_add(1);
                }
            }
        }
        if self.config.login_failures > 0 {
            if outcome == Outcome::Success {
                s.pairs.remove(&(addr, user));
            } else if let Some(tat) = s.pairs.get_mut(&(addr, user)) {
                *tat = tat.checked_sub(interval).unwrap_or(now).max(now);
            }
        }
    }

    /// (address, user) pairs and addresses refused now, for the status
    /// page (a walk of the bounded stores).
    pub fn throttled(&self, now: Instant) -> (usize, usize) {
        let s = self.lock();
        let tolerance = self.window() - self.interval();
        let pairs = (s.pairs.values())
            .filter(|tat| tat.saturating_duration_since(now) > tolerance)
            .count();
        let addresses = (s.addresses.values())
            .filter(|w| {
                let mut w = **w;
                w.roll(now, self.window());
                self.cut_off(&w, now)
            })
            .count();
        (pairs, addresses)
    }

    /// Entries held (both stores).
    pub fn len(&self) -> usize {
        let s = self.lock();
        s.pairs.len() + s.addresses.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn whole_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests;
