//! How demo nodes share tickets: the three cluster strategies of the
//! reference write-up, which `casfront bench` measures.
//!
//! - [`Strategy::Local`]: a ticket lives only on the node that issued it; a
//!   validation that reaches another node fails, and so does a login POST
//!   whose web flow another node started.
//! - [`Strategy::Forward`]: a node that receives a GET naming another
//!   node's ticket (a validation's ST or PT, `/proxy`'s PGT, the login
//!   page's TGT cookie) sends it to that node, as CushyFrontEndFilter does,
//!   and answers with its response: one node-to-node round trip, never two
//!   (a forwarded request is not forwarded again).
//! - [`Strategy::Replicate`]: every ticket is sent to every other node when
//!   it is issued, and a one-time ticket (ST, PT) deleted everywhere when it
//!   is used, each synchronously (a replicated ticket registry): one round
//!   trip per operation, two per service ticket.
//!
//! With `Forward` and `Replicate` a login POST is taken by any node (the
//! web flow's state travels with the form, as CAS 5+ keeps it when its
//! nodes share keys). Every response tells how many node-to-node round
//! trips serving it took in `X-Demo-Hops`; each waits the configured
//! latency first ([`DelayLine`], finer than tokio's millisecond timer).

use std::cell::RefCell;
use std::collections::BinaryHeap;
use std::sync::OnceLock;

use hyper::client::conn::http1::SendRequest;
use tokio::sync::oneshot;

use super::*;

/// How the nodes of a demo cluster share tickets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    Local,
    Forward,
    Replicate,
}

impl Strategy {
    pub const ALL: [Strategy; 3] = [Strategy::Local, Strategy::Forward, Strategy::Replicate];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Local => "local",
            Strategy::Forward => "forward",
            Strategy::Replicate => "replicate",
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Strategy::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown strategy `{s}` (local, forward or replicate)"))
    }
}

/// One cluster's peering, shared by all its nodes: the strategy, the
/// node-to-node latency and, once every node listens, where they are.
pub struct Peering {
    pub strategy: Strategy,
    pub latency: Duration,
    peers: OnceLock<Vec<Arc<Peer>>>,
    delay: DelayLine,
}

impl std::fmt::Debug for Peering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peering")
            .field("strategy", &self.strategy)
            .field("latency", &self.latency)
            .finish_non_exhaustive()
    }
}

struct Peer {
    name: String,
    suffix: String,
    addr: SocketAddr,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl Peering {
    pub fn new(strategy: Strategy, latency: Duration) -> Arc<Peering> {
        Arc::new(Peering {
            strategy,
            latency,
            peers: OnceLock::new(),
            delay: DelayLine::start(),
        })
    }

    /// Tells every node where the others are (once; later calls are
    /// ignored): call it when all of them listen.
    pub fn connect(&self, nodes: &[RunningNode]) {
        let peers = nodes
            .iter()
            .map(|n| {
                Arc::new(Peer {
                    name: n.spec.name.clone(),
                    suffix: n.spec.suffix.clone(),
                    addr: n.addr,
                    idle: Mutex::new(Vec::new()),
                })
            })
            .collect();
        let _ = self.peers.set(peers);
    }

    fn others<'a>(&'a self, me: &'a str) -> impl Iterator<Item = &'a Arc<Peer>> {
        self.peers
            .get()
            .into_iter()
            .flatten()
            .filter(move |p| p.name != me)
    }

    /// The peer (not `me`) whose suffix ends `ticket`.
    fn owner(&self, me: &str, ticket: &str) -> Option<&Arc<Peer>> {
        let (_, end) = ticket.rsplit_once('-')?;
        self.peers
            .get()?
            .iter()
            .find(|p| p.name != me && !p.suffix.is_empty() && p.suffix == end)
    }

    /// One round trip to `peer`: the latency, then the request (5 s at
    /// most).
    async fn call(&self, peer: &Peer, req: Request<Full<Bytes>>) -> Option<Response<Bytes>> {
        self.delay.wait(self.latency).await;
        tokio::time::timeout(Duration::from_secs(5), self.exchange(peer, req))
            .await
            .ok()
            .flatten()
    }

    async fn exchange(&self, peer: &Peer, req: Request<Full<Bytes>>) -> Option<Response<Bytes>> {
        let mut sender = loop {
            let Some(mut s) = lock(&peer.idle).pop() else {
                break connect(peer.addr).await?;
            };
            if s.ready().await.is_ok() {
                break s;
            }
        };
        let resp = sender.send_request(req).await.ok()?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.ok()?.to_bytes();
        lock(&peer.idle).push(sender);
        Some(Response::from_parts(parts, body))
    }
}

async fn connect(addr: SocketAddr) -> Option<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    http1(stream).await.ok()
}

/// An HTTP/1.1 client connection over `io`, driven by a task of its own
/// (node-to-node calls and the bench's load generator).
pub async fn http1<I>(io: I) -> std::io::Result<SendRequest<Full<Bytes>>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    Ok(sender)
}

/// What a node did to its tickets while serving one request, for
/// [`Strategy::Replicate`] to repeat on the others.
enum Op {
    Add(String, Ticket),
    Delete(String),
}

tokio::task_local! {
    static OPS: RefCell<Vec<Op>>;
}

/// Runs `serve` for one request and then replicates the ticket operations
/// it made, one round trip each; returns its response and the round trips.
pub(super) async fn serving(
    state: &State,
    serve: impl std::future::Future<Output = Resp>,
) -> (Resp, u32) {
    let Some(peering) = state.spec.cluster.as_ref() else {
        return (serve.await, 0);
    };
    if peering.strategy != Strategy::Replicate || peering.others(&state.spec.name).next().is_none()
    {
        return (serve.await, 0);
    }
    let (resp, ops) = OPS
        .scope(RefCell::new(Vec::new()), async {
            let resp = serve.await;
            (resp, OPS.with(RefCell::take))
        })
        .await;
    let mut hops = 0;
    for op in ops {
        let body = match &op {
            Op::Add(id, t) => encode(id, t),
            Op::Delete(id) => id.clone(),
        };
        let method = if matches!(op, Op::Add(..)) {
            Method::POST
        } else {
            Method::DELETE
        };
        let path = format!("{}/_replica", state.spec.prefix);
        let mut calls = JoinSet::new();
        for peer in peering.others(&state.spec.name) {
            let Ok(req) = Request::builder()
                .method(method.clone())
                .uri(path.as_str())
                .header(header::HOST, peer.addr.to_string())
                .body(Full::new(Bytes::from(body.clone())))
            else {
                continue;
            };
            let (peering, peer) = (peering.clone(), peer.clone());
            calls.spawn(async move { peering.call(&peer, req).await });
        }
        while calls.join_next().await.is_some() {}
        hops += 1;
    }
    (resp, hops)
}

/// Notes an issued ticket for replication (outside [`serving`]: nothing).
pub(super) fn issued(id: &str, t: &Ticket) {
    let _ = OPS.try_with(|ops| ops.borrow_mut().push(Op::Add(id.into(), t.clone())));
}

/// Notes a one-time ticket used up.
pub(super) fn deleted(id: &str) {
    let _ = OPS.try_with(|ops| ops.borrow_mut().push(Op::Delete(id.into())));
}

fn encode(id: &str, t: &Ticket) -> String {
    let (kind, service) = match &t.kind {
        Kind::Tgt => ("TGT", ""),
        Kind::Pgt => ("PGT", ""),
        Kind::St { service } => ("ST", service.as_str()),
        Kind::Pt { service } => ("PT", service.as_str()),
    };
    let left = t
        .expires
        .saturating_duration_since(Instant::now())
        .as_millis();
    format!("{id}\n{kind}\n{}\n{left}\n{service}", t.user)
}

fn decode(body: &str) -> Option<(String, Ticket)> {
    let mut f = body.splitn(5, '\n');
    let (id, kind, user, left) = (f.next()?, f.next()?, f.next()?, f.next()?);
    let service = f.next().unwrap_or("").to_owned();
    let kind = match kind {
        "TGT" => Kind::Tgt,
        "PGT" => Kind::Pgt,
        "ST" => Kind::St { service },
        "PT" => Kind::Pt { service },
        _ => return None,
    };
    let expires = Instant::now().checked_add(Duration::from_millis(left.parse().ok()?))?;
    Some((
        id.into(),
        Ticket {
            kind,
            user: user.into(),
            expires,
        },
    ))
}

/// The peering's own requests and, with [`Strategy::Forward`], requests
/// naming another node's ticket: answered here, or `Err(req)` to serve.
pub(super) async fn intercept(
    state: &State,
    endpoint: &str,
    ticket: Option<&str>,
    req: Request<Incoming>,
) -> Result<Resp, Request<Incoming>> {
    let Some(peering) = state.spec.cluster.as_deref() else {
        return Err(req);
    };
    if endpoint == "/_replica" {
        let method = req.method().clone();
        let Ok(body) = Limited::new(req.into_body(), MAX_FORM).collect().await else {
            return Ok(text(StatusCode::PAYLOAD_TOO_LARGE, "too large\n"));
        };
        let body = String::from_utf8_lossy(&body.to_bytes()).into_owned();
        let mut tickets = lock(&state.tickets);
        match (method, decode(&body)) {
            (Method::POST, Some((id, t))) => {
                tickets.insert(id, t);
            }
            (Method::DELETE, _) => {
                tickets.remove(body.as_str());
            }
            _ => return Ok(text(StatusCode::BAD_REQUEST, "bad replica\n")),
        }
        return Ok(text(StatusCode::NO_CONTENT, ""));
    }
    if peering.strategy != Strategy::Forward {
        return Err(req);
    }
    let Some(ticket) = ticket else {
        return Err(req);
    };
    let Some(owner) = peering.owner(&state.spec.name, ticket) else {
        return Err(req);
    };
    // Never a second time: two nodes with one suffix must not ping-pong.
    if lock(&state.tickets).contains_key(ticket) || req.headers().contains_key(FORWARDED) {
        return Err(req);
    }
    // Forward as received: method, target, cookies.
    let mut out = Request::builder()
        .method(req.method().clone())
        .uri(req.uri().clone())
        .header(header::HOST, owner.addr.to_string())
        .header(FORWARDED, state.spec.name.as_str());
    for v in req.headers().get_all(header::COOKIE) {
        out = out.header(header::COOKIE, v.clone());
    }
    let Ok(body) = Limited::new(req.into_body(), MAX_FORM).collect().await else {
        return Ok(text(StatusCode::PAYLOAD_TOO_LARGE, "too large\n"));
    };
    let Ok(out) = out.body(Full::new(body.to_bytes())) else {
        return Ok(text(StatusCode::BAD_REQUEST, "cannot forward\n"));
    };
    let Some(answer) = peering.call(owner, out).await else {
        return Ok(text(
            StatusCode::BAD_GATEWAY,
            "the ticket's node did not answer\n",
        ));
    };
    let (parts, body) = answer.into_parts();
    let hops = 1 + hops_of(&parts.headers);
    let mut resp = Response::from_parts(parts, http_body_util::Either::Left(Full::new(body)));
    set_hops(&mut resp, hops);
    Ok(resp)
}

/// Marks a request one node forwarded to another.
const FORWARDED: &str = "x-demo-forwarded-by";

/// The round trips a response says it took.
pub fn hops_of(headers: &header::HeaderMap) -> u32 {
    headers
        .get("x-demo-hops")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0)
}

pub(super) fn set_hops(resp: &mut Resp, hops: u32) {
    resp.headers_mut()
        .insert("x-demo-hops", header::HeaderValue::from(hops));
}

/// Wakes waiters after a delay, on a thread of its own: tokio's timer
/// rounds up to milliseconds, while node-to-node latencies are fractions
/// of one.
struct DelayLine(std::sync::mpsc::Sender<(Instant, oneshot::Sender<()>)>);

/// A pending wake-up, earliest first.
struct Due(Instant, u64, oneshot::Sender<()>);

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        (self.0, self.1) == (o.0, o.1)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.0, o.1).cmp(&(self.0, self.1))
    }
}

impl DelayLine {
    fn start() -> DelayLine {
        let (tx, rx) = std::sync::mpsc::channel::<(Instant, oneshot::Sender<()>)>();
        std::thread::Builder::new()
            .name("demo-latency".into())
            .spawn(move || {
                let mut heap = BinaryHeap::new();
                let mut seq = 0u64;
                loop {
                    let now = Instant::now();
                    while heap.peek().is_some_and(|d: &Due| d.0 <= now) {
                        if let Some(Due(_, _, wake)) = heap.pop() {
                            let _ = wake.send(());
                        }
                    }
                    let next = match heap.peek() {
                        Some(d) => rx.recv_timeout(d.0.saturating_duration_since(now)),
                        None => rx
                            .recv()
                            .map_err(|_| std::sync::mpsc::RecvTimeoutError::Disconnected),
                    };
                    match next {
                        Ok((at, wake)) => {
                            seq += 1;
                            heap.push(Due(at, seq, wake));
                        }
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .ok();
        DelayLine(tx)
    }

    async fn wait(&self, d: Duration) {
        if d.is_zero() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        if self.0.send((Instant::now() + d, tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_travel_whole() {
        let t = Ticket {
            kind: Kind::St {
                service: "https://app/?a=b\nc".into(),
            },
            user: "alice".into(),
            expires: Instant::now() + Duration::from_secs(10),
        };
        let (id, back) = decode(&encode("ST-1-a-cas1", &t)).unwrap();
        assert_eq!(id, "ST-1-a-cas1");
        assert_eq!(back.user, "alice");
        assert!(matches!(back.kind, Kind::St { service } if service == "https://app/?a=b\nc"));
        assert!(back.expires > Instant::now() + Duration::from_secs(9));
        assert!(decode("x\nXX\nu\n1\n").is_none());
    }

    #[tokio::test]
    async fn the_delay_line_waits_a_fraction_of_a_millisecond() {
        let line = DelayLine::start();
        let mut spent = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            line.wait(Duration::from_micros(300)).await;
            spent.push(t.elapsed());
        }
        spent.sort();
        assert!(spent[0] >= Duration::from_micros(300), "{spent:?}");
        // Not rounded up to tokio's millisecond (the median, on a busy machine).
        assert!(spent[25] < Duration::from_micros(950), "{spent:?}");
    }
}
