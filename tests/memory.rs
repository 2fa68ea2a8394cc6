//! Bodies stream: 100 MB each way through casfront while the resident
//! memory of this process (client, casfront and node alike) is sampled;
//! its peak must stay far below one body. In its own test binary, so no
//! other test's memory counts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use casfront::demo::Cluster;

mod support;
use support::client::{rss, stream_tls, tls_trusting};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_megabytes_stream_each_way_in_flat_memory() {
    const SIZE: u64 = 100 * 1024 * 1024;
    let cluster = Cluster::start(3, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let tls = tls_trusting(&cluster.cert_pem);
    let before = rss();
    let (done, peak) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let (status, down, _) = stream_tls(
        &tls,
        cluster.addr,
        "GET",
        &format!("/cas/stream?bytes={SIZE}"),
        0,
    )
    .await;
    assert_eq!((status, down), (200, SIZE));
    let (status, _, counted) = stream_tls(&tls, cluster.addr, "POST", "/cas/upload", SIZE).await;
    assert_eq!((status, counted), (200, SIZE.to_string()));
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let grown = peak.load(Ordering::Relaxed).saturating_sub(before);
    assert!(
        grown < 32 * 1024 * 1024,
        "memory peaked {grown} bytes above the start for 2 x 100 MB"
    );
}
