//! Raw serde structs (`deny_unknown_fields`) mirroring the TOML file, and
//! the reader that fills them section by section — `[listen]`, `[tls]` and
//! each `[[tls.certificate]]`, `[client_cert]`, `[admin]`, `[learned]`, `[limits]`,
//! `[rate_limit]`, `[log]`, `[state]`, each `[[pool]]`, its `[pool.health]`,
//! `[pool.upstream]`, `[pool.headers]`, `[pool.route_cookie]`,
//! `[pool.discovery]` and each
//! `[[pool.node]]`
//! — so that one bad section does not hide the problems of the others.
//! Every unknown key is reported (with a suggestion for a typo) before serde
//! reads the section.

use std::ops::Range;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::diag::{closest, fields_of, Diags};

pub type Str = Spanned<String>;

/// A table read on its own. Required keys are `Option` in the struct and
/// listed here, so that all missing ones are reported at once (serde stops
/// at the first); validation treats a `None` there as already reported.
pub trait Section: DeserializeOwned {
    /// How messages name the table.
    const TABLE: &'static str;
    const REQUIRED: &'static [&'static str] = &[];
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    pub https: Option<Str>,
    pub http: Option<Str>,
    pub trusted_proxies: Option<Spanned<Vec<Str>>>,
    pub hosts: Option<Spanned<Vec<Str>>>,
    pub proxy_protocol: Option<Spanned<Vec<Str>>>,
}

impl Section for RawListen {
    const TABLE: &'static str = "[listen]";
    const REQUIRED: &'static [&'static str] = &["https"];
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: Option<Str>,
    pub key: Option<Str>,
    pub client_auth: Option<Str>,
    pub client_ca: Option<Str>,
    pub client_crl: Option<Spanned<Vec<Str>>>,
    pub client_auth_names: Option<Spanned<Vec<Str>>>,
}

impl Section for RawTls {
    const TABLE: &'static str = "[tls]";
}

/// `[client_cert]`: what nodes are told of a client certificate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientCert {
    pub format: Option<Str>,
    pub cert_header: Option<Str>,
    pub subject_header: Option<Str>,
    pub issuer_header: Option<Str>,
    pub serial_header: Option<Str>,
    pub san_header: Option<Str>,
    pub verify_header: Option<Str>,
    pub xfcc: Option<Spanned<bool>>,
}

impl Section for RawClientCert {
    const TABLE: &'static str = "[client_cert]";
}

/// One `[[tls.certificate]]`: a certificate chosen by SNI.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub cert: Option<Str>,
    pub key: Option<Str>,
    pub names: Option<Spanned<Vec<Str>>>,
}

impl Section for RawCertificate {
    const TABLE: &'static str = "[[tls.certificate]]";
    const REQUIRED: &'static [&'static str] = &["cert", "key"];
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub body_prefix: Option<Spanned<i64>>,
    pub body_wait: Option<Str>,
    pub shutdown_grace: Option<Str>,
    pub max_uri: Option<Spanned<i64>>,
    pub max_header_bytes: Option<Spanned<i64>>,
    pub max_connections: Option<Spanned<i64>>,
    pub max_connections_per_ip: Option<Spanned<i64>>,
    pub pressure: Option<Spanned<f64>>,
    pub handshake_timeout: Option<Str>,
    pub header_read_timeout: Option<Str>,
    pub idle_timeout: Option<Str>,
    pub send_timeout: Option<Str>,
    pub h2_max_streams: Option<Spanned<i64>>,
    pub h2_max_resets: Option<Spanned<i64>>,
}

impl Section for RawLimits {
    const TABLE: &'static str = "[limits]";
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub requests_per_second: Option<Spanned<i64>>,
    pub burst: Option<Spanned<i64>>,
    pub login_per_minute: Option<Spanned<i64>>,
    pub login_burst: Option<Spanned<i64>>,
    pub login_failures: Option<Spanned<i64>>,
    pub login_window: Option<Str>,
    pub address_failures: Option<Spanned<i64>>,
    pub address_failure_share: Option<Spanned<f64>>,
    pub address_failure_ceiling: Option<Spanned<i64>>,
    pub max_clients: Option<Spanned<i64>>,
}

impl Section for RawRateLimit {
    const TABLE: &'static str = "[rate_limit]";
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub access: Option<bool>,
    pub format: Option<Str>,
    pub level: Option<Str>,
}

impl Section for RawLog {
    const TABLE: &'static str = "[log]";
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<Str>,
    pub token: Option<Str>,
    pub hosts: Option<Spanned<Vec<Str>>>,
}

impl Section for RawAdmin {
    const TABLE: &'static str = "[admin]";
}

/// A `[[pool]]` table without its `health` and `node` sub-tables, which are
/// read on their own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub name: Option<Str>,
    pub path_prefix: Option<Str>,
    pub tgc_cookies: Option<Spanned<Vec<Str>>>,
    pub session_cookie: Option<Str>,
    pub host_override: Option<Str>,
    pub upstream_ca: Option<Str>,
    pub client_cert_required: Option<Spanned<bool>>,
    pub client_cert_paths: Option<Spanned<Vec<Str>>>,
    pub client_cert_match: Option<Str>,
    pub bigip_cookie: Option<Str>,
    pub ticket_routing: Option<bool>,
    pub secure_cookies: Option<bool>,
    pub login_username_field: Option<Str>,
}

impl Section for RawPool {
    const TABLE: &'static str = "[[pool]]";
    const REQUIRED: &'static [&'static str] = &["name", "path_prefix"];
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub path: Option<Str>,
    pub interval: Option<Str>,
    pub timeout: Option<Str>,
    pub rise: Option<Spanned<i64>>,
    pub fall: Option<Spanned<i64>>,
}

impl Section for RawHealth {
    const TABLE: &'static str = "[pool.health]";
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub name: Option<Str>,
    pub url: Option<Str>,
    pub ticket_suffixes: Option<Spanned<Vec<Str>>>,
    pub f5_md5: Option<Spanned<bool>>,
    pub jvm_route: Option<Str>,
    pub backup: Option<bool>,
    pub server_name: Option<Str>,
}

impl Section for RawNode {
    const TABLE: &'static str = "[[pool.node]]";
    const REQUIRED: &'static [&'static str] = &["name", "url"];
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub connect_timeout: Option<Str>,
    pub response_timeout: Option<Str>,
    pub idle_timeout: Option<Str>,
    pub max_idle: Option<Spanned<i64>>,
    pub max_connections: Option<Spanned<i64>>,
    pub queue_timeout: Option<Str>,
    pub down_cooldown: Option<Str>,
}

impl Section for RawUpstream {
    const TABLE: &'static str = "[pool.upstream]";
}

/// Header names to values (sorted by name).
pub type RawHeaderMap = Spanned<std::collections::BTreeMap<Str, Str>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaders {
    pub request_set: Option<RawHeaderMap>,
    pub request_remove: Option<Spanned<Vec<Str>>>,
    pub response_set: Option<RawHeaderMap>,
    pub response_remove: Option<Spanned<Vec<Str>>>,
}

impl Section for RawHeaders {
    const TABLE: &'static str = "[pool.headers]";
}

/// `[pool.route_cookie]`: casfront's own sealed route cookie.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteCookie {
    pub enabled: Option<bool>,
    pub name: Option<Str>,
    pub key_file: Option<Str>,
    pub previous_key_file: Option<Str>,
}

impl Section for RawRouteCookie {
    const TABLE: &'static str = "[pool.route_cookie]";
}

/// `[pool.discovery]`: the pool's nodes from DNS.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscovery {
    pub srv: Option<Str>,
    pub hosts: Option<Str>,
    pub port: Option<Spanned<i64>>,
    pub scheme: Option<Str>,
    pub interval: Option<Str>,
    pub resolver: Option<Str>,
    pub grace: Option<Str>,
}

impl Section for RawDiscovery {
    const TABLE: &'static str = "[pool.discovery]";
}

/// `[state]`: where casfront keeps what must outlive the process.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub directory: Option<Str>,
}

impl Section for RawState {
    const TABLE: &'static str = "[state]";
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLearned {
    pub capacity: Option<Spanned<i64>>,
    pub ttl: Option<Str>,
}

impl Section for RawLearned {
    const TABLE: &'static str = "[learned]";
}

/// A pool with the sections read separately. A section that could not be
/// read is `None` (its errors are already reported).
#[derive(Debug)]
pub struct PoolSections {
    pub span: Range<usize>,
    pub pool: Option<RawPool>,
    pub health: Option<Spanned<RawHealth>>,
    pub upstream: Option<Spanned<RawUpstream>>,
    pub headers: Option<Spanned<RawHeaders>>,
    pub route_cookie: Option<Spanned<RawRouteCookie>>,
    pub discovery: Option<Spanned<RawDiscovery>>,
    pub nodes: Vec<Option<Spanned<RawNode>>>,
}

/// The whole file, read as far as it could be.
#[derive(Debug, Default)]
pub struct Raw {
    pub listen: Option<Spanned<RawListen>>,
    pub tls: Option<Spanned<RawTls>>,
    /// Each `[[tls.certificate]]`; `None` for one that could not be read.
    pub certificates: Vec<Option<Spanned<RawCertificate>>>,
    pub client_cert: Option<Spanned<RawClientCert>>,
    pub admin: Option<Spanned<RawAdmin>>,
    pub learned: Option<Spanned<RawLearned>>,
    pub limits: Option<Spanned<RawLimits>>,
    pub rate_limit: Option<Spanned<RawRateLimit>>,
    pub log: Option<Spanned<RawLog>>,
    pub state: Option<Spanned<RawState>>,
    pub pools: Vec<PoolSections>,
    /// Which sections were present (missing ones are reported by validation).
    pub has_listen: bool,
    pub has_tls: bool,
}

const TOP: &[&str] = &[
    "listen",
    "tls",
    "client_cert",
    "admin",
    "learned",
    "limits",
    "rate_limit",
    "log",
    "state",
    "pool",
];
const TLS_SUBTABLES: &[&str] = &["certificate"];
const POOL_SUBTABLES: &[&str] = &[
    "health",
    "upstream",
    "headers",
    "route_cookie",
    "discovery",
    "node",
];

/// Reads the file's sections. `None` only when the TOML itself is invalid.
pub fn read(source: &str, diags: &mut Diags) -> Option<Raw> {
    let (root, errors) = DeTable::parse_recoverable(source);
    if !errors.is_empty() {
        for e in &errors {
            diags.toml(e, 0..0);
        }
        return None;
    }
    let mut raw = Raw::default();
    for (key, value) in root.into_inner() {
        match key.get_ref().as_ref() {
            "listen" => {
                raw.has_listen = true;
                raw.listen = section(value, &[], diags);
            }
            "tls" => {
                raw.has_tls = true;
                read_tls(value, &mut raw, diags);
            }
            "client_cert" => raw.client_cert = section(value, &[], diags),
            "admin" => raw.admin = section(value, &[], diags),
            "learned" => raw.learned = section(value, &[], diags),
            "limits" => raw.limits = section(value, &[], diags),
            "rate_limit" => raw.rate_limit = section(value, &[], diags),
            "log" => raw.log = section(value, &[], diags),
            "state" => raw.state = section(value, &[], diags),
            "pool" => {
                for (pool, span) in array_of_tables(value, "pool", diags) {
                    raw.pools.push(read_pool(pool, span, diags));
                }
            }
            other => unknown(diags, key.span(), other, TOP, "section"),
        }
    }
    Some(raw)
}

fn read_tls(value: Spanned<DeValue<'_>>, raw: &mut Raw, diags: &mut Diags) {
    let span = value.span();
    let mut value = value.into_inner();
    let certificates = match &mut value {
        DeValue::Table(t) => t.remove("certificate"),
        _ => None,
    };
    raw.tls = section(Spanned::new(span, value), TLS_SUBTABLES, diags);
    raw.certificates = certificates
        .map(|c| array_of_tables(c, "tls.certificate", diags))
        .unwrap_or_default()
        .into_iter()
        .map(|(t, s)| section(Spanned::new(s, DeValue::Table(t)), &[], diags))
        .collect();
}

fn read_pool(mut table: DeTable<'_>, span: Range<usize>, diags: &mut Diags) -> PoolSections {
    let health = table.remove("health");
    let upstream = table.remove("upstream");
    let headers = table.remove("headers");
    let route_cookie = table.remove("route_cookie");
    let discovery = table.remove("discovery");
    let nodes = table.remove("node");
    let value = Spanned::new(span.clone(), DeValue::Table(table));
    let pool = section::<RawPool>(value, POOL_SUBTABLES, diags).map(Spanned::into_inner);
    let health = health.and_then(|h| section(h, &[], diags));
    let upstream = upstream.and_then(|u| section(u, &[], diags));
    let headers = headers.and_then(|h| section(h, &[], diags));
    let route_cookie = route_cookie.and_then(|r| section(r, &[], diags));
    let discovery = discovery.and_then(|r| section(r, &[], diags));
    let nodes = nodes
        .map(|n| array_of_tables(n, "pool.node", diags))
        .unwrap_or_default()
        .into_iter()
        .map(|(t, s)| section(Spanned::new(s, DeValue::Table(t)), &[], diags))
        .collect();
    PoolSections {
        span,
        pool,
        health,
        upstream,
        headers,
        route_cookie,
        discovery,
        nodes,
    }
}

/// Reads one table into `T`: reports every unknown key (those in `also`
/// belong to the caller) and every missing required key, then lets serde
/// read the rest; a value serde rejects is reported and dropped, and the
/// table read again, so that every bad value is reported.
fn section<T: Section>(
    value: Spanned<DeValue<'_>>,
    also: &[&str],
    diags: &mut Diags,
) -> Option<Spanned<T>> {
    let span = value.span();
    let DeValue::Table(mut table) = value.into_inner() else {
        diags.error(span, format!("{} must be a table", T::TABLE));
        return None;
    };
    let fields = fields_of::<T>();
    let mut known: Vec<&str> = fields.to_vec();
    known.extend_from_slice(also);
    let unknown_keys: Vec<(String, Range<usize>)> = table
        .iter()
        .filter(|(k, _)| !fields.contains(&k.get_ref().as_ref()))
        .map(|(k, _)| (k.get_ref().to_string(), k.span()))
        .collect();
    for (name, at) in unknown_keys {
        unknown(diags, at, &name, &known, "key");
        table.remove(name.as_str());
    }
    for key in T::REQUIRED {
        if !table.contains_key(*key) {
            diags.error(span.clone(), format!("missing key `{key}` in {}", T::TABLE));
        }
    }
    loop {
        let de = ValueDeserializer::from(Spanned::new(span.clone(), DeValue::Table(table.clone())));
        let err = match T::deserialize(de) {
            Ok(t) => return Some(Spanned::new(span, t)),
            Err(e) => e,
        };
        diags.toml(&err, span.clone());
        let at = err.span().map(|s| s.start)?;
        let culprit = table
            .iter()
            .find(|(k, v)| k.span().contains(&at) || v.span().contains(&at))
            .map(|(k, _)| k.get_ref().to_string())?;
        table.remove(culprit.as_str());
    }
}

/// The tables of an array of tables (`[[pool]]`), with their spans.
fn array_of_tables<'i>(
    value: Spanned<DeValue<'i>>,
    what: &str,
    diags: &mut Diags,
) -> Vec<(DeTable<'i>, Range<usize>)> {
    let span = value.span();
    let DeValue::Array(items) = value.into_inner() else {
        diags.error(
            span,
            format!("`{what}` must be an array of tables: write [[{what}]]"),
        );
        return Vec::new();
    };
    let mut tables = Vec::new();
    for item in items {
        let span = item.span();
        match item.into_inner() {
            DeValue::Table(t) => tables.push((t, span)),
            _ => diags.error(span, format!("each `{what}` must be a table")),
        }
    }
    tables
}

fn unknown(diags: &mut Diags, span: Range<usize>, name: &str, known: &[&str], what: &str) {
    let hint = closest(name, known)
        .map(|k| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default();
    diags.error(
        span,
        format!(
            "unknown {what} `{name}`{hint}; expected one of: {}",
            known.join(", ")
        ),
    );
}
