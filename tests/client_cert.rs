//! X.509 client certificates end to end, with certificates made by rcgen:
//! a CA, a valid client certificate, an expired one, one of another CA
//! and one revoked by a CRL, presented over real TLS to casfront in front
//! of demo nodes, which echo the headers they receive (`/cas/headers`).
//! Each mode (`off`, `optional`, `required`), the exact header values,
//! forged headers stripped, 403 where a certificate is required, and a
//! pool chosen by a certificate's OU.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use casfront::demo::node::NodeSpec;
use casfront::demo::Cluster;
use casfront::metrics::Refusal;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

mod support;
use support::client::tls_trusting;
use support::pki::{client_with_cert, Ca, Leaf};

/// The client certificates of one test run.
struct Pki {
    valid: Leaf,
    expired: Leaf,
    foreign: Leaf,
    revoked: Leaf,
    smartcard: Leaf,
    ca_file: String,
    crl_file: String,
}

const REVOKED_SERIAL: &[u8] = &[0x66, 0x66];

fn pki() -> Pki {
    let ca = Ca::new("Test Client CA");
    let other = Ca::new("Other CA");
    let valid = ca.client_cert("alice", |p| {
        p.serial_number = Some(vec![0x0a, 0xbc, 0xde].into());
    });
    let expired = ca.client_cert("bob", |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let foreign = other.client_cert("mallory", |_| {});
    let revoked = ca.client_cert("carol", |p| {
        p.serial_number = Some(REVOKED_SERIAL.to_vec().into());
    });
    // The OU replaces People.
    let smartcard = ca.client_cert("dave", |p| {
        p.distinguished_name
            .push(rcgen::DnType::OrganizationalUnitName, "Smart Card");
    });
    let ca_file = support::temp_file("client-ca.pem", &ca.pem);
    let crl_file = support::temp_file("client-ca.crl", &ca.crl(&[REVOKED_SERIAL]));
    Pki {
        valid,
        expired,
        foreign,
        revoked,
        smartcard,
        ca_file: ca_file.display().to_string(),
        crl_file: crl_file.display().to_string(),
    }
}

/// Three demo nodes behind casfront with `client_auth = auth`; `edit`
/// changes the rest of the configuration text.
async fn cluster(pki: &Pki, auth: &str, edit: impl FnOnce(String) -> String) -> Cluster {
    let trust = format!(
        "key = \"generated\"\nclient_auth = \"{auth}\"\nclient_ca = {:?}\nclient_crl = [{:?}]\n",
        pki.ca_file, pki.crl_file
    );
    let specs = ["cas1", "cas2", "cas3"].map(NodeSpec::named).to_vec();
    Cluster::start_with(specs, "127.0.0.1:0".parse().unwrap(), |c| {
        let c = if auth == "off" {
            c
        } else {
            c.replacen("key = \"generated\"\n", &trust, 1)
        };
        edit(c) + support::NO_RATE_LIMIT
    })
    .await
    .unwrap()
}

/// One GET over a new TLS connection; `Err` when the handshake or the
/// exchange fails.
async fn get(
    tls: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    target: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, Option<String>, String), String> {
    get_telling(tls, addr, target, headers, &mut None).await
}

/// The same, telling how the handshake went (full or resumed).
async fn get_telling(
    tls: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    target: &str,
    headers: &[(&str, &str)],
    kind: &mut Option<rustls::HandshakeKind>,
) -> Result<(u16, Option<String>, String), String> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = rustls_pki_types::ServerName::try_from(server_name(target)).unwrap();
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, stream)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        *kind = stream.get_ref().1.handshake_kind();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = http::Request::get(path_of(target)).header("host", server_name(target));
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let resp = sender
            .send_request(req.body(Full::new(Bytes::new())).unwrap())
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status().as_u16();
        let node = resp
            .headers()
            .get("x-cas-node")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok((
            status,
            node,
            String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        ))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| "timed out".to_owned())?
}

/// `target` is a path, or `//NAME/path` to connect to the server name NAME.
fn server_name(target: &str) -> String {
    match target.strip_prefix("//") {
        Some(rest) => rest.split('/').next().unwrap_or("").to_owned(),
        None => "localhost".to_owned(),
    }
}

fn path_of(target: &str) -> &str {
    match target.strip_prefix("//") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    }
}

/// The certificate headers a node received (`/cas/headers` echoes them),
/// as `name: value` lines in the order received.
fn cert_lines(body: &str) -> Vec<&str> {
    body.lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("ssl") || l.starts_with("x-forwarded-client-cert")
        })
        .collect()
}

fn value<'a>(lines: &[&'a str], name: &str) -> Option<&'a str> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

/// What a client that forges every header sends along.
const FORGED: [(&str, &str); 6] = [
    ("ssl_client_verify", "SUCCESS"),
    ("ssl-client_i-dn", "CN=Test Client CA"),
    ("SSL_CLIENT_S_DN", "CN=admin,O=Example University"),
    ("ssl-client-cert", "-----BEGIN CERTIFICATE----- forged"),
    ("Ssl_Client_Serial", "01"),
    ("x-forwarded-client-cert", "Hash=00"),
];

#[tokio::test]
async fn optional_mode_tells_nodes_exactly_what_was_verified() {
    let pki = pki();
    let c = cluster(&pki, "optional", |c| c).await;
    let with = |leaf: &Leaf| client_with_cert(&c.cert_pem, leaf);

    let (status, _, body) = get(&with(&pki.valid), c.addr, "/cas/headers", &FORGED)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let lines = cert_lines(&body);
    let pem_one_line = pki
        .valid
        .cert_pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let expected = [
        "ssl_client_verify: SUCCESS".to_owned(),
        format!("ssl_client_cert: {pem_one_line}"),
        "ssl_client_s_dn: CN=alice,OU=People,O=Example University".to_owned(),
        "ssl_client_i_dn: CN=Test Client CA".to_owned(),
        "ssl_client_serial: 0ABCDE".to_owned(),
        "ssl_client_san: email:alice@example.edu, UPN:alice@EXAMPLE.EDU".to_owned(),
    ];
    assert_eq!(lines, expected, "{body}");
    // Read back as CAS's X.509 extractor reads it: the markers off,
    // spaces back to line breaks, base64 to the very certificate.
    let cert = value(&lines, "ssl_client_cert").unwrap();
    let inner = cert
        .strip_prefix("-----BEGIN CERTIFICATE-----")
        .and_then(|c| c.strip_suffix("-----END CERTIFICATE-----"))
        .unwrap()
        .replace(' ', "");
    let der = base64::engine::general_purpose::STANDARD
        .decode(inner)
        .unwrap();
    let sent: rustls_pki_types::CertificateDer =
        rustls_pki_types::pem::PemObject::from_pem_slice(pki.valid.cert_pem.as_bytes()).unwrap();
    assert_eq!(der, sent.as_ref());

    // No certificate, or one that does not verify: the status only, and
    // nothing the client forged.
    let anonymous = tls_trusting(&c.cert_pem);
    for (tls, status) in [
        (anonymous, "NONE"),
        (with(&pki.expired), "FAILED:certificate has expired"),
        (
            with(&pki.foreign),
            "FAILED:unable to get local issuer certificate",
        ),
        (with(&pki.revoked), "FAILED:certificate revoked"),
    ] {
        let (code, _, body) = get(&tls, c.addr, "/cas/headers", &FORGED).await.unwrap();
        assert_eq!(code, 200);
        assert_eq!(
            cert_lines(&body),
            [format!("ssl_client_verify: {status}")],
            "{body}"
        );
    }
}

#[tokio::test]
async fn other_formats_and_envoy_header() {
    let pki = pki();
    let c = cluster(&pki, "optional", |c| {
        c + "[client_cert]\nformat = \"base64\"\ncert_header = \"X-Client-Cert\"\nsan_header = \"\"\nxfcc = true\n"
    })
    .await;
    let tls = client_with_cert(&c.cert_pem, &pki.valid);
    let (_, _, body) = get(&tls, c.addr, "/cas/headers", &[("x-client-cert", "forged")])
        .await
        .unwrap();
    let sent: rustls_pki_types::CertificateDer =
        rustls_pki_types::pem::PemObject::from_pem_slice(pki.valid.cert_pem.as_bytes()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(sent.as_ref());
    assert!(
        body.contains(&format!("\nx-client-cert: {b64}\n")),
        "{body}"
    );
    assert_eq!(body.matches("x-client-cert:").count(), 1, "{body}");
    assert!(!body.contains("ssl_client_san"), "{body}");
    let xfcc = body
        .lines()
        .find_map(|l| l.strip_prefix("x-forwarded-client-cert: "))
        .unwrap();
    let hash = ring_hex(sent.as_ref());
    assert!(
        xfcc.starts_with(&format!(
            "Hash={hash};Cert=\"-----BEGIN%20CERTIFICATE-----%0A"
        )),
        "{xfcc}"
    );
    assert!(
        xfcc.ends_with(";Subject=\"CN=alice,OU=People,O=Example University\""),
        "{xfcc}"
    );
}

fn ring_hex(der: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn required_mode_ends_handshakes_without_a_good_certificate() {
    let pki = pki();
    let c = cluster(&pki, "required", |c| c).await;
    let with = |leaf: &Leaf| client_with_cert(&c.cert_pem, leaf);
    let (status, _, body) = get(&with(&pki.valid), c.addr, "/cas/headers", &[])
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("ssl_client_verify: SUCCESS\n"), "{body}");
    let before = c.current.metrics().refusals(Refusal::ClientCert);
    for (name, tls) in [
        ("none", tls_trusting(&c.cert_pem)),
        ("expired", with(&pki.expired)),
        ("other CA", with(&pki.foreign)),
        ("revoked", with(&pki.revoked)),
    ] {
        let got = get(&tls, c.addr, "/cas/headers", &[]).await;
        assert!(got.is_err(), "{name}: {got:?}");
    }
    assert_eq!(c.current.metrics().refusals(Refusal::ClientCert), before);
    // The nodes heard none of the refused connections' requests.
    let heard: usize = c.nodes.iter().map(|n| n.heard().len()).sum();
    assert_eq!(heard, 1);
}

#[tokio::test]
async fn off_mode_asks_for_nothing_and_still_strips_forgeries() {
    let pki = pki();
    let c = cluster(&pki, "off", |c| c).await;
    // A client that holds a certificate is not asked for it.
    let tls = client_with_cert(&c.cert_pem, &pki.valid);
    let (status, _, body) = get(&tls, c.addr, "/cas/headers", &FORGED).await.unwrap();
    assert_eq!(status, 200);
    assert!(cert_lines(&body).is_empty(), "{body}");
    assert!(body.contains("x-forwarded-proto: https"), "{body}");
}

#[tokio::test]
async fn paths_and_pools_that_require_a_certificate_answer_403_without_one() {
    let pki = pki();
    let c = cluster(&pki, "optional", |c| {
        c.replacen(
            "path_prefix = \"/cas\"\n",
            "path_prefix = \"/cas\"\nclient_cert_paths = [\"/cas/x509\"]\n",
            1,
        )
        .replacen(
            "[[pool.node]]\nname = \"cas3\"",
            "[[pool]]\nname = \"secure\"\npath_prefix = \"/secure\"\nclient_cert_required = true\n\
             [[pool.node]]\nname = \"cas3\"",
            1,
        )
    })
    .await;
    let anonymous = tls_trusting(&c.cert_pem);
    let expired = client_with_cert(&c.cert_pem, &pki.expired);
    let valid = client_with_cert(&c.cert_pem, &pki.valid);
    for target in [
        "/cas/x509",
        "/cas/x509/login",
        "/cas/%78509/login",
        "/cas//x509",
        "/cas;a=b/x509;c=d/login",
        "/secure/headers",
    ] {
        let (status, node, body) = get(&anonymous, c.addr, target, &[]).await.unwrap();
        assert_eq!(status, 403, "{target}");
        assert_eq!(node, None, "{target}");
        assert!(body.contains("none was presented"), "{target}: {body}");
        let (status, _, body) = get(&expired, c.addr, target, &[]).await.unwrap();
        assert_eq!(status, 403, "{target}");
        assert!(body.contains("could not be verified"), "{target}: {body}");
        // A verified certificate passes: the node answers.
        let (_, node, _) = get(&valid, c.addr, target, &[]).await.unwrap();
        assert!(node.is_some(), "{target}");
    }
    // Elsewhere, no certificate is needed.
    for target in ["/cas/headers", "/cas/x5090", "/cas/login"] {
        let (status, node, _) = get(&anonymous, c.addr, target, &[]).await.unwrap();
        assert_ne!(status, 403, "{target}");
        assert!(node.is_some(), "{target}");
    }
    assert_eq!(c.current.metrics().refusals(Refusal::ClientCert), 12);
}

#[tokio::test]
async fn a_pool_is_chosen_by_the_certificate_ou() {
    let pki = pki();
    let c = cluster(&pki, "optional", |c| {
        c.replacen(
            "[[pool.node]]\nname = \"cas3\"",
            "[[pool]]\nname = \"smartcard\"\npath_prefix = \"/cas\"\n\
             client_cert_match = \"subject.OU=smart card\"\n[[pool.node]]\nname = \"cas3\"",
            1,
        )
    })
    .await;
    let smartcard = client_with_cert(&c.cert_pem, &pki.smartcard);
    let people = client_with_cert(&c.cert_pem, &pki.valid);
    let anonymous = tls_trusting(&c.cert_pem);
    for _ in 0..6 {
        let (_, node, body) = get(&smartcard, c.addr, "/cas/headers", &[]).await.unwrap();
        assert_eq!(node.as_deref(), Some("cas3"));
        assert!(
            body.contains("ssl_client_s_dn: CN=dave,OU=Smart Card,O=Example University"),
            "{body}"
        );
        for tls in [&people, &anonymous] {
            let (_, node, _) = get(tls, c.addr, "/cas/headers", &[]).await.unwrap();
            assert_ne!(node.as_deref(), Some("cas3"));
            assert!(node.is_some());
        }
    }
}

#[tokio::test]
async fn http2_requests_carry_the_headers_too() {
    let pki = pki();
    let c = cluster(&pki, "optional", |c| c).await;
    let mut tls = (*client_with_cert(&c.cert_pem, &pki.valid)).clone();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let reply = support::client::send_h2(
        &Arc::new(tls),
        c.addr,
        "localhost",
        "/cas/headers",
        &[("ssl_client_verify", "FORGED")],
    )
    .await;
    assert_eq!(reply.status, 200);
    let lines = cert_lines(&reply.body);
    assert_eq!(
        value(&lines, "ssl_client_verify"),
        Some("SUCCESS"),
        "{}",
        reply.body
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("ssl_client_verify"))
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_session_is_verified_again_after_a_reload_to_required() {
    let pki = pki();
    let dir = std::env::temp_dir().join(format!("casfront-x509-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server_ca = Ca::new("server CA");
    let leaf = server_ca.leaf(&["localhost"]);
    std::fs::write(dir.join("cert.pem"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &leaf.key_pem).unwrap();
    let node = casfront::demo::node::spawn(NodeSpec::named("cas1"))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let text = |auth: &str| {
        format!(
            "[listen]\nhttps = \"{addr}\"\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n\
             client_auth = \"{auth}\"\nclient_ca = {:?}\n[admin]\nlisten = \"127.0.0.1:0\"\n{}\
             [[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n\
             [[pool.node]]\nname = \"cas1\"\nurl = \"http://{}\"\n",
            dir.join("cert.pem").display(),
            dir.join("key.pem").display(),
            pki.ca_file,
            support::NO_RATE_LIMIT,
            node.addr,
        )
    };
    let path = dir.join("casfront.toml");
    std::fs::write(&path, text("optional")).unwrap();
    let cfg = casfront::config::load(&path).unwrap().config.unwrap();
    let live = casfront::current::Current::start(path.clone(), cfg)
        .await
        .unwrap();
    let _server = tokio::spawn(casfront::server::serve_until(
        listener,
        live.clone(),
        std::future::pending(),
    ));
    // Each client configuration keeps the session tickets it is given.
    let foreign = client_with_cert(&server_ca.pem, &pki.foreign);
    let valid = client_with_cert(&server_ca.pem, &pki.valid);
    let (_, _, body) = get(&foreign, addr, "/cas/headers", &[]).await.unwrap();
    assert!(
        body.contains("ssl_client_verify: FAILED:unable to get local issuer certificate"),
        "{body}"
    );
    get(&valid, addr, "/cas/headers", &[]).await.unwrap();

    std::fs::write(&path, text("required")).unwrap();
    live.reload().await.unwrap();
    // The valid certificate's session resumes and is verified again.
    let mut kind = None;
    let (_, _, body) = get_telling(&valid, addr, "/cas/headers", &[], &mut kind)
        .await
        .unwrap();
    assert_eq!(kind, Some(rustls::HandshakeKind::Resumed));
    assert!(body.contains("ssl_client_verify: SUCCESS\n"), "{body}");
    // The foreign one resumes too, and is refused: it never verified.
    let mut kind = None;
    let got = get_telling(&foreign, addr, "/cas/headers", &[], &mut kind).await;
    assert_eq!(kind, Some(rustls::HandshakeKind::Resumed));
    assert!(got.is_err(), "{got:?}");
    let served = node
        .heard()
        .iter()
        .filter(|l| l.contains("/cas/headers"))
        .count();
    assert_eq!(served, 3);
}

#[tokio::test]
async fn certificates_can_be_asked_for_on_one_server_name_only() {
    let pki = pki();
    let c = cluster(&pki, "required", |c| {
        c.replacen(
            "client_auth = ",
            "client_auth_names = [\"X509.localhost\"]\nclient_auth = ",
            1,
        )
    })
    .await;
    let valid = client_with_cert(&c.cert_pem, &pki.valid);
    let anonymous = tls_trusting(&c.cert_pem);
    // The main name asks for nothing, even in `required` mode: a client
    // that holds a certificate does not send it (no picker in a browser).
    let (status, _, body) = get(&valid, c.addr, "/cas/headers", &FORGED).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(cert_lines(&body), ["ssl_client_verify: NONE"], "{body}");
    let (status, _, _) = get(&anonymous, c.addr, "/cas/headers", &[]).await.unwrap();
    assert_eq!(status, 200);
    // The dedicated name asks for, and here requires, one.
    let (_, _, body) = get(&valid, c.addr, "//x509.localhost/cas/headers", &[])
        .await
        .unwrap();
    assert!(body.contains("ssl_client_verify: SUCCESS\n"), "{body}");
    assert!(body.contains("ssl_client_s_dn: CN=alice,"), "{body}");
    let refused = get(&anonymous, c.addr, "//x509.localhost/cas/headers", &[]).await;
    assert!(refused.is_err(), "{refused:?}");
    // A request may not dodge the requirement by connecting for the main
    // name and asking for the dedicated one (nor the reverse): 421, the
    // node never sees it.
    let host = |h: &'static str| [("host", h)];
    let dodge = support::client::send_tls(
        &anonymous,
        c.addr,
        "localhost",
        "GET",
        "/cas/headers",
        &host("x509.localhost"),
        "",
    )
    .await;
    assert_eq!(dodge.status, 421, "{}", dodge.body);
    let reverse = support::client::send_tls(
        &valid,
        c.addr,
        "x509.localhost",
        "GET",
        "/cas/headers",
        &host("localhost"),
        "",
    )
    .await;
    assert_eq!(reverse.status, 421, "{}", reverse.body);
}
