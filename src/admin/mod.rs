//! The admin listener (`[admin] listen`, loopback by default), plain
//! HTTP/1.1:
//! - `GET /`: the status page ([`page`]), `GET /status.json`: every pool's
//!   nodes with their state, last check, requests, errors and latency;
//! - `GET /metrics`: Prometheus text ([`crate::metrics`]);
//! - `GET /live`: 200 while the process answers; `GET /ready`: 200 when a
//!   configuration is in force, the process is not shutting down and every
//!   pool has a node that takes new logins, else 503 with the reasons (for
//!   keepalived, Kubernetes and load balancers);
//! - `POST /nodes/{name}/drain|disable|enable` (maintenance: a draining
//!   node keeps its tickets and sessions but takes no new logins; a
//!   disabled one receives nothing) and `POST /reload` (as SIGHUP).
//!
//! With `[admin] token` set, a POST needs `Authorization: Bearer <token>`.
//!
//! A web page in an operator's browser must not reach it: a request whose
//! `Host` is a name other than `localhost` or one of `[admin] hosts` is
//! refused (DNS rebinding: a page's own name made to resolve to the admin
//! address), and so is a POST whose `Origin` names another host or that a
//! browser marks `Sec-Fetch-Site: cross-site` (a cross-site form). `curl`
//! sends neither and is served.

pub mod page;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;

use crate::current::Current;
use crate::generation::Generation;
use crate::health::Mode;
use crate::routing::NodeStates;

type Resp = Response<Full<Bytes>>;

/// Serves the admin API on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, current: Arc<Current>) {
    while let Ok((stream, _)) = listener.accept().await {
        let current = current.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let current = current.clone();
                async move { Ok::<_, Infallible>(handle(&current, &req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Answers one admin request.
pub async fn handle(current: &Arc<Current>, req: &Request<Incoming>) -> Resp {
    let generation = current.generation();
    if let Some(refused) = check_caller(&generation, req) {
        return refused;
    }
    let path = req.uri().path();
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    match path {
        "/" | "/status.json" | "/metrics" | "/live" | "/ready" if !get => {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n")
        }
        "/live" => return text(StatusCode::OK, "live\n"),
        "/ready" => return ready(current, &generation),
        "/" => {
            let reloads = current.metrics().reloads();
            let throttled = current
                .state()
                .logins()
                .throttled(std::time::Instant::now());
            return html(page::render(&rows(&generation), reloads, throttled));
        }
        "/status.json" => return json_response(StatusCode::OK, &status(current, &generation)),
        "/metrics" => {
            let served = generation.tls().certificates.iter();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            current.metrics().certificates(
                served.map(|c| (c.source.as_str(), c.name.as_str(), c.not_after)),
                now,
            );
            let body = current.metrics().encode(
                generation.table(),
                |n| generation.health().state(n),
                generation.learned().len(),
            );
            return reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                body,
            );
        }
        _ => {}
    }
    if path == "/reload" {
        if req.method() != Method::POST {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n");
        }
        if let Some(denied) = check_token(&generation, req) {
            return denied;
        }
        // A client that gives up must not abandon a reload half done.
        let reload = {
            let current = current.clone();
            tokio::spawn(async move { current.reload().await })
        };
        let Ok(reloaded) = reload.await else {
            return text(StatusCode::INTERNAL_SERVER_ERROR, "the reload failed\n");
        };
        return match reloaded {
            Ok(r) => json_response(
                StatusCode::OK,
                &json!({
                    "reloaded": true,
                    "nodes_kept": r.carried.nodes_kept,
                    "nodes_added": r.carried.nodes_added,
                    "learned_kept": r.carried.learned_kept,
                    "warnings": r.warnings,
                    "restart_needed": r.restart_needed,
                }),
            ),
            Err(e) => json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({ "reloaded": false, "error": e.to_string() }),
            ),
        };
    }
    let Some((name, action)) = path
        .strip_prefix("/nodes/")
        .and_then(|rest| rest.split_once('/'))
    else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    let mode = match action {
        "drain" => Mode::Draining,
        "disable" => Mode::Disabled,
        "enable" => Mode::Enabled,
        _ => return text(StatusCode::NOT_FOUND, "not found\n"),
    };
    if req.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n");
    }
    if let Some(denied) = check_token(&generation, req) {
        return denied;
    }
    let Some(node) = generation.table().node_by_name(name) else {
        return text(StatusCode::NOT_FOUND, "no such node\n");
    };
    generation.health().set_mode(node, mode);
    json_response(
        StatusCode::OK,
        &json!({ "node": name, "state": generation.health().state(node).as_str() }),
    )
}

/// `/ready`: 200 `ready`, or 503 with one line per reason.
fn ready(current: &Current, generation: &Generation) -> Resp {
    let mut reasons = Vec::new();
    if current.state().is_stopping() {
        reasons.push("shutting down: no new connections".to_owned());
    }
    let table = generation.table();
    for pool in table.pools() {
        let usable = (pool.nodes.clone()).any(|n| generation.health().state(n).usable_for_any());
        if !usable {
            reasons.push(format!("pool {}: no node takes new logins", pool.name));
        }
    }
    if reasons.is_empty() {
        return text(StatusCode::OK, "ready\n");
    }
    text(StatusCode::SERVICE_UNAVAILABLE, reasons.join("\n") + "\n")
}

/// `None` when the request may come from where it says (see the module
/// header), else the 403 to answer.
fn check_caller(generation: &Generation, req: &Request<Incoming>) -> Option<Resp> {
    let allowed = |name: &str| {
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<std::net::IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || generation
                .admin_hosts()
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name))
    };
    let authority = |v: &str| v.parse::<http::uri::Authority>().ok();
    let host = match req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
    {
        Some(h) => authority(h),
        None => req.uri().authority().cloned(),
    };
    let refused = || {
        Some(text(
            StatusCode::FORBIDDEN,
            "the admin API answers only to its own addresses and [admin] hosts\n",
        ))
    };
    match &host {
        Some(h) if !allowed(h.host()) || h.as_str().contains('@') => return refused(),
        None if req.headers().contains_key(header::HOST) => return refused(),
        _ => {}
    }
    if req.method() == Method::POST {
        let fetch_site = req.headers().get("sec-fetch-site").map(|v| v.as_bytes());
        if fetch_site == Some(b"cross-site") {
            return refused();
        }
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let origin = origin
                .to_str()
                .ok()
                .and_then(|o| o.parse::<http::Uri>().ok());
            let same = match (origin.as_ref().and_then(http::Uri::host), &host) {
                (Some(o), Some(h)) => o.eq_ignore_ascii_case(h.host()),
                _ => false,
            };
            if !same {
                return refused();
            }
        }
    }
    None
}

/// With a token configured, `None` when the request carries it, else the
/// 401 to answer.
fn check_token(generation: &Generation, req: &Request<Incoming>) -> Option<Resp> {
    let token = generation.admin_token()?;
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
        return None;
    }
    let mut r = text(StatusCode::UNAUTHORIZED, "a bearer token is required\n");
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    Some(r)
}

/// One node as the status page and `/status.json` show it.
#[derive(Debug, serde::Serialize)]
pub struct NodeRow {
    pub pool: String,
    pub name: String,
    /// `"config"` or `"dns"` (`[pool.discovery]`).
    pub source: &'static str,
    pub backup: bool,
    pub state: &'static str,
    pub state_since_ms_ago: u64,
    pub last_check_ms_ago: Option<u64>,
    pub requests: u64,
    /// 5xx answers and failed connections or sends.
    pub errors: u64,
    /// Time to the node's response headers, from the histogram.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Every node, in configuration order.
pub fn rows(generation: &Generation) -> Vec<NodeRow> {
    let table = generation.table();
    let health = generation.health();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    table
        .node_ids()
        .filter_map(|(id, info)| {
            let (last_check, since) = health.times(id);
            let (requests, errors, hist) = generation.handles().node_summary(id);
            Some(NodeRow {
                pool: table.pool(info.pool)?.name.clone(),
                name: info.name.clone(),
                source: generation.node_source(id),
                backup: info.backup,
                state: health.state(id).as_str(),
                state_since_ms_ago: since.as_millis() as u64,
                last_check_ms_ago: last_check.map(|d| d.as_millis() as u64),
                requests,
                errors,
                p50_ms: hist.and_then(|h| h.quantile(0.5)).map(ms),
                p99_ms: hist.and_then(|h| h.quantile(0.99)).map(ms),
            })
        })
        .collect()
}

/// Every pool with its nodes.
pub fn status(current: &Current, generation: &Generation) -> serde_json::Value {
    let rows = rows(generation);
    let pools: Vec<serde_json::Value> = generation
        .table()
        .pools()
        .iter()
        .map(|pool| {
            let nodes: Vec<&NodeRow> = rows.iter().filter(|r| r.pool == pool.name).collect();
            json!({ "name": pool.name, "nodes": nodes })
        })
        .collect();
    let (pairs, addresses) = current
        .state()
        .logins()
        .throttled(std::time::Instant::now());
    json!({
        "pools": pools,
        "login_throttle": { "pairs": pairs, "addresses": addresses },
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An answer of the admin API: `status`, `content_type`, `body`.
fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Resp {
    reply(status, "application/json", value.to_string())
}

fn html(body: String) -> Resp {
    reply(StatusCode::OK, "text/html; charset=utf-8", body)
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    reply(status, "text/plain; charset=utf-8", body)
}
