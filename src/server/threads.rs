//! The listener's threads: one per core, each with a runtime of its own
//! that accepts from the same socket and serves what it accepted.
//!
//! Why not one multi-thread runtime: when a core is saturated (400 busy
//! keep-alive connections and their node connections make hundreds of
//! tasks ready at each poll), tokio's multi-thread scheduler serves them
//! unfairly. Its per-thread queue holds 256 tasks; past that it moves the
//! *oldest* half to the shared queue, which it looks at only every few
//! dozen tasks while each poll of the sockets refills the local one, and
//! its LIFO slot runs the task woken last first. Some requests wait many
//! rounds: at 400 connections on one core, p99 was 71 ms against 37 ms with
//! a current-thread runtime (first in, first out), for the same throughput
//! and 5% less CPU per request (docs/benchmarks.md). HAProxy and Envoy run
//! one event loop per thread the same way.
//!
//! `casfront run` serves on a current-thread runtime and [`serve_until`]
//! starts one more thread, with a current-thread runtime of its own, per
//! further core ([`count`]). Each accepts from the one listening socket
//! (a duplicate of its descriptor): a thread busy serving accepts less.
//! The rest of the process (health checks, the admin API, reloads) runs on
//! the first thread's runtime. Node connections are shared by all threads.

use std::future::Future;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::current::Current;

/// The cores the process may run on: its CPU affinity (`taskset`,
/// systemd's `CPUAffinity=`) and its cgroup's CPU quota count.
pub fn count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// [`super::serve_until`] on this runtime and on `threads - 1` threads more,
/// each with a current-thread runtime of its own: accepts on all of them
/// until `shutdown` completes with the grace period, then each drains its
/// connections. Returns whether every connection finished in time. If the
/// future is dropped, the other threads stop accepting and close their
/// connections.
pub async fn serve_until(
    listener: TcpListener,
    current: Arc<Current>,
    threads: usize,
    shutdown: impl Future<Output = Duration>,
) -> bool {
    // The grace period, once shutdown begins.
    let (tell, told) = watch::channel(None::<Duration>);
    // Every thread keeps its runtime, with the node connections it opened
    // and shares, until every thread has drained.
    let (_release, released) = watch::channel(());
    let mut drained = Vec::new();
    for n in 1..threads {
        match spawn(
            n,
            &listener,
            current.clone(),
            told.clone(),
            released.clone(),
        ) {
            Ok(done) => drained.push(done),
            Err(e) => {
                say!("casfront: serving on {n} thread(s), not {threads}: {e}");
                break;
            }
        }
    }
    let shutdown = async {
        let grace = shutdown.await;
        tell.send_replace(Some(grace));
        grace
    };
    let mut finished = super::serve_until(listener, current, shutdown).await;
    for done in drained {
        finished &= done.await.unwrap_or(false);
    }
    finished
}

/// Thread `n`: accepts from a duplicate of `listener` until told the grace
/// period (or that the serving future is gone: no grace), drains, says
/// whether every connection finished in time, and keeps its runtime until
/// released.
fn spawn(
    n: usize,
    listener: &TcpListener,
    current: Arc<Current>,
    mut told: watch::Receiver<Option<Duration>>,
    mut released: watch::Receiver<()>,
) -> std::io::Result<oneshot::Receiver<bool>> {
    let socket = std::net::TcpListener::from(listener.as_fd().try_clone_to_owned()?);
    socket.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (done, drained) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("casfront-{n}"))
        .spawn(move || {
            runtime.block_on(async move {
                let finished = match TcpListener::from_std(socket) {
                    Ok(listener) => {
                        let grace = async move {
                            match told.wait_for(Option::is_some).await {
                                Ok(grace) => grace.unwrap_or_default(),
                                Err(_) => Duration::ZERO,
                            }
                        };
                        super::serve_until(listener, current, grace).await
                    }
                    Err(e) => {
                        say!("casfront: thread {n} could not accept: {e}");
                        true
                    }
                };
                let _ = done.send(finished);
                // Until the sender is dropped.
                while released.changed().await.is_ok() {}
            });
        })?;
    Ok(drained)
}
