//! Request limits (`[limits] max_uri`, `max_header_bytes`): a target one
//! byte over the limit gets 414 and a header block over it 431 (HTTP/1.1
//! and HTTP/2), as do more than 100 header lines, and neither reaches a node; a target of exactly the limit
//! is served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use casfront::demo::Cluster;

mod support;
use support::client::{raw_tls, send_tls, tls_trusting};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_targets_and_header_blocks_are_refused_before_any_node() {
    let cluster = Cluster::start_with(
        vec![casfront::demo::node::NodeSpec::named("cas1")],
        "127.0.0.1:0".parse().unwrap(),
        |c| format!("{c}[limits]\nmax_uri = 1024\nmax_header_bytes = 16384\n"),
    )
    .await
    .unwrap();
    let tls = tls_trusting(&cluster.cert_pem);
    let addr = cluster.addr;

    // "/cas/login?service=" is 19 bytes: 1025 in all.
    let long = format!("/cas/login?service={}", "a".repeat(1006));
    let r = send_tls(&tls, addr, "localhost", "GET", &long, &[], "").await;
    assert_eq!(r.status, 414);
    let cookie = format!("JSESSIONID={}", "b".repeat(20_000));
    let req = format!("GET /cas/login HTTP/1.1\r\nhost: localhost\r\ncookie: {cookie}\r\n\r\n");
    let answer = raw_tls(&tls, addr, req.as_bytes()).await;
    assert_eq!(
        answer.lines().next(),
        Some("HTTP/1.1 431 Request Header Fields Too Large")
    );
    // More than hyper's 100 header lines, however short: 431 too.
    let many: String = (0..101).map(|i| format!("x-h{i}: v\r\n")).collect();
    let req = format!("GET /cas/login HTTP/1.1\r\nhost: localhost\r\n{many}\r\n");
    let answer = raw_tls(&tls, addr, req.as_bytes()).await;
    assert_eq!(
        answer.lines().next(),
        Some("HTTP/1.1 431 Request Header Fields Too Large")
    );
    assert_eq!(
        cluster.nodes[0].connections(),
        0,
        "nothing reached the node"
    );

    // Just under both limits: served.
    let fits = format!("/cas/login?service={}", "a".repeat(1005));
    let cookie = format!("JSESSIONID={}", "b".repeat(12_000));
    let r = send_tls(
        &tls,
        addr,
        "localhost",
        "GET",
        &fits,
        &[("cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!((r.status, r.header("x-cas-node")), (200, Some("cas1")));

    // HTTP/2: the header list limit.
    let h2 = support::client::tls_trusting_h2(&cluster.cert_pem);
    let big = "c".repeat(20_000);
    let r =
        support::client::send_h2(&h2, addr, "localhost", "/cas/login", &[("x-big", &big)]).await;
    assert_eq!(r.status, 431);
}
