//! Client certificates at the edge: [`verify`] (rustls verification for
//! `[tls] client_auth`), [`x509`] (what a certificate says), [`headers`]
//! (what nodes are told, and the stripping that makes it unforgeable).
//! A connection's certificate is examined once, right after its handshake
//! ([`ClientCert::examine`]); requests read the result.

pub mod headers;
pub mod verify;
pub mod x509;

use rustls::pki_types::CertificateDer;

pub use headers::CertHeaders;
pub use verify::{ClientVerifier, Status, TrustError};

use crate::config::ClientCertHeaders;
use crate::routing::cert::CertIdentity;

/// What became of a connection's client certificate.
#[derive(Clone, Debug)]
pub struct ClientCert {
    pub status: Status,
    /// Only for a verified certificate: nothing of one that failed is
    /// passed on (CAS would trust a forged issuer name).
    verified: Option<(CertIdentity, headers::Values)>,
}

impl ClientCert {
    /// Verifies and reads the chain a client presented (`None`: none) on
    /// a handshake that may have been `resumed`; `names` says what nodes
    /// are told.
    pub fn examine(
        verifier: &ClientVerifier,
        chain: Option<&[CertificateDer<'_>]>,
        resumed: bool,
        names: &ClientCertHeaders,
    ) -> ClientCert {
        let mut status = verifier.status(chain, resumed);
        let mut verified = None;
        if let (Status::Verified, Some(leaf)) = (status, chain.and_then(<[_]>::first)) {
            let read = x509::read(leaf).and_then(|facts| {
                let values = headers::Values::new(leaf, &facts, names.format, names.xfcc)?;
                Ok((facts.identity, values))
            });
            match read {
                Ok(v) => verified = Some(v),
                Err(why) => {
                    tracing::debug!(%why, "a verified client certificate could not be read");
                    status = Status::Failed("FAILED:unable to decode certificate");
                }
            }
        }
        ClientCert { status, verified }
    }

    /// The names of a verified certificate.
    pub fn identity(&self) -> Option<&CertIdentity> {
        self.verified.as_ref().map(|(id, _)| id)
    }

    fn values(&self) -> Option<&headers::Values> {
        self.verified.as_ref().map(|(_, v)| v)
    }
}
