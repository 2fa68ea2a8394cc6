//! `[pool.upstream] max_connections` and `queue_timeout` end to end: a
//! burst queues on that many node connections and they are pooled after;
//! a full node answers 503 after `queue_timeout` and stays up; a request
//! for any node passes a full one by. Against a node that counts the
//! requests it holds at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

mod support;
use support::client::{send_tls, tls_trusting};

/// A node (plain HTTP/1.1, keep-alive) that answers `/cas/slow` after
/// `hold` and anything else (health checks) at once; counts how many
/// `/cas/slow` requests it held at once, at most, and their connections.
struct CountingNode {
    addr: SocketAddr,
    busy: Arc<std::sync::atomic::AtomicUsize>,
    most: Arc<std::sync::atomic::AtomicUsize>,
    served: Arc<std::sync::atomic::AtomicUsize>,
    slow_connections: Arc<std::sync::Mutex<std::collections::HashSet<SocketAddr>>>,
}

impl CountingNode {
    async fn start(hold: Duration) -> CountingNode {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let node = CountingNode {
            addr: listener.local_addr().unwrap(),
            busy: Default::default(),
            most: Default::default(),
            served: Default::default(),
            slow_connections: Default::default(),
        };
        let (busy, most, seen, served) = (
            node.busy.clone(),
            node.most.clone(),
            node.slow_connections.clone(),
            node.served.clone(),
        );
        tokio::spawn(async move {
            while let Ok((s, peer)) = listener.accept().await {
                let (busy, most, seen, served) =
                    (busy.clone(), most.clone(), seen.clone(), served.clone());
                let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                    let (busy, most, seen, served) =
                        (busy.clone(), most.clone(), seen.clone(), served.clone());
                    async move {
                        if req.uri().path() == "/cas/slow" {
                            seen.lock().unwrap().insert(peer);
                            let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            tokio::time::sleep(hold).await;
                            busy.fetch_sub(1, Ordering::SeqCst);
                            served.fetch_add(1, Ordering::SeqCst);
                        }
                        let body = http_body_util::Full::new(bytes::Bytes::from_static(b"ok\n"));
                        Ok::<_, std::convert::Infallible>(http::Response::new(body))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc),
                );
            }
        });
        node
    }
}

/// casfront in front of `nodes` (cas1, cas2, ...) with `upstream` as its
/// `[pool.upstream]`: where it listens, the proxy, a client trusting it.
async fn front_with_upstream(
    nodes: &[SocketAddr],
    upstream: &str,
) -> (
    SocketAddr,
    Arc<casfront::current::Current>,
    support::Serving,
    Arc<rustls::ClientConfig>,
) {
    let mut cfg = casfront::demo::cluster_config("127.0.0.1:0".parse().unwrap(), nodes);
    cfg.push_str(&format!(
        "[pool.upstream]\n{upstream}{}",
        support::NO_RATE_LIMIT
    ));
    let cfg = support::config_of(&cfg);
    let cert = casfront::demo::self_signed().unwrap();
    let tls = casfront::tls::from_pem(&cert.cert_pem, &cert.key_pem).unwrap();
    let (addr, proxy, serving) = support::front(&cfg, tls).await;
    (addr, proxy, serving, tls_trusting(&cert.cert_pem))
}

/// Starts casfront in front of `node` with `upstream` as its
/// `[pool.upstream]`, and sends `n` `GET /cas/slow` at once, each on a
/// client connection of its own: their statuses, and how long the
/// quickest 503 took (`Duration::MAX` if none).
async fn slow_burst(
    node: &CountingNode,
    upstream: &str,
    n: usize,
) -> (
    Vec<u16>,
    Duration,
    Arc<casfront::current::Current>,
    support::Serving,
) {
    let (addr, proxy, serving, client) = front_with_upstream(&[node.addr], upstream).await;
    let burst = (0..n).map(|_| {
        let client = client.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let r = send_tls(&client, addr, "localhost", "GET", "/cas/slow", &[], "").await;
            (r.status, started.elapsed())
        })
    });
    let (mut statuses, mut quickest_503) = (Vec::new(), Duration::MAX);
    for r in burst.collect::<Vec<_>>() {
        let (status, took) = r.await.unwrap();
        if status == 503 {
            quickest_503 = quickest_503.min(took);
        }
        statuses.push(status);
    }
    (statuses, quickest_503, proxy, serving)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_queues_a_burst_on_that_many_node_connections() {
    use std::sync::atomic::Ordering;
    let node = CountingNode::start(Duration::from_millis(200)).await;
    let (statuses, _, proxy, _serving) =
        slow_burst(&node, "max_connections = 2\nqueue_timeout = \"10s\"\n", 8).await;
    assert_eq!(statuses, [200; 8], "every queued request is served");
    assert_eq!(
        node.most.load(Ordering::SeqCst),
        2,
        "never more than 2 at once at the node"
    );
    assert!(node.slow_connections.lock().unwrap().len() <= 2);
    // Both went back to the pool once their responses were read.
    assert_eq!(proxy.generation().pool(0).unwrap().idle_count(), 2);

    // Without the cap the same burst reaches the node all at once (held
    // long enough for 8 debug-build TLS handshakes on a loaded machine).
    let free = CountingNode::start(Duration::from_millis(1500)).await;
    let (statuses, _, _proxy, _serving) = slow_burst(&free, "", 8).await;
    assert_eq!(statuses, [200; 8]);
    assert_eq!(free.most.load(Ordering::SeqCst), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_answers_503_after_queue_timeout_and_stays_up() {
    let node = CountingNode::start(Duration::from_millis(1500)).await;
    let (mut statuses, quickest_503, proxy, _serving) =
        slow_burst(&node, "max_connections = 1\nqueue_timeout = \"200ms\"\n", 3).await;
    statuses.sort();
    assert_eq!(statuses, [200, 503, 503]);
    // They waited their queue_timeout, not less.
    assert!(
        quickest_503 >= Duration::from_millis(200),
        "{quickest_503:?}"
    );
    // Counted among the node's errors (the two queue failures), and busy
    // is not down: the node still takes requests.
    let (_, errors, _) = proxy.generation().handles().node_summary(0);
    assert_eq!(errors, 2);
    use casfront::routing::{NodeState, NodeStates};
    assert_eq!(proxy.generation().health().state(0), NodeState::Healthy);
    let text = proxy.metrics().encode(
        proxy.generation().table(),
        |n| proxy.generation().health().state(n),
        0,
    );
    assert!(
        text.lines()
            .any(|l| l.contains("kind=\"queue\"") && l.ends_with(" 2")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_any_node_passes_a_full_one_by() {
    use std::sync::atomic::Ordering;
    // cas1 holds its request past the test's two others.
    let one = CountingNode::start(Duration::from_secs(3)).await;
    let two = CountingNode::start(Duration::from_millis(300)).await;
    let upstream = "max_connections = 1\nqueue_timeout = \"10s\"\n";
    let (addr, _proxy, _serving, client) =
        front_with_upstream(&[one.addr, two.addr], upstream).await;
    // cas1 busy with its own ticket's request (its only connection).
    let owned = {
        let client = client.clone();
        tokio::spawn(async move {
            let target = "/cas/slow?ticket=ST-1-abc-cas1";
            send_tls(&client, addr, "localhost", "GET", target, &[], "").await
        })
    };
    while one.busy.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Requests for any node, one after the other: round robin would send
    // one of them to cas1, where it would wait; both go to cas2.
    for _ in 0..2 {
        let r = send_tls(&client, addr, "localhost", "GET", "/cas/slow", &[], "").await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(owned.await.unwrap().status, 200);
    assert_eq!(
        one.served.load(Ordering::SeqCst),
        1,
        "only its ticket's request"
    );
    assert_eq!(two.served.load(Ordering::SeqCst), 2);
}
