//! The admin status page in a real browser: headless Chromium (Debian's
//! `chromium`, which `.ci/run` installs) loads `GET /`, its rendered DOM
//! shows every node with its state, and a screenshot is saved as
//! `target/status-page.png`. Without Chromium the test says so and passes,
//! except under CI (`CI` set), where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use casfront::demo::Cluster;
use casfront::health::Mode;

mod support;
use support::client::{send, send_tls, tls_trusting};

fn chromium() -> Option<PathBuf> {
    let candidates = ["chromium", "chromium-browser", "google-chrome"];
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .into_iter()
        .chain(candidates.iter().map(PathBuf::from))
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_every_node_in_chromium() {
    let specs = (1..=4)
        .map(|i| casfront::demo::node::NodeSpec::named(&format!("cas{i}")))
        .collect();
    // cas4 is marked down below: it stays down for the whole test.
    let cluster = Cluster::start_with(specs, "127.0.0.1:0".parse().unwrap(), |c| {
        c.replacen(
            "path_prefix = \"/cas\"\n",
            "path_prefix = \"/cas\"\n[pool.upstream]\ndown_cooldown = \"10min\"\n",
            1,
        )
    })
    .await
    .unwrap();
    let proxy = cluster.generation();
    let id = |name| proxy.table().node_by_name(name).unwrap();
    proxy.health().set_mode(id("cas2"), Mode::Draining);
    proxy.health().set_mode(id("cas3"), Mode::Disabled);
    proxy.health().mark_down(id("cas4"));
    let tls = tls_trusting(&cluster.cert_pem);
    for _ in 0..5 {
        let r = send_tls(
            &tls,
            cluster.addr,
            "localhost",
            "GET",
            "/cas/serviceValidate?service=s&ticket=ST-1-abcdefgh-cas1",
            &[],
            "",
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let url = format!("http://{admin_addr}/");
    let _admin = tokio::spawn(casfront::admin::serve(admin, cluster.current.clone()));
    let page = send(admin_addr, "GET", "/", &[], "").await;
    assert_eq!(page.status, 200);
    let rows = |html: &str| {
        for (node, state) in [
            ("cas1", "healthy"),
            ("cas2", "draining"),
            ("cas3", "disabled"),
            ("cas4", "down"),
        ] {
            let row =
                format!("<tr class=\"{state}\"><td>{node}</td><td class=\"state\">{state}</td>");
            assert!(html.contains(&row), "{row} not in the page:\n{html}");
        }
        // cas1's row: 5 requests, 0 errors.
        let cas1 = html.split("<td>cas1</td>").nth(1).unwrap_or("");
        let cas1 = cas1.split("</tr>").next().unwrap_or("");
        assert!(cas1.contains("<td>5</td><td>0</td>"), "{cas1}");
        assert!(html.contains("2 of 4 node(s) usable"), "{html}");
    };
    rows(&page.body);

    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have Chromium (apt-get install chromium)"
        );
        eprintln!("SKIPPED the browser part: no Chromium here (set CHROMIUM=/path/to/chrome to run this test)");
        return;
    };

    let shot = target_dir().join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let headless = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--window-size=1100,520",
    ];
    let (b, u, s) = (browser.clone(), url.clone(), shot.clone());
    let (dom, screenshot) = tokio::task::spawn_blocking(move || {
        let dom = Command::new(&b)
            .args(headless)
            .arg("--dump-dom")
            .arg(&u)
            .output()
            .unwrap();
        let screenshot = Command::new(&b)
            .args(headless)
            .arg(format!("--screenshot={}", s.display()))
            .arg(&u)
            .output()
            .unwrap();
        (dom, screenshot)
    })
    .await
    .unwrap();
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    // As the browser rendered it.
    rows(&html);
    assert!(
        screenshot.status.success(),
        "{}",
        String::from_utf8_lossy(&screenshot.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 5_000,
        "{} bytes",
        png.len()
    );
}
