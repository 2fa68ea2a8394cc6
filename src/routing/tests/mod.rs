//! Table-driven tests of every rule and fall-through (`docs/routing.md`); the
//! proptest properties of `route` are in `props`.

use std::collections::HashMap;

use super::*;

/// Three CAS pools: `cas` (suffixes with `-` and `.`, a tail suffix, an F5
/// node, a backup, an F5 persistence cookie, a route cookie), `cas/admin`
/// nested in it, and `idp` (no TGT cookie).
pub(crate) fn pools() -> Vec<PoolSpec> {
    let node = |name: &str, addr: &str| NodeSpec::new(name, Some(addr.parse().unwrap()));
    let cas = PoolSpec {
        bigip_cookie: Some("BIGipServercas".into()),
        route_cookie: Some(route_cookie::RouteCookieKeys {
            name: ROUTE_COOKIE.into(),
            keys: vec![ROUTE_KEY],
            generated: false,
        }),
        ..PoolSpec::new(
            "cas",
            "/cas",
            vec![
                node("cas1", "10.0.0.11:8443"),
                NodeSpec {
                    ticket_suffixes: vec!["cas2".into(), "cas-02.example.edu".into()],
                    ..node("cas2", "10.0.0.12:8443")
                },
                NodeSpec {
                    ticket_suffixes: vec!["02.example.edu".into()],
                    ..node("n3", "10.0.0.13:8443")
                },
                NodeSpec {
                    f5_md5: true,
                    jvm_route: "jr4".into(),
                    ..node("cas4", "10.0.0.14:8443")
                },
                NodeSpec {
                    ticket_suffixes: vec!["spare1".into()],
                    backup: true,
                    ..node("spare", "10.0.0.15:8443")
                },
            ],
        )
    };
    let admin = PoolSpec::new(
        "casadmin",
        "/cas/admin",
        vec![node("adm1", "10.0.2.1:8080")],
    );
    let idp = PoolSpec {
        tgc_cookies: Vec::new(),
        ..PoolSpec::new("idp", "/idp", vec![node("idp1", "10.0.3.1:8080")])
    };
    vec![cas, admin, idp]
}

pub(crate) fn table() -> RoutingTable {
    RoutingTable::new(&pools())
}

/// The `cas` pool's route cookie.
pub(crate) const ROUTE_COOKIE: &str = "CASFRONT_ROUTE";
pub(crate) const ROUTE_KEY: [u8; 32] = [7; 32];

/// A route cookie value naming `node` of the `cas` pool.
pub(crate) fn sealed(node: &str) -> String {
    route_cookie::RouteCookie::new(ROUTE_COOKIE, &[ROUTE_KEY])
        .seal("cas", node)
        .unwrap()
}

/// A learned table for tests.
#[derive(Default)]
struct Learn(HashMap<(PoolId, Vec<u8>, Vec<u8>), NodeId>);

impl Learned for Learn {
    fn lookup(&self, pool: PoolId, cookie: &[u8], value: &[u8]) -> Option<NodeId> {
        self.0
            .get(&(pool, cookie.to_vec(), value.to_vec()))
            .copied()
    }
}

struct Case {
    name: &'static str,
    method: &'static str,
    target: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: Option<&'static str>,
    states: &'static [(&'static str, NodeState)],
    pool: Option<&'static str>,
    node: Option<&'static str>,
    rule: Option<Rule>,
}

const C: Case = Case {
    name: "",
    method: "GET",
    target: "/",
    headers: &[],
    body: None,
    states: &[],
    pool: Some("cas"),
    node: Some("cas1"),
    rule: Some(Rule::Any),
};

use NodeState::{Disabled, Down, Draining};
use Rule::{Any, Pgt, Session, Tgc, Ticket};

/// md5("10.0.0.14"), node cas4's F5 name.
const F5_CAS4: &str = "25bdf4f8fdc764fd70b53f3bf6be7e11";

fn cases() -> Vec<Case> {
    vec![
        // REST (`/v1/tickets/TGT-...`, any method), OAuth/OIDC, delegated login
        Case { name: "REST ST from TGT", method: "POST", target: "/cas/v1/tickets/TGT-1-abc-cas2", body: Some("service=https%3A%2F%2Fapp"), node: Some("cas2"), rule: Some(Tgc), ..C },
        Case { name: "REST TGT status", target: "/cas/v1/tickets/TGT-1-abc-cas2", node: Some("cas2"), rule: Some(Tgc), ..C },
        Case { name: "REST logout", method: "DELETE", target: "/cas/v1/tickets/TGT-1-abc-cas2;x=1", node: Some("cas2"), rule: Some(Tgc), ..C },
        Case { name: "REST TGT without suffix", method: "POST", target: "/cas/v1/tickets/TGT-1-2pVhiVjwq", ..C },
        Case { name: "REST login itself", method: "POST", target: "/cas/v1/tickets", body: Some("username=u&password=p"), ..C },
        Case { name: "OAuth code in the form", method: "POST", target: "/cas/oidc/token", body: Some("grant_type=authorization_code&code=OC-1-abc-cas2&redirect_uri=x"), node: Some("cas2"), rule: Some(Ticket), ..C },
        Case { name: "OAuth code in the query", method: "POST", target: "/cas/oauth2.0/accessToken?grant_type=authorization_code&code=OC-1-abc-cas2", node: Some("cas2"), rule: Some(Ticket), ..C },
        Case { name: "OAuth refresh token", method: "POST", target: "/cas/oauth2.0/token", body: Some("grant_type=refresh_token&refresh_token=RT-1-x-cas2"), node: Some("cas2"), rule: Some(Ticket), ..C },
        Case { name: "OAuth code without suffix (CAS before 7.2)", method: "POST", target: "/cas/oidc/token", body: Some("code=OC-1-2pVhiVjwq"), ..C },
        Case { name: "OAuth code elsewhere is not read", method: "POST", target: "/cas/login", body: Some("code=OC-1-abc-cas2"), ..C },
        Case { name: "bearer profile", target: "/cas/oidc/profile", headers: &[("Authorization", "Bearer AT-1-x-cas2")], node: Some("cas2"), rule: Some(Ticket), ..C },
        Case { name: "bearer, any case", target: "/cas/oauth2.0/profile", headers: &[("Authorization", "bearer  AT-1-x-cas2 ")], node: Some("cas2"), rule: Some(Ticket), ..C },
        Case { name: "bearer JWT falls through", target: "/cas/oidc/profile", headers: &[("Authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln")], ..C },
        Case { name: "basic auth is not a bearer", target: "/cas/oidc/profile", headers: &[("Authorization", "Basic QVQtMS14LWNhczI=")], ..C },
        Case { name: "delegated state", target: "/cas/login?client_name=GitHubClient&code=x&state=TST-1-x-cas2", node: Some("cas2"), rule: Some(Ticket), ..C },
        Case { name: "a state without client_name is not read", target: "/cas/login?state=TST-1-x-cas2", ..C },
        Case { name: "delegatedclientid", target: "/cas/login?delegatedclientid=TST-1-x-cas2", node: Some("cas2"), rule: Some(Ticket), ..C },
        Case { name: "SAML2 redirect RelayState", target: "/cas/login?client_name=SAML2Client&RelayState=TST-1-x-cas2&SAMLResponse=x", node: Some("cas2"), rule: Some(Ticket), ..C },
        Case { name: "SAML2 POST RelayState", method: "POST", target: "/cas/login?client_name=SAML2Client", body: Some("SAMLResponse=PHNhbWw%2B&RelayState=TST-1-x-cas2"), node: Some("cas2"), rule: Some(Ticket), ..C },
        Case { name: "login POST without client_name: body not read", method: "POST", target: "/cas/login", body: Some("RelayState=TST-1-x-cas2"), ..C },
        // rule `ticket` on every validate path, GET and HEAD
        Case { name: "validate", target: "/cas/validate?ticket=ST-1-abc-cas2&service=s", node: Some("cas2"), rule: Some(Ticket), ..C },
        Case { name: "serviceValidate", target: "/cas/serviceValidate?service=s&ticket=ST-1-abc-cas2", node: Some("cas2"), rule: Some(Ticket), ..C },
        Case { name: "proxyValidate PT", target: "/cas/proxyValidate?ticket=PT-3-abc-cas2", node: Some("cas2"), rule: Some(Ticket), ..C },
        Case { name: "samlValidate GET", target: "/cas/samlValidate?TARGET=x&ticket=ST-1-abc-cas2", node: Some("cas2"), rule: Some(Ticket), ..C },
        Case { name: "p3 serviceValidate", target: "/cas/p3/serviceValidate?ticket=ST-1-abc-cas2", node: Some("cas2"), rule: Some(Ticket), ..C },
        Case { name: "p3 proxyValidate", target: "/cas/p3/proxyValidate?ticket=ST-1-abc-cas2", node: Some("cas2"), rule: Some(Ticket), ..C },
        Case { name: "HEAD", method: "HEAD", target: "/cas/serviceValidate?ticket=ST-1-abc-cas2", node: Some("cas2"), rule: Some(Ticket), ..C },
        Case { name: "ticket not first, repeated: first wins", target: "/cas/serviceValidate?service=a&renew=true&ticket=ST-9-x-cas2&ticket=ST-9-x-cas1", node: Some("cas2"), rule: Some(Ticket), ..C },
        Case { name: "trailing slash and path parameter", target: "/cas/serviceValidate/;jsessionid=A.cas1?ticket=ST-1-a-cas2", node: Some("cas2"), rule: Some(Ticket), ..C },
        // suffixes with `-` and `.`, longest match; random parts with `-` and `_`
        Case { name: "dashed dotted suffix", target: "/cas/serviceValidate?ticket=ST-12-Xy9kQ-rT3-cas-02.example.edu", node: Some("cas2"), rule: Some(Ticket), ..C },
        Case { name: "tail suffix", target: "/cas/serviceValidate?ticket=ST-12-Xy9kQ-rT3-02.example.edu", node: Some("n3"), rule: Some(Ticket), ..C },
        Case { name: "random with - and _", target: "/cas/serviceValidate?ticket=ST-5-a-b_c-d--cas1", node: Some("cas1"), rule: Some(Ticket), ..C },
        Case { name: "suffix glued to random", target: "/cas/serviceValidate?ticket=ST-5-abcas2", node: Some("cas1"), rule: Some(Any), ..C },
        Case { name: "no suffix (CAS without cas.host.name)", target: "/cas/serviceValidate?ticket=ST-1-2pVhiVjwq", node: Some("cas1"), rule: Some(Any), ..C },
        Case { name: "F5 md5 suffix", target: "/cas/serviceValidate?ticket=ST-1-a-25bdf4f8fdc764fd70b53f3bf6be7e11", node: Some("cas4"), rule: Some(Ticket), ..C },
        // percent-encoding
        Case { name: "encoded ticket", target: "/cas/serviceValidate?ticket=ST-1-a%2Dcas%2D02.example.edu", node: Some("cas2"), rule: Some(Ticket), ..C },
        Case { name: "encoded name", target: "/cas/serviceValidate?%74icket=ST-1-a-cas2", node: Some("cas2"), rule: Some(Ticket), ..C },
        // traps
        Case { name: "xticket is not ticket", target: "/cas/serviceValidate?xticket=ST-1-abc-cas2", ..C },
        Case { name: "empty ticket", target: "/cas/serviceValidate?ticket=&x=ST-1-a-cas2", ..C },
        Case { name: "unknown suffix", target: "/cas/serviceValidate?ticket=ST-1-abc-cas9", ..C },
        Case { name: "lowercase prefix is no ticket", target: "/cas/serviceValidate?ticket=st-1-abc-cas2", ..C },
        Case { name: "POST to validate path", method: "POST", target: "/cas/serviceValidate?ticket=ST-1-abc-cas2", ..C },
        Case { name: "validate path under another prefix", target: "/cassandra/serviceValidate?ticket=ST-1-abc-cas2", pool: None, node: None, rule: None, ..C },
        // rule `pgt`
        Case { name: "proxy pgt", target: "/cas/proxy?targetService=x&pgt=PGT-1-abc-cas2", node: Some("cas2"), rule: Some(Pgt), ..C },
        Case { name: "pgt on proxyValidate is ignored", target: "/cas/proxyValidate?pgt=PGT-1-abc-cas2", ..C },
        Case { name: "ticket on /proxy is ignored", target: "/cas/proxy?ticket=ST-1-abc-cas2", ..C },
        Case { name: "/proxy/x is not /proxy", target: "/cas/proxy/x?pgt=PGT-1-abc-cas2", ..C },
        // rule `tgc`
        Case { name: "CASTGC among several cookies", target: "/cas/login?service=s", headers: &[("Cookie", "a=1; CASTGC=TGT-1-abc-cas2; JSESSIONID=X.cas1")], node: Some("cas2"), rule: Some(Tgc), ..C },
        Case { name: "cookies across Cookie headers", target: "/cas/login", headers: &[("cookie", "a=1"), ("cookie", "b=2; CASTGC=TGT-1-abc-cas2")], node: Some("cas2"), rule: Some(Tgc), ..C },
        Case { name: "TGC before CASTGC", target: "/cas/login", headers: &[("Cookie", "CASTGC=TGT-1-a-cas1; TGC=TGT-2-b-cas2")], node: Some("cas2"), rule: Some(Tgc), ..C },
        Case { name: "TGC unknown, CASTGC known", target: "/cas/login", headers: &[("Cookie", "TGC=TGT-1-a-cas9; CASTGC=TGT-2-b-cas2")], node: Some("cas2"), rule: Some(Tgc), ..C },
        Case { name: "XCASTGC is not CASTGC", target: "/cas/login", headers: &[("Cookie", "XCASTGC=TGT-1-abc-cas2")], ..C },
        Case { name: "encoded cookie value", target: "/cas/login", headers: &[("Cookie", "CASTGC=TGT-1-abc%2Dcas2")], node: Some("cas2"), rule: Some(Tgc), ..C },
        Case { name: "POST login with CASTGC is not tgc", method: "POST", target: "/cas/login", headers: &[("Cookie", "CASTGC=TGT-1-abc-cas2")], ..C },
        Case { name: "JWS TGC, not learned", target: "/cas/login", headers: &[("Cookie", "TGC=eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJ4In0.c2ln")], ..C },
        Case { name: "ticket wins over cookie", target: "/cas/serviceValidate?ticket=ST-1-a-cas1", headers: &[("Cookie", "CASTGC=TGT-1-abc-cas2")], node: Some("cas1"), rule: Some(Ticket), ..C },
        Case { name: "tgc off in idp pool", target: "/idp/x", headers: &[("Cookie", "CASTGC=TGT-1-abc-idp1")], pool: Some("idp"), node: Some("idp1"), ..C },
        Case { name: "encoded jvmRoute", target: "/cas/login", headers: &[("Cookie", "JSESSIONID=0A1B2C.j%72" )], ..C },
        Case { name: "encoded jvmRoute of cas4", target: "/cas/login", headers: &[("Cookie", "JSESSIONID=0A1B2C.jr%34")], node: Some("cas4"), rule: Some(Session), ..C },
        // rule `session`
        Case { name: "jvmRoute", target: "/cas/login", headers: &[("Cookie", "JSESSIONID=0A1B2C.jr4")], node: Some("cas4"), rule: Some(Session), ..C },
        Case { name: "jvmRoute on POST", method: "POST", target: "/cas/login", headers: &[("Cookie", "JSESSIONID=0A1B2C.jr4")], node: Some("cas4"), rule: Some(Session), ..C },
        Case { name: "jvmRoute after the first dot", target: "/cas/login", headers: &[("Cookie", "JSESSIONID=0A.1B.jr4")], ..C },
        Case { name: "jsessionid path parameter", method: "POST", target: "/cas/login;jsessionid=0A1B2C.jr4?service=s", node: Some("cas4"), rule: Some(Session), ..C },
        Case { name: "cookie before path parameter", target: "/cas/login;jsessionid=A.cas2", headers: &[("Cookie", "JSESSIONID=B.jr4")], node: Some("cas4"), rule: Some(Session), ..C },
        Case { name: "PUT gets session", method: "PUT", target: "/cas/x", headers: &[("Cookie", "JSESSIONID=B.jr4")], node: Some("cas4"), rule: Some(Session), ..C },
        Case { name: "jvmRoute of another pool's node", target: "/cas/login", headers: &[("Cookie", "JSESSIONID=0A1B2C.idp1")], ..C },
        Case { name: "jvmRoute of own pool in idp", target: "/idp/profile", headers: &[("Cookie", "JSESSIONID=0A1B2C.idp1")], pool: Some("idp"), node: Some("idp1"), rule: Some(Session), ..C },
        Case { name: "session id without route", target: "/cas/login", headers: &[("Cookie", "JSESSIONID=0A1B2C")], ..C },
        // node states
        Case { name: "owner down", target: "/cas/serviceValidate?ticket=ST-1-abc-cas1", states: &[("cas1", Down)], node: Some("cas2"), ..C },
        Case { name: "owner disabled", target: "/cas/serviceValidate?ticket=ST-1-abc-cas1", states: &[("cas1", Disabled)], node: Some("cas2"), ..C },
        Case { name: "owner draining keeps its ticket", target: "/cas/serviceValidate?ticket=ST-1-abc-cas1", states: &[("cas1", Draining)], node: Some("cas1"), rule: Some(Ticket), ..C },
        Case { name: "draining keeps its session", target: "/cas/login", headers: &[("Cookie", "JSESSIONID=X.cas1")], states: &[("cas1", Draining)], node: Some("cas1"), rule: Some(Session), ..C },
        Case { name: "any skips draining", target: "/cas/login", states: &[("cas1", Draining)], node: Some("cas2"), ..C },
        Case { name: "owner down, falls to session", target: "/cas/serviceValidate?ticket=ST-1-abc-cas1", headers: &[("Cookie", "JSESSIONID=X.jr4")], states: &[("cas1", Down)], node: Some("cas4"), rule: Some(Session), ..C },
        Case { name: "backup only when no primary", target: "/cas/login", states: &[("cas1", Down), ("cas2", Disabled), ("n3", Draining), ("cas4", Down)], node: Some("spare"), ..C },
        Case { name: "nothing usable", target: "/cas/login", states: &[("cas1", Down), ("cas2", Down), ("n3", Down), ("cas4", Down), ("spare", Down)], node: None, ..C },
        Case { name: "backup owns its ticket", target: "/cas/serviceValidate?ticket=ST-1-abc-spare1", node: Some("spare"), rule: Some(Ticket), ..C },
        // pools
        Case { name: "no pool", target: "/nothing/serviceValidate?ticket=ST-1-abc-cas1", pool: None, node: None, rule: None, ..C },
        Case { name: "longest prefix", target: "/cas/admin/serviceValidate?ticket=ST-1-abc-cas2", pool: Some("casadmin"), node: Some("adm1"), ..C },
        Case { name: "prefix with path parameter", target: "/cas;jsessionid=X.cas2", node: Some("cas2"), rule: Some(Session), ..C },
        Case { name: "bare prefix", target: "/cas", ..C },
        // POST /samlValidate
        Case { name: "saml artifact in body", method: "POST", target: "/cas/samlValidate?TARGET=https%3A%2F%2Fapp", body: Some("<SOAP-ENV:Envelope><SOAP-ENV:Body><samlp:Request><samlp:AssertionArtifact>ST-1-abc-cas2</samlp:AssertionArtifact></samlp:Request></SOAP-ENV:Body></SOAP-ENV:Envelope>"), node: Some("cas2"), rule: Some(Ticket), ..C },
        Case { name: "saml artifact encoded", method: "POST", target: "/cas/samlValidate?TARGET=x", body: Some("<AssertionArtifact> ST-1-abc%2Dcas&#45;02.example.edu </AssertionArtifact>"), node: Some("cas2"), rule: Some(Ticket), ..C },
        Case { name: "saml ticket in query", method: "POST", target: "/cas/samlValidate?TARGET=x&ticket=ST-1-abc-cas2", body: Some("<nothing/>"), node: Some("cas2"), rule: Some(Ticket), ..C },
        Case { name: "saml unknown artifact, query known", method: "POST", target: "/cas/samlValidate?ticket=ST-1-abc-cas2", body: Some("<AssertionArtifact>ST-1-abc-cas9</AssertionArtifact>"), node: Some("cas2"), rule: Some(Ticket), ..C },
        Case { name: "saml artifact on GET is ignored", target: "/cas/samlValidate?TARGET=x", body: Some("<AssertionArtifact>ST-1-abc-cas2</AssertionArtifact>"), ..C },
        Case { name: "artifact on serviceValidate POST is ignored", method: "POST", target: "/cas/serviceValidate", body: Some("<AssertionArtifact>ST-1-abc-cas2</AssertionArtifact>"), ..C },
    ]
}

fn run(
    t: &RoutingTable,
    c: &Case,
    learned: &Learn,
) -> (Option<String>, Option<String>, Option<Rule>) {
    let mut states = vec![NodeState::Healthy; t.nodes().len()];
    for (n, s) in c.states {
        states[usize::from(t.node_by_name(n).unwrap())] = *s;
    }
    let mut view = RequestView::new(
        Method::from_bytes(c.method.as_bytes()),
        c.target.as_bytes(),
        c.headers,
    );
    if let Some(b) = c.body {
        view = view.with_body(b.as_bytes());
    }
    let d = route(t, &view, &states[..], learned, 0);
    (
        d.pool.map(|p| t.pool(p).unwrap().name.clone()),
        d.node.map(|n| t.node(n).unwrap().name.clone()),
        d.rule,
    )
}

#[test]
fn design_cases() {
    let t = table();
    let mut failures = Vec::new();
    for mut c in cases() {
        if c.pool.is_none() {
            c.node = None;
        }
        let got = run(&t, &c, &Learn::default());
        let want = (c.pool.map(String::from), c.node.map(String::from), c.rule);
        if got != want {
            failures.push(format!("{}: got {got:?}, want {want:?}", c.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn f5_md5_suffix() {
    let t = table();
    let name = suffix::f5_md5("10.0.0.14".parse().unwrap());
    assert_eq!(name, F5_CAS4);
    let target = format!("/cas/serviceValidate?ticket=ST-1-abc-{name}");
    let view = RequestView::new(Method::Get, target.as_bytes(), &[] as &[(&str, &str)]);
    let d = route(&t, &view, &AllHealthy, &NothingLearned, 0);
    assert_eq!(
        d.node.map(|n| t.node(n).unwrap().name.as_str()),
        Some("cas4")
    );
    assert_eq!(d.how, Some(How::F5Md5));
    // A node without f5_md5 is not known by its MD5.
    let other = suffix::f5_md5("10.0.0.12".parse().unwrap());
    let target = format!("/cas/serviceValidate?ticket=ST-1-abc-{other}");
    let view = RequestView::new(Method::Get, target.as_bytes(), &[] as &[(&str, &str)]);
    assert_eq!(
        route(&t, &view, &AllHealthy, &NothingLearned, 0).rule,
        Some(Rule::Any)
    );
}

#[test]
fn learned_cookies() {
    let t = table();
    let cas = 0;
    let cas4 = t.node_by_name("cas4").unwrap();
    let idp1 = t.node_by_name("idp1").unwrap();
    let jws = "eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJ4In0.c2ln";
    let mut l = Learn::default();
    l.0.insert((cas, b"TGC".to_vec(), jws.as_bytes().to_vec()), cas4);
    l.0.insert((cas, b"JSESSIONID".to_vec(), b"0A1B".to_vec()), cas4);
    l.0.insert((cas, b"JSESSIONID".to_vec(), b"0A1C".to_vec()), idp1);
    let case = |headers, target| Case {
        target,
        headers,
        ..C
    };
    let cookie = format!("TGC={jws}").leak();
    let hs: &'static [(&str, &str)] = vec![("Cookie", &*cookie)].leak();
    assert_eq!(run(&t, &case(hs, "/cas/login"), &l).2, Some(Rule::Tgc));
    assert_eq!(
        run(&t, &case(hs, "/cas/login"), &l).1.as_deref(),
        Some("cas4")
    );
    let s = case(&[("Cookie", "JSESSIONID=0A1B")], "/cas/login");
    assert_eq!(
        run(&t, &s, &l),
        (Some("cas".into()), Some("cas4".into()), Some(Rule::Session))
    );
    let s = case(&[], "/cas/login;jsessionid=0A1B");
    assert_eq!(run(&t, &s, &l).2, Some(Rule::Session));
    // A learned node of another pool is ignored.
    let s = case(&[("Cookie", "JSESSIONID=0A1C")], "/cas/login");
    assert_eq!(run(&t, &s, &l).2, Some(Rule::Any));
}

#[test]
fn an_f5_cookie_routes_to_the_member_it_encodes() {
    let t = table();
    let cas1 = t.node_by_name("cas1").unwrap();
    let mut states = vec![NodeState::Healthy; t.nodes().len()];
    // 184549386 is 10.0.0.11 read little-endian; 64288 is 8443 byte-swapped.
    let h: &[(&str, &str)] = &[("Cookie", "lang=en; BIGipServercas=184549386.64288.0000")];
    let view = RequestView::new(Method::Post, b"/cas/login", h);
    let d = route(&t, &view, &states[..], &NothingLearned, 0);
    assert_eq!(
        (d.node, d.rule, d.how, d.value),
        (
            Some(cas1),
            Some(Rule::Session),
            Some(How::Bigip),
            Some(&b"184549386.64288.0000"[..])
        )
    );
    // A member of no node, another encoding, a node that is down: `any`.
    states[usize::from(cas1)] = NodeState::Down;
    for (cookie, cause) in [
        ("BIGipServercas=184549386.64288.0000", Cause::Unusable(cas1)),
        ("BIGipServercas=184549386.8443.0000", Cause::UnknownMember),
        ("BIGipServercas=rd5o0a00000bo8443", Cause::UnknownMember),
    ] {
        let h: &[(&str, &str)] = &[("Cookie", cookie)];
        let d = route(
            &t,
            &RequestView::new(Method::Get, b"/cas/login", h),
            &states[..],
            &NothingLearned,
            0,
        );
        assert_eq!(d.rule, Some(Rule::Any), "{cookie}");
        let last = d
            .falls
            .iter()
            .last()
            .map(|f| (ENTRIES[usize::from(f.entry)].name, f.cause));
        assert_eq!(last, Some(("bigip-cookie", cause)), "{cookie}");
    }
    // Pools without `bigip_cookie` do not read it.
    let h: &[(&str, &str)] = &[("Cookie", "BIGipServercas=184549386.64288.0000")];
    let d = route(
        &t,
        &RequestView::new(Method::Get, b"/idp/x", h),
        &states[..],
        &NothingLearned,
        0,
    );
    assert!(d
        .falls
        .iter()
        .all(|f| ENTRIES[usize::from(f.entry)].name != "bigip-cookie"));
}

#[test]
fn the_route_cookie_names_its_node_when_it_opens() {
    let t = table();
    let route = |cookie: &str, method| {
        let h = [("Cookie", cookie)];
        let d = route(
            &t,
            &RequestView::new(method, b"/cas/login", &h[..]),
            &AllHealthy,
            &NothingLearned,
            0,
        );
        let bad = d
            .falls
            .iter()
            .find(|f| f.cause == Cause::BadRouteCookie)
            .map(|f| f.cause);
        (
            d.node.map(|n| t.node(n).unwrap().name.clone()),
            d.rule,
            d.how,
            bad,
        )
    };
    let v = sealed("cas2");
    for method in [Method::Get, Method::Post] {
        let (node, rule, how, _) = route(&format!("CASFRONT_ROUTE={v}"), method);
        assert_eq!(
            (node.as_deref(), rule, how),
            (Some("cas2"), Some(Rule::Session), Some(How::RouteCookie))
        );
    }
    // A readable TGC and a jvmRoute come first.
    assert_eq!(
        route(
            &format!("CASTGC=TGT-1-a-cas1; CASFRONT_ROUTE={v}"),
            Method::Get
        )
        .0
        .as_deref(),
        Some("cas1")
    );
    assert_eq!(
        route(
            &format!("JSESSIONID=X.jr4; CASFRONT_ROUTE={v}"),
            Method::Get
        )
        .0
        .as_deref(),
        Some("cas4")
    );
    // Another key, another pool's, forged: falls through, counted.
    let other = route_cookie::RouteCookie::new(ROUTE_COOKIE, &[[8; 32]])
        .seal("cas", "cas2")
        .unwrap();
    let idp = route_cookie::RouteCookie::new(ROUTE_COOKIE, &[ROUTE_KEY])
        .seal("idp", "cas2")
        .unwrap();
    for bad in [other, idp, format!("{v}x"), sealed("nosuchnode")] {
        let (_, rule, _, cause) = route(&format!("CASFRONT_ROUTE={bad}"), Method::Get);
        assert_eq!(
            (rule, cause),
            (Some(Rule::Any), Some(Cause::BadRouteCookie)),
            "{bad}"
        );
    }
}

#[test]
fn a_form_value_at_the_end_of_a_cut_prefix_is_not_trusted() {
    let t = table();
    let none: &[(&str, &str)] = &[];
    let run = |body: &'static [u8], cut: bool| {
        let view = RequestView::new(Method::Post, b"/cas/oidc/token", none)
            .with_body(body)
            .cut(cut);
        let d = route(&t, &view, &AllHealthy, &NothingLearned, 0);
        let falls: Vec<Cause> = d.falls.iter().map(|f| f.cause).collect();
        (
            d.node.map(|n| t.node(n).unwrap().name.clone()),
            d.rule,
            falls,
        )
    };
    // Whole body: routed. Cut after the value's end: routed too.
    assert_eq!(run(b"code=OC-1-abc-cas2", false).0.as_deref(), Some("cas2"));
    assert_eq!(
        run(b"code=OC-1-abc-cas2&x=1", true).0.as_deref(),
        Some("cas2")
    );
    // Cut inside the value (`-cas2` may be `-cas22...`): a counted fall-through.
    let (_, rule, falls) = run(b"code=OC-1-abc-cas2", true);
    assert_eq!(
        (rule, falls.first()),
        (Some(Rule::Any), Some(&Cause::TooLong))
    );
}

#[test]
fn fall_through_causes_are_recorded() {
    let t = table();
    let cas1 = t.node_by_name("cas1").unwrap();
    let mut states = vec![NodeState::Healthy; t.nodes().len()];
    states[usize::from(cas1)] = NodeState::Down;
    let h: &[(&str, &str)] = &[("Cookie", "CASTGC=TGT-1-a-cas1; JSESSIONID=X.nope")];
    let view = RequestView::new(Method::Get, b"/cas/serviceValidate?ticket=ST-1-a-cas9", h);
    let d = route(&t, &view, &states[..], &NothingLearned, 0);
    let falls: Vec<(&str, Cause)> = d
        .falls
        .iter()
        .map(|f| (ENTRIES[usize::from(f.entry)].name, f.cause))
        .collect();
    assert_eq!(
        falls,
        vec![
            ("validate-ticket", Cause::UnknownSuffix),
            ("tgc-cookie", Cause::Unusable(cas1)),
            ("session-cookie", Cause::UnknownRoute),
            ("session-path", Cause::NoValue),
        ]
    );
    assert_eq!(
        (d.rule, d.how, d.entry),
        (Some(Rule::Any), Some(How::RoundRobin), None)
    );
    assert_eq!(d.node, t.node_by_name("cas2"));
    let view = RequestView::new(Method::Get, b"/cas/login?ticket=ST-1-a-cas2", h);
    let d = route(&t, &view, &AllHealthy, &NothingLearned, 0);
    let tgc = ENTRIES.iter().position(|e| e.name == "tgc-cookie").unwrap() as EntryId;
    assert_eq!(
        (d.entry, d.name, d.value),
        (Some(tgc), &b"CASTGC"[..], Some(&b"TGT-1-a-cas1"[..]))
    );
}

#[test]
fn round_robin_shares_evenly_over_usable_primaries() {
    let t = table();
    let view = RequestView::new(Method::Get, b"/cas/login", &[] as &[(&str, &str)]);
    let share = |down: &[&str]| {
        let mut states = vec![NodeState::Healthy; t.nodes().len()];
        for n in down {
            states[usize::from(t.node_by_name(n).unwrap())] = NodeState::Down;
        }
        let mut counts: HashMap<String, usize> = HashMap::new();
        // A whole cycle: 4 primaries times up to 4 usable.
        for pick in 0..4 * 3 * 100 {
            let d = route(&t, &view, &states[..], &NothingLearned, pick);
            *counts
                .entry(t.node(d.node.unwrap()).unwrap().name.clone())
                .or_default() += 1;
        }
        let mut v: Vec<(String, usize)> = counts.into_iter().collect();
        v.sort();
        v
    };
    let even = |names: &[&str], each: usize| {
        names
            .iter()
            .map(|n| (n.to_string(), each))
            .collect::<Vec<_>>()
    };
    assert_eq!(share(&[]), even(&["cas1", "cas2", "cas4", "n3"], 300));
    // A down node's share is spread over the others, not given to its neighbour.
    assert_eq!(share(&["n3"]), even(&["cas1", "cas2", "cas4"], 400));
    assert_eq!(share(&["cas2", "n3"]), even(&["cas1", "cas4"], 600));
    // Down slots that the counter reaches only with odd picks.
    assert_eq!(share(&["cas2", "cas4"]), even(&["cas1", "n3"], 600));
    // No primary: the backup.
    assert_eq!(
        share(&["cas1", "cas2", "n3", "cas4"]),
        even(&["spare"], 1200)
    );
}

#[test]
fn decisions_do_not_depend_on_header_case() {
    let t = table();
    for name in ["Cookie", "COOKIE", "cookie"] {
        let h = [(name, "CASTGC=TGT-1-a-cas2")];
        let view = RequestView::new(Method::Get, b"/cas/login", &h[..]);
        assert_eq!(
            route(&t, &view, &AllHealthy, &NothingLearned, 0).rule,
            Some(Rule::Tgc)
        );
    }
}

#[test]
fn without_ticket_routing_every_request_goes_round_robin() {
    let mut pools = pools();
    pools[0].ticket_routing = false;
    let t = RoutingTable::new(&pools);
    let h = [("Cookie", "CASTGC=TGT-1-a-cas2; JSESSIONID=x.jr4")];
    let targets: [&[u8]; 3] = [
        b"/cas/serviceValidate?service=s&ticket=ST-1-a-cas2",
        b"/cas/proxy?targetService=s&pgt=PGT-1-a-cas2",
        b"/cas/login",
    ];
    for target in targets {
        let view = RequestView::new(Method::Get, target, &h[..]);
        let nodes: Vec<String> = (0..4)
            .map(|pick| {
                let d = route(&t, &view, &AllHealthy, &NothingLearned, pick);
                assert_eq!(d.rule, Some(Rule::Any));
                t.node(d.node.unwrap()).unwrap().name.clone()
            })
            .collect();
        assert_eq!(nodes, ["cas1", "cas2", "n3", "cas4"]);
    }
}

#[test]
fn values_that_name_their_node_need_no_learning() {
    let t = table();
    let id = |name: &str| t.pools().iter().position(|p| p.name == name).unwrap() as PoolId;
    let (cas, idp) = (id("cas"), id("idp"));
    let names = |pool, tgc, cookie: &str, value: &str| {
        names_its_node(&t, pool, tgc, cookie.as_bytes(), value.as_bytes())
    };
    // A readable TGT id with a known suffix, a known jvmRoute.
    assert!(names(cas, true, "CASTGC", "TGT-1-abc-cas2"));
    assert!(names(cas, false, "JSESSIONID", "8F3A2B.jr4"));
    // Opaque, unknown or routeless values are learned.
    assert!(!names(cas, true, "TGC", "eyJhbGciOiJIUzI1NiJ9.eyJ0Z3Qi"));
    assert!(!names(cas, true, "CASTGC", "TGT-1-abc-nowhere"));
    assert!(!names(cas, false, "JSESSIONID", "8F3A2B.nowhere"));
    assert!(!names(idp, false, "JSESSIONID", "8F3A2B"));
}

mod props;
