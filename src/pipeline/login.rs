//! The login step: a password login attempt — a POST to a pool's `/login`
//! (as Tomcat maps the path), `/v1/tickets`, `/v1/users`, or a token
//! endpoint with `grant_type=password` — is checked against the
//! failed-login throttle before it is routed ([`crate::edge::logins`]),
//! and counted by what the node's answer says. Its user is read from the
//! bounded body prefix (the pool's `login_username_field`) and kept only
//! as a keyed hash.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use http::{header, HeaderMap};

use super::answer::Stop;
use crate::edge::logins::{LoginThrottle, Outcome, UserKey};
use crate::generation::{Generation, LoginKind};
use crate::routing::set_cookie::parse_set_cookie;
use crate::routing::PoolId;
use crate::state::ProcessState;

/// A login attempt: what it is, where, and as whom.
#[derive(Copy, Clone, Debug)]
pub(super) struct Attempt {
    kind: LoginKind,
    pool: PoolId,
    user: UserKey,
}

/// The attempt a POST to `kind`'s endpoint in `pool` makes, read from its
/// form body's first bytes and its query; `None` for a token request of
/// another grant. A user the prefix does not name (a JSON body, a field
/// past the prefix) is the empty name: such attempts from one address
/// share one count.
pub(super) fn attempt(
    generation: &Generation,
    (kind, pool): (LoginKind, PoolId),
    body: &[u8],
    query: Option<&str>,
    throttle: &LoginThrottle,
) -> Option<Attempt> {
    let field = generation
        .rules(pool)
        .map_or("username", |r| r.login_field.as_str());
    let mut user = None;
    let mut grant = None;
    let fields = url::form_urlencoded::parse(body)
        .chain(url::form_urlencoded::parse(query.unwrap_or("").as_bytes()));
    for (name, value) in fields {
        if user.is_none() && name == field {
            user = Some(throttle.user(value.as_bytes()));
        } else if grant.is_none() && name == "grant_type" {
            grant = Some(value == "password");
        }
    }
    if kind == LoginKind::Token && grant != Some(true) {
        return None;
    }
    Some(Attempt {
        kind,
        pool,
        user: user.unwrap_or_else(|| throttle.user(b"")),
    })
}

/// Refuses `attempt` from `client` if the throttle holds it back.
pub(super) fn check(state: &ProcessState, client: IpAddr, attempt: &Attempt) -> Result<(), Stop> {
    let throttle = state.logins();
    if !throttle.enabled() {
        return Ok(());
    }
    throttle
        .check(client, attempt.user, Instant::now())
        .map_err(|t| Stop::LoginThrottled {
            address_wide: t.address_wide,
            retry_after: t.retry_after,
        })
}

/// Counts what the node's answer (`status`, `headers`) says of `attempt`.
pub(super) fn record(
    generation: &Generation,
    state: &ProcessState,
    client: IpAddr,
    attempt: &Attempt,
    status: u16,
    headers: &HeaderMap,
) {
    let outcome = outcome(generation, attempt, status, headers);
    state.metrics.login(outcome);
    state
        .logins()
        .record(client, attempt.user, outcome, Instant::now());
}

/// Success, failure or neither, by endpoint: the form succeeds when the
/// node sets a TGT cookie and fails with 401 or 403 (CAS 5 and later) or,
/// on nodes never seen to answer 401 (CAS 3 and 4), with the form again
/// (200); REST `/v1/tickets` succeeds with 201, `/v1/users` and a token
/// endpoint with 200, and they fail with 400, 401 or 403. Anything else (a
/// node error, a redirect elsewhere) counts as neither.
fn outcome(
    generation: &Generation,
    attempt: &Attempt,
    status: u16,
    headers: &HeaderMap,
) -> Outcome {
    let refused = matches!(status, 400 | 401 | 403);
    match attempt.kind {
        LoginKind::Form => {
            if sets_tgt(generation, attempt.pool, headers) {
                return Outcome::Success;
            }
            let rules = generation.rules(attempt.pool);
            if status == 401 {
                if let Some(r) = rules {
                    r.says_401.store(true, Ordering::Relaxed);
                }
            }
            match status {
                401 | 403 => Outcome::Failure,
                200 if !rules.is_some_and(|r| r.says_401.load(Ordering::Relaxed)) => {
                    Outcome::Failure
                }
                _ => Outcome::Other,
            }
        }
        LoginKind::RestTickets if status == 201 => Outcome::Success,
        LoginKind::RestUsers | LoginKind::Token if status == 200 => Outcome::Success,
        _ if refused => Outcome::Failure,
        _ => Outcome::Other,
    }
}

/// Whether `headers` set one of the pool's TGT cookies.
fn sets_tgt(generation: &Generation, pool: PoolId, headers: &HeaderMap) -> bool {
    let Some(pool) = generation.table().pool(pool) else {
        return false;
    };
    headers.get_all(header::SET_COOKIE).iter().any(|set| {
        parse_set_cookie(set.as_bytes()).is_some_and(|(name, value, expired)| {
            !expired && !value.is_empty() && pool.tgc_cookies.iter().any(|c| **c == *name)
        })
    })
}
