//! The listener: accept, TLS handshake under a deadline, then HTTP/1.1 or
//! HTTP/2 chosen from the negotiated ALPN (no preface sniffing, DESIGN §6),
//! each request handed to the [`Proxy`] in force ([`Live`]: a new
//! connection takes the TLS configuration in force, a request the proxy in
//! force), its response wrapped for the access log. Submodules: [`tls`],
//! [`redirect`] (the plain-HTTP listener).

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

use crate::access_log::{Entry, Logged};
use crate::live::Live;
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

/// Accepts TLS connections on `listener` with a fixed configuration
/// until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    proxy: Arc<Proxy>,
    settings: ServerSettings,
) {
    serve_until(
        listener,
        Live::fixed(tls, proxy),
        settings,
        std::future::pending(),
    )
    .await;
}

/// Accepts TLS connections on `listener` until `shutdown` completes with
/// the grace period; then stops accepting, lets the requests in flight finish (HTTP/1 keep-alive
/// connections close after their current response, HTTP/2 ones get a
/// GOAWAY) and returns when they have, or after `grace`. Returns whether
/// every connection finished in time.
pub async fn serve_until(
    listener: TcpListener,
    live: Arc<Live>,
    settings: ServerSettings,
    shutdown: impl Future<Output = Duration>,
) -> bool {
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    let grace = loop {
        let accepted = tokio::select! {
            grace = &mut shutdown => break grace,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, peer)) = accepted else {
            // Out of file descriptors and the like: back off a little.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (live, settings) = (live.clone(), settings.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            connection(stream, peer, local_port, live, settings, watcher).await;
        });
    };
    drop(listener);
    tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_ok()
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    local_port: u16,
    live: Arc<Live>,
    settings: ServerSettings,
    watcher: Watcher,
) {
    let metrics = live.metrics().clone();
    metrics.client_connections.inc();
    let _open = Open(&metrics.client_connections);
    let acceptor = TlsAcceptor::from(live.tls());
    let Ok(Ok(tls)) =
        tokio::time::timeout(settings.handshake_timeout, acceptor.accept(stream)).await
    else {
        metrics.tls_handshake_failures.inc();
        return;
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let proxy = live.proxy();
    let client = Arc::new(proxy.client_info(peer, local_port));
    // Over it, hyper answers 431 and closes the connection.
    let max_header_bytes = proxy.limits().max_header_bytes;
    drop(proxy);
    let svc = service_fn(move |req| {
        let (proxy, client) = (live.proxy(), client.clone());
        async move { Ok::<_, Infallible>(respond(proxy, req, &client).await) }
    });
    let io = TokioIo::new(tls);
    if h2 {
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_concurrent_streams(settings.max_concurrent_streams)
            .max_header_list_size(u32::try_from(max_header_bytes).unwrap_or(u32::MAX))
            .serve_connection(io, svc);
        let _ = watcher.watch(conn).await;
    } else {
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(settings.header_read_timeout)
            .max_buf_size(max_header_bytes)
            .serve_connection(io, svc);
        let _ = watcher.watch(conn).await;
    }
}

/// One request: the proxy's response, wrapped for the access log.
async fn respond(
    proxy: Arc<Proxy>,
    req: http::Request<hyper::body::Incoming>,
    client: &crate::proxy::forward::ClientInfo,
) -> http::Response<Logged<crate::proxy::ProxyBody>> {
    let entry = proxy
        .access_log()
        .then(|| Entry::start(proxy.clone(), client.peer, &req));
    let (resp, outcome) = proxy.handle(req, client).await;
    let status = resp.status().as_u16();
    resp.map(|body| Logged::new(body, entry, status, outcome))
}

/// Counts a client connection as open while it lives.
struct Open<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
