//! The listener: accept under the connection caps ([`crate::edge::gate`]),
//! read a PROXY header from the peers configured to send one, TLS
//! handshake (PROXY header included) under `limits.handshake_timeout`,
//! then HTTP/1.1 or HTTP/2 chosen from the negotiated ALPN (no preface
//! sniffing, DESIGN §6), served by [`conn`]. A client certificate, when
//! `[tls] client_auth` asks for one, is examined once after the handshake. A new connection takes the
//! TLS configuration and limits in force ([`Live`]), a request the proxy
//! in force. Submodules: [`conn`], [`sending`] (responses a client does
//! not take), [`tls`], [`redirect`] (the plain-HTTP listener).

pub mod conn;
pub mod redirect;
pub mod sending;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::{LazyConfigAcceptor, TlsAcceptor};

use crate::client_cert::{ClientCert, Status};
use crate::config::ClientAuth;
use crate::edge::gate::{Gate, IpSlot, Slot};
use crate::edge::proxy_header;
use crate::live::Live;
use crate::metrics::Refusal;
use crate::proxy::Proxy;
use tls::ListenerTls;

/// Accepts TLS connections on `listener` with a fixed configuration
/// until the task is dropped.
pub async fn serve(listener: TcpListener, tls: Arc<ServerConfig>, proxy: Arc<Proxy>) {
    serve_until(listener, Live::fixed(tls, proxy), std::future::pending()).await;
}

/// Accepts TLS connections on `listener` until `shutdown` completes with
/// the grace period; then stops accepting, lets the requests in flight
/// finish (HTTP/1 keep-alive connections close after their current
/// response, HTTP/2 ones get a GOAWAY) and returns when they have, or after
/// `grace`. Returns whether every connection finished in time.
pub async fn serve_until(
    listener: TcpListener,
    live: Arc<Live>,
    shutdown: impl Future<Output = Duration>,
) -> bool {
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let gate = live.gate().clone();
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(shutdown);
    let grace = loop {
        let max = || live.proxy().limits().max_connections;
        let slot = tokio::select! {
            grace = &mut shutdown => break grace,
            slot = gate.room(max) => slot,
        };
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
        let accepted = Accepted {
            stream,
            peer,
            local_port,
            slot,
        };
        let (live, gate, stopped) = (live.clone(), gate.clone(), stopped.clone());
        tokio::spawn(connection(accepted, live, gate, stopped));
    };
    drop(listener);
    stop.send_replace(true);
    drop(stopped);
    tokio::time::timeout(grace, stop.closed()).await.is_ok()
}

/// A connection just accepted, counted under the global cap.
struct Accepted {
    stream: TcpStream,
    peer: SocketAddr,
    local_port: u16,
    slot: Slot,
}

async fn connection(
    accepted: Accepted,
    live: Arc<Live>,
    gate: Arc<Gate>,
    stop: watch::Receiver<bool>,
) {
    let Accepted {
        mut stream,
        peer,
        local_port,
        slot: _slot,
    } = accepted;
    let metrics = live.metrics().clone();
    metrics.client_connections.inc();
    let _open = Open(&metrics.client_connections);
    let proxy = live.proxy();
    let limits = proxy.limits().clone();
    let deadline = tokio::time::Instant::now() + limits.handshake_timeout;
    let mut client = peer;
    if proxy.listen().sends_proxy_header(peer.ip()) {
        match tokio::time::timeout_at(deadline, proxy_header::read(&mut stream)).await {
            Ok(Ok(source)) => client = source.unwrap_or(peer),
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "connection refused: PROXY header");
                metrics.refused(Refusal::ProxyHeader);
                return;
            }
            Err(_) => {
                metrics.refused(Refusal::ProxyHeader);
                return;
            }
        }
    }
    let mut info = proxy.client_info(client, local_port);
    // A trusted proxy speaks for many clients.
    let Some(_per_ip) = admit(&gate, &info, &limits, &metrics) else {
        return;
    };
    drop(proxy);
    let listener_tls = live.tls();
    let handshake = handshake(&listener_tls, stream);
    let Ok(Ok((tls, asked))) = tokio::time::timeout_at(deadline, handshake).await else {
        metrics.tls_handshake_failures.inc();
        return;
    };
    let session = tls.get_ref().1;
    if let Some(verifier) = &listener_tls.client {
        let resumed = session.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        // The configuration in force now says what nodes are told.
        let names = live.proxy();
        let cert = ClientCert::examine(
            verifier,
            session.peer_certificates(),
            resumed,
            names.cert_names(),
        );
        metrics.client_cert(cert.status);
        // A resumed session brings back its certificate unchecked.
        if asked && verifier.auth() == ClientAuth::Required && cert.status != Status::Verified {
            metrics.tls_handshake_failures.inc();
            return;
        }
        info.cert = Some(cert);
    }
    drop(listener_tls);
    let h2 = session.alpn_protocol() == Some(b"h2");
    conn::serve(tls, h2, live, Arc::new(info), &limits, stop).await;
}

/// The TLS handshake, and whether it asked for a client certificate;
/// with `client_auth_names`, the configuration is chosen once the
/// ClientHello's server name is known.
async fn handshake(
    tls: &ListenerTls,
    stream: TcpStream,
) -> std::io::Result<(tokio_rustls::server::TlsStream<TcpStream>, bool)> {
    if tls.by_name.is_none() {
        let asked = tls.client.is_some();
        let stream = TlsAcceptor::from(tls.config.clone()).accept(stream).await?;
        return Ok((stream, asked));
    }
    let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
    let config = tls.for_name(start.client_hello().server_name()).clone();
    let asked = !Arc::ptr_eq(&config, &tls.config);
    Ok((start.into_stream(config).await?, asked))
}

/// The per-address slot for `client`'s connection (`Some(None)` for a
/// trusted proxy, which speaks for many clients); `None`: refused, counted.
pub(crate) fn admit(
    gate: &Arc<Gate>,
    client: &crate::proxy::forward::ClientInfo,
    limits: &crate::config::Limits,
    metrics: &crate::metrics::Metrics,
) -> Option<Option<IpSlot>> {
    if client.trusted {
        return Some(None);
    }
    let slot = gate.admit(client.peer.ip(), limits.max_connections_per_ip);
    if slot.is_none() {
        metrics.refused(Refusal::ConnectionsPerIp);
    }
    slot.map(Some)
}

/// Counts a client connection as open while it lives.
struct Open<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
