//! The sections other than pools and nodes, each turned into its part of
//! the [`Config`] with defaults applied: `[listen]`, `[tls]` with its
//! `[[tls.certificate]]` list, `[learned]`, `[limits]`, and a pool's
//! `[pool.health]` and `[pool.upstream]`.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::diag::Diags;
use super::raw::Str;
use super::raw::{
    RawCertificate, RawHealth, RawLearned, RawLimits, RawListen, RawLog, RawRouteCookie, RawTls,
    RawUpstream,
};
use super::state::{read_key, StateDir};
use super::values::{
    addr, cidr, cookie_name, duration, each, file, host_name, secret_file, share, size, threshold,
    warn_if_open,
};
use super::IpNet;
use super::{
    defaults, Certificate, HealthCheck, LearnedCookies, Limits, Listen, Log, LogFormat,
    RouteCookieKeys, Tls, Upstream,
};

pub fn listen(raw: Option<Spanned<RawListen>>, d: &mut Diags) -> Option<Listen> {
    let l = raw?.into_inner();
    let https = l.https.as_ref().and_then(|h| addr(h, d));
    let http = match &l.http {
        None => Some(None),
        Some(h) => addr(h, d).map(Some),
    };
    let trusted_proxies = cidrs(l.trusted_proxies.as_ref(), d);
    let proxy_protocol = cidrs(l.proxy_protocol.as_ref(), d);
    let hosts = each(l.hosts.as_ref(), d, |h, d| host_name(h, "host", true, d));
    Some(Listen {
        https: https?,
        http: http?,
        trusted_proxies: trusted_proxies?,
        hosts: hosts?,
        proxy_protocol: proxy_protocol?,
    })
}

/// A list of addresses and CIDR blocks; every bad one is reported.
fn cidrs(list: Option<&Spanned<Vec<Str>>>, d: &mut Diags) -> Option<Vec<IpNet>> {
    each(list, d, cidr)
}

/// `[tls] cert`/`key` is the default certificate; each
/// `[[tls.certificate]]` adds one chosen by SNI (the first is the default
/// when `[tls]` has none).
pub fn tls(
    raw: Option<Spanned<RawTls>>,
    list: Vec<Option<Spanned<RawCertificate>>>,
    base: &Path,
    d: &mut Diags,
) -> Option<Tls> {
    let raw = raw?;
    let span = raw.span();
    let t = raw.into_inner();
    let mut certificates = Vec::new();
    let mut ok = true;
    match (&t.cert, &t.key) {
        (Some(cert), Some(key)) => {
            let cert = file(cert, base, d);
            let key = secret_file(key, base, d);
            match (cert, key) {
                (Some(cert), Some(key)) => certificates.push(Certificate {
                    cert,
                    key,
                    names: Vec::new(),
                }),
                _ => ok = false,
            }
        }
        (None, None) if !list.is_empty() => {}
        (None, None) => {
            d.error(
                span,
                "[tls] needs `cert` and `key` (or a [[tls.certificate]] list)",
            );
            ok = false;
        }
        (Some(c), None) => {
            d.error(c.span(), "`tls.cert` is set without `tls.key`");
            ok = false;
        }
        (None, Some(k)) => {
            d.error(k.span(), "`tls.key` is set without `tls.cert`");
            ok = false;
        }
    }
    for c in list {
        match c.and_then(|c| certificate(c.get_ref(), base, d)) {
            Some(c) => certificates.push(c),
            None => ok = false,
        }
    }
    let client = super::client_cert::trust(&t, base, d);
    ok.then_some(Tls {
        certificates,
        client: client?,
    })
}

fn certificate(c: &RawCertificate, base: &Path, d: &mut Diags) -> Option<Certificate> {
    let cert = c.cert.as_ref().and_then(|v| file(v, base, d));
    let key = c.key.as_ref().and_then(|v| secret_file(v, base, d));
    let names = each(c.names.as_ref(), d, |n, d| {
        host_name(n, "certificate name", true, d)
    });
    if let Some(l) = c.names.as_ref().filter(|l| l.get_ref().is_empty()) {
        d.error(
            l.span(),
            "`names` is empty: list the server names, or leave it out to use the certificate's own",
        );
        return None;
    }
    Some(Certificate {
        cert: cert?,
        key: key?,
        names: names?,
    })
}

/// `[limits]`, with defaults.
pub fn limits(raw: Option<Spanned<RawLimits>>, d: &mut Diags) -> Option<Limits> {
    let raw = raw.map(Spanned::into_inner);
    let r = raw.as_ref();
    let def = Limits::default();
    let body_prefix = size(
        r.and_then(|l| l.body_prefix.as_ref()),
        "body_prefix",
        256..=1024 * 1024,
        def.body_prefix,
        d,
    );
    let body_wait = duration(r.and_then(|l| l.body_wait.as_ref()), def.body_wait, d);
    let shutdown_grace = duration(
        r.and_then(|l| l.shutdown_grace.as_ref()),
        def.shutdown_grace,
        d,
    );
    let max_uri = size(
        r.and_then(|l| l.max_uri.as_ref()),
        "max_uri",
        256..=65_536,
        def.max_uri,
        d,
    );
    // hyper's smallest read buffer is 8 KiB.
    let max_header_bytes = size(
        r.and_then(|l| l.max_header_bytes.as_ref()),
        "max_header_bytes",
        8192..=1024 * 1024,
        def.max_header_bytes,
        d,
    );
    let max_connections = size(
        r.and_then(|l| l.max_connections.as_ref()),
        "max_connections",
        1..=1_000_000,
        def.max_connections,
        d,
    );
    let max_connections_per_ip = size(
        r.and_then(|l| l.max_connections_per_ip.as_ref()),
        "max_connections_per_ip",
        1..=1_000_000,
        def.max_connections_per_ip,
        d,
    );
    let pressure = share(
        r.and_then(|l| l.pressure.as_ref()),
        "pressure",
        def.pressure,
        d,
    );
    let handshake_timeout = duration(
        r.and_then(|l| l.handshake_timeout.as_ref()),
        def.handshake_timeout,
        d,
    );
    let header_read_timeout = duration(
        r.and_then(|l| l.header_read_timeout.as_ref()),
        def.header_read_timeout,
        d,
    );
    let idle_timeout = duration(r.and_then(|l| l.idle_timeout.as_ref()), def.idle_timeout, d);
    let send_timeout = duration(r.and_then(|l| l.send_timeout.as_ref()), def.send_timeout, d);
    let h2_max_streams = size(
        r.and_then(|l| l.h2_max_streams.as_ref()),
        "h2_max_streams",
        1..=10_000,
        def.h2_max_streams as usize,
        d,
    );
    let h2_max_resets = size(
        r.and_then(|l| l.h2_max_resets.as_ref()),
        "h2_max_resets",
        1..=1_000_000,
        def.h2_max_resets as usize,
        d,
    );
    Some(Limits {
        body_prefix: body_prefix?,
        body_wait: body_wait?,
        shutdown_grace: shutdown_grace?,
        max_uri: max_uri?,
        max_header_bytes: max_header_bytes?,
        max_connections: max_connections?,
        max_connections_per_ip: max_connections_per_ip?,
        pressure: pressure?,
        handshake_timeout: handshake_timeout?,
        header_read_timeout: header_read_timeout?,
        idle_timeout: idle_timeout?,
        send_timeout: send_timeout?,
        h2_max_streams: u32::try_from(h2_max_streams?).ok()?,
        h2_max_resets: u32::try_from(h2_max_resets?).ok()?,
    })
}

pub fn log(raw: Option<Spanned<RawLog>>, d: &mut Diags) -> Option<Log> {
    let raw = raw.map(Spanned::into_inner);
    let r = raw.as_ref();
    let def = Log::default();
    let format = match r.and_then(|l| l.format.as_ref()) {
        None => Some(def.format),
        Some(f) => match f.get_ref().as_str() {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            other => {
                d.error(
                    f.span(),
                    format!("log format `{other}`: expected `text` or `json`"),
                );
                None
            }
        },
    };
    let level = match r.and_then(|l| l.level.as_ref()) {
        None => Some(def.level),
        Some(l) => match l.get_ref().parse::<tracing::Level>() {
            Ok(level) => Some(level),
            Err(_) => {
                d.error(
                    l.span(),
                    format!(
                        "log level `{}`: expected one of error, warn, info, debug, trace",
                        l.get_ref()
                    ),
                );
                None
            }
        },
    };
    Some(Log {
        access: r.and_then(|l| l.access).unwrap_or(def.access),
        format: format?,
        level: level?,
    })
}

pub fn health(raw: Option<Spanned<RawHealth>>, prefix: &str, d: &mut Diags) -> Option<HealthCheck> {
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
    // Pointing at whichever of the two was set (the defaults do not overlap).
    let set = h.and_then(|h| h.timeout.as_ref().or(h.interval.as_ref()));
    if let (Some(i), Some(t), Some(at)) = (interval, timeout, set) {
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
    Some(HealthCheck {
        path: path?,
        interval: interval?,
        timeout: timeout?,
        rise: rise?,
        fall: fall?,
    })
}

/// `[pool.upstream]`, with defaults.
pub fn upstream(raw: Option<Spanned<RawUpstream>>, d: &mut Diags) -> Option<Upstream> {
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
    let max_idle = size(
        r.and_then(|u| u.max_idle.as_ref()),
        "max_idle",
        0..=10_000,
        def.max_idle,
        d,
    );
    let max_connections = size(
        r.and_then(|u| u.max_connections.as_ref()),
        "max_connections",
        0..=100_000,
        def.max_connections,
        d,
    );
    let queue_timeout = duration(
        r.and_then(|u| u.queue_timeout.as_ref()),
        def.queue_timeout,
        d,
    );
    // Only when both were set: the default max_idle (256) above a small cap
    // is no mistake of the reader's.
    if let (Some(cap), Some(idle), Some(at), Some(_)) = (
        max_connections,
        max_idle,
        r.and_then(|u| u.max_connections.as_ref()),
        r.and_then(|u| u.max_idle.as_ref()),
    ) {
        if cap > 0 && idle > cap {
            d.warn(
                at.span(),
                format!("max_idle ({idle}) is above max_connections ({cap}): at most {cap} connections per node are kept"),
            );
        }
    }
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
        max_idle: max_idle?,
        max_connections: max_connections?,
        queue_timeout: queue_timeout?,
        down_cooldown: down_cooldown?,
    })
}

/// `[learned]`, with defaults.
pub fn learned(raw: Option<Spanned<RawLearned>>, d: &mut Diags) -> Option<LearnedCookies> {
    let raw = raw.map(Spanned::into_inner);
    let r = raw.as_ref();
    let def = LearnedCookies::default();
    let capacity = size(
        r.and_then(|l| l.capacity.as_ref()),
        "capacity",
        2..=100_000_000,
        def.capacity,
        d,
    );
    let ttl = duration(r.and_then(|l| l.ttl.as_ref()), def.ttl, d);
    Some(LearnedCookies {
        capacity: capacity?,
        ttl: ttl?,
    })
}

/// `[pool.route_cookie]`: the cookie's name and its keys, read from their
/// files now so that `casfront check` reports a bad key with its place.
/// On unless `enabled = false`; without `key_file`, the key is the state
/// directory's (`state`), read here if it exists, created at start if not.
pub fn route_cookie(
    raw: Option<Spanned<RawRouteCookie>>,
    base: &Path,
    state: Option<&StateDir>,
    span: Range<usize>,
    d: &mut Diags,
) -> Option<Option<RouteCookieKeys>> {
    let raw = raw.map(Spanned::into_inner);
    if raw.as_ref().and_then(|r| r.enabled) == Some(false) {
        return Some(None);
    }
    let (name, key_file, previous) = match raw {
        Some(r) => (r.name, r.key_file, r.previous_key_file),
        None => (None, None, None),
    };
    let name = match &name {
        Some(n) if cookie_name(n, d) => Some(n.get_ref().clone()),
        Some(_) => None,
        None => Some(defaults::ROUTE_COOKIE.to_owned()),
    };
    let key = |v: &Str, d: &mut Diags| -> Option<[u8; 32]> {
        let path = secret_file(v, base, d)?;
        read_key(&path).map_err(|e| d.error(v.span(), e)).ok()
    };
    let previous = match &previous {
        // A rotation names both files: the state key is never "previous".
        Some(v) if key_file.is_none() => {
            d.error(
                v.span(),
                "previous_key_file needs key_file (rotate with both set)",
            );
            None
        }
        Some(v) => key(v, d).map(Some),
        None => Some(None),
    };
    let (mut keys, generated) = match &key_file {
        Some(v) => (vec![key(v, d)?], false),
        None => {
            // Read if it exists; a process about to serve creates it.
            let path = state?.route_key();
            warn_if_open(&path, span.clone(), d);
            let keys = match path.exists().then(|| read_key(&path)) {
                Some(Err(e)) => {
                    d.error(span, format!("the state directory's route-cookie key: {e}"));
                    return None;
                }
                Some(Ok(k)) => vec![k],
                None => Vec::new(),
            };
            (keys, true)
        }
    };
    keys.extend(previous?);
    Some(Some(RouteCookieKeys {
        name: name?,
        keys,
        generated,
    }))
}
