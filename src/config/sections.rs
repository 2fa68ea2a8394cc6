//! The sections other than pools and nodes, each turned into its part of
//! the [`Config`] with defaults applied: `[listen]`, `[tls]` with its
//! `[[tls.certificate]]` list, `[learned]`, `[limits]`, and a pool's
//! `[pool.health]` and `[pool.upstream]`.

use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::diag::Diags;
use super::raw::{
    RawCertificate, RawHealth, RawLearned, RawLimits, RawListen, RawLog, RawTls, RawUpstream,
};
use super::values::{addr, cidr, count, duration, file, host_name, threshold};
use super::{
    defaults, Certificate, Health, LearnedCookies, Limits, Listen, Log, LogFormat, Tls, Upstream,
};

pub fn listen(raw: Option<Spanned<RawListen>>, d: &mut Diags) -> Option<Listen> {
    let l = raw?.into_inner();
    let https = l.https.as_ref().and_then(|h| addr(h, d));
    let http = match &l.http {
        None => Some(None),
        Some(h) => addr(h, d).map(Some),
    };
    let mut trusted_proxies = Vec::new();
    let mut ok = true;
    for p in l.trusted_proxies.iter().flat_map(|l| l.get_ref()) {
        match cidr(p, d) {
            Some(net) => trusted_proxies.push(net),
            None => ok = false,
        }
    }
    Some(Listen {
        https: https?,
        http: http?,
        trusted_proxies: ok.then_some(trusted_proxies)?,
    })
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
            let key = file(key, base, d);
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
    ok.then_some(Tls { certificates })
}

fn certificate(c: &RawCertificate, base: &Path, d: &mut Diags) -> Option<Certificate> {
    let cert = c.cert.as_ref().and_then(|v| file(v, base, d));
    let key = c.key.as_ref().and_then(|v| file(v, base, d));
    let names: Option<Vec<String>> = c
        .names
        .iter()
        .flat_map(|l| l.get_ref())
        .map(|n| host_name(n, "certificate name", true, d))
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
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
    let body_prefix = count(
        r.and_then(|l| l.body_prefix.as_ref()),
        "body_prefix",
        256..=1024 * 1024,
        def.body_prefix as i64,
        d,
    );
    let body_wait = duration(r.and_then(|l| l.body_wait.as_ref()), def.body_wait, d);
    let shutdown_grace = duration(
        r.and_then(|l| l.shutdown_grace.as_ref()),
        def.shutdown_grace,
        d,
    );
    let max_uri = count(
        r.and_then(|l| l.max_uri.as_ref()),
        "max_uri",
        256..=65_536,
        def.max_uri as i64,
        d,
    );
    // hyper's smallest read buffer is 8 KiB.
    let max_header_bytes = count(
        r.and_then(|l| l.max_header_bytes.as_ref()),
        "max_header_bytes",
        8192..=1024 * 1024,
        def.max_header_bytes as i64,
        d,
    );
    Some(Limits {
        body_prefix: usize::try_from(body_prefix?).ok()?,
        body_wait: body_wait?,
        shutdown_grace: shutdown_grace?,
        max_uri: usize::try_from(max_uri?).ok()?,
        max_header_bytes: usize::try_from(max_header_bytes?).ok()?,
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

pub fn health(raw: Option<Spanned<RawHealth>>, prefix: &str, d: &mut Diags) -> Option<Health> {
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
    Some(Health {
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
pub fn learned(raw: Option<Spanned<RawLearned>>, d: &mut Diags) -> Option<LearnedCookies> {
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
