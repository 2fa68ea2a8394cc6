//! `casfront bench`: what ticket routing costs and saves. Starts demo CAS
//! nodes sharing tickets by a cluster [`Strategy`], a front end (casfront
//! with its rules, casfront in round robin, none, or any `--target`) and
//! the load generator ([`load`]), runs each scenario for a bounded time
//! and reports ([`report`]) throughput, latency, errors, affinity and
//! node-to-node hops against what theory predicts.

pub mod chart;
pub mod idle;
pub mod load;
pub mod mix;
pub mod report;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rustls::pki_types::ServerName;

use crate::demo::node::cluster::{Peering, Strategy};
use crate::demo::node::{self, NodeSpec, RunningNode};
use crate::demo::Cluster;
use load::{Tally, Target, Workload};
use report::{Front, Outcome};

/// The front end a scenario measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// casfront with its routing rules.
    Affinity,
    /// casfront with `ticket_routing = false`: each request to the next node.
    RoundRobin,
    /// No front end: one node, plain HTTP (the floor).
    Direct,
}

#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    /// CAS nodes: a number, or a range such as 2..8 (each N is a scenario).
    #[arg(long, default_value = "3", value_parser = node_range)]
    pub nodes: (usize, usize),
    /// Front ends to measure (comma-separated). Default: direct,
    /// round-robin and affinity.
    #[arg(long, value_delimiter = ',')]
    pub mode: Vec<Mode>,
    /// How the nodes share tickets (comma-separated): local, forward,
    /// replicate. Default: all three for round-robin, local for affinity.
    #[arg(long, value_delimiter = ',')]
    pub strategy: Vec<Strategy>,
    /// Round-trip time added to every node-to-node call.
    #[arg(long, default_value = "0.5ms", value_parser = humantime::parse_duration)]
    pub hop_latency: Duration,
    /// Measured time per scenario.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Load before measuring, per scenario.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// The whole run's bound: scenarios are shortened to fit it.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    pub max_time: Duration,
    /// Concurrent virtual users (each a browser and an application
    /// connection).
    #[arg(long, default_value_t = 32)]
    pub users: usize,
    /// Aim the workload at this front end (https://host:port/cas) instead;
    /// the demo nodes still start (see --node-port) unless --no-nodes.
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// PEM file of the CA that signs --target's certificate (default: the
    /// system's store).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// With --target: the first demo node's port (cas1; the others follow).
    #[arg(long, default_value_t = 0, value_name = "PORT")]
    pub node_port: u16,
    /// With --target: start no nodes (the target has its own).
    #[arg(long)]
    pub no_nodes: bool,
    /// Replay this request mix instead of logging in (see bench::mix).
    #[arg(long, value_name = "FILE")]
    pub mix: Option<PathBuf>,
    /// A new connection, with a full TLS handshake, for every request.
    #[arg(long)]
    pub handshakes: bool,
    /// With --handshakes: each new connection offers a session ticket of
    /// an earlier one (the share that resumed is reported).
    #[arg(long, requires = "handshakes")]
    pub resume: bool,
    /// Offer only the classic key exchanges (X25519, P-256), as clients
    /// without post-quantum key exchange do; by default the client offers
    /// X25519MLKEM768 first, as current browsers do.
    #[arg(long)]
    pub classic_kx: bool,
    /// Instead of load: open this many connections (one request each),
    /// hold them for --warmup plus --duration, report the watched
    /// process's memory while they are open, and what each added to it.
    #[arg(long, value_name = "N")]
    pub idle: Option<usize>,
    /// With --idle: the connections are HTTP/2 (ALPN h2), as browsers
    /// hold theirs.
    #[arg(long, requires = "idle")]
    pub h2: bool,
    /// Report this process's CPU time per request and its resident memory
    /// (the front end under --target).
    #[arg(long, value_name = "PID")]
    pub watch_pid: Option<u32>,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also draw throughput and p99 latency per scenario and N here.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

fn node_range(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("`{s}` is not a node count (1 to 16) or range (2..8)");
    let (a, b) = match s.split_once("..").or_else(|| s.split_once('-')) {
        Some((a, b)) => (a.trim().parse(), b.trim().parse()),
        None => (s.trim().parse(), s.trim().parse()),
    };
    let (a, b): (usize, usize) = (a.map_err(|_| bad())?, b.map_err(|_| bad())?);
    if a == 0 || b < a || b > 16 {
        return Err(bad());
    }
    Ok((a, b))
}

/// One measured combination.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub front: Front,
    pub strategy: Strategy,
    pub nodes: usize,
}

impl BenchArgs {
    /// The scenarios this run measures, in order.
    pub fn scenarios(&self) -> Vec<Scenario> {
        let (lo, hi) = self.nodes;
        if let Some(url) = &self.target {
            let strategy = self.strategy.first().copied().unwrap_or(Strategy::Local);
            return (lo..=hi)
                .map(|nodes| Scenario {
                    front: Front::Target(url.clone()),
                    strategy,
                    nodes,
                })
                .collect();
        }
        let modes = if self.mode.is_empty() {
            vec![Mode::Direct, Mode::RoundRobin, Mode::Affinity]
        } else {
            self.mode.clone()
        };
        let mut out = Vec::new();
        for mode in modes {
            let strategies = match (mode, self.strategy.is_empty()) {
                (Mode::Direct, _) => {
                    out.push(Scenario {
                        front: Front::Direct,
                        strategy: Strategy::Local,
                        nodes: 1,
                    });
                    continue;
                }
                (Mode::RoundRobin, true) => Strategy::ALL.to_vec(),
                (Mode::Affinity, true) => vec![Strategy::Local],
                (_, false) => self.strategy.clone(),
            };
            for nodes in lo.max(2)..=hi.max(2) {
                for &strategy in &strategies {
                    out.push(Scenario {
                        front: Front::Casfront {
                            ticket_routing: mode == Mode::Affinity,
                        },
                        strategy,
                        nodes,
                    });
                }
            }
        }
        out
    }

    /// Every handshake full: no session resumption on the client.
    fn fresh_handshakes(&self) -> bool {
        self.handshakes && !self.resume
    }

    fn workload(&self) -> anyhow::Result<Workload> {
        if let Some(path) = &self.mix {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let mix = mix::parse(&text).map_err(|e| anyhow::anyhow!("{}:{e}", path.display()))?;
            return Ok(Workload::Mix(Arc::new(mix)));
        }
        Ok(if self.handshakes {
            Workload::Handshakes {
                resume: self.resume,
            }
        } else {
            Workload::Flow
        })
    }
}

/// Runs every scenario and prints the report; the outcomes are returned.
pub async fn run(args: &BenchArgs) -> anyhow::Result<Vec<Outcome>> {
    let scenarios = args.scenarios();
    if args.target.is_none() && (args.ca.is_some() || args.no_nodes || args.node_port != 0) {
        bail!("--ca, --no-nodes and --node-port go with --target");
    }
    if args.target.is_some() && args.strategy.len() > 1 {
        bail!("--target measures one --strategy at a time");
    }
    if (args.handshakes || args.idle.is_some()) && args.mode.contains(&Mode::Direct) {
        bail!("--handshakes and --idle measure TLS: not with --mode direct (plain HTTP)");
    }
    let work = args.workload()?;
    // Bounded: shorten the scenarios to fit --max-time.
    let each = args.max_time.as_secs_f64() / scenarios.len().max(1) as f64;
    let mut measure = args.duration;
    if args.warmup.as_secs_f64() + measure.as_secs_f64() > each {
        measure = Duration::from_secs_f64((each - args.warmup.as_secs_f64()).max(0.5));
        eprintln!(
            "{} scenarios in --max-time {}: {:.1}s measured each",
            scenarios.len(),
            humantime::format_duration(args.max_time),
            measure.as_secs_f64()
        );
    }
    let total = scenarios.len() as f64 * (args.warmup + measure).as_secs_f64();
    let bar = indicatif::ProgressBar::new((total * 10.0) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut outcomes = Vec::new();
    for s in &scenarios {
        bar.set_message(s.label());
        outcomes.push(scenario(args, s, &work, measure, &bar).await?);
    }
    bar.finish_and_clear();
    if args.json {
        println!("{}", report::json(&outcomes));
    } else {
        print!("{}", report::table(&outcomes));
    }
    if let Some(path) = &args.svg {
        chart::draw(path, &outcomes)?;
        eprintln!("chart: {}", path.display());
    }
    Ok(outcomes)
}

/// What a scenario runs against, kept alive while it runs.
struct Setup {
    target: Target,
    nodes: Vec<RunningNode>,
    _cluster: Option<Cluster>,
}

impl Setup {
    /// Stops the nodes: their ports are free when this returns (the next
    /// scenario may listen on them again).
    async fn stop(self) {
        for n in self.nodes {
            n.stop().await;
        }
    }
}

async fn setup(args: &BenchArgs, s: &Scenario) -> anyhow::Result<Setup> {
    let peering = (s.nodes > 1).then(|| Peering::new(s.strategy, args.hop_latency));
    let specs: Vec<NodeSpec> = (1..=s.nodes)
        .map(|i| NodeSpec {
            cluster: peering.clone(),
            // The run is short: tickets need not outlive it by hours.
            tgt_lifetime: Duration::from_secs(120),
            ..NodeSpec::named(&format!("cas{i}"))
        })
        .collect();
    match &s.front {
        Front::Direct => {
            let spec = specs.into_iter().next().context("no node")?;
            let n = node::spawn(spec).await?;
            let target = Target {
                addr: n.addr,
                authority: n.addr.to_string(),
                prefix: "/cas".into(),
                tls: None,
            };
            Ok(Setup {
                target,
                nodes: vec![n],
                _cluster: None,
            })
        }
        Front::Casfront { ticket_routing } => {
            let any = SocketAddr::from(([127, 0, 0, 1], 0));
            let routing = *ticket_routing;
            let cluster = Cluster::start_with(specs, any, |c| {
                let c = if routing {
                    c
                } else {
                    c.replacen(
                        "path_prefix = \"/cas\"\n",
                        "path_prefix = \"/cas\"\nticket_routing = false\n",
                        1,
                    )
                };
                // All the load comes from one address.
                format!(
                    "{c}[rate_limit]\nrequests_per_second = 0\nlogin_per_minute = 0\n\
                     [limits]\nmax_connections_per_ip = 100000\n"
                )
            })
            .await?;
            if let Some(p) = &peering {
                p.connect(&cluster.nodes);
            }
            let tls = client_tls(Some(&cluster.cert_pem), args)?;
            let target = Target {
                addr: cluster.addr,
                authority: format!("localhost:{}", cluster.addr.port()),
                prefix: "/cas".into(),
                tls: Some((tls, ServerName::try_from("localhost")?)),
            };
            Ok(Setup {
                target,
                nodes: Vec::new(),
                _cluster: Some(cluster),
            })
        }
        Front::Target(url) => {
            let mut nodes = Vec::new();
            if !args.no_nodes {
                for (i, spec) in specs.into_iter().enumerate() {
                    let port = match args.node_port {
                        0 => 0,
                        p => p.checked_add(i as u16).context("--node-port too high")?,
                    };
                    let at = SocketAddr::from(([127, 0, 0, 1], port));
                    nodes.push(
                        node::spawn_on(spec, at)
                            .await
                            .with_context(|| format!("a demo node on {at}"))?,
                    );
                }
                if let Some(p) = &peering {
                    p.connect(&nodes);
                }
            }
            let target = target_of(url, args).await?;
            Ok(Setup {
                target,
                nodes,
                _cluster: None,
            })
        }
    }
}

async fn target_of(url: &str, args: &BenchArgs) -> anyhow::Result<Target> {
    let u = url::Url::parse(url).with_context(|| format!("--target `{url}`"))?;
    let host = u.host_str().context("--target needs a host")?.to_owned();
    let port = u.port_or_known_default().context("--target needs a port")?;
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await?
        .next()
        .with_context(|| format!("{host} has no address"))?;
    let prefix = match u.path().trim_end_matches('/') {
        "" => "/cas".to_owned(),
        p => p.to_owned(),
    };
    let tls = match u.scheme() {
        "https" => {
            let config = client_tls(None, args)?;
            let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())?;
            Some((config, name))
        }
        "http" => None,
        other => bail!("--target scheme `{other}`: http or https"),
    };
    Ok(Target {
        addr,
        authority: u[url::Position::BeforeHost..url::Position::AfterPort].to_owned(),
        prefix,
        tls,
    })
}

/// A client configuration trusting `pem`, the CA file or the system's
/// store; HTTP/1.1; no session resumption if every handshake is to be
/// full; the key exchanges `args` asks for.
fn client_tls(pem: Option<&str>, args: &BenchArgs) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let ca = args.ca.as_deref();
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = match (pem, ca) {
        (Some(pem), _) => {
            CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<_, _>>()?
        }
        (None, Some(path)) => CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<_, _>>())
            .with_context(|| format!("reading {}", path.display()))?,
        (None, None) => rustls_native_certs::load_native_certs().certs,
    };
    roots.add_parsable_certificates(certs);
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if args.classic_kx {
        use rustls::crypto::aws_lc_rs::kx_group;
        provider.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1];
    }
    let mut config = crate::upstream::http1_client_with(roots, provider)?;
    if args.fresh_handshakes() {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

async fn scenario(
    args: &BenchArgs,
    s: &Scenario,
    work: &Workload,
    measure: Duration,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Outcome> {
    let setup = setup(args, s).await?;
    let target = Arc::new(setup.target.clone());
    let watch = args.watch_pid.map(report::Watch::new);
    if let Some(n) = args.idle {
        let hold = args.warmup + measure;
        let tick = ticker(bar, hold);
        let before = watch.as_ref().and_then(report::Watch::rss_mib);
        let (opened, rss) = idle::idle(target, n, args.h2, hold, || {
            watch.as_ref().map(report::Watch::rss_mib)
        })
        .await;
        tick.abort();
        setup.stop().await;
        let rss = (before, rss.flatten());
        return Ok(Outcome::idle(s, args, hold, n, opened, rss));
    }
    let from = Instant::now() + args.warmup;
    let end = from + measure;
    let mut users = tokio::task::JoinSet::new();
    for id in 0..args.users.max(1) {
        users.spawn(load::user(target.clone(), work.clone(), id, from, end));
    }
    let tick = ticker(bar, args.warmup + measure);
    tokio::time::sleep_until(from.into()).await;
    let cpu_before = watch.as_ref().and_then(report::Watch::cpu);
    tokio::time::sleep_until(end.into()).await;
    let cpu = watch
        .as_ref()
        .and_then(report::Watch::cpu)
        .zip(cpu_before)
        .map(|(a, b)| a.saturating_sub(b));
    let rss = watch.as_ref().and_then(report::Watch::rss_mib);
    let mut tally = Tally::new();
    while let Some(t) = users.join_next().await {
        tally.merge(t?);
    }
    tick.abort();
    setup.stop().await;
    Ok(Outcome::new(s, args, Some(work), measure, tally, cpu, rss))
}

/// Moves the bar along for `d`.
fn ticker(bar: &indicatif::ProgressBar, d: Duration) -> tokio::task::JoinHandle<()> {
    let bar = bar.clone();
    let steps = (d.as_secs_f64() * 10.0) as u64;
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(100));
        for _ in 0..steps {
            every.tick().await;
            bar.inc(1);
        }
    })
}

impl Scenario {
    pub fn label(&self) -> String {
        match &self.front {
            Front::Direct => "direct".into(),
            Front::Casfront {
                ticket_routing: true,
            } => format!("affinity/{}", self.strategy.name()),
            Front::Casfront {
                ticket_routing: false,
            } => {
                format!("round-robin/{}", self.strategy.name())
            }
            Front::Target(_) => format!("target/{}", self.strategy.name()),
        }
    }
}
