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
use std::process::Command;
use support::client::{send, send_tls, tls_trusting};
use support::process::{line_channel, wait_line};

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
    s.push_str(&support::node_tables(nodes));
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

    // The certificate served and the seconds it has left (the demo's is
    // valid for decades).
    let m = send(admin, "GET", "/metrics", &[], "").await.body;
    let series = format!(
        "casfront_certificate_expiry_seconds{{source=\"{}\",name=\"localhost\"}} ",
        dir.join("cert.pem").display()
    );
    let left: i64 = (m.lines())
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("{series}\n{m}"))
        .parse()
        .unwrap();
    assert!(left > 10 * 365 * 86_400, "{left}");

    // A request in flight when the stop comes is answered; then the
    // process returns, every connection finished, and no longer listens.
    let slow = tokio::spawn(get("/cas/slow?ms=1500".into()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(send(admin, "GET", "/ready", &[], "").await.status, 200);
    stop.send(()).unwrap();
    // While it drains, `/ready` turns balancers and keepalived away.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = send(admin, "GET", "/ready", &[], "").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, "shutting down: no new connections\n")
    );
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

/// `casfront run` under a systemd-like supervisor: READY=1 once serving,
/// an access line per request with the ticket redacted, a SIGHUP that
/// reloads a changed file (RELOADING=1, READY=1), then STOPPING=1 on
/// SIGTERM and exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_notifies_logs_and_reloads_on_sighup() {
    use casfront::demo::node::{spawn, NodeSpec};
    use std::os::unix::net::UnixDatagram;
    let cas1 = spawn(NodeSpec::named("cas1")).await.unwrap();
    let cas2 = spawn(NodeSpec::named("cas2")).await.unwrap();
    let cert = casfront::demo::self_signed().unwrap();
    let cert_path = support::temp_file("server.pem", &cert.cert_pem);
    let key_path = support::temp_file("server.key", &cert.key_pem);
    let text = |nodes: &[(&str, std::net::SocketAddr)]| {
        let mut s = format!(
            "[listen]\nhttps = \"127.0.0.1:0\"\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\n\
             [[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n",
            cert_path.display(),
            key_path.display(),
        );
        s.push_str(&support::node_tables(nodes));
        s
    };
    let config = support::temp_file("sighup.toml", &text(&[("cas1", cas1.addr)]));
    let socket_path = support::temp_file("notify.sock", "");
    let _ = std::fs::remove_file(&socket_path);
    let notify = UnixDatagram::bind(&socket_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let next_state = || {
        let mut buf = [0u8; 64];
        let n = notify.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut proc = support::process::Running(
        Command::new(env!("CARGO_BIN_EXE_casfront"))
            .args(["run", "-c", config.to_str().unwrap()])
            .env("NOTIFY_SOCKET", &socket_path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = line_channel(proc.0.stdout.take().unwrap());
    let stderr = line_channel(proc.0.stderr.take().unwrap());
    let serving = wait_line(&stderr, |l| l.starts_with("casfront: serving https on "));
    let addr: std::net::SocketAddr = serving.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(next_state(), "READY=1");

    let tls = support::client::tls_trusting(&cert.cert_pem);
    let target = "/cas/serviceValidate?service=s&ticket=ST-7-SECRETpart-cas1";
    let r = support::client::send_tls(&tls, addr, "localhost", "GET", target, &[], "").await;
    assert_eq!(r.header("x-cas-node"), Some("cas1"));
    let line = wait_line(&stdout, |l| l.contains("serviceValidate"));
    assert!(!line.contains("SECRET"), "{line}");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["path"], "/cas/serviceValidate?service=s&ticket=ST-…-cas1");
    assert_eq!(v["status"], 200);
    assert_eq!(
        (v["node"].as_str(), v["rule"].as_str()),
        (Some("cas1"), Some("ticket"))
    );
    assert_eq!(
        (v["how"].as_str(), v["complete"].as_bool()),
        (Some("suffix"), Some(true))
    );
    assert_eq!(v["bytes"].as_u64(), Some(r.body.len() as u64));
    // Nor a client secret, a PKCE verifier or a ticket id encoded in a path.
    for target in [
        "/cas/oidc/token?client_id=a&client_secret=SECRETsecret&code_verifier=SECRETverifier",
        "/cas/v1/tickets/%54GT-5-SECRETpart-cas1",
    ] {
        support::client::send_tls(&tls, addr, "localhost", "GET", target, &[], "").await;
        let line = wait_line(&stdout, |l| {
            l.contains("/cas/oidc/token") || l.contains("/v1/tickets/")
        });
        assert!(!line.contains("SECRET"), "{line}");
    }

    std::fs::write(&config, text(&[("cas1", cas1.addr), ("cas2", cas2.addr)])).unwrap();
    let pid = proc.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let reloaded = wait_line(&stderr, |l| l.starts_with("casfront: reload"));
    assert_eq!(reloaded, "casfront: reloaded: 1 node(s) kept, 1 added");
    assert_eq!(
        (next_state(), next_state()),
        ("RELOADING=1".into(), "READY=1".into())
    );
    let r = support::client::send_tls(
        &tls,
        addr,
        "localhost",
        "GET",
        "/cas/p3/serviceValidate?ticket=ST-1-x-cas2",
        &[],
        "",
    )
    .await;
    assert_eq!(
        r.header("x-cas-node"),
        Some("cas2"),
        "the reloaded configuration serves"
    );

    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert_eq!(next_state(), "STOPPING=1");
    let status = proc.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_file(&socket_path);
}
