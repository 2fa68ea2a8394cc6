//! Arbitrary bytes from a client into casfront's HTTP server (after TLS):
//! the first byte picks HTTP/1.1 (even) or HTTP/2 (odd), the rest is what
//! the client sends before closing its side. Behind it: a real demo
//! cluster of three nodes on loopback, so requests that parse are routed
//! and forwarded. Checks that nothing panics, that every exchange ends
//! within 5 s, and that every HTTP/1 answer starts with a status line
//! (HTTP/1.0 for an HTTP/1.0 request).
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use casfront::demo::node::NodeSpec;
use casfront::demo::Cluster;
use casfront::server::conn;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct World {
    rt: tokio::runtime::Runtime,
    cluster: Cluster,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let specs = (1..=3)
            .map(|i| NodeSpec::named(&format!("cas{i}")))
            .collect();
        // One client sends every input: no rate limit; short waits, so
        // that an exchange taking 5 s is a hang (the demo node's /slow
        // answers after 1 s at the latest here).
        let edit = |c: String| {
            let c = c.replacen(
                "path_prefix = \"/cas\"\n",
                "path_prefix = \"/cas\"\n[pool.upstream]\nresponse_timeout = \"1s\"\n",
                1,
            );
            format!(
                "{c}[rate_limit]\nrequests_per_second = 0\nlogin_per_minute = 0\n\
                 [limits]\nbody_wait = \"200ms\"\nheader_read_timeout = \"1s\"\n\
                 handshake_timeout = \"1s\"\nidle_timeout = \"1s\"\n"
            )
        };
        let cluster = rt
            .block_on(Cluster::start_with(
                specs,
                "127.0.0.1:0".parse().unwrap(),
                edit,
            ))
            .expect("the demo cluster starts");
        World { rt, cluster }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, bytes)) = data.split_first() else {
        return;
    };
    let h2 = first & 1 == 1;
    let w = world();
    let current = w.cluster.current.clone();
    w.rt.block_on(async move {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let generation = current.generation();
        let info = Arc::new(generation.client_conn("192.0.2.1:40000".parse().unwrap(), 443));
        let limits = generation.limits().clone();
        drop(generation);
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        let serving = tokio::spawn(async move {
            conn::serve(server, h2, current, info, &limits, stopped).await;
        });
        let exchange = async {
            let _ = client.write_all(bytes).await;
            let _ = client.shutdown().await;
            let mut answer = Vec::new();
            let _ = client.read_to_end(&mut answer).await;
            answer
        };
        let answer = tokio::time::timeout(Duration::from_secs(5), exchange).await;
        assert!(answer.is_ok(), "no end to the exchange within 5 s");
        if let (false, Ok(answer)) = (h2, &answer) {
            assert!(
                answer.is_empty()
                    || answer.starts_with(b"HTTP/1.1 ")
                    || answer.starts_with(b"HTTP/1.0 "),
                "not a status line: {:?}",
                String::from_utf8_lossy(&answer[..answer.len().min(64)])
            );
        }
        serving.abort();
    });
});
