//! Shared fixtures for integration tests and benchmarks: generated CAS
//! cluster configurations and the CAS request mix of the benchmarks
//! (`docs/benchmarks.md`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

pub mod browser;
pub mod client;
pub mod pki;
pub mod process;

use casfront::config;
use casfront::routing::{Method, RoutingTable};

/// Node `i`'s ticket suffix: realistic host names with a shared tail, so
/// the suffix index has long common paths (`cas-007.example.edu`).
pub fn suffix(i: usize) -> String {
    format!("cas-{i:03}.example.edu")
}

/// Appended to a test configuration whose clients, all on 127.0.0.1, send
/// more than a person would: no request rate limits.
pub const NO_RATE_LIMIT: &str = "[rate_limit]\nrequests_per_second = 0\nlogin_per_minute = 0\n";

/// A configuration with one `/cas` pool of `nodes` nodes.
pub fn cluster_config(nodes: usize) -> String {
    let mut s = String::from(
        "[listen]\nhttps = \"127.0.0.1:8443\"\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
         [[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n",
    );
    for i in 0..nodes {
        s.push_str(&format!(
            "[[pool.node]]\nname = \"cas{i}\"\nurl = \"https://10.0.{}.{}:8443\"\n\
             ticket_suffixes = [\"{}\"]\njvm_route = \"jvm{i}\"\n",
            i / 250,
            i % 250 + 1,
            suffix(i)
        ));
    }
    s
}

pub fn table(nodes: usize) -> RoutingTable {
    RoutingTable::new(&config_of(&cluster_config(nodes)).routing())
}

/// One request of the benchmark mix.
pub struct MixCase {
    pub name: &'static str,
    pub method: Method,
    pub target: String,
    pub headers: Vec<(&'static str, String)>,
    /// The node the request must reach (`None`: any).
    pub expect: Option<String>,
}

impl MixCase {
    /// The headers as the borrowed pairs a `RequestView` reads.
    pub fn header_pairs(&self) -> Vec<(&str, &str)> {
        self.headers.iter().map(|(n, v)| (*n, v.as_str())).collect()
    }
}

/// The CAS request mix against a cluster of `nodes`, aimed at the last node
/// (the deepest in any list-based lookup). Ticket lengths are CAS 6's.
pub fn mix(nodes: usize) -> Vec<MixCase> {
    let last = nodes - 1;
    let s = suffix(last);
    let random = "tG0k5-yQ8pZ3mRw2LfXv9b7NcJhAeD4sU1";
    let browser_cookies = format!(
        "_ga=GA1.2.1234567890.1700000000; lang=en; \
         CASTGC=TGT-4-{random}{random}-{s}; _gid=GA1.2.987654321.1700000000"
    );
    vec![
        MixCase {
            name: "validate_ticket",
            method: Method::Get,
            target: format!(
                "/cas/p3/serviceValidate?service=https%3A%2F%2Fapp.example.edu%2Flogin&ticket=ST-12345-{random}-{s}"
            ),
            headers: vec![],
            expect: Some(format!("cas{last}")),
        },
        MixCase {
            name: "proxy_pgt",
            method: Method::Get,
            target: format!(
                "/cas/proxy?targetService=https%3A%2F%2Fapi.example.edu&pgt=PGT-77-{random}{random}-{s}"
            ),
            headers: vec![],
            expect: Some(format!("cas{last}")),
        },
        MixCase {
            name: "login_castgc",
            method: Method::Get,
            target: "/cas/login?service=https%3A%2F%2Fapp.example.edu%2F".into(),
            headers: vec![("cookie", browser_cookies)],
            expect: Some(format!("cas{last}")),
        },
        MixCase {
            name: "jsessionid_route",
            method: Method::Post,
            target: "/cas/login?service=https%3A%2F%2Fapp.example.edu%2F".into(),
            headers: vec![(
                "cookie",
                format!("lang=en; JSESSIONID=8F3A2B1C9D0E7F6A5B4C3D2E1F0A9B8C.jvm{last}"),
            )],
            expect: Some(format!("cas{last}")),
        },
        MixCase {
            name: "unknown_suffix",
            method: Method::Get,
            target: format!("/cas/serviceValidate?service=x&ticket=ST-12345-{random}-cas-999.example.org"),
            headers: vec![],
            expect: None,
        },
    ]
}

/// Writes `contents` to a new file under Cargo's per-target temporary
/// directory (integration tests only) and returns its path.
pub fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(option_env!("CARGO_TARGET_TMPDIR").unwrap_or("/tmp"));
    let path = dir.join(format!(
        "{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, contents).unwrap();
    path
}

/// casfront serving `config` on `127.0.0.1:0` with `tls`; the server
/// stops when the returned guard is dropped.
pub async fn front(
    config: &config::Config,
    tls: std::sync::Arc<rustls::ServerConfig>,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<casfront::current::Current>,
    Serving,
) {
    let current = casfront::current::Current::fixed(config, tls).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(casfront::server::serve(listener, current.clone()));
    (addr, current, Serving(task))
}

/// casfront's admin API for `current` on `127.0.0.1:0`: its address, and
/// a guard that stops it when dropped.
pub async fn admin(
    current: &std::sync::Arc<casfront::current::Current>,
) -> (std::net::SocketAddr, Serving) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(casfront::admin::serve(listener, current.clone()));
    (addr, Serving(task))
}

/// Aborts the server task when dropped.
pub struct Serving(tokio::task::JoinHandle<()>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `[[pool.node]]` tables for plain-HTTP nodes, by name and address.
pub fn node_tables(nodes: &[(&str, std::net::SocketAddr)]) -> String {
    nodes
        .iter()
        .map(|(name, addr)| format!("[[pool.node]]\nname = \"{name}\"\nurl = \"http://{addr}\"\n"))
        .collect()
}

/// Parses configuration text that must be valid.
pub fn config_of(text: &str) -> config::Config {
    let parsed = config::parse(text, Path::new("."));
    parsed
        .config
        .unwrap_or_else(|| panic!("{:?}", parsed.diagnostics))
}

/// Waits up to `limit` for `cond`, looking every 5 ms; how long it took.
pub async fn until(
    limit: std::time::Duration,
    mut cond: impl FnMut() -> bool,
) -> Option<std::time::Duration> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    None
}
