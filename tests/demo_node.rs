//! The demo CAS node on its own, over real HTTP: the login web flow, tickets
//! valid once and only on the issuing node, CAS 1/2/3 answers, proxying.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use casfront::demo::node::{spawn, NodeSpec};

mod support;
use support::client::{send, ticket_in};

const SERVICE: &str = "https%3A%2F%2Fapp.example.edu%2F";

#[tokio::test]
async fn login_then_validate_once_and_only_on_the_issuer() {
    let a = spawn(NodeSpec::named("cas-a")).await.unwrap();
    let b = spawn(NodeSpec::named("cas-b")).await.unwrap();

    let form = send(
        a.addr,
        "GET",
        &format!("/cas/login?service={SERVICE}"),
        &[],
        "",
    )
    .await;
    assert_eq!(
        (form.status, form.header("x-cas-node")),
        (200, Some("cas-a"))
    );
    let session = form.set_cookie("JSESSIONID").unwrap();
    assert!(session.ends_with(".cas-a"), "{session}");

    // The POST needs the node that holds the login flow.
    let creds = "username=alice&password=alice&service=https%3A%2F%2Fapp.example.edu%2F";
    let post = |node: std::net::SocketAddr, session: &str, body: &str| {
        let (session, body) = (session.to_owned(), body.to_owned());
        async move {
            let hdrs = [
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", session.as_str()),
            ];
            send(node, "POST", "/cas/login", &hdrs, &body).await
        }
    };
    let elsewhere = post(b.addr, &session, creds).await;
    assert_eq!(elsewhere.status, 400);
    let wrong = post(a.addr, &session, "username=a&password=b").await;
    assert_eq!(wrong.status, 401);
    // Each login flow is used once.
    let replay = post(a.addr, &session, creds).await;
    assert_eq!(replay.status, 400);
    let form = send(a.addr, "GET", "/cas/login", &[], "").await;
    let session = form.set_cookie("JSESSIONID").unwrap();
    let ok = post(a.addr, &session, creds).await;
    assert_eq!(ok.status, 302, "{}", ok.body);
    let tgc = ok.set_cookie("CASTGC").unwrap();
    assert!(
        tgc.starts_with("CASTGC=TGT-") && tgc.ends_with("-cas-a"),
        "{tgc}"
    );
    let st = ticket_in(ok.header("location").unwrap());
    assert!(st.starts_with("ST-") && st.ends_with("-cas-a"), "{st}");

    // Another node does not know the ticket; the issuer accepts it once.
    let v = |node: std::net::SocketAddr, path: String| async move {
        send(node, "GET", &path, &[], "").await
    };
    let other = v(
        b.addr,
        format!("/cas/serviceValidate?service={SERVICE}&ticket={st}"),
    )
    .await;
    assert!(other.body.contains("INVALID_TICKET"), "{}", other.body);
    let good = v(
        a.addr,
        format!("/cas/p3/serviceValidate?service={SERVICE}&ticket={st}"),
    )
    .await;
    assert!(
        good.body.contains("<cas:user>alice</cas:user>"),
        "{}",
        good.body
    );
    let again = v(
        a.addr,
        format!("/cas/serviceValidate?service={SERVICE}&ticket={st}"),
    )
    .await;
    assert!(again.body.contains("INVALID_TICKET"));

    // With the TGT cookie, a new ST without a form; CAS 1.0 answers.
    let sso = send(
        a.addr,
        "GET",
        &format!("/cas/login?service={SERVICE}"),
        &[("cookie", &tgc)],
        "",
    )
    .await;
    assert_eq!(sso.status, 302);
    let st2 = ticket_in(sso.header("location").unwrap());
    let v1 = v(
        a.addr,
        format!("/cas/validate?service={SERVICE}&ticket={st2}"),
    )
    .await;
    assert_eq!(v1.body, "yes\nalice\n");
    let sso_b = send(
        b.addr,
        "GET",
        &format!("/cas/login?service={SERVICE}"),
        &[("cookie", &tgc)],
        "",
    )
    .await;
    assert_eq!(
        sso_b.status, 200,
        "another node shows the form: it does not know the TGT"
    );
}

#[tokio::test]
async fn proxy_granting_and_proxy_tickets() {
    let a = spawn(NodeSpec::named("cas-a")).await.unwrap();
    let form = send(a.addr, "GET", "/cas/login", &[], "").await;
    let session = form.set_cookie("JSESSIONID").unwrap();
    let creds = format!("username=bob&password=bob&service={SERVICE}");
    let ok = send(
        a.addr,
        "POST",
        "/cas/login",
        &[("cookie", &session)],
        &creds,
    )
    .await;
    let st = ticket_in(ok.header("location").unwrap());
    let pgt_url = "https%3A%2F%2Fportal.example.edu%2Fpgt";
    let v = send(
        a.addr,
        "GET",
        &format!("/cas/serviceValidate?service={SERVICE}&ticket={st}&pgtUrl={pgt_url}"),
        &[],
        "",
    )
    .await;
    assert!(
        v.body.contains("<cas:proxyGrantingTicket>PGTIOU-"),
        "{}",
        v.body
    );
    let pgt = v.header("x-demo-pgt").unwrap().to_owned();
    assert!(pgt.starts_with("PGT-") && pgt.ends_with("-cas-a"));
    let target = "https%3A%2F%2Fapi.example.edu";
    let pt = proxy_ticket(a.addr, &pgt, target).await;
    assert!(pt.starts_with("PT-"));
    // A PT is not accepted by serviceValidate, only by proxyValidate.
    let sv = send(
        a.addr,
        "GET",
        &format!("/cas/serviceValidate?service={target}&ticket={pt}"),
        &[],
        "",
    )
    .await;
    assert!(sv.body.contains("INVALID_TICKET"));
    let pt = proxy_ticket(a.addr, &pgt, target).await;
    let pv = send(
        a.addr,
        "GET",
        &format!("/cas/proxyValidate?service={target}&ticket={pt}"),
        &[],
        "",
    )
    .await;
    assert!(pv.body.contains("<cas:user>bob</cas:user>"), "{}", pv.body);
    let bad = send(
        a.addr,
        "GET",
        &format!("/cas/proxy?pgt=PGT-1-x-cas-a&targetService={target}"),
        &[],
        "",
    )
    .await;
    assert!(bad.body.contains("proxyFailure"));
}

#[tokio::test]
async fn a_stopped_node_refuses_connections() {
    let a = spawn(NodeSpec::named("cas-a")).await.unwrap();
    let addr = a.addr;
    assert_eq!(send(addr, "GET", "/cas/login", &[], "").await.status, 200);
    a.stop().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// A PT for `target` from `/proxy` with `pgt`.
async fn proxy_ticket(node: std::net::SocketAddr, pgt: &str, target: &str) -> String {
    let p = send(
        node,
        "GET",
        &format!("/cas/proxy?pgt={pgt}&targetService={target}"),
        &[],
        "",
    )
    .await;
    let pt = p
        .body
        .split("<cas:proxyTicket>")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap();
    pt.to_owned()
}

#[tokio::test]
async fn a_forwarding_cluster_forwards_once() {
    use casfront::demo::node::cluster::{Peering, Strategy};
    use std::time::Duration;
    // Two nodes that (wrongly) share a suffix: a ticket neither knows is
    // forwarded once, then answered, never bounced back and forth.
    let peering = Peering::new(Strategy::Forward, Duration::ZERO);
    let spec = |name: &str| NodeSpec {
        suffix: "same".into(),
        cluster: Some(peering.clone()),
        ..NodeSpec::named(name)
    };
    let nodes = vec![
        spawn(spec("cas1")).await.unwrap(),
        spawn(spec("cas2")).await.unwrap(),
    ];
    peering.connect(&nodes);
    let r = send(
        nodes[0].addr,
        "GET",
        &format!("/cas/serviceValidate?service={SERVICE}&ticket=ST-1-abc-same"),
        &[],
        "",
    )
    .await;
    assert!(r.body.contains("INVALID_TICKET"), "{}", r.body);
    assert_eq!(r.header("x-demo-hops"), Some("1"));
    assert_eq!(r.header("x-cas-node"), Some("cas1"));
}
