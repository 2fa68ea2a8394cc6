//! The demo: CAS-like nodes ([`node`]) and a whole cluster — nodes plus
//! casfront in front of them on loopback, with a certificate generated at
//! start — that `casfront demo`, the integration tests and the bench
//! harness share.

mod flows;
pub mod node;
pub mod run;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config;
use crate::current::{Current, ReloadError};
use crate::generation::Generation;
use crate::health::check::{self, Checker};
use crate::server;
use crate::tls;
use node::{NodeSpec, RunningNode};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("starting a demo node: {0}")]
    Io(#[from] std::io::Error),
    #[error("generating the demo certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("the demo TLS configuration: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("the demo configuration is invalid: {0}")]
    Config(String),
    #[error(transparent)]
    Build(#[from] ReloadError),
}

/// A self-signed certificate for `localhost`, `x509.localhost` (a name
/// for client certificates) and `127.0.0.1`, as PEM.
pub struct DemoCert {
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn self_signed() -> Result<DemoCert, rcgen::Error> {
    let key = rcgen::generate_simple_self_signed(vec![
        "localhost".to_owned(),
        "x509.localhost".to_owned(),
        "127.0.0.1".to_owned(),
    ])?;
    Ok(DemoCert {
        cert_pem: key.cert.pem(),
        key_pem: key.signing_key.serialize_pem(),
    })
}

/// A client CA and a certificate it issued to `alice` (a smart-card-like
/// subject with email and UPN names), as PEM, for `casfront demo`.
pub struct DemoClient {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// A smart-card-like client certificate's parameters for `cn`: O=Example
/// University, OU=People, usage clientAuth, an email and a Microsoft UPN
/// subject alternative name (the demo and the tests both issue these).
pub fn client_params(cn: &str) -> Result<rcgen::CertificateParams, rcgen::Error> {
    use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, SanType};
    let mut leaf = CertificateParams::new(Vec::<String>::new())?;
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name
        .push(DnType::OrganizationName, "Example University");
    leaf.distinguished_name
        .push(DnType::OrganizationalUnitName, "People");
    leaf.distinguished_name.push(DnType::CommonName, cn);
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    leaf.subject_alt_names = vec![
        SanType::Rfc822Name(format!("{cn}@example.edu").try_into()?),
        SanType::OtherName((
            vec![1, 3, 6, 1, 4, 1, 311, 20, 2, 3],
            format!("{cn}@EXAMPLE.EDU").into(),
        )),
    ];
    Ok(leaf)
}

pub fn client_pki() -> Result<DemoClient, rcgen::Error> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa,
        KeyPair,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::OrganizationName, "Example University");
    ca.distinguished_name
        .push(DnType::CommonName, "casfront demo client CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let cert = client_params("alice")?.signed_by(&key, &issuer)?;
    Ok(DemoClient {
        ca_pem: issuer.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The configuration of a demo cluster: one `/cas` pool, node `casN` with
/// suffix and jvmRoute `casN`.
pub fn cluster_config(listen: SocketAddr, nodes: &[SocketAddr]) -> String {
    let mut s = format!(
        "[listen]\nhttps = \"{listen}\"\n[tls]\ncert = \"generated\"\nkey = \"generated\"\n\
         [[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n"
    );
    for (i, addr) in nodes.iter().enumerate() {
        s.push_str(&format!(
            "[[pool.node]]\nname = \"cas{}\"\nurl = \"http://{addr}\"\n",
            i + 1
        ));
    }
    s
}

/// Demo nodes with casfront in front of them.
pub struct Cluster {
    pub nodes: Vec<RunningNode>,
    /// Where casfront listens (TLS).
    pub addr: SocketAddr,
    pub cert_pem: String,
    /// casfront's generation in force and process state.
    pub current: Arc<Current>,
    /// The configuration casfront runs with.
    pub config: config::Config,
    server: JoinHandle<()>,
}

impl Cluster {
    /// Starts `n` nodes on loopback ports and casfront on `listen`.
    pub async fn start(n: usize, listen: SocketAddr) -> Result<Cluster, DemoError> {
        let specs = (1..=n)
            .map(|i| NodeSpec::named(&format!("cas{i}")))
            .collect();
        Self::start_with(specs, listen, |c| c).await
    }

    /// The same with nodes of one's own (named `cas1`... in that order),
    /// and the generated configuration text passed through `edit` (tests
    /// add sections or keys).
    pub async fn start_with(
        specs: Vec<NodeSpec>,
        listen: SocketAddr,
        edit: impl FnOnce(String) -> String,
    ) -> Result<Cluster, DemoError> {
        let mut nodes = Vec::with_capacity(specs.len());
        for spec in specs {
            nodes.push(node::spawn(spec).await?);
        }
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
        let parsed = config::parse(&edit(cluster_config(addr, &addrs)), Path::new("."));
        let Some(cfg) = parsed.config else {
            let errors: Vec<String> = parsed.errors().map(ToString::to_string).collect();
            return Err(DemoError::Config(errors.join("; ")));
        };
        let cert = self_signed()?;
        let tls = tls::from_pem_trusting(&cert.cert_pem, &cert.key_pem, &cfg.tls.client)?;
        let current = Current::fixed(&cfg, tls)?;
        let server = tokio::spawn(server::serve(listener, current.clone()));
        Ok(Cluster {
            nodes,
            addr,
            cert_pem: cert.cert_pem,
            current,
            config: cfg,
            server,
        })
    }
}

impl Cluster {
    /// casfront's generation in force.
    pub fn generation(&self) -> Arc<Generation> {
        self.current.generation()
    }

    /// Starts active health checks of the nodes (they stop when the
    /// checker is dropped).
    pub async fn start_checks(&self) -> Checker {
        let targets = check::targets(&self.config);
        self.generation().start_checks(targets).await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.server.abort();
    }
}
