//! Active health checks: per node, `GET` of the pool's health `path` on a
//! new connection every `interval` (±10% jitter, so that nodes are not
//! checked in lock step), each within `timeout`; a 2xx or 3xx status
//! passes. At start-up one round runs on every node at once before the
//! listener opens, bounded by the longest `timeout`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::HeaderValue;
use rand::Rng;
use tokio::task::JoinSet;

use super::HealthTable;
use crate::config::Config;
use crate::routing::NodeId;
use crate::upstream::NodePool;

/// What to check on one node.
#[derive(Clone, Debug)]
pub struct Target {
    pub node: NodeId,
    pub path: PathAndQuery,
    /// The pool's `host_override`, else the node's `host:port`.
    pub host: HeaderValue,
    pub interval: Duration,
    pub timeout: Duration,
}

/// Every node's check, in node order.
pub fn targets(config: &Config) -> Vec<Target> {
    (0..=NodeId::MAX)
        .zip(config.nodes())
        .map(|(node_id, (pool, node))| {
            let host = pool
                .host_override
                .clone()
                .unwrap_or_else(|| node.url.authority());
            Target {
                node: node_id,
                // Validated (starts with `/`) when the configuration was read.
                path: PathAndQuery::try_from(pool.health.path.as_str())
                    .unwrap_or_else(|_| PathAndQuery::from_static("/")),
                host: HeaderValue::from_str(&host)
                    .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
                interval: pool.health.interval,
                timeout: pool.health.timeout,
            }
        })
        .collect()
}

/// A passing status.
pub fn passes(status: Option<http::StatusCode>) -> bool {
    status.is_some_and(|s| s.is_success() || s.is_redirection())
}

async fn check(pool: Option<&NodePool>, t: &Target) -> bool {
    match pool {
        Some(pool) => passes(pool.probe(&t.path, &t.host, t.timeout).await),
        None => false,
    }
}

/// The pool of `node` among `pools` (in node order).
fn pool_of(pools: &[Arc<NodePool>], node: NodeId) -> Option<Arc<NodePool>> {
    pools.get(usize::from(node)).cloned()
}

/// Runs the checks until dropped.
pub struct Checker {
    tasks: JoinSet<()>,
}

/// One check of each of `targets` on its node's pool (`pools`, in node
/// order), all at once, bounded by their `timeout`: `(node, passed)`.
pub async fn first_round<'t>(
    pools: &[Arc<NodePool>],
    targets: impl IntoIterator<Item = &'t Target>,
) -> Vec<(NodeId, bool)> {
    let mut first = JoinSet::new();
    for t in targets {
        let (pool, t) = (pool_of(pools, t.node), t.clone());
        first.spawn(async move { (t.node, check(pool.as_deref(), &t).await) });
    }
    let mut out = Vec::new();
    while let Some(r) = first.join_next().await {
        out.extend(r.ok());
    }
    out
}

impl Checker {
    /// The start-up round on every node not checked yet (see
    /// [`first_round`]), then a task per node probing its pool (`pools`,
    /// in node order) and recording into `health`.
    pub async fn start(
        pools: &[Arc<NodePool>],
        health: Arc<HealthTable>,
        targets: Vec<Target>,
    ) -> Checker {
        let unchecked = targets.iter().filter(|t| !health.was_checked(t.node));
        for (node, ok) in first_round(pools, unchecked).await {
            health.record(node, ok, true);
        }
        let mut tasks = JoinSet::new();
        for t in targets {
            let health = health.clone();
            let (node, interval) = (t.node, t.interval);
            let pool = pool_of(pools, node);
            let probe = move || {
                let (pool, t) = (pool.clone(), t.clone());
                async move { check(pool.as_deref(), &t).await }
            };
            tasks.spawn(async move { run(&health, node, interval, probe).await });
        }
        Checker { tasks }
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// Checks `node` every `interval` (jittered) forever, recording each result.
pub async fn run<F, Fut>(health: &HealthTable, node: NodeId, interval: Duration, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    loop {
        let jitter = rand::rng().random_range(0.9..1.1);
        tokio::time::sleep(interval.mul_f64(jitter)).await;
        let ok = probe().await;
        health.record(node, ok, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::NodeSettings;
    use crate::routing::{NodeState, NodeStates};

    /// With time paused: a node that starts failing is down after `fall`
    /// failed checks, `fall` jittered intervals later, and up again after
    /// `rise` passing ones.
    #[tokio::test(start_paused = true)]
    async fn fall_and_rise_take_their_checks() {
        let health = Arc::new(HealthTable::new(&[NodeSettings {
            rise: 2,
            fall: 3,
            cooldown: Duration::ZERO,
        }]));
        health.record(0, true, true);
        let script = [true, false, false, false, true, true];
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let h = health.clone();
        let task = tokio::spawn(async move {
            let mut n = 0;
            let probe = move || {
                let ok = script.get(n).copied().unwrap_or(true);
                n += 1;
                let _ = tx.send(tokio::time::Instant::now());
                async move { ok }
            };
            run(&h, 0, Duration::from_secs(2), probe).await;
        });
        let start = tokio::time::Instant::now();
        let mut states = Vec::new();
        let mut times = Vec::new();
        for _ in 0..script.len() {
            times.push(rx.recv().await.unwrap() - start);
            // Let the checker record the result.
            tokio::time::sleep(Duration::from_millis(1)).await;
            states.push(health.state(0));
        }
        use NodeState::{Down, Healthy};
        assert_eq!(states, [Healthy, Healthy, Healthy, Down, Down, Healthy]);
        // The third failure comes three intervals after the first pass,
        // each 2 s ± 10%.
        let fell = times[3] - times[0];
        assert!(
            fell >= Duration::from_millis(5400) && fell <= Duration::from_millis(6600),
            "{fell:?}"
        );
        task.abort();
    }

    #[test]
    fn statuses_that_pass() {
        use http::StatusCode;
        assert!(passes(Some(StatusCode::OK)));
        assert!(passes(Some(StatusCode::FOUND)));
        assert!(!passes(Some(StatusCode::SERVICE_UNAVAILABLE)));
        assert!(!passes(Some(StatusCode::NOT_FOUND)));
        assert!(!passes(None));
    }
}
