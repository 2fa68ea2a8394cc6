//! TLS on both sides: the listener's certificate chosen by SNI (from a
//! `[tls]` + `[[tls.certificate]]` configuration on disk), and https nodes
//! verified against the pool's `upstream_ca` under their `server_name` —
//! a node whose certificate does not verify is treated as refusing the
//! connection: the request goes to another node.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use casfront::demo::node::{self, NodeSpec};
use casfront::tls;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

mod support;
use support::client::{connect_tls, send_tls};
use support::pki::{Ca, Leaf};
use support::{config_of, front, temp_file};

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// casfront in front of `node` with `certs` (a file name, the certificate,
/// more lines for its table): the first in `[tls]`, the others in
/// `[[tls.certificate]]`.
async fn front_with(
    certs: &[(&str, &Leaf, &str)],
    node: std::net::SocketAddr,
) -> (
    std::net::SocketAddr,
    Arc<casfront::current::Current>,
    support::Serving,
) {
    let mut text = String::from("[listen]\nhttps = \"127.0.0.1:0\"\n");
    for (i, (name, leaf, more)) in certs.iter().enumerate() {
        let cert = temp_file(&format!("{name}.pem"), &leaf.cert_pem);
        let key = temp_file(&format!("{name}.key"), &leaf.key_pem);
        let table = if i == 0 {
            "[tls]"
        } else {
            "[[tls.certificate]]"
        };
        text += &format!(
            "{table}\ncert = \"{}\"\nkey = \"{}\"\n{more}",
            cert.display(),
            key.display()
        );
    }
    text += &format!(
        "[[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n\
         [[pool.node]]\nname = \"cas1\"\nurl = \"http://{node}\"\n"
    );
    let cfg = config_of(&text);
    front(&cfg, tls::from_config(&cfg.tls).unwrap().config).await
}

/// The certificate the listener presented for `server_name`.
async fn presented(
    client: &Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
    server_name: &str,
) -> CertificateDer<'static> {
    let stream = connect_tls(client, addr, server_name).await;
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_chooses_the_certificate() {
    let ca = Ca::new("casfront test CA");
    let main = ca.leaf(&["localhost", "127.0.0.1"]);
    let other = ca.leaf(&["login.example.org"]);
    let wild = ca.leaf(&["*.idp.example.edu"]);
    let n = node::spawn(NodeSpec::named("cas1")).await.unwrap();
    let certs = [
        ("main", &main, ""),
        ("other", &other, ""),
        ("wild", &wild, "names = [\"*.idp.example.edu\"]\n"),
    ];
    let (addr, _proxy, _serving) = front_with(&certs, n.addr).await;
    let client = ca.client();
    // Names from the certificate itself, from `names`, and the default.
    assert_eq!(
        presented(&client, addr, "login.example.org").await,
        der(&other.cert_pem)
    );
    assert_eq!(
        presented(&client, addr, "a.idp.example.edu").await,
        der(&wild.cert_pem)
    );
    assert_eq!(
        presented(&client, addr, "localhost").await,
        der(&main.cert_pem)
    );
    // An IP address sends no SNI: the default certificate.
    assert_eq!(
        presented(&client, addr, "127.0.0.1").await,
        der(&main.cert_pem)
    );
    // And requests are served under every name.
    for name in ["login.example.org", "b.idp.example.edu", "127.0.0.1"] {
        let r = send_tls(&client, addr, name, "GET", "/cas/login", &[], "").await;
        assert_eq!((r.status, r.header("x-cas-node")), (200, Some("cas1")));
    }
}

/// AWS-LC's provider verifying only the signature schemes `keep` keeps
/// (the client's `signature_algorithms`) and offering only the cipher
/// suites `suites` keeps.
fn provider_with(
    keep: impl Fn(rustls::SignatureScheme) -> bool,
    suites: impl Fn(rustls::CipherSuite) -> bool,
) -> rustls::crypto::CryptoProvider {
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    let algs = p.signature_verification_algorithms;
    let mapping: Vec<_> = algs
        .mapping
        .iter()
        .filter(|(s, _)| keep(*s))
        .copied()
        .collect();
    p.signature_verification_algorithms = rustls::crypto::WebPkiSupportedAlgorithms {
        all: algs.all,
        mapping: Box::leak(mapping.into_boxed_slice()),
    };
    p.cipher_suites.retain(|s| suites(s.suite()));
    p
}

fn is_rsa(s: rustls::SignatureScheme) -> bool {
    format!("{s:?}").starts_with("RSA_")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_gets_the_cheapest_certificate_it_can_verify() {
    let ca = Ca::new("casfront test CA");
    let names = ["localhost", "127.0.0.1"];
    let rsa = ca.leaf_with(&names, &rcgen::PKCS_RSA_SHA256);
    let ec = ca.leaf(&names);
    let n = node::spawn(NodeSpec::named("cas1")).await.unwrap();
    // The RSA certificate first (the default, as most sites have it), the
    // ECDSA one for the same names beside it.
    let certs = [("dual-rsa", &rsa, ""), ("dual-ec", &ec, "")];
    let (addr, _proxy, _serving) = front_with(&certs, n.addr).await;
    let modern = ca.client();
    let rsa_only =
        support::client::tls_trusting_with(&ca.pem, provider_with(is_rsa, |_| true), false);
    // TLS 1.2 with ECDHE-RSA suites only: it verifies ECDSA signatures but
    // no suite it offers goes with an ECDSA key.
    let tls12_rsa_suites = support::client::tls_trusting_with(
        &ca.pem,
        provider_with(|_| true, |s| format!("{s:?}").contains("ECDHE_RSA")),
        true,
    );
    // With SNI and without (an IP address sends none).
    for name in names {
        assert_eq!(
            presented(&modern, addr, name).await,
            der(&ec.cert_pem),
            "{name}"
        );
        assert_eq!(
            presented(&rsa_only, addr, name).await,
            der(&rsa.cert_pem),
            "{name}"
        );
        assert_eq!(
            presented(&tls12_rsa_suites, addr, name).await,
            der(&rsa.cert_pem),
            "{name}"
        );
        for client in [&modern, &rsa_only, &tls12_rsa_suites] {
            let r = send_tls(client, addr, name, "GET", "/cas/login", &[], "").await;
            assert_eq!((r.status, r.header("x-cas-node")), (200, Some("cas1")));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_nodes_are_verified_and_a_failed_handshake_fails_over() {
    let ours = Ca::new("CAS nodes CA");
    let theirs = Ca::new("some other CA");
    let tls_node = |name: &str, leaf: support::pki::Leaf| NodeSpec {
        tls: Some(tls::from_pem(&leaf.cert_pem, &leaf.key_pem).unwrap()),
        ..NodeSpec::named(name)
    };
    // cas1: a certificate of our CA for its name, reached by IP with
    // `server_name`. cas2: another CA. cas3: our CA, but reached by IP
    // without `server_name`, and its certificate names no IP.
    let nodes = [
        node::spawn(tls_node("cas1", ours.leaf(&["cas1.internal"])))
            .await
            .unwrap(),
        node::spawn(tls_node("cas2", theirs.leaf(&["cas2.internal"])))
            .await
            .unwrap(),
        node::spawn(tls_node("cas3", ours.leaf(&["cas3.internal"])))
            .await
            .unwrap(),
    ];
    let ca_file = temp_file("nodes-ca.pem", &ours.pem);
    let text = format!(
        "[listen]\nhttps = \"127.0.0.1:0\"\n[tls]\ncert = \"unused\"\nkey = \"unused\"\n\
         [[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\nupstream_ca = \"{}\"\n\
         [[pool.node]]\nname = \"cas1\"\nurl = \"https://{}\"\nserver_name = \"cas1.internal\"\n\
         [[pool.node]]\nname = \"cas2\"\nurl = \"https://{}\"\nserver_name = \"cas2.internal\"\n\
         [[pool.node]]\nname = \"cas3\"\nurl = \"https://{}\"\n",
        ca_file.display(),
        nodes[0].addr,
        nodes[1].addr,
        nodes[2].addr
    );
    let cfg = config_of(&text);
    let front_ca = Ca::new("front CA");
    let leaf = front_ca.leaf(&["localhost"]);
    let listener_tls = tls::from_pem(&leaf.cert_pem, &leaf.key_pem).unwrap();
    let (addr, _proxy, _serving) = front(&cfg, listener_tls).await;
    let client = front_ca.client();
    let get = |target: String| {
        let client = client.clone();
        async move { send_tls(&client, addr, "localhost", "GET", &target, &[], "").await }
    };
    // A ticket of each node: cas1's reaches cas1 over verified TLS; the
    // others' handshakes fail, nothing was sent, and cas1 answers.
    for owner in ["cas1", "cas2", "cas3", "cas1"] {
        let r = get(format!(
            "/cas/serviceValidate?service=x&ticket=ST-1-abcdefgh-{owner}"
        ))
        .await;
        assert_eq!(
            (r.status, r.header("x-cas-node")),
            (200, Some("cas1")),
            "ticket of {owner}: {}",
            r.body
        );
    }
    // Both are now down: new logins go to cas1 only.
    for _ in 0..6 {
        let r = get("/cas/login".into()).await;
        assert_eq!(r.header("x-cas-node"), Some("cas1"));
    }
    // cas2 and cas3 were reached (TCP accepted): TLS failed, not the connect.
    assert!(nodes[1].connections() >= 1 && nodes[2].connections() >= 1);
    // The pooled TLS connection to cas1 is reused.
    assert_eq!(nodes[0].connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_handshake_failing_ends_in_a_503_even_with_a_tiny_cooldown() {
    // Three https nodes none of which verifies, a 1 ms cool-down and no
    // health checker: each failed handshake takes longer than the
    // cool-down, so a failed node is usable again before the others have
    // been tried. Failover must still end.
    let theirs = Ca::new("some other CA");
    let mut nodes = Vec::new();
    for name in ["cas1", "cas2", "cas3"] {
        let leaf = theirs.leaf(&["127.0.0.1"]);
        let spec = NodeSpec {
            tls: Some(tls::from_pem(&leaf.cert_pem, &leaf.key_pem).unwrap()),
            ..NodeSpec::named(name)
        };
        nodes.push(node::spawn(spec).await.unwrap());
    }
    let ours = Ca::new("CAS nodes CA");
    let ca_file = temp_file("nodes-ca.pem", &ours.pem);
    let mut text = format!(
        "[listen]\nhttps = \"127.0.0.1:0\"\n[tls]\ncert = \"unused\"\nkey = \"unused\"\n\
         [[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\nupstream_ca = \"{}\"\n\
         [pool.upstream]\ndown_cooldown = \"1ms\"\n",
        ca_file.display()
    );
    for n in &nodes {
        text.push_str(&format!(
            "[[pool.node]]\nname = \"{}\"\nurl = \"https://{}\"\n",
            n.spec.name, n.addr
        ));
    }
    let cfg = config_of(&text);
    let leaf = ours.leaf(&["localhost"]);
    let listener_tls = tls::from_pem(&leaf.cert_pem, &leaf.key_pem).unwrap();
    let (addr, _proxy, _serving) = front(&cfg, listener_tls).await;
    let client = ours.client();
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        send_tls(&client, addr, "localhost", "GET", "/cas/login", &[], ""),
    )
    .await
    .expect("failover did not end");
    assert_eq!(r.status, 503, "{}", r.body);
}
