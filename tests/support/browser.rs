//! A browser's cookie jar, for tests that log users in through casfront.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use super::client::Reply;

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
