//! The crowd behind one address and the password guesser, end to end with
//! real TLS in casfront's default configuration (no rate-limit section),
//! in front of modern CAS nodes that answer as CAS does (302 and a TGT
//! cookie on success, 401 on failure):
//! - one address logs in 1,200 users in under a minute, validates 4,000
//!   tickets as fast as it can and holds 2,000 TLS connections, with
//!   nothing refused;
//! - 100 guesses at one account from one address: the nodes see 5, and
//!   then that address logs in another user and the victim logs in from
//!   another address;
//! - 300 failures spread over accounts from one address: cut off at 30;
//! - the throttle counts every login endpoint (`/login/`, `;jsessionid=`,
//!   REST, `/v1/users`, the OAuth password grant), and a guesser behind a
//!   trusted proxy by its forwarded address;
//! - under pressure the per-address caps hold, the heaviest address first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use casfront::demo::node::NodeSpec;
use casfront::demo::Cluster;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

mod support;
use support::browser::Jar;
use support::client::{tcp_from, tls_over, tls_trusting, Reply};

const SERVICE_Q: &str = "https%3A%2F%2Fapp.example.edu%2F";
const LOGIN: &str = "/cas/login?service=https%3A%2F%2Fapp.example.edu%2F";

/// Three modern nodes and casfront in front in its default configuration
/// (`edit` adds only what a test needs).
async fn site(edit: impl FnOnce(String) -> String) -> Cluster {
    let specs = ["cas1", "cas2", "cas3"]
        .map(|n| NodeSpec::modern(n, true))
        .to_vec();
    Cluster::start_with(specs, "127.0.0.1:0".parse().unwrap(), edit)
        .await
        .unwrap()
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// A kept-alive HTTP/1.1 connection from `source`.
async fn connect(c: &Cluster, tls: &Arc<rustls::ClientConfig>, source: IpAddr) -> Sender {
    let tcp = tcp_from(source, c.addr).await.unwrap();
    let io = TokioIo::new(tls_over(tls, tcp, "localhost").await.unwrap());
    let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    sender
}

/// One request on `s`, with `jar`'s cookies (kept up to date) and
/// `headers`.
async fn send(
    s: &mut Sender,
    jar: &mut Jar,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut req = http::Request::builder()
        .method(method)
        .uri(target)
        .header("host", "localhost")
        .header("content-type", "application/x-www-form-urlencoded");
    let cookie = jar.header();
    if !cookie.is_empty() {
        req = req.header("cookie", cookie);
    }
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    s.ready().await.unwrap();
    let resp = s
        .send_request(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let r = Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    jar.absorb(&r);
    r
}

/// A login as `user` with `password` on `s`: the form, then the POST.
/// The POST's answer.
async fn login(s: &mut Sender, user: &str, password: &str) -> Reply {
    let mut jar = Jar::default();
    let form = send(s, &mut jar, "GET", LOGIN, &[], "").await;
    assert_eq!(form.status, 200, "{}", form.body);
    let body = format!("username={user}&password={password}&service={SERVICE_Q}");
    send(s, &mut jar, "POST", "/cas/login", &[], &body).await
}

fn local(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// How many login POSTs the nodes heard.
fn heard_logins(c: &Cluster) -> usize {
    (c.nodes.iter())
        .flat_map(|n| n.heard())
        .filter(|l| l.starts_with("POST"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_is_served_in_full_by_default() {
    let c = site(|c| c).await;
    let tls = tls_trusting(&c.cert_pem);
    // 1,200 users log in from one address, eight browsers at a time.
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..8 {
        let (c_addr, tls) = (c.addr, tls.clone());
        let _ = c_addr;
        let mut s = connect(&c, &tls, local(1)).await;
        workers.push(tokio::spawn(async move {
            let mut refused = 0;
            for i in 0..150 {
                let user = format!("user{w}x{i}");
                let r = login(&mut s, &user, &user).await;
                refused += usize::from(r.status != 302);
            }
            refused
        }));
    }
    let mut refused = 0;
    for w in workers {
        refused += w.await.unwrap();
    }
    let took = started.elapsed();
    eprintln!("1,200 logins from one address in {took:?}, {refused} refused");
    assert_eq!(refused, 0);
    assert!(took < Duration::from_secs(60), "{took:?}");

    // An application server validates 4,000 tickets as fast as it goes.
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..16 {
        let mut s = connect(&c, &tls, local(2)).await;
        workers.push(tokio::spawn(async move {
            let mut refused = 0;
            for i in 0..250 {
                let t = format!(
                    "/cas/serviceValidate?service={SERVICE_Q}&ticket=ST-{w}{i}-x-cas{}",
                    1 + i % 3
                );
                let r = send(&mut s, &mut Jar::default(), "GET", &t, &[], "").await;
                refused += usize::from(r.status != 200);
            }
            refused
        }));
    }
    let mut refused = 0;
    for w in workers {
        refused += w.await.unwrap();
    }
    let took = started.elapsed();
    eprintln!(
        "4,000 validations from one address in {took:?} ({:.0}/s), {refused} refused",
        4000.0 / took.as_secs_f64()
    );
    assert_eq!(refused, 0);

    // 2,000 TLS connections from one address, all held, then all served.
    let mut held = Vec::new();
    for _ in 0..2000 {
        held.push(connect(&c, &tls, local(3)).await);
    }
    let mut served = 0;
    for s in &mut held {
        let r = send(s, &mut Jar::default(), "GET", "/cas/login", &[], "").await;
        served += usize::from(r.status == 200);
    }
    assert_eq!(served, 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guesser_is_held_back_and_nobody_else() {
    let c = site(|c| c).await;
    let tls = tls_trusting(&c.cert_pem);
    let mut s = connect(&c, &tls, local(4)).await;
    let before = heard_logins(&c);
    let mut refused = 0;
    for i in 0..100 {
        let r = login(&mut s, "victim", &format!("guess{i}")).await;
        match r.status {
            401 => {}
            429 => {
                refused += 1;
                let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
                assert!((1..=180).contains(&wait), "{wait}");
                assert!(
                    r.body.contains("Too many failed sign-in attempts"),
                    "{}",
                    r.body
                );
            }
            other => panic!("guess {i}: {other} {}", r.body),
        }
    }
    assert_eq!(refused, 95);
    assert_eq!(
        heard_logins(&c) - before,
        5,
        "the nodes saw the threshold only"
    );
    // That address logs in another user; the victim logs in elsewhere.
    assert_eq!(login(&mut s, "colleague", "colleague").await.status, 302);
    let mut elsewhere = connect(&c, &tls, local(5)).await;
    assert_eq!(login(&mut elsewhere, "victim", "victim").await.status, 302);
    let (admin, _admin) = support::admin(&c.current).await;
    let metrics = support::client::send(admin, "GET", "/metrics", &[], "")
        .await
        .body;
    assert!(
        metrics.contains("casfront_refusals_total{reason=\"login_throttled\"} 95"),
        "{metrics}"
    );
    assert!(
        metrics.contains("casfront_login_attempts_total{result=\"failure\"} 5"),
        "{metrics}"
    );

    // A sprayer: one password over 300 accounts from one address.
    let mut s = connect(&c, &tls, local(6)).await;
    let mut tried = 0;
    for i in 0..300 {
        let r = login(&mut s, &format!("account{i}"), "Spring2026!").await;
        if r.status == 429 {
            break;
        }
        assert_eq!(r.status, 401);
        tried += 1;
    }
    assert_eq!(tried, 30, "cut off at address_failures");
    let status = support::client::send(admin, "GET", "/status.json", &[], "").await;
    assert!(
        status
            .body
            .contains("\"login_throttle\":{\"addresses\":1,\"pairs\":1}"),
        "{}",
        status.body
    );
}

/// Every login endpoint is counted: five failures each, then 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_login_endpoint_is_throttled() {
    let c = site(|c| c).await;
    let tls = tls_trusting(&c.cert_pem);
    let endpoints = [
        ("/cas/login/", "username=u1&password=bad"),
        ("/cas/login;jsessionid=ABC", "username=u2&password=bad"),
        ("/cas/%6Cogin", "username=u3&password=bad"),
        ("/cas/v1/tickets", "username=u4&password=bad"),
        ("/cas/v1/tickets/", "username=u5&password=bad"),
        ("/cas/v1/users", "username=u6&password=bad"),
        (
            "/cas/oauth2.0/accessToken",
            "grant_type=password&client_id=app&username=u7&password=bad",
        ),
    ];
    for (i, (target, body)) in endpoints.iter().enumerate() {
        let mut s = connect(&c, &tls, local(10 + u8::try_from(i).unwrap())).await;
        let mut statuses = Vec::new();
        for _ in 0..6 {
            // The form's flow first, where the endpoint needs one.
            let mut jar = Jar::default();
            if !target.contains("v1") && !target.contains("oauth") {
                send(&mut s, &mut jar, "GET", LOGIN, &[], "").await;
            }
            statuses.push(
                send(&mut s, &mut jar, "POST", target, &[], body)
                    .await
                    .status,
            );
        }
        let failed = statuses[..5].iter().all(|s| matches!(s, 400 | 401));
        assert!(failed && statuses[5] == 429, "{target}: {statuses:?}");
    }
    // Another grant of the token endpoint is no password attempt.
    let mut s = connect(&c, &tls, local(30)).await;
    for _ in 0..8 {
        let r = send(
            &mut s,
            &mut Jar::default(),
            "POST",
            "/cas/oauth2.0/accessToken",
            &[],
            "grant_type=authorization_code&code=OC-1",
        )
        .await;
        assert_eq!(r.status, 400);
    }
}

/// Behind a trusted proxy, each client is throttled by its forwarded
/// address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guesser_behind_a_trusted_proxy_is_throttled_by_its_own_address() {
    let c = site(|c| {
        c.replacen(
            "[listen]\n",
            "[listen]\ntrusted_proxies = [\"127.0.0.1\"]\n",
            1,
        )
    })
    .await;
    let tls = tls_trusting(&c.cert_pem);
    let mut s = connect(&c, &tls, local(1)).await;
    let form = |user: &str, pass: &str| format!("username={user}&password={pass}");
    let xff = |ip: &'static str| [("x-forwarded-for", ip)];
    for _ in 0..5 {
        let r = send(
            &mut s,
            &mut Jar::default(),
            "POST",
            "/cas/v1/tickets",
            &xff("198.51.100.1"),
            &form("v", "bad"),
        )
        .await;
        assert_eq!(r.status, 401);
    }
    let r = send(
        &mut s,
        &mut Jar::default(),
        "POST",
        "/cas/v1/tickets",
        &xff("198.51.100.1"),
        &form("v", "bad"),
    )
    .await;
    assert_eq!(r.status, 429);
    // The same user from another client of the proxy is not held back.
    let r = send(
        &mut s,
        &mut Jar::default(),
        "POST",
        "/cas/v1/tickets",
        &xff("198.51.100.2"),
        &form("v", "v"),
    )
    .await;
    assert_eq!(r.status, 201);
}

/// Under pressure (connections open plus requests in flight at `pressure`
/// of `max_connections`), the per-address caps hold, heaviest address
/// first: a flooding address gets no more connections and its requests
/// over its rate get 429, while another address is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_pressure_the_heaviest_address_is_held_back_first() {
    let c = site(|c| {
        format!(
            "{c}[limits]\nmax_connections = 40\nmax_connections_per_ip = 8\npressure = 0.5\n\
             [rate_limit]\nrequests_per_second = 1\nburst = 5\n"
        )
    })
    .await;
    let tls = tls_trusting(&c.cert_pem);
    // No pressure yet: one address sends 30 requests at once, all served.
    let mut s = connect(&c, &tls, local(1)).await;
    for _ in 0..30 {
        let r = send(&mut s, &mut Jar::default(), "GET", "/cas/login", &[], "").await;
        assert_eq!(r.status, 200);
    }
    // A flood of connections from one address: accepted until pressure
    // comes (20 of 40 open), then refused (it has more than 8).
    let mut flood = Vec::new();
    for _ in 0..30 {
        let tcp = tcp_from(local(2), c.addr).await.unwrap();
        if let Ok(t) = tls_over(&tls, tcp, "localhost").await {
            flood.push(t);
        }
    }
    // A refused connection's handshake may succeed on the client's side
    // before the server's close arrives: count what is still open.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let open = c.current.state().gate.open();
    assert!((19..=21).contains(&open), "{open} open");
    let refused = c
        .current
        .metrics()
        .refusals(casfront::metrics::Refusal::ConnectionsPerIp);
    assert!(refused >= 9, "{refused} refused");
    // Under pressure: the first address is held to its rate; another
    // address, light, is served.
    let mut limited = 0;
    for _ in 0..10 {
        let r = send(&mut s, &mut Jar::default(), "GET", "/cas/login", &[], "").await;
        limited += usize::from(r.status == 429);
    }
    assert!(limited >= 4, "{limited} of 10 limited");
    let mut other = connect(&c, &tls, local(3)).await;
    let r = send(
        &mut other,
        &mut Jar::default(),
        "GET",
        "/cas/login",
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    drop(flood);
}
