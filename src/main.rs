//! The `casfront` command line (DESIGN §3): a thin layer over the library.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use casfront::config::{self, Config};
use casfront::explain::{self, parse_header};
use casfront::routing::{suffix::f5_md5, NodeState, RoutingTable};

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
        /// Path and query, e.g. '/cas/serviceValidate?service=x&ticket=ST-1-a-cas1'.
        target: String,
    },
    /// Print a node name as CAS would put it in ticket ids.
    Suffix {
        /// The F5-style name: lowercase hex MD5 of the dotted IPv4 address.
        #[arg(long, value_name = "IPV4")]
        f5: std::net::Ipv4Addr,
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
            if load(&config, false)?.is_none() {
                return Ok(ExitCode::from(1));
            }
            bail!(
                "{}: the configuration is valid, but serving is not built yet \
                 (the data plane is the next issue); use `casfront explain` to see routing",
                config.display()
            )
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
            target,
        } => {
            let Some(cfg) = load(&config, false)? else {
                return Ok(ExitCode::from(1));
            };
            let table = RoutingTable::new(&cfg);
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
            };
            let out = explain::explain(&table, &req)?;
            println!("{}", serde_json::to_string(&out)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Suffix { f5 } => {
            println!("{}", f5_md5(f5));
            Ok(ExitCode::SUCCESS)
        }
    }
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
        Some(c) if summary => println!(
            "{}: ok: {} pool(s), {} node(s), {warnings} warning(s)",
            path.display(),
            c.pools.len(),
            c.pools.iter().map(|p| p.nodes.len()).sum::<usize>()
        ),
        None => eprintln!(
            "{}: {errors} error(s), {warnings} warning(s)",
            path.display()
        ),
        Some(_) => {}
    }
    Ok(parsed.config)
}
