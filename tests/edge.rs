//! Edge protection end to end, on real sockets: 429 under a burst and
//! recovery after the window, per client behind a trusted proxy; a
//! connection flood from one address capped while another address is
//! served; slowloris connections cut while normal clients are served
//! promptly; PROXY protocol v1 and v2 addresses in X-Forwarded-For, read
//! only from configured peers; HTTP/2 rapid reset and idle connections
//! closed with a GOAWAY.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use casfront::demo::node::NodeSpec;
use casfront::demo::Cluster;
use casfront::metrics::Refusal;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;
use support::client::{
    connect_tls, exchange, send_tls, tcp_from, tls_over, tls_trusting, tls_trusting_h2,
};

async fn cluster(edit: impl FnOnce(String) -> String) -> Cluster {
    Cluster::start_with(
        vec![NodeSpec::named("cas1")],
        "127.0.0.1:0".parse().unwrap(),
        edit,
    )
    .await
    .unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_get_429_and_recover_per_client() {
    let cluster = cluster(|c| {
        let c = c.replacen(
            "[listen]\n",
            "[listen]\ntrusted_proxies = [\"127.0.0.1\"]\n",
            1,
        );
        // The caps always hold (`pressure = 0`), not only under pressure.
        format!(
            "{c}[limits]\npressure = 0\n[rate_limit]\nrequests_per_second = 1\nburst = 4\n\
             login_per_minute = 6\nlogin_burst = 2\n"
        )
    })
    .await;
    let tls = tls_trusting(&cluster.cert_pem);
    let addr = cluster.addr;
    // The trusted proxy names its clients: each is limited on its own.
    let alice = [("x-forwarded-for", "198.51.100.1")];
    let bob = [("x-forwarded-for", "198.51.100.2")];
    let send = |method, target, who| send_tls(&tls, addr, "localhost", method, target, who, "");

    // Logins: a burst of 2, then 429 (the jsessionid path parameter is
    // still the login path).
    for _ in 0..2 {
        assert_ne!(send("POST", "/cas/login", &alice).await.status, 429);
    }
    let r = send("POST", "/cas/login;jsessionid=abc.cas1", &alice).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("login attempts"), "{}", r.body);
    // One login per 10 s: the next is allowed 10 s after the first.
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((8..=10).contains(&wait), "Retry-After: {wait}");
    // Other requests: 1 of the burst of 4 is left (the three logins
    // counted as requests too).
    assert_eq!(send("GET", "/cas/login", &alice).await.status, 200);
    let r = send("GET", "/cas/login", &alice).await;
    assert_eq!((r.status, r.header("retry-after")), (429, Some("1")));
    // Bob is not affected.
    assert_eq!(send("GET", "/cas/login", &bob).await.status, 200);
    assert_ne!(send("POST", "/cas/login", &bob).await.status, 429);
    // After the window (one request a second), Alice is served again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(send("GET", "/cas/login", &alice).await.status, 200);
    let m = cluster.current.metrics();
    assert_eq!(
        (
            m.refusals(Refusal::LoginRateLimit),
            m.refusals(Refusal::RateLimit)
        ),
        (1, 1)
    );
    // The node saw none of the refused requests: 2 + 1 + 2 + 1 answered.
    assert_eq!(cluster.nodes[0].heard().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_is_capped_while_another_is_served() {
    let cluster = cluster(|c| {
        format!(
            "{c}[limits]\nmax_connections_per_ip = 4\npressure = 0\n{}",
            support::NO_RATE_LIMIT
        )
    })
    .await;
    let tls = tls_trusting(&cluster.cert_pem);
    let flood = ip("127.0.0.2");
    let mut held = Vec::new();
    for _ in 0..4 {
        let s = tcp_from(flood, cluster.addr).await.unwrap();
        held.push(tls_over(&tls, s, "localhost").await.unwrap());
    }
    // The fifth from the same address is closed before its handshake.
    for _ in 0..20 {
        let s = tcp_from(flood, cluster.addr).await.unwrap();
        assert!(tls_over(&tls, s, "localhost").await.is_err());
    }
    assert_eq!(
        cluster
            .current
            .metrics()
            .refusals(Refusal::ConnectionsPerIp),
        20
    );
    // Another address is served meanwhile.
    let r = send_tls(
        &tls,
        cluster.addr,
        "localhost",
        "GET",
        "/cas/login",
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    // A connection closed gives its slot back.
    drop(held.pop());
    let mut again = None;
    for _ in 0..100 {
        let s = tcp_from(flood, cluster.addr).await.unwrap();
        if let Ok(t) = tls_over(&tls, s, "localhost").await {
            again = Some(t);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = again.expect("the freed slot was not given back");
    let r = exchange(
        TokioIo::new(again),
        "localhost",
        "GET",
        "/cas/login",
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
}

/// Hundreds of connections sending a header byte per second, and more that
/// never finish their TLS handshake: each is cut at its deadline, while a
/// normal client's requests, each on a new connection, are served promptly
/// the whole time they are held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_while_normal_clients_are_served() {
    let cluster = cluster(|c| {
        format!(
            "{c}[limits]\nheader_read_timeout = \"6s\"\nhandshake_timeout = \"6s\"\n\
             max_connections_per_ip = 1000\n{}",
            support::NO_RATE_LIMIT
        )
    })
    .await;
    let tls = tls_trusting(&cluster.cert_pem);
    let addr = cluster.addr;
    let slow = Arc::new(Slow::default());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..300 {
        let (tls, slow) = (tls.clone(), slow.clone());
        tasks.push(tokio::spawn(async move {
            let s = tcp_from(ip("127.0.0.2"), addr).await.unwrap();
            if i % 3 == 0 {
                // A TLS record header that promises 512 bytes, then a byte
                // a second: the handshake never ends.
                let (mut r, mut w) = s.into_split();
                return dribble(&mut r, &mut w, b"\x16\x03\x01\x02\x00", &slow).await;
            }
            let t = tls_over(&tls, s, "localhost").await.unwrap();
            let (mut r, mut w) = tokio::io::split(t);
            dribble(&mut r, &mut w, b"", &slow).await
        }));
    }
    // The timed requests start once every slow connection is open and
    // sending (200 TLS handshakes of a debug build on both ends take a
    // loaded machine up to a second: that burst is not what is measured).
    // Well inside the 6 s they are held for.
    let deadline = Instant::now() + Duration::from_secs(4);
    while slow.open.load(Ordering::Relaxed) < 300 {
        assert!(
            Instant::now() < deadline,
            "the slow connections did not open in 4 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Meanwhile: 20 requests, each on a new connection.
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        let r = send_tls(&tls, addr, "localhost", "GET", "/cas/login", &[], "").await;
        assert_eq!(r.status, 200);
        slowest = slowest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The measurement means something only if the slow ones were still
    // held throughout it (they are cut 6 s after they open). A CI machine
    // once closed 14 of 300 within 2 s, by no deadline of casfront's (not
    // reproduced here, even at 1 core under load; with a low `ulimit -n`
    // the kernel does such things): a few may go, nine in ten must stay.
    let held = started.elapsed();
    let early = slow.cut.load(Ordering::Relaxed);
    assert!(
        early <= 30,
        "{early} slow connections were cut before the normal requests ended ({held:?}): {:?}",
        slow.early.lock().unwrap()
    );
    for s in tasks {
        let lasted = s.await.unwrap();
        // Cut at 6 s; slack for a loaded machine, far from "never".
        assert!(
            lasted < Duration::from_secs(10),
            "a slow connection lasted {lasted:?}"
        );
    }
    assert_eq!(slow.cut.load(Ordering::Relaxed), 300);
    eprintln!(
        "slowloris: 300 cut after {:?}; normal requests, all by {held:?}, took at most {slowest:?}",
        started.elapsed()
    );
    // A server that the slow connections blocked would keep a new client
    // waiting for their cut, seconds away.
    assert!(
        slowest < Duration::from_secs(1),
        "a normal request took {slowest:?}"
    );
}

/// The slowloris connections: how many are open and sending, how many the
/// server has cut.
#[derive(Default)]
struct Slow {
    open: AtomicUsize,
    cut: AtomicUsize,
    /// How each connection cut before 5 s ended (when, which side, why):
    /// for the message if there are too many.
    early: std::sync::Mutex<Vec<String>>,
}

/// Sends `first`, then "GET /cas/login HTTP/1.1\r\n..." a byte a second
/// until the server closes the connection; returns how long that took.
async fn dribble<R, W>(r: &mut R, w: &mut W, first: &[u8], slow: &Slow) -> Duration
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let start = Instant::now();
    let writer = async {
        if w.write_all(first).await.is_err() {
            return;
        }
        slow.open.fetch_add(1, Ordering::Relaxed);
        for b in b"GET /cas/login HTTP/1.1\r\nHost: localhost\r\n"
            .iter()
            .cycle()
        {
            if w.write_all(&[*b]).await.is_err() || w.flush().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        std::future::pending::<()>().await;
    };
    let mut buf = [0u8; 1024];
    let reader = async {
        loop {
            match r.read(&mut buf).await {
                Ok(0) => return "read: end".to_owned(),
                Err(e) => return format!("read: {e}"),
                Ok(_) => {}
            }
        }
    };
    let how = tokio::select! {
        _ = writer => "write failed".to_owned(),
        why = reader => why,
        _ = tokio::time::sleep(Duration::from_secs(30)) => return Duration::MAX,
    };
    slow.cut.fetch_add(1, Ordering::Relaxed);
    let lasted = start.elapsed();
    if lasted < Duration::from_secs(5) {
        let note = format!(
            "{lasted:?} {} {how}",
            if first.is_empty() { "tls" } else { "raw" }
        );
        slow.early.lock().unwrap().push(note);
    }
    lasted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_addresses_reach_x_forwarded_for_from_configured_peers_only() {
    let cluster = cluster(|c| {
        let c = c.replacen(
            "[listen]\n",
            "[listen]\nproxy_protocol = [\"127.0.0.1\"]\n",
            1,
        );
        format!("{c}{}", support::NO_RATE_LIMIT)
    })
    .await;
    let tls = tls_trusting(&cluster.cert_pem);
    let addr = cluster.addr;
    let via = |header: Vec<u8>, source: &'static str| {
        let tls = tls.clone();
        async move {
            let mut s = tcp_from(ip(source), addr).await.unwrap();
            s.write_all(&header).await.unwrap();
            let t = tls_over(&tls, s, "localhost").await?;
            let r = exchange(TokioIo::new(t), "localhost", "GET", "/cas/headers", &[], "").await;
            Ok::<_, std::io::Error>(r)
        }
    };
    let xff = |r: &support::client::Reply| {
        r.body
            .lines()
            .find_map(|l| l.strip_prefix("x-forwarded-for: "))
            .map(str::to_owned)
    };
    let v1 = b"PROXY TCP4 192.0.2.7 127.0.0.1 51000 443\r\n".to_vec();
    let r = via(v1, "127.0.0.1").await.unwrap();
    assert_eq!(xff(&r).as_deref(), Some("192.0.2.7"));

    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x24".to_vec();
    v2.extend(
        "2001:db8::5"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    v2.extend([0u8; 16]);
    v2.extend([0xC3, 0x50, 0x01, 0xBB]);
    let r = via(v2, "127.0.0.1").await.unwrap();
    assert_eq!(xff(&r).as_deref(), Some("2001:db8::5"));

    // A configured peer must send one: without it, the connection is closed.
    assert!(via(Vec::new(), "127.0.0.1").await.is_err());
    assert_eq!(cluster.current.metrics().refusals(Refusal::ProxyHeader), 1);
    // Anyone else is never read for one: its header breaks its handshake...
    let forged = b"PROXY TCP4 203.0.113.9 127.0.0.1 1 443\r\n".to_vec();
    assert!(via(forged, "127.0.0.2").await.is_err());
    // ...and without one it is its own client.
    let r = via(Vec::new(), "127.0.0.2").await.unwrap();
    assert_eq!(xff(&r).as_deref(), Some("127.0.0.2"));
    assert_eq!(cluster.nodes[0].heard().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_and_idle_connections_get_a_goaway() {
    let cluster = cluster(|c| {
        format!(
            "{c}[limits]\nh2_max_resets = 5\nidle_timeout = \"3s\"\nhandshake_timeout = \"1s\"\n{}",
            support::NO_RATE_LIMIT
        )
    })
    .await;
    let tls = tls_trusting_h2(&cluster.cert_pem);
    let open = || async {
        let t = connect_tls(&tls, cluster.addr, "localhost").await;
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(t))
                .await
                .unwrap();
        (sender, tokio::spawn(conn))
    };
    let request = |target: &str| {
        http::Request::builder()
            .uri(format!("https://localhost{target}"))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };

    // A client that negotiates h2 and then never sends its preface: the
    // idle GOAWAY cannot reach it, so it is dropped a second later.
    let silent = connect_tls(&tls, cluster.addr, "localhost").await;
    let silent = tokio::spawn(async move {
        let (mut r, _w) = tokio::io::split(silent);
        let started = Instant::now();
        let mut buf = [0u8; 256];
        while let Ok(n) = r.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
        started.elapsed()
    });

    // Requests the client cancels before their answer (each a slow one
    // the node is still working on): past 5, the connection is closed.
    let (mut sender, conn) = open().await;
    for _ in 0..6 {
        let pending = sender.send_request(request("/cas/slow?ms=2000"));
        assert!(tokio::time::timeout(Duration::from_millis(50), pending)
            .await
            .is_err());
    }
    // Well before the 3 s idle timeout.
    let ended = tokio::time::timeout(Duration::from_secs(2), conn).await;
    assert!(ended.is_ok(), "the connection outlived 6 resets");
    // Counted as the server's side of the connection ends.
    let metrics = cluster.current.metrics();
    for _ in 0..100 {
        if metrics.refusals(Refusal::H2Resets) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(metrics.refusals(Refusal::H2Resets), 1);

    // Answered requests are not resets; an idle connection closes after 3 s.
    let (mut sender, conn) = open().await;
    for _ in 0..10 {
        let r = sender.send_request(request("/cas/login")).await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let idle = Instant::now();
    tokio::time::timeout(Duration::from_secs(8), conn)
        .await
        .expect("the idle connection stayed open")
        .unwrap()
        .unwrap();
    assert!(
        idle.elapsed() >= Duration::from_millis(2900),
        "closed after {:?}",
        idle.elapsed()
    );
    assert_eq!(metrics.refusals(Refusal::H2Resets), 1);
    // Idle GOAWAY at 3 s, dropped at 4 s: the client read nothing before.
    let silent = tokio::time::timeout(Duration::from_secs(8), silent)
        .await
        .expect("the silent h2 connection stayed open")
        .unwrap();
    assert!(
        silent >= Duration::from_millis(3900),
        "dropped after {silent:?}"
    );
}

/// A client that stops taking its response holds the node connection the
/// body streams from: past `send_timeout` its connection is dropped, over
/// HTTP/1 (a reader that reads nothing) and HTTP/2 (a body never consumed,
/// so flow control stays shut).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_takes_no_response_is_dropped_after_send_timeout() {
    let cluster = cluster(|c| {
        format!(
            "{c}[limits]\nsend_timeout = \"1s\"\n{}",
            support::NO_RATE_LIMIT
        )
    })
    .await;
    let metrics = cluster.current.metrics().clone();
    let stalls = || metrics.refusals(Refusal::SendTimeout);
    let until_stalls = |n: u64| async move {
        for _ in 0..500 {
            if stalls() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} stalled connection(s) dropped, not {n}", stalls());
    };

    // HTTP/1: 200 MB asked for, none read.
    let tls = tls_trusting(&cluster.cert_pem);
    let mut s = connect_tls(&tls, cluster.addr, "localhost").await;
    s.write_all(b"GET /cas/stream?bytes=200000000 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let asked = Instant::now();
    until_stalls(1).await;
    assert!(
        asked.elapsed() >= Duration::from_millis(900),
        "dropped after {:?}",
        asked.elapsed()
    );
    // What was in flight arrives, then the end: far from 200 MB.
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        got += n;
    }
    assert!(got < 100_000_000, "{got} bytes arrived");

    // HTTP/2: the head arrives, the body is never consumed.
    let h2 = tls_trusting_h2(&cluster.cert_pem);
    let t = connect_tls(&h2, cluster.addr, "localhost").await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(t))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::builder()
        .uri("https://localhost/cas/stream?bytes=10000000")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    until_stalls(2).await;
    tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("the stalled HTTP/2 connection stayed open")
        .ok();
    drop(resp);

    // A client that reads is not dropped, however long the response.
    let (status, bytes, _) =
        support::client::stream_tls(&tls, cluster.addr, "GET", "/cas/stream?bytes=30000000", 0)
            .await;
    assert_eq!((status, bytes), (200, 30_000_000));
    // Nor one whose answer has a body it never gets: HEAD of casfront's own
    // 404 (text) and of a node's page, on a kept-alive connection.
    let mut kept = connect_tls(&tls, cluster.addr, "localhost").await;
    for target in ["/elsewhere", "/cas/login"] {
        let head = format!("HEAD {target} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        kept.write_all(head.as_bytes()).await.unwrap();
        let n = kept.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 "));
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(stalls(), 2);
}
