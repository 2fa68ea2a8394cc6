//! Which certificate a handshake gets: by SNI (an exact name, else `*.`
//! and the name without its first label, else the default, which also
//! serves clients that send no SNI), then by what the client can verify.
//! A name may have one certificate per key type — RSA and ECDSA, as
//! nginx, HAProxy and F5 serve them — and a client that accepts ECDSA
//! gets it (a signature several times cheaper than RSA-2048's), any other
//! the RSA one. When two certificates of one key type claim a name, the
//! first listed keeps it.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureAlgorithm;

use super::{Loaded, TlsError};

/// The certificates of one name, at most one per key type, the cheapest
/// to sign with first.
#[derive(Clone, Debug)]
pub(super) struct Choice(Vec<Arc<CertifiedKey>>);

/// Signing cost order: ECDSA and Ed25519 before RSA.
fn rank(key: &CertifiedKey) -> u8 {
    match key.key.algorithm() {
        SignatureAlgorithm::ECDSA => 0,
        SignatureAlgorithm::ED25519 => 1,
        SignatureAlgorithm::RSA => 2,
        _ => 3,
    }
}

impl Choice {
    fn one(key: Arc<CertifiedKey>) -> Choice {
        Choice(vec![key])
    }

    /// Adds `key` unless a certificate of its key type is there already.
    fn add(&mut self, key: &Arc<CertifiedKey>) {
        let alg = key.key.algorithm();
        if self.0.iter().all(|k| k.key.algorithm() != alg) {
            self.0.push(key.clone());
            self.0.sort_by_key(|k| rank(k));
        }
    }

    /// The first certificate `hello`'s client can take: one that signs
    /// with a scheme it offers (rustls has already kept, for TLS 1.2,
    /// only the schemes of the cipher suites both sides have). Else the
    /// last (RSA, when there is one: the most widely accepted), for the
    /// handshake to fail or pass as it would have.
    fn pick(&self, hello: &ClientHello<'_>) -> Option<&Arc<CertifiedKey>> {
        match self.0.as_slice() {
            [only] => Some(only),
            keys => (keys.iter())
                .find(|k| k.key.choose_scheme(hello.signature_schemes()).is_some())
                .or(keys.last()),
        }
    }

    #[cfg(test)]
    pub(super) fn keys(&self) -> &[Arc<CertifiedKey>] {
        &self.0
    }
}

/// Picks a certificate as the module header says.
#[derive(Debug)]
pub(super) struct SniResolver {
    default: Choice,
    by_name: HashMap<String, Choice>,
    /// `*.idp.example.edu` under `idp.example.edu`.
    by_parent: HashMap<String, Choice>,
}

impl SniResolver {
    pub(super) fn new(loaded: Vec<Loaded>) -> Result<SniResolver, TlsError> {
        let first = loaded.first().ok_or(TlsError::Empty)?;
        let mut default = Choice::one(first.key.clone());
        let mut default_names = first.names.clone();
        default_names.sort();
        let (mut by_name, mut by_parent) = (HashMap::new(), HashMap::<_, Choice>::new());
        for (i, l) in loaded.iter().enumerate() {
            // Another key type for the default's very names serves the
            // clients without SNI too.
            if i > 0 && !default_names.is_empty() {
                let mut names = l.names.clone();
                names.sort();
                if names == default_names {
                    default.add(&l.key);
                }
            }
            for n in &l.names {
                let map = match n.strip_prefix("*.") {
                    Some(parent) => by_parent.entry(parent.to_owned()),
                    None => by_name.entry(n.clone()),
                };
                map.and_modify(|c: &mut Choice| c.add(&l.key))
                    .or_insert_with(|| Choice::one(l.key.clone()));
            }
        }
        Ok(SniResolver {
            default,
            by_name,
            by_parent,
        })
    }

    /// The certificates for `sni`.
    pub(super) fn pick(&self, sni: &str) -> &Choice {
        let lower;
        let sni = if sni.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = sni.to_ascii_lowercase();
            lower.as_str()
        } else {
            sni
        };
        if let Some(k) = self.by_name.get(sni) {
            return k;
        }
        sni.split_once('.')
            .and_then(|(_, parent)| self.by_parent.get(parent))
            .unwrap_or(&self.default)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let choice = match hello.server_name() {
            Some(sni) => self.pick(sni),
            None => &self.default,
        };
        choice.pick(&hello).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::tests::{loaded, loaded_with};

    fn resolver(loaded: Vec<Loaded>) -> SniResolver {
        SniResolver::new(loaded).unwrap()
    }

    fn only(c: &Choice) -> &Arc<CertifiedKey> {
        assert_eq!(c.keys().len(), 1);
        &c.keys()[0]
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_default() {
        let a = loaded(&["cas.example.edu"]);
        let b = loaded(&["login.example.org", "*.idp.example.edu"]);
        let (ka, kb) = (a.key.clone(), b.key.clone());
        let r = resolver(vec![a, b]);
        assert!(Arc::ptr_eq(only(r.pick("login.example.org")), &kb));
        assert!(Arc::ptr_eq(only(r.pick("LOGIN.Example.org")), &kb));
        assert!(Arc::ptr_eq(only(r.pick("x.idp.example.edu")), &kb));
        // A wildcard covers one label only.
        assert!(Arc::ptr_eq(only(r.pick("a.b.idp.example.edu")), &ka));
        assert!(Arc::ptr_eq(only(r.pick("idp.example.edu")), &ka));
        assert!(Arc::ptr_eq(only(r.pick("other.example.com")), &ka));
    }

    #[test]
    fn a_name_has_one_certificate_per_key_type_ecdsa_first() {
        let rsa = loaded_with(&["cas.example.edu"], &rcgen::PKCS_RSA_SHA256);
        let ec = loaded_with(&["cas.example.edu"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let ec2 = loaded_with(&["cas.example.edu"], &rcgen::PKCS_ECDSA_P384_SHA384);
        let other = loaded_with(&["other.example.edu"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let (k_rsa, k_ec) = (rsa.key.clone(), ec.key.clone());
        // RSA listed first (the default), then ECDSA for the same names,
        // then a second ECDSA one, which the first keeps the name from.
        let r = resolver(vec![rsa, ec, ec2, other]);
        for choice in [r.pick("cas.example.edu"), &r.default] {
            let keys = choice.keys();
            assert_eq!(keys.len(), 2);
            assert!(Arc::ptr_eq(&keys[0], &k_ec), "ECDSA first");
            assert!(Arc::ptr_eq(&keys[1], &k_rsa));
        }
        // A certificate for other names is not an alternative default.
        assert_eq!(r.pick("other.example.edu").keys().len(), 1);
    }
}
