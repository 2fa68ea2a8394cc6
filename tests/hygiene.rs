//! Request hygiene, verified on hyper's real behaviour rather than
//! assumed: each ambiguous or malformed request is answered 400 (421 for a
//! host not served) and never reaches a node, asserted on what the node
//! received. Content-Length with Transfer-Encoding is reframed (`docs/architecture.md`, hyper's framing):
//! the node gets the chunked framing only, and the bytes after the chunked
//! body are never read as a second request. Bad chunking found mid-body
//! never gives the node a complete request. `[pool.headers]` rules apply
//! after casfront's own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use casfront::demo::node::NodeSpec;
use casfront::demo::Cluster;
use casfront::metrics::Refusal;

mod support;
use support::client::{raw_tls, raw_tls_all, send_tls, tls_trusting};

async fn cluster() -> Cluster {
    Cluster::start_with(
        vec![NodeSpec::named("cas1")],
        "127.0.0.1:0".parse().unwrap(),
        |c| {
            let c = c.replacen("[listen]\n", "[listen]\nhosts = [\"localhost\"]\n", 1);
            let c = c.replacen(
                "path_prefix = \"/cas\"\n",
                "path_prefix = \"/cas\"\n[pool.headers]\n\
                 request_set = { \"X-Frontend\" = \"casfront\" }\n\
                 request_remove = [\"X-Debug-User\", \"X-Forwarded-Port\"]\n\
                 response_set = { \"Strict-Transport-Security\" = \"max-age=60\" }\n\
                 response_remove = [\"X-Cas-Node\"]\n",
                1,
            );
            format!("{c}{}", support::NO_RATE_LIMIT)
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_requests_are_refused_before_any_node() {
    let cluster = cluster().await;
    let tls = tls_trusting(&cluster.cert_pem);
    let h = "Host: localhost\r\n";
    let vectors: Vec<(&str, String, &str)> = vec![
        (
            "two differing Content-Length",
            format!("POST /cas/upload HTTP/1.1\r\n{h}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
            "400",
        ),
        (
            "Transfer-Encoding not ending in chunked",
            format!("POST /cas/upload HTTP/1.1\r\n{h}Transfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
            "400",
        ),
        (
            "Transfer-Encoding in HTTP/1.0",
            format!("POST /cas/upload HTTP/1.0\r\n{h}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            "400",
        ),
        (
            "Content-Length that is not a number",
            format!("POST /cas/upload HTTP/1.1\r\n{h}Content-Length: +5\r\n\r\nhello"),
            "400",
        ),
        (
            "obs-fold",
            format!("GET /cas/login HTTP/1.1\r\n{h}X-A: a\r\n b\r\n\r\n"),
            "400",
        ),
        (
            "bare CR in a value",
            format!("GET /cas/login HTTP/1.1\r\n{h}X-A: a\rb\r\n\r\n"),
            "400",
        ),
        (
            "bare LF in a value",
            format!("GET /cas/login HTTP/1.1\r\n{h}X-A: a\nb\r\n\r\n"),
            "400",
        ),
        (
            "NUL in a value",
            format!("GET /cas/login HTTP/1.1\r\n{h}X-A: a\0b\r\n\r\n"),
            "400",
        ),
        (
            "space before the colon",
            format!("POST /cas/upload HTTP/1.1\r\n{h}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
            "400",
        ),
        (
            "absolute URI naming another host",
            format!("GET https://evil.example/cas/login HTTP/1.1\r\n{h}\r\n"),
            "400",
        ),
        ("no Host", "GET /cas/login HTTP/1.1\r\n\r\n".to_owned(), "400"),
        (
            "two Host headers",
            format!("GET /cas/login HTTP/1.1\r\n{h}Host: evil.example\r\n\r\n"),
            "400",
        ),
        (
            "a host name not served",
            "GET /cas/login HTTP/1.1\r\nHost: evil.example\r\n\r\n".to_owned(),
            "421",
        ),
        (
            "an absolute URI for a host not served",
            "GET https://evil.example/cas/login HTTP/1.1\r\nHost: evil.example\r\n\r\n".to_owned(),
            "421",
        ),
    ];
    for (what, request, status) in &vectors {
        let answer = raw_tls(&tls, cluster.addr, request.as_bytes()).await;
        let line = answer.lines().next().unwrap_or("");
        assert!(
            line.starts_with(&format!("HTTP/1.1 {status} ")),
            "{what}: answered {line:?}"
        );
    }
    let node = &cluster.nodes[0];
    assert_eq!(node.heard(), Vec::<String>::new(), "a node heard a request");
    assert_eq!(node.connections(), 0);
    let metrics = cluster.current.metrics();
    assert_eq!(metrics.refusals(Refusal::Host), 2);
    assert_eq!(metrics.refusals(Refusal::BadTarget), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_chunked_reaches_the_node_as_chunked_only() {
    let cluster = cluster().await;
    let tls = tls_trusting(&cluster.cert_pem);
    // The classic CL.TE smuggle: a front end that trusted Content-Length
    // would pass "5\r\nh" on and leave the rest, a second request, to be
    // read on the node's connection.
    let smuggle = "POST /cas/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n\
                   Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
                   GET /cas/headers HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let (answer, closed) = raw_tls_all(&tls, cluster.addr, smuggle.as_bytes()).await;
    assert!(closed, "casfront kept the connection open");
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.ends_with("\r\n\r\n5\n"), "{answer}");
    // One answer: casfront closed the connection after it (keep-alive off
    // for an ambiguous framing), so the trailing bytes were never a request.
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    assert_eq!(
        cluster.nodes[0].heard(),
        ["POST /cas/upload cl= te=chunked", "upload 5 complete"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_chunking_never_completes_a_request_on_the_node() {
    let cluster = cluster().await;
    let tls = tls_trusting(&cluster.cert_pem);
    let bad = "POST /cas/upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
               5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n";
    let answer = raw_tls(&tls, cluster.addr, bad.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains("malformed or cut short"), "{answer}");
    let heard = cluster.nodes[0].heard();
    assert!(
        !heard.iter().any(|l| l.ends_with("complete")),
        "the node got a complete request: {heard:?}"
    );
    // Not the node's failure: no error is counted against it.
    let cas1 = cluster.generation().table().node_by_name("cas1").unwrap();
    let (_, errors, _) = cluster.generation().handles().node_summary(cas1);
    assert_eq!(errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_rules_apply_after_casfronts_own() {
    let cluster = cluster().await;
    let tls = tls_trusting(&cluster.cert_pem);
    let r = send_tls(
        &tls,
        cluster.addr,
        "localhost",
        "GET",
        "/cas/headers",
        &[("x-debug-user", "mallory"), ("x-frontend", "forged")],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    let lines: Vec<&str> = r.body.lines().collect();
    assert!(lines.contains(&"x-frontend: casfront"), "{}", r.body);
    assert!(lines.contains(&"x-forwarded-for: 127.0.0.1"), "{}", r.body);
    assert!(
        !r.body.contains("mallory") && !r.body.contains("forged"),
        "{}",
        r.body
    );
    // Removed after casfront set it.
    assert!(!r.body.contains("x-forwarded-port"), "{}", r.body);
    assert_eq!(r.header("strict-transport-security"), Some("max-age=60"));
    assert_eq!(r.header("x-cas-node"), None);
}

/// What a node received for a raw request (`/cas/headers` echoes its
/// headers, then its trailers after `-- trailers --`): (headers, trailers),
/// each `name: value` lines, lowercase names.
async fn echoed(cluster: &Cluster, request: &str) -> (String, Vec<String>, Vec<String>) {
    let tls = tls_trusting(&cluster.cert_pem);
    let answer = raw_tls(&tls, cluster.addr, request.as_bytes()).await;
    let status = answer.get(9..12).unwrap_or("").to_owned();
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let (headers, trailers) = body.split_once("-- trailers --\n").unwrap_or((body, ""));
    let lines = |s: &str| s.lines().map(str::to_owned).collect::<Vec<_>>();
    (status, lines(headers), lines(trailers))
}

/// A client can forge no client-certificate or forwarding header: not by
/// a trailer declared in a second `Trailer` header, not by a variant of a
/// forwarding header's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_forged_header_reaches_a_node_by_trailer_or_variant_name() {
    let cluster = cluster().await;
    let chunked = "POST /cas/headers HTTP/1.1\r\nHost: localhost\r\n\
        Transfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\
        Trailer: ssl_client_verify, SSL-Client-S-DN, X-Forwarded-For\r\n\r\n\
        5\r\nhello\r\n0\r\nx-checksum: 1\r\nssl_client_verify: SUCCESS\r\n\
        ssl-client-s-dn: CN=admin,O=Uni\r\nx-forwarded-for: 6.6.6.6\r\n\r\n";
    let (status, _, trailers) = echoed(&cluster, chunked).await;
    assert_eq!(status, "200");
    assert_eq!(trailers, ["x-checksum: 1"], "only the harmless trailer");

    let variants = [
        "X_Forwarded_For: 6.6.6.6",
        "True-Client-IP: 6.6.6.6",
        "X-Real-IP: 6.6.6.6",
        "Forwarded: for=6.6.6.6",
        "X-Forwarded-Prefix: /admin",
        "X-Original-URL: /cas/admin",
        "X-Rewrite-URL: /cas/admin",
        "X-Client-IP: 6.6.6.6",
        "Client-IP: 6.6.6.6",
        "CF-Connecting-IP: 6.6.6.6",
        "X-Cluster-Client-IP: 6.6.6.6",
    ];
    let request = format!(
        "GET /cas/headers HTTP/1.1\r\nHost: localhost\r\n{}\r\n\r\n",
        variants.join("\r\n")
    );
    let (status, headers, _) = echoed(&cluster, &request).await;
    assert_eq!(status, "200");
    for h in &headers {
        assert!(
            !h.contains("6.6.6.6") && !h.contains("/admin"),
            "{h} reached the node"
        );
    }
    assert!(headers
        .iter()
        .any(|h| h.starts_with("x-forwarded-for: 127.0.0.1")));
}

/// A node gets exactly one Host, the one checked: from a proxy-style
/// request line without Host, and despite `Connection: host`; an authority
/// with user information is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_gets_the_one_host_that_was_checked() {
    let cluster = cluster().await;
    let hosts = |headers: &[String]| {
        (headers.iter())
            .filter(|h| h.starts_with("host: "))
            .cloned()
            .collect::<Vec<_>>()
    };
    let absolute = "GET https://localhost/cas/headers HTTP/1.1\r\n\r\n";
    let (status, headers, _) = echoed(&cluster, absolute).await;
    assert_eq!(status, "200");
    assert_eq!(hosts(&headers), ["host: localhost"]);

    let listed = "GET /cas/headers HTTP/1.1\r\nHost: localhost\r\nConnection: host\r\n\r\n";
    let (status, headers, _) = echoed(&cluster, listed).await;
    assert_eq!(status, "200");
    assert_eq!(hosts(&headers), ["host: localhost"]);

    let userinfo =
        "GET https://evil.example:x@localhost/cas/headers HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let (status, _, _) = echoed(&cluster, userinfo).await;
    assert_eq!(status, "400");
}

/// A node that does not know its clients speak https (Tomcat without
/// RemoteIpValve, as the demo node) sets its session cookie without
/// `Secure`: the browser gets it with `Secure`, the rest as set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_reach_the_browser_secure() {
    let cluster = cluster().await;
    let tls = tls_trusting(&cluster.cert_pem);
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
    let session = r.set_cookie("JSESSIONID").expect("a session cookie");
    let cookie = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with("JSESSIONID="))
        .unwrap();
    assert!(
        cookie.starts_with(&format!("{session}; Path=/cas; HttpOnly")),
        "{cookie}"
    );
    assert!(cookie.ends_with("; Secure"), "{cookie}");
}
