//! Idle HTTP/1.1 keep-alive connections are parked (hyper's buffers
//! dropped) and taken up again, invisibly to the client: on one TLS
//! connection, a request after a second idle, one whose first bytes came
//! before the park and the rest after, and two pipelined ones are all
//! answered, none with `Connection: close`; a parked connection is still
//! closed once idle past `header_read_timeout`, and so is one that never
//! finishes its request (parking must not restart hyper's timeout forever).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use casfront::demo::Cluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;
use support::client::{connect_tls, tls_trusting};

const GET: &[u8] = b"GET /cas/login HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// Reads one response (headers and a `content-length` body): its head.
async fn answer<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert_eq!(n, 1, "closed after {:?}", String::from_utf8_lossy(&buf));
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap().to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    head
}

fn parked(cluster: &Cluster) -> i64 {
    cluster.current.metrics().client_connections_parked.get()
}

async fn until_parked(cluster: &Cluster, n: i64, step: &str) {
    for _ in 0..50 {
        if parked(cluster) == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{step}: {} parked, not {n}", parked(cluster));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_parked_and_taken_up_again() {
    let cluster = Cluster::start_with(
        vec![casfront::demo::node::NodeSpec::named("cas1")],
        "127.0.0.1:0".parse().unwrap(),
        |c| format!("{c}[limits]\nheader_read_timeout = \"4s\"\n"),
    )
    .await
    .unwrap();
    let tls = tls_trusting(&cluster.cert_pem);
    let mut slow = connect_tls(&tls, cluster.addr, "localhost").await;
    slow.write_all(&GET[..11]).await.unwrap();
    let slow_since = std::time::Instant::now();
    let mut s = connect_tls(&tls, cluster.addr, "localhost").await;
    s.write_all(GET).await.unwrap();
    let head = answer(&mut s).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(parked(&cluster), 0, "a connection in use is not parked");

    // Idle past PARK_AFTER: parked; the next request takes it up again.
    until_parked(&cluster, 1, "step 1").await;
    s.write_all(GET).await.unwrap();
    let head = answer(&mut s).await;
    assert!(
        head.starts_with("http/1.1 200") && !head.contains("close"),
        "{head}"
    );
    assert_eq!(parked(&cluster), 0);

    // Half a request, the park, then the rest: the first half read
    // before is put back in front.
    let (first, rest) = GET.split_at(20);
    s.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(rest).await.unwrap();
    let head = answer(&mut s).await;
    assert!(
        head.starts_with("http/1.1 200") && !head.contains("close"),
        "{head}"
    );

    // Two pipelined requests to a parked connection.
    until_parked(&cluster, 1, "step 2").await;
    s.write_all(&[GET, GET].concat()).await.unwrap();
    for _ in 0..2 {
        let head = answer(&mut s).await;
        assert!(
            head.starts_with("http/1.1 200") && !head.contains("close"),
            "{head}"
        );
    }

    // Parked, it is still closed once idle past header_read_timeout (4 s).
    until_parked(&cluster, 1, "step 3").await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(8), s.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "still open 8 s later");
    assert_eq!(parked(&cluster), 0);

    // The half request sent at the start: closed within PARK_AFTER and
    // header_read_timeout (5 s), give or take.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), slow.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "a half request kept open {:?}",
        slow_since.elapsed()
    );
    assert!(
        rest.is_empty() || rest.starts_with(b"HTTP/1.1 408"),
        "{rest:?}"
    );
}
