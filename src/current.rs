//! The generation in force and its reload. [`Current`] holds the current
//! [`Generation`] behind `arc-swap` beside the [`ProcessState`]: every new
//! connection takes the TLS configuration and limits of the generation in
//! force, every request the generation in force, so that a reload swaps it
//! without touching a connection and the requests in flight finish on the
//! generation they started with. A reload re-reads the file and the
//! certificates it names; an invalid configuration is refused (and
//! counted) and the old generation keeps serving. Node health and learned
//! cookies carry over ([`crate::generation::takeover`]), rate counts too
//! unless `[rate_limit]` changed; health checks restart, a new node being
//! checked before the swap.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::discovery::Overlay;
use crate::config::{self, Config, Keep};
use crate::generation::takeover::{Carried, Handover, Received};
use crate::generation::{BuildError, Generation};
use crate::health::check::{self, Checker};
use crate::health::Mode;
use crate::metrics::Metrics;
use crate::state::ProcessState;
use crate::tls::{self, ListenerTls, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    State(String),
    #[error("casfront was not started from a configuration file")]
    NoFile,
    #[error("reading the configuration: {0}")]
    Load(#[from] config::LoadError),
    #[error("the configuration has {} error(s):\n{}", .0.len(), .0.join("\n"))]
    Invalid(Vec<String>),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Build(#[from] BuildError),
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
    /// Held for the whole of a reload: reloads run one at a time.
    running: tokio::sync::Mutex<Running>,
}

struct Running {
    checker: Option<Checker>,
    /// The configuration last read from the file (discovered nodes are
    /// added to it, not kept in it).
    file: Config,
    /// What discovery found ([`crate::config::discovery`]).
    overlay: Overlay,
    /// Nodes discovery drained because they left DNS: enabled again if
    /// they come back.
    drained: std::collections::HashSet<String>,
}

/// The generation in force, and the process state beside it.
pub struct Current {
    generation: ArcSwap<Generation>,
    state: Arc<ProcessState>,
    source: Option<Source>,
}

impl Current {
    /// Serves `config` with `tls` and never reloads (tests, the demo); no
    /// health checks run unless started on [`Current::generation`]'s pools.
    pub fn fixed(
        config: &Config,
        tls: impl Into<ListenerTls>,
    ) -> Result<Arc<Current>, ReloadError> {
        let mut config = config.clone();
        config
            .prepare_state(Keep::InMemory)
            .map_err(ReloadError::State)?;
        let state = ProcessState::new(&config, Keep::InMemory)?;
        let generation = Generation::new(&config, tls.into(), &state.metrics)?;
        Ok(Arc::new(Current {
            generation: ArcSwap::from_pointee(generation),
            state,
            source: None,
        }))
    }

    /// Starts serving `config`, read from `path`: builds the process state
    /// and the first generation, and runs the first round of health checks.
    pub async fn start(path: PathBuf, config: Config) -> Result<Arc<Current>, ReloadError> {
        Ok(Current::start_with(path, config, None).await?.0)
    }

    /// The same, taking over what a process being upgraded hands over.
    pub async fn start_with(
        path: PathBuf,
        mut config: Config,
        handover: Option<&Handover>,
    ) -> Result<(Arc<Current>, Received), ReloadError> {
        // Done already by a caller that reports on it (`process::start`).
        config
            .prepare_state(Keep::OnDisk)
            .map_err(ReloadError::State)?;
        let state = ProcessState::new(&config, Keep::OnDisk)?;
        let tls = tls::from_config_with(&config.tls, &state.resumption)?;
        let mut generation = Generation::new(&config, tls, &state.metrics)?;
        let received = (handover.map(|h| generation.receive(&config, h))).unwrap_or_default();
        let generation = Arc::new(generation);
        let checker = generation.start_checks(check::targets(&config)).await;
        let current = Arc::new(Current {
            generation: ArcSwap::new(generation),
            state,
            source: Some(Source {
                path,
                started: config.clone(),
                running: tokio::sync::Mutex::new(Running {
                    checker: Some(checker),
                    file: config,
                    overlay: Overlay::default(),
                    drained: Default::default(),
                }),
            }),
        });
        Ok((current, received))
    }

    /// The generation in force.
    pub fn generation(&self) -> Arc<Generation> {
        self.generation.load_full()
    }

    /// The process state: metrics, connection gate, rate counts.
    pub fn state(&self) -> &Arc<ProcessState> {
        &self.state
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.state.metrics
    }

    /// Re-reads the configuration file and swaps in its generation if it is
    /// valid. Counted in the `reloads` metric either way.
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let result = self.try_reload().await;
        self.state.metrics.reloaded(result.is_ok());
        result
    }

    async fn try_reload(&self) -> Result<Reloaded, ReloadError> {
        let source = self.source.as_ref().ok_or(ReloadError::NoFile)?;
        let mut running = source.running.lock().await;
        let parsed = config::load(&source.path)?;
        let shown = |d: &config::Diagnostic| format!("{}:{d}", source.path.display());
        let Some(mut new) = parsed.config.clone() else {
            return Err(ReloadError::Invalid(parsed.errors().map(shown).collect()));
        };
        new.prepare_state(Keep::OnDisk)
            .map_err(ReloadError::State)?;
        running.file = new.clone();
        let carried = self.swap(&mut running).await?;
        Ok(Reloaded {
            carried,
            warnings: parsed.warnings().map(shown).collect(),
            restart_needed: restart_needed(&source.started, &new),
        })
    }

    /// Applies what discovery found now: the file's configuration with
    /// `overlay`'s nodes, swapped in as a reload is (new nodes checked
    /// first, health and learned cookies carried). Nodes gone from DNS are
    /// drained (no new logins) until discovery drops them.
    pub async fn rediscovered(&self, overlay: Overlay) -> Result<Carried, ReloadError> {
        let source = self.source.as_ref().ok_or(ReloadError::NoFile)?;
        let mut running = source.running.lock().await;
        running.overlay = overlay;
        self.swap(&mut running).await
    }

    /// Builds the generation of `running`'s file configuration and
    /// overlay, checks the nodes it adds, takes over the old generation's
    /// state right before the swap, and restarts the health checks.
    async fn swap(&self, running: &mut Running) -> Result<Carried, ReloadError> {
        let mut new = running.file.clone();
        let gone = running.overlay.apply(&mut new);
        let new = &new;
        let tls = tls::from_config_with(&new.tls, &self.state.resumption)?;
        let mut next = Generation::new(new, tls, &self.state.metrics)?;
        // Nodes the swap adds are checked before they can be chosen. The
        // new generation takes over the old one's state only after the
        // checks, right before the swap, so that nothing recorded meanwhile
        // (learned cookies, modes, nodes marked down) is lost.
        let added = next.added_since(&self.generation());
        let targets = check::targets(new);
        let to_check = targets.iter().filter(|t| added.contains(&t.node));
        let checked = check::first_round(next.pools(), to_check).await;
        let carried = next.take_over(new, &self.generation());
        for (node, ok) in checked {
            next.health().record(node, ok, true);
        }
        // Discovery's drains: a node gone from DNS takes no new logins; one
        // that came back takes them again.
        let table = next.table();
        for name in running.drained.iter().filter(|n| !gone.contains(n)) {
            if let Some(id) = table.node_by_name(name) {
                next.health().set_mode(id, Mode::Enabled);
            }
        }
        for name in &gone {
            if let Some(id) = table.node_by_name(name) {
                next.health().set_mode(id, Mode::Draining);
            }
        }
        running.drained = gone.into_iter().collect();
        self.state.reconfigure(new);
        let next = Arc::new(next);
        self.generation.store(next.clone());
        // Dropping the old checker stops its tasks.
        running.checker = Some(next.start_checks(targets).await);
        Ok(carried)
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
