//! `casfront demo`: the demo cluster run until Ctrl-C, with the curl lines
//! that walk through a login, or the demo nodes alone (for a front end run
//! separately, as the benchmarks do).

use std::net::SocketAddr;

use anyhow::Context;

use super::Cluster;

/// Runs the demo cluster until Ctrl-C.
pub async fn cluster(listen: SocketAddr, nodes: usize, modern: bool) -> anyhow::Result<()> {
    // Files the printed curl lines use, removed at the end.
    let dir = std::env::temp_dir();
    let file = |name: &str| dir.join(format!("casfront-demo-{}-{name}", std::process::id()));
    let (ca, client_ca, client_cert, client_key) = (
        file("ca.pem"),
        file("client-ca.pem"),
        file("alice.pem"),
        file("alice.key"),
    );
    let client = super::client_pki().context("generating the demo client certificate")?;
    let write = |path: &std::path::Path, text: &str| {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    };
    write(&client_ca, &client.ca_pem)?;
    write(&client_cert, &client.cert_pem)?;
    write(&client_key, &client.key_pem)?;
    let spec = |name: String| match modern {
        true => super::node::NodeSpec::modern(&name, true),
        false => super::node::NodeSpec::named(&name),
    };
    let specs = (1..=nodes).map(|i| spec(format!("cas{i}"))).collect();
    // Client certificates are asked for, not required: curl without one
    // is served as before.
    let trust = format!(
        "key = \"generated\"\nclient_auth = \"optional\"\nclient_ca = {:?}\n",
        client_ca.display().to_string()
    );
    let cluster = Cluster::start_with(specs, listen, |c| {
        c.replacen("key = \"generated\"\n", &trust, 1)
    })
    .await
    .with_context(|| format!("starting the demo on {listen} (try --listen 127.0.0.1:0)"))?;
    let _checks = cluster.start_checks().await;
    write(&ca, &cluster.cert_pem)?;
    let port = cluster.addr.port();
    println!(
        "casfront demo: {nodes} CAS nodes (cas1..cas{nodes}) behind https://localhost:{port}/cas"
    );
    for n in &cluster.nodes {
        println!("  {} on http://{}", n.spec.name, n.addr);
    }
    if modern {
        println!(
            "\nModern mode: each node signs its TGC with a key of its own and sets JSESSIONID \
             without a jvmRoute; casfront routes both by what it learned from the nodes' Set-Cookie."
        );
    }
    println!(
        "\nTry (every response names its node in X-Cas-Node; the demo accepts password = user name):\n\n\
         CA={ca}; B=https://localhost:{port}/cas; S='https%3A%2F%2Fapp.example.edu%2F'; J=$(mktemp)\n\
         # 1. the login form, from any node; its JSESSIONID carries the node's jvmRoute\n\
         curl -s --cacert $CA -c $J -D - -o /dev/null \"$B/login?service=$S\" | grep -i x-cas-node\n\
         # 2. the POST follows the session to the same node, which issues a TGT cookie and an ST\n\
         ST=$(curl -s --cacert $CA -b $J -c $J -d \"username=alice&password=alice&service=$S\" -D - -o /dev/null \"$B/login\" \\\n\
         \x20    | sed -n 's/^location:.*ticket=\\([^&[:space:]]*\\).*/\\1/Ip'); echo \"$ST\"\n\
         # 3. the application validates the ST: routed by its suffix to the node that issued it\n\
         curl -s --cacert $CA -D - \"$B/serviceValidate?service=$S&ticket=$ST\" | grep -iE 'x-cas-node|cas:user'\n\
         # 4. single sign-on with the TGT cookie: routed by the cookie to the same node\n\
         curl -s --cacert $CA -b $J -D - -o /dev/null \"$B/login?service=$S\" | grep -iE 'x-cas-node|location'\n\
         # 5. an X.509 client certificate (a smart card's): what the node is told of it\n\
         curl -s --cacert $CA --cert {cert} --key {key} \"$B/headers\" | grep -i ssl_client\n\
         \nCtrl-C stops the demo.",
        ca = ca.display(),
        cert = client_cert.display(),
        key = client_key.display(),
    );
    tokio::signal::ctrl_c().await?;
    for f in [&ca, &client_ca, &client_cert, &client_key] {
        let _ = std::fs::remove_file(f);
    }
    Ok(())
}

/// Runs demo nodes only (`casN` on consecutive ports) until Ctrl-C.
pub async fn nodes_only(
    n: usize,
    ip: std::net::IpAddr,
    first_port: u16,
    modern: bool,
) -> anyhow::Result<()> {
    let mut running = Vec::with_capacity(n);
    for i in 0..n {
        let port = match first_port {
            0 => 0,
            p => u16::try_from(i)
                .ok()
                .and_then(|i| p.checked_add(i))
                .context("--node-port + --nodes passes 65535")?,
        };
        let name = format!("cas{}", i + 1);
        let spec = match modern {
            true => super::node::NodeSpec::modern(&name, true),
            false => super::node::NodeSpec::named(&name),
        };
        let node = super::node::spawn_on(spec, SocketAddr::new(ip, port))
            .await
            .with_context(|| format!("starting a demo node on port {port}"))?;
        println!("{} on http://{}", node.spec.name, node.addr);
        running.push(node);
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}
