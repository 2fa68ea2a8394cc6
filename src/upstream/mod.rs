//! casfront's own small connection pool per node over
//! `hyper::client::conn::http1` (hyper-util's pooled client drops a request
//! whose connect fails, leaving nothing to fail over with; see
//! `docs/architecture.md`): take an idle connection or
//! connect (one timeout covers TCP and TLS), send; a connection is returned to the
//! pool when its response body has been read to the end. Idle connections
//! are capped per node and expire before Tomcat's keep-alive (20 s) would
//! close them; with `max_connections` all of a node's connections are
//! capped (a semaphore permit lives in each connection's task), and a
//! request past the cap waits, in line, for one to come free
//! ([`idle`]) or for a permit. https nodes are verified with their pool's CA bundle
//! (`upstream_ca`, else the system's roots) under the node's `server_name`
//! (else its url's host) — see [`client_tls`].

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsConnector;

pub mod body;
mod idle;
mod resend;

use crate::config::{Node, Pool, Upstream};
use body::RequestBody;
use idle::{IdleQueue, Taken};
use resend::Resend;

/// Why a request could not be sent or answered.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Nothing was sent: another node may take the request, whatever its method.
    #[error("connect to {addr} failed: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connect to {0} timed out")]
    ConnectTimeout(String),
    #[error("TLS with {addr} failed: {source}")]
    Tls {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP handshake with {addr} failed: {source}")]
    Handshake {
        addr: String,
        #[source]
        source: hyper::Error,
    },
    /// The request may have reached the node: not retried.
    #[error("request to {addr} failed: {source}")]
    Request {
        addr: String,
        #[source]
        source: hyper::Error,
    },
    #[error("no response from {0} in time")]
    ResponseTimeout(String),
    /// Nothing was sent: the node is at `max_connections`, not failing.
    #[error("no connection to {0} came free in time (max_connections)")]
    Busy(String),
}

impl UpstreamError {
    /// The client's side failed, not the node's: its request body broke
    /// off or was malformed (bad chunking) while it was being forwarded.
    pub fn client_side(&self) -> bool {
        // hyper wraps the body's own error (the client connection's, a
        // `hyper::Error`) as a user error; its other user errors (a
        // connection task gone) carry no such cause.
        let UpstreamError::Request { source, .. } = self else {
            return false;
        };
        source.is_user()
            && std::error::Error::source(source).is_some_and(|cause| cause.is::<hyper::Error>())
    }
}

/// A connection taken from the pool or just made.
pub struct Conn {
    sender: SendRequest<RequestBody>,
    pooled: bool,
}

impl Conn {
    /// Taken from the pool: the node may have closed it meanwhile.
    pub fn pooled(&self) -> bool {
        self.pooled
    }
}

/// Why [`NodePool::send`] returned no response.
pub enum SendError {
    /// The request may be sent again, on a new connection: it was never
    /// written (the connection was closed first), or it has an idempotent
    /// method and no body and the node did not answer at all (`sent`).
    /// `node_failed`: a new connection failed that way, so the node is out
    /// of order (a pooled one may just have timed out on the node's side).
    Again {
        req: Box<Request<RequestBody>>,
        node_failed: bool,
        sent: bool,
    },
    Failed(UpstreamError),
}

/// How an https node is reached: the pool's client configuration and the
/// name its certificate must carry.
#[derive(Clone)]
pub struct NodeTls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

/// Errors preparing TLS to a pool's nodes.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("pool `{pool}`: reading upstream_ca {path}: {source}")]
    Ca {
        pool: String,
        path: String,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("pool `{pool}`: {what} holds no usable CA certificate")]
    NoRoots { pool: String, what: String },
    #[error("node `{0}`: its host is not a valid TLS server name; set `server_name`")]
    ServerName(String),
    #[error("TLS client configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The TLS client configuration of a pool with https nodes: HTTP/1.1 by
/// ALPN, roots from `upstream_ca` or the system's store.
pub fn client_tls(pool: &Pool) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    let what = match &pool.upstream_ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|source| TlsSetupError::Ca {
                    pool: pool.name.clone(),
                    path: path.display().to_string(),
                    source,
                })?;
            roots.add_parsable_certificates(certs);
            path.display().to_string()
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            "the system's certificate store".to_owned()
        }
    };
    if roots.is_empty() {
        return Err(TlsSetupError::NoRoots {
            pool: pool.name.clone(),
            what,
        });
    }
    Ok(Arc::new(http1_client(roots)?))
}

/// A TLS client configuration trusting `roots`: AWS-LC, TLS 1.2 and 1.3,
/// HTTP/1.1 by ALPN (casfront's upstream side and the bench's client).
pub fn http1_client(roots: rustls::RootCertStore) -> Result<ClientConfig, rustls::Error> {
    http1_client_with(roots, rustls::crypto::aws_lc_rs::default_provider())
}

/// The same with `provider` (the bench's client, offering fewer key
/// exchanges).
pub fn http1_client_with(
    roots: rustls::RootCertStore,
    provider: rustls::crypto::CryptoProvider,
) -> Result<ClientConfig, rustls::Error> {
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl NodeTls {
    /// TLS to `node` with its pool's configuration.
    pub fn new(config: Arc<ClientConfig>, node: &Node) -> Result<NodeTls, TlsSetupError> {
        let host = node.server_name.as_deref().unwrap_or(&node.url.host);
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| TlsSetupError::ServerName(node.name.clone()))?;
        Ok(NodeTls {
            connector: TlsConnector::from(config),
            name,
        })
    }
}

/// The pool of one node.
pub struct NodePool {
    addr: String,
    settings: Upstream,
    tls: Option<NodeTls>,
    idle: IdleQueue,
    /// `max_connections` permits, one held by each connection's task.
    slots: Option<Arc<Semaphore>>,
}

impl NodePool {
    /// `addr` is `host:port`; `tls` is set for an https node.
    pub fn new(addr: String, settings: Upstream, tls: Option<NodeTls>) -> Arc<NodePool> {
        let slots = (settings.max_connections > 0)
            .then(|| Arc::new(Semaphore::new(settings.max_connections)));
        Arc::new(NodePool {
            addr,
            settings,
            tls,
            idle: IdleQueue::default(),
            slots,
        })
    }

    /// An idle connection when one is usable (and `fresh` is false), else
    /// a new one; at `max_connections`, whichever comes first within
    /// `queue_timeout` ([`UpstreamError::Busy`] after). Nothing has been
    /// sent when this fails.
    pub async fn checkout(&self, fresh: bool) -> Result<Conn, UpstreamError> {
        if !fresh {
            if let Some(mut sender) = self.idle.take(self.settings.idle_timeout) {
                // Its previous exchange may still be finishing in its
                // task: a moment, never longer than a new connection.
                let ready = tokio::time::timeout(self.settings.connect_timeout, sender.ready());
                if matches!(ready.await, Ok(Ok(()))) {
                    return Ok(Conn {
                        sender,
                        pooled: true,
                    });
                }
                // Closed under us (its permit comes back as its task ends).
            }
        }
        let slot = match &self.slots {
            None => None,
            Some(slots) => match slots.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                // Boxed, as below: rare paths, kept out of the size of
                // every request's future.
                Err(_) => match Box::pin(self.queue(slots, fresh)).await? {
                    Slot::Idle(sender) => {
                        return Ok(Conn {
                            sender,
                            pooled: true,
                        })
                    }
                    Slot::Permit(permit) => Some(permit),
                },
            },
        };
        Ok(Conn {
            sender: Box::pin(self.connect(slot)).await?,
            pooled: false,
        })
    }

    /// At `max_connections`: waits in line for a connection another
    /// request frees, or for a permit (one closes), at most
    /// `queue_timeout`; `fresh`, for a permit only.
    async fn queue(&self, slots: &Arc<Semaphore>, fresh: bool) -> Result<Slot, UpstreamError> {
        let busy = || UpstreamError::Busy(self.addr.clone());
        let deadline = tokio::time::sleep(self.settings.queue_timeout);
        tokio::pin!(deadline);
        // One acquire for the whole wait, to keep its place in line.
        let permit = slots.clone().acquire_owned();
        tokio::pin!(permit);
        if fresh {
            // A pooled connection failed under the request: its permit
            // comes back as its task ends. Idle ones are left alone.
            return tokio::select! {
                permit = &mut permit => permit.map(Slot::Permit).map_err(|_| busy()),
                _ = &mut deadline => Err(busy()),
            };
        }
        let mut first = false;
        loop {
            let mut sender = match self.idle.take_or_wait(self.settings.idle_timeout, first) {
                Taken::Now(sender) => sender,
                Taken::Later(mut handed) => tokio::select! {
                    sender = &mut handed => match sender {
                        Ok(sender) => sender,
                        Err(_) => continue,
                    },
                    permit = &mut permit => {
                        // A connection handed over meanwhile is closed:
                        // its permit goes back to the line.
                        return permit.map(Slot::Permit).map_err(|_| busy());
                    }
                    _ = &mut deadline => return Err(busy()),
                },
            };
            first = true;
            // Its previous exchange may still be finishing in its task.
            tokio::select! {
                ready = sender.ready() => if ready.is_ok() {
                    return Ok(Slot::Idle(sender));
                },
                _ = &mut deadline => return Err(busy()),
            }
        }
    }

    /// Sends `req` on `conn`; gives the request back when it may be sent
    /// again ([`SendError::Again`]), to be routed again.
    /// Not an `async fn`, which would keep the request twice in every
    /// request's future, and the request boxed (`pipeline::handle` says
    /// why both matter).
    #[allow(clippy::manual_async_fn)]
    pub fn send(
        self: &Arc<Self>,
        conn: Conn,
        req: Box<Request<RequestBody>>,
    ) -> impl std::future::Future<Output = Result<Response<PooledBody>, SendError>> + '_ {
        async move {
            let Conn { mut sender, pooled } = conn;
            // A request body may still be on its way when the response is
            // read (a node answers a GET at once; the client trickles the
            // body): such a connection is not free for another request.
            let body_pending = !req.body().is_end_stream();
            let replayable = idempotent(req.method()) && !body_pending;
            let copy = replayable.then(|| Resend::of(&req));
            let timeout = self.settings.response_timeout;
            let resp = match tokio::time::timeout(timeout, sender.try_send_request(*req)).await {
                Err(_) => {
                    return Err(SendError::Failed(UpstreamError::ResponseTimeout(
                        self.addr.clone(),
                    )))
                }
                Ok(Ok(resp)) => resp,
                Ok(Err(mut e)) => {
                    let again = match (e.take_message(), copy) {
                        (Some(unsent), _) => Some((unsent, false)),
                        (None, Some(copy)) if no_response(e.error()) => {
                            copy.request().map(|req| (req, true))
                        }
                        _ => None,
                    };
                    let Some((req, sent)) = again else {
                        return Err(SendError::Failed(self.request_error(e.into_error())));
                    };
                    return Err(SendError::Again {
                        req: Box::new(req),
                        node_failed: !pooled,
                        sent,
                    });
                }
            };
            let back = Back {
                pool: self.clone(),
                sender,
                body_pending,
            };
            if resp.body().is_end_stream() {
                // HEAD, 204, 304: nobody may poll this body; the response is done.
                back.response_done();
                return Ok(resp.map(|inner| PooledBody { inner, back: None }));
            }
            Ok(resp.map(|inner| PooledBody {
                inner,
                back: Some(back),
            }))
        }
    }

    fn request_error(&self, source: hyper::Error) -> UpstreamError {
        UpstreamError::Request {
            addr: self.addr.clone(),
            source,
        }
    }

    /// At `max_connections` with nothing idle: a new request would wait.
    pub fn full(&self) -> bool {
        self.slots
            .as_ref()
            .is_some_and(|s| s.available_permits() == 0)
            && self.idle.idle_count() == 0
    }

    /// A connection free again: to a waiting request, else idle.
    fn put_idle(&self, sender: SendRequest<RequestBody>) {
        self.idle.put(sender, self.settings.max_idle);
    }

    /// Idle connections now pooled (for tests and metrics).
    pub fn idle_count(&self) -> usize {
        self.idle.idle_count()
    }

    /// An active health check: `GET path` with `host` on a new connection
    /// (never a pooled one), within `timeout`; the response status, or
    /// `None` when there was none in time.
    pub async fn probe(
        &self,
        path: &http::uri::PathAndQuery,
        host: &http::HeaderValue,
        timeout: std::time::Duration,
    ) -> Option<http::StatusCode> {
        let exchange = async {
            // Not under `max_connections`: a check must not queue.
            let mut sender = self.open(None).await.ok()?;
            let mut req = Request::new(RequestBody::empty());
            *req.uri_mut() = http::Uri::from(path.clone());
            req.headers_mut().insert(http::header::HOST, host.clone());
            req.headers_mut().insert(
                http::header::USER_AGENT,
                http::HeaderValue::from_static("casfront-health-check"),
            );
            let resp = sender.send_request(req).await.ok()?;
            Some(resp.status())
        };
        tokio::time::timeout(timeout, exchange).await.ok().flatten()
    }

    /// TCP, TLS for an https node, and the HTTP/1.1 handshake, all under
    /// the connect timeout.
    async fn connect(
        &self,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<SendRequest<RequestBody>, UpstreamError> {
        match tokio::time::timeout(self.settings.connect_timeout, self.open(slot)).await {
            Err(_) => Err(UpstreamError::ConnectTimeout(self.addr.clone())),
            Ok(r) => r,
        }
    }

    /// `slot`: the `max_connections` permit the connection's task holds
    /// until the connection closes.
    async fn open(
        &self,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<SendRequest<RequestBody>, UpstreamError> {
        let addr = self.addr.clone();
        let stream = match TcpStream::connect(&self.addr).await {
            Err(source) => return Err(UpstreamError::Connect { addr, source }),
            Ok(s) => s,
        };
        let _ = stream.set_nodelay(true);
        let handshake = |source| UpstreamError::Handshake {
            addr: self.addr.clone(),
            source,
        };
        let Some(tls) = &self.tls else {
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(handshake)?;
            tokio::spawn(hold(conn, slot));
            return Ok(sender);
        };
        let stream = tls
            .connector
            .connect(tls.name.clone(), stream)
            .await
            .map_err(|source| UpstreamError::Tls { addr, source })?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(handshake)?;
        tokio::spawn(hold(conn, slot));
        Ok(sender)
    }
}

/// A node connection's task: drives `conn` until it closes, holding its
/// `max_connections` permit meanwhile.
async fn hold<F: std::future::Future>(conn: F, slot: Option<OwnedSemaphorePermit>) {
    let _slot = slot;
    let _ = conn.await;
}

/// What a request waiting under `max_connections` gets.
enum Slot {
    Idle(SendRequest<RequestBody>),
    Permit(OwnedSemaphorePermit),
}

/// A response body that returns its connection to the pool once read to
/// the end. Dropped early (the client went away), the connection is closed.
pub struct PooledBody {
    inner: Incoming,
    back: Option<Back>,
}

/// A connection on its way back to its pool.
struct Back {
    pool: Arc<NodePool>,
    sender: SendRequest<RequestBody>,
    /// The request had a body not yet sent whole when it went out.
    body_pending: bool,
}

impl Back {
    /// The response was read to the end: the connection is free once its
    /// request is sent whole too. A request body still coming waits, off
    /// the pool, at most `idle_timeout`; then the connection is closed,
    /// never handed to another request to wait behind it.
    fn response_done(self) {
        let Back {
            pool,
            mut sender,
            body_pending,
        } = self;
        // Ready now: the body went out whole (a login form's, long before
        // the answer), so no task need wait for it.
        if !body_pending || sender.is_ready() {
            pool.put_idle(sender);
            return;
        }
        let wait = pool.settings.idle_timeout;
        tokio::spawn(async move {
            if let Ok(Ok(())) = tokio::time::timeout(wait, sender.ready()).await {
                pool.put_idle(sender);
            }
        });
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        // hyper stops polling once `is_end_stream` is true, so the last data
        // frame may be the last call.
        let done = match &frame {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => self.inner.is_end_stream(),
            _ => false,
        };
        if done {
            if let Some(back) = self.back.take() {
                back.response_done();
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request was written and the connection ended before any response
/// byte: closed (a node that restarted, or closed a kept-alive connection
/// as the request arrived) or reset (a node that died under it).
fn no_response(e: &hyper::Error) -> bool {
    use std::io::ErrorKind;
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        return true;
    }
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| {
            matches!(
                io.kind(),
                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
            )
        })
}

/// Methods whose request, sent twice, has the effect of sending it once
/// (RFC 9110 §9.2.2); with no body, one the node did not answer may be
/// sent again.
fn idempotent(m: &http::Method) -> bool {
    use http::Method as M;
    [M::GET, M::HEAD, M::OPTIONS, M::TRACE, M::PUT, M::DELETE].contains(m)
}
