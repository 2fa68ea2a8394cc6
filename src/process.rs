//! The process's life: start (the log output, the process state and first
//! generation with a first round of health checks, then the listeners:
//! https, the optional plain-HTTP redirect, the admin API), serve until
//! told to stop, reload on SIGHUP, and shut down gracefully (no new
//! connections; the requests in flight get `limits.shutdown_grace`).
//! `casfront run` is [`serve`]; tests drive [`start`] and
//! [`Started::run_until`] with a stop of their own.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::task::JoinHandle;

use crate::config::{Config, Keep};
use crate::current::Current;
use crate::notify::notify;
use crate::routing::{NodeState, NodeStates};
use crate::{access_log, admin, server};

/// A line on stderr while serving. Unlike `eprintln!`, a closed stderr
/// (the pipe of a supervisor that went away) does not panic the server.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// casfront started: its listeners bound, its generation in force.
pub struct Started {
    pub current: Arc<Current>,
    /// Where each listener listens (ports resolved).
    pub https: SocketAddr,
    pub http: Option<SocketAddr>,
    pub admin: SocketAddr,
    listener: TcpListener,
    tasks: Vec<JoinHandle<()>>,
}

/// Builds the first generation (checking every node once) and binds the
/// listeners of `config`, read from `path`.
pub async fn start(path: PathBuf, mut config: Config) -> anyhow::Result<Started> {
    let created = config.prepare_state(Keep::OnDisk).map_err(anyhow::Error::msg)?;
    if config.uses_state_key() {
        let key = config.state.route_key();
        let how = if created.is_some() { "created" } else { "kept" };
        say!(
            "casfront: route-cookie key {} ({how}; copy it to peer instances to share routes)",
            key.display()
        );
    }
    let current = Current::start(path, config.clone()).await?;
    let generation = current.generation();
    let nodes = generation.table().nodes().len();
    let up = (generation.table().node_ids())
        .filter(|&(n, _)| generation.health().state(n) == NodeState::Healthy)
        .count();
    drop(generation);
    say!("casfront: {up} of {nodes} node(s) passed the first health check");
    let listener = TcpListener::bind(config.listen.https)
        .await
        .with_context(|| format!("listening on {}", config.listen.https))?;
    let https = listener.local_addr()?;
    let mut tasks = Vec::new();
    let mut http = None;
    if let Some(addr) = config.listen.http {
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        http = Some(l.local_addr()?);
        say!("casfront: redirecting http on {} to https", l.local_addr()?);
        let redirect = server::redirect::serve(l, https.port(), current.clone());
        tasks.push(tokio::spawn(redirect));
    }
    let admin_listener = TcpListener::bind(config.admin.listen)
        .await
        .with_context(|| format!("listening on {} (admin)", config.admin.listen))?;
    let admin = admin_listener.local_addr()?;
    say!("casfront: admin API and status page on http://{admin}");
    tasks.push(tokio::spawn(admin::serve(admin_listener, current.clone())));
    Ok(Started {
        current,
        https,
        http,
        admin,
        listener,
        tasks,
    })
}

impl Started {
    /// Serves https until `stop` completes, then shuts down gracefully.
    /// Returns whether every connection finished within the grace period.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> bool {
        let current = self.current.clone();
        let stopped = async {
            stop.await;
            current.state().set_stopping();
            // Read now: a reload may have changed it.
            let grace = current.generation().limits().shutdown_grace;
            notify("STOPPING=1");
            say!(
                "casfront: shutting down: no new connections; {}s for the requests in flight",
                grace.as_secs_f64()
            );
            grace
        };
        say!("casfront: serving https on {}", self.https);
        notify("READY=1");
        let finished = server::serve_until(self.listener, self.current, stopped).await;
        for task in self.tasks {
            task.abort();
        }
        finished
    }
}

/// `casfront run`: serves `config`, read from `path`, until SIGTERM or
/// Ctrl-C; SIGHUP reloads it.
pub async fn serve(path: PathBuf, config: Config) -> anyhow::Result<()> {
    // Taken over first: until then, SIGHUP would end the process.
    let hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let _log = access_log::init(&config.log);
    let started = start(path, config).await?;
    let reloads = tokio::spawn(reload_on_sighup(started.current.clone(), hup));
    let stop = async {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    let finished = started.run_until(stop).await;
    reloads.abort();
    if finished {
        say!("casfront: stopped");
    } else {
        say!("casfront: stopped; connections still open after the grace period were cut");
    }
    Ok(())
}

/// Reloads the configuration on each SIGHUP, saying what happened.
async fn reload_on_sighup(current: Arc<Current>, mut hup: Signal) {
    while hup.recv().await.is_some() {
        notify("RELOADING=1");
        match current.reload().await {
            Ok(r) => {
                for w in &r.warnings {
                    say!("{w}");
                }
                say!(
                    "casfront: reloaded: {} node(s) kept, {} added{}",
                    r.carried.nodes_kept,
                    r.carried.nodes_added,
                    if r.carried.learned_kept {
                        ""
                    } else {
                        "; pools changed: learned cookies dropped"
                    }
                );
                for n in &r.restart_needed {
                    say!("casfront: needs a restart: {n}");
                }
            }
            Err(e) => say!("casfront: reload refused, the old configuration keeps serving: {e}"),
        }
        notify("READY=1");
    }
}
