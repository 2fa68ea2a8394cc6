//! The admin API end to end: node states in `/status.json`, and drain,
//! disable and enable as the data plane then routes (a draining node keeps
//! its tickets but takes no new logins; a disabled one receives nothing),
//! with the bearer token required for POSTs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use casfront::demo::node::NodeSpec;
use casfront::demo::Cluster;

mod support;
use support::client::{send, send_tls, tls_trusting};

const TOKEN: &str = "0123456789abcdef-admin";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_disable_enable_and_status() {
    let specs = (1..=3)
        .map(|i| NodeSpec::named(&format!("cas{i}")))
        .collect();
    let with_token = |c: String| format!("{c}[admin]\ntoken = \"{TOKEN}\"\n");
    let cluster = Cluster::start_with(specs, "127.0.0.1:0".parse().unwrap(), with_token)
        .await
        .unwrap();
    let (admin_addr, _admin) = support::admin(&cluster.current).await;
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

/// The value of the sample `name{labels}` in a Prometheus exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_is_exported_and_counts() {
    // Session ids without a jvmRoute: the learned table keeps them.
    let specs = (1..=3)
        .map(|i| casfront::demo::node::NodeSpec {
            jvm_route: String::new(),
            ..casfront::demo::node::NodeSpec::named(&format!("cas{i}"))
        })
        .collect();
    let mut cluster = Cluster::start_with(specs, "127.0.0.1:0".parse().unwrap(), |c| c)
        .await
        .unwrap();
    let (admin_addr, _admin) = support::admin(&cluster.current).await;
    let tls = tls_trusting(&cluster.cert_pem);
    let addr = cluster.addr;
    let get = |target: &'static str| {
        let tls = tls.clone();
        async move { send_tls(&tls, addr, "localhost", "GET", target, &[], "").await }
    };
    // A ticket routed by its suffix, twice; one with an unknown suffix;
    // a path under no pool.
    for _ in 0..2 {
        let r = get("/cas/serviceValidate?service=s&ticket=ST-1-abcdefgh-cas2").await;
        assert_eq!(r.header("x-cas-node"), Some("cas2"));
    }
    let r = get("/cas/serviceValidate?service=s&ticket=ST-1-abcdefgh-cas9").await;
    assert_eq!(r.status, 200);
    assert_eq!(get("/elsewhere").await.status, 404);
    // A handshake that fails: plain HTTP to the TLS port.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
        plain
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = plain.read_to_end(&mut answer).await;
        assert!(
            !answer.starts_with(b"HTTP"),
            "no HTTP answer on the TLS port"
        );
    }
    // One client connection stays open while the metrics are read.
    let mut open = support::client::KeepAlive::open(&tls, addr, "localhost").await;
    assert_eq!(open.get("/cas/login").await.status, 200);
    // cas3 dies: the next ticket of cas3 meets a refused connection.
    cluster.nodes.remove(2).stop().await;
    let r = get("/cas/serviceValidate?service=s&ticket=ST-1-abcdefgh-cas3").await;
    assert_eq!(r.status, 200, "failed over");
    // Its row on the status page: the failed connect is one error.
    let cas3 = cluster.generation().table().node_by_name("cas3").unwrap();
    // (Its one request is a login it answered by round robin before.)
    let (requests, errors, _) = cluster.generation().handles().node_summary(cas3);
    assert_eq!((requests, errors), (1, 1));
    // A reload of a configuration started without a file fails.
    let r = send(admin_addr, "POST", "/reload", &[], "").await;
    assert_eq!(r.status, 422, "{}", r.body);

    let m = send(admin_addr, "GET", "/metrics", &[], "").await;
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    for name in casfront::metrics::names::ALL {
        assert!(
            m.body
                .contains(&format!("# TYPE {} ", name.trim_end_matches("_total"))),
            "{name} missing:\n{}",
            m.body
        );
    }
    let v =
        |series: &str| sample(&m.body, series).unwrap_or_else(|| panic!("{series}\n{}", m.body));
    assert_eq!(
        v(r#"casfront_requests_total{pool="cas",node="cas2",rule="ticket",class="2xx"}"#),
        2.0
    );
    assert_eq!(
        v(r#"casfront_requests_total{pool="none",node="none",rule="none",class="4xx"}"#),
        1.0
    );
    assert_eq!(
        v(
            r#"casfront_fallthroughs_total{pool="cas",entry="validate-ticket",cause="unknown_suffix"}"#
        ),
        1.0
    );
    assert_eq!(
        v(
            r#"casfront_fallthroughs_total{pool="cas",entry="validate-ticket",cause="owner_unusable"}"#
        ),
        0.0,
        "cas3 was still up when its ticket came: a connect failure, not a fall-through"
    );
    assert_eq!(
        v(r#"casfront_upstream_failures_total{pool="cas",node="cas3",kind="connect"}"#),
        1.0
    );
    assert!(v(r#"casfront_upstream_duration_seconds_count{pool="cas",node="cas2"}"#) >= 2.0);
    // Prometheus needs the +Inf bucket to compute quantiles.
    assert_eq!(
        v(r#"casfront_upstream_duration_seconds_bucket{le="+Inf",pool="cas",node="cas2"}"#),
        v(r#"casfront_upstream_duration_seconds_count{pool="cas",node="cas2"}"#)
    );
    assert!(v("casfront_tls_handshake_failures_total") >= 1.0);
    assert!(v("casfront_client_connections") >= 1.0);
    // Closed connections are no longer counted.
    drop(open);
    let mut open_now = f64::MAX;
    for _ in 0..200 {
        let m = send(admin_addr, "GET", "/metrics", &[], "").await;
        open_now = sample(&m.body, "casfront_client_connections").unwrap();
        if open_now == 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(open_now, 0.0);
    assert_eq!(
        v(r#"casfront_node_state{pool="cas",node="cas3",state="down"}"#),
        1.0
    );
    assert_eq!(
        v(r#"casfront_node_state{pool="cas",node="cas1",state="healthy"}"#),
        1.0
    );
    // The one login's JSESSIONID.
    assert_eq!(v("casfront_learned_entries"), 1.0);
    assert_eq!(v(r#"casfront_reloads_total{result="failed"}"#), 1.0);
}

/// A web page in the operator's browser cannot use the admin API: not by
/// a cross-site form (a foreign `Origin`, `Sec-Fetch-Site: cross-site`),
/// not by DNS rebinding (its own name as `Host`); curl and the operator's
/// own page are served. No token is set: the default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_refuses_other_sites_and_rebound_names() {
    let cluster = Cluster::start(2, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (addr, _admin) = support::admin(&cluster.current).await;
    let cas2 = cluster.generation().table().node_by_name("cas2").unwrap();
    let state = || {
        use casfront::routing::NodeStates;
        cluster.generation().health().state(cas2)
    };
    let own = addr.to_string();
    let forged: [&[(&str, &str)]; 4] = [
        &[
            ("origin", "https://evil.example"),
            ("content-type", "text/plain"),
        ],
        &[("origin", "null")],
        &[("sec-fetch-site", "cross-site")],
        &[("host", "attacker.example:9901")],
    ];
    for headers in forged {
        let r = send(addr, "POST", "/nodes/cas2/disable", headers, "").await;
        assert_eq!(r.status, 403, "{headers:?}");
        assert_eq!(
            state(),
            casfront::routing::NodeState::Healthy,
            "{headers:?}"
        );
    }
    let rebound = [("host", "attacker.example")];
    assert_eq!(
        send(addr, "GET", "/status.json", &rebound, "").await.status,
        403
    );
    assert_eq!(send(addr, "GET", "/", &rebound, "").await.status, 403);
    // curl (Host: the address), the operator's own page (same origin),
    // localhost.
    let r = send(addr, "GET", "/status.json", &[("host", &own)], "").await;
    assert_eq!(r.status, 200);
    let origin = format!("http://{own}");
    let page = [("host", own.as_str()), ("origin", origin.as_str())];
    let r = send(addr, "POST", "/nodes/cas2/disable", &page, "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(state(), casfront::routing::NodeState::Disabled);
    let local = format!("localhost:{}", addr.port());
    let r = send(addr, "POST", "/nodes/cas2/enable", &[("host", &local)], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(state(), casfront::routing::NodeState::Healthy);
}

/// `/live` answers while the process does; `/ready` says 503, with the
/// reason, when a pool has no node that takes new logins (here every node
/// drained or disabled), and 200 again when one does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_and_ready() {
    let cluster = Cluster::start(2, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (addr, _admin) = support::admin(&cluster.current).await;
    let get = |path: &'static str| send(addr, "GET", path, &[], "");
    let r = get("/live").await;
    assert_eq!((r.status, r.body.as_str()), (200, "live\n"));
    let r = get("/ready").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ready\n"));
    // A draining node still owns its tickets, but takes no new login.
    assert_eq!(
        send(addr, "POST", "/nodes/cas1/drain", &[], "")
            .await
            .status,
        200
    );
    assert_eq!(get("/ready").await.status, 200);
    assert_eq!(
        send(addr, "POST", "/nodes/cas2/disable", &[], "")
            .await
            .status,
        200
    );
    let r = get("/ready").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, "pool cas: no node takes new logins\n")
    );
    assert_eq!(get("/live").await.status, 200);
    assert_eq!(
        send(addr, "POST", "/nodes/cas2/enable", &[], "")
            .await
            .status,
        200
    );
    assert_eq!(get("/ready").await.status, 200);
    assert_eq!(send(addr, "POST", "/ready", &[], "").await.status, 405);
}
