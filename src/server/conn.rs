//! One client connection's HTTP, after TLS: HTTP/1.1 or HTTP/2 with the
//! client-side limits of `[limits]`, driven until it ends, the server stops
//! (graceful, losing no request on its way: [`Requests`]), or, for HTTP/2, the connection idles past `idle_timeout`
//! (GOAWAY, then dropped if still open after `handshake_timeout`) or its
//! client cancels more than `h2_max_resets` streams before their answer
//! (rapid reset: each cancels a request to a node; dropped at once); on
//! both, a response that waits `send_timeout` on its client drops the
//! connection ([`super::sending`]). An idle HTTP/1 connection is parked
//! ([`super::park`]): hyper's buffers are dropped until its next request.
//! Generic over the byte stream so that the fuzz target can drive it from
//! memory.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::park::{Kept, Park, Rewind, PARK_AFTER};
use super::sending::{Sending, Sends};
use crate::access_log::{AccessLine, Logged};
use crate::client::ClientConn;
use crate::config::Limits;
use crate::current::Current;
use crate::metrics::{Metrics, Refusal};
use crate::pipeline::{self, ResponseBody};

/// Serves HTTP on `io` (HTTP/2 when `h2`, the ALPN result) until it ends;
/// `stop` turning true (or its sender going away) starts a graceful close.
pub async fn serve<I>(
    io: I,
    h2: bool,
    current: Arc<Current>,
    client: Arc<ClientConn>,
    limits: &Limits,
    stop: watch::Receiver<bool>,
) where
    I: Park,
{
    let metrics = current.metrics().clone();
    let streams = h2.then(|| Arc::new(Streams::new(limits.h2_max_resets)));
    let sends = Arc::new(Sends::new());
    let requests = Arc::new(Requests::new());
    let (counted, watched, begun) = (streams.clone(), sends.clone(), requests.clone());
    // Boxed, the request's future is allocated while it runs: hyper keeps
    // a slot of the service future's size per connection, idle or not.
    let svc = service_fn(move |req| {
        let (current, client) = (current.clone(), client.clone());
        let guard = counted.as_ref().map(|s| Streams::open(s.clone()));
        let sends = watched.clone();
        begun.begin();
        let requests = begun.clone();
        // Boxed: [`pipeline::handle`] says why.
        let req = Box::new(req);
        Box::pin(async move {
            let resp = respond(&current, req, &client).await;
            if let Some(mut g) = guard {
                g.answered = true;
            }
            requests.answered();
            Ok::<_, Infallible>(resp.map(|body| sends.watch(body)))
        })
    });
    match streams {
        // Boxed: an HTTP/2 connection's state is several times an HTTP/1
        // one's, and an unboxed branch would size every connection's task.
        Some(streams) => {
            let h2 = serve_h2(
                TokioIo::new(io),
                svc,
                streams,
                limits.clone(),
                stop,
                sends.clone(),
                requests,
            );
            let closed = Box::pin(h2).await;
            match closed {
                Closed::Resets => metrics.refused(Refusal::H2Resets),
                Closed::Stalled => metrics.refused(Refusal::SendTimeout),
                _ => {}
            }
        }
        None => {
            let h1 = serve_h1(io, svc, limits, (&requests, &sends, &metrics), stop);
            if h1.await == Closed::Stalled {
                metrics.refused(Refusal::SendTimeout);
            }
        }
    }
}

/// HTTP/1.1 until the connection ends, parked whenever it idles
/// ([`super::park`]); how it ended.
async fn serve_h1<I: Park, S>(
    io: I,
    svc: S,
    limits: &Limits,
    (requests, sends, metrics): (&Requests, &Sends, &Metrics),
    mut stop: watch::Receiver<bool>,
) -> Closed
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = Sending<Logged<ResponseBody>>>
        + Unpin,
    S::Future: Unpin,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Over it, hyper answers 431 and closes the connection.
        .max_buf_size(limits.max_header_bytes)
        // A client's end of input while its request is with a node does
        // not cancel it (HAProxy's default too): the node's answer is
        // written, then the connection closes. Otherwise hyper reads to
        // watch for that end with every request in flight, into a new
        // 8 KiB buffer since the request's headers still share the last.
        .half_close(true);
    let send = SendWatch {
        sends,
        timeout: limits.send_timeout,
    };
    let (mut io, mut svc) = (Rewind::new(io), svc);
    let mut resumed = None;
    let (io, closed) = loop {
        let mut conn = Kept(builder.serve_connection(TokioIo::new(io), svc));
        let closed = drive(
            Pin::new(&mut conn),
            &mut stop,
            requests,
            resumed,
            None,
            send,
        )
        .await;
        if matches!(closed, Closed::Stalled | Closed::Idle) {
            return closed;
        }
        let parts = conn.0.into_parts();
        let rest = parts.io.into_inner().rewound(parts.read_buf);
        if closed != Closed::Parked {
            break (rest, closed);
        }
        (io, svc) = (rest, parts.service);
        // hyper closes a connection idle past header_read_timeout: parked,
        // it waits for what is left of it, and its next request must have
        // begun by then (a new hyper connection would start the timeout
        // anew).
        let deadline = requests.last_active() + limits.header_read_timeout;
        metrics.client_connections_parked.inc();
        super::trim::freed();
        let again = io.wait(&mut stop, deadline).await;
        metrics.client_connections_parked.dec();
        if !again {
            break (io, Closed::Ended);
        }
        resumed = Some((requests.count(), deadline));
    };
    // hyper ended without closing the stream (to hand a parked one back):
    // close it, TLS close_notify first.
    let mut io = io;
    let _ = tokio::time::timeout(LINGER, io.shutdown()).await;
    closed
}

impl<I, S, B, E> Graceful for hyper::server::conn::http2::Connection<I, S, E>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http2::Connection::graceful_shutdown(self);
    }
}

/// A connection [`drive`] can close gracefully; one that `parks` is
/// parked after [`PARK_AFTER`] without a request in progress.
pub(super) trait Graceful: Future {
    fn graceful_shutdown(self: Pin<&mut Self>);
    fn parks(&self) -> bool {
        false
    }
}

async fn serve_h2<I, S>(
    io: TokioIo<I>,
    svc: S,
    streams: Arc<Streams>,
    limits: Limits,
    stop: watch::Receiver<bool>,
    sends: Arc<Sends>,
    requests: Arc<Requests>,
) -> Closed
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S::Future: Send + 'static,
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<Sending<Logged<ResponseBody>>>,
            Error = Infallible,
        > + Send
        + 'static,
{
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_streams)
        // A peer that stops answering PINGs is gone.
        .keep_alive_interval(limits.idle_timeout)
        .keep_alive_timeout(limits.handshake_timeout)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .serve_connection(io, svc);
    let watch = Watch {
        streams: &streams,
        idle: limits.idle_timeout,
        linger: limits.handshake_timeout,
    };
    let send = SendWatch {
        sends: &sends,
        timeout: limits.send_timeout,
    };
    let conn = std::pin::pin!(conn);
    let mut stop = stop;
    drive(conn, &mut stop, &requests, None, Some(watch), send).await
}

/// One request on the generation in force: the pipeline's response,
/// wrapped for the access log.
/// Not an `async fn`, which would keep `req` twice in every request's
/// future ([`pipeline::handle`] says why that matters).
fn respond<'a>(
    current: &'a Current,
    req: Box<http::Request<hyper::body::Incoming>>,
    client: &'a ClientConn,
) -> impl std::future::Future<Output = http::Response<Logged<ResponseBody>>> + 'a {
    let generation = current.generation();
    let line = generation
        .access_log()
        .then(|| AccessLine::start(generation.clone(), client.peer, &req));
    async move {
        let (resp, disposition) = pipeline::handle(&generation, current.state(), req, client).await;
        let status = resp.status().as_u16();
        resp.map(|body| Logged::new(body, line, status, disposition))
    }
}

/// Why a connection was closed by casfront rather than by its client.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Closed {
    /// It ended on its own (or the client closed it).
    Ended,
    Stopped,
    Idle,
    Resets,
    /// A response waited `send_timeout` on the client.
    Stalled,
    /// Idle, handed back to be parked ([`super::park`]).
    Parked,
}

/// What the send watchdog reads (both protocols).
#[derive(Copy, Clone)]
struct SendWatch<'a> {
    sends: &'a Sends,
    timeout: Duration,
}

/// What the HTTP/2 watchdog reads.
struct Watch<'a> {
    streams: &'a Streams,
    idle: Duration,
    /// How long a connection told to go away may take to do so.
    linger: Duration,
}

/// The requests a connection has begun, to close it when told to stop
/// without losing one: a connection accepted just before the stop (a
/// shutdown, an upgrade) has its first request served, whose client has
/// sent it or is sending it, if it comes within [`LINGER`]; an HTTP/1
/// connection kept alive between requests is closed after the answer to
/// its next request (which says `Connection: close`) or after [`LINGER`]
/// without one — closing it while idle would race a request already on its
/// way (HAProxy's `idle-close-on-response`). An HTTP/2 connection that has
/// begun a stream gets a GOAWAY at once (the protocol's own answer to that
/// race).
/// It also tells when the connection last answered a request (or began,
/// if it has answered none), and whether every request begun has been
/// answered (to park it).
struct Requests {
    begun: AtomicU64,
    answered: AtomicU64,
    /// When the last request was answered.
    last: Stamp,
    /// Someone waits for the next request (only once the server stops):
    /// until then a request pays no lock to wake nobody.
    watched: AtomicBool,
    notify: Notify,
}

/// How long an idle connection may take to send its next (or first)
/// request once the server is stopping.
pub(super) const LINGER: Duration = Duration::from_secs(2);

impl Requests {
    fn new() -> Requests {
        Requests {
            begun: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            last: Stamp::new(),
            watched: AtomicBool::new(false),
            notify: Notify::new(),
        }
    }

    fn last_active(&self) -> Instant {
        self.last.at()
    }

    /// The service has answered (its response may still be on its way).
    fn answered(&self) {
        self.answered.fetch_add(1, Ordering::Relaxed);
        self.last.now();
    }

    /// Every request begun has been answered.
    fn idle(&self) -> bool {
        self.answered.load(Ordering::Relaxed) == self.begun.load(Ordering::SeqCst)
    }

    fn begin(&self) {
        // SeqCst here and in `more_than`: either the waiter sees the new
        // count, or this sees the waiter.
        self.begun.fetch_add(1, Ordering::SeqCst);
        if self.watched.load(Ordering::SeqCst) {
            self.notify.notify_waiters();
        }
    }

    fn count(&self) -> u64 {
        self.begun.load(Ordering::SeqCst)
    }

    /// Until more than `seen` requests have begun.
    async fn more_than(&self, seen: u64) {
        self.watched.store(true, Ordering::SeqCst);
        loop {
            let notified = self.notify.notified();
            if self.count() > seen {
                return;
            }
            notified.await;
        }
    }
}

/// Drives `conn` to its end, closing it gracefully when told to (when no
/// request would be lost: [`Requests`]). An
/// HTTP/2 connection past `h2_max_resets` is dropped at once (a graceful
/// GOAWAY would let it open streams until it answers a PING); one closed
/// for idleness that is still open after `linger` (a client that never
/// sends its preface or never answers the GOAWAY's PING) is dropped too.
/// A connection that parks (HTTP/1) is handed back, [`Closed::Parked`],
/// once it has had every request answered and no response on its way for
/// [`PARK_AFTER`]. One `resumed` from the park after its `n`th request is
/// not parked again before its next request begins, and is dropped
/// ([`Closed::Idle`]) if that has not begun by the deadline.
async fn drive<C: Graceful>(
    mut conn: Pin<&mut C>,
    stop: &mut watch::Receiver<bool>,
    requests: &Requests,
    resumed: Option<(u64, Instant)>,
    watch: Option<Watch<'_>>,
    send: SendWatch<'_>,
) -> Closed {
    let mut why = Closed::Ended;
    // Not before: a request still in progress there put it off.
    let mut park_at = Instant::now() + PARK_AFTER;
    let mut drop_at = None;
    // Told to stop: closed once more than this many requests have begun
    // (HTTP/1: or at the deadline).
    let mut close_after: Option<(u64, Option<Instant>)> = None;
    loop {
        let open = why == Closed::Ended;
        let resets = async {
            match &watch {
                Some(w) => w.streams.reset_limit.notified().await,
                None => std::future::pending().await,
            }
        };
        let idle = async {
            match &watch {
                Some(w) => tokio::time::sleep_until(w.streams.idle_deadline(w.idle)).await,
                None => std::future::pending().await,
            }
        };
        let lingered = async {
            match drop_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let stall = tokio::time::sleep_until(send.sends.next_check(send.timeout));
        let parks = open && close_after.is_none() && conn.parks();
        let waiting = resumed.filter(|&(n, _)| requests.count() == n);
        let cut = async {
            match waiting {
                Some((_, at)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let park = tokio::time::sleep_until(park_at.max(requests.last_active() + PARK_AFTER));
        tokio::select! {
            _ = conn.as_mut() => return why,
            _ = lingered => return why,
            _ = stall => {
                if send.sends.stalled(send.timeout) {
                    return Closed::Stalled;
                }
                continue;
            }
            _ = stop.wait_for(|s| *s), if open => {
                why = Closed::Stopped;
                let begun = requests.count();
                // HTTP/2 with a stream begun: GOAWAY now. Otherwise wait
                // for the next request (HTTP/1) or the first (HTTP/2: an
                // idle preconnect answers PINGs forever), at most LINGER.
                close_after = match &watch {
                    Some(_) if begun > 0 => None,
                    _ => Some((begun, Some(Instant::now() + LINGER))),
                };
                if close_after.is_some() {
                    continue;
                }
            }
            () = next_request(requests, close_after), if close_after.is_some() => close_after = None,
            _ = resets, if open => return Closed::Resets,
            () = cut, if open => {
                if waiting.is_some_and(|(n, _)| requests.count() == n) {
                    return Closed::Idle;
                }
                continue;
            }
            _ = park, if parks => {
                // hyper is not being polled here: no request can begin
                // between this look and the shutdown, which hands back a
                // connection with a request half read (its bytes) as it
                // is, one whose answer is still being written after it.
                let held = resumed.is_some_and(|(n, _)| requests.count() <= n);
                if held || !requests.idle() || send.sends.busy() {
                    park_at = Instant::now() + PARK_AFTER;
                    continue;
                }
                why = Closed::Parked;
            }
            _ = idle, if open => {
                match &watch {
                    Some(w) if w.streams.idle_for(w.idle) => {
                        why = Closed::Idle;
                        drop_at = Some(Instant::now() + w.linger);
                    }
                    _ => continue,
                }
            }
        }
        conn.as_mut().graceful_shutdown();
    }
}

/// Until more than `seen` requests have begun, or the deadline.
async fn next_request(requests: &Requests, close_after: Option<(u64, Option<Instant>)>) {
    let Some((seen, deadline)) = close_after else {
        return std::future::pending().await;
    };
    let deadline = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = requests.more_than(seen) => {}
        () = deadline => {}
    }
}

/// An HTTP/2 connection's streams: how many are open, when one last
/// opened or closed, and how many the client cancelled before their answer.
struct Streams {
    open: AtomicU32,
    resets: AtomicU32,
    max_resets: u32,
    /// When a stream last opened or closed.
    last: Stamp,
    reset_limit: Notify,
}

/// One stream in flight; dropped unanswered, it counts as a reset.
struct StreamGuard {
    streams: Arc<Streams>,
    answered: bool,
}

impl Streams {
    fn new(max_resets: u32) -> Streams {
        Streams {
            open: AtomicU32::new(0),
            resets: AtomicU32::new(0),
            max_resets,
            last: Stamp::new(),
            reset_limit: Notify::new(),
        }
    }

    fn open(streams: Arc<Streams>) -> StreamGuard {
        streams.open.fetch_add(1, Ordering::Relaxed);
        streams.last.now();
        StreamGuard {
            streams,
            answered: false,
        }
    }

    /// When the connection will have idled for `idle`, as things stand.
    fn idle_deadline(&self, idle: Duration) -> Instant {
        if self.open.load(Ordering::Relaxed) > 0 {
            return Instant::now() + idle;
        }
        self.last.at() + idle
    }

    fn idle_for(&self, idle: Duration) -> bool {
        self.open.load(Ordering::Relaxed) == 0 && Instant::now() >= self.idle_deadline(idle)
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let s = &self.streams;
        s.open.fetch_sub(1, Ordering::Relaxed);
        s.last.now();
        if !self.answered && s.resets.fetch_add(1, Ordering::Relaxed) + 1 > s.max_resets {
            s.reset_limit.notify_one();
        }
    }
}

/// A moment kept in an atomic: milliseconds since the stamp was made.
struct Stamp {
    started: Instant,
    ms: AtomicU64,
}

impl Stamp {
    fn new() -> Stamp {
        Stamp {
            started: Instant::now(),
            ms: AtomicU64::new(0),
        }
    }

    fn now(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.ms.store(ms, Ordering::Relaxed);
    }

    fn at(&self) -> Instant {
        self.started + Duration::from_millis(self.ms.load(Ordering::Relaxed))
    }
}
