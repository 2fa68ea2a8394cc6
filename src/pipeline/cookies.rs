//! The step after a node answers: learn (or forget) the pool's TGT and
//! session cookies its response sets, and follow the cookie learned with
//! casfront's sealed route cookie (unless `[pool.route_cookie] enabled =
//! false`). A cookie that names its node (a jvmRoute, a TGT id with the
//! node's suffix) routes by itself: it is neither learned nor followed.

use std::net::IpAddr;
use std::time::Instant;

use http::header::{self, HeaderMap, HeaderValue};

use crate::generation::Generation;
use crate::routing::set_cookie::parse_set_cookie;
use crate::routing::{names_its_node, parse, NodeId, PoolId};

/// Whose response is learned from.
pub(super) struct Learning<'a> {
    pub pool: PoolId,
    pub node: NodeId,
    /// The client's address (the forwarded one from a trusted proxy):
    /// each address may fill only its share of the learned table.
    pub source: IpAddr,
    /// The request's `Cookie`, to forget a cookie the node expires.
    pub sent: Option<&'a HeaderValue>,
}

/// Learns from the `Set-Cookie` headers of a node's response and appends
/// the pool's route cookie when one follows.
pub(super) fn learn(generation: &Generation, from: &Learning<'_>, headers: &mut HeaderMap) {
    let route = learn_from(generation, from, headers)
        .and_then(|followed| route_cookie(generation, from.pool, from.node, followed));
    if let Some(route) = route {
        headers.append(header::SET_COOKIE, route);
    }
}

/// Learns (or forgets) the pool's TGT and session cookies set in
/// `headers`. Returns the `Set-Cookie` the route cookie follows: a TGT
/// cookie rather than the session's, one set rather than one expired
/// (`true`: expired).
fn learn_from<'h>(
    generation: &Generation,
    from: &Learning<'_>,
    headers: &'h HeaderMap,
) -> Option<(&'h [u8], bool)> {
    let (pool_id, node) = (from.pool, from.node);
    let table = generation.table();
    let pool = table.pool(pool_id)?;
    let learned = generation.learned();
    let mut followed: Option<(&[u8], bool, bool)> = None;
    for set in headers.get_all(header::SET_COOKIE) {
        let Some((name, value, expired)) = parse_set_cookie(set.as_bytes()) else {
            continue;
        };
        let tgc = pool.tgc_cookies.iter().any(|c| **c == *name);
        if *name != *pool.session_cookie && !tgc {
            continue;
        }
        if expired {
            if let Some(sent) = from.sent {
                let sent = [("cookie", sent.as_bytes())];
                if let Some(old) = parse::cookie(&sent[..], name) {
                    learned.forget(pool_id, name, old);
                }
            }
        } else if !value.is_empty() {
            // A jvmRoute or a readable TGT id routes by itself: nothing to
            // learn, and no route cookie to seal for it.
            if names_its_node(table, pool_id, tgc, name, value) {
                continue;
            }
            let now = Instant::now();
            if !learned.learn(pool_id, name, value, node, now, from.source) {
                tracing::debug!(source = %from.source, "learned table: the address has its share");
            }
        } else {
            continue;
        }
        // (set, TGT cookie) ranks above (expired, session cookie).
        let better = followed
            .is_none_or(|(_, was_expired, was_tgc)| (!expired, tgc) > (!was_expired, was_tgc));
        if better {
            followed = Some((set.as_bytes(), expired, tgc));
        }
    }
    followed.map(|(set, expired, _)| (set, expired))
}

/// The pool's route cookie naming `node` for a response that sets (or
/// expires) the cookie `followed`; `None` when the pool has none.
fn route_cookie(
    generation: &Generation,
    pool_id: PoolId,
    node: NodeId,
    followed: (&[u8], bool),
) -> Option<HeaderValue> {
    let table = generation.table();
    let pool = table.pool(pool_id)?;
    let rc = pool.route_cookie.as_ref()?;
    let path = std::str::from_utf8(&pool.prefix).unwrap_or("/");
    let cookie = rc.set_cookie(&pool.name, path, &table.node(node)?.name, followed)?;
    HeaderValue::from_str(&cookie).ok()
}
