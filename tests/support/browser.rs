//! A browser's cookie jar, and requests sent with it, for tests that log
//! users in through casfront.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use super::client::{send_tls, Reply};

/// A browser's cookie jar: what nodes set (through casfront) is sent back.
#[derive(Default, Clone, Debug)]
pub struct Jar(pub std::collections::BTreeMap<String, String>);

impl Jar {
    pub fn header(&self) -> String {
        let pairs: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.join("; ")
    }

    pub fn absorb(&mut self, r: &Reply) {
        for set in r.headers.get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let (pair, attrs) = set.split_once(';').unwrap_or((set, ""));
            let (k, v) = pair.split_once('=').unwrap();
            if attrs.to_ascii_lowercase().contains("max-age=0") {
                self.0.remove(k.trim());
            } else {
                self.0.insert(k.trim().into(), v.trim().into());
            }
        }
    }
}

/// One request as a browser sends it: a new TLS connection to `addr`,
/// `jar`'s cookies, a form body; the cookies set in the answer go into
/// `jar`.
pub async fn send(
    tls: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    jar: &mut Jar,
    method: &str,
    target: &str,
    body: &str,
) -> Reply {
    let cookie = jar.header();
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
    if !cookie.is_empty() {
        headers.push(("cookie", &cookie));
    }
    let r = send_tls(tls, addr, "localhost", method, target, &headers, body).await;
    jar.absorb(&r);
    r
}
