//! Proves that a routing decision allocates nothing: a counting global
//! allocator counts this thread's allocations around `route` for every case
//! of the benchmark mix, with 3 and 200 nodes, and for the slow paths
//! (percent-decoding, SAML artifacts, fall-through to `any`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use casfront::routing::{route, AllHealthy, Method, NodeState, NothingLearned, RequestView};

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

#[test]
fn routing_decisions_allocate_nothing() {
    for nodes in [3, 200] {
        let table = support::table(nodes);
        let mut states = vec![NodeState::Healthy; nodes];
        states[0] = NodeState::Down;
        let mut cases = support::mix(nodes);
        cases.push(support::MixCase {
            name: "encoded_and_saml",
            method: Method::Post,
            target:
                "/cas/samlValidate?TARGET=https%3A%2F%2Fapp&ticket=ST-1-a%2Dcas-000.example.edu"
                    .into(),
            headers: vec![("cookie", "JSESSIONID=ABC.nope; CASTGC=TGT-1-%41-x".into())],
            expect: None,
        });
        for case in &cases {
            let headers = case.header_pairs();
            let body = b"<samlp:AssertionArtifact> ST-1-abc&#45;cas%2D001.example.edu </samlp:AssertionArtifact>";
            let view =
                RequestView::new(case.method, case.target.as_bytes(), &headers[..]).with_body(body);
            for pick in 0..10 {
                let (n, d) =
                    allocations(|| route(&table, &view, &states[..], &NothingLearned, pick));
                assert_eq!(n, 0, "{} with {nodes} nodes allocated {n} times", case.name);
                assert!(d.node.is_some());
                let (n, _) =
                    allocations(|| route(&table, &view, &AllHealthy, &NothingLearned, pick));
                assert_eq!(n, 0);
            }
        }
    }
}
