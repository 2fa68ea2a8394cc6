//! The runtime `casfront run` serves on: current-thread on one core,
//! tokio's multi-thread runtime on more.
//!
//! On one core, tokio's multi-thread scheduler serves a saturated core
//! unfairly: 400 busy keep-alive connections and their node connections
//! make hundreds of tasks ready at each poll of the sockets; its per-thread
//! queue holds 256 and moves the *oldest* half to the shared queue, which
//! it looks at only every few dozen tasks while each poll refills the local
//! one, and its LIFO slot runs the task woken last first. Some requests
//! wait many rounds: at 400 connections on one core, p99 was 71 ms against
//! 37 ms with a current-thread runtime (first in, first out), for the same
//! throughput and 5% less CPU per request (docs/benchmarks.md).
//!
//! On more cores, one current-thread runtime per core, each accepting from
//! the listening socket, lost a request now and then across hot upgrades
//! under load (`tests/lifecycle.rs`, about one run in six); until that is
//! understood, more cores get the multi-thread runtime.

/// Tasks run between two polls of the sockets on the current-thread
/// runtime (tokio's default: 61). On a saturated core, fewer polls that
/// each bring more: at 400 connections, 0.87–0.89× the CPU per request of
/// 61 in paired runs; 500 did no better.
const EVENT_INTERVAL: u32 = 200;

/// The cores the process may run on: its CPU affinity (`taskset`,
/// systemd's `CPUAffinity=`) and its cgroup's CPU quota (rounded down).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The runtime for `casfront run` on `cores` cores.
pub fn build(cores: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if cores <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .event_interval(EVENT_INTERVAL)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .enable_all()
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_core_gets_the_first_in_first_out_runtime() {
        let one = build(1).unwrap();
        assert_eq!(
            one.handle().runtime_flavor(),
            tokio::runtime::RuntimeFlavor::CurrentThread
        );
        let two = build(2).unwrap();
        assert_eq!(
            two.handle().runtime_flavor(),
            tokio::runtime::RuntimeFlavor::MultiThread
        );
    }
}
