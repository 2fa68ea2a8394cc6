//! The request pipeline: one request through named steps, each returning
//! a typed result, on the generation it started with:
//!
//! 1. [`admit`]: target length, host, rate limits, client certificate;
//! 2. read the body prefix when a rule of the pool reads the body, or the
//!    request is a password login ([`crate::upstream::body`]), and hold a
//!    login attempt the failed-login throttle refuses ([`login`]);
//! 3. rewrite the request for the nodes ([`rewrite`]: hop-by-hop and
//!    forwarding headers, HTTP/2 to HTTP/1.1);
//! 4. route and take a connection ([`connect`]), failing over when no
//!    connection can be made;
//! 5. the pool's rules (`host_override`, `[pool.headers]`, then the client
//!    certificate headers, last, so that no rule can forge them), and send;
//!    a pooled connection that closed before the request went out is
//!    retried on a new one, and a request for any node with an idempotent
//!    method and no body that a node took and did not answer goes to
//!    another node;
//! 6. count a login attempt's outcome ([`login`]); learn the cookies the
//!    node sets and add the route cookie ([`cookies`]);
//! 7. rewrite the response ([`rewrite`]: hop-by-hop headers, `Secure` on
//!    every cookie, `[pool.headers]`).
//!
//! Whatever ends a request without a node's answer is a [`Stop`], turned
//! into its status, body, metric and health effect in [`answer`] alone.

mod admit;
pub mod answer;
mod connect;
mod cookies;
mod login;
pub mod rewrite;

use std::time::Instant;

use bytes::Bytes;
use http::{header, Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::client::ClientConn;
use crate::client_cert::ClientCert;
use crate::generation::Generation;
use crate::routing::path::servlet_path;
use crate::routing::{Cause, EntryId, How, Method, NodeId, PoolId, Rule};
use crate::state::ProcessState;
use crate::upstream::body::{read_prefix, RequestBody};
use crate::upstream::{PooledBody, SendError, UpstreamError};
use answer::{Fault, Stop};
use connect::{connect, Routed};
use rewrite::{
    declared_trailers, is_forwarding, prepare_request, prepare_response, request_rules,
    response_rules, secure_cookies,
};

/// What casfront answers with: a node's streamed body, or a short local one.
pub type ResponseBody = Either<PooledBody, Full<Bytes>>;

/// What became of a request, for metrics and the access log.
#[derive(Copy, Clone, Debug, Default)]
pub struct Disposition {
    pub pool: Option<PoolId>,
    pub node: Option<NodeId>,
    pub rule: Option<Rule>,
    pub entry: Option<EntryId>,
    pub how: Option<How>,
    /// Why the first applicable entry fell through, if one did.
    pub cause: Option<Cause>,
    /// The node answered (else casfront did: 4xx, 502, 503, 504).
    pub answered: bool,
}

/// Serves one request on `generation` and counts it.
///
/// This and [`forward`] return an `async move` block rather than being
/// `async fn`s: an `async fn` keeps its arguments twice in its future (as
/// passed, and as its locals), and the request's future is copied whole
/// into a fresh allocation at every request (see `docs/benchmarks.md`).
/// The request comes boxed for the same reason: each layer of the
/// request's future that takes it keeps a slot for it for the future's
/// whole life, 8 bytes boxed against 264.
#[allow(clippy::manual_async_fn)]
pub fn handle<'a>(
    generation: &'a Generation,
    state: &'a ProcessState,
    req: Box<Request<Incoming>>,
    client: &'a ClientConn,
) -> impl std::future::Future<Output = (Response<ResponseBody>, Disposition)> + 'a {
    async move {
        let mut out = Disposition::default();
        let flight = state.flight();
        let resp = match forward(generation, state, req, client, &mut out).await {
            Ok(resp) => resp,
            Err(stop) => answer::respond(generation, &state.metrics, stop),
        };
        drop(flight);
        let status = resp.status().as_u16();
        // A node's failures are counted apart (`upstream_failures`), so
        // `requests` counts what nodes answered.
        let handles = generation.handles();
        match (out.node, out.rule) {
            (Some(node), Some(rule)) if out.answered => handles.request(node, rule, status),
            _ => handles.unrouted(out.pool, status),
        }
        (resp, out)
    }
}

#[allow(clippy::manual_async_fn)] // See `handle`.
fn forward<'a>(
    generation: &'a Generation,
    state: &'a ProcessState,
    req: Box<Request<Incoming>>,
    client: &'a ClientConn,
    out: &'a mut Disposition,
) -> impl std::future::Future<Output = Result<Response<ResponseBody>, Stop>> + 'a {
    async move {
        // The path outlives the request's parts: a shared copy of its
        // bytes, no allocation. An authority-form target (CONNECT) is
        // mapped as `/`.
        let target = req.uri().path_and_query().cloned();
        let mapped = match target.as_ref().map_or("", |t| t.path()) {
            "" => "/".into(),
            path => servlet_path(path),
        };
        let cert = client.cert.as_ref().and_then(ClientCert::identity);
        // In a block: `parts` and `body`, moved into the request at its end,
        // would otherwise keep their room in the future at every later
        // `.await`; and the request boxed, as in [`handle`].
        let (mut req, prefix, source, method, wants_body, mut pending) = {
            let (parts, body) = (*req).into_parts();
            let source = admit::admit(generation, state, &parts, client, &mapped)?;
            let method = Method::from_bytes(parts.method.as_str().as_bytes());
            let wants_body = generation.table().wants_body(
                method,
                mapped.as_bytes(),
                parts.uri.query().map(str::as_bytes),
                cert,
            );
            // A password login's user is in its body.
            let login = (parts.method == http::Method::POST)
                .then(|| generation.login_kind(&mapped))
                .flatten();
            let (prefix, body) = if wants_body || login.is_some() {
                let limits = generation.limits();
                read_prefix(body, limits.body_prefix, limits.body_wait)
                    .await
                    .map_err(|_| Stop::BodyUnreadable)?
            } else {
                (Bytes::new(), RequestBody::Streamed(body))
            };
            let attempt = login.and_then(|l| {
                let body = (&prefix[..], body.cut());
                login::attempt(generation, l, body, parts.uri.query(), &state.logins())
            });
            let pending = match attempt {
                Some(a) => Some(login::begin(state, source, a)?),
                None => None,
            };
            let mut req = Box::new(Request::from_parts(parts, body));
            prepare_request(&mut req, client);
            (req, prefix, source, method, wants_body, pending)
        };
        // Attempts after the first take a new connection: the node that
        // closed one pooled connection may have closed them all.
        let mut again = 0u8;
        loop {
            let routed = Routed {
                method,
                mapped: &mapped,
                body: wants_body.then(|| (&prefix[..], req.body().cut())),
                cert,
            };
            let (pool_id, node, pool, conn) =
                connect(generation, &req, &routed, again > 0, out).await?;
            let rules = generation.rules(pool_id);
            if let Some(rules) = rules {
                if let Some(host) = &rules.host_override {
                    req.headers_mut().insert(header::HOST, host.clone());
                }
                request_rules(&rules.headers, req.headers_mut());
            }
            // Last, so that no header rule can set them either.
            let certs = generation.cert_headers();
            certs.apply(req.headers_mut(), client.cert.as_ref());
            // Nor a trailer: only names no client may set are declared.
            declared_trailers(req.headers_mut(), |n| !certs.strips(n) && !is_forwarding(n));
            // Kept aside to forget a cookie the node expires (its Set-Cookie
            // then carries an empty value). One header after `prepare_request`.
            let sent_cookies = req.headers().get(header::COOKIE).cloned();
            let sent_at = Instant::now();
            match pool.send(conn, req).await {
                Ok(resp) => {
                    out.answered = true;
                    generation.handles().upstream(node, sent_at.elapsed());
                    let mut resp = resp.map(Either::Left);
                    if let Some(p) = pending.take() {
                        let status = resp.status().as_u16();
                        login::settle(generation, state, p, status, resp.headers());
                    }
                    prepare_response(&mut resp);
                    let learning = cookies::Learning {
                        pool: pool_id,
                        node,
                        source,
                        sent: sent_cookies.as_ref(),
                    };
                    cookies::learn(generation, &learning, resp.headers_mut());
                    if let Some(rules) = rules {
                        if rules.secure_cookies {
                            secure_cookies(resp.headers_mut());
                        }
                        response_rules(&rules.headers, resp.headers_mut());
                    }
                    return Ok(resp);
                }
                Err(SendError::Again {
                    req: back,
                    node_failed,
                    sent,
                }) => {
                    // A request the node took and did not answer goes to
                    // another node only if any node would do: one a ticket or
                    // session sent there is that node's (it may have used the
                    // ticket before it failed).
                    if sent && node_failed && out.rule != Some(Rule::Any) {
                        return Err(Stop::Node(node, Fault::Closed));
                    }
                    if node_failed {
                        answer::fault(generation, node, Fault::Closed);
                    }
                    if again == 2 {
                        return Err(Stop::GaveUp);
                    }
                    (req, again) = (back, again + 1);
                }
                Err(SendError::Failed(UpstreamError::ResponseTimeout(_))) => {
                    return Err(Stop::Node(node, Fault::Timeout))
                }
                // The node got an incomplete request: not its failure.
                Err(SendError::Failed(e)) if e.client_side() => return Err(Stop::BodyCut),
                Err(SendError::Failed(_)) => return Err(Stop::Node(node, Fault::Send)),
            }
        }
    }
}
