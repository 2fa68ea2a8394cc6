//! The one place where a request that no node answers becomes a response:
//! each [`Stop`] has its status, its short body (never a node's address),
//! its metric and its effect on the node's health; and the one place a
//! node's [`Fault`] is counted and, where it means the node is gone, marks
//! it down. Adding a refusal is a variant here and the step that returns it.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};

use super::ResponseBody;
use crate::edge::rate::Limit;
use crate::generation::Generation;
use crate::metrics::{Failure, Metrics, Refusal};
use crate::routing::NodeId;

/// Why a request ends without a node's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The target is longer than `limits.max_uri` (414).
    UriTooLong,
    /// The host is not in `listen.hosts` (421).
    NotServed,
    /// The host asks for a client certificate by name
    /// (`client_auth_names`) and the connection's handshake did not, or
    /// the reverse (421: the client connects again for that name).
    Misdirected,
    /// No valid `Host` (400).
    NoHost,
    /// The absolute URI and `Host` name different hosts (400).
    HostMismatch,
    /// The authority carries user information (400).
    UserInfo,
    /// Over a `[rate_limit]` (429 with `Retry-After`).
    RateLimited { limit: Limit, retry_after: u64 },
    /// A login attempt the failed-login throttle holds back (429 with
    /// `Retry-After` and a page a person understands): too many failures
    /// for this user from this address, or from this address at all.
    LoginThrottled {
        address_wide: bool,
        retry_after: u64,
    },
    /// The path needs a verified client certificate; the connection
    /// presented none (403).
    CertMissing,
    /// The same, and the one presented failed verification (403).
    CertFailed,
    /// The body prefix routing needed could not be read (400).
    BodyUnreadable,
    /// No pool serves the path (404).
    NoService,
    /// No usable node in the pool (503).
    NoNode,
    /// The request body ended early or was malformed on its way to the
    /// node: the client's fault, not the node's (400).
    BodyCut,
    /// The node failed (502), or did not answer in time (504), or stayed
    /// at `max_connections` for `queue_timeout` (503).
    Node(NodeId, Fault),
    /// Every attempt failed; each fault was counted as it happened (502).
    GaveUp,
    /// A routing decision named a node without a pool (500; not expected).
    Internal,
}

/// What went wrong with a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No connection could be made: marked down, another node may take
    /// the request.
    Connect,
    /// A pooled connection closed before the request went out: marked
    /// down; the request is tried again on a new connection.
    Closed,
    /// The request went out and no response came: not marked down (the
    /// node may have acted on it).
    Send,
    /// No response within `response_timeout`.
    Timeout,
    /// At its `max_connections` for `queue_timeout`: busy, not down.
    Queue,
}

/// Counts `fault` against `node` and marks it down where the fault says it
/// is gone.
pub fn fault(generation: &Generation, node: NodeId, fault: Fault) {
    let kind = match fault {
        Fault::Connect => Failure::Connect,
        Fault::Closed | Fault::Send => Failure::Send,
        Fault::Timeout => Failure::Timeout,
        Fault::Queue => Failure::Queue,
    };
    generation.handles().failure(node, kind);
    if matches!(fault, Fault::Connect | Fault::Closed) {
        generation.health().mark_down(node);
    }
}

/// The response for `stop`, counted.
pub fn respond(generation: &Generation, metrics: &Metrics, stop: Stop) -> Response<ResponseBody> {
    if let Some(why) = refusal(stop) {
        metrics.refused(why);
    }
    if let Stop::Node(node, f) = stop {
        fault(generation, node, f);
    }
    let mut resp = match stop {
        Stop::LoginThrottled {
            address_wide,
            retry_after,
        } => throttled_page(address_wide, retry_after),
        _ => {
            let (status, body) = status_and_body(stop);
            local(status, body)
        }
    };
    if let Stop::RateLimited { retry_after, .. } | Stop::LoginThrottled { retry_after, .. } = stop {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    }
    resp
}

/// The refusal counted for `stop`, if it is one.
fn refusal(stop: Stop) -> Option<Refusal> {
    Some(match stop {
        Stop::UriTooLong => Refusal::UriTooLong,
        Stop::NotServed | Stop::Misdirected => Refusal::Host,
        Stop::NoHost | Stop::HostMismatch | Stop::UserInfo => Refusal::BadTarget,
        Stop::RateLimited {
            limit: Limit::Requests,
            ..
        } => Refusal::RateLimit,
        Stop::RateLimited {
            limit: Limit::Login,
            ..
        } => Refusal::LoginRateLimit,
        Stop::CertMissing | Stop::CertFailed => Refusal::ClientCert,
        Stop::LoginThrottled { .. } => Refusal::LoginThrottled,
        _ => return None,
    })
}

fn status_and_body(stop: Stop) -> (StatusCode, &'static str) {
    match stop {
        Stop::UriTooLong => (
            StatusCode::URI_TOO_LONG,
            "casfront: the request target is too long\n",
        ),
        Stop::NotServed => (
            StatusCode::MISDIRECTED_REQUEST,
            "casfront: this host name is not served here\n",
        ),
        Stop::Misdirected => (
            StatusCode::MISDIRECTED_REQUEST,
            "casfront: this connection was made for another host name; connect for the one you ask for\n",
        ),
        Stop::NoHost => (
            StatusCode::BAD_REQUEST,
            "casfront: the request needs one valid Host header\n",
        ),
        Stop::HostMismatch => (
            StatusCode::BAD_REQUEST,
            "casfront: the request URI and Host name different hosts\n",
        ),
        Stop::UserInfo => (
            StatusCode::BAD_REQUEST,
            "casfront: the request target may not carry user information\n",
        ),
        Stop::RateLimited {
            limit: Limit::Requests,
            ..
        } => (
            StatusCode::TOO_MANY_REQUESTS,
            "casfront: too many requests from your address; retry later\n",
        ),
        Stop::RateLimited {
            limit: Limit::Login,
            ..
        } => (
            StatusCode::TOO_MANY_REQUESTS,
            "casfront: too many login attempts from your address; retry later\n",
        ),
        // The page is [`throttled_page`]'s.
        Stop::LoginThrottled { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "casfront: too many failed sign-in attempts; retry later\n",
        ),
        Stop::CertMissing => (
            StatusCode::FORBIDDEN,
            "casfront: this address needs a client certificate; none was presented\n",
        ),
        Stop::CertFailed => (
            StatusCode::FORBIDDEN,
            "casfront: this address needs a valid client certificate; the one presented could not be verified\n",
        ),
        Stop::BodyUnreadable => (
            StatusCode::BAD_REQUEST,
            "casfront: the request body could not be read\n",
        ),
        Stop::NoService => (
            StatusCode::NOT_FOUND,
            "casfront: no service at this path\n",
        ),
        Stop::NoNode => (
            StatusCode::SERVICE_UNAVAILABLE,
            "casfront: no CAS node is available\n",
        ),
        Stop::BodyCut => (
            StatusCode::BAD_REQUEST,
            "casfront: the request body was malformed or cut short\n",
        ),
        Stop::Node(_, Fault::Timeout) => (
            StatusCode::GATEWAY_TIMEOUT,
            "casfront: the CAS node did not answer in time\n",
        ),
        Stop::Node(_, Fault::Queue) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "casfront: the CAS node is busy; try again\n",
        ),
        Stop::Node(..) | Stop::GaveUp => {
            (StatusCode::BAD_GATEWAY, "casfront: the CAS node failed\n")
        }
        Stop::Internal => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "casfront: internal error\n",
        ),
    }
}

/// A short plain-text response of casfront's own.
/// The page a person held back by the failed-login throttle sees.
fn throttled_page(address_wide: bool, retry_after: u64) -> Response<ResponseBody> {
    let minutes = retry_after.div_ceil(60).max(1);
    let whom = if address_wide {
        "from your network"
    } else {
        "for this account from your network"
    };
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Too many failed sign-in attempts</title></head><body>\n\
         <h1>Too many failed sign-in attempts</h1>\n\
         <p>There have been too many failed sign-in attempts {whom}. \
         Please wait about {minutes} minute(s) and try again.</p>\n\
         <p>If you have forgotten your password, use your organisation's \
         password reset service instead of trying again.</p>\n</body></html>\n"
    );
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

fn local(status: StatusCode, body: &'static str) -> Response<ResponseBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from_static(
        body.as_bytes(),
    ))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every refusal before routing is counted under its own name; the
    /// node's failures and the routing misses are not refusals.
    #[test]
    fn refusals_are_counted_and_failures_are_not() {
        assert_eq!(refusal(Stop::UriTooLong), Some(Refusal::UriTooLong));
        assert_eq!(refusal(Stop::CertFailed), Some(Refusal::ClientCert));
        let login = Stop::RateLimited {
            limit: Limit::Login,
            retry_after: 3,
        };
        assert_eq!(refusal(login), Some(Refusal::LoginRateLimit));
        for stop in [Stop::NoNode, Stop::GaveUp, Stop::Node(0, Fault::Send)] {
            assert_eq!(refusal(stop), None, "{stop:?}");
        }
        assert_eq!(status_and_body(login).0, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            status_and_body(Stop::Node(0, Fault::Queue)).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
