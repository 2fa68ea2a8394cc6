//! The login step: a password login attempt — a POST to a pool's `/login`
//! (as Tomcat maps the path), `/v1/tickets`, `/v1/users`, or a token
//! endpoint with `grant_type=password` — is checked against the
//! failed-login throttle before it is routed ([`crate::edge::logins`]),
//! and counted by what the node's answer says. Its user is read from the
//! bounded body prefix (the pool's `login_username_field`) and kept only
//! as a keyed hash.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{header, HeaderMap};

use super::answer::Stop;
use crate::edge::logins::{LoginThrottle, Outcome, UserKey};
use crate::generation::{Generation, LoginKind};
use crate::routing::parse::{decoded_eq, query_param, with_decoded};
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
/// past the prefix, a value the prefix may have cut) is the empty name:
/// such attempts from one address share one count.
pub(super) fn attempt(
    generation: &Generation,
    (kind, pool): (LoginKind, PoolId),
    (body, cut): (&[u8], bool),
    query: Option<&str>,
    throttle: &LoginThrottle,
) -> Option<Attempt> {
    let field = generation
        .rules(pool)
        .map_or("username", |r| r.login_field.as_str());
    let query = query.unwrap_or("").as_bytes();
    let raw = user_value((body, cut), query, field);
    // Decoded as the node will read it (a name too long to decode here is
    // hashed as sent).
    let user = raw.map_or_else(
        || throttle.user(b""),
        |raw| with_decoded(raw, true, |d| throttle.user(d.unwrap_or(raw))),
    );
    if kind == LoginKind::Token {
        let grant = query_param(body, b"grant_type").or_else(|| query_param(query, b"grant_type"));
        if !grant.is_some_and(|g| decoded_eq(g, b"password", true)) {
            return None;
        }
    }
    Some(Attempt { kind, pool, user })
}

/// The raw value of the form field `field` naming the user: in the body
/// (as servlet containers read a form: the name percent-decoded), else in
/// the query. A value at the very end of a body cut short may be cut too (a
/// client can pause mid-name past `body_wait`): it names no user.
fn user_value<'a>((body, cut): (&'a [u8], bool), query: &'a [u8], field: &str) -> Option<&'a [u8]> {
    let in_body = query_param(body, field.as_bytes())
        .filter(|v| !(cut && v.as_ptr_range().end == body.as_ptr_range().end));
    in_body.or_else(|| query_param(query, field.as_bytes()))
}

/// An attempt the throttle let through, counted as a failure until
/// settled; dropped unsettled (no node answered), it is given back.
pub(super) struct Pending {
    throttle: Arc<LoginThrottle>,
    client: IpAddr,
    attempt: Attempt,
    settled: bool,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.settled {
            let (client, user) = (self.client, self.attempt.user);
            self.throttle
                .finish(client, user, Outcome::Other, Instant::now());
        }
    }
}

/// Lets `attempt` from `client` through, or refuses it if the throttle
/// holds it back.
pub(super) fn begin(
    state: &ProcessState,
    client: IpAddr,
    attempt: Attempt,
) -> Result<Pending, Stop> {
    let throttle = Arc::clone(&state.logins());
    throttle
        .begin(client, attempt.user, Instant::now())
        .map_err(|t| Stop::LoginThrottled {
            address_wide: t.address_wide,
            retry_after: t.retry_after,
        })?;
    Ok(Pending {
        throttle,
        client,
        attempt,
        settled: false,
    })
}

/// Counts what the node's answer (`status`, `headers`) says of the
/// attempt.
pub(super) fn settle(
    generation: &Generation,
    state: &ProcessState,
    mut pending: Pending,
    status: u16,
    headers: &HeaderMap,
) {
    let outcome = outcome(generation, state, &pending.attempt, status, headers);
    state.metrics.login(outcome);
    let (client, user) = (pending.client, pending.attempt.user);
    pending
        .throttle
        .finish(client, user, outcome, Instant::now());
    pending.settled = true;
}

/// What the node's answer says of `attempt`; notes a pool whose nodes
/// answer a failed form login with 401 (kept by the process, across
/// reloads and discovery).
fn outcome(
    generation: &Generation,
    state: &ProcessState,
    attempt: &Attempt,
    status: u16,
    headers: &HeaderMap,
) -> Outcome {
    let pool = generation
        .table()
        .pool(attempt.pool)
        .map_or("", |p| p.name.as_str());
    if attempt.kind == LoginKind::Form && status == 401 {
        state.heard_401(pool);
    }
    let tgt = attempt.kind == LoginKind::Form && sets_tgt(generation, attempt.pool, headers);
    classify(attempt.kind, status, tgt, state.says_401(pool))
}

/// Success, failure or neither, by endpoint: the form succeeds when the
/// node sets a TGT cookie (`tgt`) and fails with 401 or 403 (CAS 5 and
/// later) or, on nodes never seen to answer 401 (`says_401` false: CAS 3
/// and 4), with the form again (200); REST `/v1/tickets` succeeds with
/// 201, `/v1/users` and a token endpoint with 200, and they fail with 400,
/// 401 or 403. Anything else (a node error, a redirect elsewhere, a login
/// flow the node does not know) counts as neither.
fn classify(kind: LoginKind, status: u16, tgt: bool, says_401: bool) -> Outcome {
    match (kind, status) {
        (LoginKind::Form, _) if tgt => Outcome::Success,
        (LoginKind::Form, 401 | 403) => Outcome::Failure,
        (LoginKind::Form, 200) if !says_401 => Outcome::Failure,
        (LoginKind::Form, _) => Outcome::Other,
        (LoginKind::RestTickets, 201) => Outcome::Success,
        (LoginKind::RestUsers | LoginKind::Token, 200) => Outcome::Success,
        (_, 400 | 401 | 403) => Outcome::Failure,
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

#[cfg(test)]
mod tests {
    use super::*;
    use LoginKind::*;
    use Outcome::*;

    #[test]
    fn the_form_as_each_cas_answers_it() {
        // CAS 5 and later: 302 and a TGC on success, 401 and the form on
        // failure; with MFA, 200 (the next step) after a right password.
        assert_eq!(classify(Form, 302, true, true), Success);
        assert_eq!(classify(Form, 401, false, true), Failure);
        assert_eq!(classify(Form, 200, false, true), Other);
        // CAS 3 and 4: the form again, 200, on failure.
        assert_eq!(classify(Form, 200, false, false), Failure);
        assert_eq!(classify(Form, 302, true, false), Success);
        // A TGT cookie on a 200 (no service: "logged in") is a success.
        assert_eq!(classify(Form, 200, true, false), Success);
        // Not a password verdict: an unknown flow (400), the node's own
        // throttle, a node error, a redirect without a TGT.
        for status in [400, 423, 429, 500, 502, 302] {
            assert_eq!(classify(Form, status, false, false), Other, "{status}");
        }
        assert_eq!(classify(Form, 403, false, false), Failure);
    }

    #[test]
    fn the_user_is_its_field_unless_a_cut_may_have_cut_it() {
        let form = b"service=https%3A%2F%2Fapp%2F&user%6Eame=J%C3%BCrgen+M&password=x";
        for cut in [false, true] {
            let v = user_value((form, cut), b"", "username");
            assert_eq!(v, Some(&b"J%C3%BCrgen+M"[..]));
        }
        // The last field of a cut body: perhaps half a name.
        assert_eq!(
            user_value((b"password=x&username=vic", true), b"", "username"),
            None
        );
        let whole = user_value((b"password=x&username=vic", false), b"", "username");
        assert_eq!(whole, Some(&b"vic"[..]));
        // Then the query's, if any.
        let q = user_value((b"username=vic", true), b"username=victim", "username");
        assert_eq!(q, Some(&b"victim"[..]));
        assert_eq!(user_value((b"usernames=a", false), b"", "username"), None);
    }

    #[test]
    fn rest_and_token_endpoints() {
        assert_eq!(classify(RestTickets, 201, false, false), Success);
        assert_eq!(classify(RestTickets, 401, false, false), Failure);
        assert_eq!(classify(RestTickets, 400, false, false), Failure);
        assert_eq!(classify(RestTickets, 200, false, false), Other);
        assert_eq!(classify(RestUsers, 200, false, false), Success);
        assert_eq!(classify(RestUsers, 401, false, false), Failure);
        // OAuth: 400 invalid_grant or 401 for a wrong password.
        assert_eq!(classify(Token, 200, false, false), Success);
        assert_eq!(classify(Token, 400, false, false), Failure);
        assert_eq!(classify(Token, 401, false, false), Failure);
        assert_eq!(classify(Token, 503, false, false), Other);
    }
}
