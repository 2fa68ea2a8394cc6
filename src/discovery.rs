//! Nodes from DNS ([`crate::config::discovery`]): every pool's
//! `[pool.discovery]` is resolved (hickory-resolver, no hand-written DNS
//! client) at start and then every `interval`; a change is applied as a
//! reload is ([`Current::rediscovered`]: new nodes checked before they get
//! traffic, health and learned cookies carried). A node gone from the
//! answers takes no new logins but keeps its tickets and sessions for the
//! pool's `grace`, then leaves. A failed or empty answer keeps the last
//! known set (a pool is never emptied by DNS) and is counted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::Resolver;

use crate::config::discovery::{node_for, Discovery, Found, Overlay, Source};
use crate::config::{Config, Node};
use crate::current::Current;

/// The pools that discover nodes, with a resolver each.
type Pools = Vec<(String, Discovery, Resolver<TokioRuntimeProvider>)>;

/// A resolver for `d`: its `resolver`, else the system's; an answer
/// that does not come within the pool's interval (at least a second, at
/// most five) is a failure of that round.
fn resolver(d: &Discovery) -> Result<Resolver<TokioRuntimeProvider>, String> {
    let builder = match d.resolver {
        Some(at) => {
            let mut server = NameServerConfig::udp_and_tcp(at.ip());
            for c in &mut server.connections {
                c.port = at.port();
            }
            let config = ResolverConfig::from_name_servers(vec![server]);
            Ok(Resolver::builder_with_config(
                config,
                TokioRuntimeProvider::default(),
            ))
        }
        None => Resolver::builder_tokio(),
    };
    let mut builder = builder.map_err(|e| format!("the DNS resolver: {e}"))?;
    let opts = builder.options_mut();
    opts.timeout = d
        .interval
        .clamp(Duration::from_secs(1), Duration::from_secs(5));
    opts.attempts = 1;
    builder
        .build()
        .map_err(|e| format!("the DNS resolver: {e}"))
}

/// The nodes one pool's names resolve to now; an empty answer is an error
/// (the last known set stays).
async fn resolve(d: &Discovery, r: &Resolver<TokioRuntimeProvider>) -> Result<Vec<Node>, String> {
    let mut nodes = Vec::new();
    match &d.source {
        Source::Srv(name) => {
            let answer = r
                .srv_lookup(name.as_str())
                .await
                .map_err(|e| e.to_string())?;
            for record in answer.answers() {
                let RData::SRV(srv) = &record.data else {
                    continue;
                };
                let target = srv.target.to_ascii();
                let ips = r
                    .lookup_ip(srv.target.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                if let Some(ip) = ips.iter().next() {
                    let at = SocketAddr::new(ip, srv.port);
                    nodes.extend(node_for(Some(&target), at, d.scheme));
                }
            }
        }
        Source::Hosts { name, port } => {
            let ips = r
                .lookup_ip(name.as_str())
                .await
                .map_err(|e| e.to_string())?;
            for ip in ips.iter() {
                nodes.extend(node_for(None, SocketAddr::new(ip, *port), d.scheme));
            }
        }
    }
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    nodes.dedup_by(|a, b| a.name == b.name);
    if nodes.is_empty() {
        return Err("no node in the answer".into());
    }
    Ok(nodes)
}

/// The next overlay for one pool: what `now` found, what was found before
/// and is gone (since when), without what has been gone past `grace`.
fn next_found(before: &[Found], now: &[Node], grace: Duration, at: Instant) -> Vec<Found> {
    let mut out: Vec<Found> = now
        .iter()
        .map(|n| Found {
            node: n.clone(),
            gone_since: None,
        })
        .collect();
    for old in before {
        if now.iter().any(|n| n.name == old.node.name) {
            continue;
        }
        let since = old.gone_since.unwrap_or(at);
        if at.saturating_duration_since(since) < grace {
            out.push(Found {
                node: old.node.clone(),
                gone_since: Some(since),
            });
        }
    }
    out.sort_by(|a, b| a.node.name.cmp(&b.node.name));
    out
}

/// Says what changed between two sets of one pool.
fn report(pool: &str, before: &[Found], after: &[Found], grace: Duration) {
    for f in after {
        let was = before.iter().find(|b| b.node.name == f.node.name);
        let at = f.node.url.authority();
        match (was, f.gone_since) {
            (None, _) => say!("casfront: discovery: pool {pool}: + {} ({at})", f.node.name),
            (Some(b), None) if b.node.url != f.node.url => say!(
                "casfront: discovery: pool {pool}: {} moved to {at}",
                f.node.name
            ),
            (Some(b), Some(_)) if b.gone_since.is_none() => say!(
                "casfront: discovery: pool {pool}: {} gone from DNS: no new logins, its tickets for {}s",
                f.node.name,
                grace.as_secs()
            ),
            (Some(b), None) if b.gone_since.is_some() => {
                say!("casfront: discovery: pool {pool}: {} is back", f.node.name);
            }
            _ => {}
        }
    }
    for b in before {
        if !after.iter().any(|f| f.node.name == b.node.name) {
            say!(
                "casfront: discovery: pool {pool}: - {} (grace over)",
                b.node.name
            );
        }
    }
}

/// Every discovering pool of `config` resolved once, as nodes to add
/// (`casfront explain`: the nodes a running casfront would route to).
pub async fn resolve_once(config: &Config) -> Result<Overlay, String> {
    let mut overlay = Overlay::default();
    for pool in &config.pools {
        if let Some(d) = &pool.discovery {
            let nodes = resolve(d, &resolver(d)?)
                .await
                .map_err(|e| format!("pool {}: {e}", pool.name))?;
            let found = nodes.into_iter().map(|node| Found {
                node,
                gone_since: None,
            });
            overlay.pools.insert(pool.name.clone(), found.collect());
        }
    }
    Ok(overlay)
}

/// Resolves every discovering pool once and applies the result; then
/// keeps doing so every pool's `interval` (the shortest) in a task, which
/// the returned handle stops when dropped (aborted). `None` when no pool
/// discovers.
pub async fn start(
    current: Arc<Current>,
    config: &Config,
) -> Result<Option<tokio::task::JoinHandle<()>>, String> {
    let mut pools = Vec::new();
    for pool in &config.pools {
        if let Some(d) = &pool.discovery {
            pools.push((pool.name.clone(), d.clone(), resolver(d)?));
        }
    }
    if pools.is_empty() {
        return Ok(None);
    }
    let every = pools
        .iter()
        .map(|(_, d, _)| d.interval)
        .min()
        .unwrap_or(Duration::from_secs(5));
    let mut found: BTreeMap<String, Vec<Found>> = BTreeMap::new();
    round(&current, &pools, &mut found).await;
    Ok(Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            round(&current, &pools, &mut found).await;
        }
    })))
}

/// One round: resolve every pool, apply if anything changed.
async fn round(current: &Current, pools: &Pools, found: &mut BTreeMap<String, Vec<Found>>) {
    let now = Instant::now();
    let mut next = found.clone();
    for (name, d, r) in pools {
        let before = found.get(name).map(Vec::as_slice).unwrap_or(&[]);
        match resolve(d, r).await {
            Ok(nodes) => {
                let after = next_found(before, &nodes, d.grace, now);
                report(name, before, &after, d.grace);
                next.insert(name.clone(), after);
            }
            Err(e) => {
                current.metrics().discovery_failed();
                say!("casfront: discovery: pool {name}: {e}; the last known nodes stay");
                // Grace still runs out for nodes already gone.
                let kept: Vec<Node> = before
                    .iter()
                    .filter(|f| f.gone_since.is_none())
                    .map(|f| f.node.clone())
                    .collect();
                let after = next_found(before, &kept, d.grace, now);
                report(name, before, &after, d.grace);
                next.insert(name.clone(), after);
            }
        }
    }
    if next == *found {
        return;
    }
    *found = next;
    let overlay = Overlay {
        pools: found.clone(),
    };
    if let Err(e) = current.rediscovered(overlay).await {
        say!("casfront: discovery: the new node set was refused: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Scheme;

    fn node(name: &str, port: u16) -> Node {
        let at = SocketAddr::from(([127, 0, 0, 1], port));
        node_for(Some(name), at, Scheme::Http).unwrap()
    }

    #[test]
    fn a_node_gone_from_dns_stays_for_its_grace_then_goes() {
        let grace = Duration::from_secs(60);
        let t0 = Instant::now();
        let first = next_found(&[], &[node("cas-0", 1), node("cas-1", 2)], grace, t0);
        assert_eq!(first.len(), 2);
        let t1 = t0 + Duration::from_secs(10);
        let second = next_found(&first, &[node("cas-0", 1)], grace, t1);
        let gone = second.iter().find(|f| f.node.name == "cas-1").unwrap();
        assert_eq!(gone.gone_since, Some(t1));
        // Still there within the grace, gone after it.
        let third = next_found(
            &second,
            &[node("cas-0", 1)],
            grace,
            t1 + Duration::from_secs(59),
        );
        assert_eq!(third.len(), 2);
        let fourth = next_found(
            &third,
            &[node("cas-0", 1)],
            grace,
            t1 + Duration::from_secs(60),
        );
        assert_eq!(fourth.len(), 1);
        // Back within the grace: live again; a new port is followed.
        let back = next_found(&second, &[node("cas-0", 1), node("cas-1", 7)], grace, t1);
        let cas1 = back.iter().find(|f| f.node.name == "cas-1").unwrap();
        assert_eq!((cas1.gone_since, cas1.node.url.port), (None, 7));
    }
}
