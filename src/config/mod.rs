//! The configuration contract (DESIGN §2): the validated [`Config`] the rest
//! of the program uses, and [`parse`]/[`load`], which read a TOML file and
//! report every problem at once with its line and column. Submodules: `raw`
//! (serde structs and the section-by-section reader), `validate` (checks
//! across values), `diag` (diagnostics and positions).

mod diag;
mod raw;
mod sections;
mod validate;
mod values;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use diag::{Diagnostic, Severity};
pub use ipnet::IpNet;

/// A validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub listen: Listen,
    pub tls: Tls,
    pub admin: Admin,
    pub learned: LearnedCookies,
    pub limits: Limits,
    pub log: Log,
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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_prefix: defaults::BODY_PREFIX,
            body_wait: Duration::from_secs(defaults::BODY_WAIT_SECS),
            shutdown_grace: Duration::from_secs(defaults::SHUTDOWN_GRACE_SECS),
            max_uri: defaults::MAX_URI,
            max_header_bytes: defaults::MAX_HEADER_BYTES,
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
}

impl Listen {
    /// Whether `peer` is one of the trusted proxies.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.trusted_proxies.iter().any(|n| n.contains(&peer))
    }
}

/// The listener's certificates: the first is the default (no SNI, or no
/// name matches); the others are chosen by SNI.
#[derive(Clone, Debug, PartialEq)]
pub struct Tls {
    pub certificates: Vec<Certificate>,
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
    pub health: Health,
    pub upstream: Upstream,
    pub nodes: Vec<Node>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Health {
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
    pub const MAX_IDLE: usize = 64;
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
    let base = path.parent().unwrap_or(Path::new("."));
    Ok(parse(&source, base))
}

#[cfg(test)]
mod tests;
