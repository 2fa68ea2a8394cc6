//! Responses on their way to a client. A client that stops taking a
//! response (a slow HTTP/1 reader, HTTP/2 flow control held at zero) keeps
//! the node connection its body streams from; past `limits.send_timeout`
//! without taking a frame, its connection is dropped, which frees them.
//! Each response body is [`Sending`]: every poll stamps its slot, and a
//! poll that waits on the node marks it as waiting (the node's slowness is
//! not the client's). The connection's watchdog asks [`Sends::stalled`].
//! Slots are reused, so a connection holds as many as it ever had
//! responses in flight at once.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Instant;

/// The last poll waited on the node: not stalled by the client.
const WAITING: u64 = u64::MAX;

/// The response bodies of one connection.
pub struct Sends {
    started: Instant,
    slots: Mutex<Vec<Arc<Slot>>>,
}

struct Slot {
    in_use: AtomicBool,
    /// Milliseconds from `started` to the last frame handed over, or
    /// [`WAITING`].
    last: AtomicU64,
}

/// A response body whose progress [`Sends`] watches.
pub struct Sending<B> {
    inner: B,
    slot: Option<Arc<Slot>>,
    started: Instant,
}

impl Sends {
    pub fn new() -> Sends {
        Sends {
            started: Instant::now(),
            slots: Mutex::new(Vec::new()),
        }
    }

    fn now_ms(started: Instant) -> u64 {
        u64::try_from(started.elapsed().as_millis()).unwrap_or(WAITING - 1)
    }

    /// Watches `body` from now on (a body that is already over is not).
    pub fn watch<B: Body>(&self, body: B) -> Sending<B> {
        let slot = (!body.is_end_stream()).then(|| {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Self::now_ms(self.started);
            let free = slots
                .iter()
                .find(|s| !s.in_use.swap(true, Ordering::AcqRel))
                .cloned();
            let slot = free.unwrap_or_else(|| {
                let s = Arc::new(Slot {
                    in_use: AtomicBool::new(true),
                    last: AtomicU64::new(now),
                });
                slots.push(s.clone());
                s
            });
            slot.last.store(now, Ordering::Relaxed);
            slot
        });
        Sending {
            inner: body,
            slot,
            started: self.started,
        }
    }

    /// The oldest stamp among the responses the client has not taken.
    fn oldest(&self) -> Option<u64> {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots
            .iter()
            .filter(|s| s.in_use.load(Ordering::Acquire))
            .map(|s| s.last.load(Ordering::Relaxed))
            .filter(|&l| l != WAITING)
            .min()
    }

    /// When to look again: when the oldest response will have stalled for
    /// `timeout`, or `timeout` from now.
    pub fn next_check(&self, timeout: Duration) -> Instant {
        match self.oldest() {
            Some(ms) => self.started + Duration::from_millis(ms) + timeout,
            None => Instant::now() + timeout,
        }
    }

    /// Whether a response is on its way (its body not all handed over).
    pub fn busy(&self) -> bool {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.iter().any(|s| s.in_use.load(Ordering::Acquire))
    }

    /// Whether a response has waited on the client for `timeout`.
    pub fn stalled(&self, timeout: Duration) -> bool {
        self.oldest()
            .is_some_and(|ms| Instant::now() >= self.started + Duration::from_millis(ms) + timeout)
    }
}

impl Default for Sends {
    fn default() -> Self {
        Sends::new()
    }
}

impl<B> Sending<B> {
    fn release(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.in_use.store(false, Ordering::Release);
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Sending<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        let over = matches!(frame, Poll::Ready(None) | Poll::Ready(Some(Err(_))))
            || self.inner.is_end_stream();
        if over {
            self.release();
        } else if let Some(slot) = &self.slot {
            let stamp = match frame {
                Poll::Pending => WAITING,
                Poll::Ready(_) => Sends::now_ms(self.started),
            };
            slot.last.store(stamp, Ordering::Relaxed);
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

impl<B> Drop for Sending<B> {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    /// A body whose node never sends anything.
    struct Silent;

    impl Body for Silent {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Pending
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_response_not_taken_stalls_one_taken_or_waiting_does_not() {
        let sends = Sends::new();
        let t = Duration::from_secs(30);
        assert!(!sends.stalled(t));
        // Taken to its end: released.
        let mut full = sends.watch(Full::new(Bytes::from_static(b"ok")));
        while full.frame().await.is_some() {}
        // Never polled: stalls after 30 s.
        let held = sends.watch(Full::new(Bytes::from_static(b"held")));
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(!sends.stalled(t));
        assert!(sends.next_check(t) > Instant::now());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(sends.stalled(t));
        drop(held);
        assert!(!sends.stalled(t));
        // Waiting on the node: not the client's stall.
        let mut waiting = sends.watch(Silent);
        let polled = tokio::time::timeout(Duration::from_millis(1), waiting.frame()).await;
        assert!(polled.is_err());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(!sends.stalled(t));
        // Slots are reused: never more than were in use at once.
        assert_eq!(sends.slots.lock().unwrap().len(), 1);
    }
}
