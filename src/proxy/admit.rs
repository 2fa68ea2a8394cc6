//! What a request must pass before it is routed: the target's length
//! (414), its host name (`Host` against the absolute URI: 400; the
//! `listen.hosts` allow-list: 421), the client's request rates (429 with
//! `Retry-After`) and, where a pool asks for one, a verified client
//! certificate (403). Each refusal is counted; no node sees the request.

use std::borrow::Cow;
use std::sync::Arc;

use http::header::HeaderValue;
use http::request::Parts;
use http::{header, Method as HttpMethod, Response, StatusCode};

use super::{local, ProxyBody};
use crate::client_cert::{ClientCert, Status};
use crate::config::Config;
use crate::edge::rate::Limit;
use crate::edge::{check_target, client_addr, TargetError};
use crate::metrics::Refusal;
use crate::proxy::forward::ClientInfo;
use crate::proxy::Proxy;

/// Paths whose POST is a password login, per pool: `/login` (the form)
/// and `/v1/tickets` (REST).
pub fn login_paths(config: &Config) -> Vec<String> {
    let mut paths = Vec::new();
    for pool in &config.pools {
        let prefix = pool.path_prefix.trim_end_matches('/');
        paths.push(format!("{prefix}/login"));
        paths.push(format!("{prefix}/v1/tickets"));
    }
    paths
}

/// A pool's client certificate requirement.
#[derive(Debug)]
pub struct PoolCertRule {
    required: bool,
    /// Normalised paths, prefixes on segment boundaries.
    paths: Vec<String>,
}

impl PoolCertRule {
    /// Per pool; empty when no pool requires a certificate anywhere, so
    /// that a request checks nothing.
    pub fn of(config: &Config) -> Vec<PoolCertRule> {
        let used =
            |p: &crate::config::Pool| p.client_cert.required || !p.client_cert.paths.is_empty();
        if !config.pools.iter().any(used) {
            return Vec::new();
        }
        config
            .pools
            .iter()
            .map(|p| PoolCertRule {
                required: p.client_cert.required,
                paths: p.client_cert.paths.clone(),
            })
            .collect()
    }

    fn needs(&self, path: &str) -> bool {
        self.required
            || self.paths.iter().any(|p| {
                path.strip_prefix(p.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
    }
}

impl Proxy {
    /// The response refusing `parts`, if it may not be routed.
    pub(super) fn admit(&self, parts: &Parts, client: &ClientInfo) -> Option<Response<ProxyBody>> {
        let metrics = &self.metrics;
        let target = parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
        if target > self.limits.max_uri {
            metrics.refused(Refusal::UriTooLong);
            return Some(local(
                StatusCode::URI_TOO_LONG,
                "casfront: the request target is too long\n",
            ));
        }
        if let Err(e) = check_target(
            parts.version,
            &parts.uri,
            &parts.headers,
            &self.listen.hosts,
        ) {
            let (status, body, why) = match e {
                TargetError::NotServed => (
                    StatusCode::MISDIRECTED_REQUEST,
                    "casfront: this host name is not served here\n",
                    Refusal::Host,
                ),
                TargetError::NoHost => (
                    StatusCode::BAD_REQUEST,
                    "casfront: the request needs one valid Host header\n",
                    Refusal::BadTarget,
                ),
                TargetError::HostMismatch => (
                    StatusCode::BAD_REQUEST,
                    "casfront: the request URI and Host name different hosts\n",
                    Refusal::BadTarget,
                ),
            };
            metrics.refused(why);
            return Some(local(status, body));
        }
        let ip = client_addr(
            client.peer.ip(),
            client.trusted,
            &parts.headers,
            &self.listen,
        );
        let login = parts.method == HttpMethod::POST && self.is_login(parts.uri.path());
        let checked = self.rate.check(ip, login);
        if self.rate.sweep_due() {
            let rate = Arc::clone(&self.rate);
            tokio::task::spawn_blocking(move || rate.sweep());
        }
        if let Err(refused) = checked {
            return Some(self.too_many(refused));
        }
        if !self.cert_rules.is_empty() {
            return self.check_cert(parts.uri.path(), client);
        }
        None
    }

    fn too_many(&self, refused: crate::edge::rate::Limited) -> Response<ProxyBody> {
        self.metrics.refused(match refused.limit {
            Limit::Requests => Refusal::RateLimit,
            Limit::Login => Refusal::LoginRateLimit,
        });
        let mut resp = local(
            StatusCode::TOO_MANY_REQUESTS,
            match refused.limit {
                Limit::Requests => "casfront: too many requests from your address; retry later\n",
                Limit::Login => {
                    "casfront: too many login attempts from your address; retry later\n"
                }
            },
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(refused.retry_after));
        resp
    }

    /// 403 when the pool `path` goes to, or the pool the node will see it
    /// in once mapped as a servlet container maps it, needs a verified
    /// client certificate and the connection has none.
    fn check_cert(&self, path: &str, client: &ClientInfo) -> Option<Response<ProxyBody>> {
        let cert = client.cert.as_ref();
        let identity = cert.and_then(ClientCert::identity);
        if identity.is_some() {
            return None;
        }
        // An authority-form target (CONNECT) goes on as `/`.
        let path = if path.is_empty() { "/" } else { path };
        let mapped = servlet_path(path);
        let needs = |path: &str| {
            self.table
                .pool_for(path.as_bytes(), identity)
                .and_then(|(id, _, _)| self.cert_rules.get(usize::from(id)))
                .is_some_and(|rule| rule.needs(path))
        };
        if !needs(&mapped) && !needs(path) {
            return None;
        }
        self.metrics.refused(Refusal::ClientCert);
        Some(local(
            StatusCode::FORBIDDEN,
            match cert.map(|c| c.status) {
                Some(Status::Failed(_)) => {
                    "casfront: this address needs a valid client certificate; the one presented could not be verified\n"
                }
                _ => "casfront: this address needs a client certificate; none was presented\n",
            },
        ))
    }

    /// `path`, read as the node's servlet container maps it, is a pool's
    /// login path (CAS's form action carries `;jsessionid=`; a client may
    /// write `/cas/%6Cogin` or `/cas//login` to dodge an exact match).
    fn is_login(&self, path: &str) -> bool {
        let path = servlet_path(path);
        self.login_paths.iter().any(|p| **p == *path)
    }
}

/// `path` as a servlet container maps it: each segment's `;` parameters
/// removed, percent-encodings decoded, empty and `.` segments dropped, `..`
/// applied. Paths with none of these come back as they are.
fn servlet_path(path: &str) -> Cow<'_, str> {
    let plain = !path.contains([';', '%']) && !path.contains("//") && !path.contains("/.");
    if plain {
        return Cow::Borrowed(path);
    }
    let mut out: Vec<Cow<'_, str>> = Vec::new();
    for segment in path.split('/') {
        let segment = segment.split(';').next().unwrap_or("");
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        match &*decoded {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(decoded),
        }
    }
    let mut joined = String::with_capacity(path.len());
    for segment in &out {
        joined.push('/');
        joined.push_str(segment);
    }
    if joined.is_empty() {
        joined.push('/');
    }
    Cow::Owned(joined)
}

#[cfg(test)]
mod tests {
    use super::servlet_path;

    #[test]
    fn login_paths_are_compared_as_the_node_maps_them() {
        for (path, mapped) in [
            ("/cas/login", "/cas/login"),
            ("/cas/login;jsessionid=ABC.cas1", "/cas/login"),
            ("/cas/%6Cogin", "/cas/login"),
            ("/cas//login", "/cas/login"),
            ("/cas/./login", "/cas/login"),
            ("/cas/x/../login", "/cas/login"),
            ("/cas;x=1/login/", "/cas/login"),
            ("/cas/v1/tickets", "/cas/v1/tickets"),
            ("/../..", "/"),
        ] {
            assert_eq!(servlet_path(path), mapped, "{path}");
        }
    }
}
