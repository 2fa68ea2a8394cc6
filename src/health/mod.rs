//! Node health as the routing core reads it ([`NodeStates`]): the result
//! of active checks (a rise/fall [`Threshold`] per node), passive marks
//! from the data plane (a failed connection takes a node out at once, for
//! at least its pool's `down_cooldown`), and an operator's mode (drain,
//! disable). Reading a state is a few relaxed atomic loads. The checker
//! tasks are in [`check`].

pub mod check;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::routing::{NodeId, NodeState, NodeStates};

/// Consecutive check results needed to change a node's state: `fall`
/// failures take an up node down, `rise` successes bring a down node up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Threshold {
    rise: u32,
    fall: u32,
    up: bool,
    streak: u32,
}

impl Threshold {
    pub fn new(rise: u32, fall: u32, up: bool) -> Threshold {
        Threshold {
            rise: rise.max(1),
            fall: fall.max(1),
            up,
            streak: 0,
        }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Records one check; returns the new state when it changed.
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        if ok == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let need = if self.up { self.fall } else { self.rise };
        if self.streak < need {
            return None;
        }
        self.up = ok;
        self.streak = 0;
        Some(ok)
    }

    /// Down now (a failed connection); `rise` successes bring it back.
    pub fn force(&mut self, up: bool) {
        self.up = up;
        self.streak = 0;
    }
}

/// What an operator set for a node.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Mode {
    Enabled = 0,
    /// Keeps its tickets and sessions, takes no new logins.
    Draining = 1,
    /// Receives nothing.
    Disabled = 2,
}

struct Node {
    settings: NodeSettings,
    /// The active checks' verdict (true when no checks run).
    up: AtomicBool,
    threshold: Mutex<Threshold>,
    /// Milliseconds since `base` until which a passive failure keeps it out.
    down_until: AtomicU64,
    mode: AtomicU8,
    /// Milliseconds since `base` of the last check (0: none yet) and of the
    /// last change of `up`.
    last_check: AtomicU64,
    since: AtomicU64,
}

/// Every node's health, indexed by [`NodeId`]. A reload shares the
/// state of the nodes it keeps with the configuration it replaces, so that
/// the old configuration's requests still in flight mark the same nodes.
pub struct HealthTable {
    base: Instant,
    nodes: Vec<Arc<Node>>,
    /// Whether active checks run: without them, a passively failed node
    /// comes back after its cool-down alone.
    checked: AtomicBool,
}

/// Per node, what health needs from the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSettings {
    pub rise: u32,
    pub fall: u32,
    pub cooldown: Duration,
}

impl HealthTable {
    pub fn new(nodes: &[NodeSettings]) -> HealthTable {
        HealthTable {
            base: Instant::now(),
            nodes: nodes
                .iter()
                .map(|s| Arc::new(Node::new(s.clone(), true, 0)))
                .collect(),
            checked: AtomicBool::new(false),
        }
    }

    /// The health of a reloaded configuration: node `i` is the node
    /// `origin[i]` of `old` (same pool, name and URL) and keeps its state,
    /// shared when its settings are unchanged; a new node starts down until
    /// a check passes (or, without checks, up).
    pub fn reloaded(
        nodes: &[NodeSettings],
        old: &HealthTable,
        origin: &[Option<NodeId>],
    ) -> HealthTable {
        let checked = old.checked.load(Ordering::Relaxed);
        let now = old.now_ms();
        let nodes = nodes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let was = origin
                    .get(i)
                    .copied()
                    .flatten()
                    .and_then(|o| old.nodes.get(usize::from(o)));
                match was {
                    Some(n) if n.settings == *s => n.clone(),
                    Some(n) => {
                        let up = n.up.load(Ordering::Relaxed);
                        let fresh = Node::new(s.clone(), up, n.since.load(Ordering::Relaxed));
                        for (to, from) in [
                            (&fresh.down_until, &n.down_until),
                            (&fresh.last_check, &n.last_check),
                        ] {
                            to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
                        }
                        fresh
                            .mode
                            .store(n.mode.load(Ordering::Relaxed), Ordering::Relaxed);
                        Arc::new(fresh)
                    }
                    None => Arc::new(Node::new(s.clone(), !checked, now)),
                }
            })
            .collect();
        HealthTable {
            base: old.base,
            nodes,
            checked: AtomicBool::new(checked),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn node(&self, node: NodeId) -> Option<&Node> {
        self.nodes.get(usize::from(node)).map(|n| &**n)
    }

    /// Whether `node` has been checked at least once.
    pub fn was_checked(&self, node: NodeId) -> bool {
        self.node(node)
            .is_some_and(|n| n.last_check.load(Ordering::Relaxed) > 0)
    }

    /// A connection to `node` failed: out at once; back when `rise` checks
    /// pass (when checks run), else when its cool-down ends.
    pub fn mark_down(&self, node: NodeId) {
        let Some(n) = self.node(node) else { return };
        let cooldown = u64::try_from(n.settings.cooldown.as_millis()).unwrap_or(u64::MAX);
        n.down_until
            .store(self.now_ms().saturating_add(cooldown), Ordering::Relaxed);
        if self.checked.load(Ordering::Relaxed) {
            lock(&n.threshold).force(false);
            self.set_up(n, false);
        }
    }

    /// Records an active check of `node`. `first`: the start-up round,
    /// which sets the state from one result.
    pub fn record(&self, node: NodeId, ok: bool, first: bool) {
        let Some(n) = self.node(node) else { return };
        self.checked.store(true, Ordering::Relaxed);
        n.last_check.store(self.now_ms(), Ordering::Relaxed);
        let mut t = lock(&n.threshold);
        let up = if first {
            t.force(ok);
            Some(ok)
        } else {
            t.record(ok)
        };
        if let Some(up) = up {
            // Back after `rise` passing checks, whatever passive mark it
            // carries: a node restarted during a rollout serves again as
            // soon as its checks say so, not `down_cooldown` later.
            if up {
                n.down_until.store(0, Ordering::Relaxed);
            }
            self.set_up(n, up);
        }
    }

    fn set_up(&self, n: &Node, up: bool) {
        if n.up.swap(up, Ordering::Relaxed) != up {
            n.since.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// Sets an operator's mode; false for an unknown node.
    pub fn set_mode(&self, node: NodeId, mode: Mode) -> bool {
        let Some(n) = self.node(node) else {
            return false;
        };
        if n.mode.swap(mode as u8, Ordering::Relaxed) != mode as u8 {
            n.since.store(self.now_ms(), Ordering::Relaxed);
        }
        true
    }

    /// The operator's mode of `node`.
    pub fn mode(&self, node: NodeId) -> Mode {
        match self.node(node).map(|n| n.mode.load(Ordering::Relaxed)) {
            Some(1) => Mode::Draining,
            Some(2) => Mode::Disabled,
            _ => Mode::Enabled,
        }
    }

    /// How long ago `node` was last checked and last changed state.
    pub fn times(&self, node: NodeId) -> (Option<Duration>, Duration) {
        let now = self.now_ms();
        let ago = |ms: u64| Duration::from_millis(now.saturating_sub(ms));
        match self.node(node) {
            Some(n) => {
                let last = n.last_check.load(Ordering::Relaxed);
                (
                    (last > 0).then(|| ago(last)),
                    ago(n.since.load(Ordering::Relaxed)),
                )
            }
            None => (None, Duration::ZERO),
        }
    }
}

impl NodeStates for HealthTable {
    fn state(&self, node: NodeId) -> NodeState {
        let Some(n) = self.node(node) else {
            return NodeState::Down;
        };
        match n.mode.load(Ordering::Relaxed) {
            2 => return NodeState::Disabled,
            _ if !n.up.load(Ordering::Relaxed) => return NodeState::Down,
            _ => {}
        }
        let until = n.down_until.load(Ordering::Relaxed);
        if until > 0 && until > self.now_ms() {
            return NodeState::Down;
        }
        if n.mode.load(Ordering::Relaxed) == Mode::Draining as u8 {
            NodeState::Draining
        } else {
            NodeState::Healthy
        }
    }
}

impl Node {
    fn new(settings: NodeSettings, up: bool, since: u64) -> Node {
        Node {
            threshold: Mutex::new(Threshold::new(settings.rise, settings.fall, up)),
            settings,
            up: AtomicBool::new(up),
            down_until: AtomicU64::new(0),
            mode: AtomicU8::new(Mode::Enabled as u8),
            last_check: AtomicU64::new(0),
            since: AtomicU64::new(since),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fall_then_rise() {
        let mut t = Threshold::new(2, 3, true);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        // A success in between starts the count again.
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(false));
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(true));
        assert!(t.is_up());
    }

    fn health(cooldown_ms: u64) -> HealthTable {
        HealthTable::new(&[NodeSettings {
            rise: 2,
            fall: 2,
            cooldown: Duration::from_millis(cooldown_ms),
        }])
    }

    #[test]
    fn without_checks_a_passive_failure_lasts_the_cooldown() {
        let h = health(30);
        h.mark_down(0);
        assert_eq!(h.state(0), NodeState::Down);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(h.state(0), NodeState::Healthy);
    }

    /// With checks, `rise` passing checks bring a node back before a long
    /// cool-down ends (a node restarted in a rollout).
    #[test]
    fn with_checks_a_node_is_back_when_rise_checks_pass_not_after_the_cooldown() {
        let h = health(3_600_000);
        h.record(0, true, true);
        h.mark_down(0);
        h.record(0, true, false);
        assert_eq!(h.state(0), NodeState::Down, "one pass of rise 2");
        h.record(0, true, false);
        assert_eq!(h.state(0), NodeState::Healthy);
    }

    #[test]
    fn with_checks_a_passive_failure_lasts_until_rise_checks_pass() {
        let h = health(0);
        h.record(0, true, true);
        h.mark_down(0);
        assert_eq!(h.state(0), NodeState::Down);
        h.record(0, true, false);
        assert_eq!(h.state(0), NodeState::Down);
        h.record(0, true, false);
        assert_eq!(h.state(0), NodeState::Healthy);
    }

    #[test]
    fn the_first_round_decides_alone_and_modes_apply() {
        let h = health(0);
        h.record(0, false, true);
        assert_eq!(h.state(0), NodeState::Down);
        h.record(0, true, false);
        h.record(0, true, false);
        assert_eq!(h.state(0), NodeState::Healthy);
        assert!(h.set_mode(0, Mode::Draining));
        assert_eq!(h.state(0), NodeState::Draining);
        assert!(h.set_mode(0, Mode::Disabled));
        assert_eq!(h.state(0), NodeState::Disabled);
        assert!(!h.set_mode(7, Mode::Enabled));
        assert_eq!(h.state(7), NodeState::Down);
    }

    #[test]
    fn a_reload_keeps_known_nodes_and_adds_new_ones_down() {
        let s = |rise| NodeSettings {
            rise,
            fall: 2,
            cooldown: Duration::ZERO,
        };
        let old = HealthTable::new(&[s(2), s(2), s(2)]);
        for n in 0..3 {
            old.record(n, true, true);
        }
        old.set_mode(0, Mode::Draining);
        old.record(2, false, true);
        // New order: old node 2 (same settings), a new node, old node 0
        // with another `rise`.
        let new = HealthTable::reloaded(&[s(2), s(2), s(5)], &old, &[Some(2), None, Some(0)]);
        assert_eq!(new.state(0), NodeState::Down);
        assert_eq!(
            new.state(1),
            NodeState::Down,
            "a new node waits for a check"
        );
        assert!(!new.was_checked(1));
        assert_eq!(new.state(2), NodeState::Draining);
        // Shared: the old configuration's requests still mark the same node.
        old.record(2, true, false);
        old.record(2, true, false);
        assert_eq!(new.state(0), NodeState::Healthy);
        new.record(1, true, true);
        assert_eq!(new.state(1), NodeState::Healthy);
        // Copied with the new settings: five passes to rise again.
        new.mark_down(2);
        for _ in 0..4 {
            new.record(2, true, false);
        }
        assert_eq!(new.state(2), NodeState::Down);
        new.record(2, true, false);
        assert_eq!(new.state(2), NodeState::Draining);
    }
}
