//! Idle HTTP/1 keep-alive connections, parked: once a connection has had
//! no request in progress for [`PARK_AFTER`], [`super::conn`] takes it
//! back from hyper without closing it and drops hyper's read and write
//! buffers (16 KiB, most of what an idle connection holds), as HAProxy and
//! nginx free a connection's buffers between requests. When the client
//! sends again, a new hyper connection takes over, with any bytes hyper
//! had read already put back in front ([`Rewind`]). Nothing is sent to the
//! client: to it, the connection was kept alive all along.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::conn::Graceful;

/// How long a connection idles before it is parked. A client that sends
/// its requests back to back never is.
pub const PARK_AFTER: Duration = Duration::from_secs(1);

/// A client byte stream that can wait, parked, for its next request.
pub trait Park: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Bytes are there to read already (decrypted, or in a buffer).
    fn buffered(&self) -> bool;
    /// Until the client sends something, or closes.
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_;
}

impl Park for Box<tokio_rustls::server::TlsStream<TcpStream>> {
    fn buffered(&self) -> bool {
        // rustls wants to read only when it holds no plaintext.
        !self.get_ref().1.wants_read()
    }

    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        self.get_ref().0.readable()
    }
}

/// In memory (the fuzz target): always ready, so never waits parked.
impl Park for tokio::io::DuplexStream {
    fn buffered(&self) -> bool {
        true
    }

    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        std::future::ready(Ok(()))
    }
}

/// A stream with bytes already read from it put back in front.
pub struct Rewind<I> {
    prefix: Bytes,
    io: I,
}

impl<I> Rewind<I> {
    pub fn new(io: I) -> Rewind<I> {
        Rewind::with(io, Bytes::new())
    }

    pub fn with(io: I, prefix: Bytes) -> Rewind<I> {
        Rewind { prefix, io }
    }

    /// The same with `read` (read from it, not used) put back in front.
    pub fn rewound(self, read: Bytes) -> Rewind<I> {
        let prefix = match (read.is_empty(), self.prefix.is_empty()) {
            (true, _) => self.prefix,
            (false, true) => read,
            (false, false) => [read, self.prefix].concat().into(),
        };
        Rewind::with(self.io, prefix)
    }
}

impl<I: Park> Rewind<I> {
    /// Waits, parked, for the client's next request: true when it comes
    /// (or the client closes, which hyper then reads as the end), false
    /// at `deadline` without one, or [`super::conn::LINGER`] after the
    /// server stops.
    pub async fn wait(&self, stop: &mut watch::Receiver<bool>, deadline: Instant) -> bool {
        if !self.prefix.is_empty() || self.io.buffered() {
            return true;
        }
        let idle = tokio::time::sleep_until(deadline);
        tokio::pin!(idle);
        let stopping = stop.wait_for(|s| *s);
        tokio::select! {
            ready = self.io.readable() => return ready.is_ok(),
            _ = &mut idle => return false,
            // A stop (or the server gone): a request on its way is still
            // served, if it comes soon.
            _ = stopping => {}
        }
        tokio::select! {
            ready = self.io.readable() => ready.is_ok(),
            () = tokio::time::sleep(super::conn::LINGER) => false,
            () = &mut idle => false,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// An HTTP/1 connection that does not close its stream when it ends, so
/// that a parked one can be taken back ([`Closed::Parked`]).
pub(super) struct Kept<C>(pub(super) C);

impl<I, S, B> Future for Kept<hyper::server::conn::http1::Connection<I, S>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B> + Unpin,
    S::Future: Unpin,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = hyper::Result<()>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.0.poll_without_shutdown(cx)
    }
}

impl<I, S, B> Graceful for Kept<hyper::server::conn::http1::Connection<I, S>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B> + Unpin,
    S::Future: Unpin,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(mut self: Pin<&mut Self>) {
        Pin::new(&mut self.0).graceful_shutdown();
    }

    fn parks(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_put_back_come_first() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b" HTTP/1.1\r\n").await.unwrap();
        drop(a);
        let mut r = Rewind::with(b, Bytes::from_static(b"GET /"));
        let mut all = String::new();
        r.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "GET / HTTP/1.1\r\n");
    }
}
