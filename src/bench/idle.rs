//! `casfront bench --idle N`: N connections opened, one request answered
//! on each, then held open while the front end's memory is sampled; over
//! HTTP/1.1, or with `--h2` over HTTP/2, as browsers hold theirs.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::load::{Conn, Target, REQUEST_TIMEOUT};

/// Opens `n` connections (HTTP/2 when `h2`), each with one request
/// answered (within [`REQUEST_TIMEOUT`]), keeps them open for `hold`, then
/// calls `sample` while they still are; answers how many opened and what
/// `sample` did.
pub async fn idle<T>(
    target: Arc<Target>,
    n: usize,
    h2: bool,
    hold: Duration,
    sample: impl FnOnce() -> T,
) -> (usize, T) {
    let target = match h2 {
        true => Arc::new(target.with_client(|c| c.alpn_protocols = vec![b"h2".to_vec()])),
        false => target,
    };
    let mut tasks = tokio::task::JoinSet::new();
    let (opened_tx, mut opened_rx) = tokio::sync::mpsc::channel::<bool>(n.max(1));
    for _ in 0..n {
        let (target, opened) = (target.clone(), opened_tx.clone());
        tasks.spawn(async move {
            let path = format!("{}/login", target.prefix);
            let req = Request::get(path.as_str())
                .header(header::HOST, target.authority.as_str())
                .body(Full::new(Bytes::new()));
            let held = match req {
                Err(_) => None,
                Ok(req) if h2 => {
                    let held = tokio::time::timeout(REQUEST_TIMEOUT, h2_exchange(&target, req));
                    held.await.ok().flatten().map(Held::H2)
                }
                Ok(req) => {
                    let mut conn = Conn::new(&target);
                    let answered = tokio::time::timeout(REQUEST_TIMEOUT, conn.send(req)).await;
                    matches!(answered, Ok(Ok(_))).then_some(Held::H1(conn))
                }
            };
            let _ = opened.send(held.is_some()).await;
            // Held open until the set is shut down.
            std::future::pending::<()>().await;
            drop(held);
        });
    }
    drop(opened_tx);
    let mut ok = 0;
    for _ in 0..n {
        match opened_rx.recv().await {
            Some(true) => ok += 1,
            Some(false) => {}
            None => break,
        }
    }
    tokio::time::sleep(hold).await;
    let sampled = sample();
    tasks.shutdown().await;
    (ok, sampled)
}

/// An open connection, kept until the set is shut down.
enum Held<'t> {
    H1(#[allow(dead_code)] Conn<'t>),
    H2(#[allow(dead_code)] hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// A new HTTP/2 connection and `req` answered on it, read whole: the
/// connection's sender, to hold it open (its task runs meanwhile).
async fn h2_exchange(
    target: &Target,
    req: Request<Full<Bytes>>,
) -> Option<hyper::client::conn::http2::SendRequest<Full<Bytes>>> {
    let (tls, _) = target.tls_stream().await.ok()?;
    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        return None;
    }
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .ok()?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.ok()?;
    resp.into_body().collect().await.ok()?;
    Some(sender)
}
