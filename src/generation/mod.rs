//! A generation: everything derived from one validated [`Config`], built
//! once and never changed (the routing table, each node's connection pool,
//! the node health table, the learned cookie table handle, each pool's
//! request rules, the limits, the listener's TLS configuration). The
//! process serves the current generation ([`crate::current`]); a reload
//! builds the next one and carries the state that still applies across
//! ([`takeover`]). A request holds the generation it started with to its end.
//!
//! What lives longer than a generation (metrics, the connection gate, the
//! rate-limit store, TLS ticket keys) is [`crate::state::ProcessState`].

pub mod takeover;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::header::HeaderValue;

use crate::client::ClientConn;
use crate::client_cert::CertHeaders;
use crate::config::{ClientCertHeaders, Config, HeaderRules, Limits, Listen, Scheme};
use crate::health::check::{Checker, Target};
use crate::health::HealthTable;
use crate::learned::LearnedTable;
use crate::metrics::{Handles, Metrics};
use crate::routing::path::servlet_path;
use crate::routing::{NodeId, PoolId, RoutingTable};
use crate::tls::ListenerTls;
use crate::upstream::{self, NodePool, NodeTls};

/// Errors building a generation from a configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Tls(#[from] upstream::TlsSetupError),
    /// The state directory's key was not given to the configuration
    /// ([`Config::prepare_state`]).
    #[error("pool `{0}`: the route cookie has no key (the state directory was not prepared)")]
    NoRouteKey(String),
}

/// One pool's rules for the requests it routes, beside the routing table.
#[derive(Debug)]
pub struct PoolRules {
    /// `host_override`: the `Host` sent instead of the client's.
    pub host_override: Option<HeaderValue>,
    /// `[pool.headers]`.
    pub headers: HeaderRules,
    /// `client_cert_required`.
    pub cert_required: bool,
    /// `client_cert_paths`: normalised paths, prefixes on segment
    /// boundaries.
    pub cert_paths: Vec<String>,
    /// `secure_cookies`.
    pub secure_cookies: bool,
    /// `login_username_field`.
    pub login_field: String,
}

impl PoolRules {
    /// Whether a request for `path` (servlet-mapped) needs a verified
    /// client certificate in this pool.
    pub fn needs_cert(&self, path: &str) -> bool {
        self.cert_required
            || self.cert_paths.iter().any(|p| {
                path.strip_prefix(p.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
    }
}

/// Everything one configuration serves with.
pub struct Generation {
    table: RoutingTable,
    /// Per node, in [`NodeId`] order.
    pools: Vec<Arc<NodePool>>,
    /// Some pool has `max_connections`: routing sees its full nodes.
    capped: bool,
    health: Arc<HealthTable>,
    learned: Arc<LearnedTable>,
    /// Drives the `any` rule's round robin.
    counter: AtomicU64,
    limits: Limits,
    listen: Listen,
    tls: Arc<ListenerTls>,
    admin_token: Option<String>,
    /// `[admin] hosts`: names the admin API answers to besides addresses.
    admin_hosts: Vec<String>,
    /// Per pool, in [`crate::routing::PoolId`] order.
    rules: Vec<PoolRules>,
    /// Some pool requires a client certificate somewhere: requests check.
    certs_required: bool,
    /// `[client_cert]`: what nodes are told of a client certificate.
    cert_headers: CertHeaders,
    /// Servlet-mapped paths whose POST is a password login attempt, with
    /// their pool.
    login_paths: Vec<(String, LoginKind, PoolId)>,
    access_log: bool,
    handles: Handles,
    /// Per node: pool, name and URL, which a reload matches.
    identity: Vec<String>,
    /// Per node: found in DNS (`[pool.discovery]`).
    from_dns: Vec<bool>,
}

impl Generation {
    /// Builds the generation of `config`, serving TLS with `tls` and
    /// counting into `metrics`. Every node starts up until a check (or the
    /// state carried by [`Generation::take_over`]) says otherwise.
    pub fn new(
        config: &Config,
        tls: ListenerTls,
        metrics: &Metrics,
    ) -> Result<Generation, BuildError> {
        let mut pools = Vec::new();
        for pool in &config.pools {
            if pool
                .route_cookie
                .as_ref()
                .is_some_and(|r| r.keys.is_empty())
            {
                return Err(BuildError::NoRouteKey(pool.name.clone()));
            }
            let https = pool.nodes.iter().any(|n| n.url.scheme == Scheme::Https);
            let client_tls = if https {
                Some(upstream::client_tls(pool)?)
            } else {
                None
            };
            for node in &pool.nodes {
                let tls = match (&client_tls, node.url.scheme) {
                    (Some(c), Scheme::Https) => Some(NodeTls::new(c.clone(), node)?),
                    _ => None,
                };
                pools.push(NodePool::new(
                    node.url.authority(),
                    pool.upstream.clone(),
                    tls,
                ));
            }
        }
        let table = RoutingTable::new(&config.routing());
        let rules: Vec<PoolRules> = config
            .pools
            .iter()
            .map(|p| PoolRules {
                // Validated as an authority when the configuration was read.
                host_override: p
                    .host_override
                    .as_deref()
                    .and_then(|h| HeaderValue::from_str(h).ok()),
                headers: p.headers.clone(),
                cert_required: p.client_cert.required,
                cert_paths: p.client_cert.paths.clone(),
                secure_cookies: p.secure_cookies,
                login_field: p.login_username_field.clone(),
            })
            .collect();
        Ok(Generation {
            handles: metrics.handles(&table),
            table,
            capped: config.pools.iter().any(|p| p.upstream.max_connections > 0),
            pools,
            health: Arc::new(HealthTable::new(&takeover::node_settings(config))),
            learned: Arc::new(LearnedTable::new(
                config.learned.capacity,
                config.learned.ttl,
            )),
            counter: AtomicU64::new(0),
            limits: config.limits.clone(),
            listen: config.listen.clone(),
            tls: Arc::new(tls),
            admin_token: config.admin.token.clone(),
            admin_hosts: config.admin.hosts.clone(),
            certs_required: rules
                .iter()
                .any(|r| r.cert_required || !r.cert_paths.is_empty()),
            rules,
            cert_headers: CertHeaders::new(&config.client_cert),
            login_paths: login_paths(config),
            access_log: config.log.access,
            identity: takeover::identities(config),
            from_dns: config.nodes().map(|(_, n)| n.from_dns).collect(),
        })
    }

    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// The connection pool of `node`.
    pub fn pool(&self, node: NodeId) -> Option<&Arc<NodePool>> {
        self.pools.get(usize::from(node))
    }

    /// Every node's pool, in [`NodeId`] order (health checks probe them).
    pub fn pools(&self) -> &[Arc<NodePool>] {
        &self.pools
    }

    /// Whether some pool caps its nodes' connections (`max_connections`).
    pub fn capped(&self) -> bool {
        self.capped
    }

    /// Active health checks of this generation's nodes (`targets`, from
    /// [`crate::health::check::targets`]), after a first round on every
    /// node not checked yet; they stop when the checker is dropped.
    pub async fn start_checks(&self, targets: Vec<Target>) -> Checker {
        Checker::start(&self.pools, self.health.clone(), targets).await
    }

    /// Every node's health (the checker records into it).
    pub fn health(&self) -> &Arc<HealthTable> {
        &self.health
    }

    /// The learned cookie table.
    pub fn learned(&self) -> &LearnedTable {
        &self.learned
    }

    /// The next round-robin pick, without moving on.
    pub fn pick(&self) -> u64 {
        self.counter.load(Ordering::Relaxed)
    }

    /// Moves the round robin on (when the `any` rule picked).
    pub fn picked(&self) {
        self.counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn listen(&self) -> &Listen {
        &self.listen
    }

    /// The listener's TLS configuration.
    pub fn tls(&self) -> &Arc<ListenerTls> {
        &self.tls
    }

    /// `[admin] token`: the bearer token the admin API's POSTs need.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    /// `[admin] hosts`.
    pub fn admin_hosts(&self) -> &[String] {
        &self.admin_hosts
    }

    /// The rules of pool `pool`.
    pub fn rules(&self, pool: crate::routing::PoolId) -> Option<&PoolRules> {
        self.rules.get(usize::from(pool))
    }

    /// Whether any pool requires a client certificate anywhere.
    pub fn certs_required(&self) -> bool {
        self.certs_required
    }

    /// `[client_cert]`: the headers nodes are told a certificate in.
    pub fn cert_headers(&self) -> &CertHeaders {
        &self.cert_headers
    }

    /// `[client_cert]`: how a connection's client certificate is told.
    pub fn cert_names(&self) -> &ClientCertHeaders {
        self.cert_headers.names()
    }

    /// Where `node` comes from: `"dns"` or `"config"`.
    pub fn node_source(&self, node: NodeId) -> &'static str {
        if self
            .from_dns
            .get(usize::from(node))
            .copied()
            .unwrap_or(false)
        {
            "dns"
        } else {
            "config"
        }
    }

    /// Whether `path` (servlet-mapped) is a pool's password login path,
    /// and which.
    pub fn login_kind(&self, mapped: &str) -> Option<(LoginKind, PoolId)> {
        (self.login_paths.iter())
            .find_map(|(p, kind, pool)| (**p == *mapped).then_some((*kind, *pool)))
    }

    /// Whether requests are logged (`[log] access`).
    pub fn access_log(&self) -> bool {
        self.access_log
    }

    /// This generation's metric series.
    pub fn handles(&self) -> &Handles {
        &self.handles
    }

    /// What casfront knows of a client connected from `peer` to
    /// `local_port`.
    pub fn client_conn(&self, peer: std::net::SocketAddr, local_port: u16) -> ClientConn {
        ClientConn::new(peer, local_port, self.listen.trusts(peer.ip()))
    }
}

/// A password login endpoint, by what its answers mean.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LoginKind {
    /// `/login`: the form (success: a TGT cookie).
    Form,
    /// `/v1/tickets`: REST (success: 201 with the TGT).
    RestTickets,
    /// `/v1/users`: REST, the user's attributes (success: 200).
    RestUsers,
    /// An OAuth or OIDC token endpoint, when `grant_type=password`.
    Token,
}

/// Paths whose POST is a password login attempt, per pool,
/// servlet-mapped.
fn login_paths(config: &Config) -> Vec<(String, LoginKind, PoolId)> {
    let mut paths = Vec::new();
    for (pool, id) in config.pools.iter().zip(0..=PoolId::MAX) {
        for (path, kind) in [
            ("/login", LoginKind::Form),
            ("/v1/tickets", LoginKind::RestTickets),
            ("/v1/users", LoginKind::RestUsers),
            ("/oauth2.0/accessToken", LoginKind::Token),
            ("/oauth2.0/token", LoginKind::Token),
            ("/oidc/token", LoginKind::Token),
            ("/oidc/accessToken", LoginKind::Token),
        ] {
            let full = format!("{}{path}", pool.path_prefix.trim_end_matches('/'));
            paths.push((servlet_path(&full).into_owned(), kind, id));
        }
    }
    paths
}
