//! Checks on values and across values (addresses, URLs, durations, unique
//! names, suffix claims), applying defaults, turning the raw sections into a
//! [`Config`]. Every problem is reported; nothing stops at the first.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use toml::Spanned;

use super::diag::Diags;
use super::raw::{PoolSections, Raw, RawNode, RawPool, Str};
use super::values::{addr, authority, cookie_name, each, file, host_name, name, node_url, suffix};
use super::{client_cert, defaults, edge, sections, Admin, ClientAuth, Config, Node, Pool};
use crate::routing::suffix::f5_md5;
use crate::routing::MAX_TGC_COOKIES;

pub fn validate(raw: Raw, base: &Path, d: &mut Diags) -> Option<Config> {
    if !raw.has_listen {
        d.error(0..0, "missing section [listen]: `listen.https` is required");
    }
    if !raw.has_tls {
        d.error(
            0..0,
            "missing section [tls]: `tls.cert` and `tls.key` are required",
        );
    }
    if raw.pools.is_empty() {
        d.error(
            0..0,
            "no [[pool]]: at least one pool with nodes is required",
        );
    }
    let listen = sections::listen(raw.listen, d);
    let tls = sections::tls(raw.tls, raw.certificates, base, d);
    let admin = raw.admin.map(Spanned::into_inner);
    let admin_listen = match admin.as_ref().and_then(|a| a.listen.as_ref()) {
        Some(l) => addr(l, d),
        None => defaults::ADMIN_LISTEN.parse().ok(),
    };
    let token = match admin.as_ref().and_then(|a| a.token.as_ref()) {
        Some(t) if t.get_ref().len() < 16 || !t.get_ref().bytes().all(|b| b.is_ascii_graphic()) => {
            d.error(
                t.span(),
                "admin token must be at least 16 printable characters without spaces",
            );
            None
        }
        Some(t) => Some(Some(t.get_ref().clone())),
        None => Some(None),
    };
    let admin_hosts = each(admin.as_ref().and_then(|a| a.hosts.as_ref()), d, |h, d| {
        host_name(h, "admin host", false, d)
    });
    if let (Some(listen), Some(None)) = (admin_listen, &token) {
        if !listen.ip().is_loopback() {
            let at = admin
                .as_ref()
                .and_then(|a| a.listen.as_ref())
                .map_or(0..0, |l| l.span());
            d.warn(
                at,
                format!(
                    "the admin API listens on {listen}, beyond loopback, without a token: \
                     anyone who reaches it can drain, disable or reload; set [admin] token"
                ),
            );
        }
    }
    let admin = (admin_listen.zip(token).zip(admin_hosts)).map(|((listen, token), hosts)| Admin {
        listen,
        token,
        hosts,
    });

    let client_cert = client_cert::headers(raw.client_cert, d);
    let auth = tls.as_ref().map(|t| t.client.auth);
    let state = super::state::state(raw.state, base, d);
    let mut names = Names::default();
    let mut pools = Vec::new();
    let mut total_nodes = 0usize;
    for sections in raw.pools {
        total_nodes += sections.nodes.len();
        pools.push(pool(sections, base, state.as_ref(), auth, &mut names, d));
    }
    if total_nodes > usize::from(u16::MAX) {
        d.error(
            0..0,
            format!("{total_nodes} nodes: at most {} are supported", u16::MAX),
        );
    }
    let learned = sections::learned(raw.learned, d);
    let limits = sections::limits(raw.limits, d);
    let rate_limit = edge::rate_limit(raw.rate_limit, d);
    let log = sections::log(raw.log, d);
    Some(Config {
        listen: listen?,
        tls: tls?,
        client_cert: client_cert?,
        admin: admin?,
        learned: learned?,
        limits: limits?,
        rate_limit: rate_limit?,
        log: log?,
        state: state?,
        pools: pools.into_iter().collect::<Option<_>>()?,
    })
}

/// Names that must be unique: pool names, node names (global: the admin
/// API addresses nodes by name), path prefixes.
#[derive(Default)]
struct Names {
    pools: HashMap<String, Range<usize>>,
    nodes: HashMap<String, Range<usize>>,
    prefixes: HashMap<String, Range<usize>>,
}

impl Names {
    fn claim(map: &mut HashMap<String, Range<usize>>, what: &str, v: &Str, d: &mut Diags) {
        if let Some(first) = map.get(v.get_ref()) {
            let (line, col) = d.line_col(first.start);
            d.error(
                v.span(),
                format!("duplicate {what} `{}` (first at {line}:{col})", v.get_ref()),
            );
        } else {
            map.insert(v.get_ref().clone(), v.span());
        }
    }
}

fn pool(
    s: PoolSections,
    base: &Path,
    state: Option<&super::StateDir>,
    auth: Option<ClientAuth>,
    names: &mut Names,
    d: &mut Diags,
) -> Option<Pool> {
    let raw = s.pool;
    // A pool that routes by client certificate may share its prefix with
    // the pool that takes the other requests.
    let shared = raw.as_ref().is_some_and(|p| p.client_cert_match.is_some());
    let prefix = raw
        .as_ref()
        .and_then(|p| p.path_prefix.as_ref())
        .and_then(|p| path_prefix(p, (!shared).then_some(&mut *names), d));
    let client_cert = raw
        .as_ref()
        .map(|p| client_cert::pool(p, prefix.as_deref(), auth, d));
    if let Some(n) = raw.as_ref().and_then(|p| p.name.as_ref()) {
        name(n, "pool", d);
        Names::claim(&mut names.pools, "pool name", n, d);
    }
    let tgc_cookies = raw.as_ref().map(|p| tgc_cookies(p, d));
    let session_cookie = raw.as_ref().map(|p| match &p.session_cookie {
        Some(c) => {
            cookie_name(c, d);
            c.get_ref().clone()
        }
        None => defaults::SESSION_COOKIE.to_owned(),
    });
    let bigip_cookie = raw.as_ref().map(|p| match &p.bigip_cookie {
        Some(c) if cookie_name(c, d) => Some(Some(c.get_ref().clone())),
        Some(_) => None,
        None => Some(None),
    });
    let ticket_routing = raw.as_ref().map(|p| p.ticket_routing.unwrap_or(true));
    let secure_cookies = raw.as_ref().map(|p| p.secure_cookies.unwrap_or(true));
    let login_username_field = raw.as_ref().map(|p| match &p.login_username_field {
        Some(f) if f.get_ref().is_empty() || !f.get_ref().bytes().all(|b| b.is_ascii_graphic()) => {
            d.error(f.span(), "login_username_field must be a form field name");
            None
        }
        Some(f) => Some(f.get_ref().clone()),
        None => Some(defaults::USERNAME_FIELD.to_owned()),
    });
    let host_override = raw.as_ref().map(|p| match &p.host_override {
        Some(h) => authority(h, "host_override", d).map(Some),
        None => Some(None),
    });
    let upstream_ca = raw.as_ref().map(|p| match &p.upstream_ca {
        Some(f) => file(f, base, d).map(Some),
        None => Some(None),
    });
    let health = sections::health(s.health, prefix.as_deref().unwrap_or("/"), d);
    let upstream = sections::upstream(s.upstream, d);
    let headers = edge::headers(s.headers, d);
    let route_span = (s.route_cookie.as_ref()).map_or(s.span.clone(), Spanned::span);
    let route_cookie = sections::route_cookie(s.route_cookie, base, state, route_span.clone(), d);
    // The route cookie must not shadow a cookie the nodes set.
    if let (Some(Some(rc)), span) = (&route_cookie, route_span) {
        let taken = tgc_cookies.iter().flatten().any(|c| *c == rc.name)
            || session_cookie.as_deref() == Some(rc.name.as_str())
            || raw
                .as_ref()
                .and_then(|p| p.bigip_cookie.as_ref())
                .is_some_and(|b| *b.get_ref() == rc.name);
        if taken {
            d.error(
                span,
                format!(
                    "the route cookie's name `{}` is already one of this pool's cookies",
                    rc.name
                ),
            );
        }
    }
    let discovery = super::discovery::discovery(s.discovery, d);
    if s.nodes.is_empty() && !matches!(discovery, Some(Some(_))) {
        d.error(
            s.span.clone(),
            "a pool needs at least one [[pool.node]] or a [pool.discovery]",
        );
    }
    let built: Vec<(Spanned<RawNode>, Option<Node>)> = s
        .nodes
        .into_iter()
        .flatten()
        .map(|n| {
            let built = node(&n, names, d);
            (n, built)
        })
        .collect();
    // Claims are checked among the nodes that are valid so far.
    let valid: Vec<(&Spanned<RawNode>, &Node)> = built
        .iter()
        .filter_map(|(r, n)| Some((r, n.as_ref()?)))
        .collect();
    pool_claims(&valid, d);
    if let Some(Some(_)) = &route_cookie {
        for (raw, node) in &valid {
            if node.name.len() > 64 {
                d.error(
                    raw.span(),
                    "with the route cookie (on by default), node names are at most 64 bytes \
                     (they are sealed in it); shorten it or set [pool.route_cookie] enabled = false",
                );
            }
        }
    }
    let complete: Option<Vec<Node>> = built.into_iter().map(|(_, n)| n).collect();
    Some(Pool {
        name: raw?.name?.into_inner(),
        path_prefix: prefix?,
        tgc_cookies: tgc_cookies?,
        session_cookie: session_cookie?,
        host_override: host_override??,
        upstream_ca: upstream_ca??,
        health: health?,
        upstream: upstream?,
        headers: headers?,
        client_cert: client_cert??,
        bigip_cookie: bigip_cookie??,
        ticket_routing: ticket_routing?,
        secure_cookies: secure_cookies?,
        login_username_field: login_username_field??,
        route_cookie: route_cookie?,
        discovery: discovery?,
        nodes: complete?,
    })
}

/// The normalised prefix, claimed in `names` when given.
fn path_prefix(v: &Str, names: Option<&mut Names>, d: &mut Diags) -> Option<String> {
    let p = v.get_ref();
    if !p.starts_with('/') {
        d.error(v.span(), format!("path_prefix `{p}` must start with `/`"));
        return None;
    }
    if let Some(c) = p
        .chars()
        .find(|&c| matches!(c, '?' | '#' | ';') || c.is_whitespace() || c.is_control())
    {
        d.error(
            v.span(),
            format!("path_prefix `{p}` must not contain {c:?}"),
        );
        return None;
    }
    let trimmed = match p.trim_end_matches('/') {
        "" => "/",
        t => t,
    };
    if let Some(names) = names {
        Names::claim(
            &mut names.prefixes,
            "path_prefix",
            &Spanned::new(v.span(), trimmed.to_owned()),
            d,
        );
    }
    Some(trimmed.to_owned())
}

fn tgc_cookies(p: &RawPool, d: &mut Diags) -> Vec<String> {
    if let Some(list) = p
        .tgc_cookies
        .as_ref()
        .filter(|l| l.get_ref().len() > MAX_TGC_COOKIES)
    {
        d.error(
            list.span(),
            format!(
                "tgc_cookies lists {} names: at most {MAX_TGC_COOKIES}",
                list.get_ref().len()
            ),
        );
    }
    match &p.tgc_cookies {
        Some(list) => list
            .get_ref()
            .iter()
            .filter(|c| cookie_name(c, d))
            .map(|c| c.get_ref().clone())
            .collect(),
        None => defaults::TGC_COOKIES.map(String::from).to_vec(),
    }
}

fn node(n: &Spanned<RawNode>, names: &mut Names, d: &mut Diags) -> Option<Node> {
    let r = n.get_ref();
    let node_name = r.name.as_ref().filter(|nm| {
        let ok = name(nm, "node", d);
        Names::claim(&mut names.nodes, "node name", nm, d);
        ok
    });
    let shown = r.name.as_ref().map_or("?", |nm| nm.get_ref().as_str());
    let url = r.url.as_ref().and_then(|u| node_url(u, d));
    let f5 = r.f5_md5.as_ref().is_some_and(|f| *f.get_ref());
    if let (Some(f), Some(u)) = (&r.f5_md5, &url) {
        if *f.get_ref() && u.ipv4.is_none() {
            d.error(
                f.span(),
                "f5_md5 = true needs a node url whose host is an IPv4 address",
            );
        }
    }
    let suffixes: Vec<String> = match (&r.ticket_suffixes, node_name) {
        (Some(list), _) => {
            if list.get_ref().is_empty() && !f5 {
                d.warn(
                    list.span(),
                    format!("node `{shown}` has no ticket suffix: no ticket routes to it"),
                );
            }
            list.get_ref()
                .iter()
                .filter(|s| suffix(s, d))
                .map(|s| s.get_ref().clone())
                .collect()
        }
        (None, Some(nm)) => {
            suffix(nm, d);
            vec![nm.get_ref().clone()]
        }
        (None, None) => Vec::new(),
    };
    let jvm_route = match &r.jvm_route {
        Some(j) if j.get_ref().is_empty() || j.get_ref().contains([';', ' ', '\t']) => {
            d.error(
                j.span(),
                format!(
                    "jvm_route `{}` must be non-empty, without `;` or spaces",
                    j.get_ref()
                ),
            );
            None
        }
        Some(j) => Some(j.get_ref().clone()),
        None => node_name.map(|nm| nm.get_ref().clone()),
    };
    let server_name = match &r.server_name {
        Some(v) => host_name(v, "server_name", false, d).map(Some),
        None => Some(None),
    };
    Some(Node {
        name: node_name?.get_ref().clone(),
        url: url?,
        ticket_suffixes: suffixes,
        f5_md5: f5,
        jvm_route: jvm_route?,
        backup: r.backup.unwrap_or(false),
        server_name: server_name?,
        from_dns: false,
    })
}

/// Per pool: each suffix (and F5 name) and jvmRoute belongs to one node;
/// a suffix that is a `-`-separated tail of another node's is a warning.
fn pool_claims(nodes: &[(&Spanned<RawNode>, &Node)], d: &mut Diags) {
    let mut claims: Vec<(String, usize, Range<usize>)> = Vec::new();
    let mut routes: HashMap<&str, &str> = HashMap::new();
    for (i, &(r, n)) in nodes.iter().enumerate() {
        let name_span = r.get_ref().name.as_ref().map_or(r.span(), Spanned::span);
        let span = |s: &str| {
            r.get_ref()
                .ticket_suffixes
                .as_ref()
                .and_then(|l| {
                    l.get_ref()
                        .iter()
                        .find(|x| x.get_ref() == s)
                        .map(Spanned::span)
                })
                .unwrap_or_else(|| name_span.clone())
        };
        for s in &n.ticket_suffixes {
            claims.push((s.clone(), i, span(s)));
        }
        if let (true, Some(ip)) = (n.f5_md5, n.url.ipv4) {
            let at = r.get_ref().f5_md5.as_ref().map_or(r.span(), Spanned::span);
            claims.push((f5_md5(ip), i, at));
        }
        let route_span = r
            .get_ref()
            .jvm_route
            .as_ref()
            .map_or(name_span.clone(), Spanned::span);
        if let Some(other) = routes.insert(&n.jvm_route, &n.name) {
            d.error(
                route_span,
                format!(
                    "jvm_route `{}` is claimed by nodes `{other}` and `{}`",
                    n.jvm_route, n.name
                ),
            );
        }
    }
    for (k, (s, i, at)) in claims.iter().enumerate() {
        for (t, j, _) in &claims[..k] {
            if i == j {
                continue;
            }
            let (a, b) = (&nodes[*j].1.name, &nodes[*i].1.name);
            if s == t {
                d.error(
                    at.clone(),
                    format!("ticket suffix `{s}` is claimed by nodes `{a}` and `{b}`"),
                );
            }
        }
        for (t, j, _) in &claims {
            if i != j
                && t.len() > s.len()
                && t.ends_with(s.as_str())
                && t.as_bytes()[t.len() - s.len() - 1] == b'-'
            {
                d.warn(
                    at.clone(),
                    format!(
                        "suffix `{s}` of node `{}` is a tail of `{t}` (node `{}`): the longest match decides",
                        nodes[*i].1.name, nodes[*j].1.name
                    ),
                );
            }
        }
    }
}
