//! Arbitrary bytes as a request into `route`: the input is split on NUL
//! into method, path, query, cookie headers and body, so the fuzzer
//! reaches every parser that reads client bytes (the path normaliser,
//! path, query parameters, the access log's redaction,
//! path parameters, cookies, the SAML artifact). Checks that `route` and
//! `wants_body` never panic and that `route` only returns a configured node
//! usable for its rule.
#![no_main]

use std::sync::OnceLock;

use casfront::config;
use casfront::routing::path::servlet_path;
use casfront::routing::{
    route, Method, NodeState, NothingLearned, RequestView, RoutingTable, Rule,
};
use libfuzzer_sys::fuzz_target;

/// The documented example: suffixes with `-` and `.`, an F5 node, a backup,
/// and a second pool without TGT cookies.
const CONFIG: &str = include_str!("../../config/casfront.example.toml");

fn table() -> &'static RoutingTable {
    static TABLE: OnceLock<RoutingTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let cfg = config::parse(CONFIG, std::path::Path::new("."))
            .config
            .expect("the example configuration is valid");
        RoutingTable::new(&cfg.routing())
    })
}

fuzz_target!(|data: &[u8]| {
    let t = table();
    let mut parts = data.split(|&b| b == 0);
    let method = Method::from_bytes(parts.next().unwrap_or_default());
    let path = parts.next().unwrap_or_default();
    let query = parts.next();
    let states_byte = parts.next().and_then(|s| s.first().copied()).unwrap_or(0);
    let body = parts.next();
    let cookies: Vec<(&str, &[u8])> = parts.map(|c| ("cookie", c)).collect();
    let states: Vec<NodeState> = (0..t.nodes().len())
        .map(|i| match (states_byte >> (2 * (i % 4))) & 3 {
            0 => NodeState::Healthy,
            1 => NodeState::Draining,
            2 => NodeState::Down,
            _ => NodeState::Disabled,
        })
        .collect();
    // The path as the request pipeline maps it (the one normaliser).
    let mapped = std::str::from_utf8(path).map(servlet_path);
    let mapped = mapped.as_deref().map_or(path, str::as_bytes);
    let view = RequestView {
        method,
        path,
        mapped,
        query,
        headers: &cookies[..],
        body,
        cert: None,
        body_cut: false,
    };
    // Whether the proxy would wait for a body prefix: never panics either.
    let _ = t.wants_body(method, mapped, query, None);
    // The access log's form of the target (decoded segments and keys):
    // never panics, and never longer than a few bytes per byte.
    if let Ok(path) = std::str::from_utf8(path) {
        let query = query.and_then(|q| std::str::from_utf8(q).ok());
        let target = match query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        let logged = casfront::routing::redact::target(&target, t.pool(0));
        assert!(logged.len() <= 64 + 8 * target.len());
    }
    let d = route(
        t,
        &view,
        &states[..],
        &NothingLearned,
        u64::from(states_byte),
    );
    if let Some(n) = d.node {
        let pool = t
            .pool(d.pool.expect("a node has a pool"))
            .expect("pool exists");
        assert!(pool.nodes.contains(&n));
        let s = states[usize::from(n)];
        match d.rule {
            Some(Rule::Any) => assert!(s.usable_for_any()),
            Some(_) => assert!(s.usable_for_affinity()),
            None => panic!("a node without a rule"),
        }
    }
});
