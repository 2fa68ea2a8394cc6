//! The access log and the process's log output. One line per request
//! (`[log] access`), written when its response body ends or is abandoned,
//! so that bytes and duration cover the whole response: client address,
//! method, target with credentials redacted ([`redact::target`]), status,
//! bytes, duration, pool, node, rule, how the node was found and the first
//! fall-through cause. Lines are `tracing` events (target
//! `casfront::access`) written by a background thread
//! (`tracing-appender`), text or JSON: a slow stdout never holds up a
//! request.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::config::{Log, LogFormat};
use crate::generation::Generation;
use crate::pipeline::Disposition;
use crate::routing::redact;

/// One request's line, filled as the request goes.
pub struct AccessLine {
    start: Instant,
    client: SocketAddr,
    method: http::Method,
    /// A shared buffer: kept without a copy, redacted only when written.
    target: Option<http::uri::PathAndQuery>,
    status: u16,
    disposition: Disposition,
    bytes: u64,
    complete: bool,
    /// The generation that served it: its pools' and nodes' names.
    generation: Arc<Generation>,
}

/// Written when dropped: at the end of the response body, or (status 0)
/// when the client left before the response headers.
impl Drop for AccessLine {
    fn drop(&mut self) {
        self.write();
    }
}

impl AccessLine {
    /// Starts a line for a request as received.
    pub fn start(
        generation: Arc<Generation>,
        client: SocketAddr,
        req: &http::Request<impl Sized>,
    ) -> AccessLine {
        AccessLine {
            start: Instant::now(),
            client,
            method: req.method().clone(),
            target: req.uri().path_and_query().cloned(),
            status: 0,
            disposition: Disposition::default(),
            bytes: 0,
            complete: false,
            generation,
        }
    }

    fn write(&self) {
        let table = self.generation.table();
        let pool = self.disposition.pool.and_then(|p| table.pool(p));
        let node = self.disposition.node.and_then(|n| table.node(n));
        tracing::info!(
            target: "casfront::access",
            client = %self.client,
            method = %self.method,
            path = %redact::target(self.target.as_ref().map_or("/", |p| p.as_str()), pool),
            status = self.status,
            bytes = self.bytes,
            ms = (self.start.elapsed().as_secs_f64() * 1e6).round() / 1000.0,
            complete = self.complete,
            pool = pool.map_or("-", |p| p.name.as_str()),
            node = node.map_or("-", |n| n.name.as_str()),
            rule = self.disposition.rule.map_or("-", |r| r.as_str()),
            how = self.disposition.how.map_or("-", |h| h.as_str()),
            cause = self.disposition.cause.map_or("-", |c| c.as_str()),
        );
    }
}

/// A response body that counts its bytes; its line is written
/// when the body is done (or dropped unfinished: `complete=false`).
pub struct Logged<B> {
    inner: B,
    line: Option<Box<AccessLine>>,
}

impl<B: Body> Logged<B> {
    /// Without a line (access log off), a plain pass-through.
    pub fn new(
        inner: B,
        line: Option<AccessLine>,
        status: u16,
        disposition: Disposition,
    ) -> Logged<B> {
        let line = line.map(|mut e| {
            e.status = status;
            e.disposition = disposition;
            // HEAD, 204, 304: a body nobody will poll.
            e.complete = inner.is_end_stream();
            Box::new(e)
        });
        Logged { inner, line }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Logged<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let Some(e) = self.line.as_deref_mut() {
            match &frame {
                Poll::Ready(Some(Ok(f))) => {
                    if let Some(d) = f.data_ref() {
                        e.bytes += d.len() as u64;
                    }
                }
                Poll::Ready(None) => e.complete = true,
                _ => {}
            }
        }
        if self.inner.is_end_stream() {
            if let Some(e) = self.line.as_deref_mut() {
                e.complete = true;
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

/// Installs the process's log output on stdout as `[log]` says. Keep the
/// guard: dropping it flushes and stops the writer thread.
pub fn init(log: &Log) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    // 16,384 lines waiting for stdout (half a second of access lines at
    // 30,000 requests/s; more are dropped, never waited for). The default,
    // 128,000, keeps 4 MiB resident from the start.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(16_384)
        .finish(std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_max_level(log.level)
        .with_ansi(false);
    let installed = match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.ok().map(|()| guard)
}
