//! TLS for the listener: a rustls `ServerConfig` (AWS-LC provider, ALPN `h2`
//! and `http/1.1`) with one or more certificates. The first certificate is
//! the default — for clients that send no SNI (curl to an IP address) and
//! for names no certificate claims; the others are chosen by SNI, and per
//! name by key type ([`resolve`]). A certificate answers the names its
//! configuration lists, else the DNS names it carries. With `[tls]
//! client_auth`, the configuration asks for client certificates through a
//! [`ClientVerifier`], kept beside it for the check after the handshake.
//! Resumption (the session cache, the ticket keys of [`tickets`]) is the
//! process's, shared by every configuration it builds.

mod resolve;
pub mod tickets;

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::client_cert::{ClientVerifier, TrustError};
use crate::config;
use resolve::SniResolver;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading certificates from {path}: {source}")]
    Certs {
        path: String,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("{0} holds no certificate")]
    NoCert(String),
    #[error("reading the private key from {path}: {source}")]
    Key {
        path: String,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("the certificate {path} and its key do not go together: {source}")]
    Pair {
        path: String,
        #[source]
        source: rustls::Error,
    },
    #[error("{0} carries no DNS name: list its server names in `names`")]
    NoNames(String),
    #[error("{path} cannot be read as X.509: {why}")]
    X509 { path: String, why: String },
    #[error("no certificate is configured")]
    Empty,
    #[error("TLS ticket keys: {0}")]
    Tickets(String),
    #[error("the TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error(transparent)]
    Client(#[from] TrustError),
}

/// A listener's TLS: the rustls configuration and, when client
/// certificates are asked for, the verifier that checks them.
#[derive(Clone)]
pub struct ListenerTls {
    pub config: Arc<ServerConfig>,
    pub client: Option<Arc<ClientVerifier>>,
    /// With `client_auth_names`: the configuration that asks for client
    /// certificates, for handshakes naming one of them (`config` then
    /// asks for none).
    pub by_name: Option<(Vec<String>, Arc<ServerConfig>)>,
    /// The certificates served, for their expiry (metrics).
    pub certificates: Vec<Served>,
}

/// A certificate served: where it came from, its first DNS name, and when
/// it expires (seconds since the Unix epoch).
#[derive(Clone, Debug)]
pub struct Served {
    pub source: String,
    pub name: String,
    pub not_after: i64,
}

impl From<Arc<ServerConfig>> for ListenerTls {
    fn from(config: Arc<ServerConfig>) -> Self {
        ListenerTls {
            config,
            client: None,
            by_name: None,
            certificates: Vec::new(),
        }
    }
}

impl ListenerTls {
    /// The configuration for a handshake that asked for `sni`.
    pub fn for_name(&self, sni: Option<&str>) -> &Arc<ServerConfig> {
        match (&self.by_name, sni) {
            (Some((names, config)), Some(sni))
                if names.iter().any(|n| n.eq_ignore_ascii_case(sni)) =>
            {
                config
            }
            _ => &self.config,
        }
    }

    fn new(
        build: impl Fn(Option<Arc<ClientVerifier>>) -> Result<Arc<ServerConfig>, TlsError>,
        client: Option<Arc<ClientVerifier>>,
        names: &[String],
    ) -> Result<ListenerTls, TlsError> {
        if client.is_none() || names.is_empty() {
            return Ok(ListenerTls {
                config: build(client.clone())?,
                client,
                by_name: None,
                certificates: Vec::new(),
            });
        }
        Ok(ListenerTls {
            config: build(None)?,
            by_name: Some((names.to_vec(), build(client.clone())?)),
            certificates: Vec::new(),
            client,
        })
    }
}

/// ALPN protocols offered, HTTP/2 first.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A certificate chain with its key and the names it answers.
struct Loaded {
    key: Arc<CertifiedKey>,
    names: Vec<String>,
    served: Served,
}

/// What every TLS configuration of one process shares, so that session
/// resumption (the session cache and the ticket keys) survives a reload
/// (`docs/architecture.md`).
#[derive(Clone)]
pub struct Resumption {
    sessions: Arc<dyn StoresServerSessions>,
    ticketer: Arc<dyn ProducesTickets>,
}

impl Resumption {
    /// Resumption with ticket keys in `store`; if they cannot be kept
    /// there, they live in memory and the second value says why.
    pub fn new(store: tickets::Store) -> Result<(Resumption, Option<String>), TlsError> {
        let (tickets, why) = tickets::Tickets::new(store).map_err(TlsError::Tickets)?;
        let resumption = Resumption {
            sessions: ServerSessionMemoryCache::new(4096),
            ticketer: Arc::new(tickets),
        };
        Ok((resumption, why))
    }
}

/// The server configuration of the `[tls]` section (ticket keys in
/// memory).
pub fn from_config(tls: &config::Tls) -> Result<ListenerTls, TlsError> {
    from_config_with(tls, &Resumption::new(tickets::Store::Memory)?.0)
}

/// The same, resuming the sessions of the configurations before it.
pub fn from_config_with(
    tls: &config::Tls,
    resumption: &Resumption,
) -> Result<ListenerTls, TlsError> {
    let provider = provider();
    let mut loaded = Vec::with_capacity(tls.certificates.len());
    for (i, c) in tls.certificates.iter().enumerate() {
        let name = c.cert.display().to_string();
        let chain = read_chain(&c.cert)?;
        let key = PrivateKeyDer::from_pem_file(&c.key).map_err(|source| TlsError::Key {
            path: c.key.display().to_string(),
            source,
        })?;
        let mut one = load(chain, key, &name, &provider)?;
        if !c.names.is_empty() {
            one.names.clone_from(&c.names);
        } else if one.names.is_empty() && i > 0 {
            // The default needs no name; the others are found by theirs.
            return Err(TlsError::NoNames(name));
        }
        loaded.push(one);
    }
    let client = ClientVerifier::from_config(&tls.client)?;
    listener(
        loaded,
        provider,
        Some(resumption),
        client,
        &tls.client.names,
    )
}

/// The listener's TLS for certificates already loaded, the first the
/// default, asking for client certificates as `client` and `names` say.
fn listener(
    loaded: Vec<Loaded>,
    provider: Arc<CryptoProvider>,
    resumption: Option<&Resumption>,
    client: Option<Arc<ClientVerifier>>,
    names: &[String],
) -> Result<ListenerTls, TlsError> {
    let certificates = loaded.iter().map(|l| l.served.clone()).collect();
    let resolver = Arc::new(SniResolver::new(loaded)?);
    let mut listener = ListenerTls::new(
        |c| build(resolver.clone(), provider.clone(), resumption, c),
        client,
        names,
    )?;
    listener.certificates = certificates;
    Ok(listener)
}

/// A server configuration with one certificate, from PEM text (the demo
/// and tests generate theirs).
pub fn from_pem(cert: &str, key: &str) -> Result<Arc<ServerConfig>, TlsError> {
    from_pems(&[(cert, key)])
}

/// One certificate from PEM text, asking for client certificates as
/// `trust` says (the demo and tests).
pub fn from_pem_trusting(
    cert: &str,
    key: &str,
    trust: &config::ClientTrust,
) -> Result<ListenerTls, TlsError> {
    let client = ClientVerifier::from_config(trust)?;
    let provider = provider();
    let loaded = load_pems(&[(cert, key)], &provider)?;
    listener(loaded, provider, None, client, &trust.names)
}

/// The same with several certificates, the first the default.
pub fn from_pems(pairs: &[(&str, &str)]) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let loaded = load_pems(pairs, &provider)?;
    let resolver = SniResolver::new(loaded)?;
    build(Arc::new(resolver), provider, None, None)
}

/// Certificates and keys from PEM text.
fn load_pems(pairs: &[(&str, &str)], provider: &CryptoProvider) -> Result<Vec<Loaded>, TlsError> {
    let mut loaded = Vec::with_capacity(pairs.len());
    for (cert, key) in pairs {
        let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| TlsError::Certs {
                path: "(memory)".into(),
                source,
            })?;
        let key =
            PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|source| TlsError::Key {
                path: "(memory)".into(),
                source,
            })?;
        loaded.push(load(chain, key, "(memory)", provider)?);
    }
    Ok(loaded)
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Certs {
            path: path.display().to_string(),
            source,
        })
}

fn load(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    name: &str,
    provider: &CryptoProvider,
) -> Result<Loaded, TlsError> {
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCert(name.into()));
    };
    let (names, not_after) = leaf_facts(leaf).map_err(|why| TlsError::X509 {
        path: name.into(),
        why,
    })?;
    let served = served(name, &names, not_after);
    let key = CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Pair {
        path: name.into(),
        source,
    })?;
    Ok(Loaded {
        key: Arc::new(key),
        names,
        served,
    })
}

fn served(source: &str, names: &[String], not_after: i64) -> Served {
    Served {
        source: source.into(),
        name: names.first().cloned().unwrap_or_else(|| "-".into()),
        not_after,
    }
}

/// The DNS names of a certificate's subject alternative names, lowercase,
/// and the end of its validity (seconds since the Unix epoch).
fn leaf_facts(der: &CertificateDer<'_>) -> Result<(Vec<String>, i64), String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let san = cert.subject_alternative_name().map_err(|e| e.to_string())?;
    let names = san
        .map(|s| {
            s.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok((names, cert.validity().not_after.timestamp()))
}

fn build(
    resolver: Arc<SniResolver>,
    provider: Arc<CryptoProvider>,
    resumption: Option<&Resumption>,
    client: Option<Arc<ClientVerifier>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder =
        ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?;
    let builder = match client {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    if let Some(r) = resumption {
        config.session_storage = r.sessions.clone();
        config.ticketer = r.ticketer.clone();
    }
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(names: &[&str]) -> (String, String) {
        let k = rcgen::generate_simple_self_signed(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        (k.cert.pem(), k.signing_key.serialize_pem())
    }

    /// A certificate for `names` with a key of `alg` (rcgen's
    /// `PKCS_ECDSA_P256_SHA256`, `PKCS_RSA_SHA256`...), loaded.
    pub(in crate::tls) fn loaded_with(
        names: &[&str],
        alg: &'static rcgen::SignatureAlgorithm,
    ) -> Loaded {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        let c = params.self_signed(&key).unwrap();
        let key = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        load(vec![c.der().clone()], key, "t", &provider()).unwrap()
    }

    pub(in crate::tls) fn loaded(names: &[&str]) -> Loaded {
        loaded_with(names, &rcgen::PKCS_ECDSA_P256_SHA256)
    }

    #[test]
    fn names_come_from_the_certificate() {
        let l = loaded(&["CAS.example.edu", "127.0.0.1", "*.idp.example.edu"]);
        assert_eq!(l.names, ["cas.example.edu", "*.idp.example.edu"]);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let (c1, _) = cert(&["a.example.edu"]);
        let (_, k2) = cert(&["b.example.edu"]);
        let err = from_pem(&c1, &k2).unwrap_err();
        assert!(matches!(err, TlsError::Pair { .. }), "{err}");
    }
}
