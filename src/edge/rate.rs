//! Request rate limits per client address (`[rate_limit]`), with
//! governor's GCRA limiters keyed by [`client_key`]: one for all requests,
//! a tighter one for login POSTs. Memory stays bounded: every few seconds
//! [`RateLimits::sweep`] drops the addresses whose allowance is full again
//! (governor's store only grows otherwise), and past `max_clients` active
//! addresses every count starts over.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use super::client_key;
use crate::config::RateLimit;

type Limiter<C> =
    RateLimiter<IpAddr, DashMapStateStore<IpAddr>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// How often the store is swept at most.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Checks between two looks at whether a sweep is due.
const LOOK_EVERY: u64 = 1024;

/// Which limit a request went over.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Limit {
    Requests,
    Login,
}

/// A refusal: the limit, and whole seconds until a request would pass.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Limited {
    pub limit: Limit,
    pub retry_after: u64,
}

struct Limiters<C: Clock> {
    all: Option<Limiter<C>>,
    login: Option<Limiter<C>>,
}

/// The limiters of one `[rate_limit]` configuration.
pub struct RateLimits<C: Clock = DefaultClock> {
    config: RateLimit,
    clock: C,
    limiters: ArcSwap<Limiters<C>>,
    checks: AtomicU64,
    last_sweep: Mutex<C::Instant>,
    /// A sweep is under way (only one at a time).
    sweeping: AtomicBool,
}

impl RateLimits {
    pub fn new(config: &RateLimit) -> RateLimits {
        RateLimits::with_clock(config, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimits<C> {
    /// Limits on `clock` (a fake one in tests).
    pub fn with_clock(config: &RateLimit, clock: C) -> RateLimits<C> {
        RateLimits {
            config: config.clone(),
            limiters: ArcSwap::from_pointee(Self::limiters(config, &clock)),
            last_sweep: Mutex::new(clock.now()),
            clock,
            checks: AtomicU64::new(0),
            sweeping: AtomicBool::new(false),
        }
    }

    fn limiters(config: &RateLimit, clock: &C) -> Limiters<C> {
        let make = |quota: Option<Quota>| {
            quota.map(|q| RateLimiter::new(q, DashMapStateStore::default(), clock.clone()))
        };
        let all = NonZeroU32::new(config.requests_per_second)
            .zip(NonZeroU32::new(config.burst))
            .map(|(rate, burst)| Quota::per_second(rate).allow_burst(burst));
        let login = NonZeroU32::new(config.login_per_minute)
            .zip(NonZeroU32::new(config.login_burst))
            .map(|(rate, burst)| Quota::per_minute(rate).allow_burst(burst));
        Limiters {
            all: make(all),
            login: make(login),
        }
    }

    /// The configuration these limits enforce (a reload keeps the counts
    /// when it is unchanged).
    pub fn config(&self) -> &RateLimit {
        &self.config
    }

    /// Counts a request from `client` (a login POST when `login`); the
    /// limit on all requests only when `pressed` (the process is under
    /// pressure), the login cap always.
    pub fn check(&self, client: IpAddr, login: bool, pressed: bool) -> Result<(), Limited> {
        // The usual request: nothing applies, nothing to count.
        if !pressed && !login {
            return Ok(());
        }
        let key = client_key(client);
        let limiters = self.limiters.load();
        let check = |limiter: &Option<Limiter<C>>, limit| match limiter {
            Some(l) => l.check_key(&key).map_err(|not_until| {
                let wait = not_until.wait_time_from(self.clock.now());
                Limited {
                    limit,
                    retry_after: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                }
            }),
            None => Ok(()),
        };
        if pressed {
            check(&limiters.all, Limit::Requests)?;
        }
        if login {
            check(&limiters.login, Limit::Login)?;
        }
        Ok(())
    }

    /// Whether a sweep is due and none is under way (the caller then runs
    /// [`RateLimits::sweep`]): called on every request, it looks at the
    /// clock once per 1024 of them.
    pub fn sweep_due(&self) -> bool {
        if self.checks.fetch_add(1, Ordering::Relaxed) % LOOK_EVERY != LOOK_EVERY - 1 {
            return false;
        }
        let last = *self
            .last_sweep
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let elapsed: Duration = self.clock.now().duration_since(last).into();
        let due = elapsed >= SWEEP_EVERY || self.len() > self.config.max_clients;
        due && !self.sweeping.swap(true, Ordering::AcqRel)
    }

    /// Forgets the addresses whose allowance is full again; if more than
    /// `max_clients` remain, starts every count over.
    pub fn sweep(&self) {
        *self
            .last_sweep
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = self.clock.now();
        let limiters = self.limiters.load();
        for l in [&limiters.all, &limiters.login].into_iter().flatten() {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if self.len() > self.config.max_clients {
            tracing::warn!(
                clients = self.len(),
                max = self.config.max_clients,
                "rate limits: more active client addresses than max_clients; counts start over"
            );
            self.limiters
                .store(Arc::new(Self::limiters(&self.config, &self.clock)));
        }
        self.sweeping.store(false, Ordering::Release);
    }

    /// Addresses tracked now (both limiters).
    pub fn len(&self) -> usize {
        let limiters = self.limiters.load();
        [&limiters.all, &limiters.login]
            .into_iter()
            .flatten()
            .map(|l| l.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::net::Ipv4Addr;

    fn limits(rps: u32, burst: u32, login: u32, login_burst: u32) -> RateLimit {
        RateLimit {
            requests_per_second: rps,
            burst,
            login_per_minute: login,
            login_burst,
            max_clients: 1000,
            ..RateLimit::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Without pressure the rate on all requests holds no one back, and
    /// counts nothing; the login cap holds regardless.
    #[test]
    fn only_pressure_engages_the_request_rate() {
        let r = RateLimits::with_clock(&limits(1, 2, 1, 1), FakeRelativeClock::default());
        let a = ip("192.0.2.1");
        for _ in 0..100 {
            assert_eq!(r.check(a, false, false), Ok(()));
        }
        assert!(r.is_empty(), "counted without pressure");
        assert_eq!(r.check(a, true, false), Ok(()));
        assert!(r.check(a, true, false).is_err());
        assert_eq!(r.check(ip("192.0.2.2"), false, true), Ok(()));
        assert_eq!(r.check(ip("192.0.2.2"), false, true), Ok(()));
        assert!(r.check(ip("192.0.2.2"), false, true).is_err());
    }

    #[test]
    fn burst_then_429_then_recovery() {
        let clock = FakeRelativeClock::default();
        let r = RateLimits::with_clock(&limits(2, 4, 0, 0), clock.clone());
        let a = ip("192.0.2.1");
        for _ in 0..4 {
            assert_eq!(r.check(a, false, true), Ok(()));
        }
        let refused = r.check(a, false, true).unwrap_err();
        assert_eq!(refused.limit, Limit::Requests);
        // One request replenishes every 500 ms: Retry-After rounds up to 1 s.
        assert_eq!(refused.retry_after, 1);
        // Another address is not affected.
        assert_eq!(r.check(ip("192.0.2.2"), false, true), Ok(()));
        clock.advance(Duration::from_millis(500));
        assert_eq!(r.check(a, false, true), Ok(()));
        assert!(r.check(a, false, true).is_err());
        clock.advance(Duration::from_secs(2));
        for _ in 0..4 {
            assert_eq!(r.check(a, false, true), Ok(()));
        }
    }

    #[test]
    fn logins_have_their_own_tighter_limit() {
        let clock = FakeRelativeClock::default();
        let r = RateLimits::with_clock(&limits(100, 100, 6, 2), clock.clone());
        let a = ip("2001:db8:5:6::1");
        assert_eq!(r.check(a, true, true), Ok(()));
        // Same /64: the same client.
        assert_eq!(r.check(ip("2001:db8:5:6::2"), true, true), Ok(()));
        let refused = r.check(a, true, true).unwrap_err();
        assert_eq!(
            refused,
            Limited {
                limit: Limit::Login,
                retry_after: 10
            }
        );
        // Other requests from the same client still pass.
        assert_eq!(r.check(a, false, true), Ok(()));
        clock.advance(Duration::from_secs(10));
        assert_eq!(r.check(a, true, true), Ok(()));
    }

    #[test]
    fn a_rate_of_zero_is_off() {
        let r = RateLimits::with_clock(&limits(0, 1, 0, 1), FakeRelativeClock::default());
        for _ in 0..10_000 {
            assert_eq!(r.check(ip("192.0.2.1"), true, true), Ok(()));
        }
        assert!(r.is_empty());
    }

    /// 100,000 distinct addresses: the store holds them while their
    /// allowance is spent, and a sweep after it is full again leaves none.
    #[test]
    fn memory_is_bounded_under_many_addresses() {
        let clock = FakeRelativeClock::default();
        let mut config = limits(10, 20, 0, 0);
        config.max_clients = 1_000_000;
        let r = RateLimits::with_clock(&config, clock.clone());
        for i in 0..100_000u32 {
            let a = IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i));
            assert_eq!(r.check(a, false, true), Ok(()));
        }
        assert_eq!(r.len(), 100_000);
        clock.advance(Duration::from_secs(3));
        r.sweep();
        assert_eq!(r.len(), 0);
        // Past max_clients, counts start over rather than grow.
        config.max_clients = 1000;
        let r = RateLimits::with_clock(&config, clock.clone());
        for i in 0..5000u32 {
            let _ = r.check(IpAddr::V4(Ipv4Addr::from(0x0B00_0000 + i)), false, true);
        }
        r.sweep();
        assert_eq!(r.len(), 0);
        assert_eq!(
            r.check(IpAddr::V4(Ipv4Addr::from(0x0B00_0000)), false, true),
            Ok(())
        );
    }

    #[test]
    fn sweeps_are_due_every_few_seconds() {
        let clock = FakeRelativeClock::default();
        let r = RateLimits::with_clock(&limits(10, 20, 0, 0), clock.clone());
        let due = |r: &RateLimits<FakeRelativeClock>| (0..LOOK_EVERY).any(|_| r.sweep_due());
        assert!(!due(&r));
        clock.advance(SWEEP_EVERY);
        assert!(due(&r));
        // Due, but one is under way: not twice.
        assert!(!due(&r));
        r.sweep();
        assert!(!due(&r));
    }
}
