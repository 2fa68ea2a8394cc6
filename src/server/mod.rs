//! The listener: accept, TLS handshake under a deadline, then HTTP/1.1 or
//! HTTP/2 chosen from the negotiated ALPN (no preface sniffing, DESIGN §6),
//! each request handed to the [`Proxy`]. Submodules: [`tls`], [`redirect`]
//! (the plain-HTTP listener).

pub mod redirect;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
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
    let acceptor = TlsAcceptor::from(tls);
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            // Out of file descriptors and the like: back off a little.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, proxy, settings) = (acceptor.clone(), proxy.clone(), settings.clone());
        tokio::spawn(async move {
            connection(stream, peer, local_port, acceptor, proxy, settings).await;
        });
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    local_port: u16,
    acceptor: TlsAcceptor,
    proxy: Arc<Proxy>,
    settings: ServerSettings,
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
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_concurrent_streams(settings.max_concurrent_streams)
            .serve_connection(io, svc)
            .await;
    } else {
        let _ = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(settings.header_read_timeout)
            .serve_connection(io, svc)
            .await;
    }
}
