//! What a reloaded configuration keeps from the one it replaces: the
//! health of every node it still has (same pool, name and URL) and the
//! learned cookie table. Upstream connections are not kept: the new
//! configuration's pools connect afresh, and the old idle connections
//! close when its last request is done.

use std::collections::HashMap;
use std::sync::Arc;

use super::Proxy;
use crate::config::Config;
use crate::health::{Health, NodeSettings};
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

impl Proxy {
    /// For each node of this proxy, the same node in `old`, if any.
    fn origin(&self, old: &Proxy) -> Vec<Option<NodeId>> {
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

    /// The nodes of this proxy that `old` does not have.
    pub fn added_since(&self, old: &Proxy) -> Vec<NodeId> {
        (self.origin(old).iter().zip(0..=NodeId::MAX))
            .filter_map(|(o, i)| o.is_none().then_some(i))
            .collect()
    }

    /// Takes over `old`'s node states, learned cookies and rate counts
    /// where they still apply; `config` is this proxy's. Done right before the swap, so
    /// that nothing `old` records meanwhile is lost.
    pub fn take_over(&mut self, config: &Config, old: &Proxy) -> Carried {
        let origin = self.origin(old);
        self.health = Health::reloaded(&node_settings(config), &old.health, &origin);
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
        // Rate counts are per client address, not per node.
        if *old.rate.config() == config.rate_limit {
            self.rate = old.rate.clone();
        }
        let kept = origin.iter().filter(|o| o.is_some()).count();
        Carried {
            nodes_kept: kept,
            nodes_added: origin.len() - kept,
            learned_kept: same_pools,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::path::Path;

    use super::*;

    fn proxy(rate: &str) -> (Config, Proxy) {
        let text = format!(
            "[listen]\nhttps = \"127.0.0.1:0\"\n[tls]\ncert = \"c\"\nkey = \"k\"\n\
             [rate_limit]\n{rate}\n\
             [[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n\
             [[pool.node]]\nname = \"cas1\"\nurl = \"http://127.0.0.1:1\"\n"
        );
        let config = crate::config::parse(&text, Path::new("."))
            .config
            .expect("valid");
        let proxy = Proxy::new(&config).expect("builds");
        (config, proxy)
    }

    /// A client that spent its allowance before a reload has not got it
    /// back after one, unless `[rate_limit]` changed.
    #[test]
    fn rate_counts_survive_a_reload_that_keeps_the_limits() {
        let client: IpAddr = "192.0.2.1".parse().expect("an address");
        let (_, old) = proxy("requests_per_second = 1\nburst = 2");
        for _ in 0..2 {
            assert!(old.rate.check(client, false).is_ok());
        }
        assert!(old.rate.check(client, false).is_err());
        let (config, mut same) = proxy("requests_per_second = 1\nburst = 2");
        same.take_over(&config, &old);
        assert!(same.rate.check(client, false).is_err());
        let (config, mut changed) = proxy("requests_per_second = 1\nburst = 3");
        changed.take_over(&config, &old);
        assert!(changed.rate.check(client, false).is_ok());
    }
}
