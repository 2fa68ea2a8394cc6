//! The routing table: what the routing core needs of the pools, laid out
//! for lookups (pools by prefix, a suffix index and a jvmRoute map per pool,
//! primary and backup node lists). Built once per configuration from
//! [`PoolSpec`]s (the configuration makes them: the core imports nothing
//! above it) and shared read-only.

use std::ops::Range;

use rustc_hash::FxHashMap;

use super::cert::CertMatch;
use super::route_cookie::RouteCookieKeys;
use super::suffix::{f5_md5, SuffixIndex, SuffixKind};
use super::{NodeId, PoolId};

/// One pool as the routing table is built from it, in configuration
/// order (validated: unique suffixes and jvmRoutes per pool, at most
/// `u16::MAX` nodes in all).
#[derive(Clone, Debug)]
pub struct PoolSpec {
    pub name: String,
    /// Starts with `/`; no trailing `/` except for the root `/`.
    pub path_prefix: String,
    pub tgc_cookies: Vec<String>,
    pub session_cookie: String,
    /// `false`: every request by the `any` rule alone.
    pub ticket_routing: bool,
    pub bigip_cookie: Option<String>,
    pub route_cookie: Option<RouteCookieKeys>,
    /// The pool takes only requests whose verified certificate matches.
    pub cert_match: Option<CertMatch>,
    pub nodes: Vec<NodeSpec>,
}

impl PoolSpec {
    /// A pool with CAS's default cookie names (`TGC`, `CASTGC`,
    /// `JSESSIONID`) that routes by ticket.
    pub fn new(name: &str, path_prefix: &str, nodes: Vec<NodeSpec>) -> PoolSpec {
        PoolSpec {
            name: name.into(),
            path_prefix: path_prefix.into(),
            tgc_cookies: vec!["TGC".into(), "CASTGC".into()],
            session_cookie: "JSESSIONID".into(),
            ticket_routing: true,
            bigip_cookie: None,
            route_cookie: None,
            cert_match: None,
            nodes,
        }
    }
}

/// One node as the routing table is built from it.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub name: String,
    /// Its IPv4 address and port, if its URL has one (`f5_md5`, the F5
    /// persistence cookie).
    pub ipv4: Option<std::net::SocketAddrV4>,
    pub ticket_suffixes: Vec<String>,
    pub f5_md5: bool,
    pub jvm_route: String,
    pub backup: bool,
}

impl NodeSpec {
    /// A primary node known by its name as suffix and jvmRoute.
    pub fn new(name: &str, ipv4: Option<std::net::SocketAddrV4>) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            ipv4,
            ticket_suffixes: vec![name.into()],
            f5_md5: false,
            jvm_route: name.into(),
            backup: false,
        }
    }
}

/// One pool, ready for routing.
#[derive(Debug)]
pub struct PoolInfo {
    pub name: String,
    /// Normalised `path_prefix`: no trailing `/` except for the root `/`.
    pub prefix: Box<[u8]>,
    pub tgc_cookies: Vec<Box<[u8]>>,
    pub session_cookie: Box<[u8]>,
    /// The session cookie's lowercase name, used as a path parameter.
    pub path_param: Box<[u8]>,
    /// This pool's nodes: a range of [`RoutingTable::nodes`].
    pub nodes: Range<NodeId>,
    pub(crate) suffixes: SuffixIndex,
    /// Keys come from the configuration, so a fast non-keyed hash is safe:
    /// a client's lookup cannot grow or degrade the table.
    pub(crate) jvm_routes: FxHashMap<Box<[u8]>, NodeId>,
    pub(crate) primaries: Vec<NodeId>,
    pub(crate) backups: Vec<NodeId>,
    /// `client_cert_match`: the pool takes only requests whose verified
    /// client certificate matches.
    pub cert_match: Option<CertMatch>,
    /// `bigip_cookie`: the F5 persistence cookie honoured, if any.
    pub bigip_cookie: Option<Box<[u8]>>,
    /// Nodes by IPv4 address and port, for the F5 cookie.
    pub(crate) members: FxHashMap<std::net::SocketAddrV4, NodeId>,
    /// `[pool.route_cookie]`, if any.
    pub route_cookie: Option<super::route_cookie::RouteCookie>,
    /// Nodes by name (what a route cookie holds).
    pub(crate) by_name: FxHashMap<Box<[u8]>, NodeId>,
    /// Per method (bit index) and endpoint (`ENDPOINTS.len()`: none), the
    /// entries that apply in this pool, as a bit mask over `ENTRIES`: the
    /// routing loop visits only those.
    pub(crate) entries: [[u32; super::extract::ENDPOINTS.len() + 1]; 4],
}

impl PoolInfo {
    /// The entries (a bit mask over `ENTRIES`) that apply to `method` on
    /// the pool-relative path `rel`.
    pub(crate) fn applicable(&self, method: super::Method, rel: &[u8]) -> u32 {
        let endpoint = super::extract::endpoint_of(rel).unwrap_or(super::extract::ENDPOINTS.len());
        self.entries[method.bit().trailing_zeros() as usize][endpoint]
    }
}

/// The entry masks of a pool: an entry applies to a method and endpoint,
/// unless the pool turned it off (`tgc_cookies = []`, no `bigip_cookie`,
/// no `[pool.route_cookie]`) or turned them all off (`ticket_routing =
/// false`).
fn entry_masks(
    all: bool,
    tgc: bool,
    bigip: bool,
    route_cookie: bool,
) -> [[u32; super::extract::ENDPOINTS.len() + 1]; 4] {
    use super::{Method, Source, ENTRIES};
    let mut masks = [[0u32; super::extract::ENDPOINTS.len() + 1]; 4];
    let methods = [Method::Get, Method::Head, Method::Post, Method::Other];
    for (m, method) in methods.into_iter().enumerate() {
        for (e, slot) in masks[m].iter_mut().enumerate() {
            let endpoint = (e < super::extract::ENDPOINTS.len()).then_some(e);
            for (i, entry) in ENTRIES.iter().enumerate() {
                let off = !all
                    || matches!(entry.source, Source::TgcCookie) && !tgc
                    || matches!(entry.source, Source::BigipCookie) && !bigip
                    || matches!(entry.source, Source::RouteCookie) && !route_cookie;
                if !off && entry.methods.contains(method) && entry.paths.matches(endpoint) {
                    *slot |= 1 << i;
                }
            }
        }
    }
    masks
}

/// One node, as routing and its callers see it.
#[derive(Debug)]
pub struct NodeInfo {
    pub name: String,
    pub pool: PoolId,
    pub backup: bool,
}

/// The whole table.
#[derive(Debug)]
pub struct RoutingTable {
    pools: Vec<PoolInfo>,
    nodes: Vec<NodeInfo>,
    /// Pool ids, longest prefix first.
    by_prefix: Vec<PoolId>,
}

impl RoutingTable {
    /// Builds the table from validated pools (unique suffixes and
    /// jvmRoutes per pool, at most `u16::MAX` nodes).
    pub fn new(specs: &[PoolSpec]) -> RoutingTable {
        let mut pools = Vec::with_capacity(specs.len());
        let mut nodes = Vec::new();
        for (p, pool) in specs.iter().enumerate() {
            let pool_id = p as PoolId;
            let first = nodes.len() as NodeId;
            let mut suffixes: Vec<(Vec<u8>, NodeId, SuffixKind)> = Vec::new();
            let mut jvm_routes = FxHashMap::default();
            let (mut primaries, mut backups) = (Vec::new(), Vec::new());
            let mut members = FxHashMap::default();
            let mut by_name = FxHashMap::default();
            for node in &pool.nodes {
                let id = nodes.len() as NodeId;
                if let Some(addr) = node.ipv4 {
                    members.entry(addr).or_insert(id);
                }
                for s in &node.ticket_suffixes {
                    suffixes.push((s.as_bytes().to_vec(), id, SuffixKind::Name));
                }
                if let (true, Some(addr)) = (node.f5_md5, node.ipv4) {
                    suffixes.push((f5_md5(*addr.ip()).into_bytes(), id, SuffixKind::F5Md5));
                }
                jvm_routes
                    .entry(node.jvm_route.as_bytes().into())
                    .or_insert(id);
                by_name.insert(node.name.as_bytes().into(), id);
                if node.backup {
                    backups.push(id);
                } else {
                    primaries.push(id);
                }
                nodes.push(NodeInfo {
                    name: node.name.clone(),
                    pool: pool_id,
                    backup: node.backup,
                });
            }
            let index = SuffixIndex::build(suffixes.iter().map(|(s, n, k)| (s.as_slice(), *n, *k)));
            pools.push(PoolInfo {
                name: pool.name.clone(),
                prefix: pool.path_prefix.as_bytes().into(),
                tgc_cookies: pool
                    .tgc_cookies
                    .iter()
                    .map(|c| c.as_bytes().into())
                    .collect(),
                session_cookie: pool.session_cookie.as_bytes().into(),
                path_param: pool.session_cookie.to_ascii_lowercase().into_bytes().into(),
                nodes: first..nodes.len() as NodeId,
                suffixes: index,
                jvm_routes,
                primaries,
                backups,
                cert_match: pool.cert_match.clone(),
                bigip_cookie: pool.bigip_cookie.as_ref().map(|c| c.as_bytes().into()),
                members,
                entries: entry_masks(
                    pool.ticket_routing,
                    !pool.tgc_cookies.is_empty(),
                    pool.bigip_cookie.is_some(),
                    pool.route_cookie.is_some(),
                ),
                route_cookie: pool
                    .route_cookie
                    .as_ref()
                    .map(|rc| super::route_cookie::RouteCookie::new(&rc.name, &rc.keys)),
                by_name,
            });
        }
        let mut by_prefix: Vec<PoolId> = (0..pools.len() as PoolId).collect();
        // Among pools of one prefix, those that route by certificate first.
        by_prefix.sort_by_key(|&p| {
            let pool = &pools[usize::from(p)];
            (
                std::cmp::Reverse(pool.prefix.len()),
                pool.cert_match.is_none(),
            )
        });
        RoutingTable {
            pools,
            nodes,
            by_prefix,
        }
    }

    pub fn pools(&self) -> &[PoolInfo] {
        &self.pools
    }

    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// Every node with its id, in configuration order.
    pub fn node_ids(&self) -> impl Iterator<Item = (NodeId, &NodeInfo)> {
        // At most `u16::MAX` nodes (validated), so every index fits.
        (0..=NodeId::MAX).zip(&self.nodes)
    }

    pub fn pool(&self, id: PoolId) -> Option<&PoolInfo> {
        self.pools.get(usize::from(id))
    }

    pub fn node(&self, id: NodeId) -> Option<&NodeInfo> {
        self.nodes.get(usize::from(id))
    }

    pub fn node_by_name(&self, name: &str) -> Option<NodeId> {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .map(|i| i as NodeId)
    }

    /// Whether routing `method path?query` reads a body prefix (an entry
    /// of the extractor table takes its value from the body: `POST
    /// /samlValidate`, an OAuth token request, a SAML2 POST back to
    /// `/login?client_name=...`). Checks the method first, so that a GET
    /// costs no path lookup.
    pub fn wants_body(
        &self,
        method: super::Method,
        path: &[u8],
        query: Option<&[u8]>,
        cert: Option<&super::cert::CertIdentity>,
    ) -> bool {
        // No entry of this method reads a body (every GET): no path lookup.
        if !super::ENTRIES
            .iter()
            .any(|e| e.methods.contains(method) && e.source.reads_body(query))
        {
            return false;
        }
        let Some((_, pool, rel)) = self.pool_for(path, cert) else {
            return false;
        };
        // The entries the routing loop would visit (none with
        // `ticket_routing = false`).
        let mut applicable = pool.applicable(method, rel);
        while applicable != 0 {
            let e = &super::ENTRIES[applicable.trailing_zeros() as usize];
            applicable &= applicable - 1;
            let asked = match e.source {
                super::Source::FormTicket(_, Some(when)) => {
                    query.is_some_and(|q| super::parse::query_param(q, when.as_bytes()).is_some())
                }
                _ => true,
            };
            if asked && e.source.reads_body(query) {
                return true;
            }
        }
        false
    }

    /// The pool whose prefix is the longest to match `path` on a segment
    /// boundary, with the pool-relative rest of the path. A pool with a
    /// `client_cert_match` rule is skipped unless `cert` matches it.
    pub fn pool_for<'p>(
        &self,
        path: &'p [u8],
        cert: Option<&super::cert::CertIdentity>,
    ) -> Option<(PoolId, &PoolInfo, &'p [u8])> {
        self.by_prefix.iter().find_map(|&id| {
            let pool = &self.pools[usize::from(id)];
            if let Some(m) = &pool.cert_match {
                if !cert.is_some_and(|c| m.matches(c)) {
                    return None;
                }
            }
            relative(&pool.prefix, path).map(|rel| (id, pool, rel))
        })
    }
}

/// `path` with `prefix` removed, if `prefix` matches on a segment boundary:
/// `/cas` matches `/cas`, `/cas/x` and `/cas;jsessionid=..`, not `/cassandra`.
fn relative<'p>(prefix: &[u8], path: &'p [u8]) -> Option<&'p [u8]> {
    if prefix == b"/" {
        return path.starts_with(b"/").then_some(path);
    }
    let rest = path.strip_prefix(prefix)?;
    matches!(rest.first(), None | Some(b'/' | b';')).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::relative;
    use crate::routing::tests::table;
    use crate::routing::Method;

    #[test]
    fn only_posts_that_carry_tickets_want_a_body() {
        let t = table();
        assert!(t.wants_body(Method::Post, b"/cas/samlValidate", None, None));
        assert!(t.wants_body(Method::Post, b"/cas/samlValidate;jsessionid=x", None, None));
        assert!(!t.wants_body(Method::Get, b"/cas/samlValidate", None, None));
        assert!(!t.wants_body(Method::Post, b"/cas/login", None, None));
        assert!(!t.wants_body(Method::Post, b"/nothing/samlValidate", None, None));
        assert!(t.wants_body(Method::Post, b"/cas/oidc/token", None, None));
        assert!(t.wants_body(Method::Post, b"/cas/oauth2.0/accessToken", None, None));
        assert!(!t.wants_body(Method::Get, b"/cas/oidc/token", None, None));
        // A login POST is read only when it comes back from a SAML2 IdP.
        assert!(t.wants_body(
            Method::Post,
            b"/cas/login",
            Some(b"client_name=SAML2Client"),
            None
        ));
        assert!(!t.wants_body(Method::Post, b"/cas/login", Some(b"service=x"), None));
    }

    #[test]
    fn a_pool_that_does_not_route_by_ticket_reads_no_body() {
        let mut pools = crate::routing::tests::pools();
        pools[0].ticket_routing = false;
        let t = super::RoutingTable::new(&pools);
        assert!(!t.wants_body(Method::Post, b"/cas/samlValidate", None, None));
        assert!(!t.wants_body(Method::Post, b"/cas/oidc/token", None, None));
        let saml2 = Some(&b"client_name=SAML2Client"[..]);
        assert!(!t.wants_body(Method::Post, b"/cas/login", saml2, None));
    }

    #[test]
    fn prefixes_on_segment_boundaries() {
        assert_eq!(relative(b"/cas", b"/cas"), Some(&b""[..]));
        assert_eq!(relative(b"/cas", b"/cas/login"), Some(&b"/login"[..]));
        assert_eq!(
            relative(b"/cas", b"/cas;jsessionid=1"),
            Some(&b";jsessionid=1"[..])
        );
        assert_eq!(relative(b"/cas", b"/cassandra"), None);
        assert_eq!(relative(b"/cas", b"/CAS/login"), None);
        assert_eq!(relative(b"/", b"/anything"), Some(&b"/anything"[..]));
        assert_eq!(relative(b"/", b"*"), None);
        assert_eq!(relative(b"/a/b", b"/a/b/c"), Some(&b"/c"[..]));
    }
}
