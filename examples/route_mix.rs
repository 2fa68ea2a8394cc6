//! Runs each case of the benchmark mix a fixed number of times, for
//! instruction counts that do not depend on machine load:
//!
//! ```sh
//! cargo build --release --example route_mix
//! valgrind --tool=callgrind --toggle-collect='casfront::routing::decide::route*' \
//!     target/release/examples/route_mix 200 login_castgc 10000
//! ```
//!
//! Arguments: node count (default 200), case name (default all), repetitions
//! (default 10000). Divide the instructions counted by the repetitions.

use std::hint::black_box;

use casfront::routing::{route, AllHealthy, NothingLearned, RequestView};

#[path = "../tests/support/mod.rs"]
mod support;

fn main() {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let only = args.next().filter(|a| a != "all");
    let reps: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let table = support::table(nodes);
    for case in support::mix(nodes) {
        if only.as_deref().is_some_and(|o| o != case.name) {
            continue;
        }
        let headers = case.header_pairs();
        let view = RequestView::new(case.method, case.target.as_bytes(), &headers[..]);
        let mut hits = 0u64;
        for pick in 0..reps {
            let d = route(
                black_box(&table),
                black_box(&view),
                &AllHealthy,
                &NothingLearned,
                pick,
            );
            hits += u64::from(black_box(d.node).is_some());
        }
        println!("{}: {hits}/{reps} routed", case.name);
    }
}
