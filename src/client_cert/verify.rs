//! Client certificate verification by rustls' `WebPkiClientVerifier`:
//! the chain to a CA of `client_ca`, validity, the `clientAuth` usage, the
//! CRLs of `client_crl`. `required`: rustls verifies during the handshake
//! and a certificate that fails ends it. `optional`: the handshake accepts
//! any certificate whose key signs the handshake (proof of possession is
//! always checked) and the connection is verified once, right after it, so
//! that a missing or failed certificate is served and marked, not cut off
//! (rustls' `allow_unauthenticated` alone still fails an invalid one).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, RootCertStore,
    SignatureScheme,
};
use rustls_pki_types::pem::PemObject;

use crate::config::{ClientAuth, ClientTrust};

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("reading the client CA bundle {path}: {why}")]
    Ca { path: String, why: String },
    #[error("the client CA bundle {0} holds no usable CA certificate")]
    NoCa(String),
    #[error("reading the CRL {path}: {why}")]
    Crl { path: String, why: String },
    #[error("the client certificate verifier: {0}")]
    Verifier(String),
}

/// The outcome of verifying a connection's certificate.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Verified,
    /// No certificate was presented.
    None,
    /// OpenSSL's wording of why, as nginx's `$ssl_client_verify` gives it.
    Failed(&'static str),
}

impl Status {
    /// The verify header's value: `SUCCESS`, `NONE` or `FAILED:reason`.
    pub fn header(&self) -> &'static str {
        match self {
            Status::Verified => "SUCCESS",
            Status::None => "NONE",
            Status::Failed(why) => why,
        }
    }
}

/// A rustls `ClientCertVerifier` for `optional` or `required`.
#[derive(Debug)]
pub struct ClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    auth: ClientAuth,
}

impl ClientVerifier {
    /// The verifier of `[tls]`; `None` when client_auth is off.
    pub fn from_config(trust: &ClientTrust) -> Result<Option<Arc<ClientVerifier>>, TrustError> {
        let (ClientAuth::Optional | ClientAuth::Required, Some(ca)) = (trust.auth, &trust.ca)
        else {
            return Ok(None);
        };
        let cas = read_pems::<CertificateDer<'static>>(ca).map_err(|why| TrustError::Ca {
            path: ca.display().to_string(),
            why,
        })?;
        let mut crls = Vec::new();
        for path in &trust.crls {
            crls.extend(read_crls(path)?);
        }
        let label = ca.display().to_string();
        ClientVerifier::new(cas, crls, trust.auth, &label).map(Some)
    }

    /// The same from certificates in memory (`label` names them in errors).
    pub fn new(
        cas: Vec<CertificateDer<'static>>,
        crls: Vec<CertificateRevocationListDer<'static>>,
        auth: ClientAuth,
        label: &str,
    ) -> Result<Arc<ClientVerifier>, TrustError> {
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(cas);
        if added == 0 {
            return Err(TrustError::NoCa(label.to_owned()));
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        // A CA without a CRL in `client_crl` is not checked for revocation
        // (the default would refuse every certificate it issued). A CRL past
        // its nextUpdate fails the certificates of its CA, as OpenSSL does.
        let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .with_crls(crls)
            .allow_unknown_revocation_status()
            .enforce_revocation_expiration()
            .build()
            .map_err(|e| TrustError::Verifier(e.to_string()))?;
        Ok(Arc::new(ClientVerifier { inner, auth }))
    }

    pub fn auth(&self) -> ClientAuth {
        self.auth
    }

    /// The status of the chain a client presented, after the handshake.
    /// A full `required` handshake was verified by rustls already; a
    /// resumed one was not (rustls restores the chain from the session,
    /// which may predate a reload, a new CRL or the chain's expiry), so it
    /// is verified here like every `optional` one.
    pub fn status(&self, chain: Option<&[CertificateDer<'_>]>, resumed: bool) -> Status {
        let Some((leaf, intermediates)) = chain.and_then(<[_]>::split_first) else {
            return Status::None;
        };
        if self.auth == ClientAuth::Required && !resumed {
            return Status::Verified;
        }
        match self
            .inner
            .verify_client_cert(leaf, intermediates, UnixTime::now())
        {
            Ok(_) => Status::Verified,
            Err(e) => Status::Failed(reason(&e)),
        }
    }
}

/// OpenSSL's texts, which nginx and HAProxy pass on.
fn reason(e: &Error) -> &'static str {
    match e {
        Error::InvalidCertificate(c) => match c {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "FAILED:certificate has expired"
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "FAILED:certificate is not yet valid"
            }
            CertificateError::Revoked => "FAILED:certificate revoked",
            CertificateError::UnknownIssuer => "FAILED:unable to get local issuer certificate",
            CertificateError::BadSignature => "FAILED:certificate signature failure",
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "FAILED:unsupported certificate purpose"
            }
            CertificateError::UnknownRevocationStatus => "FAILED:unable to get certificate CRL",
            CertificateError::ExpiredRevocationList
            | CertificateError::ExpiredRevocationListContext { .. } => "FAILED:CRL has expired",
            CertificateError::BadEncoding => "FAILED:unable to decode certificate",
            _ => "FAILED:certificate verify failed",
        },
        _ => "FAILED:certificate verify failed",
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.auth == ClientAuth::Required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        match self.auth {
            ClientAuth::Required => self
                .inner
                .verify_client_cert(end_entity, intermediates, now),
            // Verified once after the handshake ([`ClientVerifier::status`]).
            _ => Ok(ClientCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn read_pems<T: PemObject>(path: &Path) -> Result<Vec<T>, String> {
    T::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| e.to_string())
}

/// A CRL file: PEM (one or more) or DER.
fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TrustError> {
    let err = |why: String| TrustError::Crl {
        path: path.display().to_string(),
        why,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    if bytes.starts_with(b"-----") {
        let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(e.to_string()))?;
        if crls.is_empty() {
            return Err(err("no X509 CRL block".into()));
        }
        Ok(crls)
    } else {
        Ok(vec![CertificateRevocationListDer::from(bytes)])
    }
}
