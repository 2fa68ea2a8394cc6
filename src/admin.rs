//! The admin listener (`[admin] listen`, loopback by default), plain
//! HTTP/1.1: `GET /status.json` (every pool's nodes with their state and
//! last check) and `POST /nodes/{name}/drain|disable|enable` (maintenance:
//! a draining node keeps its tickets and sessions but takes no new logins;
//! a disabled one receives nothing). With `[admin] token` set, a POST needs
//! `Authorization: Bearer <token>`.

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

use crate::health::Mode;
use crate::proxy::Proxy;
use crate::routing::{NodeId, NodeStates};

type Resp = Response<Full<Bytes>>;

/// Serves the admin API on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>, token: Option<String>) {
    let token: Arc<Option<String>> = Arc::new(token);
    while let Ok((stream, _)) = listener.accept().await {
        let (proxy, token) = (proxy.clone(), token.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let (proxy, token) = (proxy.clone(), token.clone());
                async move { Ok::<_, Infallible>(handle(&proxy, token.as_deref(), &req)) }
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
pub fn handle(proxy: &Proxy, token: Option<&str>, req: &Request<Incoming>) -> Resp {
    let path = req.uri().path();
    if path == "/status.json" {
        return match *req.method() {
            Method::GET | Method::HEAD => json_response(StatusCode::OK, &status(proxy)),
            _ => text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n"),
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
    if let Some(token) = token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            let mut r = text(StatusCode::UNAUTHORIZED, "a bearer token is required\n");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return r;
        }
    }
    let Some(node) = proxy.table().node_by_name(name) else {
        return text(StatusCode::NOT_FOUND, "no such node\n");
    };
    proxy.health().set_mode(node, mode);
    json_response(
        StatusCode::OK,
        &json!({ "node": name, "state": proxy.health().state(node).as_str() }),
    )
}

/// Every pool with its nodes' states.
pub fn status(proxy: &Proxy) -> serde_json::Value {
    let table = proxy.table();
    let health = proxy.health();
    let pools: Vec<serde_json::Value> = table
        .pools()
        .iter()
        .map(|pool| {
            let nodes: Vec<serde_json::Value> = pool
                .nodes
                .clone()
                .filter_map(|id: NodeId| {
                    let info = table.nodes().get(usize::from(id))?;
                    let (last_check, since) = health.times(id);
                    Some(json!({
                        "name": info.name,
                        "backup": info.backup,
                        "state": health.state(id).as_str(),
                        "last_check_ms_ago": last_check.map(|d| d.as_millis() as u64),
                        "state_since_ms_ago": since.as_millis() as u64,
                    }))
                })
                .collect();
            json!({ "name": pool.name, "nodes": nodes })
        })
        .collect();
    json!({ "pools": pools })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn text(status: StatusCode, body: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
