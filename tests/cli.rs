//! The command line as a user runs it: the real binary, real files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

mod support;
use support::process::Running;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/casfront.example.toml");

fn casfront(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_casfront"))
        .args(args)
        .output()
        .unwrap()
}

fn explain(args: &[&str]) -> Value {
    let mut all = vec!["explain", "-c", EXAMPLE];
    all.extend_from_slice(args);
    let out = casfront(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one JSON line: {stdout}");
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn explain_routes_a_validation_by_ticket_suffix() {
    let v = explain(&[
        "--method",
        "GET",
        "/cas/serviceValidate?service=x&ticket=ST-1-abc-def-cas2",
    ]);
    assert_eq!(v["pool"], "cas");
    assert_eq!(v["node"], "cas2");
    assert_eq!(v["rule"], "ticket");
    let note = v["note"].as_str().unwrap();
    assert!(note.contains("ST-…-cas2"), "{note}");
    assert!(
        !note.contains("ST-1-abc-def-cas2"),
        "the note must not show the whole ticket: {note}"
    );
}

#[test]
fn explain_with_headers_states_and_body() {
    // CASTGC owned by cas2 (its dotted suffix), cas2 down: falls to jvmRoute.
    let v = explain(&[
        "--header",
        "Cookie: CASTGC=TGT-9-Zz-cas-02.example.edu",
        "--header",
        "Cookie: JSESSIONID=ABCDEF.cas1",
        "--down",
        "cas2",
        "/cas/login?service=x",
    ]);
    assert_eq!(
        (v["node"].as_str(), v["rule"].as_str()),
        (Some("cas1"), Some("session"))
    );
    assert!(
        v["note"]
            .as_str()
            .unwrap()
            .contains("owned by cas2 which is down"),
        "{v}"
    );
    // SAML 1.1 POST: the ticket is only in the body.
    let v = explain(&[
        "--method",
        "post",
        "--body",
        "<samlp:AssertionArtifact>ST-5-x-cas2</samlp:AssertionArtifact>",
        "/cas/samlValidate?TARGET=https%3A%2F%2Fapp",
    ]);
    assert_eq!(
        (v["node"].as_str(), v["rule"].as_str()),
        (Some("cas2"), Some("ticket"))
    );
    // Only the backup is left.
    let v = explain(&["--down", "cas1", "--disabled", "cas2", "/cas/login"]);
    assert_eq!(
        (v["node"].as_str(), v["rule"].as_str()),
        (Some("cas3"), Some("any"))
    );
    // Draining keeps its tickets.
    let v = explain(&["--draining", "cas1", "/cas/validate?ticket=ST-1-a-cas1"]);
    assert_eq!(v["node"], "cas1");
    // No pool.
    let v = explain(&["/nothing/here"]);
    assert_eq!(
        (
            v["pool"].is_null(),
            v["node"].is_null(),
            v["rule"].is_null()
        ),
        (true, true, true)
    );
    // The F5 name printed by `suffix --f5` routes to its node.
    let out = casfront(&["suffix", "--f5", "10.0.0.12"]);
    let md5 = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let v = explain(&[&format!("/cas/proxy?pgt=PGT-1-x-{md5}")]);
    assert_eq!(
        (v["node"].as_str(), v["rule"].as_str()),
        (Some("cas2"), Some("pgt"))
    );
}

/// The command exited 2 with `says` in its error.
fn fails_saying(out: &std::process::Output, says: &str) {
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(says), "{err}");
}

#[test]
fn explain_rejects_bad_arguments_clearly() {
    for (args, says) in [
        (vec!["--down", "nope", "/cas/login"], "unknown node `nope`"),
        (
            vec!["--header", "no colon", "/cas/login"],
            "is not `Name: value`",
        ),
        (vec!["cas/login"], "must be an origin-form path"),
    ] {
        let mut all = vec!["explain", "-c", EXAMPLE];
        all.extend(args);
        fails_saying(&casfront(&all), says);
    }
}

#[test]
fn suffix_prints_the_f5_md5() {
    let out = casfront(&["suffix", "--f5", "127.0.0.1"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "f528764d624db129b32c21fbca0cb8d6\n"
    );
    let out = casfront(&["suffix", "--f5", "10.0.0.256"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn explain_assumes_learned_cookies() {
    let jws = "eyJhbGciOiJIUzUxMiJ9.e30.c2ln";
    let cookie = format!("Cookie: TGC={jws}");
    fn with<'a>(cookie: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["--header", cookie];
        args.extend_from_slice(extra);
        args.push("/cas/login");
        args
    }
    let run = |extra: &[&str]| explain(&with(&cookie, extra));
    let v = run(&["--learned", &format!("TGC={jws}=cas2")]);
    assert_eq!(
        (v["node"].as_str(), v["rule"].as_str()),
        (Some("cas2"), Some("tgc"))
    );
    assert!(
        v["note"].as_str().unwrap().ends_with("-> cas2 by learned"),
        "{v}"
    );
    // The value never appears whole.
    assert!(!v["note"].as_str().unwrap().contains(jws), "{v}");
    // Without it, the opaque TGC is not learned and `any` decides.
    let v = run(&[]);
    assert_eq!(v["rule"].as_str(), Some("any"));
    assert!(v["note"].as_str().unwrap().contains("not learned"), "{v}");
    // A node of another pool is not learned for this one.
    let v = run(&["--learned", &format!("TGC={jws}=registry1")]);
    assert_eq!(v["rule"].as_str(), Some("any"));
    for (bad, says) in [
        ("TGC=x", "is not `NAME=VALUE=NODE`"),
        ("TGC=x=nobody", "unknown node `nobody`"),
    ] {
        let mut args = vec!["explain", "-c", EXAMPLE];
        args.extend(with(&cookie, &["--learned", bad]));
        fails_saying(&casfront(&args), says);
    }
}

#[test]
fn suffix_decodes_an_f5_cookie_and_explain_routes_by_it() {
    let out = casfront(&["suffix", "--bigip-cookie", "201326602.64288.0000"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "10.0.0.12:8443\n");
    let out = casfront(&[
        "suffix",
        "--bigip-cookie",
        "rd5o00000000000000000000ffff0a00000co8443",
    ]);
    fails_saying(&out, "is not an F5 IPv4 persistence cookie");
    // The example's cas pool reads BIGipServercas_pool; cas2 is 10.0.0.12:8443.
    let v = explain(&[
        "--header",
        "Cookie: BIGipServercas_pool=201326602.64288.0000",
        "/cas/login",
    ]);
    assert_eq!(
        (v["node"].as_str(), v["rule"].as_str()),
        (Some("cas2"), Some("session")),
        "{v}"
    );
    let note = v["note"].as_str().unwrap();
    assert!(
        note.contains("bigip-cookie: BIGipServercas_pool=") && note.ends_with("-> cas2 by bigip"),
        "{note}"
    );
}

#[test]
fn check_accepts_the_example() {
    let out = casfront(&["check", "-c", EXAMPLE]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("ok: 3 pool(s), 5 node(s)"), "{said}");
    // Where the route-cookie key is, and that check did not create it.
    let out = Command::new(env!("CARGO_BIN_EXE_casfront"))
        .args(["check", "-c", EXAMPLE])
        .env("STATE_DIRECTORY", "/nonexistent/casfront-state")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(
            "route-cookie key: /nonexistent/casfront-state/route.key (created at first start, \
             mode 0600; state directory from $STATE_DIRECTORY)"
        ),
        "{said}"
    );
}

#[test]
fn check_lists_three_mistakes_with_positions() {
    let path = support::temp_file(
        "three.toml",
        "[listen]\nhttps = \"0.0.0.0:8443\"\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
         [[pool]]\nname = \"cas\"\npath_prefix = \"cas\"\n\
         [[pool.node]]\nname = \"cas1\"\nurl = \"ftp://10.0.0.1:21\"\nweigth = 2\n",
    );
    let out = casfront(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    let p = path.display();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert!(
        lines[0].starts_with(&format!(
            "{p}:8:15: error: path_prefix `cas` must start with `/`"
        )),
        "{err}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{p}:11:7: error: node url `ftp://10.0.0.1:21` must use http or https"
        )),
        "{err}"
    );
    assert_eq!(
        lines[2],
        format!("{p}:12:1: error: unknown key `weigth`; expected one of: name, url, ticket_suffixes, f5_md5, jvm_route, backup, server_name")
    );
    assert_eq!(lines[3], format!("{p}: 3 error(s), 0 warning(s)"));
}

#[test]
fn check_reports_a_missing_file() {
    let out = casfront(&["check", "-c", "/nonexistent/casfront.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/casfront.toml"));
}

#[test]
fn run_reports_unreadable_certificates() {
    // Its state (the route-cookie key) in a directory of its own, not
    // beside the example in the source tree.
    let state = std::env::temp_dir().join(format!("casfront-cli-state-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_casfront"))
        .args(["run", "-c", EXAMPLE])
        .env("STATE_DIRECTORY", &state)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&state);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("reading certificates from /etc/casfront/server.pem"),
        "{err}"
    );
}

/// Starts the binary with `args`, reads stderr/stdout lines until `ready`
/// returns a value, and kills the process when the guard drops.
fn start_until<T>(
    args: &[&str],
    from_stderr: bool,
    ready: impl Fn(&str) -> Option<T>,
) -> (Running, T, Vec<String>) {
    use std::io::BufRead;
    use std::process::Stdio;
    let mut running = Running(
        Command::new(env!("CARGO_BIN_EXE_casfront"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines: Box<dyn BufRead> = if from_stderr {
        Box::new(std::io::BufReader::new(running.0.stderr.take().unwrap()))
    } else {
        Box::new(std::io::BufReader::new(running.0.stdout.take().unwrap()))
    };
    let mut seen = Vec::new();
    for line in lines.lines() {
        let line = line.unwrap();
        if let Some(v) = ready(&line) {
            seen.push(line);
            return (running, v, seen);
        }
        seen.push(line);
    }
    panic!("the process ended before it was ready: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_a_configuration() {
    let node = casfront::demo::node::spawn(casfront::demo::node::NodeSpec::named("cas1"))
        .await
        .unwrap();
    let (_proc, addr, tls) = start_run(node.addr, "");
    let r = support::client::send_tls(&tls, addr, "localhost", "GET", "/cas/login", &[], "").await;
    assert_eq!((r.status, r.header("x-cas-node")), (200, Some("cas1")));
}

/// `casfront run` with a generated certificate, one node and the `extra`
/// configuration; returns the process, its https address and a client
/// configuration that trusts it.
fn start_run(
    node: std::net::SocketAddr,
    extra: &str,
) -> (
    Running,
    std::net::SocketAddr,
    std::sync::Arc<rustls::ClientConfig>,
) {
    let cert = casfront::demo::self_signed().unwrap();
    let cert_path = support::temp_file("server.pem", &cert.cert_pem);
    let key_path = support::temp_file("server.key", &cert.key_pem);
    let config = support::temp_file(
        "run.toml",
        &format!(
            "[listen]\nhttps = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n[[pool.node]]\nname = \"cas1\"\nurl = \"http://{node}\"\n{extra}",
            cert_path.display(),
            key_path.display(),
        ),
    );
    let (proc, addr, _) = start_until(&["run", "-c", config.to_str().unwrap()], true, |l| {
        l.strip_prefix("casfront: serving https on ")
            .map(|a| a.parse::<std::net::SocketAddr>().unwrap())
    });
    (proc, addr, support::client::tls_trusting(&cert.cert_pem))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish_then_exits_0() {
    let node = casfront::demo::node::spawn(casfront::demo::node::NodeSpec::named("cas1"))
        .await
        .unwrap();
    let (mut proc, addr, tls) = start_run(node.addr, "[limits]\nshutdown_grace = \"10s\"\n");
    let slow = tokio::spawn(async move {
        support::client::send_tls(&tls, addr, "localhost", "GET", "/cas/slow?ms=1000", &[], "")
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = proc.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // No new connections while the slow request finishes.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    let r = slow.await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "slow\n"));
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = proc.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "casfront did not exit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_and_prints_what_to_try() {
    let (_proc, port, _) = start_until(&["demo", "--listen", "127.0.0.1:0"], false, |l| {
        l.strip_prefix("casfront demo: 3 CAS nodes (cas1..cas3) behind https://localhost:")
            .and_then(|rest| rest.strip_suffix("/cas"))
            .map(|p| p.parse::<u16>().unwrap())
    });
    // The demo writes its certificates before it prints the ready line.
    let file =
        |name: &str| std::env::temp_dir().join(format!("casfront-demo-{}-{name}", _proc.0.id()));
    let ca = file("ca.pem");
    let pem = std::fs::read_to_string(&ca).unwrap();
    assert!(
        pem.contains("BEGIN CERTIFICATE"),
        "the demo wrote {}",
        ca.display()
    );
    let tls = support::client::tls_trusting(&pem);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let r = support::client::send_tls(&tls, addr, "localhost", "GET", "/cas/login", &[], "").await;
    assert_eq!(r.status, 200);
    assert!(r.header("x-cas-node").unwrap().starts_with("cas"));
    // Step 5: the client certificate it wrote, and what a node is told of it.
    let alice = support::pki::Leaf {
        cert_pem: std::fs::read_to_string(file("alice.pem")).unwrap(),
        key_pem: std::fs::read_to_string(file("alice.key")).unwrap(),
    };
    let tls = support::pki::client_with_cert(&pem, &alice);
    let r =
        support::client::send_tls(&tls, addr, "localhost", "GET", "/cas/headers", &[], "").await;
    for line in [
        "ssl_client_verify: SUCCESS\n",
        "ssl_client_s_dn: CN=alice,OU=People,O=Example University\n",
        "ssl_client_san: email:alice@example.edu, UPN:alice@EXAMPLE.EDU\n",
    ] {
        assert!(r.body.contains(line), "{line} not in {}", r.body);
    }
}

#[test]
fn the_readme_example_is_true() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let shown = readme
        .lines()
        .find(|l| l.starts_with("{\"pool\":\"cas\",\"node\":\"cas1\",\"rule\":\"session\""))
        .expect("the README shows the explain output");
    let out = casfront(&[
        "explain",
        "-c",
        EXAMPLE,
        "--header",
        "Cookie: CASTGC=TGT-9-Zz-cas-02.example.edu; JSESSIONID=ABC.cas1",
        "--down",
        "cas2",
        "/cas/login?service=https%3A%2F%2Fapp",
    ]);
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim_end(), shown);
    assert!(readme.contains("--down cas2 '/cas/login?service=https%3A%2F%2Fapp'"));
    assert!(readme.contains("'Cookie: CASTGC=TGT-9-Zz-cas-02.example.edu; JSESSIONID=ABC.cas1'"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_nodes_only_serves_the_nodes() {
    let (_proc, addrs, seen) = start_until(&["demo", "--nodes-only", "--nodes", "2"], false, |l| {
        l.strip_prefix("cas2 on http://").map(str::to_owned)
    });
    let cas1: std::net::SocketAddr = seen[0]
        .strip_prefix("cas1 on http://")
        .unwrap()
        .parse()
        .unwrap();
    let cas2: std::net::SocketAddr = addrs.parse().unwrap();
    for (addr, name) in [(cas1, "cas1"), (cas2, "cas2")] {
        let r = support::client::send(addr, "GET", "/cas/login", &[], "").await;
        assert_eq!((r.status, r.header("x-cas-node")), (200, Some(name)));
    }
}
