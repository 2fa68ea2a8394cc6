//! The keepalived pair of `deploy/keepalived/keepalived.conf`, for real, in
//! network namespaces this test makes (and removes): two casfront hosts
//! (`fa`, `fb`) and two demo CAS nodes on a bridge, a client on it too, a
//! virtual address shared by VRRP. A user logs in through the address,
//! held by `fa`; `fa`'s casfront stops (its `/ready` fails); the address
//! moves to `fb`, and the user's single sign-on through it still reaches
//! the node that issued the TGT. The nodes are modern CAS (an opaque TGC
//! only its node accepts): `fb` never saw it, and routes it by the route
//! cookie `fa` set, sealed with the key both share. Needs root, `ip`, `keepalived` and `curl`:
//! without them, outside CI, it says so and passes; CI has them (`.ci/run`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;

const VIP: &str = "10.77.0.10";
const NODES: &str = "10.77.0.20";
const SERVICE: &str = "https%3A%2F%2Fapp.example.edu%2F";

/// The namespaces and the processes in them; all gone when dropped.
struct Net {
    prefix: String,
    spaces: Vec<String>,
    children: Vec<Child>,
    dir: PathBuf,
}

impl Drop for Net {
    fn drop(&mut self) {
        // SIGTERM first: keepalived stops the children it forked only then.
        for c in &self.children {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for c in &mut self.children {
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // Whatever is left that names this test's folder.
        let _ = Command::new("pkill")
            .arg("-f")
            .arg(self.dir.as_os_str())
            .status();
        for ns in &self.spaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    out
}

impl Net {
    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// A command run inside namespace `name`.
    fn exec(&self, name: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(name)]).arg(program);
        c
    }

    fn spawn(&mut self, mut cmd: Command, log: &str) {
        let file = std::fs::File::create(self.dir.join(log)).unwrap();
        let child = cmd
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    /// Whether host `name` holds the virtual address.
    fn holds_vip(&self, name: &str) -> bool {
        let out = Command::new("ip")
            .args(["-n", &self.ns(name), "-4", "addr", "show", "eth0"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&format!("{VIP}/"))
    }

    /// A GET through the virtual address from the client, with its cookie
    /// jar: the response head.
    fn get(&self, target: &str, form: Option<&str>) -> String {
        let jar = self.dir.join("jar");
        let mut c = self.exec("cli", "curl");
        c.args(["-sk", "--max-time", "5", "-o", "/dev/null", "-D", "-"])
            .args(["--resolve", &format!("localhost:8443:{VIP}")])
            .arg("-c")
            .arg(&jar)
            .arg("-b")
            .arg(&jar);
        if let Some(form) = form {
            c.args(["-d", form]);
        }
        let out = c
            .arg(format!("https://localhost:8443{target}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_ascii_lowercase()
    }
}

/// Whether this machine can run the test; under CI it must.
fn able() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    let tools = ["ip", "curl"]
        .iter()
        .all(|t| Command::new(t).arg("-V").output().is_ok())
        && Path::new("/usr/sbin/keepalived").exists();
    assert!(
        (root && tools) || std::env::var_os("CI").is_none(),
        "CI needs root, ip, curl and keepalived"
    );
    if !(root && tools) {
        eprintln!("skipped: needs root, ip, curl and keepalived");
    }
    root && tools
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_address_moves_with_readiness_and_single_sign_on_follows() {
    if !able() {
        return;
    }
    let dir = support::temp_file("vip", "");
    let _ = std::fs::remove_file(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut net = Net {
        prefix: format!("cfv{}", std::process::id()),
        spaces: Vec::new(),
        children: Vec::new(),
        dir: dir.clone(),
    };
    // A bridge in `lan`; each host on it by a veth pair, as eth0.
    for name in ["lan", "fa", "fb", "nodes", "cli"] {
        run(Command::new("ip").args(["netns", "add", &net.ns(name)]));
        net.spaces.push(net.ns(name));
    }
    let lan = net.ns("lan");
    run(Command::new("ip").args(["-n", &lan, "link", "add", "br0", "type", "bridge"]));
    run(Command::new("ip").args(["-n", &lan, "link", "set", "br0", "up"]));
    let hosts = [
        ("fa", "10.77.0.11"),
        ("fb", "10.77.0.12"),
        ("nodes", NODES),
        ("cli", "10.77.0.30"),
    ];
    for (name, addr) in hosts {
        let (ns, port) = (net.ns(name), format!("v{name}"));
        run(Command::new("ip")
            .args(["link", "add", &port, "netns", &lan, "type", "veth"])
            .args(["peer", "name", "eth0", "netns", &ns]));
        run(Command::new("ip").args(["-n", &lan, "link", "set", &port, "master", "br0", "up"]));
        for link in ["lo", "eth0"] {
            run(Command::new("ip").args(["-n", &ns, "link", "set", link, "up"]));
        }
        run(Command::new("ip").args([
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]));
    }

    // Two demo nodes, then casfront on fa and fb, one configuration.
    let casfront = env!("CARGO_BIN_EXE_casfront");
    let mut nodes = net.exec("nodes", casfront);
    nodes.args([
        "demo",
        "--nodes-only",
        "--modern",
        "--nodes",
        "2",
        "--node-port",
        "18081",
        "--node-ip",
        NODES,
    ]);
    net.spawn(nodes, "nodes.log");
    let cert = casfront::demo::self_signed().unwrap();
    std::fs::write(dir.join("cert.pem"), &cert.cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &cert.key_pem).unwrap();
    std::fs::write(dir.join("route.key"), format!("{}\n", "5a".repeat(32))).unwrap();
    let config = format!(
        "[listen]\nhttps = \"0.0.0.0:8443\"\n[tls]\ncert = \"{d}/cert.pem\"\nkey = \"{d}/key.pem\"\n\
         [log]\naccess = false\n{limits}\
         [[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n[pool.health]\ninterval = \"500ms\"\n\
         [pool.route_cookie]\nkey_file = \"{d}/route.key\"\n\
         [[pool.node]]\nname = \"cas1\"\nurl = \"http://{NODES}:18081\"\n\
         [[pool.node]]\nname = \"cas2\"\nurl = \"http://{NODES}:18082\"\n",
        d = dir.display(),
        limits = support::NO_RATE_LIMIT,
    );
    std::fs::write(dir.join("casfront.toml"), config).unwrap();
    let ready = |net: &Net, host: &str| {
        net.exec(host, "curl")
            .args(["-fs", "-o", "/dev/null", "http://127.0.0.1:9901/ready"])
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut fronts = Vec::new();
    for host in ["fa", "fb"] {
        let mut c = net.exec(host, casfront);
        c.arg("run").arg("-c").arg(dir.join("casfront.toml"));
        net.spawn(c, &format!("casfront-{host}.log"));
        fronts.push(net.children.len() - 1);
    }
    for host in ["fa", "fb"] {
        wait_until(&format!("{host} ready"), Duration::from_secs(20), || {
            ready(&net, host)
        });
    }

    // keepalived as shipped, but for this network and address, fb backup.
    let shipped = include_str!("../deploy/keepalived/keepalived.conf");
    for (host, state, priority) in [("fa", "MASTER", "150"), ("fb", "BACKUP", "100")] {
        let conf = shipped
            .replace("state MASTER", &format!("state {state}"))
            .replace("priority 150", &format!("priority {priority}"))
            .replace("192.0.2.10/24", &format!("{VIP}/24"))
            .replace(
                "router_id casfront-a",
                &format!("router_id casfront-{host}"),
            );
        let path = dir.join(format!("keepalived-{host}.conf"));
        std::fs::write(&path, conf).unwrap();
        let mut k = net.exec(host, "/usr/sbin/keepalived");
        k.args(["-n", "-l", "-D", "-f"]).arg(&path);
        for (flag, file) in [("-p", "main"), ("-r", "vrrp"), ("-c", "checkers")] {
            k.arg(flag).arg(dir.join(format!("{host}-{file}.pid")));
        }
        net.spawn(k, &format!("keepalived-{host}.log"));
    }
    wait_until("fa holds the address", Duration::from_secs(20), || {
        net.holds_vip("fa") && !net.holds_vip("fb")
    });

    // A login through the address.
    let form = net.get(&format!("/cas/login?service={SERVICE}"), None);
    assert!(form.starts_with("http/2 200"), "{form}");
    let body = format!("username=alice&password=alice&service={SERVICE}");
    let login = net.get("/cas/login", Some(&body));
    assert!(login.starts_with("http/2 302"), "{login}");
    let node_of = |head: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix("x-cas-node: "))
            .map(|n| n.trim().to_owned())
            .unwrap_or_else(|| panic!("{head}"))
    };
    let issuer = node_of(&login);
    assert!(login.contains("set-cookie: casfront_route="), "{login}");

    // fa's casfront stops: its /ready fails, the address moves to fb.
    let fa = fronts[0];
    let _ = Command::new("kill")
        .args(["-TERM", &net.children[fa].id().to_string()])
        .status();
    wait_until("the address moves to fb", Duration::from_secs(20), || {
        net.holds_vip("fb") && !net.holds_vip("fa")
    });
    // Single sign-on through the address: fb's casfront routes the TGT to
    // the node that issued it.
    let sso = net.get(&format!("/cas/login?service={SERVICE}"), None);
    assert!(sso.starts_with("http/2 302"), "{sso}");
    assert!(
        sso.contains("location: https://app.example.edu/?ticket=st-"),
        "{sso}"
    );
    assert_eq!(node_of(&sso), issuer);
}
