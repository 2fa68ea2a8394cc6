//! The configuration in force and its live reload. [`Live`] holds the
//! current [`Proxy`] and TLS configuration behind `arc-swap`: every new
//! connection takes the TLS configuration in force, every request the
//! proxy in force, so a reload swaps both without touching a connection
//! and the requests in flight finish on the configuration they started
//! with. A reload re-reads the file and the certificates it names; an
//! invalid configuration is refused (and counted) and the old one keeps
//! serving. Node health and learned cookies carry over (see
//! [`crate::proxy::carry`]); health checks restart, a new node being
//! checked before the swap.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::config::{self, Config};
use crate::edge::gate::Gate;
use crate::health::check::{self, Checker};
use crate::metrics::Metrics;
use crate::proxy::carry::Carried;
use crate::proxy::{Proxy, ProxyError};
use crate::server::tls::{self, ListenerTls, Resumption, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("casfront was not started from a configuration file")]
    NoFile,
    #[error("reading the configuration: {0}")]
    Load(#[from] config::LoadError),
    #[error("the configuration has {} error(s):\n{}", .0.len(), .0.join("\n"))]
    Invalid(Vec<String>),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
}

/// What a reload did.
#[derive(Debug)]
pub struct Reloaded {
    pub carried: Carried,
    /// The configuration's warnings, `FILE:LINE:COL: warning: ...`.
    pub warnings: Vec<String>,
    /// Settings that changed but apply only after a restart (listen
    /// addresses, log format and level).
    pub restart_needed: Vec<String>,
}

struct Source {
    path: PathBuf,
    /// The configuration casfront started with: its listeners and logging.
    started: Config,
    resumption: Resumption,
    /// Held for the whole of a reload: reloads run one at a time.
    running: tokio::sync::Mutex<Running>,
}

struct Running {
    checker: Option<Checker>,
}

/// The configuration in force.
pub struct Live {
    proxy: ArcSwap<Proxy>,
    tls: ArcSwap<ListenerTls>,
    admin_token: ArcSwapOption<String>,
    metrics: Arc<Metrics>,
    /// Client connections of every listener, against `[limits]` caps.
    gate: Arc<Gate>,
    source: Option<Source>,
}

impl Live {
    /// A configuration that never reloads (tests, the demo).
    pub fn fixed(tls: impl Into<ListenerTls>, proxy: Arc<Proxy>) -> Arc<Live> {
        Arc::new(Live {
            metrics: proxy.metrics().clone(),
            proxy: ArcSwap::new(proxy),
            tls: ArcSwap::from_pointee(tls.into()),
            admin_token: ArcSwapOption::empty(),
            gate: Gate::new(),
            source: None,
        })
    }

    /// Starts serving `config`, read from `path`: builds TLS and the
    /// proxy, and runs the first round of health checks.
    pub async fn start(path: PathBuf, config: Config) -> Result<Arc<Live>, ReloadError> {
        let resumption = Resumption::new()?;
        let metrics = Arc::new(Metrics::new());
        let tls = tls::from_config_with(&config.tls, &resumption)?;
        let proxy = Arc::new(Proxy::with_metrics(&config, metrics.clone())?);
        let checker = Checker::start(proxy.clone(), check::targets(&config)).await;
        Ok(Arc::new(Live {
            proxy: ArcSwap::new(proxy),
            tls: ArcSwap::from_pointee(tls),
            admin_token: ArcSwapOption::new(config.admin.token.clone().map(Arc::new)),
            metrics,
            gate: Gate::new(),
            source: Some(Source {
                path,
                started: config,
                resumption,
                running: tokio::sync::Mutex::new(Running {
                    checker: Some(checker),
                }),
            }),
        }))
    }

    /// The proxy in force.
    pub fn proxy(&self) -> Arc<Proxy> {
        self.proxy.load_full()
    }

    /// The TLS configuration in force.
    pub fn tls(&self) -> Arc<ListenerTls> {
        self.tls.load_full()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The connection caps' counts, shared by the https and http listeners.
    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// The admin API's bearer token in force.
    pub fn admin_token(&self) -> Option<Arc<String>> {
        self.admin_token.load_full()
    }

    /// Sets the admin token (a fixed configuration's tests).
    pub fn set_admin_token(&self, token: Option<String>) {
        self.admin_token.store(token.map(Arc::new));
    }

    /// Re-reads the configuration file and swaps it in if it is valid.
    /// Counted in the `reloads` metric either way.
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let result = self.try_reload().await;
        self.metrics.reloaded(result.is_ok());
        result
    }

    async fn try_reload(&self) -> Result<Reloaded, ReloadError> {
        let source = self.source.as_ref().ok_or(ReloadError::NoFile)?;
        let mut running = source.running.lock().await;
        let parsed = config::load(&source.path)?;
        let shown = |d: &config::Diagnostic| format!("{}:{d}", source.path.display());
        let Some(new) = parsed.config.as_ref() else {
            return Err(ReloadError::Invalid(parsed.errors().map(shown).collect()));
        };
        let tls = tls::from_config_with(&new.tls, &source.resumption)?;
        let targets = check::targets(new);
        // Nodes the reload adds are checked before they can be chosen. The
        // new proxy takes over the old one's state only after the checks,
        // right before the swap, so that nothing recorded meanwhile
        // (learned cookies, modes, nodes marked down) is lost.
        let proxy = Proxy::with_metrics(new, self.metrics.clone())?;
        let added = proxy.added_since(&self.proxy());
        let proxy = Arc::new(proxy);
        let to_check = targets.iter().filter(|t| added.contains(&t.node));
        let checked = check::first_round(&proxy, to_check).await;
        let mut proxy = match Arc::try_unwrap(proxy) {
            Ok(p) => p,
            // Not expected: the check tasks have ended.
            Err(_) => Proxy::with_metrics(new, self.metrics.clone())?,
        };
        let carried = proxy.take_over(new, &self.proxy());
        for (node, ok) in checked {
            proxy.health().record(node, ok, true);
        }
        let proxy = Arc::new(proxy);
        self.tls.store(Arc::new(tls));
        self.proxy.store(proxy.clone());
        let checker = Checker::start(proxy, targets).await;
        self.admin_token
            .store(new.admin.token.clone().map(Arc::new));
        let restart_needed = restart_needed(&source.started, new);
        // Dropping the old checker stops its tasks.
        running.checker = Some(checker);
        Ok(Reloaded {
            carried,
            warnings: parsed.warnings().map(shown).collect(),
            restart_needed,
        })
    }
}

/// The settings of `new` that differ from `old` and that only a restart
/// applies.
fn restart_needed(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if old.listen.https != new.listen.https {
        out.push(format!(
            "listen.https changed from {} to {}: casfront still listens on {}",
            old.listen.https, new.listen.https, old.listen.https
        ));
    }
    if old.listen.http != new.listen.http {
        out.push("listen.http changed: the redirect listener is unchanged".into());
    }
    if old.admin.listen != new.admin.listen {
        out.push(format!(
            "admin.listen changed from {} to {}: the admin API is still on {}",
            old.admin.listen, new.admin.listen, old.admin.listen
        ));
    }
    if (old.log.format, old.log.level) != (new.log.format, new.log.level) {
        out.push("log.format or log.level changed: applied at the next start".into());
    }
    out
}
