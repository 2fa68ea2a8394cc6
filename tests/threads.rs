//! The listener's threads (`casfront::server::threads`): the further
//! threads accept and serve on runtimes of their own, so connections are
//! answered while the first thread (this test's runtime) is blocked; once
//! the serving future is dropped, the threads end and the socket, closed
//! in every thread, refuses connections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use casfront::current::Current;
use casfront::demo::node::NodeSpec;
use casfront::server::threads;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;
use support::client::{connect_tls, tls_trusting};

/// The names of this process's threads that serve for `threads`.
fn serving_threads() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .filter(|n| n.starts_with("casfront-"))
        .collect();
    names.sort();
    names
}

// This test's runtime has one thread, the one it blocks.
#[tokio::test(flavor = "current_thread")]
async fn the_further_threads_serve_while_the_first_is_blocked() {
    // The node and the client run on a runtime of their own, on a thread
    // of their own: this test's runtime is blocked below.
    let (addrs, node_addr) = std::sync::mpsc::channel();
    let (front_tx, front_rx) = std::sync::mpsc::channel::<(std::net::SocketAddr, String)>();
    let client = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let node = casfront::demo::node::spawn(NodeSpec::named("cas1"))
                .await
                .unwrap();
            addrs.send(node.addr).unwrap();
            let (addr, cert_pem) = front_rx.recv().unwrap();
            let tls = tls_trusting(&cert_pem);
            let mut heads = Vec::new();
            for _ in 0..8 {
                let connect = connect_tls(&tls, addr, "localhost");
                let mut s = tokio::time::timeout(Duration::from_secs(10), connect)
                    .await
                    .expect("a handshake within 10 s");
                s.write_all(
                    b"GET /cas/login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                )
                .await
                .unwrap();
                let mut answer = Vec::new();
                let read =
                    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer));
                let _ = read.await.expect("an answer within 10 s");
                heads.push(
                    String::from_utf8_lossy(&answer)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_owned(),
                );
            }
            heads
        })
    });
    let node_addr = node_addr.recv().unwrap();
    let cert = casfront::demo::self_signed().unwrap();
    let tls = casfront::tls::from_pem(&cert.cert_pem, &cert.key_pem).unwrap();
    let config = support::config_of(&format!(
        "[listen]\nhttps = \"127.0.0.1:0\"\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
         [[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n{}{}",
        support::node_tables(&[("cas1", node_addr)]),
        support::NO_RATE_LIMIT
    ));
    let current = Current::fixed(&config, tls).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(threads::serve_until(
        listener,
        current,
        3,
        std::future::pending(),
    ));
    let started = support::until(Duration::from_secs(5), || serving_threads().len() == 2).await;
    assert!(started.is_some(), "threads: {:?}", serving_threads());

    // Blocked until the client has its answers: only the further threads
    // can accept, serve and ask the node.
    front_tx.send((addr, cert.cert_pem.clone())).unwrap();
    let heads = client.join().unwrap();
    for head in &heads {
        assert!(head.starts_with("HTTP/1.1 200"), "{heads:?}");
    }

    // Dropped: the threads end, and nothing accepts any more.
    serving.abort();
    let _ = serving.await;
    let ended = support::until(Duration::from_secs(5), || serving_threads().is_empty()).await;
    assert!(ended.is_some(), "still running: {:?}", serving_threads());
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "the socket still accepts");
}
