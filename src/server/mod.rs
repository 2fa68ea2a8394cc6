//! The listener: accept under the connection caps ([`crate::edge::gate`]),
//! read a PROXY header from the peers configured to send one, TLS
//! handshake (PROXY header included) under `limits.handshake_timeout`,
//! then HTTP/1.1 or HTTP/2 chosen from the negotiated ALPN (no preface
//! sniffing: hyper's auto builder sniffs the preface with no timeout),
//! served by [`conn`]. A client certificate, when `[tls] client_auth` asks
//! for one, is examined once after the handshake. A new connection takes
//! the TLS configuration and limits of the generation in force
//! ([`Current`]), a request the generation in force. Submodules: [`conn`],
//! [`sending`] (responses a client does not take), [`redirect`] (the
//! plain-HTTP listener), [`runtime`] (the runtime `casfront run` serves
//! on), [`trim`] (freed memory handed back after a burst).

pub mod conn;
pub mod park;
pub mod redirect;
pub mod runtime;
pub mod sending;
pub mod trim;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::{LazyConfigAcceptor, TlsAcceptor};

use crate::client::ClientConn;
use crate::client_cert::{ClientCert, Status};
use crate::config::{ClientAuth, Limits};
use crate::current::Current;
use crate::edge::gate::{AddrSlot, ConnSlot, Gate};
use crate::edge::proxy_header;
use crate::metrics::{Metrics, Refusal};
use crate::tls::ListenerTls;

/// Accepts TLS connections on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, current: Arc<Current>) {
    serve_until(listener, current, std::future::pending()).await;
}

/// Accepts TLS connections on `listener` until `shutdown` completes with
/// the grace period; then stops accepting, lets the requests in flight
/// finish and closes each connection without losing a request on its way
/// ([`conn`]: HTTP/1 after the answer to its next request or a short
/// linger, HTTP/2 by GOAWAY) and returns when they have, or after `grace`. Returns whether every connection finished in time.
pub async fn serve_until(
    listener: TcpListener,
    current: Arc<Current>,
    shutdown: impl Future<Output = Duration>,
) -> bool {
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let gate = current.state().gate.clone();
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(shutdown);
    let mut accepted_in_turn = 0;
    let grace = loop {
        // The connections already open go first: under a burst of new
        // ones, each turn lets every task that is ready run once.
        accepted_in_turn += 1;
        if accepted_in_turn > ACCEPT_BATCH {
            accepted_in_turn = 1;
            tokio::task::yield_now().await;
        }
        let max = || current.generation().limits().max_connections;
        let slot = tokio::select! {
            grace = &mut shutdown => break grace,
            slot = gate.wait_for_slot(max) => slot,
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
        let (current, gate, stopped) = (current.clone(), gate.clone(), stopped.clone());
        tokio::spawn(connection(accepted, current, gate, stopped));
    };
    drop(listener);
    stop.send_replace(true);
    drop(stopped);
    tokio::time::timeout(grace, stop.closed()).await.is_ok()
}

/// Connections accepted in one turn of the accept loop (HAProxy's
/// `tune.maxaccept` caps the same). More, and a burst of new
/// connections has thousands of handshakes in flight at once, each with its
/// TLS state, and delays the requests of the connections already open.
const ACCEPT_BATCH: usize = 16;

/// A connection just accepted, counted under the global cap.
struct Accepted {
    stream: TcpStream,
    peer: SocketAddr,
    local_port: u16,
    slot: ConnSlot,
}

async fn connection(
    accepted: Accepted,
    current: Arc<Current>,
    gate: Arc<Gate>,
    stop: watch::Receiver<bool>,
) {
    let Accepted {
        mut stream,
        peer,
        local_port,
        slot: _slot,
    } = accepted;
    let metrics = current.metrics().clone();
    metrics.client_connections.inc();
    let _open = Open(&metrics.client_connections);
    let generation = current.generation();
    let limits = generation.limits().clone();
    let deadline = tokio::time::Instant::now() + limits.handshake_timeout;
    let mut client = peer;
    if generation.listen().sends_proxy_header(peer.ip()) {
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
    let mut info = generation.client_conn(client, local_port);
    // A trusted proxy speaks for many clients.
    let pressed = current.state().under_pressure(&limits);
    let Some(_per_addr) = per_address_slot(&gate, &info, &limits, pressed, &metrics) else {
        return;
    };
    let listener_tls = generation.tls().clone();
    drop(generation);
    let handshake = handshake(&listener_tls, stream);
    let Ok(Ok((tls, asked))) = tokio::time::timeout_at(deadline, handshake).await else {
        metrics.tls_handshake_failures.inc();
        return;
    };
    let session = tls.get_ref().1;
    if let Some(verifier) = &listener_tls.client {
        let resumed = session.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        // The generation in force now says what nodes are told.
        let names = current.generation();
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
        if listener_tls.by_name.is_some() {
            info.cert_name = Some(asked);
        }
    }
    drop(listener_tls);
    let h2 = session.alpn_protocol() == Some(b"h2");
    conn::serve(tls, h2, current, Arc::new(info), &limits, stop).await;
}

/// The TLS handshake, and whether it asked for a client certificate;
/// with `client_auth_names`, the configuration is chosen once the
/// ClientHello's server name is known.
/// The stream comes boxed: it is moved into the connection's HTTP state,
/// and a kilobyte moved by value takes a slot of its own at every step of
/// the connection's future, for the connection's whole life.
async fn handshake(
    tls: &ListenerTls,
    stream: TcpStream,
) -> std::io::Result<(Box<tokio_rustls::server::TlsStream<TcpStream>>, bool)> {
    if tls.by_name.is_none() {
        let asked = tls.client.is_some();
        let stream = TlsAcceptor::from(tls.config.clone()).accept(stream).await?;
        return Ok((Box::new(stream), asked));
    }
    let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
    let config = tls.for_name(start.client_hello().server_name()).clone();
    let asked = !Arc::ptr_eq(&config, &tls.config);
    Ok((Box::new(start.into_stream(config).await?), asked))
}

/// The per-address slot for `client`'s connection (`Some(None)` for a
/// trusted proxy, which speaks for many clients); `None`: refused, counted.
/// The cap holds only when `pressed` (the process is under pressure); the
/// connections are counted either way, so that the heaviest addresses are
/// the first held back when pressure comes.
pub(crate) fn per_address_slot(
    gate: &Arc<Gate>,
    client: &ClientConn,
    limits: &Limits,
    pressed: bool,
    metrics: &Metrics,
) -> Option<Option<AddrSlot>> {
    if client.trusted {
        return Some(None);
    }
    let max = if pressed {
        limits.max_connections_per_ip
    } else {
        usize::MAX
    };
    let slot = gate.take_addr_slot(client.peer.ip(), max);
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
        trim::freed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every open connection holds its task, the size of this future, as
    /// long as it lives, idle or not: the TLS stream (over a kilobyte) must
    /// come boxed, or each step of the future keeps a copy of it (8.3 KiB
    /// then, against 3.7).
    #[tokio::test]
    async fn a_connections_task_stays_small() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let text = "[listen]\nhttps = \"127.0.0.1:0\"\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
                    [[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n\
                    [[pool.node]]\nname = \"cas1\"\nurl = \"http://127.0.0.1:1\"\n";
        let config = crate::config::parse(text, std::path::Path::new("."))
            .config
            .unwrap();
        let cert = crate::demo::self_signed().unwrap();
        let tls = crate::tls::from_pem(&cert.cert_pem, &cert.key_pem).unwrap();
        let current = Current::fixed(&config, tls).unwrap();
        let gate = current.state().gate.clone();
        let slot = gate.wait_for_slot(|| 1).await;
        let (_stop, stopped) = watch::channel(false);
        let accepted = Accepted {
            stream,
            peer,
            local_port: 443,
            slot,
        };
        let task = connection(accepted, current, gate, stopped);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 4096, "a connection's future is {size} bytes");
    }
}
