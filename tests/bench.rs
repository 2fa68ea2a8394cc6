//! `casfront bench` end to end: real demo nodes sharing tickets by each
//! cluster strategy, casfront in front over TLS, the login-flow workload.
//! What it measures must match what the write-up predicts: round robin
//! reaches the issuing node 1/N of the time, casfront always; forwarding
//! costs a hop per misrouted ticket request, replication two per service
//! ticket, casfront's routing none.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser;

use casfront::bench::{self, report::Outcome, BenchArgs};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
}

async fn run(args: &[&str]) -> Vec<Outcome> {
    let mut argv = vec![
        "bench",
        "--duration",
        "1500ms",
        "--warmup",
        "300ms",
        "--users",
        "16",
    ];
    argv.extend_from_slice(args);
    let cli = Cli::parse_from(argv);
    bench::run(&cli.bench).await.unwrap()
}

fn near(measured: f64, predicted: f64, tolerance: f64, what: &str) {
    assert!(
        (measured - predicted).abs() <= tolerance,
        "{what}: measured {measured:.3}, predicted {predicted:.3}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_and_hops_match_the_predictions() {
    let out = run(&[
        "--nodes",
        "2..3",
        "--mode",
        "round-robin,affinity",
        "--strategy",
        "local,forward,replicate",
    ])
    .await;
    assert_eq!(out.len(), 12, "2 modes x 3 strategies x N = 2, 3");
    for o in &out {
        let n = o.nodes as f64;
        let rr = o.scenario.starts_with("round-robin");
        let strategy = o.scenario.rsplit('/').next().unwrap();
        assert!(o.requests > 100, "{}: {} requests", o.scenario, o.requests);
        let affinity = o
            .affinity
            .unwrap_or_else(|| panic!("{}: no validation", o.scenario));
        if rr {
            near(
                affinity,
                1.0 / n,
                0.12,
                &format!("{} N={} affinity", o.scenario, o.nodes),
            );
        } else {
            assert_eq!(affinity, 1.0, "{} N={}", o.scenario, o.nodes);
        }
        let local_rr = rr && strategy == "local";
        if local_rr {
            // Tickets only on their node: misrouted logins and validations fail.
            assert!(o.errors > 0, "{} N={}: no error", o.scenario, o.nodes);
            continue;
        }
        assert_eq!(
            o.errors, 0,
            "{} N={}: {:?}",
            o.scenario, o.nodes, o.error_samples
        );
        let hops = o.hops_per_login.unwrap();
        match (rr, strategy) {
            // 5 ticket requests per login, (N-1)/N of them on another node.
            (true, "forward") => near(hops, 5.0 * (n - 1.0) / n, 0.5, "forward hops"),
            // Each of 5 tickets replicated at issue, 3 one-time ones at use.
            (_, "replicate") => assert_eq!(hops, 8.0, "{} N={}", o.scenario, o.nodes),
            _ => assert_eq!(hops, 0.0, "{} N={}", o.scenario, o.nodes),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_and_target_modes_and_the_reports() {
    let dir = std::env::temp_dir().join(format!("casfront-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("bench.svg");
    let out = run(&["--mode", "direct", "--json", "--svg", svg.to_str().unwrap()]).await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].scenario, "direct");
    assert_eq!(out[0].errors, 0, "{:?}", out[0].error_samples);
    assert!(out[0].logins > 10);
    assert_eq!(out[0].affinity, Some(1.0));
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(
        chart.starts_with("<svg") && chart.contains("direct"),
        "{chart:.200}"
    );
    let json = bench::report::json(&out);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["scenarios"][0]["affinity_predicted"], 1.0);

    // The same workload at a front end by URL (here the demo's casfront
    // with its own nodes), trusting its CA from a file.
    let any = "127.0.0.1:0".parse().unwrap();
    let cluster = casfront::demo::Cluster::start_with(
        (1..=3)
            .map(|i| casfront::demo::node::NodeSpec::named(&format!("cas{i}")))
            .collect(),
        any,
        |c| format!("{c}[rate_limit]\nrequests_per_second = 0\nlogin_per_minute = 0\n"),
    )
    .await
    .unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &cluster.cert_pem).unwrap();
    let url = format!("https://localhost:{}/cas", cluster.addr.port());
    let out = run(&["--target", &url, "--ca", ca.to_str().unwrap(), "--no-nodes"]).await;
    assert_eq!(out[0].scenario, "target/local");
    assert_eq!(out[0].errors, 0, "{:?}", out[0].error_samples);
    assert_eq!(out[0].affinity, Some(1.0));
    assert_eq!(
        out[0].affinity_predicted, None,
        "no theory for an unknown front end"
    );
    // New connections: with --resume each user's reconnects offer its own
    // earlier ticket and resume; without, none does.
    let ca_path = ca.to_str().unwrap();
    let target = ["--target", &url, "--ca", ca_path, "--no-nodes"];
    let out = run(&[&target[..], &["--handshakes", "--resume"]].concat()).await;
    assert_eq!(out[0].workload, "resume");
    assert_eq!(out[0].errors, 0, "{:?}", out[0].error_samples);
    let resumed = out[0].resumed.unwrap();
    assert!(resumed > 0.9, "{resumed}");
    let out = run(&[&target[..], &["--handshakes"]].concat()).await;
    assert_eq!(out[0].resumed, Some(0.0));
    // Idle connections, and the memory each added to the watched process
    // (this one, which holds the demo's casfront).
    let me = std::process::id().to_string();
    let out = run(&[&target[..], &["--idle", "50", "--watch-pid", &me]].concat()).await;
    assert_eq!(out[0].idle_connections, Some(50));
    assert!(out[0].rss_per_connection_kib.is_some());
    // Over HTTP/2: a connection counts only if ALPN chose h2.
    let out = run(&[&target[..], &["--idle", "20", "--h2"]].concat()).await;
    assert_eq!(out[0].idle_connections, Some(20));
    // A wrong CA: every request fails, and says why.
    std::fs::write(&ca, casfront::demo::self_signed().unwrap().cert_pem).unwrap();
    let out = run(&["--target", &url, "--ca", ca.to_str().unwrap(), "--no-nodes"]).await;
    assert_eq!(out[0].logins, 0);
    assert!(out[0].errors > 0);
    assert!(
        out[0].error_samples[0].contains("connect"),
        "{:?}",
        out[0].error_samples
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
