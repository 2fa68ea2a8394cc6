//! The route step: the routing core's decision for the request, and a
//! connection to the node it names; when no connection to that node can
//! be made (nothing was sent, so any method may go elsewhere), the node is
//! marked down and the request routed again without it.

use std::sync::Arc;

use http::{HeaderMap, Request};

use super::answer::{self, Fault, Stop};
use super::Disposition;
use crate::generation::Generation;
use crate::health::HealthTable;
use crate::routing::cert::CertIdentity;
use crate::routing::{
    route, Decision, Headers, Method, NodeId, NodeState, NodeStates, PoolId, RequestView,
};
use crate::upstream::body::RequestBody;
use crate::upstream::{Conn, NodePool, UpstreamError};

/// The request headers as the routing core reads them.
struct HeaderView<'a>(&'a HeaderMap);

impl Headers for HeaderView<'_> {
    fn values<'s>(&'s self, lowercase_name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.0.get_all(lowercase_name).iter().map(|v| v.as_bytes())
    }
}

/// What the route step needs of the request besides its head.
pub(super) struct Routed<'a> {
    pub method: Method,
    /// The path as the node's servlet container maps it.
    pub mapped: &'a str,
    /// The body prefix, and whether the body goes on past it.
    pub body: Option<(&'a [u8], bool)>,
    pub cert: Option<&'a CertIdentity>,
}

/// Routes `req` and takes a connection to the chosen node (`fresh`: a
/// new one, not a pooled one); routes again without a node whose
/// connection failed, at most once per node of the pool: a node whose
/// cool-down ends while the others are tried must not make this loop
/// forever. `out` gets the last decision; fall-throughs are counted once
/// per request.
pub(super) async fn connect<'g>(
    generation: &'g Generation,
    req: &Request<RequestBody>,
    routed: &Routed<'_>,
    fresh: bool,
    out: &mut Disposition,
) -> Result<(PoolId, NodeId, &'g Arc<NodePool>, Conn), Stop> {
    let mut failed = 0usize;
    loop {
        let (pool_id, node) = {
            let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let headers = HeaderView(req.headers());
            let mut view = RequestView::new(routed.method, target.as_bytes(), &headers)
                .with_cert(routed.cert)
                .with_mapped_path(routed.mapped.as_bytes());
            if let Some((body, cut)) = routed.body {
                view = view.with_body(body).cut(cut);
            }
            // The counter moves only when `any` picks: advancing it on
            // every request would alias with the requests of a login.
            let d = decide(generation, &view, generation.pick());
            if d.entry.is_none() {
                generation.picked();
            }
            if failed == 0 && !fresh {
                if let Some(p) = d.pool {
                    generation.handles().falls(p, &d.falls);
                }
            }
            *out = Disposition {
                pool: d.pool,
                node: d.node,
                rule: d.rule,
                entry: d.entry,
                how: d.how,
                cause: d.falls.iter().next().map(|f| f.cause),
                answered: false,
            };
            let tried_all = |p| failed >= generation.table().pool(p).map_or(0, |p| p.nodes.len());
            match (d.pool, d.node) {
                (None, _) => return Err(Stop::NoService),
                (Some(p), Some(_)) if tried_all(p) => {
                    out.node = None;
                    return Err(Stop::NoNode);
                }
                (Some(_), None) => return Err(Stop::NoNode),
                (Some(p), Some(n)) => (p, n),
            }
        };
        let Some(pool) = generation.pool(node) else {
            return Err(Stop::Internal);
        };
        match pool.checkout(fresh).await {
            Ok(conn) => return Ok((pool_id, node, pool, conn)),
            Err(UpstreamError::Busy(_)) => return Err(Stop::Node(node, Fault::Queue)),
            Err(_) => {
                answer::fault(generation, node, Fault::Connect);
                failed += 1;
            }
        }
    }
}

/// The routing decision. Under `max_connections`, a full node counts as
/// draining: it keeps its tickets and sessions, and the `any` rule passes
/// it by; only when every node is full (or down) does a request for any
/// node go to one to wait there.
fn decide<'r, H: Headers + ?Sized>(
    generation: &'r Generation,
    view: &RequestView<'r, H>,
    pick: u64,
) -> Decision<'r> {
    let (table, health, learned) = (
        generation.table(),
        &**generation.health(),
        generation.learned(),
    );
    if generation.capped() {
        let full = Capacity {
            health,
            pools: generation.pools(),
        };
        let d = route(table, view, &full, learned, pick);
        if d.node.is_some() || d.pool.is_none() {
            return d;
        }
    }
    route(table, view, health, learned, pick)
}

/// Node states with full nodes (at `max_connections`, nothing idle) as
/// draining.
struct Capacity<'a> {
    health: &'a HealthTable,
    pools: &'a [Arc<NodePool>],
}

impl NodeStates for Capacity<'_> {
    fn state(&self, node: NodeId) -> NodeState {
        match self.health.state(node) {
            NodeState::Healthy if self.pools.get(usize::from(node)).is_some_and(|p| p.full()) => {
                NodeState::Draining
            }
            s => s,
        }
    }
}
