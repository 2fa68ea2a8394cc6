//! The admin API end to end: node states in `/status.json`, and drain,
//! disable and enable as the data plane then routes (a draining node keeps
//! its tickets but takes no new logins; a disabled one receives nothing),
//! with the bearer token required for POSTs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use casfront::demo::Cluster;

mod support;
use support::client::{send, send_tls, tls_trusting};

const TOKEN: &str = "0123456789abcdef-admin";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_disable_enable_and_status() {
    let cluster = Cluster::start(3, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    cluster.live.set_admin_token(Some(TOKEN.into()));
    let _admin = tokio::spawn(casfront::admin::serve(admin, cluster.live.clone()));
    let tls = tls_trusting(&cluster.cert_pem);
    let get = |target: &'static str| {
        let tls = tls.clone();
        let addr = cluster.addr;
        async move { send_tls(&tls, addr, "localhost", "GET", target, &[], "").await }
    };
    let auth = format!("Bearer {TOKEN}");
    let post = |path: &'static str, with_token: bool| {
        let auth = auth.clone();
        async move {
            let headers: Vec<(&str, &str)> = if with_token {
                vec![("authorization", auth.as_str())]
            } else {
                vec![]
            };
            send(admin_addr, "POST", path, &headers, "").await
        }
    };
    let ticket = "/cas/serviceValidate?service=x&ticket=ST-1-abcdefgh-cas1";

    // No token, a wrong one, a GET, an unknown node.
    assert_eq!(post("/nodes/cas1/drain", false).await.status, 401);
    let wrong = send(
        admin_addr,
        "POST",
        "/nodes/cas1/drain",
        &[("authorization", "Bearer nope")],
        "",
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(
        send(admin_addr, "GET", "/nodes/cas1/drain", &[], "")
            .await
            .status,
        405
    );
    assert_eq!(post("/nodes/cas9/drain", true).await.status, 404);

    // Draining: new logins avoid cas1; its tickets still reach it.
    let r = post("/nodes/cas1/drain", true).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"state\":\"draining\""), "{}", r.body);
    let other = |r: &support::client::Reply| {
        r.status == 200 && matches!(r.header("x-cas-node"), Some("cas2" | "cas3"))
    };
    for _ in 0..9 {
        let r = get("/cas/login").await;
        assert!(other(&r), "{} {:?}", r.status, r.header("x-cas-node"));
    }
    assert_eq!(get(ticket).await.header("x-cas-node"), Some("cas1"));

    // Disabled: nothing reaches it, not even its own tickets.
    assert_eq!(post("/nodes/cas1/disable", true).await.status, 200);
    for target in [ticket, "/cas/login", "/cas/login;jsessionid=X.cas1"] {
        let r = get(target).await;
        assert!(
            other(&r),
            "{target}: {} {:?}",
            r.status,
            r.header("x-cas-node")
        );
    }
    let status = send(admin_addr, "GET", "/status.json", &[], "").await;
    assert_eq!(status.status, 200);
    let v: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    let nodes = &v["pools"][0]["nodes"];
    assert_eq!(v["pools"][0]["name"], "cas");
    assert_eq!(nodes.as_array().unwrap().len(), 3);
    assert_eq!(nodes[0]["name"], "cas1");
    assert_eq!(nodes[0]["state"], "disabled");
    assert_eq!(nodes[1]["state"], "healthy");

    // Enabled again: logins reach it in turn.
    assert_eq!(post("/nodes/cas1/enable", true).await.status, 200);
    let mut seen = false;
    for _ in 0..9 {
        seen |= get("/cas/login").await.header("x-cas-node") == Some("cas1");
    }
    assert!(seen, "cas1 took no login after enable");
}
