//! Nodes from DNS, end to end: a real DNS server (dnsmasq, started by the
//! test on a loopback port) serves SRV records for `cas-0..cas-2`, demo
//! nodes answer on loopback ports, casfront runs from a configuration file
//! with `[pool.discovery]`. Tickets route to each discovered node; `cas-3`
//! added gets its tickets once checked; `cas-1` removed keeps its tickets
//! for the grace period (no new logins), then leaves; a node whose port
//! changes is followed; the DNS server stopped changes nothing and is
//! counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use casfront::demo::node::{self, NodeSpec, RunningNode};
use casfront::routing::{NodeState, NodeStates};

mod support;
use support::client::{send_tls, tls_trusting};
use support::until;

const SRV: &str = "_http._tcp.cas.test";

/// dnsmasq serving `records` (name, port) as SRV targets `NAME.cas.test`
/// on 127.0.0.1, all at 127.0.0.1; killed when dropped.
struct Dns(Child);

impl Dns {
    fn start(port: u16, records: &[(&str, u16)]) -> Dns {
        let mut cmd = Command::new(dnsmasq());
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--pid-file=",
            "--user=root",
            "--log-facility=-",
        ])
        .arg(format!("--port={port}"));
        for (name, p) in records {
            cmd.arg(format!("--srv-host={SRV},{name}.cas.test,{p}"));
            cmd.arg(format!("--host-record={name}.cas.test,127.0.0.1"));
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let dns = Dns(child);
        dns.wait_answering(port);
        dns
    }

    /// Until dnsmasq answers a query (any answer: its socket is bound). A
    /// fixed wait was too short with the whole suite loading both cores:
    /// casfront's first lookup timed out and it started with no nodes.
    fn wait_answering(&self, port: u16) {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        // A query for `cas.test` A: id, flags (recursion desired), one
        // question, then the name, type 1 and class 1.
        let query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\
                      \x03cas\x04test\x00\x00\x01\x00\x01";
        let mut answer = [0u8; 512];
        for _ in 0..100 {
            let _ = socket.send_to(query, ("127.0.0.1", port));
            if matches!(socket.recv(&mut answer), Ok(n) if n >= 12 && answer[..2] == query[..2]) {
                return;
            }
        }
        panic!("dnsmasq did not answer on port {port} within 10 s");
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn dnsmasq() -> &'static str {
    if std::path::Path::new("/usr/sbin/dnsmasq").exists() {
        "/usr/sbin/dnsmasq"
    } else {
        "dnsmasq"
    }
}

fn have_dnsmasq() -> bool {
    let ok = Command::new(dnsmasq())
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    // CI installs it (.ci/run): there, a missing one is a failure.
    assert!(ok || std::env::var_os("CI").is_none(), "dnsmasq is missing");
    ok
}

/// A free UDP and TCP port on loopback (for the DNS server).
fn free_port() -> u16 {
    let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    u.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_follow_dns() {
    if !have_dnsmasq() {
        return;
    }
    let mut nodes: Vec<RunningNode> = Vec::new();
    for name in ["cas-0", "cas-1", "cas-2", "cas-3"] {
        nodes.push(node::spawn(NodeSpec::named(name)).await.unwrap());
    }
    let port = |i: usize| nodes[i].addr.port();
    let dns_port = free_port();
    let dns = Dns::start(
        dns_port,
        &[("cas-0", port(0)), ("cas-1", port(1)), ("cas-2", port(2))],
    );

    let dir = std::env::temp_dir().join(format!("casfront-discovery-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = casfront::demo::self_signed().unwrap();
    std::fs::write(dir.join("cert.pem"), &cert.cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &cert.key_pem).unwrap();
    let text = format!(
        "[listen]\nhttps = \"127.0.0.1:0\"\n[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess = false\n{}\
         [[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n\
         [pool.health]\ninterval = \"100ms\"\ntimeout = \"80ms\"\nrise = 1\n\
         [pool.discovery]\nsrv = \"{SRV}\"\nresolver = \"127.0.0.1:{dns_port}\"\n\
         interval = \"200ms\"\ngrace = \"2s\"\n",
        support::NO_RATE_LIMIT
    );
    let path = dir.join("casfront.toml");
    std::fs::write(&path, text).unwrap();
    let cfg = casfront::config::load(&path).unwrap().config.unwrap();
    let started = casfront::process::start(path.clone(), cfg).await.unwrap();
    let (https, current) = (started.https, started.current.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(started.run_until(async {
        let _ = stopped.await;
    }));
    let tls = tls_trusting(&cert.cert_pem);
    // Which nodes 30 new logins (the form, no ticket or session) reach.
    let logins = || {
        let tls = tls.clone();
        async move {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..30 {
                let r = send_tls(&tls, https, "localhost", "GET", "/cas/login", &[], "").await;
                seen.extend(r.header("x-cas-node").map(str::to_owned));
            }
            seen
        }
    };
    let routed = |node: &'static str| {
        let tls = tls.clone();
        async move {
            let t = format!("/cas/serviceValidate?service=s&ticket=ST-1-abc-{node}");
            let r = send_tls(&tls, https, "localhost", "GET", &t, &[], "").await;
            r.header("x-cas-node").map(str::to_owned)
        }
    };
    let state = |name: &str| {
        let g = current.generation();
        g.table().node_by_name(name).map(|n| g.health().state(n))
    };
    let t0 = Instant::now();
    let log = |what: &str| eprintln!("{:>7.3}s  {what}", t0.elapsed().as_secs_f64());

    // Discovered before serving: each node gets its tickets.
    for n in ["cas-0", "cas-1", "cas-2"] {
        assert_eq!(routed(n).await.as_deref(), Some(n), "{n}");
        assert_eq!(state(n), Some(NodeState::Healthy));
    }
    assert_eq!(state("cas-3"), None);
    log("cas-0, cas-1, cas-2 discovered and checked");
    // `casfront explain` resolves them too.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_casfront"))
        .args([
            "explain",
            "-c",
            path.to_str().unwrap(),
            "/cas/serviceValidate?ticket=ST-1-x-cas-2",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&said).unwrap();
    assert_eq!(v["node"], "cas-2", "{said}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cas-2 at 127.0.0.1:"));

    // cas-3 appears: checked, then its tickets go there.
    drop(dns);
    let dns = Dns::start(
        dns_port,
        &[
            ("cas-0", port(0)),
            ("cas-1", port(1)),
            ("cas-2", port(2)),
            ("cas-3", port(3)),
        ],
    );
    let took = until(Duration::from_secs(5), || {
        state("cas-3") == Some(NodeState::Healthy)
    })
    .await;
    assert!(took.is_some(), "cas-3 was not added");
    assert_eq!(routed("cas-3").await.as_deref(), Some("cas-3"));
    assert!(
        logins().await.contains("cas-3"),
        "no new login reached cas-3"
    );
    log("cas-3 added, checked and routed to (tickets and new logins)");

    // cas-1 leaves DNS: draining (its tickets still go there), gone after
    // the 2 s grace.
    drop(dns);
    let dns = Dns::start(
        dns_port,
        &[("cas-0", port(0)), ("cas-2", port(2)), ("cas-3", port(3))],
    );
    let took = until(Duration::from_secs(5), || {
        state("cas-1") == Some(NodeState::Draining)
    })
    .await;
    assert!(
        took.is_some(),
        "cas-1 was not drained: {:?}",
        state("cas-1")
    );
    assert_eq!(routed("cas-1").await.as_deref(), Some("cas-1"));
    let reached = logins().await;
    assert!(
        !reached.contains("cas-1") && reached.len() == 3,
        "{reached:?}"
    );
    log("cas-1 gone from DNS: draining, its tickets still routed, no new logins");
    let took = until(Duration::from_secs(5), || state("cas-1").is_none()).await;
    assert!(took.is_some(), "cas-1 stayed past its grace");
    assert_ne!(routed("cas-1").await.as_deref(), Some("cas-1"));
    log("cas-1 removed after its grace");

    // cas-2 moves to another port: followed.
    let moved = node::spawn(NodeSpec::named("cas-2")).await.unwrap();
    let new_port = moved.addr.port();
    drop(dns);
    let dns = Dns::start(
        dns_port,
        &[("cas-0", port(0)), ("cas-2", new_port), ("cas-3", port(3))],
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut followed = false;
    while Instant::now() < deadline && !followed {
        assert_eq!(routed("cas-2").await.as_deref(), Some("cas-2"));
        followed = moved.heard().iter().any(|l| l.contains("ST-1-abc-cas-2"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(followed, "cas-2's new port {new_port} was not followed");
    log("cas-2 followed to its new port");

    // The DNS server stops: nothing changes, the failures are counted.
    drop(dns);
    let before = current.generation().table().nodes().len();
    let (admin, _admin) = support::admin(&current).await;
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut failures = 0u64;
    while failures < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let m = support::client::send(admin, "GET", "/metrics", &[], "")
            .await
            .body;
        failures = (m.lines())
            .find_map(|l| l.strip_prefix("casfront_discovery_failures_total "))
            .unwrap_or_else(|| panic!("{m}"))
            .parse()
            .unwrap();
    }
    assert!(failures >= 2, "{failures} failures counted");
    // The status shows where each node came from.
    let status = support::client::send(admin, "GET", "/status.json", &[], "")
        .await
        .body;
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let cas0 = &v["pools"][0]["nodes"][0];
    let shown = (cas0["name"].as_str(), cas0["source"].as_str());
    assert_eq!(shown, (Some("cas-0"), Some("dns")), "{status}");
    assert_eq!(current.generation().table().nodes().len(), before);
    assert_eq!(routed("cas-0").await.as_deref(), Some("cas-0"));
    log("DNS stopped: nodes kept, failures counted");

    stop.send(()).unwrap();
    serving.await.unwrap();
    drop(moved);
    let _ = std::fs::remove_dir_all(&dir);
}
