//! The process's life: start (the log output, the process state and first
//! generation with a first round of health checks, then the listeners:
//! https, the optional plain-HTTP redirect, the admin API), serve until
//! told to stop, reload on SIGHUP, hand over to a new binary on SIGUSR2
//! ([`crate::upgrade`]), and shut down gracefully (no new connections; the
//! requests in flight get `limits.shutdown_grace`).
//! `casfront run` is [`serve`]; tests drive [`start`] and
//! [`Started::run_until`] with a stop of their own.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::task::JoinHandle;

use std::os::fd::AsFd;

use crate::config::{Config, Keep};
use crate::current::Current;
use crate::notify::notify;
use crate::routing::{NodeState, NodeStates};
use crate::upgrade::{Inherited, Predecessor, Upgrader};
use crate::{access_log, admin, discovery, server};

/// casfront started: its listeners bound, its generation in force.
pub struct Started {
    pub current: Arc<Current>,
    /// Where each listener listens (ports resolved).
    pub https: SocketAddr,
    pub http: Option<SocketAddr>,
    pub admin: SocketAddr,
    listener: TcpListener,
    tasks: Vec<JoinHandle<()>>,
    /// For SIGUSR2 (`casfront run` takes it).
    upgrader: Option<Upgrader>,
    /// The process being upgraded to this one, told once this one serves.
    predecessor: Option<Predecessor>,
}

/// Builds the first generation (checking every node once) and binds the
/// listeners of `config`, read from `path` (or takes them over, from a
/// process being upgraded or from systemd).
pub async fn start(path: PathBuf, config: Config) -> anyhow::Result<Started> {
    start_with(path, config, Inherited::default()).await
}

/// The same with the sockets (and the predecessor) handed to this process
/// ([`Inherited::from_env`], read before the runtime starts threads).
pub async fn start_with(
    path: PathBuf,
    mut config: Config,
    mut inherited: Inherited,
) -> anyhow::Result<Started> {
    let predecessor = (inherited.predecessor().await).context("the upgrade channel")?;
    let created = config
        .prepare_state(Keep::OnDisk)
        .map_err(anyhow::Error::msg)?;
    if config.uses_state_key() {
        let key = config.state.route_key();
        let how = if created.is_some() { "created" } else { "kept" };
        say!(
            "casfront: route-cookie key {} ({how}; copy it to peer instances to share routes)",
            key.display()
        );
    }
    let handover = predecessor.as_ref().map(|p| &p.handover);
    let (current, received) = Current::start_with(path, config.clone(), handover).await?;
    let generation = current.generation();
    let nodes = generation.table().nodes().len();
    let up = (generation.table().node_ids())
        .filter(|&(n, _)| generation.health().state(n) == NodeState::Healthy)
        .count();
    if predecessor.is_some() {
        say!(
            "casfront: took over from the process being upgraded: {} node mode(s), {} learned cookie(s)",
            received.modes,
            received.learned
        );
    }
    drop(generation);
    say!("casfront: {up} of {nodes} node(s) passed the first health check");
    // Nodes from DNS, resolved (and checked) once before serving.
    let discovering = discovery::start(current.clone(), &config)
        .await
        .map_err(anyhow::Error::msg)?;
    let listener = (inherited.listener("https", config.listen.https))
        .with_context(|| format!("listening on {}", config.listen.https))?;
    let https = listener.local_addr()?;
    let mut tasks: Vec<JoinHandle<()>> = discovering.into_iter().collect();
    let mut http = None;
    let mut sockets = Vec::new();
    if let Some(addr) = config.listen.http {
        let l =
            (inherited.listener("http", addr)).with_context(|| format!("listening on {addr}"))?;
        http = Some(l.local_addr()?);
        sockets.push(("http", l.as_fd().try_clone_to_owned()?));
        say!("casfront: redirecting http on {} to https", l.local_addr()?);
        let redirect = server::redirect::serve(l, https.port(), current.clone());
        tasks.push(tokio::spawn(redirect));
    }
    let admin_listener = (inherited.listener("admin", config.admin.listen))
        .with_context(|| format!("listening on {} (admin)", config.admin.listen))?;
    let admin = admin_listener.local_addr()?;
    sockets.push(("admin", admin_listener.as_fd().try_clone_to_owned()?));
    sockets.push(("https", listener.as_fd().try_clone_to_owned()?));
    say!("casfront: admin API and status page on http://{admin}");
    tasks.push(tokio::spawn(admin::serve(admin_listener, current.clone())));
    tasks.push(tokio::spawn(server::trim::run()));
    Ok(Started {
        current,
        https,
        http,
        admin,
        listener,
        tasks,
        upgrader: Some(Upgrader::new(sockets)?),
        predecessor,
    })
}

/// Why serving ends.
enum Ending {
    /// SIGTERM, Ctrl-C, a test's stop: shut down.
    Stop,
    /// A new process serves (SIGUSR2): stop accepting, drain.
    Upgraded,
}

impl Started {
    /// Serves https until `stop` completes, then shuts down gracefully.
    /// Returns whether every connection finished within the grace period.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> bool {
        self.run(async {
            stop.await;
            Ending::Stop
        })
        .await
    }

    async fn run(mut self, stop: impl Future<Output = Ending>) -> bool {
        let current = self.current.clone();
        let mut tasks = std::mem::take(&mut self.tasks);
        let tasks_left = &mut tasks;
        let stopped = async {
            let ending = stop.await;
            current.state().set_stopping();
            // Read now: a reload may have changed it.
            let grace = current.generation().limits().shutdown_grace;
            match ending {
                Ending::Stop => {
                    notify("STOPPING=1");
                    say!(
                        "casfront: shutting down: no new connections; {}s for the requests in flight",
                        grace.as_secs_f64()
                    );
                }
                Ending::Upgraded => {
                    say!(
                        "casfront: the new process serves: this one takes no new connections; {}s for the requests in flight",
                        grace.as_secs_f64()
                    );
                    // The admin and redirect listeners stop accepting too:
                    // their sockets are the new process's now. (On a
                    // shutdown the admin API goes on answering `/ready`
                    // with 503 while requests drain.)
                    for task in tasks_left.drain(..) {
                        task.abort();
                    }
                }
            }
            grace
        };
        say!("casfront: serving https on {}", self.https);
        let predecessor = self.predecessor.take();
        // After an upgrade, the process upgraded tells systemd this one is
        // the main process once it hears `ready` from it.
        if predecessor.is_none() {
            notify("READY=1");
        }
        if let Some(p) = predecessor {
            if let Err(e) = p.ready().await {
                say!(
                    "casfront: could not tell the process being upgraded that this one serves: {e}"
                );
            }
        }
        let finished = server::serve_until(self.listener, self.current, stopped).await;
        for task in tasks {
            task.abort();
        }
        finished
    }
}

/// How long a new process started by SIGUSR2 has to serve (its first
/// round of health checks included) before the upgrade is abandoned.
const UPGRADE_WAIT: Duration = Duration::from_secs(60);

/// `casfront run`: serves `config`, read from `path`, until SIGTERM or
/// Ctrl-C; SIGHUP reloads it; SIGUSR2 hands over to the binary now at the
/// same path ([`crate::upgrade`]).
pub async fn serve(path: PathBuf, config: Config, inherited: Inherited) -> anyhow::Result<()> {
    // Taken over first: until then, SIGHUP or SIGUSR2 would end the process.
    let hup = signal(SignalKind::hangup())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    let mut term = signal(SignalKind::terminate())?;
    let _log = access_log::init(&config.log);
    let mut started = start_with(path, config, inherited).await?;
    let reloads = tokio::spawn(reload_on_sighup(started.current.clone(), hup));
    let upgrader = started.upgrader.take();
    let current = started.current.clone();
    let stop = async move {
        let upgraded = async {
            let Some(upgrader) = upgrader else {
                return std::future::pending().await;
            };
            loop {
                usr2.recv().await;
                say!("casfront: SIGUSR2: starting the new binary to take over");
                let handover = current.generation().handover();
                match upgrader.run(&handover, UPGRADE_WAIT).await {
                    Ok(pid) => {
                        say!("casfront: upgraded: process {pid} serves");
                        return;
                    }
                    Err(e) => {
                        say!("casfront: upgrade failed, this process keeps serving: {e}");
                    }
                }
            }
        };
        tokio::select! {
            _ = term.recv() => Ending::Stop,
            _ = tokio::signal::ctrl_c() => Ending::Stop,
            () = upgraded => Ending::Upgraded,
        }
        // The upgrader's socket handles close here: once this process
        // drops its listeners, only a successor holds them.
    };
    let finished = started.run(stop).await;
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
