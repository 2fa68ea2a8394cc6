//! casfront's own route cookie (`[pool.route_cookie]`), for several
//! casfront instances in front of one cluster with no shared state: when a
//! node sets a TGT or session cookie, casfront adds a cookie whose value is
//! the node's name sealed with ChaCha20-Poly1305 (AWS-LC) under a key from
//! the configuration, the pool's name as associated data. Any instance with
//! the key opens it; one without it, a forged or a stale value opens to
//! nothing and falls through. Never the node's address, never its name in
//! clear. A second key is accepted while keys rotate; the first seals.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Key length, bytes.
pub const KEY_LEN: usize = 32;
/// The longest value opened: a nonce, a node name of up to 64 bytes, a tag.
const MAX_SEALED: usize = NONCE_LEN + 64 + 16;

/// `[pool.route_cookie]`: the cookie's name and keys (the first seals,
/// every one opens). Debug output never shows a key.
#[derive(Clone, PartialEq)]
pub struct RouteCookieKeys {
    pub name: String,
    pub keys: Vec<[u8; KEY_LEN]>,
    /// The key is the one casfront generates in its state directory (no
    /// `key_file`); until the process has it, `keys` is empty.
    pub generated: bool,
}

impl std::fmt::Debug for RouteCookieKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteCookieKeys")
            .field("name", &self.name)
            .field("keys", &self.keys.len())
            .field("generated", &self.generated)
            .finish()
    }
}

/// A pool's route cookie: its name and keys.
pub struct RouteCookie {
    pub name: Box<[u8]>,
    /// The first seals; every one opens.
    keys: Vec<LessSafeKey>,
    rng: SystemRandom,
}

impl std::fmt::Debug for RouteCookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteCookie")
            .field("name", &String::from_utf8_lossy(&self.name))
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl RouteCookie {
    pub fn new(name: &str, keys: &[[u8; KEY_LEN]]) -> RouteCookie {
        let keys = keys
            .iter()
            .filter_map(|k| UnboundKey::new(&CHACHA20_POLY1305, k).ok())
            .map(LessSafeKey::new)
            .collect();
        RouteCookie {
            name: name.as_bytes().into(),
            keys,
            rng: SystemRandom::new(),
        }
    }

    /// The `Set-Cookie` value naming `node` of `pool` (whose path prefix
    /// is `path`), for a response that sets (or expires) the cookie
    /// `followed`: one cookie per pool, living as long as the cookie it
    /// follows (its `Max-Age`, `Expires` and `SameSite`; `Lax` by
    /// default); expired with it.
    pub fn set_cookie(
        &self,
        pool: &str,
        path: &str,
        node: &str,
        (followed, expired): (&[u8], bool),
    ) -> Option<String> {
        let name = String::from_utf8_lossy(&self.name);
        if expired {
            return Some(format!(
                "{name}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path={path}; Secure; HttpOnly; SameSite=Lax"
            ));
        }
        let sealed = self.seal(pool, node)?;
        let mut cookie = format!("{name}={sealed}; Path={path}; Secure; HttpOnly");
        let mut same_site = false;
        for (key, value) in super::set_cookie::set_cookie_attrs(followed) {
            let keep = ["max-age", "expires", "samesite"]
                .iter()
                .any(|k| key.eq_ignore_ascii_case(k.as_bytes()));
            // A value a header may not carry is left out, not the cookie.
            if keep && value.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
                same_site |= key.eq_ignore_ascii_case(b"samesite");
                cookie.push_str("; ");
                cookie.push_str(&String::from_utf8_lossy(key));
                cookie.push('=');
                cookie.push_str(&String::from_utf8_lossy(value));
            }
        }
        if !same_site {
            cookie.push_str("; SameSite=Lax");
        }
        Some(cookie)
    }

    /// The cookie value naming `node` of `pool`.
    pub fn seal(&self, pool: &str, node: &str) -> Option<String> {
        let key = self.keys.first()?;
        if node.len() > MAX_SEALED - NONCE_LEN - 16 {
            return None;
        }
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut sealed = node.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(pool.as_bytes()),
            &mut sealed,
        )
        .ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Some(URL_SAFE_NO_PAD.encode(out))
    }

    /// The node name sealed in `value` for `pool`, opened in `buf` (no
    /// allocation); `None` for anything forged, stale or undecodable.
    pub fn open<'b>(
        &self,
        pool: &[u8],
        value: &[u8],
        buf: &'b mut [u8; MAX_SEALED],
    ) -> Option<&'b str> {
        if value.len() > MAX_SEALED * 4 / 3 + 4 {
            return None;
        }
        let n = URL_SAFE_NO_PAD.decode_slice(value, &mut buf[..]).ok()?;
        if n < NONCE_LEN + 16 {
            return None;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&buf[..NONCE_LEN]);
        let mut copy = [0u8; MAX_SEALED];
        for key in &self.keys {
            // Opening works in place: each key gets the sealed bytes afresh.
            copy[..n].copy_from_slice(&buf[..n]);
            let opened = key.open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(pool),
                &mut copy[NONCE_LEN..n],
            );
            if let Ok(plain) = opened {
                let len = plain.len();
                buf[..len].copy_from_slice(&copy[NONCE_LEN..NONCE_LEN + len]);
                return std::str::from_utf8(&buf[..len]).ok();
            }
        }
        None
    }
}

/// A buffer for [`RouteCookie::open`].
pub fn buffer() -> [u8; MAX_SEALED] {
    [0; MAX_SEALED]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_names_open_with_the_key_and_only_for_their_pool() {
        let (k1, k2) = ([1u8; KEY_LEN], [2u8; KEY_LEN]);
        let rc = RouteCookie::new("CASFRONT_ROUTE", &[k1]);
        let v = rc.seal("cas", "cas2").unwrap();
        assert!(!v.contains("cas2"));
        assert_ne!(
            v,
            rc.seal("cas", "cas2").unwrap(),
            "a fresh nonce each time"
        );
        let mut buf = buffer();
        assert_eq!(rc.open(b"cas", v.as_bytes(), &mut buf), Some("cas2"));
        assert_eq!(rc.open(b"idp", v.as_bytes(), &mut buffer()), None);
        // Rotation: the new key seals, the old one still opens.
        let rotated = RouteCookie::new("CASFRONT_ROUTE", &[k2, k1]);
        assert_eq!(
            rotated.open(b"cas", v.as_bytes(), &mut buffer()),
            Some("cas2")
        );
        let w = rotated.seal("cas", "cas3").unwrap();
        assert_eq!(rc.open(b"cas", w.as_bytes(), &mut buffer()), None);
        // Forged, truncated, garbage.
        let mut forged = v.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(rc.open(b"cas", &forged, &mut buffer()), None);
        for bad in [&b""[..], b"abc", b"!!!!", &[b'A'; 400]] {
            assert_eq!(rc.open(b"cas", bad, &mut buffer()), None);
        }
    }

    proptest::proptest! {
        #[test]
        fn opening_never_panics(v in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let rc = RouteCookie::new("R", &[[7; KEY_LEN]]);
            let _ = rc.open(b"cas", &v, &mut buffer());
        }
    }
}
