//! Process state: what lives as long as the process, across every
//! generation ([`crate::generation`]): the metrics, the connection gate
//! (client connections of every listener, against the `[limits]` caps),
//! the rate-limit store and the failed-login throttle (per client
//! address), the requests in flight (with the open connections, the
//! pressure that engages the per-address caps), and the TLS session cache
//! and ticket keys, so that resumption survives a reload.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{Config, Keep, Limits};
use crate::edge::gate::Gate;
use crate::edge::logins::LoginThrottle;
use crate::edge::rate::RateLimits;
use crate::metrics::Metrics;
use crate::tls::{tickets, Resumption, TlsError};

/// The process's long-lived state.
pub struct ProcessState {
    pub metrics: Arc<Metrics>,
    /// Client connections of every listener, against `[limits]` caps.
    pub gate: Arc<Gate>,
    /// Request and login counts per client address (`[rate_limit]`).
    rate: ArcSwap<RateLimits>,
    /// Failed logins per address and user (`[rate_limit]`).
    logins: ArcSwap<LoginThrottle>,
    /// Requests between admission and their response's headers.
    in_flight: AtomicUsize,
    /// Pools (by name) whose nodes answered a failed form login with 401
    /// (CAS 5 and later): a 200 without a TGT is then a further step.
    says_401: std::sync::RwLock<std::collections::HashSet<String>>,
    /// The TLS session cache and ticket keys every generation's listener
    /// configuration shares.
    pub resumption: Resumption,
    /// Shutting down: no new connections (`/ready` says so).
    stopping: AtomicBool,
}

impl ProcessState {
    /// Fresh state for a process serving `config`, its TLS ticket keys
    /// kept in the state directory or in memory as `keep` says.
    pub fn new(config: &Config, keep: Keep) -> Result<Arc<ProcessState>, TlsError> {
        let store = match keep {
            Keep::OnDisk => tickets::Store::Directory(config.state.ticket_keys()),
            Keep::InMemory => tickets::Store::Memory,
        };
        let (resumption, why) = Resumption::new(store)?;
        if let Some(why) = why {
            say!("casfront: TLS ticket keys in memory only, sessions will not resume after a restart: {why}");
        }
        Ok(Arc::new(ProcessState {
            metrics: Arc::new(Metrics::new()),
            gate: Gate::new(),
            rate: ArcSwap::from_pointee(RateLimits::new(&config.rate_limit)),
            logins: ArcSwap::from_pointee(LoginThrottle::new(&config.rate_limit)),
            in_flight: AtomicUsize::new(0),
            says_401: Default::default(),
            resumption,
            stopping: AtomicBool::new(false),
        }))
    }

    /// The process is shutting down: it takes no new connections.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// The rate-limit store in force (one atomic load, no lock).
    pub fn rate(&self) -> arc_swap::Guard<Arc<RateLimits>> {
        self.rate.load()
    }

    /// The failed-login throttle in force.
    pub fn logins(&self) -> arc_swap::Guard<Arc<LoginThrottle>> {
        self.logins.load()
    }

    /// Whether pool `pool`'s nodes answer a failed form login with 401.
    pub fn says_401(&self, pool: &str) -> bool {
        let pools = self
            .says_401
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pools.contains(pool)
    }

    /// A node of `pool` answered a form login with 401.
    pub fn heard_401(&self, pool: &str) {
        if !self.says_401(pool) {
            let mut pools = self
                .says_401
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            pools.insert(pool.to_owned());
        }
    }

    /// Counts a request in flight until the guard drops.
    pub fn flight(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.in_flight)
    }

    /// Whether the per-address caps apply now: connections open plus
    /// requests in flight reach `limits.pressure` of `max_connections`.
    pub fn under_pressure(&self, limits: &Limits) -> bool {
        let load = self.gate.open() + self.in_flight.load(Ordering::Relaxed);
        load as f64 >= limits.pressure * limits.max_connections as f64
    }

    /// For a reload to `config`: the rate counts and login failures are
    /// kept unless `[rate_limit]` changed (a client that spent its
    /// allowance does not get it back by a reload); then they start afresh.
    pub fn reconfigure(&self, config: &Config) {
        if *self.rate.load().config() != config.rate_limit {
            self.rate
                .store(Arc::new(RateLimits::new(&config.rate_limit)));
        }
        if *self.logins.load().config() != config.rate_limit {
            self.logins
                .store(Arc::new(LoginThrottle::new(&config.rate_limit)));
        }
    }
}

/// A request in flight ([`ProcessState::flight`]).
pub struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::path::Path;

    use super::*;

    fn config(rate: &str) -> Config {
        let text = format!(
            "[listen]\nhttps = \"127.0.0.1:0\"\n[tls]\ncert = \"c\"\nkey = \"k\"\n\
             [rate_limit]\n{rate}\n\
             [[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n\
             [[pool.node]]\nname = \"cas1\"\nurl = \"http://127.0.0.1:1\"\n"
        );
        crate::config::parse(&text, Path::new("."))
            .config
            .expect("valid")
    }

    /// A client that spent its allowance before a reload has not got it
    /// back after one, unless `[rate_limit]` changed.
    #[test]
    fn rate_counts_survive_a_reload_that_keeps_the_limits() {
        let client: IpAddr = "192.0.2.1".parse().expect("an address");
        let state = ProcessState::new(
            &config("requests_per_second = 1\nburst = 2"),
            Keep::InMemory,
        )
        .expect("state");
        for _ in 0..2 {
            assert!(state.rate().check(client, false, true).is_ok());
        }
        assert!(state.rate().check(client, false, true).is_err());
        state.reconfigure(&config("requests_per_second = 1\nburst = 2"));
        assert!(state.rate().check(client, false, true).is_err());
        state.reconfigure(&config("requests_per_second = 1\nburst = 3"));
        assert!(state.rate().check(client, false, true).is_ok());
    }
}
