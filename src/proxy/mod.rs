//! The request path: route each request with the routing core, send it to
//! the chosen node's pool, fail over when no connection to that node can be
//! made (nothing was sent, so any method may go elsewhere), and answer
//! 404/502/503/504 with short bodies that never name a node's address.
//! On the way, the client certificate headers are set (after every header
//! rule, so none can forge them); on the way back, the TGT and session
//! cookies a node sets are learned and, with `[pool.route_cookie]`,
//! followed by casfront's sealed route cookie.
//! Node states come from [`crate::health`].
//! Submodules: [`upstream`] (per-node connection pools), [`forward`] (header
//! rewriting), [`body`] (request bodies, with a replayed prefix),
//! [`learned`] (the learned cookie table); `carry` (what a reload keeps),
//! `admit` (what a request must pass before it is routed).

mod admit;
pub mod body;
pub mod carry;
pub mod forward;
pub mod learned;
mod spare;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{header, HeaderMap, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::client_cert::{CertHeaders, ClientCert};
use crate::config::{ClientCertHeaders, Config, HeaderRules, Limits, Listen, Scheme};
use crate::edge::rate::RateLimits;
use crate::health::Health;
use crate::metrics::{Failure, Handles, Metrics};
use crate::routing::cert::CertIdentity;
use crate::routing::{
    route, Cause, Decision, EntryId, Headers, How, Method, NodeId, NodeState, NodeStates, PoolId,
    RequestView, RoutingTable, Rule,
};
use body::{read_prefix, RequestBody};
use forward::{prepare_request, prepare_response, request_rules, response_rules, ClientInfo};
use learned::LearnedTable;
use upstream::{Conn, NodePool, NodeTls, PooledBody, SendError, UpstreamError};

/// What casfront answers with: a node's streamed body, or a short local one.
pub type ProxyBody = Either<PooledBody, Full<Bytes>>;

/// The request headers as the routing core reads them.
struct HeaderView<'a>(&'a HeaderMap);

impl Headers for HeaderView<'_> {
    fn values<'s>(&'s self, lowercase_name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.0.get_all(lowercase_name).iter().map(|v| v.as_bytes())
    }
}

/// Errors building the data plane from a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Tls(#[from] upstream::TlsSetupError),
}

/// What became of a request, for metrics and the access log.
#[derive(Copy, Clone, Debug, Default)]
pub struct Outcome {
    pub pool: Option<PoolId>,
    pub node: Option<NodeId>,
    pub rule: Option<Rule>,
    pub entry: Option<EntryId>,
    pub how: Option<How>,
    /// Why the first applicable entry fell through, if one did.
    pub cause: Option<Cause>,
    /// The node answered (else casfront did: 404, 502, 503, 504).
    pub answered: bool,
}

/// Everything a request needs, shared by all connections.
pub struct Proxy {
    table: RoutingTable,
    pools: Vec<Arc<NodePool>>,
    /// Some pool has `max_connections`: routing sees its full nodes.
    capped: bool,
    health: Health,
    learned: Arc<LearnedTable>,
    counter: AtomicU64,
    limits: Limits,
    listen: Listen,
    /// Per pool: the `Host` sent instead of the client's.
    host_override: Vec<Option<HeaderValue>>,
    metrics: Arc<Metrics>,
    handles: Handles,
    /// Per node: pool, name and URL, which a reload matches.
    identity: Vec<String>,
    access_log: bool,
    rate: Arc<RateLimits>,
    /// Paths whose POST counts against the login rate.
    login_paths: Vec<String>,
    /// Per pool: `[pool.headers]`.
    header_rules: Vec<HeaderRules>,
    /// Per pool: where a verified client certificate is required.
    cert_rules: Vec<admit::PoolCertRule>,
    /// `[client_cert]`: what nodes are told of a client certificate.
    cert_headers: CertHeaders,
}

impl Proxy {
    /// A proxy with metrics of its own (tests, the demo).
    pub fn new(config: &Config) -> Result<Proxy, ProxyError> {
        Proxy::with_metrics(config, Arc::new(Metrics::new()))
    }

    /// A proxy counting into `metrics`, which outlive reloads.
    pub fn with_metrics(config: &Config, metrics: Arc<Metrics>) -> Result<Proxy, ProxyError> {
        let mut pools = Vec::new();
        for pool in &config.pools {
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
        let settings = carry::node_settings(config);
        // Validated as an authority when the configuration was read.
        let host_override = config
            .pools
            .iter()
            .map(|p| {
                p.host_override
                    .as_deref()
                    .and_then(|h| HeaderValue::from_str(h).ok())
            })
            .collect();
        let table = RoutingTable::new(config);
        let handles = metrics.handles(&table);
        let health = Health::new(&settings);
        Ok(Proxy {
            table,
            capped: config.pools.iter().any(|p| p.upstream.max_connections > 0),
            pools,
            health,
            learned: Arc::new(LearnedTable::new(
                config.learned.capacity,
                config.learned.ttl,
            )),
            counter: AtomicU64::new(0),
            limits: config.limits.clone(),
            listen: config.listen.clone(),
            host_override,
            metrics,
            handles,
            identity: carry::identities(config),
            access_log: config.log.access,
            rate: Arc::new(RateLimits::new(&config.rate_limit)),
            login_paths: admit::login_paths(config),
            header_rules: config.pools.iter().map(|p| p.headers.clone()).collect(),
            cert_rules: admit::PoolCertRule::of(config),
            cert_headers: CertHeaders::new(&config.client_cert),
        })
    }

    /// Whether requests are logged (`[log] access`).
    pub fn access_log(&self) -> bool {
        self.access_log
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn listen(&self) -> &Listen {
        &self.listen
    }

    /// `[client_cert]`: how a connection's client certificate is told.
    pub fn cert_names(&self) -> &ClientCertHeaders {
        self.cert_headers.names()
    }

    /// The process's metrics (shared by every configuration).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// This configuration's metric series.
    pub fn handles(&self) -> &Handles {
        &self.handles
    }

    /// What casfront knows of a client connected from `peer` to `local_port`.
    pub fn client_info(&self, peer: SocketAddr, local_port: u16) -> ClientInfo {
        ClientInfo::new(peer, local_port, self.listen.trusts(peer.ip()))
    }

    /// The pool of `node` (tests, metrics).
    pub fn pool(&self, node: NodeId) -> Option<&Arc<NodePool>> {
        self.pools.get(usize::from(node))
    }

    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// Every node's health (the checker records into it).
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Serves one request and counts it.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        client: &ClientInfo,
    ) -> (Response<ProxyBody>, Outcome) {
        let mut out = Outcome::default();
        let resp = self.forward(req, client, &mut out).await;
        let status = resp.status().as_u16();
        // A node's failures are counted apart (`upstream_failures`), so
        // `requests` counts what nodes answered.
        match (out.node, out.rule) {
            (Some(node), Some(rule)) if out.answered => self.handles.request(node, rule, status),
            _ => self.handles.unrouted(out.pool, status),
        }
        (resp, out)
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        client: &ClientInfo,
        out: &mut Outcome,
    ) -> Response<ProxyBody> {
        let (parts, body) = req.into_parts();
        if let Some(refused) = self.admit(&parts, client) {
            return refused;
        }
        let method = Method::from_bytes(parts.method.as_str().as_bytes());
        let cert = client.cert.as_ref().and_then(ClientCert::identity);
        let wants_body = self.table.wants_body(
            method,
            parts.uri.path().as_bytes(),
            parts.uri.query().map(str::as_bytes),
            cert,
        );
        let (prefix, body) = if wants_body {
            match read_prefix(body, self.limits.body_prefix, self.limits.body_wait).await {
                Ok(read) => read,
                Err(_) => {
                    return local(
                        StatusCode::BAD_REQUEST,
                        "casfront: the request body could not be read\n",
                    )
                }
            }
        } else {
            (Bytes::new(), RequestBody::Streamed(body))
        };
        let mut req = Request::from_parts(parts, body);
        prepare_request(&mut req, client);
        // Attempts after the first take a new connection: the node that
        // closed one pooled connection may have closed them all.
        let mut again = 0u8;
        loop {
            let body = wants_body.then(|| (&prefix[..], req.body().cut()));
            let chosen = self.connect(&req, method, body, cert, again > 0, out).await;
            let (pool_id, node, pool, conn) = match chosen {
                Ok(chosen) => chosen,
                Err(resp) => return resp,
            };
            if let Some(Some(host)) = self.host_override.get(usize::from(pool_id)) {
                req.headers_mut().insert(header::HOST, host.clone());
            }
            let rules = self.header_rules.get(usize::from(pool_id));
            if let Some(rules) = rules {
                request_rules(rules, req.headers_mut());
            }
            // Last, so that no header rule can set them either.
            self.cert_headers
                .apply(req.headers_mut(), client.cert.as_ref());
            // Kept aside to forget a cookie the node expires (its Set-Cookie
            // then carries an empty value). One header after `prepare_request`.
            let sent_cookies = req.headers().get(header::COOKIE).cloned();
            let sent_at = Instant::now();
            match pool.send(conn, req).await {
                Ok(resp) => {
                    out.answered = true;
                    self.handles.upstream(node, sent_at.elapsed());
                    let mut resp = resp.map(Either::Left);
                    prepare_response(&mut resp);
                    let route = self
                        .learn(pool_id, node, resp.headers(), sent_cookies.as_ref())
                        .and_then(|followed| self.route_cookie(pool_id, node, followed));
                    if let Some(route) = route {
                        resp.headers_mut().append(header::SET_COOKIE, route);
                    }
                    if let Some(rules) = rules {
                        response_rules(rules, resp.headers_mut());
                    }
                    return resp;
                }
                Err(SendError::Again {
                    req: back,
                    node_failed,
                }) => {
                    if node_failed {
                        self.handles.failure(node, Failure::Send);
                        self.health.mark_down(node);
                    }
                    if again == 2 {
                        return local(StatusCode::BAD_GATEWAY, "casfront: the CAS node failed\n");
                    }
                    (req, again) = (*back, again + 1);
                }
                Err(SendError::Failed(UpstreamError::ResponseTimeout(_))) => {
                    self.handles.failure(node, Failure::Timeout);
                    return local(
                        StatusCode::GATEWAY_TIMEOUT,
                        "casfront: the CAS node did not answer in time\n",
                    );
                }
                Err(SendError::Failed(e)) if e.client_side() => {
                    // The node got an incomplete request: not its failure.
                    return local(
                        StatusCode::BAD_REQUEST,
                        "casfront: the request body was malformed or cut short\n",
                    );
                }
                Err(SendError::Failed(_)) => {
                    self.handles.failure(node, Failure::Send);
                    return local(StatusCode::BAD_GATEWAY, "casfront: the CAS node failed\n");
                }
            }
        }
    }

    /// Routes `req` and takes a connection to the chosen node (`fresh`: a
    /// new one, not a pooled one); routes again without a node whose
    /// connection failed (nothing was sent, so any method may go
    /// elsewhere), at most once per node of the pool: a node whose
    /// cool-down ends while the others are tried must not make this loop
    /// forever. The error is the response to give. `out` gets the last
    /// decision; fall-throughs are counted once per request.
    async fn connect(
        &self,
        req: &Request<RequestBody>,
        method: Method,
        // The body prefix, and whether the body goes on past it.
        body: Option<(&[u8], bool)>,
        cert: Option<&CertIdentity>,
        fresh: bool,
        out: &mut Outcome,
    ) -> Result<(PoolId, NodeId, &Arc<NodePool>, Conn), Response<ProxyBody>> {
        let mut failed = 0usize;
        loop {
            let (pool_id, node) = {
                let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
                let headers = HeaderView(req.headers());
                let mut view =
                    RequestView::new(method, target.as_bytes(), &headers).with_cert(cert);
                if let Some((body, cut)) = body {
                    view = view.with_body(body).cut(cut);
                }
                // The counter moves only when `any` picks: advancing it on
                // every request would alias with the requests of a login.
                let pick = self.counter.load(Ordering::Relaxed);
                let d = self.route(&view, pick);
                if d.entry.is_none() {
                    self.counter.fetch_add(1, Ordering::Relaxed);
                }
                if failed == 0 && !fresh {
                    if let Some(p) = d.pool {
                        self.handles.falls(p, &d.falls);
                    }
                }
                *out = Outcome {
                    pool: d.pool,
                    node: d.node,
                    rule: d.rule,
                    entry: d.entry,
                    how: d.how,
                    cause: d.falls.iter().next().map(|f| f.cause),
                    answered: false,
                };
                match (d.pool, d.node) {
                    (None, _) => {
                        return Err(local(
                            StatusCode::NOT_FOUND,
                            "casfront: no service at this path\n",
                        ))
                    }
                    (Some(p), Some(_))
                        if failed >= self.table.pool(p).map_or(0, |p| p.nodes.len()) =>
                    {
                        out.node = None;
                        return Err(no_node());
                    }
                    (Some(_), None) => return Err(no_node()),
                    (Some(p), Some(n)) => (p, n),
                }
            };
            let Some(pool) = self.pools.get(usize::from(node)) else {
                return Err(local(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "casfront: internal error\n",
                ));
            };
            match pool.checkout(fresh).await {
                Ok(conn) => return Ok((pool_id, node, pool, conn)),
                Err(UpstreamError::Busy(_)) => {
                    // At its `max_connections` for `queue_timeout`: busy,
                    // not down.
                    self.handles.failure(node, Failure::Queue);
                    return Err(local(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "casfront: the CAS node is busy; try again\n",
                    ));
                }
                Err(_) => {
                    self.handles.failure(node, Failure::Connect);
                    self.health.mark_down(node);
                    failed += 1;
                }
            }
        }
    }
}

impl Proxy {
    /// The routing decision. Under `max_connections`, a full node counts
    /// as draining: it keeps its tickets and sessions, and the `any` rule
    /// passes it by; only when every node is full (or down) does a request
    /// for any node go to one to wait there.
    fn route<'r, H: Headers + ?Sized>(
        &'r self,
        view: &RequestView<'r, H>,
        pick: u64,
    ) -> Decision<'r> {
        if self.capped {
            let full = Capacity {
                health: &self.health,
                pools: &self.pools,
            };
            let d = route(&self.table, view, &full, &*self.learned, pick);
            if d.node.is_some() || d.pool.is_none() {
                return d;
            }
        }
        route(&self.table, view, &self.health, &*self.learned, pick)
    }
}

/// Node states with full nodes (at `max_connections`, nothing idle) as
/// draining.
struct Capacity<'a> {
    health: &'a Health,
    pools: &'a [Arc<NodePool>],
}

impl NodeStates for Capacity<'_> {
    fn state(&self, node: NodeId) -> NodeState {
        match self.health.state(node) {
            NodeState::Healthy if self.pools.get(usize::from(node)).is_some_and(|p| p.full()) => {
                NodeState::Draining
            }
            s => s,
        }
    }
}

fn no_node() -> Response<ProxyBody> {
    local(
        StatusCode::SERVICE_UNAVAILABLE,
        "casfront: no CAS node is available\n",
    )
}

impl Proxy {
    /// Learns (or forgets) the pool's TGT and session cookies a node's
    /// response sets. Returns the `Set-Cookie` the route cookie follows: a
    /// TGT cookie rather than the session's, one set rather than one
    /// expired (`true`: expired).
    fn learn<'h>(
        &self,
        pool_id: PoolId,
        node: NodeId,
        headers: &'h HeaderMap,
        sent: Option<&header::HeaderValue>,
    ) -> Option<(&'h [u8], bool)> {
        let pool = self.table.pool(pool_id)?;
        let mut followed: Option<(&[u8], bool, bool)> = None;
        for set in headers.get_all(header::SET_COOKIE) {
            let Some((name, value, expired)) = learned::parse_set_cookie(set.as_bytes()) else {
                continue;
            };
            let tgc = pool.tgc_cookies.iter().any(|c| **c == *name);
            if *name != *pool.session_cookie && !tgc {
                continue;
            }
            if expired {
                if let Some(sent) = sent {
                    let sent = [("cookie", sent.as_bytes())];
                    if let Some(old) = crate::routing::parse::cookie(&sent[..], name) {
                        self.learned.forget(pool_id, name, old);
                    }
                }
            } else if !value.is_empty() {
                // A jvmRoute or a readable TGT id routes by itself.
                if !crate::routing::names_its_node(&self.table, pool_id, tgc, name, value) {
                    self.learned
                        .learn(pool_id, name, value, node, Instant::now());
                }
            } else {
                continue;
            }
            // (set, TGT cookie) ranks above (expired, session cookie).
            let better = followed
                .is_none_or(|(_, was_expired, was_tgc)| (!expired, tgc) > (!was_expired, was_tgc));
            if better {
                followed = Some((set.as_bytes(), expired, tgc));
            }
        }
        followed.map(|(set, expired, _)| (set, expired))
    }

    /// The pool's route cookie (`[pool.route_cookie]`) naming `node`, for
    /// a response that sets (or expires) the cookie `followed`: one cookie
    /// per pool (its path is the pool's prefix), living as long as the
    /// cookie it follows (its `Max-Age`, `Expires` and `SameSite`; `Lax`
    /// by default). `None` when the pool has none.
    fn route_cookie(
        &self,
        pool_id: PoolId,
        node: NodeId,
        (set, expired): (&[u8], bool),
    ) -> Option<header::HeaderValue> {
        let pool = self.table.pool(pool_id)?;
        let rc = pool.route_cookie.as_ref()?;
        let path = std::str::from_utf8(&pool.prefix).unwrap_or("/");
        let name = String::from_utf8_lossy(&rc.name);
        if expired {
            let gone = format!(
                "{name}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path={path}; Secure; HttpOnly; SameSite=Lax"
            );
            return header::HeaderValue::from_str(&gone).ok();
        }
        let sealed = rc.seal(&pool.name, &self.table.node(node)?.name)?;
        let mut cookie = format!("{name}={sealed}; Path={path}; Secure; HttpOnly");
        let mut same_site = false;
        for (key, value) in learned::set_cookie_attrs(set) {
            let keep = ["max-age", "expires", "samesite"]
                .iter()
                .any(|k| key.eq_ignore_ascii_case(k.as_bytes()));
            // A value a header may not carry is left out, not the cookie.
            if keep && value.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
                same_site |= key.eq_ignore_ascii_case(b"samesite");
                cookie.push_str("; ");
                cookie.push_str(&String::from_utf8_lossy(key));
                cookie.push('=');
                cookie.push_str(&String::from_utf8_lossy(value));
            }
        }
        if !same_site {
            cookie.push_str("; SameSite=Lax");
        }
        header::HeaderValue::from_str(&cookie).ok()
    }

    /// The learned cookie table (tests, metrics).
    pub fn learned(&self) -> &LearnedTable {
        &self.learned
    }
}

fn local(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from_static(
        body.as_bytes(),
    ))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
