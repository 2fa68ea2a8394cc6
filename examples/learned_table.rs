//! The learned cookie table under a flood of distinct values: memory and
//! lookups per second (issue "Modern CAS"). Inserts N distinct 64-byte
//! TGC-like values (a compact-JWS length), then looks up recent values
//! (hits) and never-seen ones (misses) from one thread.
//!
//!   cargo run --release --example learned_table -- 1000000 100000
//!   (values, capacity: the configuration's `[learned] capacity`)

use std::time::{Duration, Instant};

use casfront::learned::LearnedTable;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn value(i: u64) -> [u8; 64] {
    let mut v = [b'x'; 64];
    let s = format!("eyJhbGciOiJIUzUxMiJ9.{i:020}.");
    v[..s.len()].copy_from_slice(s.as_bytes());
    v
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let capacity: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let before = rss_kib();
    let table = LearnedTable::new(capacity, Duration::from_secs(1800));
    let now = Instant::now();
    let start = Instant::now();
    for i in 0..n {
        // Each value from its own client address, as a crowd of browsers.
        let source = std::net::IpAddr::from(std::net::Ipv4Addr::from(i as u32));
        table.learn(0, b"TGC", &value(i), (i % 3) as u16, now, source);
    }
    let insert = start.elapsed();
    // Measured before the lookup values are made.
    let after = rss_kib();
    // The values looked up are made before the clock starts.
    let lookups = 1_000_000u64;
    let recent = (capacity as u64 / 2).min(n);
    let known: Vec<[u8; 64]> = (0..recent).map(|i| value(n - 1 - i)).collect();
    let unknown: Vec<[u8; 64]> = (0..recent).map(|i| value(n + i)).collect();
    let start = Instant::now();
    let mut hits = 0u64;
    for i in 0..lookups {
        let v = &known[(i % recent) as usize];
        hits += u64::from(table.find(0, b"TGC", v, now).is_some());
    }
    let hit_time = start.elapsed();
    let start = Instant::now();
    let mut misses = 0u64;
    for i in 0..lookups {
        let v = &unknown[(i % recent) as usize];
        misses += u64::from(table.find(0, b"TGC", v, now).is_none());
    }
    let miss_time = start.elapsed();
    println!(
        "values {n}, capacity {capacity}: {} entries held",
        table.len()
    );
    println!(
        "insert: {:.0} values/s; RSS {} KiB -> {} KiB (+{} KiB, {:.1} bytes per held entry)",
        n as f64 / insert.as_secs_f64(),
        before,
        after,
        after.saturating_sub(before),
        (after.saturating_sub(before) * 1024) as f64 / table.len().max(1) as f64
    );
    println!(
        "lookups: {:.2} M hits/s ({hits} of {lookups} found), {:.2} M misses/s ({misses} missed)",
        lookups as f64 / hit_time.as_secs_f64() / 1e6,
        lookups as f64 / miss_time.as_secs_f64() / 1e6,
    );
}
