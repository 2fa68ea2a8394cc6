//! What a new generation keeps from the one it replaces: the health of
//! every node it still has (same pool, name and URL) and the learned
//! cookie table; and what a new process takes over from the one it
//! replaces in a binary upgrade ([`Handover`]: the operator's modes and
//! the learned cookie table). Upstream connections are not kept: the new generation's
//! pools connect afresh, and the old idle connections close when its last
//! request is done. (Rate counts are process state: see
//! [`crate::state::ProcessState::reconfigure`].)

use std::collections::HashMap;
use std::sync::Arc;

use super::Generation;
use crate::config::Config;
use crate::health::{HealthTable, Mode, NodeSettings};
use crate::learned::{Exported, LearnedTable};
use crate::routing::NodeId;

/// Per node in configuration order, what its health needs.
pub(super) fn node_settings(config: &Config) -> Vec<NodeSettings> {
    config
        .nodes()
        .map(|(pool, _)| NodeSettings {
            rise: pool.health.rise,
            fall: pool.health.fall,
            cooldown: pool.upstream.down_cooldown,
        })
        .collect()
}

/// Per node, what makes it the same node after a reload: pool, name,
/// scheme, address and the name verified in its certificate.
pub(super) fn identities(config: &Config) -> Vec<String> {
    config
        .nodes()
        .map(|(pool, n)| {
            // The name an https node's certificate must carry.
            let verified = n.server_name.as_deref().unwrap_or(&n.url.host);
            format!(
                "{}/{}/{:?}/{}/{verified}",
                pool.name,
                n.name,
                n.url.scheme,
                n.url.authority()
            )
        })
        .collect()
}

/// What a reload kept, for the operator.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Carried {
    /// Nodes that kept their health state.
    pub nodes_kept: usize,
    /// Nodes that are new (down until their first check passes).
    pub nodes_added: usize,
    /// Whether the learned cookie table was kept (it is dropped when the
    /// pools changed).
    pub learned_kept: bool,
}

impl Generation {
    /// For each node of this generation, the same node in `old`, if any.
    fn origin(&self, old: &Generation) -> Vec<Option<NodeId>> {
        let before: HashMap<&str, NodeId> = old
            .identity
            .iter()
            .zip(0..=NodeId::MAX)
            .map(|(id, i)| (id.as_str(), i))
            .collect();
        self.identity
            .iter()
            .map(|id| before.get(id.as_str()).copied())
            .collect()
    }

    /// The nodes of this generation that `old` does not have.
    pub fn added_since(&self, old: &Generation) -> Vec<NodeId> {
        (self.origin(old).iter().zip(0..=NodeId::MAX))
            .filter_map(|(o, i)| o.is_none().then_some(i))
            .collect()
    }

    /// Takes over `old`'s node states and learned cookies where they still
    /// apply; `config` is this generation's. Done right before the swap,
    /// so that nothing `old` records meanwhile is lost.
    pub fn take_over(&mut self, config: &Config, old: &Generation) -> Carried {
        let origin = self.origin(old);
        self.health = Arc::new(HealthTable::reloaded(
            &node_settings(config),
            &old.health,
            &origin,
        ));
        let same_pools = (old.table.pools().iter().map(|p| &p.name)).eq(self
            .table
            .pools()
            .iter()
            .map(|p| &p.name));
        let (capacity, ttl) = (config.learned.capacity, config.learned.ttl);
        if same_pools && old.identity == self.identity && old.learned.fits(capacity, ttl) {
            self.learned = old.learned.clone();
        } else if same_pools {
            let back: HashMap<NodeId, NodeId> = (origin.iter().zip(0..=NodeId::MAX))
                .filter_map(|(o, i)| Some(((*o)?, i)))
                .collect();
            self.learned = Arc::new(
                old.learned
                    .remapped(capacity, ttl, |n| back.get(&n).copied()),
            );
        }
        let kept = origin.iter().filter(|o| o.is_some()).count();
        Carried {
            nodes_kept: kept,
            nodes_added: origin.len() - kept,
            learned_kept: same_pools,
        }
    }
}

/// What an upgraded process takes over from its predecessor: each node's
/// operator mode (drained or disabled) by the node's identity, and the
/// learned cookie table (kept when the pools are the same, by name and
/// order, its nodes by identity). Node health is not taken: the new
/// process checks every node before it serves.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Handover {
    pub modes: Vec<(String, Mode)>,
    /// Pool names, in the exporter's order (the learned keys hold the
    /// pool's index).
    pub pools: Vec<String>,
    /// Node identities, in the exporter's order.
    pub nodes: Vec<String>,
    pub learned: Exported,
}

/// What a process took over from its predecessor.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Received {
    pub modes: usize,
    pub learned: usize,
}

impl Generation {
    /// What a successor process takes over.
    pub fn handover(&self) -> Handover {
        let modes = (self.identity.iter().zip(0..=NodeId::MAX))
            .map(|(id, n)| (id.clone(), self.health.mode(n)))
            .filter(|(_, m)| *m != Mode::Enabled)
            .collect();
        Handover {
            modes,
            pools: self.table.pools().iter().map(|p| p.name.clone()).collect(),
            nodes: self.identity.clone(),
            learned: self.learned.export(),
        }
    }

    /// Takes `handover` from a predecessor, before this generation serves
    /// (`config` is this generation's): the modes and learned cookies of
    /// the nodes it still has.
    pub fn receive(&mut self, config: &Config, handover: &Handover) -> Received {
        let ids: HashMap<&str, NodeId> = (self.identity.iter().zip(0..=NodeId::MAX))
            .map(|(id, n)| (id.as_str(), n))
            .collect();
        let modes = (handover.modes.iter())
            .filter_map(|(id, mode)| {
                ids.get(id.as_str())
                    .map(|&n| self.health.set_mode(n, *mode))
            })
            .filter(|set| *set)
            .count();
        let same_pools = (self.table.pools().iter().map(|p| &p.name)).eq(handover.pools.iter());
        if same_pools {
            let map = |old: NodeId| {
                let id = handover.nodes.get(usize::from(old))?;
                ids.get(id.as_str()).copied()
            };
            let (capacity, ttl) = (config.learned.capacity, config.learned.ttl);
            self.learned = Arc::new(LearnedTable::import(&handover.learned, capacity, ttl, map));
        }
        Received {
            modes,
            learned: self.learned.len(),
        }
    }
}
