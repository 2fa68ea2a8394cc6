//! Nodes that fail and come back, end to end: a node killed under
//! continuous load is taken out with no failed request, and comes back once
//! it passes `rise` checks after it is revived on the same port, long
//! before the `down_cooldown` its failed connections set; a rolling restart
//! of every node fails no request; a request a node took and did not answer
//! goes to another node only when any node would do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use casfront::demo::node::{self, NodeSpec};
use casfront::demo::Cluster;
use casfront::routing::{NodeState, NodeStates};

mod support;
use support::client::{tls_trusting, KeepAlive};
use support::until;

/// Three nodes behind casfront, checked every 100 ms (rise 2, fall 2),
/// with `extra` pool sections; one address sends as fast as it can: no
/// request rate limit.
async fn checked_cluster(extra: &str) -> Cluster {
    let specs = (1..=3)
        .map(|i| NodeSpec::named(&format!("cas{i}")))
        .collect();
    Cluster::start_with(specs, "127.0.0.1:0".parse().unwrap(), |c| {
        let c = format!("{c}{}", support::NO_RATE_LIMIT);
        c.replacen(
            "path_prefix = \"/cas\"\n",
            &format!(
                "path_prefix = \"/cas\"\n[pool.health]\ninterval = \"100ms\"\ntimeout = \"80ms\"\n\
                 rise = 2\nfall = 2\n{extra}"
            ),
            1,
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_leaves_and_a_revived_one_returns_without_a_failed_request() {
    let mut cluster = checked_cluster("[pool.upstream]\ndown_cooldown = \"30s\"\n").await;
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

/// A node that reads each request and closes the connection unanswered
/// (a node going down under a request); how many it took.
async fn black_hole() -> (std::net::SocketAddr, Arc<AtomicU64>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let took = Arc::new(AtomicU64::new(0));
    let counted = took.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if matches!(s.read(&mut buf).await, Ok(n) if n > 0) {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    (addr, took)
}

/// A request that may go to any node, with an idempotent method and no
/// body, that a node takes and does not answer goes to another node; a
/// POST, or a request a ticket sent to that node, is answered 502 and
/// never sent elsewhere (the node may have acted on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_request_is_retried_elsewhere_only_when_any_node_would_do() {
    let good = node::spawn(NodeSpec::named("cas1")).await.unwrap();
    let cert = casfront::demo::self_signed().unwrap();
    let tls = tls_trusting(&cert.cert_pem);
    for (method, target, body, want, retried) in [
        ("GET", "/cas/login", "", 200, true),
        ("HEAD", "/cas/login", "", 200, true),
        ("POST", "/cas/login", "username=u&password=p", 502, false),
        (
            "GET",
            "/cas/serviceValidate?service=s&ticket=ST-1-abc-bad",
            "",
            502,
            false,
        ),
    ] {
        // A cluster of its own each time: the first failure marks the
        // node down.
        let (hole, took) = black_hole().await;
        let text = format!(
            "[listen]\nhttps = \"127.0.0.1:0\"\n[tls]\ncert = \"c\"\nkey = \"k\"\n\
             [[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n{}{}",
            support::node_tables(&[("bad", hole), ("cas1", good.addr)]),
            support::NO_RATE_LIMIT
        );
        let config = support::config_of(&text);
        let listener_tls = casfront::tls::from_pem(&cert.cert_pem, &cert.key_pem).unwrap();
        let (addr, current, _serving) = support::front(&config, listener_tls).await;
        let before = good.heard().len();
        // Several times: the round robin must reach the bad node.
        let mut reached = 0;
        for _ in 0..4 {
            if took.load(Ordering::Relaxed) > 0 {
                break;
            }
            let headers = [("content-type", "application/x-www-form-urlencoded")];
            let r =
                support::client::send_tls(&tls, addr, "localhost", method, target, &headers, body)
                    .await;
            reached += 1;
            if took.load(Ordering::Relaxed) > 0 {
                assert_eq!(r.status, want, "{method} {target}: {}", r.body.trim());
            }
        }
        assert_eq!(
            took.load(Ordering::Relaxed),
            1,
            "{method} {target}: the bad node took none ({reached} sent)"
        );
        let heard_after = good.heard().len() - before;
        // Retried: cas1 heard each request sent (the one the bad node took
        // included); not retried: it heard only those routed to it.
        let expected = if retried { reached } else { reached - 1 };
        assert_eq!(
            heard_after,
            expected,
            "{method} {target}: {:?}",
            good.heard()
        );
        // The copy sent again is the request as it was first sent.
        if retried {
            let last = good.heard().last().cloned();
            assert_eq!(last, Some(format!("{method} {target} cl= te=")));
        }
        // A new connection closed unanswered takes the node out (a POST's
        // failure may be the request's own: it does not).
        let bad = current.generation().table().node_by_name("bad").unwrap();
        let down = current.generation().health().state(bad) == NodeState::Down;
        assert_eq!(down, method != "POST", "{method} {target}");
    }
}

/// A rolling restart of all three nodes under load, each down for 300 ms
/// and back when its checks pass: no request without a ticket fails
/// (those in flight on a stopping node go to another), and each node is
/// back within `rise` × `interval` plus an interval of its revival.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_node_fails_no_request() {
    let mut cluster = checked_cluster("").await;
    let proxy = cluster.generation();
    let _checks = cluster.start_checks().await;
    let tls = tls_trusting(&cluster.cert_pem);
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for kept in [true, true, false] {
        let (stop, sent, failed, tls) = (stop.clone(), sent.clone(), failed.clone(), tls.clone());
        let addr = cluster.addr;
        load.push(tokio::spawn(async move {
            let mut client = KeepAlive::open(&tls, addr, "localhost").await;
            while !stop.load(Ordering::Relaxed) {
                let r = if kept {
                    client.get("/cas/login").await
                } else {
                    let r = support::client::send_tls(
                        &tls,
                        addr,
                        "localhost",
                        "GET",
                        "/cas/login",
                        &[],
                        "",
                    );
                    r.await
                };
                sent.fetch_add(1, Ordering::Relaxed);
                if r.status != 200 {
                    eprintln!("failed: {} {}", r.status, r.body.trim());
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let mut slowest = Duration::ZERO;
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let name = format!("cas{}", i + 1);
        let id = proxy.table().node_by_name(&name).unwrap();
        let old = cluster.nodes.remove(i);
        let addr = old.addr;
        old.stop().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let revived = node::spawn_on(NodeSpec::named(&name), addr).await.unwrap();
        cluster.nodes.insert(i, revived);
        let back = until(Duration::from_secs(3), || {
            proxy.health().state(id) == NodeState::Healthy
        })
        .await
        .unwrap_or_else(|| panic!("{name} did not come back"));
        slowest = slowest.max(back);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "rolling restart: {sent} requests, {failed} failed; nodes back after at most {slowest:?}"
    );
    assert!(sent > 100, "{sent}");
    assert_eq!(failed, 0, "of {sent} requests");
    // rise (2) × interval (100 ms) + an interval, with room for a loaded
    // machine's scheduling: far below a cool-down.
    assert!(
        slowest < Duration::from_millis(800),
        "a node came back after {slowest:?}"
    );
}
