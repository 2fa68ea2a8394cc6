//! The first step: what a request must pass before it is routed: the
//! target's length (414), its host name (`Host` against the absolute URI:
//! 400; the `listen.hosts` allow-list: 421), the client's request rates
//! (429 with `Retry-After`; the per-address rate under pressure only) and, where a pool asks for one, a verified
//! client certificate (403). No node sees a refused request; the refusal
//! is answered and counted in [`super::answer`].

use std::net::IpAddr;
use std::sync::Arc;

use http::request::Parts;
use http::Method as HttpMethod;

use super::answer::Stop;
use crate::client::ClientConn;
use crate::client_cert::{ClientCert, Status};
use crate::edge::{check_target, client_addr, TargetError};
use crate::generation::Generation;
use crate::state::ProcessState;

/// Passes `parts` on, with the address the client is counted by (the
/// forwarded one from a trusted proxy), or says why it may not be routed.
/// `mapped` is its path as the node's servlet container will map it.
pub(super) fn admit(
    generation: &Generation,
    state: &ProcessState,
    parts: &Parts,
    client: &ClientConn,
    mapped: &str,
) -> Result<IpAddr, Stop> {
    let target = parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if target > generation.limits().max_uri {
        return Err(Stop::UriTooLong);
    }
    let listen = generation.listen();
    let host = check_target(parts.version, &parts.uri, &parts.headers, &listen.hosts).map_err(
        |e| match e {
            TargetError::NotServed => Stop::NotServed,
            TargetError::NoHost => Stop::NoHost,
            TargetError::HostMismatch => Stop::HostMismatch,
            TargetError::UserInfo => Stop::UserInfo,
        },
    )?;
    // Where certificates are asked for by name, a request for a name that
    // asks for one on a connection that did not (or the reverse) would
    // dodge the requirement: it must connect for the name it asks for.
    if let (Some(asked), Some((names, _))) = (client.cert_name, &generation.tls().by_name) {
        let wants = host.is_some_and(|h| names.iter().any(|n| n.eq_ignore_ascii_case(h)));
        if wants != asked {
            return Err(Stop::Misdirected);
        }
    }
    let ip = client_addr(client.peer.ip(), client.trusted, &parts.headers, listen);
    let login = parts.method == HttpMethod::POST && generation.login_kind(mapped).is_some();
    let rate = state.rate();
    // The per-address request rate holds only under pressure: a campus
    // behind one NAT is served in full while casfront has room.
    let pressed = state.under_pressure(generation.limits());
    let checked = rate.check(ip, login, pressed);
    if rate.sweep_due() {
        let rate = Arc::clone(&rate);
        tokio::task::spawn_blocking(move || rate.sweep());
    }
    if let Err(refused) = checked {
        return Err(Stop::RateLimited {
            limit: refused.limit,
            retry_after: refused.retry_after,
        });
    }
    if generation.certs_required() {
        check_cert(generation, parts.uri.path(), mapped, client)?;
    }
    Ok(ip)
}

/// Refused when the pool `path` goes to, or the pool the node will see it
/// in once mapped (`mapped`), needs a verified client certificate and the
/// connection has none.
fn check_cert(
    generation: &Generation,
    path: &str,
    mapped: &str,
    client: &ClientConn,
) -> Result<(), Stop> {
    let cert = client.cert.as_ref();
    let identity = cert.and_then(ClientCert::identity);
    if identity.is_some() {
        return Ok(());
    }
    // An authority-form target (CONNECT) goes on as `/`.
    let path = if path.is_empty() { "/" } else { path };
    let needs = |path: &str| {
        generation
            .table()
            .pool_for(path.as_bytes(), identity)
            .and_then(|(id, _, _)| generation.rules(id))
            .is_some_and(|rules| rules.needs_cert(path))
    };
    if !needs(mapped) && !needs(path) {
        return Ok(());
    }
    Err(match cert.map(|c| c.status) {
        Some(Status::Failed(_)) => Stop::CertFailed,
        _ => Stop::CertMissing,
    })
}
