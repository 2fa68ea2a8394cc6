//! What `deploy/` ships, checked with the real tools: the systemd unit
//! with `systemd-analyze verify` (no warning) and its sandboxing with
//! `systemd-analyze security --offline=yes` (exposure at most 2.0), the
//! user it runs as with `systemd-sysusers --dry-run`, the alerts with
//! `promtool check rules` and `promtool test rules` (and their metric names
//! against what casfront exports), the Grafana dashboard's queries (every
//! exported metric shown, nothing else), the keepalived pair's
//! configuration with `keepalived --config-test`. Without the tools
//! (not installed) the tests say so and pass, except under CI, which
//! installs them (`.ci/run`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

mod support;
use support::process::succeeds;

const UNIT: &str = include_str!("../deploy/systemd/casfront.service");

/// Whether `tool` runs here; under CI its absence is a failure.
fn have(tool: &str) -> bool {
    let found = Command::new(path_of(tool))
        .arg("--version")
        .output()
        .is_ok();
    assert!(
        found || std::env::var_os("CI").is_none(),
        "{tool} is needed under CI"
    );
    if !found {
        eprintln!("skipped: {tool} is not installed");
    }
    found
}

/// `tool` on the PATH, else in /usr/sbin (keepalived, for a PATH without it).
fn path_of(tool: &str) -> PathBuf {
    let sbin = Path::new("/usr/sbin").join(tool);
    let on_path = Command::new(tool).arg("--version").output().is_ok();
    if !on_path && sbin.exists() {
        return sbin;
    }
    PathBuf::from(tool)
}

/// The unit as installed, with this build's binary in place of
/// `/usr/bin/casfront` (verify checks that the commands exist).
fn unit_here() -> PathBuf {
    let text = UNIT.replace("/usr/bin/casfront", env!("CARGO_BIN_EXE_casfront"));
    let dir = support::temp_file("unit", "");
    let _ = std::fs::remove_file(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("casfront.service");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_unit_verifies_cleanly() {
    if !have("systemd-analyze") {
        return;
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit_here())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let about_it: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("casfront.service"))
        .collect();
    assert!(about_it.is_empty(), "{stderr}");
    for directive in [
        "Type=notify",
        "NotifyAccess=all",
        "ExecStartPre=/usr/bin/casfront check -c /etc/casfront/casfront.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "ProtectSystem=strict",
    ] {
        assert!(UNIT.lines().any(|l| l == directive), "{directive}");
    }
}

#[test]
fn the_unit_is_sandboxed() {
    if !have("systemd-analyze") {
        return;
    }
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(unit_here())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let overall = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("{text}"));
    let score: f64 = overall
        .split(": ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{overall}"));
    assert!(score <= 2.0, "{overall}");
    assert!(overall.contains("OK"), "{overall}");
}

#[test]
fn the_user_is_made_by_sysusers() {
    if !have("systemd-sysusers") {
        return;
    }
    let root = support::temp_file("sysroot", "");
    let _ = std::fs::remove_file(&root);
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd/casfront.sysusers");
    let out = Command::new("systemd-sysusers")
        .arg("--dry-run")
        .arg(format!("--root={}", root.display()))
        .arg(conf)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr) + String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("Creating user 'casfront'"), "{said}");
    assert!(UNIT.lines().any(|l| l == "User=casfront"));
}

const RULES: &str = include_str!("../deploy/prometheus/casfront.rules.yml");

/// `promtool check rules` and `promtool test rules` on the alerts.
#[test]
fn the_alerts_check_and_pass_their_tests() {
    if !have("promtool") {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
    for args in [
        ["check", "rules", "casfront.rules.yml"],
        ["test", "rules", "casfront.rules.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "promtool {args:?}: {said}");
        assert!(said.contains("SUCCESS"), "{said}");
    }
}

/// The `casfront_*` metric names `text` mentions.
fn metric_names(text: &str) -> Vec<&str> {
    let mut used = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("casfront_") {
        let name = &rest[at..];
        let end = name
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(name.len());
        used.push(&name[..end]);
        rest = &name[end..];
    }
    used
}

/// The exported metric `name` is (a histogram's `_bucket`, `_sum` and
/// `_count` series are its own), if any.
fn exported(name: &str) -> Option<&'static str> {
    casfront::metrics::names::ALL.iter().copied().find(|m| {
        *m == name
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| name.strip_suffix(s) == Some(m))
    })
}

/// Every metric the alerts read is one casfront exports.
#[test]
fn the_alerts_read_only_exported_metrics() {
    let used = metric_names(RULES);
    assert!(used.len() >= 7, "{used:?}");
    for name in used {
        assert!(
            exported(name).is_some(),
            "{name} is not a metric casfront exports"
        );
    }
}

/// The Grafana dashboard: JSON with panels, every query on a metric
/// casfront exports, and every exported metric on some panel.
#[test]
fn the_dashboard_shows_every_metric_and_only_those() {
    let text = include_str!("../deploy/grafana/casfront.json");
    let dashboard: serde_json::Value = serde_json::from_str(text).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    let mut shown = std::collections::BTreeSet::new();
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for name in metric_names(expr) {
                let m = exported(name);
                assert!(
                    m.is_some(),
                    "{name} in {:?} is not exported",
                    panel["title"]
                );
                shown.extend(m);
            }
        }
    }
    for m in casfront::metrics::names::ALL {
        assert!(shown.contains(m), "no panel shows {m}");
    }
}

/// `keepalived --config-test` on the pair's configuration: no message. (A
/// clean test ends keepalived 2.2 by SIGTERM, not exit 0; a configuration
/// with a fault exits non-zero with a message, as the broken copy shows.)
#[test]
fn the_keepalived_configuration_tests_clean() {
    use std::os::unix::process::ExitStatusExt;
    if !have("keepalived") {
        return;
    }
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/keepalived/keepalived.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(
        text.contains("http://127.0.0.1:9901/ready"),
        "the check is /ready"
    );
    let test = |path: &Path| {
        let log = support::temp_file("keepalived.log", "");
        let out = Command::new(path_of("keepalived"))
            .arg(format!("--config-test={}", log.display()))
            .arg("-f")
            .arg(path)
            .output()
            .unwrap();
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        let clean = out.status.success() || out.status.signal() == Some(15);
        (clean && said.trim().is_empty(), said)
    };
    let (ok, said) = test(&conf);
    assert!(ok, "{said}");
    let broken = support::temp_file(
        "keepalived.conf",
        &text.replace("virtual_router_id 51", "virtual_router_id 999"),
    );
    let (ok, said) = test(&broken);
    assert!(!ok && said.contains("999"), "{said}");
}

/// The two-region example (docs/deploy.md) is valid, and routes as the
/// page says: new logins to the region's own nodes, then to the other
/// region's when none is up; another region's ticket to its issuer.
#[test]
fn the_two_region_example_routes_as_documented() {
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/two-regions.example.toml"
    );
    let casfront = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_casfront"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let said = casfront(&["check", "-c", config]);
    assert!(
        said.contains("ok: 1 pool(s), 4 node(s), 0 warning(s)\n"),
        "{said}"
    );
    let node = |args: &[&str]| -> String {
        let mut all = vec!["explain", "-c", config];
        all.extend_from_slice(args);
        let v: serde_json::Value = serde_json::from_str(&casfront(&all)).unwrap();
        v["node"].as_str().unwrap().to_owned()
    };
    let validate = "/cas/serviceValidate?service=x&ticket=ST-1-abc-cas-w1";
    assert_eq!(node(&[validate]), "cas-w1");
    for pick in ["0", "1", "2", "3"] {
        assert!(node(&["--pick", pick, "/cas/login"]).starts_with("cas-e"));
    }
    let east_down = ["--down", "cas-e1", "--down", "cas-e2", "/cas/login"];
    assert!(node(&east_down).starts_with("cas-w"));
}

/// The Debian package `cargo deb --profile release-lto` made (`.ci/run`
/// makes it before the tests; without it, outside CI, this says so):
/// extracted into a throwaway root, its binary checks its own
/// configuration; the configuration is a conffile; the unit and the user
/// file are where systemd reads them.
#[test]
fn the_debian_package_installs_a_checked_configuration() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debian");
    let deb = std::fs::read_dir(&dir).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
    });
    let Some(deb) = deb else {
        assert!(std::env::var_os("CI").is_none(), "no package in {dir:?}");
        eprintln!("skipped: no package (cargo deb --profile release-lto)");
        return;
    };
    let dpkg = |args: &[&str]| {
        let out = Command::new("dpkg-deb")
            .args(args)
            .arg(&deb)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let contents = dpkg(&["--contents"]);
    for path in [
        "./usr/bin/casfront",
        "./etc/casfront/casfront.toml",
        "./usr/lib/systemd/system/casfront.service",
        "./usr/lib/sysusers.d/casfront.conf",
        "./usr/share/casfront/prometheus/casfront.rules.yml",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(path)),
            "{path}\n{contents}"
        );
    }
    let root = support::temp_file("deb-root", "");
    let _ = std::fs::remove_file(&root);
    std::fs::create_dir_all(&root).unwrap();
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let conffiles = Command::new("dpkg-deb")
        .args(["--ctrl-tarfile"])
        .arg(&deb)
        .output()
        .unwrap();
    let listing = Command::new("tar")
        .args(["-xO", "./conffiles"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut tar| {
            use std::io::Write;
            tar.stdin.take().unwrap().write_all(&conffiles.stdout)?;
            tar.wait_with_output()
        })
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&listing.stdout).trim(),
        "/etc/casfront/casfront.toml"
    );
    let config = root.join("etc/casfront/casfront.toml");
    let said = succeeds(
        Command::new(root.join("usr/bin/casfront"))
            .args(["check", "-c"])
            .arg(&config),
    );
    assert!(said.contains(": ok: "), "{said}");
    let unit =
        std::fs::read_to_string(root.join("usr/lib/systemd/system/casfront.service")).unwrap();
    assert_eq!(unit, UNIT);
}

/// `deploy/kubernetes/`: every manifest is valid against the Kubernetes
/// 1.31 schemas, offline and strict (`kubernetes-validate`, pinned in
/// `.ci/run`), and the ConfigMap's configuration passes `casfront check`
/// (its Secret-mounted route key stood in for by a file of the test's).
#[test]
fn the_kubernetes_manifests_validate_and_their_config_checks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let manifests = ["cas.yaml", "casfront.yaml"].map(|f| dir.join(f));
    if have("kubernetes-validate") {
        let said = succeeds(
            Command::new("kubernetes-validate")
                .args(["--strict", "--kubernetes-version", "1.31.0"])
                .args(&manifests),
        );
        assert_eq!(said.matches(" passed for resource ").count(), 10, "{said}");
    }
    // The configuration: the block under `casfront.toml: |`.
    let yaml = std::fs::read_to_string(&manifests[1]).unwrap();
    let mut lines = yaml
        .lines()
        .skip_while(|l| l.trim() != "casfront.toml: |")
        .skip(1);
    let mut config = String::new();
    for line in lines.by_ref() {
        if !line.starts_with("    ") && !line.trim().is_empty() {
            break;
        }
        config.push_str(line.get(4..).unwrap_or(""));
        config.push('\n');
    }
    assert!(config.contains("[pool.discovery]"), "{config}");
    let tmp = std::env::temp_dir().join(format!("casfront-k8s-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let key = tmp.join("route.key");
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = config.replace("/etc/casfront/route/route.key", key.to_str().unwrap());
    let file = tmp.join("casfront.toml");
    std::fs::write(&file, config).unwrap();
    let said = succeeds(Command::new(env!("CARGO_BIN_EXE_casfront")).args([
        "check",
        "-c",
        file.to_str().unwrap(),
    ]));
    assert!(
        said.contains("nodes from DNS (SRV _http._tcp.cas.cas.svc.cluster.local"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
