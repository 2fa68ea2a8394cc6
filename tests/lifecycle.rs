//! Nothing lost across casfront's own life, with the release process an
//! operator runs (`casfront run`) in front of modern CAS nodes that share
//! no keys (an opaque `TGC` and an opaque session id only the issuing node
//! knows), in the default configuration:
//! - a restart (SIGTERM, then a new process) and a crash (SIGKILL): every
//!   logged-in user's single sign-on still reaches the node that knows the
//!   TGC, every login form opened before still submits;
//! - twenty `SIGUSR2` upgrades in a row under load (keep-alive and new
//!   HTTP/1.1 connections, HTTP/2, single sign-on): no request fails, each
//!   old process is gone after draining, and a drained node and the learned
//!   cookies pass from process to process;
//! - an upgrade whose new process cannot start (a broken configuration)
//!   leaves the old one serving;
//! - a client's TLS session resumes across a reload, a restart, an
//!   upgrade and a crash (the ticket keys are in the state directory).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use casfront::demo::node::{self, NodeSpec, RunningNode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};

mod support;
// Not in `support/mod.rs`: the benches and examples that share `support`
// have no binary to run.
#[path = "support/running.rs"]
mod running;
use running::{wait_gone, Casfront};
use support::browser::Jar;
use support::client::{connect_tls, send_tls, tls_trusting, tls_trusting_h2, Reply};
use support::process::wait_line;

const SERVICE_Q: &str = "https%3A%2F%2Fapp.example.edu%2F";
const LOGIN: &str = "/cas/login?service=https%3A%2F%2Fapp.example.edu%2F";

/// Three modern nodes and a configuration file for casfront in front of
/// them (its state directory beside it).
struct Site {
    _nodes: Vec<RunningNode>,
    config: PathBuf,
    tls: Arc<rustls::ClientConfig>,
    tls_h2: Arc<rustls::ClientConfig>,
}

async fn site(name: &str) -> Site {
    let mut nodes = Vec::new();
    for n in ["cas1", "cas2", "cas3"] {
        nodes.push(node::spawn(NodeSpec::modern(n, true)).await.unwrap());
    }
    let cert = casfront::demo::self_signed().unwrap();
    let dir = std::env::temp_dir().join(format!("casfront-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), &cert.cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &cert.key_pem).unwrap();
    let addrs: Vec<(&str, SocketAddr)> = nodes
        .iter()
        .map(|n| (n.spec.name.as_str(), n.addr))
        .collect();
    // Only what a test needs beyond the defaults: loopback ports, no
    // access log, no rate limits (every user here is 127.0.0.1).
    let text = format!(
        "[listen]\nhttps = \"127.0.0.1:0\"\n[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess = false\n{}\
         [[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n{}",
        support::NO_RATE_LIMIT,
        support::node_tables(&addrs)
    );
    let config = dir.join("casfront.toml");
    std::fs::write(&config, text).unwrap();
    Site {
        _nodes: nodes,
        config,
        tls: tls_trusting(&cert.cert_pem),
        tls_h2: tls_trusting_h2(&cert.cert_pem),
    }
}

impl Site {
    async fn send(
        &self,
        addr: SocketAddr,
        jar: &mut Jar,
        method: &str,
        target: &str,
        body: &str,
    ) -> Reply {
        support::browser::send(&self.tls, addr, jar, method, target, body).await
    }

    /// Opens the login form: the node's session (and casfront's route
    /// cookie) in `jar`.
    async fn open_form(&self, addr: SocketAddr, jar: &mut Jar) -> Result<(), String> {
        let r = self.send(addr, jar, "GET", LOGIN, "").await;
        (r.status == 200)
            .then_some(())
            .ok_or(format!("form: {}", r.status))
    }

    /// Submits the form opened in `jar`, then validates the ticket.
    async fn submit(&self, addr: SocketAddr, jar: &mut Jar, user: &str) -> Result<(), String> {
        let form = format!("username={user}&password={user}&service={SERVICE_Q}");
        let r = self.send(addr, jar, "POST", "/cas/login", &form).await;
        if r.status != 302 {
            return Err(format!(
                "{user}: login POST answered {}: {}",
                r.status,
                r.body.trim()
            ));
        }
        self.validate(addr, &r, user).await
    }

    /// Single sign-on: the TGC must reach the node that knows it.
    async fn sso(&self, addr: SocketAddr, jar: &mut Jar, user: &str) -> Result<(), String> {
        let r = self.send(addr, jar, "GET", LOGIN, "").await;
        if r.status != 302 {
            return Err(format!(
                "{user}: single sign-on answered {} by {:?}",
                r.status,
                r.header("x-cas-node")
            ));
        }
        self.validate(addr, &r, user).await
    }

    async fn validate(&self, addr: SocketAddr, r: &Reply, user: &str) -> Result<(), String> {
        let st = r
            .header("location")
            .map(support::client::ticket_in)
            .unwrap_or_default();
        let target = format!("/cas/serviceValidate?service={SERVICE_Q}&ticket={st}");
        let v = self
            .send(addr, &mut Jar::default(), "GET", &target, "")
            .await;
        let ok = v.body.contains(&format!("<cas:user>{user}</cas:user>"));
        ok.then_some(())
            .ok_or(format!("{user}: ticket {st} not validated"))
    }
}

/// A step of a user's life.
#[derive(Copy, Clone)]
enum Step {
    Sso,
    Submit,
}

/// Runs `step` for every user; the failures' messages.
async fn every(
    site: &Site,
    addr: SocketAddr,
    users: &mut [(String, Jar)],
    step: Step,
) -> Vec<String> {
    let mut failed = Vec::new();
    for (user, jar) in users.iter_mut() {
        let done = match step {
            Step::Sso => site.sso(addr, jar, user).await,
            Step::Submit => site.submit(addr, jar, user).await,
        };
        if let Err(e) = done {
            failed.push(e);
        }
    }
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_or_a_kill_loses_no_user() {
    let site = site("restart").await;
    let c = Casfront::start(&site.config);
    let mut users: Vec<(String, Jar)> = (0..60)
        .map(|i| (format!("user{i}"), Jar::default()))
        .collect();
    let mut forms: Vec<(String, Jar)> = (0..30)
        .map(|i| (format!("form{i}"), Jar::default()))
        .collect();
    let addr = c.https;
    for (user, jar) in &mut users {
        site.open_form(addr, jar).await.unwrap();
        site.submit(addr, jar, user).await.unwrap();
    }
    for (_, jar) in &mut forms {
        site.open_form(addr, jar).await.unwrap();
    }
    c.stop("TERM");

    // A new process: everyone still where they were.
    let c = Casfront::start(&site.config);
    let addr = c.https;
    let failed = every(&site, addr, &mut users, Step::Sso).await;
    assert!(
        failed.is_empty(),
        "after a restart, {} of 60 SSO failed: {failed:?}",
        failed.len()
    );
    let failed = every(&site, addr, &mut forms, Step::Submit).await;
    assert!(
        failed.is_empty(),
        "after a restart, {} of 30 forms failed: {failed:?}",
        failed.len()
    );
    users.append(&mut forms);
    let mut forms: Vec<(String, Jar)> = (0..30)
        .map(|i| (format!("late{i}"), Jar::default()))
        .collect();
    for (_, jar) in &mut forms {
        site.open_form(addr, jar).await.unwrap();
    }
    // A crash: nothing written at the end, nothing handed over.
    c.stop("KILL");

    let c = Casfront::start(&site.config);
    let addr = c.https;
    let failed = every(&site, addr, &mut users, Step::Sso).await;
    assert!(
        failed.is_empty(),
        "after kill -9, {} of 90 SSO failed: {failed:?}",
        failed.len()
    );
    let failed = every(&site, addr, &mut forms, Step::Submit).await;
    assert!(
        failed.is_empty(),
        "after kill -9, {} of 30 forms failed: {failed:?}",
        failed.len()
    );
    drop(c);
}

/// One request on a new connection with `tls` (its session store offers
/// a ticket when it has one): whether the handshake resumed a session.
async fn resumed(tls: &Arc<rustls::ClientConfig>, addr: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = connect_tls(tls, addr, "localhost").await;
    let kind = s.get_ref().1.handshake_kind();
    s.write_all(b"GET /cas/login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // Reading to the end takes in the session tickets sent before it.
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    kind == Some(rustls::HandshakeKind::Resumed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_sessions_resume_across_reload_restart_upgrade_and_crash() {
    let site = site("resume").await;
    let tls = &site.tls;
    let mut c = Casfront::start(&site.config);
    assert!(!resumed(tls, c.https).await, "the first handshake is full");
    assert!(resumed(tls, c.https).await, "the second resumes");
    c.signal("HUP");
    assert_eq!(c.next_ready(), None, "READY=1 after the reload");
    assert!(resumed(tls, c.https).await, "after a reload");
    c.upgrade();
    assert!(resumed(tls, c.https).await, "after an upgrade");
    c.stop("TERM");
    let c = Casfront::start(&site.config);
    assert!(resumed(tls, c.https).await, "after a restart");
    c.stop("KILL");
    let c = Casfront::start(&site.config);
    assert!(resumed(tls, c.https).await, "after kill -9");
    let keys = site.config.with_file_name("tls-tickets");
    let files: Vec<_> = std::fs::read_dir(&keys).unwrap().flatten().collect();
    assert!(!files.is_empty() && files.len() <= 2, "{files:?}");
    drop(c);
}

/// Requests answered and failed; kept connections the server closed
/// cleanly between requests (`Connection: close`, GOAWAY) and replaced;
/// requests sent again on a new connection after a reused one closed
/// without answering (what browsers do, RFC 9110 §9.2.2: the request was
/// not processed) — casfront avoids that race, so the test requires none.
#[derive(Default)]
struct Tally {
    done: AtomicUsize,
    failed: AtomicUsize,
    retried: AtomicUsize,
    reconnected: AtomicUsize,
    errors: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.errors.lock().unwrap().push(what);
    }
}

type H1 = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;
type H2 = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

async fn h1(site: &Site, addr: SocketAddr) -> Result<H1, String> {
    let io = TokioIo::new(connect_tls(&site.tls, addr, "localhost").await);
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn h2(site: &Site, addr: SocketAddr) -> Result<H2, String> {
    let io = TokioIo::new(connect_tls(&site.tls_h2, addr, "localhost").await);
    let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(sender)
}

fn get(uri: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(uri)
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap()
}

/// How far a request got before it failed.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
enum Stage {
    /// The connection was closed before the request went, or the server
    /// refused it unprocessed (`Connection: close`, an HTTP/2 stream above
    /// the GOAWAY's last): a client opens another connection for it.
    Closed,
    /// Sent, and the connection closed without an answer.
    Unanswered,
    /// The answer had begun.
    Answered,
}

type Sent = Result<u16, (Stage, String)>;

async fn send_h1(s: &mut H1) -> Sent {
    s.ready()
        .await
        .map_err(|e| (Stage::Closed, e.to_string()))?;
    let r = (s.send_request(get("/cas/login")).await).map_err(|e| {
        let stage = if e.is_canceled() {
            Stage::Closed
        } else {
            Stage::Unanswered
        };
        (stage, e.to_string())
    })?;
    let status = r.status().as_u16();
    r.into_body()
        .collect()
        .await
        .map_err(|e| (Stage::Answered, e.to_string()))?;
    Ok(status)
}

async fn send_h2(s: &mut H2) -> Sent {
    s.ready()
        .await
        .map_err(|e| (Stage::Closed, e.to_string()))?;
    let r = (s.send_request(get("https://localhost/cas/login")).await).map_err(|e| {
        // Not sent (the connection closed first), or refused by the
        // server's GOAWAY (a stream above its last: never processed).
        use std::error::Error;
        let refused = (e.source().and_then(|s| s.downcast_ref::<h2::Error>()))
            .is_some_and(|h| h.is_go_away() && h.is_remote());
        let stage = if e.is_canceled() || refused {
            Stage::Closed
        } else {
            Stage::Unanswered
        };
        (stage, e.to_string())
    })?;
    let status = r.status().as_u16();
    r.into_body()
        .collect()
        .await
        .map_err(|e| (Stage::Answered, e.to_string()))?;
    Ok(status)
}

/// A client on kept connections (HTTP/1.1 keep-alive or HTTP/2) until
/// `stop`: a request that fails before any answer on a reused connection
/// is retried once on a new one; any other failure counts.
async fn kept_client(
    site: Arc<Site>,
    addr: SocketAddr,
    http2: bool,
    stop: Arc<AtomicBool>,
    t: Arc<Tally>,
) {
    let (mut c1, mut c2): (Option<H1>, Option<H2>) = (None, None);
    while !stop.load(Ordering::Relaxed) {
        let mut result: Sent = Err((Stage::Closed, String::new()));
        // A closed connection is replaced; an unanswered request on a
        // reused one is sent again once.
        let mut retried = false;
        for _ in 0..3 {
            let reused = if http2 { c2.is_some() } else { c1.is_some() };
            result = if http2 {
                match c2.as_mut() {
                    Some(s) => send_h2(s).await,
                    None => match h2(&site, addr).await {
                        Ok(s) => send_h2(c2.insert(s)).await,
                        Err(e) => Err((Stage::Unanswered, e)),
                    },
                }
            } else {
                match c1.as_mut() {
                    Some(s) => send_h1(s).await,
                    None => match h1(&site, addr).await {
                        Ok(s) => send_h1(c1.insert(s)).await,
                        Err(e) => Err((Stage::Unanswered, e)),
                    },
                }
            };
            let Err((stage, _)) = &result else {
                break;
            };
            let stage = *stage;
            (c1, c2) = (None, None);
            match stage {
                Stage::Closed if reused => t.reconnected.fetch_add(1, Ordering::Relaxed),
                Stage::Unanswered if reused && !retried => {
                    retried = true;
                    let why = result
                        .as_ref()
                        .err()
                        .map(|e| e.1.clone())
                        .unwrap_or_default();
                    t.errors
                        .lock()
                        .unwrap()
                        .push(format!("sent again (h2: {http2}): {why}"));
                    t.retried.fetch_add(1, Ordering::Relaxed)
                }
                _ => break,
            };
        }
        match result {
            Ok(200) => {
                t.done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(s) => t.fail(format!("kept connection: status {s}")),
            Err((_, e)) => t.fail(format!("kept connection: {e}")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_upgrades_under_load_fail_no_request() {
    let site = Arc::new(site("upgrade").await);
    let mut c = Casfront::start(&site.config);
    let addr = c.https;
    let mut users: Vec<(String, Jar)> = (0..10)
        .map(|i| (format!("user{i}"), Jar::default()))
        .collect();
    for (user, jar) in &mut users {
        site.open_form(addr, jar).await.unwrap();
        site.submit(addr, jar, user).await.unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut load = Vec::new();
    for http2 in [false, true] {
        let (site, stop, t) = (site.clone(), stop.clone(), tally.clone());
        load.push(tokio::spawn(kept_client(site, addr, http2, stop, t)));
    }
    // A new connection for every request.
    let (s, st, t) = (site.clone(), stop.clone(), tally.clone());
    load.push(tokio::spawn(async move {
        while !st.load(Ordering::Relaxed) {
            let r = send_tls(&s.tls, addr, "localhost", "GET", "/cas/login", &[], "").await;
            if r.status == 200 {
                t.done.fetch_add(1, Ordering::Relaxed);
            } else {
                t.fail(format!("new connection: status {}", r.status));
            }
        }
    }));
    // Single sign-on all along, each on a new connection.
    let (s, st, t) = (site.clone(), stop.clone(), tally.clone());
    let sso = tokio::spawn(async move {
        let mut users = users;
        while !st.load(Ordering::Relaxed) {
            for (user, jar) in &mut users {
                match s.sso(addr, jar, user).await {
                    Ok(()) => t.done.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        t.fail(e);
                        0
                    }
                };
            }
        }
        users
    });
    // An operator drained cas3: every new process keeps it so.
    let r = support::client::send(c.admin, "POST", "/nodes/cas3/drain", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut old = vec![c.pid];
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        old.push(c.upgrade());
        if i == 0 {
            // The learned cookies went over too (each user's TGC and
            // session at least).
            let said = wait_line(&c.stderr, |l| {
                l.contains("took over from the process being upgraded")
            });
            let learned: usize = said
                .split(", ")
                .nth(1)
                .and_then(|p| p.split(' ').next())
                .unwrap()
                .parse()
                .unwrap();
            assert!(said.contains(": 1 node mode(s)") && learned >= 10, "{said}");
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let mut users = sso.await.unwrap();
    let (done, failed, retried, reconnected) = (
        tally.done.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
        tally.retried.load(Ordering::Relaxed),
        tally.reconnected.load(Ordering::Relaxed),
    );
    eprintln!(
        "20 upgrades: {done} requests answered, {failed} failed, {retried} sent again; \
         kept connections closed cleanly and replaced: {reconnected}"
    );
    assert_eq!(failed, 0, "{:?}", tally.errors.lock().unwrap());
    assert_eq!(
        retried,
        0,
        "requests lost on kept connections: {:?}",
        tally.errors.lock().unwrap()
    );
    assert!(done > 200, "too little load to mean anything: {done}");
    // Each old process drained and left.
    old.pop();
    for pid in old {
        assert!(
            wait_gone(pid, Duration::from_secs(10)),
            "process {pid} still there after its upgrade"
        );
    }
    let status = support::client::send(c.admin, "GET", "/status.json", &[], "").await;
    let v: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    let cas3 = &v["pools"][0]["nodes"][2];
    assert_eq!(
        (cas3["name"].as_str(), cas3["state"].as_str()),
        (Some("cas3"), Some("draining"))
    );
    // The users' routes are intact in the last process.
    let failed = every(&site, addr, &mut users, Step::Sso).await;
    assert!(failed.is_empty(), "{failed:?}");

    // An upgrade whose new process cannot start: the old one serves on.
    let good = std::fs::read_to_string(&site.config).unwrap();
    std::fs::write(
        &site.config,
        good.replace("[[pool]]", "[[pool]]\nbogus = 1"),
    )
    .unwrap();
    c.signal("USR2");
    let said = wait_line(&c.stderr, |l| l.contains("upgrade failed"));
    assert!(said.contains("this process keeps serving"), "{said}");
    let r = send_tls(&site.tls, addr, "localhost", "GET", "/cas/login", &[], "").await;
    assert_eq!(r.status, 200);
    assert!(
        !wait_gone(c.pid, Duration::from_millis(300)),
        "the old process left"
    );
    std::fs::write(&site.config, good).unwrap();
}
