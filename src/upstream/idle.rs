//! A node's idle connections ([`super::NodePool`]): the idle
//! ones, most recently used first, and the requests waiting for one while
//! the node is at `max_connections`. A connection coming back goes to the
//! longest waiting request first, so that waiting requests are served in
//! the order they came and a newcomer never takes a connection from them.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;
use tokio::sync::oneshot;

use super::body::RequestBody;

type Sender = SendRequest<RequestBody>;

struct Idle {
    sender: Sender,
    since: Instant,
}

#[derive(Default)]
struct Inner {
    idle: Vec<Idle>,
    waiting: VecDeque<oneshot::Sender<Sender>>,
}

/// What [`IdleQueue::take_or_wait`] gives.
pub enum Taken {
    Now(Sender),
    /// Handed over when one comes back.
    Later(oneshot::Receiver<Sender>),
}

#[derive(Default)]
pub struct IdleQueue {
    inner: Mutex<Inner>,
}

impl IdleQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The most recently used idle connection that is still open and
    /// younger than `max_age`; older ones are dropped (closing them).
    pub fn take(&self, max_age: Duration) -> Option<Sender> {
        pop_usable(&mut self.lock().idle, max_age)
    }

    /// An idle connection, else a place in the line of waiting requests
    /// (at its head when `first`: a request whose handed-over connection
    /// turned out closed keeps its turn).
    pub fn take_or_wait(&self, max_age: Duration, first: bool) -> Taken {
        let mut inner = self.lock();
        if let Some(sender) = pop_usable(&mut inner.idle, max_age) {
            return Taken::Now(sender);
        }
        // Requests that stopped waiting (timed out, client gone).
        inner.waiting.retain(|w| !w.is_closed());
        let (tx, rx) = oneshot::channel();
        if first {
            inner.waiting.push_front(tx);
        } else {
            inner.waiting.push_back(tx);
        }
        Taken::Later(rx)
    }

    /// A connection free again: to the longest waiting request, else idle
    /// (dropped, closing it, past `max_idle`).
    pub fn put(&self, mut sender: Sender, max_idle: usize) {
        let mut inner = self.lock();
        while let Some(waiter) = inner.waiting.pop_front() {
            match waiter.send(sender) {
                Ok(()) => return,
                Err(back) => sender = back,
            }
        }
        if inner.idle.len() < max_idle {
            inner.idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    pub fn idle_count(&self) -> usize {
        self.lock().idle.len()
    }
}

fn pop_usable(idle: &mut Vec<Idle>, max_age: Duration) -> Option<Sender> {
    while let Some(i) = idle.pop() {
        if i.since.elapsed() < max_age && !i.sender.is_closed() {
            return Some(i.sender);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client connection over an in-memory pipe: open while its task runs.
    async fn conn() -> Sender {
        let (ours, theirs) = tokio::io::duplex(64);
        let io = hyper_util::rt::TokioIo::new(ours);
        let Ok((sender, conn)) = hyper::client::conn::http1::handshake(io).await else {
            panic!("handshake over a pipe");
        };
        tokio::spawn(async move {
            let _pipe = theirs;
            let _ = conn.await;
        });
        sender
    }

    fn later(t: Taken) -> oneshot::Receiver<Sender> {
        match t {
            Taken::Later(rx) => rx,
            Taken::Now(_) => panic!("nothing idle, so it waits"),
        }
    }

    #[tokio::test]
    async fn returned_connections_go_to_waiting_requests_in_order() {
        let idle = IdleQueue::default();
        let age = Duration::from_secs(60);
        let mut a = later(idle.take_or_wait(age, false));
        let mut b = later(idle.take_or_wait(age, false));
        // Handed a closed connection: back at the head of the line.
        let mut again = later(idle.take_or_wait(age, true));
        idle.put(conn().await, 8);
        assert!(again.try_recv().is_ok());
        assert!(a.try_recv().is_err() && b.try_recv().is_err());
        idle.put(conn().await, 8);
        assert!(a.try_recv().is_ok());
        // One that stopped waiting is skipped.
        drop(b);
        idle.put(conn().await, 8);
        assert_eq!(idle.idle_count(), 1);
        assert!(matches!(idle.take_or_wait(age, false), Taken::Now(_)));
        // Past max_idle a connection is dropped.
        idle.put(conn().await, 0);
        assert_eq!(idle.idle_count(), 0);
    }
}
