//! Prometheus metrics (`GET /metrics` on the admin listener). [`Metrics`]
//! lives as long as the process, across reloads; each configuration's
//! proxy takes [`Handles`] from it: its counters and histograms looked up
//! once per node, so that a request costs a few relaxed atomic increments
//! and no map lookup. Names are in [`names`]; the histogram in [`hist`].

pub mod hist;
pub mod names;

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::routing::{Cause, Falls, NodeId, NodeState, PoolId, RoutingTable, Rule, ENTRIES};
pub use hist::Histogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    pool: String,
    node: String,
    rule: &'static str,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FallLabels {
    pool: String,
    entry: &'static str,
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    pool: String,
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    pool: String,
    node: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    pool: String,
    node: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabels {
    source: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

const RULES: [Rule; 5] = [Rule::Ticket, Rule::Pgt, Rule::Tgc, Rule::Session, Rule::Any];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const CAUSES: [&str; 9] = [
    "no_value",
    "not_ticket",
    "too_long",
    "unknown_suffix",
    "unknown_route",
    "not_learned",
    "owner_unusable",
    "unknown_member",
    "bad_route_cookie",
];
const STATES: [NodeState; 4] = [
    NodeState::Healthy,
    NodeState::Draining,
    NodeState::Down,
    NodeState::Disabled,
];

/// Why a node did not answer.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No connection (TCP or TLS) could be made.
    Connect = 0,
    /// The connection failed while the request was sent or answered.
    Send = 1,
    /// No response within `response_timeout`.
    Timeout = 2,
    /// No connection under `max_connections` came free in `queue_timeout`.
    Queue = 3,
}
const FAILURES: [&str; 4] = ["connect", "send", "timeout", "queue"];

/// What casfront refused at the edge, before any node saw it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A connection over `max_connections_per_ip`.
    ConnectionsPerIp = 0,
    /// A connection from a PROXY peer without a valid header in time.
    ProxyHeader = 1,
    /// 429 over `requests_per_second`.
    RateLimit = 2,
    /// 429 over `login_per_minute`.
    LoginRateLimit = 3,
    /// 421: a host name not in `listen.hosts`.
    Host = 4,
    /// 400: no `Host`, or one the absolute URI contradicts.
    BadTarget = 5,
    /// 414 over `max_uri`.
    UriTooLong = 6,
    /// An HTTP/2 connection closed after `h2_max_resets` cancelled streams.
    H2Resets = 7,
    /// A connection dropped after a response waited `send_timeout` on it.
    SendTimeout = 8,
    /// 403: a path that needs a verified client certificate, without one.
    ClientCert = 9,
    /// 429: a login attempt the failed-login throttle holds back.
    LoginThrottled = 10,
}
const REFUSALS: [&str; 11] = [
    "connections_per_ip",
    "proxy_header",
    "rate_limit",
    "login_rate_limit",
    "host",
    "bad_target",
    "uri_too_long",
    "h2_resets",
    "send_timeout",
    "client_cert",
    "login_throttled",
];

/// Client certificates examined after handshakes, by `ssl_client_verify`.
const CERT_STATUSES: [&str; 3] = ["verified", "none", "failed"];
/// Login attempts a node answered, by [`crate::edge::logins::Outcome`].
const LOGIN_RESULTS: [&str; 3] = ["success", "failure", "other"];

fn cause_index(c: Cause) -> usize {
    match c {
        Cause::NoValue => 0,
        Cause::NotTicket => 1,
        Cause::TooLong => 2,
        Cause::UnknownSuffix => 3,
        Cause::UnknownRoute => 4,
        Cause::NotLearned => 5,
        Cause::Unusable(_) => 6,
        Cause::UnknownMember => 7,
        Cause::BadRouteCookie => 8,
    }
}

/// `RULES`, `CAUSES` and `FAILURES` are indexed by discriminant.
#[cfg(test)]
mod tests;

fn class_index(status: u16) -> usize {
    usize::from(status / 100).clamp(1, CLASSES.len()) - 1
}

/// The process's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    fallthroughs: Family<FallLabels, Counter>,
    upstream: Family<NodeLabels, Histogram>,
    failures: Family<FailureLabels, Counter>,
    /// Open client connections (TLS or not yet).
    pub client_connections: Gauge,
    /// Of those, idle HTTP/1 ones parked without buffers.
    pub client_connections_parked: Gauge,
    pub tls_handshake_failures: Counter,
    node_state: Family<StateLabels, Gauge>,
    learned: Gauge,
    reloads: Family<ResultLabels, Counter>,
    /// Indexed by [`Refusal`].
    refusals: Vec<Counter>,
    /// Indexed as `CERT_STATUSES`.
    client_certs: Vec<Counter>,
    /// Indexed as `LOGIN_RESULTS`.
    logins: Vec<Counter>,
    /// DNS answers for `[pool.discovery]` that failed or named no node.
    discovery_failures: Counter,
    /// Seconds until each served certificate expires.
    certificate_expiry: Family<CertificateLabels, Gauge>,
    /// One scrape at a time: a scrape clears and refills the state and
    /// certificate gauges.
    scrape: std::sync::Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            fallthroughs: Family::default(),
            upstream: Family::default(),
            failures: Family::default(),
            client_connections: Gauge::default(),
            client_connections_parked: Gauge::default(),
            tls_handshake_failures: Counter::default(),
            node_state: Family::default(),
            learned: Gauge::default(),
            reloads: Family::default(),
            refusals: Vec::new(),
            client_certs: Vec::new(),
            logins: Vec::new(),
            discovery_failures: Counter::default(),
            certificate_expiry: Family::default(),
            scrape: std::sync::Mutex::new(()),
        };
        let mut r = Registry::default();
        r.register(
            names::REQUESTS,
            "Requests answered, by pool, node, routing rule and status class",
            m.requests.clone(),
        );
        r.register(
            names::FALLTHROUGHS,
            "Extractor entries that applied to a request and did not decide, by cause",
            m.fallthroughs.clone(),
        );
        r.register(
            names::UPSTREAM_DURATION,
            "Time from sending a request to a node to its response headers",
            m.upstream.clone(),
        );
        r.register(
            names::UPSTREAM_FAILURES,
            "Requests a node did not answer: connect, send, timeout, or queue (none of its max_connections came free)",
            m.failures.clone(),
        );
        r.register(
            names::CLIENT_CONNECTIONS,
            "Open client connections",
            m.client_connections.clone(),
        );
        r.register(
            names::CLIENT_CONNECTIONS_PARKED,
            "Idle HTTP/1 client connections parked (their buffers freed until the next request)",
            m.client_connections_parked.clone(),
        );
        r.register(
            names::TLS_HANDSHAKE_FAILURES,
            "Client TLS handshakes that failed or timed out",
            m.tls_handshake_failures.clone(),
        );
        r.register(
            names::NODE_STATE,
            "1 for each node's current state (healthy, draining, down, disabled)",
            m.node_state.clone(),
        );
        r.register(
            names::LEARNED_ENTRIES,
            "Entries in the learned cookie table",
            m.learned.clone(),
        );
        r.register(
            names::RELOADS,
            "Configuration reloads, by result (ok, failed)",
            m.reloads.clone(),
        );
        let refusals: Family<ReasonLabels, Counter> = Family::default();
        r.register(
            names::REFUSALS,
            "What casfront refused before any node saw it, by reason",
            refusals.clone(),
        );
        let refusals = REFUSALS
            .iter()
            .map(|&reason| refusals.get_or_create_owned(&ReasonLabels { reason }))
            .collect();
        let certs: Family<StatusLabels, Counter> = Family::default();
        r.register(
            names::CLIENT_CERTIFICATES,
            "TLS connections by client certificate status (verified, none, failed)",
            certs.clone(),
        );
        let client_certs = CERT_STATUSES
            .iter()
            .map(|&status| certs.get_or_create_owned(&StatusLabels { status }))
            .collect();
        let logins: Family<ResultLabels, Counter> = Family::default();
        r.register(
            names::LOGIN_ATTEMPTS,
            "Login attempts (password POSTs) nodes answered, by result (success, failure, other)",
            logins.clone(),
        );
        let logins = LOGIN_RESULTS
            .iter()
            .map(|&result| logins.get_or_create_owned(&ResultLabels { result }))
            .collect();
        r.register(
            names::DISCOVERY_FAILURES,
            "DNS answers for [pool.discovery] that failed or named no node (the last known nodes stay)",
            m.discovery_failures.clone(),
        );
        r.register(
            names::CERTIFICATE_EXPIRY,
            "Seconds until each certificate served expires (negative: expired)",
            m.certificate_expiry.clone(),
        );
        Metrics {
            registry: r,
            refusals,
            client_certs,
            logins,
            ..m
        }
    }

    /// A configuration's handles: every series of its nodes made now.
    pub fn handles(&self, table: &RoutingTable) -> Handles {
        let pool_name = |p: PoolId| table.pool(p).map_or("", |p| p.name.as_str()).to_owned();
        let mut requests = Vec::new();
        let mut upstream = Vec::new();
        let mut failures = Vec::new();
        for n in table.nodes() {
            let (pool, node) = (pool_name(n.pool), n.name.clone());
            for rule in RULES {
                for class in CLASSES {
                    requests.push(self.requests.get_or_create_owned(&RequestLabels {
                        pool: pool.clone(),
                        node: node.clone(),
                        rule: rule.as_str(),
                        class,
                    }));
                }
            }
            upstream.push(self.upstream.get_or_create_owned(&NodeLabels {
                pool: pool.clone(),
                node: node.clone(),
            }));
            for kind in FAILURES {
                failures.push(self.failures.get_or_create_owned(&FailureLabels {
                    pool: pool.clone(),
                    node: node.clone(),
                    kind,
                }));
            }
        }
        let mut falls = Vec::new();
        for p in table.pools() {
            for e in ENTRIES {
                for cause in CAUSES {
                    falls.push(self.fallthroughs.get_or_create_owned(&FallLabels {
                        pool: p.name.clone(),
                        entry: e.name,
                        cause,
                    }));
                }
            }
        }
        Handles {
            requests,
            upstream,
            failures,
            falls,
            pool_names: table.pools().iter().map(|p| p.name.clone()).collect(),
            unrouted: self.requests.clone(),
        }
    }

    /// Counts a reload.
    pub fn reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// Counts a refusal.
    pub fn refused(&self, why: Refusal) {
        if let Some(c) = self.refusals.get(why as usize) {
            c.inc();
        }
    }

    /// Counts a connection's client certificate status.
    pub fn discovery_failed(&self) {
        self.discovery_failures.inc();
    }

    pub fn login(&self, outcome: crate::edge::logins::Outcome) {
        if let Some(c) = self.logins.get(outcome as usize) {
            c.inc();
        }
    }

    pub fn client_cert(&self, status: crate::client_cert::Status) {
        use crate::client_cert::Status;
        let i = match status {
            Status::Verified => 0,
            Status::None => 1,
            Status::Failed(_) => 2,
        };
        if let Some(c) = self.client_certs.get(i) {
            c.inc();
        }
    }

    /// Refusals so far for `why`.
    pub fn refusals(&self, why: Refusal) -> u64 {
        self.refusals.get(why as usize).map_or(0, Counter::get)
    }

    /// Reloads so far: (ok, failed).
    pub fn reloads(&self) -> (u64, u64) {
        let get = |result| self.reloads.get_or_create(&ResultLabels { result }).get();
        (get("ok"), get("failed"))
    }

    /// Sets the certificate expiry gauge for the certificates served now:
    /// `(source, name, not_after)` each, `now` and `not_after` in seconds
    /// since the Unix epoch. Certificates no longer served disappear.
    pub fn certificates<'a>(
        &self,
        served: impl Iterator<Item = (&'a str, &'a str, i64)>,
        now: i64,
    ) {
        // Under the scrape lock, as the state gauge: no scrape encodes it
        // half refilled.
        let _one = self
            .scrape
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.certificate_expiry.clear();
        for (source, name, not_after) in served {
            let labels = CertificateLabels {
                source: source.to_owned(),
                name: name.to_owned(),
            };
            self.certificate_expiry
                .get_or_create(&labels)
                .set(not_after.saturating_sub(now));
        }
    }

    /// The Prometheus text exposition, after setting the gauges read from
    /// `table`, `state` (every node's state) and `learned` (table size).
    pub fn encode(
        &self,
        table: &RoutingTable,
        state: impl Fn(NodeId) -> NodeState,
        learned: usize,
    ) -> String {
        let _one = self
            .scrape
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Nodes a reload removed disappear from the state gauge.
        self.node_state.clear();
        for (id, n) in table.node_ids() {
            let pool = table.pool(n.pool).map_or("", |p| p.name.as_str());
            let now = state(id);
            for s in STATES {
                self.node_state
                    .get_or_create(&StateLabels {
                        pool: pool.to_owned(),
                        node: n.name.clone(),
                        state: s.as_str(),
                    })
                    .set(i64::from(s == now));
            }
        }
        self.learned.set(i64::try_from(learned).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// One configuration's series, indexed by node, rule, class, entry, cause.
pub struct Handles {
    requests: Vec<Counter>,
    upstream: Vec<Histogram>,
    failures: Vec<Counter>,
    falls: Vec<Counter>,
    pool_names: Vec<String>,
    /// Requests no node answered (404 without a pool, 503 without a node).
    unrouted: Family<RequestLabels, Counter>,
}

impl Handles {
    /// A request `node` answered with `status`, chosen by `rule`.
    pub fn request(&self, node: NodeId, rule: Rule, status: u16) {
        let i =
            (usize::from(node) * RULES.len() + rule as usize) * CLASSES.len() + class_index(status);
        if let Some(c) = self.requests.get(i) {
            c.inc();
        }
    }

    /// A request casfront answered itself: no pool, no usable node, or
    /// the node failed (counted in its failures).
    pub fn unrouted(&self, pool: Option<PoolId>, status: u16) {
        let pool = pool
            .and_then(|p| self.pool_names.get(usize::from(p)))
            .map_or("none", |p| p.as_str());
        self.unrouted
            .get_or_create(&RequestLabels {
                pool: pool.to_owned(),
                node: "none".to_owned(),
                rule: "none",
                class: CLASSES[class_index(status)],
            })
            .inc();
    }

    pub fn falls(&self, pool: PoolId, falls: &Falls) {
        for f in falls.iter() {
            let i = (usize::from(pool) * ENTRIES.len() + usize::from(f.entry)) * CAUSES.len()
                + cause_index(f.cause);
            if let Some(c) = self.falls.get(i) {
                c.inc();
            }
        }
    }

    pub fn upstream(&self, node: NodeId, took: Duration) {
        if let Some(h) = self.upstream.get(usize::from(node)) {
            h.observe(took);
        }
    }

    pub fn failure(&self, node: NodeId, kind: Failure) {
        if let Some(c) = self
            .failures
            .get(usize::from(node) * FAILURES.len() + kind as usize)
        {
            c.inc();
        }
    }

    /// For the status page: `node`'s requests (answers), errors (its 5xx
    /// answers and its failures: connects, sends, timeouts, queue
    /// timeouts) and latency histogram.
    pub fn node_summary(&self, node: NodeId) -> (u64, u64, Option<&Histogram>) {
        let per_node = RULES.len() * CLASSES.len();
        let start = usize::from(node) * per_node;
        let mine = self.requests.get(start..start + per_node).unwrap_or(&[]);
        let total = mine.iter().map(Counter::get).sum();
        let five = mine
            .iter()
            .skip(CLASSES.len() - 1)
            .step_by(CLASSES.len())
            .map(Counter::get)
            .sum::<u64>();
        let f = usize::from(node) * FAILURES.len();
        let failed: u64 = self
            .failures
            .get(f..f + FAILURES.len())
            .unwrap_or(&[])
            .iter()
            .map(Counter::get)
            .sum();
        (total, five + failed, self.upstream.get(usize::from(node)))
    }
}
