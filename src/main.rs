//! The `casfront` command line: a thin layer over the library (the
//! process's life is [`casfront::process`]).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::net::SocketAddr;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use casfront::config::{self, Config};
use casfront::explain::{self, parse_header};
use casfront::routing::suffix::{bigip_member, f5_md5};
use casfront::routing::{NodeState, RoutingTable};

#[derive(Parser)]
#[command(name = "casfront", version, about = "A CAS-aware TLS front end")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with a configuration file.
    Run {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate a configuration file: print every error and warning with its
    /// line and column; exit 1 if there is an error.
    Check {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Print the routing decision for one request as a JSON line.
    Explain {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        #[arg(long, default_value = "GET")]
        method: String,
        /// A request header, `Name: value` (repeatable).
        #[arg(long = "header", value_name = "HEADER")]
        headers: Vec<String>,
        /// The request body (for POST /samlValidate).
        #[arg(long)]
        body: Option<String>,
        /// Mark a node down (repeatable).
        #[arg(long, value_name = "NODE")]
        down: Vec<String>,
        /// Mark a node draining: keeps its tickets, takes no new logins.
        #[arg(long, value_name = "NODE")]
        draining: Vec<String>,
        /// Mark a node disabled by an operator.
        #[arg(long, value_name = "NODE")]
        disabled: Vec<String>,
        /// The counter that drives the `any` rule's round robin.
        #[arg(long, default_value_t = 0)]
        pick: u64,
        /// Assume the learned table maps this cookie value to NODE, as if
        /// NODE had set it (repeatable), e.g. `TGC=eyJhbGciOi...=cas2`.
        #[arg(long, value_name = "NAME=VALUE=NODE")]
        learned: Vec<String>,
        /// Path and query, e.g. '/cas/serviceValidate?service=x&ticket=ST-1-a-cas1'.
        target: String,
    },
    /// Start 3 demo CAS nodes and casfront in front of them on loopback,
    /// with a certificate generated at start; print what to try.
    Demo {
        /// Where casfront listens.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Start only the nodes, on consecutive ports from --node-port, for
        /// a front end run separately (benchmarks against other proxies).
        #[arg(long)]
        nodes_only: bool,
        /// The first node's port (0: any free port).
        #[arg(long, default_value_t = 0, value_name = "PORT")]
        node_port: u16,
        /// The address the nodes listen on with --nodes-only (e.g. a test
        /// network's, for front ends on other hosts).
        #[arg(long, default_value = "127.0.0.1", value_name = "IP")]
        node_ip: std::net::IpAddr,
        /// Nodes as CAS 4.1 to 7.x without shared keys: an opaque signed
        /// `TGC` only its node accepts, no jvmRoute, REST and OAuth.
        #[arg(long)]
        modern: bool,
    },
    /// Measure what ticket routing costs and saves: demo nodes, a front
    /// end and a load generator; prints a table (or JSON) per scenario.
    Bench(casfront::bench::BenchArgs),
    /// Print a node name as CAS would put it in ticket ids, or decode an
    /// F5 persistence cookie.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["f5", "bigip_cookie"])))]
    Suffix {
        /// The F5-style name: lowercase hex MD5 of the dotted IPv4 address.
        #[arg(long, value_name = "IPV4")]
        f5: Option<std::net::Ipv4Addr>,
        /// The pool member (IPv4:port) a `BIGipServer<pool>` cookie value
        /// names, as a pool's `bigip_cookie` reads it.
        #[arg(long, value_name = "VALUE")]
        bigip_cookie: Option<String>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("casfront: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { config } => {
            let ok = load(&config, true)?.is_some();
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Run { config } => {
            let Some(cfg) = load(&config, false)? else {
                return Ok(ExitCode::from(1));
            };
            // Taken before the runtime's threads start: it clears the
            // variables that handed them over.
            let inherited = casfront::upgrade::Inherited::from_env()
                .with_context(|| "the sockets handed over")?;
            let server = casfront::server::runtime::build(casfront::server::runtime::cores())?;
            server.block_on(casfront::process::serve(config, cfg, inherited))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            listen,
            nodes,
            nodes_only,
            node_port,
            node_ip,
            modern,
        } => {
            if nodes == 0 {
                bail!("--nodes must be at least 1");
            }
            if nodes_only {
                runtime()?.block_on(casfront::demo::run::nodes_only(
                    nodes, node_ip, node_port, modern,
                ))?;
            } else {
                runtime()?.block_on(casfront::demo::run::cluster(listen, nodes, modern))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain {
            config,
            method,
            headers,
            body,
            down,
            draining,
            disabled,
            pick,
            learned,
            target,
        } => {
            let Some(mut cfg) = load(&config, false)? else {
                return Ok(ExitCode::from(1));
            };
            // The nodes DNS gives now, as a running casfront would have.
            if cfg.pools.iter().any(|p| p.discovery.is_some()) {
                let overlay = runtime()?
                    .block_on(casfront::discovery::resolve_once(&cfg))
                    .map_err(anyhow::Error::msg)
                    .context("resolving [pool.discovery]")?;
                overlay.apply(&mut cfg);
                for (pool, node) in cfg.nodes().filter(|(_, n)| n.from_dns) {
                    eprintln!(
                        "pool {}: {} at {} (from DNS)",
                        pool.name,
                        node.name,
                        node.url.authority()
                    );
                }
            }
            let table = RoutingTable::new(&cfg.routing());
            let states = [
                (down, NodeState::Down),
                (draining, NodeState::Draining),
                (disabled, NodeState::Disabled),
            ]
            .into_iter()
            .flat_map(|(names, s)| names.into_iter().map(move |n| (n, s)))
            .collect();
            let req = explain::Request {
                method,
                target,
                headers: headers
                    .iter()
                    .map(|h| parse_header(h))
                    .collect::<Result<_, _>>()?,
                body,
                states,
                pick,
                learned: learned
                    .iter()
                    .map(|l| explain::parse_learned(l))
                    .collect::<Result<_, _>>()?,
            };
            let out = explain::explain(&table, &req)?;
            println!("{}", serde_json::to_string(&out)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            runtime()?.block_on(casfront::bench::run(&args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Suffix { f5, bigip_cookie } => {
            if let Some(ip) = f5 {
                println!("{}", f5_md5(ip));
            }
            if let Some(value) = bigip_cookie {
                let member = bigip_member(value.as_bytes()).with_context(|| {
                    format!("`{value}` is not an F5 IPv4 persistence cookie (ADDRESS.PORT.0000)")
                })?;
                println!("{member}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Loads and validates; prints diagnostics as `FILE:LINE:COL: ...` on
/// stderr. `Ok(None)` when the file has errors.
fn load(path: &Path, summary: bool) -> anyhow::Result<Option<Config>> {
    let parsed = config::load(path).with_context(|| "loading the configuration")?;
    for d in &parsed.diagnostics {
        eprintln!("{}:{d}", path.display());
    }
    let errors = parsed.errors().count();
    let warnings = parsed.warnings().count();
    match &parsed.config {
        Some(c) if summary => {
            println!(
                "{}: ok: {} pool(s), {} node(s), {warnings} warning(s)",
                path.display(),
                c.pools.len(),
                c.pools.iter().map(|p| p.nodes.len()).sum::<usize>()
            );
            for pool in &c.pools {
                if let Some(d) = &pool.discovery {
                    use casfront::config::discovery::Source;
                    let from = match &d.source {
                        Source::Srv(name) => format!("SRV {name}"),
                        Source::Hosts { name, port } => {
                            format!("the addresses of {name}, port {port}")
                        }
                    };
                    println!(
                        "pool {}: nodes from DNS ({from}, every {}s, gone nodes kept {}s), besides {} configured",
                        pool.name,
                        d.interval.as_secs_f64(),
                        d.grace.as_secs(),
                        pool.nodes.len()
                    );
                }
            }
            if c.uses_state_key() {
                let key = c.state.route_key();
                let now = if key.exists() {
                    "exists"
                } else {
                    "created at first start, mode 0600"
                };
                println!(
                    "route-cookie key: {} ({now}; state directory from {}); \
                     peer instances route alike when they hold a copy of this file",
                    key.display(),
                    c.state.from
                );
            }
        }
        None => eprintln!(
            "{}: {errors} error(s), {warnings} warning(s)",
            path.display()
        ),
        Some(_) => {}
    }
    Ok(parsed.config)
}
