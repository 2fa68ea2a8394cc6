//! Connection caps (`limits.max_connections`, `max_connections_per_ip`):
//! the accept loop waits for room under the global cap; a connection from
//! an address already at its cap is refused. A slot is given back when its
//! guard drops. The per-address map holds only addresses with a connection
//! open, so it is as small as the number of connections.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

use super::client_key;

/// Open connections, in all and per client address.
#[derive(Debug, Default)]
pub struct Gate {
    open: AtomicUsize,
    freed: Notify,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection counted in the global total.
#[derive(Debug)]
pub struct ConnSlot(Arc<Gate>);

/// One connection counted for its client address.
#[derive(Debug)]
pub struct AddrSlot(Arc<Gate>, IpAddr);

impl Gate {
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate::default())
    }

    /// Waits until fewer than `max` connections are open, then takes a slot.
    pub async fn wait_for_slot(self: &Arc<Self>, max: impl Fn() -> usize) -> ConnSlot {
        loop {
            let freed = self.freed.notified();
            if self.open.load(Ordering::Acquire) < max() {
                self.open.fetch_add(1, Ordering::AcqRel);
                return ConnSlot(self.clone());
            }
            freed.await;
        }
    }

    /// A slot for one more connection from `ip`, if it has fewer than `max`.
    pub fn take_addr_slot(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<AddrSlot> {
        let key = client_key(ip);
        let mut map = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddrSlot(self.clone(), key))
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Addresses with a connection open now.
    pub fn addresses(&self) -> usize {
        self.per_ip
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify_one();
    }
}

impl Drop for AddrSlot {
    fn drop(&mut self) {
        let mut map = self.0.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn per_address_cap_and_release() {
        let gate = Gate::new();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let slots: Vec<_> = (0..3).map(|_| gate.take_addr_slot(a, 3)).collect();
        assert!(slots.iter().all(Option::is_some));
        assert!(gate.take_addr_slot(a, 3).is_none());
        // IPv6 addresses of one /64 share a count; another /64 does not.
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        let _b = gate.take_addr_slot(v6("2001:db8:1:2::1"), 1).unwrap();
        assert!(gate.take_addr_slot(v6("2001:db8:1:2:ffff::9"), 1).is_none());
        assert!(gate.take_addr_slot(v6("2001:db8:1:3::1"), 1).is_some());
        drop(slots);
        assert!(gate.take_addr_slot(a, 3).is_some());
        // Only addresses with an open connection are kept.
        assert_eq!(gate.addresses(), 1);
    }

    #[tokio::test]
    async fn wait_for_slot_waits_for_a_free_slot() {
        let gate = Gate::new();
        let first = gate.wait_for_slot(|| 1).await;
        assert_eq!(gate.open(), 1);
        let g = gate.clone();
        let waiter = tokio::spawn(async move { g.wait_for_slot(|| 1).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "took a slot over the cap");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(gate.open(), 1);
        drop(second);
        assert_eq!(gate.open(), 0);
    }
}
