//! The optional plain-HTTP listener (`listen.http`): every request gets a
//! 301 to the same host, path and query on https. With `listen.hosts`,
//! only a served name is redirected to: a request for another goes to the
//! first name of the list that is not a wildcard. A request without a
//! usable Host gets 400 (so does one for another name when every served
//! name is a wildcard): the redirect never points at a host casfront does
//! not serve, nor at one the client did not name. Its connections count
//! against the same caps as the https listener's.

use std::convert::Infallible;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::current::Current;
use crate::edge::{check_target, host_matches};

/// Where `req` goes on https, listening on `https_port`, serving
/// `hosts` (`listen.hosts`; empty: any name). The name asked for is read
/// as the https listener reads it ([`check_target`]: one valid `Host`,
/// agreeing with an absolute URI, no user information).
pub fn location<B>(req: &Request<B>, https_port: u16, hosts: &[String]) -> Option<String> {
    let asked = check_target(req.version(), req.uri(), req.headers(), &[]).ok()??;
    let served = hosts.is_empty() || hosts.iter().any(|h| host_matches(h, asked));
    let name = match served {
        true => asked,
        false => hosts.iter().find(|h| !h.starts_with("*."))?.as_str(),
    };
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    Some(format!("https://{name}{port}{path}"))
}

fn answer<B>(req: &Request<B>, https_port: u16, hosts: &[String]) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    match location(req, https_port, hosts).and_then(|l| HeaderValue::from_str(&l).ok()) {
        Some(l) => {
            *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
            resp.headers_mut().insert(header::LOCATION, l);
        }
        None => *resp.status_mut() = StatusCode::BAD_REQUEST,
    }
    resp
}

/// Answers every request on `listener` with its https redirect, under the
/// same connection caps and header timeout as the https listener (the
/// connections of both count against `max_connections`).
pub async fn serve(listener: TcpListener, https_port: u16, current: Arc<Current>) {
    let gate = current.state().gate.clone();
    loop {
        let slot = gate
            .wait_for_slot(|| current.generation().limits().max_connections)
            .await;
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let (generation, gate) = (current.generation(), gate.clone());
        let metrics = current.metrics().clone();
        let state = current.state().clone();
        tokio::spawn(async move {
            let _slot = slot;
            let limits = generation.limits().clone();
            let info = generation.client_conn(peer, 0);
            let hosts = Arc::new(generation.listen().hosts.clone());
            drop(generation);
            let pressed = state.under_pressure(&limits);
            let Some(_per_addr) = super::per_address_slot(&gate, &info, &limits, pressed, &metrics)
            else {
                return;
            };
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let hosts = hosts.clone();
                async move { Ok::<_, Infallible>(answer(&req, https_port, &hosts)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(limits.max_header_bytes)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(host: Option<&str>, uri: &str, port: u16) -> Option<String> {
        loc_in(&[], host, uri, port)
    }

    fn loc_in(hosts: &[&str], host: Option<&str>, uri: &str, port: u16) -> Option<String> {
        let mut b = Request::builder().uri(uri);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        location(&b.body(()).unwrap(), port, &hosts)
    }

    /// With `listen.hosts`, a foreign name is never redirected to.
    #[test]
    fn only_served_names_are_redirected_to() {
        let hosts = ["cas.example.edu", "*.cas.example.edu"];
        let to = |host| loc_in(&hosts, Some(host), "/cas/login", 443);
        assert_eq!(
            to("cas.example.edu").as_deref(),
            Some("https://cas.example.edu/cas/login")
        );
        assert_eq!(
            to("x509.cas.example.edu").as_deref(),
            Some("https://x509.cas.example.edu/cas/login")
        );
        assert_eq!(
            to("evil.example").as_deref(),
            Some("https://cas.example.edu/cas/login")
        );
        let wildcards = loc_in(&["*.cas.example.edu"], Some("evil.example"), "/", 443);
        assert_eq!(wildcards, None);
        assert_eq!(loc(Some("evil.example:x@cas.example.edu"), "/", 443), None);
    }

    #[test]
    fn same_host_path_and_query() {
        assert_eq!(
            loc(Some("cas.example.edu"), "/cas/login?service=x", 443).as_deref(),
            Some("https://cas.example.edu/cas/login?service=x")
        );
        assert_eq!(
            loc(Some("cas.example.edu:8080"), "/", 8443).as_deref(),
            Some("https://cas.example.edu:8443/")
        );
        assert_eq!(
            loc(Some("[::1]:80"), "/x", 443).as_deref(),
            Some("https://[::1]/x")
        );
        assert_eq!(
            loc(None, "http://cas.example.edu/cas", 443).as_deref(),
            Some("https://cas.example.edu/cas")
        );
        assert_eq!(loc(None, "/cas", 443), None);
        assert_eq!(loc(Some("evil.example/x"), "/cas", 443), None);
        assert_eq!(loc(Some("a b"), "/cas", 443), None);
    }
}
