//! The configuration contract (DESIGN §2): the validated [`Config`] the rest
//! of the program uses, and [`parse`]/[`load`], which read a TOML file and
//! report every problem at once with its line and column. Submodules: `raw`
//! (serde structs and the section-by-section reader), `validate` (checks
//! across values), `diag` (diagnostics and positions).

mod diag;
mod raw;
mod validate;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use diag::{Diagnostic, Severity};

/// A validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub listen: Listen,
    pub tls: Tls,
    pub admin: Admin,
    pub pools: Vec<Pool>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Listen {
    pub https: SocketAddr,
    /// Plain-HTTP listener answering 301 to https.
    pub http: Option<SocketAddr>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tls {
    /// PEM chain; a relative path is relative to the configuration file.
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Admin {
    pub listen: SocketAddr,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    pub name: String,
    /// Starts with `/`; no trailing `/` except for the root `/`.
    pub path_prefix: String,
    pub tgc_cookies: Vec<String>,
    pub session_cookie: String,
    pub health: Health,
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
    pub const HEALTH_INTERVAL: &str = "2s";
    pub const HEALTH_TIMEOUT: &str = "1s";
    pub const HEALTH_RISE: u32 = 2;
    pub const HEALTH_FALL: u32 = 3;
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
