//! `[pool.discovery]`: a pool's nodes from DNS, beside or instead of its
//! `[[pool.node]]` tables — one node per SRV target (`srv`), named by the
//! target's first label (`cas-0` for `cas-0.cas.ns.svc.cluster.local.`,
//! CAS's default `cas.host.name` in a StatefulSet, so its ticket suffix
//! and jvmRoute), or one per address of a name (`hosts` and `port`),
//! named by the address and routed by `f5_md5` (IPv4), jvmRoute or the
//! learned table only. Here: the section and the mapping from a DNS
//! answer to a [`Node`]; resolving is `crate::discovery`'s.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use toml::Spanned;

use super::diag::Diags;
use super::raw::RawDiscovery;
use super::values::{addr, duration, host_name};
use super::{Node, NodeUrl, Scheme};

/// Where a pool's nodes come from in DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// One node per SRV target (its port from the record).
    Srv(String),
    /// One node per A/AAAA address of `name`, on `port`.
    Hosts { name: String, port: u16 },
}

/// `[pool.discovery]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovery {
    pub source: Source,
    pub scheme: Scheme,
    /// How often the names are resolved again.
    pub interval: Duration,
    /// The DNS server asked (default: the system's, `/etc/resolv.conf`).
    pub resolver: Option<SocketAddr>,
    /// How long a node gone from DNS keeps its tickets and sessions (it
    /// takes no new logins meanwhile) before it leaves the pool.
    pub grace: Duration,
}

/// CAS's default TGT lifetime: a node gone from DNS keeps serving the
/// tickets it issued this long.
const GRACE_SECS: u64 = 8 * 3600;
const INTERVAL_SECS: u64 = 5;

pub(super) fn discovery(
    raw: Option<Spanned<RawDiscovery>>,
    d: &mut Diags,
) -> Option<Option<Discovery>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    let span = raw.span();
    let r = raw.into_inner();
    let source = match (&r.srv, &r.hosts, &r.port) {
        (Some(srv), None, None) => {
            // `_service._proto.name`: labels of letters, digits, `-`, `_`.
            let name = srv.get_ref().trim_end_matches('.');
            let ok = !name.is_empty()
                && name.split('.').all(|l| {
                    !l.is_empty()
                        && l.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                });
            if ok {
                Some(Source::Srv(srv.get_ref().clone()))
            } else {
                d.error(
                    srv.span(),
                    format!(
                        "srv `{}` is not a DNS name such as `_http._tcp.cas.example.svc`",
                        srv.get_ref()
                    ),
                );
                None
            }
        }
        (None, Some(hosts), Some(port)) => {
            let name = host_name(hosts, "hosts", false, d);
            let port = match u16::try_from(*port.get_ref()) {
                Ok(p) if p > 0 => Some(p),
                _ => {
                    d.error(port.span(), "port must be between 1 and 65535");
                    None
                }
            };
            name.zip(port).map(|(_, port)| Source::Hosts {
                name: hosts.get_ref().clone(),
                port,
            })
        }
        (None, Some(_), None) => {
            d.error(span.clone(), "[pool.discovery] hosts needs a port");
            None
        }
        _ => {
            d.error(
                span.clone(),
                "[pool.discovery] needs either srv, or hosts and port",
            );
            None
        }
    };
    let scheme = match r.scheme.as_ref().map(|s| s.get_ref().as_str()) {
        None | Some("http") => Some(Scheme::Http),
        Some("https") => Some(Scheme::Https),
        Some(other) => {
            let at = r.scheme.as_ref().map_or(span.clone(), Spanned::span);
            d.error(
                at,
                format!("scheme must be \"http\" or \"https\", not `{other}`"),
            );
            None
        }
    };
    let interval = duration(r.interval.as_ref(), Duration::from_secs(INTERVAL_SECS), d);
    let grace = duration(r.grace.as_ref(), Duration::from_secs(GRACE_SECS), d);
    let resolver = match &r.resolver {
        Some(v) => addr(v, d).map(Some),
        None => Some(None),
    };
    Some(Some(Discovery {
        source: source?,
        scheme: scheme?,
        interval: interval?,
        resolver: resolver?,
        grace: grace?,
    }))
}

/// The node a DNS answer names: an SRV `target` (its first label, lower
/// case, is the node's name, ticket suffix and jvmRoute; an https node's
/// certificate must name the target) at `at`, or for `hosts` discovery the
/// address alone (`target` `None`: named by the address with `-` for `.`
/// and `:`, routed by `f5_md5` when IPv4). `None` for a target whose first
/// label cannot be a node name.
pub fn node_for(target: Option<&str>, at: SocketAddr, scheme: Scheme) -> Option<Node> {
    let ip = at.ip();
    let url = NodeUrl {
        scheme,
        host: ip.to_string(),
        port: at.port(),
        ipv4: match ip {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        },
    };
    match target {
        Some(target) => {
            let fqdn = target.trim_end_matches('.').to_ascii_lowercase();
            let name = fqdn.split('.').next().unwrap_or("").to_owned();
            let ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            ok.then(|| Node {
                ticket_suffixes: vec![name.clone()],
                jvm_route: name.clone(),
                name,
                url,
                f5_md5: false,
                backup: false,
                server_name: (scheme == Scheme::Https).then_some(fqdn),
                from_dns: true,
            })
        }
        None => {
            let name = ip.to_string().replace(['.', ':'], "-");
            Some(Node {
                ticket_suffixes: Vec::new(),
                jvm_route: name.clone(),
                f5_md5: url.ipv4.is_some(),
                name,
                url,
                backup: false,
                server_name: None,
                from_dns: true,
            })
        }
    }
}

/// A node found in DNS, and since when it is gone from the answers.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    pub node: Node,
    pub gone_since: Option<std::time::Instant>,
}

/// The nodes discovery found, per pool name: what it adds to the
/// configuration read from the file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overlay {
    pub pools: std::collections::BTreeMap<String, Vec<Found>>,
}

impl Overlay {
    /// Adds the found nodes to their pools in `config` (after its own),
    /// except one whose name another node has (names are unique across
    /// pools: the admin API addresses nodes by name). Returns the names of
    /// the nodes added that are gone from DNS (they take no new logins).
    pub fn apply(&self, config: &mut super::Config) -> Vec<String> {
        let mut taken: std::collections::HashSet<String> =
            config.nodes().map(|(_, n)| n.name.clone()).collect();
        let mut gone = Vec::new();
        for pool in &mut config.pools {
            if pool.discovery.is_none() {
                continue;
            }
            for found in self.pools.get(&pool.name).into_iter().flatten() {
                if !taken.insert(found.node.name.clone()) {
                    continue;
                }
                if found.gone_since.is_some() {
                    gone.push(found.node.name.clone());
                }
                pool.nodes.push(found.node.clone());
            }
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_pod_is_named_by_the_first_label_of_its_target() {
        for target in [
            "cas-0.cas.cas.svc.cluster.local.",
            "CAS-0.Cas.Cas.Svc.Cluster.Local",
            "cas-0",
        ] {
            let n = node_for(Some(target), at("10.1.2.3:8080"), Scheme::Http).unwrap();
            assert_eq!(n.name, "cas-0", "{target}");
            assert_eq!(
                (n.ticket_suffixes.as_slice(), n.jvm_route.as_str()),
                (&["cas-0".to_owned()][..], "cas-0")
            );
            assert_eq!(
                (n.url.authority(), n.server_name),
                ("10.1.2.3:8080".to_owned(), None)
            );
        }
        let https = node_for(
            Some("cas-1.cas.ns.svc."),
            at("10.1.2.4:8443"),
            Scheme::Https,
        )
        .unwrap();
        assert_eq!(https.server_name.as_deref(), Some("cas-1.cas.ns.svc"));
        // Not a node name: refused.
        assert!(node_for(Some(".cas.svc"), at("10.1.2.3:1"), Scheme::Http).is_none());
        assert!(node_for(Some("bad name.svc"), at("10.1.2.3:1"), Scheme::Http).is_none());
    }

    #[test]
    fn an_address_names_its_node() {
        let v4 = node_for(None, at("10.1.2.3:8080"), Scheme::Http).unwrap();
        assert_eq!((v4.name.as_str(), v4.f5_md5), ("10-1-2-3", true));
        assert!(v4.ticket_suffixes.is_empty());
        let v6 = node_for(None, at("[2001:db8::7]:8080"), Scheme::Http).unwrap();
        assert_eq!((v6.name.as_str(), v6.f5_md5), ("2001-db8--7", false));
    }
}
