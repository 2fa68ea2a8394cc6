//! Active health checks end to end: a node killed under continuous load is
//! taken out with no failed request, and comes back once it passes `rise`
//! checks after it is revived on the same port, long before the
//! `down_cooldown` its failed connections set (a node rollout).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use casfront::demo::node::{self, NodeSpec};
use casfront::demo::Cluster;
use casfront::routing::{NodeState, NodeStates};

mod support;
use support::client::{tls_trusting, KeepAlive};

/// Waits up to `limit` for `cond`; returns how long it took.
async fn until(limit: Duration, cond: impl Fn() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_leaves_and_a_revived_one_returns_without_a_failed_request() {
    let specs = (1..=3)
        .map(|i| NodeSpec::named(&format!("cas{i}")))
        .collect();
    // One address sends as fast as it can: no request rate limit.
    let mut cluster = Cluster::start_with(specs, "127.0.0.1:0".parse().unwrap(), |c| {
        let c = format!("{c}{}", support::NO_RATE_LIMIT);
        c.replacen(
            "path_prefix = \"/cas\"\n",
            "path_prefix = \"/cas\"\n[pool.health]\ninterval = \"100ms\"\ntimeout = \"80ms\"\n\
             rise = 2\nfall = 2\n[pool.upstream]\ndown_cooldown = \"30s\"\n",
            1,
        )
    })
    .await
    .unwrap();
    let proxy = cluster.generation();
    let _checks = cluster.start_checks().await;
    let cas2 = proxy.table().node_by_name("cas2").unwrap();
    assert_eq!(proxy.health().state(cas2), NodeState::Healthy);

    // Continuous load: new logins, spread over the usable nodes.
    let tls = tls_trusting(&cluster.cert_pem);
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed, on_cas2) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let load = {
        let (stop, sent, failed, on_cas2) =
            (stop.clone(), sent.clone(), failed.clone(), on_cas2.clone());
        let addr = cluster.addr;
        tokio::spawn(async move {
            let mut client = KeepAlive::open(&tls, addr, "localhost").await;
            while !stop.load(Ordering::Relaxed) {
                let r = client.get("/cas/login").await;
                sent.fetch_add(1, Ordering::Relaxed);
                if r.status != 200 {
                    eprintln!("failed: {} {}", r.status, r.body.trim());
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                if r.header("x-cas-node") == Some("cas2") {
                    on_cas2.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Kill cas2: out at once when a request finds it refusing, at the
    // latest after `fall` failed checks (2 × 110 ms + an 80 ms timeout).
    let killed = cluster.nodes.remove(1);
    let addr = killed.addr;
    killed.stop().await;
    let out = until(Duration::from_millis(600), || {
        proxy.health().state(cas2) == NodeState::Down
    })
    .await;
    assert!(out.is_some(), "cas2 was not taken out");
    // It stays out while dead: only passing checks bring it back.
    let back_early = until(Duration::from_millis(500), || {
        proxy.health().state(cas2) != NodeState::Down
    })
    .await;
    assert_eq!(back_early, None, "cas2 came back while dead");
    let before = on_cas2.load(Ordering::Relaxed);

    // Revive it on the same port: back after `rise` passing checks, not
    // after the 30 s cool-down of the connections that failed on it.
    let revived = node::spawn_on(NodeSpec::named("cas2"), addr).await.unwrap();
    let back = until(Duration::from_secs(2), || {
        proxy.health().state(cas2) == NodeState::Healthy
    })
    .await
    .expect("cas2 did not come back");
    assert!(
        back >= Duration::from_millis(85),
        "back after {back:?}: sooner than two checks allow"
    );
    let returned = until(Duration::from_secs(2), || {
        on_cas2.load(Ordering::Relaxed) > before
    })
    .await;
    assert!(returned.is_some(), "no request reached the revived cas2");

    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert!(sent.load(Ordering::Relaxed) > 100);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "of {} requests",
        sent.load(Ordering::Relaxed)
    );
    drop(revived);
}
