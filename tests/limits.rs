//! Request limits (`[limits] max_uri`, `max_header_bytes`): a target one
//! byte over the limit gets 414 and a header block over it 431 (HTTP/1.1
//! and HTTP/2), and neither reaches a node; a target of exactly the limit
//! is served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use casfront::demo::Cluster;

mod support;
use support::client::{connect_tls, send_tls, tls_trusting};

/// Writes `request` on a new TLS connection; returns the status line.
async fn raw(
    tls: &std::sync::Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
    request: &[u8],
) -> String {
    let mut s = connect_tls(tls, addr, "localhost").await;
    // The server may answer and close before it has read everything.
    let _ = s.write_all(request).await;
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    text.lines().next().unwrap_or("").to_owned()
}

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
    assert_eq!(
        raw(&tls, addr, req.as_bytes()).await,
        "HTTP/1.1 431 Request Header Fields Too Large"
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
