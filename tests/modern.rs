//! Modern CAS deployments end to end: a cut-over from an F5 BIG-IP, whose
//! `BIGipServer<pool>` persistence cookie routes to the node with the
//! address and port it encodes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use casfront::demo::node::NodeSpec;
use casfront::demo::Cluster;

mod support;
use support::client::{send_tls, tls_trusting};

/// The cookie an F5 sets for pool member `addr` (F5 article K6917).
fn bigip(addr: std::net::SocketAddr) -> String {
    let std::net::SocketAddr::V4(v4) = addr else {
        panic!("{addr} is not IPv4")
    };
    format!(
        "{}.{}.0000",
        u32::from_le_bytes(v4.ip().octets()),
        v4.port().swap_bytes()
    )
}

#[tokio::test]
async fn an_f5_persistence_cookie_routes_to_its_member() {
    let specs = ["cas1", "cas2", "cas3"].map(NodeSpec::named).to_vec();
    let c = Cluster::start_with(specs, "127.0.0.1:0".parse().unwrap(), |c| {
        c.replacen(
            "path_prefix = \"/cas\"\n",
            "path_prefix = \"/cas\"\nbigip_cookie = \"BIGipServercas_pool\"\n",
            1,
        ) + support::NO_RATE_LIMIT
    })
    .await
    .unwrap();
    let tls = tls_trusting(&c.cert_pem);
    let get = |cookie: String| {
        let tls = tls.clone();
        async move {
            let r = send_tls(
                &tls,
                c.addr,
                "localhost",
                "GET",
                "/cas/login",
                &[("cookie", &cookie)],
                "",
            )
            .await;
            assert_eq!(r.status, 200);
            r.header("x-cas-node").unwrap().to_owned()
        }
    };
    for node in &c.nodes {
        for _ in 0..4 {
            let cookie = format!("BIGipServercas_pool={}", bigip(node.addr));
            assert_eq!(get(cookie).await, node.spec.name);
        }
    }
    // The session cookie's jvmRoute comes first.
    let both = format!(
        "JSESSIONID=ABC.cas3; BIGipServercas_pool={}",
        bigip(c.nodes[0].addr)
    );
    assert_eq!(get(both).await, "cas3");
    // A member that is no node, or another encoding, falls through to any.
    let stranger: std::net::SocketAddr = "10.9.9.9:8443".parse().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for value in [
        bigip(stranger),
        "rd5o00000000000000000000ffff0a00000co8443".into(),
    ] {
        for _ in 0..3 {
            seen.insert(get(format!("BIGipServercas_pool={value}")).await);
        }
    }
    assert!(seen.len() > 1, "round robin expected, got {seen:?}");
    // Another pool's F5 cookie is not read.
    let other = format!("BIGipServerother_pool={}", bigip(c.nodes[1].addr));
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        seen.insert(get(other.clone()).await);
    }
    assert!(seen.len() > 1, "{seen:?}");
}
