//! The bench harness's results: one [`Outcome`] per scenario with what
//! theory predicts next to what was measured, as a text table or JSON;
//! and [`Watch`], the CPU time and memory of another process.

use std::time::Duration;

use serde::Serialize;

use super::load::{Tally, Workload};
use super::{BenchArgs, Scenario};
use crate::demo::node::cluster::Strategy;

/// The front end of a scenario.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Front {
    /// casfront in process; `ticket_routing` off is round robin.
    Casfront { ticket_routing: bool },
    /// The load goes straight to one node.
    Direct,
    /// Any front end, by URL.
    Target(String),
}

/// Requests per login that name a ticket (the POST names none): the ST's
/// validation, `/proxy` with the PGT, the PT's validation, single sign-on
/// with the TGT cookie, the second ST's validation.
const TICKET_REQUESTS: f64 = 5.0;
/// Tickets a login issues (TGT, ST, PGT, PT, ST) plus the one-time ones it
/// uses up (ST, PT, ST): each a synchronous replication round trip.
const REPLICATIONS: f64 = 8.0;

/// Share of validations the issuing node answers, in theory.
pub fn predicted_affinity(front: &Front, nodes: usize) -> Option<f64> {
    match front {
        Front::Direct
        | Front::Casfront {
            ticket_routing: true,
        } => Some(1.0),
        Front::Casfront {
            ticket_routing: false,
        } => Some(1.0 / nodes as f64),
        Front::Target(_) => None,
    }
}

/// Node-to-node round trips per login, in theory: forwarding takes one per
/// ticket request that reaches another node ((N-1)/N of them in round
/// robin, none behind casfront); replication one per ticket issued and one
/// per ST or PT used up (two per service ticket), whatever the front end.
pub fn predicted_hops(front: &Front, strategy: Strategy, nodes: usize) -> Option<f64> {
    let n = nodes as f64;
    match (front, strategy) {
        (Front::Direct, _) | (_, Strategy::Local) => Some(0.0),
        (_, _) if nodes < 2 => Some(0.0),
        (_, Strategy::Replicate) => Some(REPLICATIONS),
        (
            Front::Casfront {
                ticket_routing: true,
            },
            Strategy::Forward,
        ) => Some(0.0),
        (
            Front::Casfront {
                ticket_routing: false,
            },
            Strategy::Forward,
        ) => Some(TICKET_REQUESTS * (n - 1.0) / n),
        (Front::Target(_), Strategy::Forward) => None,
    }
}

/// One scenario's results.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub scenario: String,
    pub front: Front,
    pub strategy: Strategy,
    pub nodes: usize,
    pub workload: &'static str,
    pub users: usize,
    pub seconds: f64,
    pub requests: u64,
    pub requests_per_s: f64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub logins: u64,
    pub logins_per_s: f64,
    /// Share of validations answered by the issuing node (`None`: no
    /// response named its node).
    pub affinity: Option<f64>,
    pub affinity_predicted: Option<f64>,
    pub hops_per_login: Option<f64>,
    pub hops_predicted: Option<f64>,
    /// The watched process: CPU milliseconds per 1000 requests, resident MiB.
    pub cpu_ms_per_1k: Option<f64>,
    pub rss_mib: Option<f64>,
    /// With --idle: connections held open, and the watched process's
    /// resident memory they added, KiB each.
    pub idle_connections: Option<usize>,
    pub rss_per_connection_kib: Option<f64>,
    /// With --handshakes --resume: the share of handshakes that resumed.
    pub resumed: Option<f64>,
    /// The first distinct errors.
    pub error_samples: Vec<String>,
}

impl Outcome {
    pub fn new(
        s: &Scenario,
        args: &BenchArgs,
        work: Option<&Workload>,
        measured: Duration,
        t: Tally,
        cpu: Option<Duration>,
        rss_mib: Option<f64>,
    ) -> Outcome {
        let secs = measured.as_secs_f64();
        let q = |p: f64| t.latency.value_at_quantile(p) as f64 / 1000.0;
        let flow = matches!(work, Some(Workload::Flow));
        Outcome {
            scenario: s.label(),
            front: s.front.clone(),
            strategy: s.strategy,
            nodes: s.nodes,
            workload: match work {
                Some(Workload::Flow) => "login-flow",
                Some(Workload::Mix(_)) => "mix",
                Some(Workload::Handshakes { resume: false }) => "handshakes",
                Some(Workload::Handshakes { resume: true }) => "resume",
                None => "idle",
            },
            users: args.users,
            seconds: secs,
            requests: t.requests,
            requests_per_s: t.requests as f64 / secs,
            errors: t.errors,
            p50_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            logins: t.logins,
            logins_per_s: t.logins as f64 / secs,
            affinity: (t.validations > 0).then(|| t.on_issuer as f64 / t.validations as f64),
            affinity_predicted: flow
                .then(|| predicted_affinity(&s.front, s.nodes))
                .flatten(),
            hops_per_login: (t.logins > 0).then(|| t.hops as f64 / t.logins as f64),
            hops_predicted: flow
                .then(|| predicted_hops(&s.front, s.strategy, s.nodes))
                .flatten(),
            cpu_ms_per_1k: cpu
                .filter(|_| t.requests > 0)
                .map(|c| c.as_secs_f64() * 1e6 / t.requests as f64),
            rss_mib,
            idle_connections: None,
            rss_per_connection_kib: None,
            resumed: (t.handshakes > 0).then(|| t.resumed as f64 / t.handshakes as f64),
            error_samples: t.samples,
        }
    }

    /// `wanted` connections held for `hold`, `opened` of them answered
    /// (the others are errors); the watched process's resident memory
    /// before they opened and while they were held.
    pub fn idle(
        s: &Scenario,
        args: &BenchArgs,
        hold: Duration,
        wanted: usize,
        opened: usize,
        (before, held): (Option<f64>, Option<f64>),
    ) -> Outcome {
        let mut o = Outcome::new(s, args, None, hold, Tally::new(), None, held);
        o.requests = wanted as u64;
        o.errors = wanted.saturating_sub(opened) as u64;
        o.idle_connections = Some(opened);
        o.rss_per_connection_kib = (before.zip(held))
            .filter(|_| opened > 0)
            .map(|(b, h)| (h - b) * 1024.0 / opened as f64);
        o
    }
}

/// The CPU time and memory of a process, from /proc (Linux).
pub struct Watch(u32);

impl Watch {
    pub fn new(pid: u32) -> Watch {
        Watch(pid)
    }

    /// User plus system time so far, all its threads.
    pub fn cpu(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0)).ok()?;
        // After the command's closing parenthesis: state is field 3, utime 14.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        // In USER_HZ, which Linux fixes at 100 for /proc on every
        // architecture it runs on.
        Some(Duration::from_millis(ticks * 10))
    }

    /// Resident memory (VmRSS), MiB.
    pub fn rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

/// The text table, one line per scenario.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    let any_cpu = outcomes
        .iter()
        .any(|o| o.cpu_ms_per_1k.is_some() || o.rss_mib.is_some());
    s.push_str(&format!(
        "{:<22} {:>2} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8} {:>15} {:>15}",
        "scenario",
        "N",
        "req/s",
        "p50 ms",
        "p90",
        "p99",
        "p99.9",
        "errors",
        "logins/s",
        "affinity (pred)",
        "hops/login (pred)"
    ));
    if any_cpu {
        s.push_str(&format!(" {:>10} {:>8}", "cpu ms/1k", "rss MiB"));
    }
    s.push('\n');
    for o in outcomes {
        let pct = |v: f64| format!("{:.0}%", v * 100.0);
        let err = if o.requests > 0 {
            format!("{:.1}%", o.errors as f64 * 100.0 / o.requests as f64)
        } else {
            "-".into()
        };
        s.push_str(&format!(
            "{:<22} {:>2} {:>9.0} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7} {:>8.0} {:>15} {:>15}",
            o.scenario,
            o.nodes,
            o.requests_per_s,
            o.p50_ms,
            o.p90_ms,
            o.p99_ms,
            o.p999_ms,
            err,
            o.logins_per_s,
            format!(
                "{} ({})",
                opt(o.affinity, pct),
                opt(o.affinity_predicted, pct)
            ),
            format!(
                "{} ({})",
                opt(o.hops_per_login, |v| format!("{v:.2}")),
                opt(o.hops_predicted, |v| format!("{v:.2}"))
            ),
        ));
        if any_cpu {
            s.push_str(&format!(
                " {:>10} {:>8}",
                opt(o.cpu_ms_per_1k, |v| format!("{v:.1}")),
                opt(o.rss_mib, |v| format!("{v:.1}"))
            ));
        }
        if let Some(n) = o.idle_connections {
            s.push_str(&format!("  ({n} idle connections"));
            if let Some(kib) = o.rss_per_connection_kib {
                s.push_str(&format!(", {kib:.1} KiB each"));
            }
            s.push(')');
        }
        if let Some(r) = o.resumed {
            s.push_str(&format!("  ({:.1}% resumed)", r * 100.0));
        }
        s.push('\n');
    }
    for o in outcomes.iter().filter(|o| !o.error_samples.is_empty()) {
        s.push_str(&format!(
            "errors of {} (N={}): {}\n",
            o.scenario,
            o.nodes,
            o.error_samples.join("; ")
        ));
    }
    s
}

/// The outcomes as one JSON document.
pub fn json(outcomes: &[Outcome]) -> String {
    serde_json::to_string_pretty(&serde_json::json!({ "scenarios": outcomes }))
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_follow_the_write_up() {
        let rr = Front::Casfront {
            ticket_routing: false,
        };
        let cf = Front::Casfront {
            ticket_routing: true,
        };
        for n in 2..=8 {
            assert_eq!(predicted_affinity(&rr, n), Some(1.0 / n as f64));
            assert_eq!(predicted_affinity(&cf, n), Some(1.0));
            // Forwarding: (N-1)/N of the ticket requests, one hop each.
            let per_ticket = predicted_hops(&rr, Strategy::Forward, n).unwrap() / TICKET_REQUESTS;
            assert!((per_ticket - (n as f64 - 1.0) / n as f64).abs() < 1e-9);
            assert_eq!(predicted_hops(&cf, Strategy::Forward, n), Some(0.0));
            assert_eq!(predicted_hops(&cf, Strategy::Local, n), Some(0.0));
            assert_eq!(predicted_hops(&rr, Strategy::Replicate, n), Some(8.0));
        }
        assert_eq!(predicted_affinity(&Front::Target("x".into()), 3), None);
    }
}
