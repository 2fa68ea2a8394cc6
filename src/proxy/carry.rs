//! What a reloaded configuration keeps from the one it replaces: the
//! health of every node it still has (same pool, name and URL) and the
//! learned cookie table. Upstream connections are not kept: the new
//! configuration's pools connect afresh, and the old idle connections
//! close when its last request is done.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Proxy, ProxyError};
use crate::config::Config;
use crate::health::{Health, NodeSettings};
use crate::metrics::Metrics;
use crate::routing::NodeId;

/// Per node in configuration order, what its health needs.
pub(super) fn node_settings(config: &Config) -> Vec<NodeSettings> {
    config
        .pools
        .iter()
        .flat_map(|pool| {
            pool.nodes.iter().map(|_| NodeSettings {
                rise: pool.health.rise,
                fall: pool.health.fall,
                cooldown: pool.upstream.down_cooldown,
            })
        })
        .collect()
}

/// Per node, what makes it the same node after a reload: pool, name,
/// scheme, address and the name verified in its certificate.
pub(super) fn identities(config: &Config) -> Vec<String> {
    config
        .pools
        .iter()
        .flat_map(|pool| {
            pool.nodes.iter().map(|n| {
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

impl Proxy {
    /// The proxy of `config`, taking over `old`'s node states and learned
    /// cookies where they still apply.
    pub fn reloaded(
        config: &Config,
        metrics: Arc<Metrics>,
        old: &Proxy,
    ) -> Result<(Proxy, Carried), ProxyError> {
        let mut new = Proxy::with_metrics(config, metrics)?;
        let before: HashMap<&str, NodeId> = old
            .identity
            .iter()
            .enumerate()
            .filter_map(|(i, id)| Some((id.as_str(), NodeId::try_from(i).ok()?)))
            .collect();
        let origin: Vec<Option<NodeId>> = new
            .identity
            .iter()
            .map(|id| before.get(id.as_str()).copied())
            .collect();
        new.health = Health::reloaded(&node_settings(config), &old.health, &origin);
        let same_pools = old.table.pools().iter().map(|p| &p.name).eq(new
            .table
            .pools()
            .iter()
            .map(|p| &p.name));
        let (capacity, ttl) = (config.learned.capacity, config.learned.ttl);
        let same_nodes = old.identity == new.identity;
        if same_pools && same_nodes && old.learned.fits(capacity, ttl) {
            new.learned = old.learned.clone();
        } else if same_pools {
            let back: HashMap<NodeId, NodeId> = origin
                .iter()
                .enumerate()
                .filter_map(|(i, o)| Some(((*o)?, NodeId::try_from(i).ok()?)))
                .collect();
            new.learned = Arc::new(
                old.learned
                    .remapped(capacity, ttl, |n| back.get(&n).copied()),
            );
        }
        let kept = origin.iter().filter(|o| o.is_some()).count();
        Ok((
            new,
            Carried {
                nodes_kept: kept,
                nodes_added: origin.len() - kept,
                learned_kept: same_pools,
            },
        ))
    }
}
