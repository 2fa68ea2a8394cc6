//! `casfront explain`: routes one request described on the command line and
//! renders the decision as one JSON line `{"pool","node","rule","note"}`,
//! the note saying which extractor entry decided and why earlier ones fell
//! through. Credentials in the note are redacted.

use serde::Serialize;

use crate::routing::redact::redact;
use crate::routing::{
    route, value_of, Cause, Decision, Headers, How, Learned, Method, NodeId, NodeState, PoolId,
    RequestView, RoutingTable, Source, ENTRIES,
};

/// A request as `explain` takes it.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub method: String,
    /// Path and query, e.g. `/cas/serviceValidate?ticket=ST-1-a-cas1`.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    /// Node names and the state to give them (others are healthy).
    pub states: Vec<(String, NodeState)>,
    /// Drives the `any` rule's round robin.
    pub pick: u64,
    /// Learned cookies to assume: cookie name, value, node name.
    pub learned: Vec<(String, String, String)>,
}

/// The JSON line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explained {
    pub pool: Option<String>,
    pub node: Option<String>,
    pub rule: Option<&'static str>,
    pub note: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExplainError {
    #[error("unknown node `{0}`")]
    UnknownNode(String),
    #[error("header `{0}` is not `Name: value`")]
    BadHeader(String),
    #[error("the target `{0}` must be an origin-form path starting with `/`")]
    BadTarget(String),
    #[error("learned cookie `{0}` is not `NAME=VALUE=NODE`")]
    BadLearned(String),
}

/// Parses a `NAME=VALUE=NODE` learned cookie argument (the value may hold
/// `=`: the name ends at the first, the node starts after the last).
pub fn parse_learned(arg: &str) -> Result<(String, String, String), ExplainError> {
    let bad = || ExplainError::BadLearned(arg.to_owned());
    let (name, rest) = arg.split_once('=').ok_or_else(bad)?;
    let (value, node) = rest.rsplit_once('=').ok_or_else(bad)?;
    if name.is_empty() || value.is_empty() || node.is_empty() {
        return Err(bad());
    }
    Ok((name.to_owned(), value.to_owned(), node.to_owned()))
}

/// The learned cookies `explain` is told to assume.
struct Given<'t> {
    table: &'t RoutingTable,
    entries: Vec<(&'t [u8], &'t [u8], NodeId)>,
}

impl Learned for Given<'_> {
    fn lookup(&self, pool: PoolId, cookie: &[u8], value: &[u8]) -> Option<NodeId> {
        self.entries
            .iter()
            .find(|(c, v, n)| {
                *c == cookie
                    && *v == value
                    && self.table.node(*n).is_some_and(|info| info.pool == pool)
            })
            .map(|e| e.2)
    }
}

/// Parses a `Name: value` header argument.
pub fn parse_header(arg: &str) -> Result<(String, String), ExplainError> {
    match arg.split_once(':') {
        Some((n, v)) if !n.trim().is_empty() && !n.contains(char::is_whitespace) => {
            Ok((n.to_owned(), v.trim().to_owned()))
        }
        _ => Err(ExplainError::BadHeader(arg.to_owned())),
    }
}

/// Routes `req` through `table` and explains the decision.
pub fn explain(table: &RoutingTable, req: &Request) -> Result<Explained, ExplainError> {
    if !req.target.starts_with('/') {
        return Err(ExplainError::BadTarget(req.target.clone()));
    }
    let mut states = vec![NodeState::Healthy; table.nodes().len()];
    for (name, state) in &req.states {
        let id = table
            .node_by_name(name)
            .ok_or_else(|| ExplainError::UnknownNode(name.clone()))?;
        states[usize::from(id)] = *state;
    }
    let headers: Vec<(&str, &str)> = req
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let method = Method::from_bytes(req.method.to_ascii_uppercase().as_bytes());
    let mut view = RequestView::new(method, req.target.as_bytes(), &headers[..]);
    if let Some(body) = &req.body {
        view = view.with_body(body.as_bytes());
    }
    let mut given = Given {
        table,
        entries: Vec::with_capacity(req.learned.len()),
    };
    for (cookie, value, node) in &req.learned {
        let id = table
            .node_by_name(node)
            .ok_or_else(|| ExplainError::UnknownNode(node.clone()))?;
        given
            .entries
            .push((cookie.as_bytes(), value.as_bytes(), id));
    }
    let d = route(table, &view, &states[..], &given, req.pick);
    Ok(Explained {
        pool: d.pool.and_then(|p| table.pool(p)).map(|p| p.name.clone()),
        node: d.node.and_then(|n| table.node(n)).map(|n| n.name.clone()),
        rule: d.rule.map(|r| r.as_str()),
        note: note(table, &d, &states, &view),
    })
}

fn note<H: Headers + ?Sized>(
    table: &RoutingTable,
    d: &Decision<'_>,
    states: &[NodeState],
    view: &RequestView<'_, H>,
) -> String {
    let Some(pool) = d.pool.and_then(|p| table.pool(p)) else {
        return format!(
            "no pool's path_prefix matches {}",
            String::from_utf8_lossy(view.path)
        );
    };
    let node_name = |n| table.node(n).map_or("?", |n| n.name.as_str());
    let mut parts: Vec<String> = d
        .falls
        .iter()
        .map(|f| {
            let entry = &ENTRIES[usize::from(f.entry)];
            let (name, value) = value_of(entry.source, pool, view, usize::from(f.cookie));
            let what = match (value, f.cause) {
                (None, _) if entry.source == Source::TgcCookie => {
                    let names: Vec<String> = pool
                        .tgc_cookies
                        .iter()
                        .map(|c| String::from_utf8_lossy(c).into_owned())
                        .collect();
                    format!("no {} cookie", names.join(" or "))
                }
                (None, _) | (Some(b""), _) => format!("no {}", String::from_utf8_lossy(name)),
                (Some(v), Cause::Unusable(n)) => format!(
                    "{}={} owned by {} which is {}",
                    String::from_utf8_lossy(name),
                    redact(v, Some(pool)),
                    node_name(n),
                    states[usize::from(n)].as_str()
                ),
                (Some(v), cause) => format!(
                    "{}={}: {}",
                    String::from_utf8_lossy(name),
                    redact(v, Some(pool)),
                    cause.as_str()
                ),
            };
            format!("{}: {what}", entry.name)
        })
        .collect();
    if d.falls.dropped() > 0 {
        parts.push(format!("{} more fell through", d.falls.dropped()));
    }
    let last = match (d.entry, d.node, d.how) {
        (Some(e), Some(n), Some(how)) => format!(
            "{}: {}={} -> {} by {}",
            ENTRIES[usize::from(e)].name,
            String::from_utf8_lossy(d.name),
            d.value.map(|v| redact(v, Some(pool))).unwrap_or_default(),
            node_name(n),
            how.as_str()
        ),
        (_, Some(n), Some(How::Backup)) => {
            format!("any: no primary usable, backup {}", node_name(n))
        }
        (_, Some(n), _) => format!("any: round robin -> {}", node_name(n)),
        _ => "any: no usable node in the pool".to_owned(),
    };
    parts.push(last);
    parts.join("; ")
}
