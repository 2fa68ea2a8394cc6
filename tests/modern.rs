//! Modern CAS deployments end to end, on demo nodes in modern mode (an
//! opaque signed `TGC` only its node accepts, no jvmRoute): 200 logins
//! through one casfront; two casfront instances sharing only a route
//! cookie key, alternating on every request, across a key rotation; a
//! logout forgetting the learned cookie; a forged route cookie ignored; the
//! REST and OAuth flows; a cut-over from an F5 BIG-IP, whose
//! `BIGipServer<pool>` cookie routes to the node it encodes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use casfront::demo::node::NodeSpec;
use casfront::demo::Cluster;

mod support;
use support::browser::Jar;
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

/// casfront instances in front of one set of modern-mode nodes.
struct Fleet {
    cluster: Cluster,
    /// Every instance's address; the first is the cluster's own.
    fronts: Vec<std::net::SocketAddr>,
    /// PEM of every instance's certificate.
    trust: String,
    _serving: Vec<tokio::task::JoinHandle<()>>,
}

const SERVICE_Q: &str = "https%3A%2F%2Fapp.example.edu%2F";
/// The login page for the service (form, or single sign-on).
const LOGIN: &str = "/cas/login?service=https%3A%2F%2Fapp.example.edu%2F";

fn key_file(byte: u8) -> String {
    let hex: String = std::iter::repeat_n(format!("{byte:02x}"), 32).collect();
    support::temp_file("route.key", &format!("{hex}\n"))
        .display()
        .to_string()
}

/// The `[pool.route_cookie]` section with these key files (current first).
fn route_cookie(keys: &[&str]) -> String {
    let mut s = format!("[pool.route_cookie]\nkey_file = {:?}\n", keys[0]);
    if let Some(prev) = keys.get(1) {
        s.push_str(&format!("previous_key_file = {prev:?}\n"));
    }
    s
}

impl Fleet {
    /// Three modern nodes whose ST ids carry their suffix, casfront in
    /// front with `section` appended to its configuration.
    async fn start(section: &str) -> Fleet {
        let specs = ["cas1", "cas2", "cas3"]
            .map(|n| NodeSpec::modern(n, true))
            .to_vec();
        let cluster = Cluster::start_with(specs, "127.0.0.1:0".parse().unwrap(), |c| {
            c + section + support::NO_RATE_LIMIT
        })
        .await
        .unwrap();
        Fleet {
            fronts: vec![cluster.addr],
            trust: cluster.cert_pem.clone(),
            cluster,
            _serving: Vec::new(),
        }
    }

    /// Another casfront instance before the same nodes, with `section`
    /// instead of the first one's.
    async fn add(&mut self, section: &str) -> usize {
        let addrs: Vec<_> = self.cluster.nodes.iter().map(|n| n.addr).collect();
        let text = casfront::demo::cluster_config("127.0.0.1:0".parse().unwrap(), &addrs)
            + section
            + support::NO_RATE_LIMIT;
        let cfg = support::config_of(&text);
        let cert = casfront::demo::self_signed().unwrap();
        let tls = casfront::tls::from_pem(&cert.cert_pem, &cert.key_pem).unwrap();
        let current = casfront::current::Current::fixed(&cfg, tls).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.fronts.push(listener.local_addr().unwrap());
        self._serving
            .push(tokio::spawn(casfront::server::serve(listener, current)));
        self.trust.push_str(&cert.cert_pem);
        self.fronts.len() - 1
    }

    async fn send(
        &self,
        front: usize,
        jar: &mut Jar,
        method: &str,
        target: &str,
        body: &str,
    ) -> support::client::Reply {
        let tls = tls_trusting(&self.trust);
        support::browser::send(&tls, self.fronts[front], jar, method, target, body).await
    }

    /// A whole login on the instances (one per step, round robin from
    /// `first`): form, POST, ST validated, then single sign-on and that ST
    /// validated. How many steps failed; `jar` keeps the cookies.
    async fn login(&self, user: &str, first: usize, jar: &mut Jar) -> usize {
        let n = self.fronts.len();
        let mut step = first;
        let mut next = || {
            step += 1;
            (step - 1) % n
        };
        let mut failed = 0;
        let r = self.send(next(), jar, "GET", LOGIN, "").await;
        failed += usize::from(r.status != 200);
        let form = format!("username={user}&password={user}&service={SERVICE_Q}");
        let r = self.send(next(), jar, "POST", "/cas/login", &form).await;
        failed += usize::from(r.status != 302);
        failed += self.validate_last(&r, user, next()).await;
        // Single sign-on: the TGC (opaque) must reach its node.
        let sso = self.send(next(), jar, "GET", LOGIN, "").await;
        failed += usize::from(sso.status != 302);
        failed + self.validate_last(&sso, user, next()).await
    }

    async fn validate_last(&self, r: &support::client::Reply, user: &str, front: usize) -> usize {
        let st = r_ticket(r);
        let validate = format!("/cas/serviceValidate?service={SERVICE_Q}&ticket={st}");
        let v = self
            .send(front, &mut Jar::default(), "GET", &validate, "")
            .await;
        usize::from(!v.body.contains(&format!("<cas:user>{user}</cas:user>")))
    }
}

fn r_ticket(r: &support::client::Reply) -> String {
    r.header("location")
        .map(support::client::ticket_in)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_modern_logins_through_one_instance() {
    let fleet = Fleet::start("").await;
    let mut failed = 0;
    for i in 0..200 {
        failed += fleet
            .login(&format!("user{i}"), 0, &mut Jar::default())
            .await;
    }
    assert_eq!(failed, 0);
    // The TGCs and sessions were learned, none readable by suffix.
    assert!(
        fleet.cluster.generation().learned().len() >= 400,
        "{}",
        fleet.cluster.generation().learned().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_nothing_but_the_route_cookie_key() {
    let (k1, k2) = (key_file(0x11), key_file(0x22));
    let mut fleet = Fleet::start(&route_cookie(&[&k1])).await;
    fleet.add(&route_cookie(&[&k1])).await;
    // Every step on the other instance than the step before.
    let mut jars = Vec::new();
    let mut failed = 0;
    for i in 0..100 {
        let mut jar = Jar::default();
        failed += fleet.login(&format!("early{i}"), i % 2, &mut jar).await;
        assert!(jar.0.contains_key("CASFRONT_ROUTE"), "{:?}", jar.0.keys());
        jars.push(jar);
    }
    assert_eq!(failed, 0);
    // The key rotates: two new instances seal with k2 and still open k1.
    let a = fleet.add(&route_cookie(&[&k2, &k1])).await;
    let b = fleet.add(&route_cookie(&[&k2, &k1])).await;
    let fresh = Fleet {
        cluster: fleet.cluster,
        fronts: vec![fleet.fronts[a], fleet.fronts[b]],
        trust: fleet.trust,
        _serving: fleet._serving,
    };
    for (i, jar) in jars.iter_mut().enumerate() {
        // Single sign-on with a route cookie sealed under the old key.
        let r = fresh.send(i % 2, jar, "GET", LOGIN, "").await;
        assert_eq!(r.status, 302, "early{i}: {}", r.body);
        failed += fresh
            .validate_last(&r, &format!("early{i}"), (i + 1) % 2)
            .await;
    }
    for i in 0..100 {
        failed += fresh
            .login(&format!("late{i}"), i % 2, &mut Jar::default())
            .await;
    }
    assert_eq!(failed, 0);
}

/// The `casfront_fallthroughs_total` count for an entry and cause.
fn falls(c: &Cluster, entry: &str, cause: &str) -> u64 {
    let text = c.current.metrics().encode(
        c.generation().table(),
        |_| casfront::routing::NodeState::Healthy,
        0,
    );
    text.lines()
        .filter(|l| {
            l.starts_with("casfront_fallthroughs_total")
                && l.contains(&format!("entry=\"{entry}\""))
                && l.contains(&format!("cause=\"{cause}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_forgets_and_forged_route_cookies_fall_through() {
    let fleet = Fleet::start(&route_cookie(&[&key_file(0x33)])).await;
    let mut jar = Jar::default();
    assert_eq!(fleet.login("alice", 0, &mut jar).await, 0);
    let tgc = jar.0["TGC"].clone();
    assert!(jar.0.contains_key("CASFRONT_ROUTE"));
    let learned = |v: &str| {
        fleet.cluster.generation().learned().find(
            0,
            b"TGC",
            v.as_bytes(),
            std::time::Instant::now(),
        )
    };
    assert!(learned(&tgc).is_some());
    // The node expires the TGC at logout: casfront forgets it.
    let r = fleet.send(0, &mut jar, "GET", "/cas/logout", "").await;
    assert_eq!(r.status, 200);
    assert!(!jar.0.contains_key("TGC"));
    assert_eq!(learned(&tgc), None);
    // The route cookie follows the TGC out.
    assert!(!jar.0.contains_key("CASFRONT_ROUTE"), "{:?}", jar.0.keys());
    let expired = r.headers.get_all("set-cookie").iter().any(|v| {
        let v = v.to_str().unwrap();
        v.starts_with("CASFRONT_ROUTE=;") && v.contains("Max-Age=0") && v.contains("Path=/cas;")
    });
    assert!(expired, "{:?}", r.headers);
    // A forged route cookie is ignored and counted; the request is served.
    let before = falls(&fleet.cluster, "route-cookie", "bad_route_cookie");
    let mut forged = Jar::default();
    forged.0.insert(
        "CASFRONT_ROUTE".into(),
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
    );
    let r = fleet.send(0, &mut forged, "GET", "/cas/login", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        falls(&fleet.cluster, "route-cookie", "bad_route_cookie"),
        before + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_and_oauth_flows_reach_the_issuing_node() {
    let fleet = Fleet::start("").await;
    // REST: a TGT from any node, then an ST from the TGT's own node.
    for i in 0..12 {
        let mut jar = Jar::default();
        let user = format!("rest{i}");
        let r = fleet
            .send(
                0,
                &mut jar,
                "POST",
                "/cas/v1/tickets",
                &format!("username={user}&password={user}"),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let location = r.header("location").unwrap().to_owned();
        let tgt_node = r.header("x-cas-node").unwrap().to_owned();
        let r = fleet
            .send(
                0,
                &mut jar,
                "POST",
                &location,
                &format!("service={SERVICE_Q}"),
            )
            .await;
        assert_eq!(
            (r.status, r.header("x-cas-node")),
            (200, Some(tgt_node.as_str())),
            "{}",
            r.body
        );
        let validate = format!("/cas/serviceValidate?service={SERVICE_Q}&ticket={}", r.body);
        let v = fleet.send(0, &mut jar, "GET", &validate, "").await;
        assert!(
            v.body.contains(&format!("<cas:user>{user}</cas:user>")),
            "{}",
            v.body
        );
        let r = fleet.send(0, &mut jar, "DELETE", &location, "").await;
        assert_eq!(
            (r.status, r.header("x-cas-node")),
            (200, Some(tgt_node.as_str()))
        );
    }
    // OAuth: a code from the logged-in user's node, redeemed on the node
    // its suffix names, once.
    for i in 0..12 {
        let mut jar = Jar::default();
        let user = format!("oauth{i}");
        assert_eq!(fleet.login(&user, 0, &mut jar).await, 0);
        let redirect = "https%3A%2F%2Frp.example.edu%2Fcb";
        let r = fleet
            .send(0, &mut jar, "GET", &format!("/cas/oauth2.0/authorize?response_type=code&client_id=rp&redirect_uri={redirect}"), "")
            .await;
        assert_eq!(r.status, 302, "{}", r.body);
        let issuer = r.header("x-cas-node").unwrap().to_owned();
        let location = r.header("location").unwrap();
        let code = location.split("code=").nth(1).unwrap().to_owned();
        assert!(code.ends_with(&format!("-{issuer}")), "{code}");
        let form = format!(
            "grant_type=authorization_code&code={code}&redirect_uri={redirect}&client_id=rp"
        );
        // Each redemption from a browser of its own.
        let redeem = || async {
            let path = "/cas/oauth2.0/accessToken";
            fleet
                .send(0, &mut Jar::default(), "POST", path, &form)
                .await
        };
        let t = redeem().await;
        assert_eq!(
            (t.status, t.header("x-cas-node")),
            (200, Some(issuer.as_str())),
            "{}",
            t.body
        );
        assert!(
            t.body.contains(&format!("\"user\":\"{user}\"")),
            "{}",
            t.body
        );
        let again = redeem().await;
        // Refused by the node that issued it: once means once.
        assert_eq!(
            (again.status, again.header("x-cas-node")),
            (400, Some(issuer.as_str()))
        );
    }
}

/// A flood of new session cookies from one address (each `GET /login`
/// without a cookie makes a session) cannot turn the learned table over:
/// the address fills only its share, and a user's learned TGC keeps
/// routing its single sign-on to its node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_sessions_does_not_flush_the_learned_table() {
    let fleet = Fleet::start("[learned]\ncapacity = 100\n").await;
    let mut jar = Jar::default();
    assert_eq!(fleet.login("alice", 0, &mut jar).await, 0);
    let tls = tls_trusting(&fleet.trust);
    let mut flood = support::client::KeepAlive::open(&tls, fleet.fronts[0], "localhost").await;
    for _ in 0..300 {
        let r = flood.get("/cas/login").await;
        assert_eq!(r.status, 200);
    }
    let learned = fleet.cluster.generation().learned().len();
    assert!(learned <= 100, "{learned}");
    // Single sign-on three times: round robin would find the TGC's node
    // once in three.
    for round in 0..3 {
        let sso = fleet.send(0, &mut jar, "GET", LOGIN, "").await;
        assert_eq!(sso.status, 302, "round {round}: {}", sso.body);
    }
}
