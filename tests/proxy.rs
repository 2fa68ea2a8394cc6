//! End to end: a real TLS client -> casfront -> demo CAS nodes, all on
//! 127.0.0.1:0. Which node answered is read from `X-Cas-Node`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use casfront::demo::node::NodeSpec;
use casfront::demo::Cluster;

mod support;
use support::client::{send_tls, ticket_in, tls_trusting, KeepAlive, Reply};

const SERVICE: &str = "https%3A%2F%2Fapp.example.edu%2F";

struct Env {
    cluster: Cluster,
    tls: Arc<rustls::ClientConfig>,
}

impl Env {
    async fn start() -> Env {
        Env::configured(|c| c).await
    }

    /// Three nodes, the configuration passed through `edit`.
    async fn configured(edit: impl FnOnce(String) -> String) -> Env {
        let specs = (1..=3)
            .map(|i| NodeSpec::named(&format!("cas{i}")))
            .collect();
        Env::with_nodes(specs, edit).await
    }

    /// The tests send logins from one address faster than anyone would:
    /// rate limits are off (tests/edge.rs tests them).
    async fn with_nodes(specs: Vec<NodeSpec>, edit: impl FnOnce(String) -> String) -> Env {
        let edit = |c: String| edit(format!("{c}{}", support::NO_RATE_LIMIT));
        let cluster = Cluster::start_with(specs, "127.0.0.1:0".parse().unwrap(), edit)
            .await
            .unwrap();
        let tls = tls_trusting(&cluster.cert_pem);
        Env { cluster, tls }
    }

    async fn get(&self, target: &str, headers: &[(&str, &str)]) -> Reply {
        send_tls(
            &self.tls,
            self.cluster.addr,
            "localhost",
            "GET",
            target,
            headers,
            "",
        )
        .await
    }

    async fn post(&self, target: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        send_tls(
            &self.tls,
            self.cluster.addr,
            "localhost",
            "POST",
            target,
            headers,
            body,
        )
        .await
    }

    /// A whole browser login through casfront: the form, the POST (routed
    /// by the JSESSIONID jvmRoute to the node holding the flow), the TGT
    /// cookie and an ST.
    async fn login(&self, user: &str) -> (String, String, String) {
        let form = self
            .get(&format!("/cas/login?service={SERVICE}"), &[])
            .await;
        assert_eq!(form.status, 200, "{}", form.body);
        let node = form.header("x-cas-node").unwrap().to_owned();
        let session = form.set_cookie("JSESSIONID").unwrap();
        let creds = format!("username={user}&password={user}&service={SERVICE}");
        let ok = self
            .post(
                "/cas/login",
                &[
                    ("cookie", &session),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                &creds,
            )
            .await;
        assert_eq!(
            (ok.status, ok.header("x-cas-node")),
            (302, Some(node.as_str())),
            "{}",
            ok.body
        );
        (
            node,
            ok.set_cookie("CASTGC").unwrap(),
            ticket_in(ok.header("location").unwrap()),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_reaches_the_owner() {
    let env = Env::start().await;
    let (node, tgc, st) = env.login("alice").await;
    assert!(st.ends_with(&format!("-{node}")));
    // tgc: with the TGT cookie, the owner issues a new ST without a form.
    for _ in 0..5 {
        let sso = env
            .get(
                &format!("/cas/login?service={SERVICE}"),
                &[("cookie", &format!("lang=en; {tgc}"))],
            )
            .await;
        assert_eq!(
            (sso.status, sso.header("x-cas-node")),
            (302, Some(node.as_str()))
        );
    }
    // ticket: validation goes to the issuer (tickets live only there).
    let v = env
        .get(
            &format!(
                "/cas/serviceValidate?service={SERVICE}&ticket={st}&pgtUrl=https%3A%2F%2Fportal"
            ),
            &[],
        )
        .await;
    assert_eq!(v.header("x-cas-node"), Some(node.as_str()));
    assert!(v.body.contains("<cas:user>alice</cas:user>"), "{}", v.body);
    // pgt: /proxy goes to the PGT's node.
    let pgt = v.header("x-demo-pgt").unwrap().to_owned();
    let p = env
        .get(
            &format!("/cas/proxy?targetService=https%3A%2F%2Fapi&pgt={pgt}"),
            &[],
        )
        .await;
    assert_eq!(p.header("x-cas-node"), Some(node.as_str()));
    assert!(p.body.contains("<cas:proxyTicket>PT-"), "{}", p.body);
    // session: the path parameter form of JSESSIONID, on any method
    // (five times: a router that ignored it would hit by chance 1 in 3).
    for _ in 0..5 {
        let post = env
            .post(&format!("/cas/login;jsessionid=ABC.{node}"), &[], "")
            .await;
        assert_eq!(post.header("x-cas-node"), Some(node.as_str()));
    }
    // any: a new visitor is spread over the nodes.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        seen.insert(
            env.get("/cas/login", &[])
                .await
                .header("x-cas-node")
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    // No pool: 404 from casfront itself.
    let none = env.get("/nothing", &[]).await;
    assert_eq!((none.status, none.header("x-cas-node")), (404, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_logins_validate_without_a_failure() {
    let env = Env::start().await;
    let mut per_node = std::collections::HashMap::new();
    for i in 0..200 {
        let (node, _tgc, st) = env.login(&format!("user{i}")).await;
        let v = env
            .get(
                &format!("/cas/p3/serviceValidate?service={SERVICE}&ticket={st}"),
                &[],
            )
            .await;
        assert!(
            v.body.contains(&format!("<cas:user>user{i}</cas:user>")),
            "login {i}: {}",
            v.body
        );
        assert_eq!(v.header("x-cas-node"), Some(node.as_str()));
        *per_node.entry(node).or_insert(0) += 1;
    }
    assert_eq!(per_node.len(), 3, "{per_node:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_costs_no_request() {
    let mut env = Env::start().await;
    let stopped = env.cluster.nodes.remove(1);
    let name = stopped.spec.name.clone();
    stopped.stop().await;
    for i in 0..30 {
        let r = env.get("/cas/login", &[]).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
        assert_ne!(r.header("x-cas-node"), Some(name.as_str()));
    }
    // A ticket of the stopped node falls through to a live one.
    let r = env
        .get(
            &format!("/cas/serviceValidate?service={SERVICE}&ticket=ST-1-abc-{name}"),
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("INVALID_TICKET"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_gets_a_504_in_time() {
    // A node that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr: SocketAddr = silent.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            open.push(s);
        }
    });
    let mut cfg = casfront::demo::cluster_config("127.0.0.1:0".parse().unwrap(), &[silent_addr]);
    cfg.push_str("[pool.upstream]\nresponse_timeout = \"300ms\"\n");
    let cfg = support::config_of(&cfg);
    assert_eq!(
        cfg.pools[0].upstream.response_timeout,
        Duration::from_millis(300)
    );
    let cert = casfront::demo::self_signed().unwrap();
    let tls = casfront::tls::from_pem(&cert.cert_pem, &cert.key_pem).unwrap();
    let (addr, _proxy, _serving) = support::front(&cfg, tls).await;
    let client = tls_trusting(&cert.cert_pem);
    let started = std::time::Instant::now();
    let r = send_tls(&client, addr, "localhost", "GET", "/cas/login", &[], "").await;
    assert_eq!(r.status, 504, "{}", r.body);
    // The configured 300 ms, not the 30 s default nor an early error.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(
        !r.body.contains("127.0.0.1"),
        "never reveal a node's address: {}",
        r.body
    );
}

/// A client that closes its sending side once its request is out (TLS
/// close_notify, then FIN) still gets the node's answer, as from HAProxy:
/// the end of its input does not cancel the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_client_gets_its_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = Env::start().await;
    let mut tls = support::client::connect_tls(&env.tls, env.cluster.addr, "localhost").await;
    tls.write_all(b"GET /cas/slow?ms=300 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    tls.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer))
        .await
        .expect("no answer within 5 s")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("slow\n"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_forwarding_headers_are_replaced() {
    let env = Env::start().await;
    let spoofed = [
        ("x-forwarded-for", "6.6.6.6"),
        ("x-real-ip", "6.6.6.6"),
        ("forwarded", "for=6.6.6.6"),
        ("x-forwarded-proto", "http"),
        ("connection", "x-private"),
        ("x-private", "1"),
    ];
    // What the node received, as it lists it.
    let seen = env.get("/cas/headers", &spoofed).await.body;
    assert!(seen.contains("\nx-forwarded-for: 127.0.0.1\n"), "{seen}");
    assert!(seen.contains("\nx-forwarded-proto: https\n"), "{seen}");
    assert!(seen.contains("\nx-forwarded-host: localhost\n"), "{seen}");
    assert!(
        seen.contains(&format!(
            "\nx-forwarded-port: {}\n",
            env.cluster.addr.port()
        )),
        "{seen}"
    );
    for gone in [
        "6.6.6.6",
        "x-real-ip",
        "forwarded:",
        "x-private",
        "connection:",
    ] {
        assert!(!seen.contains(gone), "{gone} reached the node: {seen}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_reuse_one_upstream_connection() {
    let env = Env::start().await;
    let generation = env.cluster.generation();
    let node = generation.table().node_by_name("cas1").unwrap();
    let mut client = KeepAlive::open(&env.tls, env.cluster.addr, "localhost").await;
    for _ in 0..1000 {
        let r = client.get("/cas/login;jsessionid=X.cas1").await;
        assert_eq!((r.status, r.header("x-cas-node")), (200, Some("cas1")));
    }
    let pool = generation.pool(node).unwrap();
    assert_eq!(pool.idle_count(), 1);
    assert_eq!(
        env.cluster.nodes[0].connections(),
        1,
        "one upstream connection for 1,000 sequential requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_keeps_its_forwarding_headers() {
    // The test client connects from 127.0.0.1: a trusted proxy here.
    let env =
        Env::configured(|c| c.replacen("[tls]", "trusted_proxies = [\"127.0.0.0/8\"]\n[tls]", 1))
            .await;
    let from_balancer = [
        ("x-forwarded-for", "198.51.100.7"),
        ("x-forwarded-port", "443"),
        ("x-real-ip", "198.51.100.7"),
    ];
    let seen = env.get("/cas/headers", &from_balancer).await.body;
    assert!(
        seen.contains("\nx-forwarded-for: 198.51.100.7, 127.0.0.1\n"),
        "{seen}"
    );
    assert!(seen.contains("\nx-forwarded-port: 443\n"), "{seen}");
    assert!(seen.contains("\nx-real-ip: 198.51.100.7\n"), "{seen}");
    assert!(seen.contains("\nx-forwarded-proto: https\n"), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_override_replaces_host_for_the_nodes() {
    let env = Env::configured(|c| {
        c.replacen(
            "path_prefix = \"/cas\"\n",
            "path_prefix = \"/cas\"\nhost_override = \"cas.internal:8443\"\n",
            1,
        )
    })
    .await;
    let seen = env.get("/cas/headers", &[]).await.body;
    assert!(seen.contains("\nhost: cas.internal:8443\n"), "{seen}");
    assert!(seen.contains("\nx-forwarded-host: localhost\n"), "{seen}");
    // Without it, the client's Host reaches the node.
    let plain = Env::start().await;
    let seen = plain.get("/cas/headers", &[]).await.body;
    assert!(seen.contains("\nhost: localhost\n"), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saml_validate_post_is_routed_by_the_soap_body() {
    let env = Env::start().await;
    // Six logins: a body the router ignored would land on the issuer by chance 1 in 3 each.
    for padding in [0, 100_000, 0, 100_000, 0, 100_000] {
        let (node, _tgc, st) = env.login("carol").await;
        // java-cas-client's request: TARGET in the query, the ST only in the body,
        // here followed by a comment larger than the prefix casfront reads.
        let body = format!(
            "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\"><SOAP-ENV:Header/>\
             <SOAP-ENV:Body><samlp:Request xmlns:samlp=\"urn:oasis:names:tc:SAML:1.0:protocol\" MajorVersion=\"1\" \
             MinorVersion=\"1\"><samlp:AssertionArtifact>{st}</samlp:AssertionArtifact></samlp:Request>\
             <!--{}--></SOAP-ENV:Body></SOAP-ENV:Envelope>",
            "x".repeat(padding)
        );
        let r = env
            .post(
                &format!("/cas/samlValidate?TARGET={SERVICE}"),
                &[("content-type", "text/xml")],
                &body,
            )
            .await;
        assert_eq!(
            r.header("x-cas-node"),
            Some(node.as_str()),
            "padding {padding}"
        );
        assert!(
            r.body.contains("samlp:Success") && r.body.contains(">carol<"),
            "{}",
            r.body
        );
        assert_eq!(
            r.header("x-demo-body-len"),
            Some(body.len().to_string().as_str()),
            "the body arrives whole"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learned_sessions_keep_a_login_on_its_node() {
    // Session ids without a jvmRoute: only the learned table can send the
    // POST to the node that holds the login flow (by chance: 1 in 3).
    let specs = (1..=3)
        .map(|i| NodeSpec {
            jvm_route: String::new(),
            ..NodeSpec::named(&format!("cas{i}"))
        })
        .collect();
    let env = Env::with_nodes(specs, |c| c).await;
    for i in 0..30 {
        let (node, _tgc, st) = env.login(&format!("dave{i}")).await;
        assert!(st.ends_with(&format!("-{node}")));
    }
    assert!(!env.cluster.generation().learned().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_that_route_by_themselves_are_not_learned() {
    // A jvmRoute session id and a readable CASTGC ticket id name their
    // node: routing never reads the table for them, so it stays empty.
    let env = Env::start().await;
    for i in 0..5 {
        let (node, _tgc, st) = env.login(&format!("fay{i}")).await;
        assert!(st.ends_with(&format!("-{node}")));
    }
    assert!(env.cluster.generation().learned().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_are_proxied_as_http11() {
    let env = Env::start().await;
    let (node, tgc, _st) = env.login("erin").await;
    let h2 = support::client::tls_trusting_h2(&env.cluster.cert_pem);
    // Browsers on HTTP/2 send cookies as several headers; the TGT cookie is in the second.
    let r = support::client::send_h2(
        &h2,
        env.cluster.addr,
        "localhost",
        "/cas/headers",
        &[("cookie", "lang=en"), ("cookie", &tgc)],
    )
    .await;
    assert_eq!(
        (r.status, r.header("x-cas-node")),
        (200, Some(node.as_str())),
        "{}",
        r.body
    );
    // What the node received: HTTP/1.1, Host from :authority, one cookie header.
    assert!(r.body.starts_with("HTTP/1.1 /cas/headers\n"), "{}", r.body);
    assert!(r.body.contains("\nhost: localhost\n"), "{}", r.body);
    assert!(
        r.body.contains(&format!("\ncookie: lang=en; {tgc}\n")),
        "{}",
        r.body
    );
    assert_eq!(r.body.matches("\ncookie:").count(), 1, "{}", r.body);
}
