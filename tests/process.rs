//! The process's life as `casfront run` lives it, driven from the library
//! (`process::start`, `Started::run_until`): from a configuration file,
//! the https listener routes a ticket to the node that issued it, the
//! plain-HTTP listener redirects, the admin API reloads the file (the new
//! generation serves the node it adds), and a stop lets the request in
//! flight finish before the process returns, while new connections are
//! refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use casfront::demo::node::{self, NodeSpec};

mod support;
use support::client::{send, send_tls, tls_trusting};

fn config_text(dir: &Path, nodes: &[(&str, SocketAddr)]) -> String {
    let mut s = format!(
        "[listen]\nhttps = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nhosts = [\"localhost\"]\n\
         [tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess = false\n\
         [limits]\nshutdown_grace = \"5s\"\n{no_rate_limit}\
         [[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n",
        cert = dir.join("cert.pem").display(),
        key = dir.join("key.pem").display(),
        no_rate_limit = support::NO_RATE_LIMIT,
    );
    for (name, addr) in nodes {
        s.push_str(&format!(
            "[[pool.node]]\nname = \"{name}\"\nurl = \"http://{addr}\"\n"
        ));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_serve_reload_and_stop_gracefully() {
    let dir = std::env::temp_dir().join(format!("casfront-process-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = casfront::demo::self_signed().unwrap();
    std::fs::write(dir.join("cert.pem"), &cert.cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &cert.key_pem).unwrap();
    let mut nodes = Vec::new();
    for name in ["cas1", "cas2"] {
        nodes.push(node::spawn(NodeSpec::named(name)).await.unwrap());
    }
    let path = dir.join("casfront.toml");
    std::fs::write(&path, config_text(&dir, &[("cas1", nodes[0].addr)])).unwrap();
    let cfg = casfront::config::load(&path).unwrap().config.unwrap();
    let started = casfront::process::start(path.clone(), cfg).await.unwrap();
    let (https, http, admin) = (started.https, started.http.unwrap(), started.admin);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(started.run_until(async {
        let _ = stopped.await;
    }));
    let tls = tls_trusting(&cert.cert_pem);
    let get = |target: String| {
        let tls = tls.clone();
        async move { send_tls(&tls, https, "localhost", "GET", &target, &[], "").await }
    };

    // Served, routed by ticket suffix; the plain listener redirects, to a
    // served name only.
    let r = get("/cas/serviceValidate?service=x&ticket=ST-1-a-cas1".into()).await;
    assert_eq!(r.header("x-cas-node"), Some("cas1"));
    let r = send(http, "GET", "/cas/login", &[("host", "localhost")], "").await;
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some(format!("https://localhost:{}/cas/login", https.port()).as_str())
    );
    let r = send(http, "GET", "/cas/login", &[("host", "evil.example")], "").await;
    assert_eq!(
        r.header("location"),
        Some(format!("https://localhost:{}/cas/login", https.port()).as_str())
    );

    // A reload through the admin API adds cas2: its tickets go there now.
    let both = [("cas1", nodes[0].addr), ("cas2", nodes[1].addr)];
    std::fs::write(&path, config_text(&dir, &both)).unwrap();
    let r = send(admin, "POST", "/reload", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"nodes_added\":1"), "{}", r.body);
    let r = get("/cas/serviceValidate?service=x&ticket=ST-1-a-cas2".into()).await;
    assert_eq!(r.header("x-cas-node"), Some("cas2"));

    // A request in flight when the stop comes is answered; then the
    // process returns, every connection finished, and no longer listens.
    let slow = tokio::spawn(get("/cas/slow?ms=1500".into()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(()).unwrap();
    let finished = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the process returns within its grace period")
        .unwrap();
    assert!(
        finished,
        "every connection finished within the grace period"
    );
    let r = slow.await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "slow\n"));
    assert!(tokio::net::TcpStream::connect(https).await.is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
