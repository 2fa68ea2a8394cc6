//! Memory the connections freed, handed back to the system after a burst.
//!
//! glibc's allocator returns freed memory to the system only from the top
//! of a heap: what a burst of connections freed below memory still in use
//! (a parked connection's 16 KiB of buffers, a closed connection's TLS
//! state, the handshakes' scratch) stays resident, so the process holds
//! its peak for as long as one connection from the burst lives. HAProxy
//! calls `malloc_trim` for the same reason when it releases its pools.
//!
//! Each connection counts what it frees ([`freed`]: parked, or ended); once
//! a second [`run`] looks at the count, and when at least [`BURST`]
//! connections have freed memory since the last trim and the last second
//! saw fewer than [`QUIET`] more (the burst is over: under steady churn
//! the memory is about to be used again), it trims, on a blocking thread
//! (glibc locks each arena while it walks it).
//!
//! This is the one place the crate calls `unsafe` code.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Connections that freed memory since the process started: the
/// allocator is the process's, so the count is too.
static FREED: AtomicUsize = AtomicUsize::new(0);

/// How many connections must have freed memory for a trim (about 4 MiB
/// of buffers at 16 KiB each).
const BURST: usize = 256;

/// Fewer than this many in the last second: the burst is over.
const QUIET: usize = 64;

const EVERY: Duration = Duration::from_secs(1);

/// A connection parked (its buffers freed) or ended.
pub(crate) fn freed() {
    FREED.fetch_add(1, Ordering::Relaxed);
}

/// Trims after each burst, for as long as the process serves.
pub async fn run() {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut trimmed = FREED.load(Ordering::Relaxed);
    let mut seen = trimmed;
    loop {
        tick.tick().await;
        let now = FREED.load(Ordering::Relaxed);
        if due(now - trimmed, now - seen) {
            let started = std::time::Instant::now();
            let released = tokio::task::spawn_blocking(release).await;
            tracing::debug!(
                connections = now - trimmed,
                released = matches!(released, Ok(true)),
                took_ms = started.elapsed().as_secs_f64() * 1e3,
                "freed memory handed back to the system"
            );
            trimmed = now;
        }
        seen = now;
    }
}

/// Whether to trim, with `pending` connections freed since the last trim,
/// `recent` of them in the last second.
fn due(pending: usize, recent: usize) -> bool {
    pending >= BURST && recent < QUIET
}

/// Asks glibc to give every arena's free pages back; true when it did.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn release() -> bool {
    // SAFETY: malloc_trim takes no pointer and touches only the
    // allocator's own free lists, under the allocator's own locks; it may
    // be called from any thread at any time.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Other allocators (musl's, jemalloc, macOS's) return free pages
/// themselves or have no such call.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_a_burst_is_over() {
        assert!(!due(BURST - 1, 0), "too few to be worth a trim");
        assert!(!due(BURST * 4, QUIET), "still churning");
        assert!(due(BURST, QUIET - 1));
        assert!(due(BURST * 40, 0));
    }

    /// A burst's buffers, freed below a live allocation, stay resident
    /// until the trim hands them back.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_trim_hands_back_what_a_burst_freed() {
        let resident = || {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
            line.split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<usize>()
                .unwrap()
        };
        // 4096 buffers of 16 KiB each (64 MiB) with a small live allocation
        // after each, as connections' buffers sit between their TLS states.
        let mut burst = Vec::new();
        let mut live = Vec::new();
        for i in 0..4096u32 {
            burst.push(vec![i as u8 | 1; 16 * 1024]);
            live.push(vec![i as u8; 64]);
        }
        drop(burst);
        let before = resident();
        release();
        let after = resident();
        assert!(
            before - after > 32 * 1024,
            "resident {before} KiB before the trim, {after} KiB after"
        );
        drop(live);
    }
}
