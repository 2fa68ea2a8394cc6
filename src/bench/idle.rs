//! `casfront bench --idle N`: N connections opened, one request answered
//! on each, then held open while the front end's memory is sampled; over
//! HTTP/1.1, or with `--h2` over HTTP/2, as browsers hold theirs.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

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
    let target = if h2 {
        Arc::new(alpn_h2(&target))
    } else {
        target
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
            let Ok(req) = req else {
                let _ = opened.send(false).await;
                return;
            };
            if h2 {
                let held = tokio::time::timeout(REQUEST_TIMEOUT, h2_exchange(&target, req)).await;
                let _ = opened.send(matches!(held, Ok(Some(_)))).await;
                // Held open until the set is shut down.
                std::future::pending::<()>().await;
                drop(held);
            } else {
                let mut conn = Conn::new(&target);
                let answered = tokio::time::timeout(REQUEST_TIMEOUT, conn.send(req)).await;
                let _ = opened.send(matches!(answered, Ok(Ok(_)))).await;
                std::future::pending::<()>().await;
                drop(conn);
            }
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

/// The same target, its TLS client offering only `h2`.
fn alpn_h2(target: &Target) -> Target {
    let mut t = target.clone();
    if let Some((config, _)) = &mut t.tls {
        let mut h2 = (**config).clone();
        h2.alpn_protocols = vec![b"h2".to_vec()];
        *config = Arc::new(h2);
    }
    t
}

/// A new HTTP/2 connection and `req` answered on it, read whole: the
/// connection's sender, to hold it open (its task runs meanwhile).
async fn h2_exchange(
    target: &Target,
    req: Request<Full<Bytes>>,
) -> Option<hyper::client::conn::http2::SendRequest<Full<Bytes>>> {
    let tcp = TcpStream::connect(target.addr).await.ok()?;
    tcp.set_nodelay(true).ok()?;
    let (config, name) = target.tls.as_ref()?;
    let tls = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name.clone(), tcp)
        .await
        .ok()?;
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
