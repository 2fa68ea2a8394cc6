//! Live reload end to end: twenty reloads while clients keep sending
//! requests (on kept-alive connections and on new ones), with zero failed
//! requests; a node a reload adds is checked before it gets traffic (a dead
//! one stays down); an invalid configuration is refused and the old one
//! keeps serving; a certificate rotated on disk is served after a reload;
//! the `reloads` metric counts both outcomes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use casfront::current::{Current, ReloadError};
use casfront::demo::node::{self, NodeSpec};
use casfront::routing::{NodeState, NodeStates};
use casfront::server;

mod support;
use support::client::{connect_tls, tls_trusting, KeepAlive};
use support::pki::Ca;

/// The configuration file's text: nodes by name and address.
fn config_text(
    listen: SocketAddr,
    dir: &Path,
    nodes: &[(&str, SocketAddr)],
    interval: &str,
) -> String {
    let mut s = format!(
        "[listen]\nhttps = \"{listen}\"\n[tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess = false\n{no_rate_limit}\
         [[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n\
         [pool.health]\ninterval = \"{interval}\"\ntimeout = \"80ms\"\nrise = 1\nfall = 1\n",
        cert = dir.join("cert.pem").display(),
        key = dir.join("key.pem").display(),
        no_rate_limit = support::NO_RATE_LIMIT,
    );
    s.push_str(&support::node_tables(nodes));
    s
}

fn write_leaf(dir: &Path, ca: &Ca) {
    let leaf = ca.leaf(&["localhost"]);
    std::fs::write(dir.join("cert.pem"), leaf.cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), leaf.key_pem).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_load_fail_no_request() {
    let dir = std::env::temp_dir().join(format!("casfront-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (old_ca, new_ca) = (Ca::new("old CA"), Ca::new("new CA"));
    write_leaf(&dir, &old_ca);
    let mut nodes = Vec::new();
    for name in ["cas1", "cas2", "cas3"] {
        nodes.push(node::spawn(NodeSpec::named(name)).await.unwrap());
    }
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = [("cas1", nodes[0].addr), ("cas2", nodes[1].addr)];
    let with_cas3 = [base[0], base[1], ("cas3", nodes[2].addr)];
    let with_dead = [base[0], base[1], ("cas3", nodes[2].addr), ("cas4", dead)];
    let path = dir.join("casfront.toml");
    std::fs::write(&path, config_text(addr, &dir, &base, "100ms")).unwrap();
    let cfg = casfront::config::load(&path).unwrap().config.unwrap();
    let live = Current::start(path.clone(), cfg).await.unwrap();
    let _server = tokio::spawn(server::serve_until(
        listener,
        live.clone(),
        std::future::pending(),
    ));

    // Clients trust both CAs: they must keep working across the rotation.
    let tls = tls_trusting(&format!("{}{}", old_ca.pem, new_ca.pem));
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for client in 0..3 {
        let (tls, stop, sent, failed) = (tls.clone(), stop.clone(), sent.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let mut seen = std::collections::BTreeSet::new();
            let mut kept = KeepAlive::open(&tls, addr, "localhost").await;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                // Every tenth request on a new connection (a new handshake).
                if i % 10 == 0 {
                    kept = KeepAlive::open(&tls, addr, "localhost").await;
                }
                let owner = ["cas1", "cas2"][(i as usize + client) % 2];
                let target = if i % 2 == 0 {
                    "/cas/login".to_owned()
                } else {
                    format!("/cas/serviceValidate?service=s&ticket=ST-{i}-abcdefgh-{owner}")
                };
                let r = kept.get(&target).await;
                let node = r.header("x-cas-node").unwrap_or("-").to_owned();
                let routed = i % 2 == 0 || node == owner;
                if r.status != 200 || !routed {
                    eprintln!("failed: {target} -> {} from {node}", r.status);
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                seen.insert(node);
                sent.fetch_add(1, Ordering::Relaxed);
            }
            seen
        }));
    }

    let node_id = |name: &str| live.generation().table().node_by_name(name).unwrap();
    let mut invalid_done = false;
    for round in 0..20 {
        let (set, interval): (&[(&str, SocketAddr)], _) = match round % 4 {
            0 => (&with_cas3, "100ms"),
            1 => (&with_dead, "100ms"),
            2 => (&with_cas3, "150ms"),
            _ => (&base, "100ms"),
        };
        if round == 10 && !invalid_done {
            // An invalid file: refused with its position, the old one serves.
            std::fs::write(&path, "[listen]\nhttps = \"nowhere\"\n").unwrap();
            match live.reload().await {
                Err(ReloadError::Invalid(errors)) => {
                    assert!(
                        errors.iter().any(|e| e.contains(":2:9: error")),
                        "{errors:?}"
                    );
                }
                other => panic!("{other:?}"),
            }
            invalid_done = true;
            let mut one = KeepAlive::open(&tls, addr, "localhost").await;
            let r = one
                .get("/cas/serviceValidate?ticket=ST-1-abcdefgh-cas2")
                .await;
            assert_eq!((r.status, r.header("x-cas-node")), (200, Some("cas2")));
        }
        if round == 15 {
            write_leaf(&dir, &new_ca);
        }
        std::fs::write(&path, config_text(addr, &dir, set, interval)).unwrap();
        let r = live.reload().await.unwrap();
        assert!(r.restart_needed.is_empty(), "{:?}", r.restart_needed);
        let health = live.generation();
        let health = health.health();
        match round % 4 {
            0 => assert_eq!(health.state(node_id("cas3")), NodeState::Healthy),
            1 => {
                // Added by this reload, checked before the swap: down.
                assert_eq!(r.carried.nodes_added, 1);
                assert_eq!(health.state(node_id("cas4")), NodeState::Down);
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut seen = std::collections::BTreeSet::new();
    for l in load {
        seen.extend(l.await.unwrap());
    }
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} of {sent} requests failed");
    assert!(sent > 200, "only {sent} requests were sent");
    assert!(
        seen.contains("cas3"),
        "the added node got traffic: {seen:?}"
    );
    assert!(!seen.contains("cas4"), "the dead node never answered");
    // Nor was a request ever sent its way: it was down before the swap.
    let m = live
        .metrics()
        .encode(live.generation().table(), |_| NodeState::Healthy, 0);
    assert!(
        m.contains(r#"casfront_upstream_failures_total{pool="cas",node="cas4",kind="connect"} 0"#),
        "{m}"
    );
    assert_eq!(live.metrics().reloads(), (20, 1));

    // The rotated certificate is what new connections get.
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        connect_tls(&new_ca.client(), addr, "localhost"),
    )
    .await;
    assert!(r.is_ok());
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let old = tokio_rustls::TlsConnector::from(old_ca.client())
        .connect(name, stream)
        .await;
    assert!(old.is_err(), "the old certificate is no longer served");
    let _ = std::fs::remove_dir_all(&dir);
}
