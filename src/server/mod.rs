//! The listener: accept, TLS handshake under a deadline, then HTTP/1.1 or
//! HTTP/2 chosen from the negotiated ALPN (no preface sniffing, DESIGN §6),
//! each request handed to the [`Proxy`]. Submodules: [`tls`], [`redirect`]
//! (the plain-HTTP listener).

pub mod redirect;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::proxy::Proxy;

/// Limits of the client side.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// TCP accept to the end of the TLS handshake.
    pub handshake_timeout: Duration,
    /// HTTP/1: time to read a request's headers, which is also the idle
    /// keep-alive timeout between requests (one hyper setting).
    pub header_read_timeout: Duration,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            max_concurrent_streams: 100,
        }
    }
}

/// Accepts TLS connections on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    proxy: Arc<Proxy>,
    settings: ServerSettings,
) {
    serve_until(
        listener,
        tls,
        proxy,
        settings,
        std::future::pending(),
        Duration::ZERO,
    )
    .await;
}

/// Accepts TLS connections on `listener` until `shutdown` completes; then
/// stops accepting, lets the requests in flight finish (HTTP/1 keep-alive
/// connections close after their current response, HTTP/2 ones get a
/// GOAWAY) and returns when they have, or after `grace`. Returns whether
/// every connection finished in time.
pub async fn serve_until(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    proxy: Arc<Proxy>,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> bool {
    let acceptor = TlsAcceptor::from(tls);
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, peer)) = accepted else {
            // Out of file descriptors and the like: back off a little.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, proxy, settings) = (acceptor.clone(), proxy.clone(), settings.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            connection(stream, peer, local_port, acceptor, proxy, settings, watcher).await;
        });
    }
    drop(listener);
    tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_ok()
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    local_port: u16,
    acceptor: TlsAcceptor,
    proxy: Arc<Proxy>,
    settings: ServerSettings,
    watcher: Watcher,
) {
    let Ok(Ok(tls)) =
        tokio::time::timeout(settings.handshake_timeout, acceptor.accept(stream)).await
    else {
        return;
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let client = Arc::new(proxy.client_info(peer, local_port));
    let svc = service_fn(move |req| {
        let (proxy, client) = (proxy.clone(), client.clone());
        async move { Ok::<_, Infallible>(proxy.handle(req, &client).await) }
    });
    let io = TokioIo::new(tls);
    if h2 {
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_concurrent_streams(settings.max_concurrent_streams)
            .serve_connection(io, svc);
        let _ = watcher.watch(conn).await;
    } else {
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(settings.header_read_timeout)
            .serve_connection(io, svc);
        let _ = watcher.watch(conn).await;
    }
}
