//! The configuration: the validated [`Config`] the rest
//! of the program uses, and [`parse`]/[`load`], which read a TOML file and
//! report every problem at once with its line and column. Submodules: `raw`
//! (serde structs and the section-by-section reader), `validate` (checks
//! across values), `sections` and `edge` (one section each), `diag`
//! (diagnostics and positions), `state` (the state directory and the
//! route-cookie key kept there).

pub mod client_cert;
mod diag;
pub mod discovery;
mod edge;
mod raw;
mod sections;
pub mod state;
mod validate;
mod values;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use client_cert::{CertFormat, ClientAuth, ClientCertHeaders, ClientTrust, PoolCert};
pub use diag::{Diagnostic, Severity};
pub use ipnet::IpNet;
pub use state::{Keep, StateDir, StateFrom};

/// A validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub listen: Listen,
    pub tls: Tls,
    /// `[client_cert]`: the headers that tell nodes of a client certificate.
    pub client_cert: ClientCertHeaders,
    pub admin: Admin,
    pub learned: LearnedCookies,
    pub limits: Limits,
    pub rate_limit: RateLimit,
    pub log: Log,
    /// `[state]`: the state directory.
    pub state: StateDir,
    pub pools: Vec<Pool>,
}

impl Config {
    /// Every node with its pool, in configuration order: the order of
    /// [`crate::routing::NodeId`]s.
    pub fn nodes(&self) -> impl Iterator<Item = (&Pool, &Node)> {
        self.pools
            .iter()
            .flat_map(|pool| pool.nodes.iter().map(move |node| (pool, node)))
    }

    /// The pools as the routing table is built from them.
    pub fn routing(&self) -> Vec<crate::routing::PoolSpec> {
        use crate::routing::{NodeSpec, PoolSpec};
        self.pools
            .iter()
            .map(|pool| PoolSpec {
                name: pool.name.clone(),
                path_prefix: pool.path_prefix.clone(),
                tgc_cookies: pool.tgc_cookies.clone(),
                session_cookie: pool.session_cookie.clone(),
                ticket_routing: pool.ticket_routing,
                bigip_cookie: pool.bigip_cookie.clone(),
                route_cookie: pool.route_cookie.clone(),
                cert_match: pool.client_cert.matches.clone(),
                nodes: (pool.nodes.iter())
                    .map(|n| NodeSpec {
                        name: n.name.clone(),
                        ipv4: (n.url.ipv4).map(|ip| std::net::SocketAddrV4::new(ip, n.url.port)),
                        ticket_suffixes: n.ticket_suffixes.clone(),
                        f5_md5: n.f5_md5,
                        jvm_route: n.jvm_route.clone(),
                        backup: n.backup,
                    })
                    .collect(),
            })
            .collect()
    }
}

/// Logging (`[log]`): lines go to stdout, written by a background thread.
#[derive(Clone, Debug, PartialEq)]
pub struct Log {
    /// One line per request.
    pub access: bool,
    pub format: LogFormat,
    /// The least severe events written.
    pub level: tracing::Level,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            access: true,
            format: LogFormat::Text,
            level: tracing::Level::INFO,
        }
    }
}

/// Limits of the request path (`[limits]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// How much of a body the routing core may read (`POST /samlValidate`).
    pub body_prefix: usize,
    /// How long to wait for that prefix before routing with what arrived.
    pub body_wait: Duration,
    /// On SIGTERM/SIGINT, how long the requests in flight may take.
    pub shutdown_grace: Duration,
    /// The longest request target (path and query) answered; longer: 414.
    pub max_uri: usize,
    /// HTTP/1: the most bytes of a request line and headers; more: 431.
    pub max_header_bytes: usize,
    /// Client connections open at once; at the cap casfront stops
    /// accepting until one closes (the kernel's backlog holds the rest).
    pub max_connections: usize,
    /// Client connections open at once from one address (an IPv6 /64);
    /// over it a new connection is closed at once. Trusted proxies are
    /// exempt. Enforced under pressure only (`pressure`).
    pub max_connections_per_ip: usize,
    /// The share of `max_connections` (connections open plus requests in
    /// flight) from which the per-address caps apply —
    /// `max_connections_per_ip` and `[rate_limit] requests_per_second` — so
    /// that a campus behind one NAT is served in full while casfront has
    /// room, and the heaviest addresses are held back first when it has
    /// not. 0: always.
    pub pressure: f64,
    /// TCP accept to the end of the TLS handshake, PROXY header included.
    pub handshake_timeout: Duration,
    /// HTTP/1: time to read a request's headers, which is also how long a
    /// kept-alive connection may wait idle for its next request (one hyper
    /// setting).
    pub header_read_timeout: Duration,
    /// HTTP/2: how long a connection with no request waiting for its
    /// answer is kept (then GOAWAY; dropped `handshake_timeout` later).
    pub idle_timeout: Duration,
    /// How long a response may wait on a client that takes none of it
    /// (a slow reader, HTTP/2 flow control held shut) before the connection
    /// is dropped, freeing the node connection it holds.
    pub send_timeout: Duration,
    /// HTTP/2: streams open at once per connection.
    pub h2_max_streams: u32,
    /// HTTP/2: streams a client may cancel before their answer on one
    /// connection; past it the connection is dropped (rapid reset).
    pub h2_max_resets: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_prefix: defaults::BODY_PREFIX,
            body_wait: Duration::from_secs(defaults::BODY_WAIT_SECS),
            shutdown_grace: Duration::from_secs(defaults::SHUTDOWN_GRACE_SECS),
            max_uri: defaults::MAX_URI,
            max_header_bytes: defaults::MAX_HEADER_BYTES,
            max_connections: defaults::MAX_CONNECTIONS,
            max_connections_per_ip: defaults::MAX_CONNECTIONS_PER_IP,
            pressure: defaults::PRESSURE,
            handshake_timeout: Duration::from_secs(defaults::HANDSHAKE_TIMEOUT_SECS),
            header_read_timeout: Duration::from_secs(defaults::HEADER_READ_TIMEOUT_SECS),
            idle_timeout: Duration::from_secs(defaults::H2_IDLE_TIMEOUT_SECS),
            send_timeout: Duration::from_secs(defaults::SEND_TIMEOUT_SECS),
            h2_max_streams: defaults::H2_MAX_STREAMS,
            h2_max_resets: defaults::H2_MAX_RESETS,
        }
    }
}

/// Request rates per client address (`[rate_limit]`); the address is the
/// peer's, or the client's named by a trusted proxy (`X-Forwarded-For`,
/// PROXY header); IPv6 clients are counted by /64. A rate of 0 turns a
/// limit off. Over a limit: 429 with `Retry-After`.
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimit {
    /// All requests, sustained rate.
    pub requests_per_second: u32,
    /// All requests, at once.
    pub burst: u32,
    /// A hard cap on login attempts per address, successes included (off
    /// by default: a campus behind one NAT logs in hundreds a minute).
    pub login_per_minute: u32,
    pub login_burst: u32,
    /// The failed-login throttle ([`crate::edge::logins`]): failures per
    /// (address, user) in `login_window` (0: off).
    pub login_failures: u32,
    pub login_window: Duration,
    /// Failures per address in `login_window` before the address may be
    /// cut off (0: off), when they are at least `address_failure_share` of
    /// its attempts, or `address_failure_ceiling` whatever the share (0:
    /// no ceiling).
    pub address_failures: u32,
    pub address_failure_share: f64,
    pub address_failure_ceiling: u32,
    /// Clients tracked at most; past it the counts start over.
    pub max_clients: usize,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            requests_per_second: defaults::REQUESTS_PER_SECOND,
            burst: defaults::REQUEST_BURST,
            login_per_minute: defaults::LOGINS_PER_MINUTE,
            login_burst: defaults::LOGIN_BURST,
            login_failures: defaults::LOGIN_FAILURES,
            login_window: Duration::from_secs(defaults::LOGIN_WINDOW_SECS),
            address_failures: defaults::ADDRESS_FAILURES,
            address_failure_share: defaults::ADDRESS_FAILURE_SHARE,
            address_failure_ceiling: defaults::ADDRESS_FAILURE_CEILING,
            max_clients: defaults::RATE_MAX_CLIENTS,
        }
    }
}

/// The learned cookie table (`[learned]`).
#[derive(Clone, Debug, PartialEq)]
pub struct LearnedCookies {
    /// Entries kept at most.
    pub capacity: usize,
    /// How long an entry is trusted.
    pub ttl: Duration,
}

impl Default for LearnedCookies {
    fn default() -> Self {
        LearnedCookies {
            capacity: defaults::LEARNED_CAPACITY,
            ttl: Duration::from_secs(defaults::LEARNED_TTL_SECS),
        }
    }
}

/// How casfront talks to a pool's nodes (`[pool.upstream]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Upstream {
    /// TCP connect to a node.
    pub connect_timeout: Duration,
    /// From the request sent to the response head (504 after).
    pub response_timeout: Duration,
    /// An idle pooled connection older than this is closed, not reused.
    pub idle_timeout: Duration,
    /// Idle connections kept per node.
    pub max_idle: usize,
    /// Connections per node, busy, idle or opening (0: no cap); a request
    /// past it waits for one.
    pub max_connections: usize,
    /// How long a request waits for a connection under `max_connections`;
    /// then 503.
    pub queue_timeout: Duration,
    /// How long a node whose connection failed stays down.
    pub down_cooldown: Duration,
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream {
            connect_timeout: Duration::from_secs(defaults::CONNECT_TIMEOUT_SECS),
            response_timeout: Duration::from_secs(defaults::RESPONSE_TIMEOUT_SECS),
            idle_timeout: Duration::from_secs(defaults::IDLE_TIMEOUT_SECS),
            max_idle: defaults::MAX_IDLE,
            max_connections: 0,
            queue_timeout: Duration::from_secs(defaults::QUEUE_TIMEOUT_SECS),
            down_cooldown: Duration::from_secs(defaults::DOWN_COOLDOWN_SECS),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Listen {
    pub https: SocketAddr,
    /// Plain-HTTP listener answering 301 to https.
    pub http: Option<SocketAddr>,
    /// Peers whose `X-Forwarded-For` (and other forwarding headers) are
    /// kept and appended to rather than dropped.
    pub trusted_proxies: Vec<IpNet>,
    /// Host names answered (lowercase, `*.` matches one label); another
    /// gets 421. Empty: any.
    pub hosts: Vec<String>,
    /// Peers that open each connection with a PROXY protocol header (v1 or
    /// v2); the client address is taken from it. Others send none.
    pub proxy_protocol: Vec<IpNet>,
}

impl Listen {
    /// Whether `peer` is one of the trusted proxies.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.trusted_proxies.iter().any(|n| n.contains(&peer))
    }

    /// Whether connections from `peer` start with a PROXY header.
    pub fn sends_proxy_header(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.proxy_protocol.iter().any(|n| n.contains(&peer))
    }
}

/// The listener's certificates: the first is the default (no SNI, or no
/// name matches); the others are chosen by SNI.
#[derive(Clone, Debug, PartialEq)]
pub struct Tls {
    pub certificates: Vec<Certificate>,
    /// `client_auth`, `client_ca`, `client_crl`.
    pub client: ClientTrust,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Certificate {
    /// PEM chain; a relative path is relative to the configuration file.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Server names (lowercase; `*.example.edu` matches one label) this
    /// certificate answers; empty: the DNS names the certificate carries.
    pub names: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Admin {
    pub listen: SocketAddr,
    /// Bearer token required for the admin API's POSTs, when set.
    pub token: Option<String>,
    /// Host names the admin API answers to, besides IP addresses and
    /// `localhost` (a name that resolves to the admin listener).
    pub hosts: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    pub name: String,
    /// Starts with `/`; no trailing `/` except for the root `/`.
    pub path_prefix: String,
    pub tgc_cookies: Vec<String>,
    pub session_cookie: String,
    /// `Host` sent to the nodes instead of the client's.
    pub host_override: Option<String>,
    /// CA bundle that verifies https nodes; `None`: the system's roots.
    pub upstream_ca: Option<PathBuf>,
    pub health: HealthCheck,
    pub upstream: Upstream,
    /// `[pool.headers]`: applied after casfront's own header changes.
    pub headers: HeaderRules,
    /// `client_cert_required`, `client_cert_paths`, `client_cert_match`.
    pub client_cert: PoolCert,
    /// An F5 `BIGipServer<pool>` cookie to route by (a cut-over from an F5).
    pub bigip_cookie: Option<String>,
    /// `ticket_routing = false`: every request by the `any` rule alone, as
    /// a front end that reads no tickets would send it (benchmarks).
    pub ticket_routing: bool,
    /// `secure_cookies`: a `Set-Cookie` from a node gets `Secure` when it
    /// lacks it (clients reach casfront over https only).
    pub secure_cookies: bool,
    /// `login_username_field`: the form field a login POST names its user
    /// in (the failed-login throttle counts per user).
    pub login_username_field: String,
    /// `[pool.route_cookie]`: casfront's own sealed route cookie.
    pub route_cookie: Option<RouteCookieKeys>,
    /// `[pool.discovery]`: nodes from DNS, added to `nodes` while serving.
    pub discovery: Option<discovery::Discovery>,
    pub nodes: Vec<Node>,
}

pub use crate::routing::route_cookie::RouteCookieKeys;

/// Headers set (replacing any) or removed, on requests to a pool's nodes
/// and on their responses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeaderRules {
    pub request_set: Vec<(http::HeaderName, http::HeaderValue)>,
    pub request_remove: Vec<http::HeaderName>,
    pub response_set: Vec<(http::HeaderName, http::HeaderValue)>,
    pub response_remove: Vec<http::HeaderName>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub name: String,
    pub url: NodeUrl,
    pub ticket_suffixes: Vec<String>,
    pub f5_md5: bool,
    pub jvm_route: String,
    pub backup: bool,
    /// Name verified in an https node's certificate instead of the url's host.
    pub server_name: Option<String>,
    /// Found by `[pool.discovery]`, not written in the file.
    pub from_dns: bool,
}

/// A node's address, parsed once when the configuration loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeUrl {
    pub scheme: Scheme,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// The host when it is an IPv4 address (for `f5_md5`).
    pub ipv4: Option<Ipv4Addr>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl NodeUrl {
    /// `host:port`, with brackets around an IPv6 address.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Defaults that the example configuration documents.
pub mod defaults {
    pub const TGC_COOKIES: [&str; 2] = ["TGC", "CASTGC"];
    pub const ROUTE_COOKIE: &str = "CASFRONT_ROUTE";
    pub const SESSION_COOKIE: &str = "JSESSIONID";
    pub const ADMIN_LISTEN: &str = "127.0.0.1:9901";
    pub const HEALTH_INTERVAL_SECS: u64 = 2;
    pub const HEALTH_TIMEOUT_SECS: u64 = 1;
    pub const HEALTH_RISE: u32 = 2;
    pub const HEALTH_FALL: u32 = 3;
    pub const CONNECT_TIMEOUT_SECS: u64 = 2;
    pub const RESPONSE_TIMEOUT_SECS: u64 = 30;
    /// Below Tomcat's default keep-alive timeout (20 s), so that a pooled
    /// connection is not reused after the node closed it.
    pub const IDLE_TIMEOUT_SECS: u64 = 15;
    pub const TOMCAT_KEEP_ALIVE_SECS: u64 = 20;
    /// Above Tomcat's default 200 worker threads: a node's whole
    /// concurrency kept warm (at 64, 400 keep-alive clients over 3 nodes
    /// had casfront close and reopen node connections on every burst).
    pub const MAX_IDLE: usize = 256;
    pub const QUEUE_TIMEOUT_SECS: u64 = 5;
    pub const DOWN_COOLDOWN_SECS: u64 = 10;
    pub const LEARNED_CAPACITY: usize = 100_000;
    pub const LEARNED_TTL_SECS: u64 = 30 * 60;
    /// A SOAP `samlValidate` request is under 2 KiB; 16 KiB leaves room.
    pub const BODY_PREFIX: usize = 16 * 1024;
    pub const BODY_WAIT_SECS: u64 = 5;
    pub const MAX_URI: usize = 8 * 1024;
    pub const MAX_HEADER_BYTES: usize = 32 * 1024;
    /// Longer than a login POST takes, shorter than systemd's 90 s stop timeout.
    pub const SHUTDOWN_GRACE_SECS: u64 = 30;
    /// Well under the usual `LimitNOFILE` of a service (the README's unit
    /// sets 65536), two descriptors per proxied connection.
    pub const MAX_CONNECTIONS: usize = 10_000;
    /// A browser opens up to 6 connections per host: ~40 busy browsers;
    /// enforced only under pressure ([`PRESSURE`]), so a campus NAT is not
    /// held to it while casfront has room.
    pub const MAX_CONNECTIONS_PER_IP: usize = 256;
    /// A full handshake takes a few round trips; 10 s covers slow mobile links.
    pub const HANDSHAKE_TIMEOUT_SECS: u64 = 10;
    /// Headers arrive in one or two packets; a slowloris client is cut after
    /// this. Also the HTTP/1 keep-alive idle time, as HAProxy's usual 10-15 s.
    pub const HEADER_READ_TIMEOUT_SECS: u64 = 15;
    /// nginx closes an idle HTTP/2 connection after 75 s; a minute frees
    /// the slot a little sooner.
    pub const H2_IDLE_TIMEOUT_SECS: u64 = 60;
    /// A browser takes a response as fast as it comes; nginx's
    /// `send_timeout` is 60 s, this frees a node connection sooner.
    pub const SEND_TIMEOUT_SECS: u64 = 30;
    /// Browsers open at most a few dozen; RFC 9113 suggests at least 100.
    pub const H2_MAX_STREAMS: u32 = 100;
    /// A browser cancels a few streams per page at most.
    pub const H2_MAX_RESETS: u32 = 100;
    /// Far above a person (a login page loads ~10 resources), below a flood.
    pub const REQUESTS_PER_SECOND: u32 = 100;
    pub const REQUEST_BURST: u32 = 200;
    /// One login a second from one address, sustained, with room for a NAT.
    pub const LOGINS_PER_MINUTE: u32 = 0;
    pub const LOGIN_BURST: u32 = 20;
    /// About 10 MiB of counters at most.
    pub const RATE_MAX_CLIENTS: usize = 100_000;
    pub const LOGIN_FAILURES: u32 = 5;
    pub const LOGIN_WINDOW_SECS: u64 = 15 * 60;
    pub const ADDRESS_FAILURES: u32 = 30;
    pub const ADDRESS_FAILURE_SHARE: f64 = 0.8;
    pub const ADDRESS_FAILURE_CEILING: u32 = 5000;
    pub const PRESSURE: f64 = 0.5;
    pub const USERNAME_FIELD: &str = "username";
}

/// The outcome of reading a configuration: the config when there was no
/// error, and every diagnostic (errors and warnings) sorted by position.
#[derive(Debug)]
pub struct Parsed {
    pub config: Option<Config>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Parsed {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }
}

/// Parses and validates configuration text. `base` resolves relative file
/// paths (the configuration file's directory).
pub fn parse(source: &str, base: &Path) -> Parsed {
    let mut diags = diag::Diags::new(source);
    let raw = raw::read(source, &mut diags);
    let config = raw.and_then(|raw| validate::validate(raw, base, &mut diags));
    let diagnostics = diags.finish();
    let failed = diagnostics.iter().any(|d| d.severity == Severity::Error);
    Parsed {
        config: if failed { None } else { config },
        diagnostics,
    }
}

/// Errors reading a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Reads and parses a configuration file.
pub fn load(path: &Path) -> Result<Parsed, LoadError> {
    let source = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(parse(&source, dir_of(path)))
}

/// The directory a file is in: `.` for a bare name (`Path::parent` gives
/// the empty path, which cannot be opened or made absolute).
pub(crate) fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod edge_tests;
#[cfg(test)]
mod section_tests;
#[cfg(test)]
mod tests;
