//! Proves that a routing decision allocates nothing: a counting global
//! allocator counts this thread's allocations around `route` for every case
//! of the benchmark mix, with 3 and 200 nodes, and for the slow paths
//! (percent-decoding, SAML artifacts, every rule falling through to `any`),
//! each checked to take the path it is meant to.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use casfront::routing::{
    route, AllHealthy, Method, NodeState, NothingLearned, RequestView, ENTRIES,
};

mod support;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations made on this thread by `f`.
fn allocations<R>(f: impl FnOnce() -> R) -> (usize, R) {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (COUNT.with(Cell::get), r)
}

#[test]
fn the_counter_counts() {
    let (n, v) = allocations(|| vec![1u8; 10]);
    assert_eq!((n, v.len()), (1, 10));
}

/// Slow paths, each with the entry that must decide (`None`: `any`).
fn slow_paths() -> Vec<(support::MixCase, &'static [u8], Option<&'static str>)> {
    let case = |method, target: &str, cookie: &str| support::MixCase {
        name: "slow",
        method,
        target: target.into(),
        headers: vec![("cookie", cookie.into())],
        expect: None,
    };
    vec![
        // Percent-decoding into the stack buffer.
        (case(Method::Get, "/cas/serviceValidate?t%69cket=ST-1-a%2Dcas-001.example.edu", ""), b"", Some("validate-ticket")),
        // SAML artifact with entities, percent-escapes and whitespace.
        (
            case(Method::Post, "/cas/samlValidate?TARGET=https%3A%2F%2Fapp", "lang=en"),
            b"<samlp:AssertionArtifact>\n ST-1-abc&#45;cas%2D001.example.edu </samlp:AssertionArtifact>",
            Some("saml-artifact"),
        ),
        // Every rule falls through: unknown suffix, encoded TGC, unknown route.
        (
            case(Method::Get, "/cas/login;jsessionid=X.nope", "CASTGC=TGT-1-%41-x; TGC=eyJhbGciOiJIUzUxMiJ9.e30.c2ln; JSESSIONID=ABC.nope"),
            b"",
            None,
        ),
        // The path parameter, decoded.
        (case(Method::Post, "/cas/login;jsessionid=ABC.jvm%31", ""), b"", Some("session-path")),
    ]
}

#[test]
fn routing_decisions_allocate_nothing() {
    for nodes in [3, 200] {
        let table = support::table(nodes);
        let mut states = vec![NodeState::Healthy; nodes];
        states[0] = NodeState::Down;
        let cases = support::mix(nodes)
            .into_iter()
            .map(|c| (c, &b""[..], None))
            .chain(
                slow_paths()
                    .into_iter()
                    .map(|(c, body, e)| (c, body, Some(e))),
            );
        for (case, body, entry) in cases {
            let headers = case.header_pairs();
            let view =
                RequestView::new(case.method, case.target.as_bytes(), &headers[..]).with_body(body);
            for pick in 0..10 {
                let (n, d) =
                    allocations(|| route(&table, &view, &states[..], &NothingLearned, pick));
                assert_eq!(n, 0, "{} with {nodes} nodes allocated {n} times", case.name);
                assert!(d.node.is_some());
                if let Some(entry) = entry {
                    assert_eq!(
                        d.entry.map(|e| ENTRIES[usize::from(e)].name),
                        entry,
                        "{}",
                        case.target
                    );
                }
                let (n, d) =
                    allocations(|| route(&table, &view, &AllHealthy, &NothingLearned, pick));
                assert_eq!(n, 0);
                // The decision measured is the intended one, not a fallback.
                if case.expect.is_some() {
                    let got = d.node.and_then(|n| table.node(n)).map(|n| n.name.clone());
                    assert_eq!(got, case.expect, "{}", case.name);
                }
            }
        }
    }
}

/// Preparing a forwarded request allocates nothing for the common case: an
/// HTTP/1.1 origin-form request whose header map has room.
#[test]
fn preparing_a_request_allocates_nothing() {
    use casfront::{client::ClientConn as ClientInfo, pipeline::rewrite::prepare_request};
    let client = ClientInfo::new("192.0.2.7:50000".parse().unwrap(), 8443, false);
    for _ in 0..3 {
        let mut headers = http::HeaderMap::with_capacity(32);
        headers.insert("host", http::HeaderValue::from_static("cas.example.edu"));
        headers.insert(
            "cookie",
            http::HeaderValue::from_static("CASTGC=TGT-1-a-cas1"),
        );
        headers.insert("x-forwarded-for", http::HeaderValue::from_static("6.6.6.6"));
        let mut req = http::Request::new(());
        *req.uri_mut() = http::Uri::from_static("/cas/login?service=x");
        *req.headers_mut() = headers;
        let (n, ()) = allocations(|| prepare_request(&mut req, &client));
        assert_eq!(n, 0, "prepare_request allocated {n} times");
        assert_eq!(req.headers()["x-forwarded-for"], "192.0.2.7");
    }
}
