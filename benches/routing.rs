//! The routing core's cost per decision for the CAS request mix (`docs/benchmarks.md`), with
//! 3 and 200 nodes. Inputs are built outside the timed loop. Run with
//! `cargo bench --bench routing`.

use std::hint::black_box;

use casfront::routing::{route, AllHealthy, NothingLearned, RequestView};
use criterion::{criterion_group, criterion_main, Criterion};

#[path = "../tests/support/mod.rs"]
mod support;

fn routing(c: &mut Criterion) {
    for nodes in [3, 200] {
        let table = support::table(nodes);
        let mut group = c.benchmark_group(format!("route/{nodes}_nodes"));
        for case in support::mix(nodes) {
            let headers = case.header_pairs();
            let view = RequestView::new(case.method, case.target.as_bytes(), &headers[..]);
            // Check once that the bench measures the intended decision.
            let d = route(&table, &view, &AllHealthy, &NothingLearned, 0);
            let got = d.node.and_then(|n| table.node(n)).map(|n| n.name.clone());
            if case.expect.is_some() {
                assert_eq!(got, case.expect, "{}", case.name);
            }
            let mut pick = 0u64;
            group.bench_function(case.name, |b| {
                b.iter(|| {
                    pick = pick.wrapping_add(1);
                    let d = route(
                        black_box(&table),
                        black_box(&view),
                        &AllHealthy,
                        &NothingLearned,
                        pick,
                    );
                    black_box(d.node)
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, routing);
criterion_main!(benches);
