//! Checks on values and across values (addresses, URLs, durations, unique
//! names, suffix claims), applying defaults, turning the raw sections into a
//! [`Config`]. Every problem is reported; nothing stops at the first.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::diag::Diags;
use super::raw::{PoolSections, Raw, RawHealth, RawLearned, RawNode, RawPool, RawUpstream, Str};
use super::{
    defaults, Admin, Config, Health, LearnedCookies, Listen, Node, NodeUrl, Pool, Scheme, Tls,
    Upstream,
};
use crate::routing::suffix::f5_md5;
use crate::routing::MAX_TGC_COOKIES;

/// Suffixes shorter than this may end a random part by chance.
const SHORT_SUFFIX: usize = 3;

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
    let listen = raw.listen.map(Spanned::into_inner).and_then(|l| {
        let https = l.https.as_ref().and_then(|h| addr(h, d));
        let http = match &l.http {
            None => Some(None),
            Some(h) => addr(h, d).map(Some),
        };
        Some(Listen {
            https: https?,
            http: http?,
        })
    });
    let tls = raw.tls.map(Spanned::into_inner).and_then(|t| {
        let cert = t.cert.as_ref().and_then(|c| file(c, base, d));
        let key = t.key.as_ref().and_then(|k| file(k, base, d));
        Some(Tls {
            cert: cert?,
            key: key?,
        })
    });
    let admin = match raw.admin.and_then(|a| a.into_inner().listen) {
        Some(l) => addr(&l, d).map(|listen| Admin { listen }),
        None => defaults::ADMIN_LISTEN
            .parse()
            .ok()
            .map(|listen| Admin { listen }),
    };

    let mut names = Names::default();
    let mut pools = Vec::new();
    let mut total_nodes = 0usize;
    for sections in raw.pools {
        total_nodes += sections.nodes.len();
        pools.push(pool(sections, &mut names, d));
    }
    if total_nodes > usize::from(u16::MAX) {
        d.error(
            0..0,
            format!("{total_nodes} nodes: at most {} are supported", u16::MAX),
        );
    }
    let learned = learned(raw.learned, d);
    Some(Config {
        listen: listen?,
        tls: tls?,
        admin: admin?,
        learned: learned?,
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

fn pool(s: PoolSections, names: &mut Names, d: &mut Diags) -> Option<Pool> {
    let raw = s.pool;
    let prefix = raw
        .as_ref()
        .and_then(|p| p.path_prefix.as_ref())
        .and_then(|p| path_prefix(p, names, d));
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
    let health = health(s.health, prefix.as_deref().unwrap_or("/"), d);
    let upstream = upstream(s.upstream, d);
    if s.nodes.is_empty() {
        d.error(s.span.clone(), "a pool needs at least one [[pool.node]]");
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
    let complete: Option<Vec<Node>> = built.into_iter().map(|(_, n)| n).collect();
    Some(Pool {
        name: raw?.name?.into_inner(),
        path_prefix: prefix?,
        tgc_cookies: tgc_cookies?,
        session_cookie: session_cookie?,
        health: health?,
        upstream: upstream?,
        nodes: complete?,
    })
}

fn path_prefix(v: &Str, names: &mut Names, d: &mut Diags) -> Option<String> {
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
    Names::claim(
        &mut names.prefixes,
        "path_prefix",
        &Spanned::new(v.span(), trimmed.to_owned()),
        d,
    );
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

fn health(raw: Option<Spanned<RawHealth>>, prefix: &str, d: &mut Diags) -> Option<Health> {
    let h = raw.map(Spanned::into_inner);
    let h = h.as_ref();
    let path = match h.and_then(|h| h.path.as_ref()) {
        Some(p) if !p.get_ref().starts_with('/') => {
            d.error(
                p.span(),
                format!("health path `{}` must start with `/`", p.get_ref()),
            );
            None
        }
        Some(p) => Some(p.get_ref().clone()),
        None => Some(format!("{}/login", prefix.trim_end_matches('/'))),
    };
    let interval = duration(
        h.and_then(|h| h.interval.as_ref()),
        Duration::from_secs(defaults::HEALTH_INTERVAL_SECS),
        d,
    );
    let timeout = duration(
        h.and_then(|h| h.timeout.as_ref()),
        Duration::from_secs(defaults::HEALTH_TIMEOUT_SECS),
        d,
    );
    if let (Some(i), Some(t), Some(at)) = (interval, timeout, h.and_then(|h| h.timeout.as_ref())) {
        if t >= i {
            d.warn(
                at.span(),
                "health timeout is not shorter than interval: checks will overlap",
            );
        }
    }
    let rise = threshold(
        h.and_then(|h| h.rise.as_ref()),
        "rise",
        defaults::HEALTH_RISE,
        d,
    );
    let fall = threshold(
        h.and_then(|h| h.fall.as_ref()),
        "fall",
        defaults::HEALTH_FALL,
        d,
    );
    Some(Health {
        path: path?,
        interval: interval?,
        timeout: timeout?,
        rise: rise?,
        fall: fall?,
    })
}

fn duration(v: Option<&Str>, default: Duration, d: &mut Diags) -> Option<Duration> {
    let Some(v) = v else {
        return Some(default);
    };
    match humantime::parse_duration(v.get_ref()) {
        Ok(t) if t.is_zero() => {
            d.error(v.span(), "duration must be greater than 0");
            None
        }
        Ok(t) => Some(t),
        Err(e) => {
            d.error(
                v.span(),
                format!(
                    "invalid duration `{}`: {e} (write e.g. \"2s\" or \"500ms\")",
                    v.get_ref()
                ),
            );
            None
        }
    }
}

fn threshold(v: Option<&Spanned<i64>>, key: &str, default: u32, d: &mut Diags) -> Option<u32> {
    count(v, key, 1..=1000, default.into(), d).and_then(|n| u32::try_from(n).ok())
}

/// An integer in `range`, or `default` when absent.
fn count(
    v: Option<&Spanned<i64>>,
    key: &str,
    range: std::ops::RangeInclusive<i64>,
    default: i64,
    d: &mut Diags,
) -> Option<i64> {
    let Some(v) = v else { return Some(default) };
    if range.contains(v.get_ref()) {
        return Some(*v.get_ref());
    }
    d.error(
        v.span(),
        format!(
            "`{key}` must be between {} and {}, not {}",
            range.start(),
            range.end(),
            v.get_ref()
        ),
    );
    None
}

/// `[pool.upstream]`, with defaults.
fn upstream(raw: Option<Spanned<RawUpstream>>, d: &mut Diags) -> Option<Upstream> {
    let raw = raw.map(Spanned::into_inner);
    let r = raw.as_ref();
    let def = Upstream::default();
    let connect_timeout = duration(
        r.and_then(|u| u.connect_timeout.as_ref()),
        def.connect_timeout,
        d,
    );
    let response_timeout = duration(
        r.and_then(|u| u.response_timeout.as_ref()),
        def.response_timeout,
        d,
    );
    let idle_timeout = duration(r.and_then(|u| u.idle_timeout.as_ref()), def.idle_timeout, d);
    let max_idle = count(
        r.and_then(|u| u.max_idle.as_ref()),
        "max_idle",
        0..=10_000,
        def.max_idle as i64,
        d,
    );
    let down_cooldown = duration(
        r.and_then(|u| u.down_cooldown.as_ref()),
        def.down_cooldown,
        d,
    );
    if let (Some(t), Some(at)) = (idle_timeout, r.and_then(|u| u.idle_timeout.as_ref())) {
        if t >= Duration::from_secs(defaults::TOMCAT_KEEP_ALIVE_SECS) {
            d.warn(
                at.span(),
                "idle_timeout is not below Tomcat's default keep-alive (20s): a pooled connection may be reused after the node closed it",
            );
        }
    }
    Some(Upstream {
        connect_timeout: connect_timeout?,
        response_timeout: response_timeout?,
        idle_timeout: idle_timeout?,
        max_idle: usize::try_from(max_idle?).ok()?,
        down_cooldown: down_cooldown?,
    })
}

/// `[learned]`, with defaults.
fn learned(raw: Option<Spanned<RawLearned>>, d: &mut Diags) -> Option<LearnedCookies> {
    let raw = raw.map(Spanned::into_inner);
    let r = raw.as_ref();
    let def = LearnedCookies::default();
    let capacity = count(
        r.and_then(|l| l.capacity.as_ref()),
        "capacity",
        2..=100_000_000,
        def.capacity as i64,
        d,
    );
    let ttl = duration(r.and_then(|l| l.ttl.as_ref()), def.ttl, d);
    Some(LearnedCookies {
        capacity: usize::try_from(capacity?).ok()?,
        ttl: ttl?,
    })
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
    Some(Node {
        name: node_name?.get_ref().clone(),
        url: url?,
        ticket_suffixes: suffixes,
        f5_md5: f5,
        jvm_route: jvm_route?,
        backup: r.backup.unwrap_or(false),
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

fn node_url(v: &Str, d: &mut Diags) -> Option<NodeUrl> {
    let text = v.get_ref();
    let bad = |d: &mut Diags, why: &str| {
        d.error(
            v.span(),
            format!("node url `{text}` {why}: expected http(s)://HOST:PORT"),
        );
        None
    };
    let Ok(u) = url::Url::parse(text) else {
        return bad(d, "is not a URL");
    };
    let scheme = match u.scheme() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return bad(d, "must use http or https"),
    };
    if !u.username().is_empty() || u.password().is_some() {
        return bad(d, "must not contain credentials");
    }
    if !matches!(u.path(), "" | "/") || u.query().is_some() || u.fragment().is_some() {
        return bad(d, "must not have a path, query or fragment");
    }
    let (host, ipv4) = match u.host() {
        Some(url::Host::Domain(h)) => (h.to_owned(), None),
        Some(url::Host::Ipv4(ip)) => (ip.to_string(), Some(ip)),
        Some(url::Host::Ipv6(ip)) => (ip.to_string(), None),
        None => return bad(d, "has no host"),
    };
    let port = u.port_or_known_default()?;
    Some(NodeUrl {
        scheme,
        host,
        port,
        ipv4,
    })
}

fn addr(v: &Str, d: &mut Diags) -> Option<SocketAddr> {
    match v.get_ref().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            let hint = match v.get_ref().parse::<IpAddr>() {
                Ok(_) => " (the port is missing)",
                Err(_) => "",
            };
            d.error(
                v.span(),
                format!(
                    "`{}` is not an IP:PORT address{hint}, e.g. \"0.0.0.0:8443\" or \"[::]:8443\"",
                    v.get_ref()
                ),
            );
            None
        }
    }
}

fn file(v: &Str, base: &Path, d: &mut Diags) -> Option<std::path::PathBuf> {
    if v.get_ref().is_empty() {
        d.error(v.span(), "file path is empty");
        return None;
    }
    Some(base.join(v.get_ref()))
}

/// Pool and node names appear in URLs, metrics and logs.
fn name(v: &Str, what: &str, d: &mut Diags) -> bool {
    let s = v.get_ref();
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        d.error(
            v.span(),
            format!("{what} name `{s}` must be non-empty letters, digits, `-`, `_` or `.`"),
        );
    }
    ok
}

/// A cookie name is an RFC 6265 token.
fn cookie_name(v: &Str, d: &mut Diags) -> bool {
    let s = v.get_ref();
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
    if !ok {
        d.error(v.span(), format!("`{s}` is not a valid cookie name"));
    }
    ok
}

/// A ticket suffix is a host name: letters, digits, `-` and `.`
/// (and `_`), not starting with `-`.
fn suffix(v: &Str, d: &mut Diags) -> bool {
    let s = v.get_ref();
    let ok = !s.is_empty()
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !ok {
        d.error(v.span(), format!("ticket suffix `{s}` must be letters, digits, `-`, `.` or `_`, not starting with `-`"));
    } else if s.len() < SHORT_SUFFIX {
        d.warn(
            v.span(),
            format!("ticket suffix `{s}` is shorter than {SHORT_SUFFIX} characters: a random part can end in it by chance"),
        );
    }
    ok
}
