//! What a new generation keeps from the one it replaces: the health of
//! every node it still has (same pool, name and URL) and the learned
//! cookie table; and what a new process takes over from the one it
//! replaces in a binary upgrade ([`Handover`]: the operator's modes). Upstream connections are not kept: the new generation's
//! pools connect afresh, and the old idle connections close when its last
//! request is done. (Rate counts are process state: see
//! [`crate::state::ProcessState::reconfigure`].)

use std::collections::HashMap;
use std::sync::Arc;

use super::Generation;
use crate::config::Config;
use crate::health::{HealthTable, Mode, NodeSettings};
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
/// operator mode (drained or disabled), by the node's identity. Node health
/// is not taken: the new process checks every node before it serves. The
/// learned cookie table is not either: the route cookie (on by default)
/// carries every route a node set.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Handover {
    pub modes: Vec<(String, Mode)>,
}

impl Generation {
    /// What a successor process takes over.
    pub fn handover(&self) -> Handover {
        let modes = (self.identity.iter().zip(0..=NodeId::MAX))
            .map(|(id, n)| (id.clone(), self.health.mode(n)))
            .filter(|(_, m)| *m != Mode::Enabled)
            .collect();
        Handover { modes }
    }

    /// Takes `handover` from a predecessor: the modes of the nodes this
    /// generation still has. How many nodes took one.
    pub fn receive(&self, handover: &Handover) -> usize {
        let ids: HashMap<&str, NodeId> = (self.identity.iter().zip(0..=NodeId::MAX))
            .map(|(id, n)| (id.as_str(), n))
            .collect();
        (handover.modes.iter())
            .filter_map(|(id, mode)| {
                ids.get(id.as_str())
                    .map(|&n| self.health.set_mode(n, *mode))
            })
            .filter(|set| *set)
            .count()
    }
}
