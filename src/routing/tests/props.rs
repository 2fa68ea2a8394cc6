//! proptest properties of `route`: no panic, only configured and usable
//! nodes, a usable owner always wins; and a check that the generators reach
//! every rule and entry.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

fn arb_method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Get),
        Just(Method::Head),
        Just(Method::Post),
        Just(Method::Other)
    ]
}

fn arb_state() -> impl Strategy<Value = NodeState> {
    prop_oneof![
        Just(NodeState::Healthy),
        Just(NodeState::Draining),
        Just(NodeState::Down),
        Just(NodeState::Disabled)
    ]
}

/// Arbitrary bytes, biased to the ones the parsers look at.
fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte =
        prop_oneof![3 => any::<u8>(), 2 => prop::sample::select(b"/;=&%-.?+\"<>:ST2 ".to_vec())];
    prop::collection::vec(byte, 0..40)
}

/// A value that is often a ticket id (real, unknown or missing suffix,
/// sometimes percent-encoded, sometimes longer than 512 bytes), a session
/// id, a JWS, or arbitrary bytes.
fn arb_value() -> impl Strategy<Value = Vec<u8>> {
    let ticket = (
        prop::sample::select(vec!["ST", "PT", "PGT", "TGT", "st", ""]),
        "[A-Za-z0-9-]{0,30}",
        prop::sample::select(vec![
            "cas2",
            "cas-02.example.edu",
            "02.example.edu",
            "spare1",
            "cas9",
            "",
            "jr4",
        ]),
        0usize..4,
        any::<bool>(),
    )
        .prop_map(|(prefix, random, suffix, pad, encode)| {
            let filler = if pad == 3 {
                "x".repeat(600)
            } else {
                String::new()
            };
            let id = format!("{prefix}-12-{random}{filler}-{suffix}");
            if encode {
                id.replace('-', "%2D")
            } else {
                id
            }
        });
    prop_oneof![
        4 => ticket.prop_map(String::into_bytes),
        2 => prop::sample::select(vec!["8F3A.jr4", "8F3A.cas1", "8F3A.idp1", "8F3A", "8F3A.j%72%34", "eyJhbGciOiJIUzUxMiJ9.e30.c2ln"])
            .prop_map(|s| s.as_bytes().to_vec()),
        // Route cookies naming cas2, no node, and one another key sealed.
        1 => prop::sample::select(vec![super::sealed("cas2"), super::sealed("nobody"), super::sealed("cas4")])
            .prop_map(String::into_bytes),
        // F5 cookies: cas1 (10.0.0.11:8443), another address, other forms.
        1 => prop::sample::select(vec!["184549386.64288.0000", "184549386.64288.0001", "1.2.0000", "rd5o0a00000bo8443"])
            .prop_map(|s| s.as_bytes().to_vec()),
        2 => arb_bytes(),
    ]
}

fn arb_pairs(names: Vec<&'static str>, sep: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    let pair = (
        prop::sample::select(names),
        arb_value(),
        prop::option::weighted(0.9, Just(())),
    )
        .prop_map(|(name, value, eq)| {
            let mut p = name.as_bytes().to_vec();
            if eq.is_some() {
                p.push(b'=');
            }
            p.extend(value);
            p
        });
    prop::collection::vec(pair, 0..4).prop_map(move |pairs| pairs.join(sep))
}

fn arb_query() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![1 => Just(b"client_name=SAML2Client".to_vec()), 3 => arb_pairs(vec!["ticket", "pgt", "service", "xticket", "t%69cket", "TARGET", "code", "refresh_token", "state", "delegatedclientid", "RelayState", "client_name"], b"&"), 1 => arb_bytes()]
}

/// A `Cookie` header's value, or (starting with `Bearer `) an
/// `Authorization` header's: see [`header_name`].
fn arb_cookie() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => arb_pairs(vec!["CASTGC", "TGC", "JSESSIONID", "XCASTGC", " CASTGC ", "lang", "BIGipServercas", "CASFRONT_ROUTE"], b"; "),
        1 => arb_value().prop_map(|v| [b"Bearer ".as_slice(), &v].concat()),
        1 => arb_bytes(),
    ]
}

/// The header an [`arb_cookie`] value goes in.
fn header_name(value: &[u8]) -> &'static str {
    if value.starts_with(b"Bearer ") {
        "authorization"
    } else {
        "cookie"
    }
}

fn arb_body() -> impl Strategy<Value = Vec<u8>> {
    let artifact = (
        prop::sample::select(vec![
            "<samlp:AssertionArtifact>",
            "<AssertionArtifact a=\"1\">",
            "</AssertionArtifact>",
            "<x:AssertionArtifact/>",
        ]),
        arb_value(),
        prop::sample::select(vec!["</samlp:AssertionArtifact>", "", "<"]),
    )
        .prop_map(|(open, v, close)| [open.as_bytes(), &v, close.as_bytes()].concat());
    let form = arb_pairs(
        vec!["code", "refresh_token", "RelayState", "grant_type"],
        b"&",
    );
    let saml2 =
        arb_value().prop_map(|v| [b"SAMLResponse=PHNhbWw%2B&RelayState=".as_slice(), &v].concat());
    prop_oneof![3 => artifact, 2 => form, 1 => saml2, 1 => arb_bytes()]
}

fn arb_path() -> impl Strategy<Value = Vec<u8>> {
    let prefix = prop::sample::select(vec![
        "",
        "/cas",
        "/cas/serviceValidate",
        "/cas/p3/proxyValidate",
        "/cas/proxy",
        "/cas/samlValidate",
        "/cas/login",
        "/idp/x",
        "/cas/admin/validate",
        "/cassandra",
        "/cas/oauth2.0/accessToken",
        "/cas/oidc/token",
        "/cas/oauth2.0/token",
        "/cas/login",
        "/cas/oidc/profile",
        "/cas/oauth2.0/profile",
        "/cas/v1/tickets/",
    ]);
    let tail = prop_oneof![
        3 => Just(Vec::new()),
        1 => Just(b"/".to_vec()),
        2 => arb_value().prop_map(|v| [b";jsessionid=".as_slice(), &v].concat()),
        1 => arb_value(),
        1 => arb_bytes(),
    ];
    (prefix, tail).prop_map(|(p, t)| [p.as_bytes(), &t].concat())
}

/// A learned table that answers about half of all lookups with an arbitrary
/// node id, of any pool or none at all (a stale table after a reload).
#[derive(Debug)]
struct ChaosLearned(u64);

impl Learned for ChaosLearned {
    fn lookup(&self, pool: PoolId, cookie: &[u8], value: &[u8]) -> Option<NodeId> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.0, pool, cookie, value).hash(&mut h);
        let x = h.finish();
        (x % 2 == 0).then_some((x >> 8) as NodeId % 12)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_panics_and_returns_usable_configured_nodes(
        method in arb_method(),
        path in arb_path(),
        query in prop::option::of(arb_query()),
        cookies in prop::collection::vec(arb_cookie(), 0..3),
        body in prop::option::of(arb_body()),
        states in prop::collection::vec(arb_state(), 8),
        pick in any::<u64>(),
        learned in any::<u64>().prop_map(ChaosLearned),
    ) {
        let t = table();
        let headers: Vec<(&str, &[u8])> = cookies.iter().map(|c| (header_name(c), c.as_slice())).collect();
        let view = RequestView { method, path: &path, mapped: &path, query: query.as_deref(), headers: &headers[..], body: body.as_deref(), cert: None, body_cut: false };
        let d = route(&t, &view, &states[..], &learned, pick);
        if let Some(n) = d.node {
            let pool = t.pool(d.pool.unwrap()).unwrap();
            prop_assert!(pool.nodes.contains(&n));
            let s = states[usize::from(n)];
            match d.rule {
                Some(Rule::Any) => prop_assert!(s.usable_for_any()),
                Some(_) => prop_assert!(s.usable_for_affinity()),
                None => prop_assert!(false, "a node without a rule"),
            }
        }
        if d.pool.is_none() {
            prop_assert!(d.node.is_none() && d.rule.is_none());
        }
    }

    #[test]
    fn usable_owner_of_a_matching_ticket_wins(
        owner in prop::sample::select(vec![("cas1", "cas1"), ("cas2", "cas2"), ("cas2", "cas-02.example.edu"), ("n3", "02.example.edu"), ("spare", "spare1")]),
        prefix in prop::sample::select(vec!["ST", "PT", "TGT", "OC"]),
        // Ends in a letter other than `s`: `-cas` or `cas` before `-02...`
        // would rightly make it cas2's `cas-02.example.edu`.
        random in "[A-Za-z0-9-]{0,60}[A-Za-rt-z]",
        endpoint in prop::sample::select(vec!["/validate", "/serviceValidate", "/proxyValidate", "/samlValidate", "/p3/serviceValidate", "/p3/proxyValidate"]),
        head in any::<bool>(),
        states in prop::collection::vec(arb_state(), 8),
        cookie in "[ -~]{0,40}",
        before in "[a-z]{1,8}=[a-z0-9]{0,8}",
    ) {
        let t = table();
        let id = format!("{prefix}-7-{random}-{}", owner.1);
        let target = format!("/cas{endpoint}?{before}&ticket={id}");
        let cookie = format!("CASTGC={cookie}; JSESSIONID=X.jr4");
        let h = [("Cookie", cookie.as_str())];
        let method = if head { Method::Head } else { Method::Get };
        let view = RequestView::new(method, target.as_bytes(), &h[..]);
        let d = route(&t, &view, &states[..], &NothingLearned, 0);
        let owner_id = t.node_by_name(owner.0).unwrap();
        let usable = states[usize::from(owner_id)].usable_for_affinity();
        if usable {
            prop_assert_eq!(d.node, Some(owner_id));
            prop_assert_eq!(d.rule, Some(Rule::Ticket));
        } else {
            let first = d.falls.iter().next().copied();
            prop_assert_eq!(first, Some(Fall { entry: 0, cookie: 0, cause: Cause::Unusable(owner_id) }));
            prop_assert_ne!(d.rule, Some(Rule::Ticket));
        }
    }
}

/// The generators above reach every rule and way of resolving, so the
/// properties exercise the parsers, not only the fall-through to `any`.
#[test]
fn generated_requests_reach_every_rule() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let t = table();
    let mut runner = TestRunner::deterministic();
    let request = (
        arb_method(),
        arb_path(),
        arb_query(),
        prop::collection::vec(arb_cookie(), 0..3),
        arb_body(),
        any::<u64>(),
    );
    let mut seen: HashMap<(Option<Rule>, Option<How>), usize> = HashMap::new();
    let mut entries = std::collections::BTreeSet::new();
    for _ in 0..20_000 {
        let (method, path, query, cookies, body, seed) =
            request.new_tree(&mut runner).unwrap().current();
        let headers: Vec<(&str, &[u8])> = cookies
            .iter()
            .map(|c| (header_name(c), c.as_slice()))
            .collect();
        let view = RequestView {
            method,
            path: &path,
            mapped: &path,
            query: Some(&query),
            headers: &headers[..],
            body: Some(&body),
            cert: None,
            body_cut: false,
        };
        let d = route(&t, &view, &AllHealthy, &ChaosLearned(seed), seed);
        *seen.entry((d.rule, d.how)).or_default() += 1;
        entries.extend(d.entry);
    }
    let all: std::collections::BTreeSet<EntryId> = (0..ENTRIES.len() as EntryId).collect();
    assert_eq!(entries, all, "entries that decided: {entries:?}");
    for want in [
        (Some(Rule::Ticket), Some(How::Suffix)),
        (Some(Rule::Pgt), Some(How::Suffix)),
        (Some(Rule::Tgc), Some(How::Suffix)),
        (Some(Rule::Tgc), Some(How::Learned)),
        (Some(Rule::Session), Some(How::JvmRoute)),
        (Some(Rule::Session), Some(How::Learned)),
        (Some(Rule::Session), Some(How::Bigip)),
        (Some(Rule::Any), Some(How::RoundRobin)),
        (None, None),
    ] {
        assert!(seen.contains_key(&want), "never reached {want:?}: {seen:?}");
    }
}
