//! A pooled node connection is handed to a request only when it is free
//! both ways: a client whose request body is still on its way (a GET with
//! a `Content-Length`, answered at once by the node, the body trickled)
//! cannot leave its connection in the pool for another user's request to
//! wait behind. The node behaves as Tomcat does: it answers a GET without
//! reading its body, then reads (swallows) the body before the next
//! request on the connection. (A hyper server closes such a connection
//! instead, which hides the stall: the demo node cannot show it.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

mod support;
use support::client::{connect_tls, send_tls, tls_trusting, whole_response};

/// A keep-alive HTTP/1.1 node named `cas1` that answers each request as
/// soon as its head is read, then swallows its body (by
/// `Content-Length`) before reading the next one, as Tomcat does.
async fn tomcat_like_node() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut read = BufReader::new(read);
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((n, v)) = line.split_once(':') {
                            if n.eq_ignore_ascii_case("content-length") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let body = "<cas:serviceResponse/>";
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nX-Cas-Node: cas1\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if write.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                    let mut swallowed = vec![0u8; length];
                    if read.read_exact(&mut swallowed).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_does_not_stall_the_next_request() {
    let node = tomcat_like_node().await;
    let config = casfront::demo::cluster_config("127.0.0.1:0".parse().unwrap(), &[node]);
    let config = support::config_of(&format!("{config}{}", support::NO_RATE_LIMIT));
    let cert = casfront::demo::self_signed().unwrap();
    let server_tls = casfront::tls::from_pem(&cert.cert_pem, &cert.key_pem).unwrap();
    let (addr, _current, _serving) = support::front(&config, server_tls).await;
    let tls = tls_trusting(&cert.cert_pem);
    let validate = "/cas/serviceValidate?service=x&ticket=ST-1-a-cas1";
    // One request first: the pool holds a connection, as in production.
    let r = send_tls(&tls, addr, "localhost", "GET", validate, &[], "").await;
    assert_eq!(r.header("x-cas-node"), Some("cas1"));

    for round in 0..3 {
        // The attacker: 1 of 20 body bytes, the node's whole answer read,
        // the connection held open with the body unfinished.
        let mut attacker = connect_tls(&tls, addr, "localhost").await;
        let head = "GET /cas/login HTTP/1.1\r\nHost: localhost\r\nContent-Length: 20\r\n\r\nx";
        attacker.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        let answered = async {
            while !whole_response(&answer) {
                let n = attacker.read(&mut buf).await.unwrap();
                assert!(
                    n > 0,
                    "the connection closed: {}",
                    String::from_utf8_lossy(&answer)
                );
                answer.extend_from_slice(&buf[..n]);
            }
        };
        tokio::time::timeout(Duration::from_secs(5), answered)
            .await
            .expect("the node answers the GET before its body is sent");
        assert!(answer.starts_with(b"HTTP/1.1 200"), "round {round}");

        // The victim, on a connection of its own, right after.
        let started = Instant::now();
        let victim = send_tls(&tls, addr, "localhost", "GET", validate, &[], "");
        let r = tokio::time::timeout(Duration::from_secs(5), victim)
            .await
            .unwrap_or_else(|_| panic!("round {round}: the victim waited behind the attacker"));
        assert_eq!(r.status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "round {round}: {:?}",
            started.elapsed()
        );
        drop(attacker);
    }
}
