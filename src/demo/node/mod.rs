//! A small CAS-like node for the demo, the integration tests and the bench
//! harness. Like a CAS node without a shared ticket registry, it knows only
//! the tickets it issued: a ticket validated on another node fails (unless
//! its cluster forwards or replicates them: [`cluster`]).
//!
//! - `GET  {prefix}/login`: with a valid `CASTGC` of this node and a
//!   `service`, 302 to the service with a new ST; else the login form, with
//!   a `JSESSIONID=<id>.<jvmRoute>` session (the login web flow's state).
//! - `POST {prefix}/login`: needs this node's session (cookie or
//!   `;jsessionid=`), as vanilla CAS does (any session in a forwarding or
//!   replicating cluster); `username` = `password` logs in,
//!   sets `CASTGC` (a TGT id ending in the node's suffix) and, with a
//!   `service`, 302 to it with an ST.
//! - `{prefix}/validate` (CAS 1.0), `/serviceValidate`, `/p3/serviceValidate`
//!   (STs), `/proxyValidate`, `/p3/proxyValidate` (STs and PTs): success only
//!   for this node's unexpired tickets, each ST or PT valid once. With
//!   `pgtUrl`, a PGT is issued; instead of calling the pgtUrl back (the demo
//!   makes no outbound calls) its id comes in the `X-Demo-Pgt` header.
//! - `{prefix}/proxy?pgt=...&targetService=...`: a PT.
//!
//! - `GET {prefix}/logout`: the TGT forgotten and its cookie expired.
//! - Modern mode ([`modern`]): an opaque signed `TGC` only this node
//!   accepts, REST tickets and an OAuth code exchange.
//!
//! - In a cluster ([`cluster`]): `POST`/`DELETE {prefix}/_replica` take a
//!   peer's replicated ticket or its deletion.
//!
//! Every response carries `X-Cas-Node: <name>`, and `X-Demo-Hops: <n>`
//! when serving it took node-to-node round trips.

pub mod cluster;
mod extras;
mod modern;
mod validate;

pub use extras::Generated;
use extras::{echo_headers, stream, upload};
use validate::{proxy, saml_validate, validate1, validate2};

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rand::distr::{Alphanumeric, SampleString};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use super::flows::Flows;

/// Who a demo node is.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub name: String,
    /// The end of its ticket ids (`cas.host.name`).
    pub suffix: String,
    /// Appended to session ids as Tomcat does (`<id>.<jvmRoute>`); empty
    /// for none.
    pub jvm_route: String,
    /// The CAS context path, e.g. `/cas`.
    pub prefix: String,
    /// Serve https with this configuration (tests of upstream TLS).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// CAS 4.1+ as a cluster without shared keys sees it ([`modern`]).
    pub modern: bool,
    /// How it shares tickets with the other nodes ([`cluster`]); `None`:
    /// it does not (as `local`, with no peering).
    pub cluster: Option<Arc<cluster::Peering>>,
    /// How long a TGT or PGT lives (8 hours, as CAS's default).
    pub tgt_lifetime: Duration,
}

impl NodeSpec {
    /// A node whose suffix and jvmRoute are its name.
    pub fn named(name: &str) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            suffix: name.into(),
            jvm_route: name.into(),
            prefix: "/cas".into(),
            tls: None,
            modern: false,
            cluster: None,
            tgt_lifetime: TGT_LIFETIME,
        }
    }

    /// A modern-mode node (CAS 4.1 to 7.x): an opaque `TGC` only it
    /// accepts, no jvmRoute, ticket ids ending in its name when `suffix`.
    pub fn modern(name: &str, suffix: bool) -> NodeSpec {
        NodeSpec {
            suffix: if suffix { name.into() } else { String::new() },
            jvm_route: String::new(),
            modern: true,
            ..NodeSpec::named(name)
        }
    }
}

const ST_LIFETIME: Duration = Duration::from_secs(10);
const TGT_LIFETIME: Duration = Duration::from_secs(8 * 3600);
const MAX_FORM: usize = 16 * 1024;

#[derive(Clone, Debug)]
enum Kind {
    Tgt,
    St { service: String },
    Pgt,
    Pt { service: String },
}

#[derive(Clone, Debug)]
struct Ticket {
    kind: Kind,
    user: String,
    expires: Instant,
}

struct State {
    spec: NodeSpec,
    tickets: Mutex<HashMap<String, Ticket>>,
    sessions: Mutex<Flows>,
    serial: AtomicU64,
    heard: Heard,
    signer: modern::Signer,
}

/// The last requests a node received, as lines (tests of what reached it).
type Heard = Arc<Mutex<std::collections::VecDeque<String>>>;
const HEARD_KEPT: usize = 1000;

fn note(heard: &Heard, line: String) {
    let mut h = heard
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if h.len() == HEARD_KEPT {
        h.pop_front();
    }
    h.push_back(line);
}

/// Connections a node has accepted.
type Accepted = Arc<AtomicU64>;

/// A running demo node; dropping it (or [`RunningNode::stop`]) closes its
/// listener and every connection, as a crashed node would.
pub struct RunningNode {
    pub addr: SocketAddr,
    pub spec: NodeSpec,
    accepted: Accepted,
    heard: Heard,
    task: JoinHandle<()>,
}

impl RunningNode {
    /// How many connections the node has accepted so far.
    pub fn connections(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// The last 1000 requests the node received: `METHOD target` with
    /// their framing headers (`content-length`, `transfer-encoding`), and
    /// for `POST /upload` whether its body arrived whole.
    pub fn heard(&self) -> Vec<String> {
        let h = self
            .heard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        h.iter().cloned().collect()
    }

    /// Stops the node: when this returns, its port refuses connections and
    /// its open connections are closed.
    pub async fn stop(mut self) {
        self.task.abort();
        let task = &mut self.task;
        let _ = task.await;
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a node on `127.0.0.1:0` (HTTP/1.1 with keep-alive, over TLS
/// when the spec has a configuration).
pub async fn spawn(spec: NodeSpec) -> std::io::Result<RunningNode> {
    spawn_on(spec, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Starts a node on `addr`.
pub async fn spawn_on(spec: NodeSpec, addr: SocketAddr) -> std::io::Result<RunningNode> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(State {
        spec: spec.clone(),
        tickets: Mutex::new(HashMap::new()),
        sessions: Mutex::new(Flows::default()),
        serial: AtomicU64::new(1),
        heard: Heard::default(),
        signer: modern::Signer::new(),
    });
    let heard = state.heard.clone();
    let accepted = Accepted::default();
    let counter = accepted.clone();
    let tls = spec.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of file descriptors, an aborted connection: go on.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            let tls = tls.clone();
            conns.spawn(async move {
                let svc = service_fn(move |req| handle(state.clone(), req));
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    None => {
                        let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                    }
                    Some(tls) => {
                        if let Ok(stream) = tls.accept(stream).await {
                            let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                }
            });
            while conns.try_join_next().is_some() {}
        }
    });
    Ok(RunningNode {
        addr,
        spec,
        accepted,
        heard,
        task,
    })
}

/// A node's response body: whole, or generated while it is sent.
pub type NodeBody = http_body_util::Either<Full<Bytes>, Generated>;
type Resp = Response<NodeBody>;

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let framing = |name| {
        req.headers()
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(",")
    };
    let line = format!(
        "{} {} cl={} te={}",
        req.method(),
        req.uri(),
        framing(header::CONTENT_LENGTH),
        framing(header::TRANSFER_ENCODING)
    );
    note(&state.heard, line);
    let (mut resp, hops) = cluster::serving(&state, route(&state, req)).await;
    if hops > 0 {
        let before = cluster::hops_of(resp.headers());
        cluster::set_hops(&mut resp, before + hops);
    }
    if let Ok(v) = header::HeaderValue::from_str(&state.spec.name) {
        resp.headers_mut().insert("x-cas-node", v);
    }
    Ok(resp)
}

async fn route(state: &State, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_owned();
    let Some(rel) = path.strip_prefix(state.spec.prefix.as_str()) else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    // Path parameters (`;jsessionid=`) are not part of the endpoint, nor
    // is a trailing slash (Spring maps `/login/` as `/login`); `%6C` is
    // `l`, as Tomcat decodes it.
    let mut endpoint: String = rel
        .split('/')
        .map(|s| s.split(';').next().unwrap_or(""))
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect::<Vec<_>>()
        .join("/");
    if endpoint.len() > 1 && endpoint.ends_with('/') {
        endpoint.pop();
    }
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let q = |k: &str| query.get(k).cloned().unwrap_or_default();
    // The ticket a request names, for a cluster that forwards it.
    let ticket = match endpoint.as_str() {
        "/validate"
        | "/serviceValidate"
        | "/p3/serviceValidate"
        | "/proxyValidate"
        | "/p3/proxyValidate" => Some(q("ticket")),
        "/proxy" => Some(q("pgt")),
        "/login" if req.method() == Method::GET => modern::tgt_of(state, &req),
        _ => None,
    };
    let req = match cluster::intercept(state, &endpoint, ticket.as_deref(), req).await {
        Ok(resp) => return resp,
        Err(req) => req,
    };
    match (req.method().clone(), endpoint.as_str()) {
        (Method::GET | Method::HEAD, "/login") => login_form(state, &req, &q("service")),
        (Method::POST, "/login") => login_post(state, req).await,
        (Method::GET | Method::HEAD, "/validate") => validate1(state, &q("ticket"), &q("service")),
        (Method::GET | Method::HEAD, "/serviceValidate" | "/p3/serviceValidate") => {
            validate2(state, &q("ticket"), &q("service"), &q("pgtUrl"), false)
        }
        (Method::GET | Method::HEAD, "/proxyValidate" | "/p3/proxyValidate") => {
            validate2(state, &q("ticket"), &q("service"), &q("pgtUrl"), true)
        }
        (Method::GET | Method::HEAD, "/proxy") => proxy(state, &q("pgt"), &q("targetService")),
        (Method::POST, "/samlValidate") => saml_validate(state, req, &q("TARGET")).await,
        // Not CAS: for streaming, shutdown and header tests, and benchmarks.
        (Method::GET, "/stream") => stream(q("bytes").parse().unwrap_or(0)),
        (Method::POST, "/upload") => upload(state, req).await,
        (Method::GET, "/slow") => {
            let ms = q("ms").parse().unwrap_or(0u64).min(60_000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            text(StatusCode::OK, "slow\n")
        }
        (Method::GET | Method::POST, "/headers") => echo_headers(req).await,
        (Method::GET, "/logout") => modern::logout(state, &req),
        (_, "/v1/tickets") if state.spec.modern => modern::rest(state, req, None).await,
        (Method::POST, "/v1/users") if state.spec.modern => modern::users(req).await,
        (_, e) if state.spec.modern && e.starts_with("/v1/tickets/") => {
            let tgt = e.trim_start_matches("/v1/tickets/").to_owned();
            modern::rest(state, req, Some(&tgt)).await
        }
        (Method::GET, "/oauth2.0/authorize") if state.spec.modern => {
            modern::authorize(state, &req, &q("redirect_uri"))
        }
        (Method::POST, "/oauth2.0/accessToken") if state.spec.modern => {
            modern::access_token(state, req).await
        }
        (Method::GET | Method::HEAD, "" | "/") => redirect(&format!("{}/login", state.spec.prefix)),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn login_form(state: &State, req: &Request<Incoming>, service: &str) -> Resp {
    if let Some(tgt) = modern::tgt_of(state, req) {
        if let Some(t) = state.valid(&tgt, |k| matches!(k, Kind::Tgt)) {
            if !service.is_empty() {
                let st = state.issue(
                    "ST",
                    Kind::St {
                        service: service.into(),
                    },
                    &t.user,
                );
                return redirect(&with_ticket(service, &st));
            }
            return text(StatusCode::OK, &format!("logged in as {}\n", t.user));
        }
    }
    let mut session = Alphanumeric.sample_string(&mut rand::rng(), 24);
    if !state.spec.jvm_route.is_empty() {
        session.push('.');
        session.push_str(&state.spec.jvm_route);
    }
    lock(&state.sessions).insert(session.clone());
    let body = format!(
        "<!DOCTYPE html><title>CAS demo: {name}</title><form method=post action=\"{prefix}/login\">\
         <input name=username><input name=password type=password>\
         <input type=hidden name=service value=\"{service}\"><button>Log in</button></form>\n",
        name = state.spec.name,
        prefix = state.spec.prefix,
        service = service.replace('"', "&quot;").replace('<', "&lt;"),
    );
    let mut resp = html(StatusCode::OK, body);
    set_cookie(
        &mut resp,
        &format!("JSESSIONID={session}; Path={}; HttpOnly", state.spec.prefix),
    );
    resp
}

async fn login_post(state: &State, req: Request<Incoming>) -> Resp {
    let session = cookie(&req, "JSESSIONID").or_else(|| path_session(req.uri().path()));
    let known = session
        .as_ref()
        .is_some_and(|s| lock(&state.sessions).remove(s))
        || state
            .spec
            .cluster
            .as_ref()
            .is_some_and(|p| p.strategy != cluster::Strategy::Local);
    let Ok(body) = Limited::new(req.into_body(), MAX_FORM).collect().await else {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "form too large\n");
    };
    if !known {
        // What CAS answers when the POST reaches a node without the flow.
        return text(
            StatusCode::BAD_REQUEST,
            "login session expired or unknown on this node\n",
        );
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body.to_bytes())
        .into_owned()
        .collect();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let user = field("username");
    if user.is_empty() || user != field("password") {
        return text(StatusCode::UNAUTHORIZED, "bad credentials\n");
    }
    let tgt = state.issue("TGT", Kind::Tgt, user);
    let service = field("service");
    let mut resp = if service.is_empty() {
        text(StatusCode::OK, &format!("logged in as {user}\n"))
    } else {
        let st = state.issue(
            "ST",
            Kind::St {
                service: service.into(),
            },
            user,
        );
        redirect(&with_ticket(service, &st))
    };
    set_cookie(&mut resp, &modern::tgt_set_cookie(state, &tgt));
    resp
}

impl State {
    /// A new ticket id `PREFIX-N-RANDOM-SUFFIX`; the random part may contain
    /// `-`, as CAS 5.2+ ids do.
    fn issue(&self, prefix: &str, kind: Kind, user: &str) -> String {
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        let random = Alphanumeric.sample_string(&mut rand::rng(), 30);
        let mut id = format!("{prefix}-{n}-{}-{}", &random[..12], &random[12..]);
        if !self.spec.suffix.is_empty() {
            id.push('-');
            id.push_str(&self.spec.suffix);
        }
        let lifetime = if matches!(kind, Kind::St { .. } | Kind::Pt { .. }) {
            ST_LIFETIME
        } else {
            self.spec.tgt_lifetime
        };
        let now = Instant::now();
        let ticket = Ticket {
            kind,
            user: user.into(),
            expires: now + lifetime,
        };
        cluster::issued(&id, &ticket);
        let mut tickets = lock(&self.tickets);
        // Expired tickets go now and then (a benchmark issues millions).
        if n % 8192 == 0 {
            tickets.retain(|_, t| t.expires > now);
        }
        tickets.insert(id.clone(), ticket);
        id
    }

    fn valid(&self, id: &str, kind: impl Fn(&Kind) -> bool) -> Option<Ticket> {
        let tickets = lock(&self.tickets);
        tickets
            .get(id)
            .filter(|t| kind(&t.kind) && t.expires > Instant::now())
            .cloned()
    }

    /// Consumes an ST (or, when `proxies`, a PT) issued for `service`.
    fn redeem(&self, id: &str, service: &str, proxies: bool) -> Option<Ticket> {
        let mut tickets = lock(&self.tickets);
        let t = tickets.remove(id)?;
        if matches!(t.kind, Kind::St { .. } | Kind::Pt { .. }) {
            cluster::deleted(id);
        }
        let ok = t.expires > Instant::now()
            && match &t.kind {
                Kind::St { service: s } => s == service,
                Kind::Pt { service: s } => proxies && s == service,
                _ => false,
            };
        if !ok && matches!(t.kind, Kind::Tgt | Kind::Pgt) {
            tickets.insert(id.into(), t); // not consumable here: keep it
            return None;
        }
        ok.then_some(t)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn cookie(req: &Request<Incoming>, name: &str) -> Option<String> {
    let headers: Vec<(&str, &[u8])> = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .map(|v| ("cookie", v.as_bytes()))
        .collect();
    crate::routing::parse::cookie(&headers[..], name.as_bytes())
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn path_session(path: &str) -> Option<String> {
    crate::routing::parse::path_param(path.as_bytes(), b"jsessionid")
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn with_ticket(service: &str, ticket: &str) -> String {
    let sep = if service.contains('?') { '&' } else { '?' };
    format!("{service}{sep}ticket={ticket}")
}

fn text(status: StatusCode, body: &str) -> Resp {
    respond(status, "text/plain; charset=utf-8", body.to_owned())
}

fn html(status: StatusCode, body: String) -> Resp {
    respond(status, "text/html; charset=utf-8", body)
}

fn xml(inner: String) -> Resp {
    let body = format!("<cas:serviceResponse xmlns:cas=\"http://www.yale.edu/tp/cas\">{inner}</cas:serviceResponse>\n");
    respond(StatusCode::OK, "application/xml; charset=utf-8", body)
}

fn redirect(location: &str) -> Resp {
    let mut resp = text(StatusCode::FOUND, "");
    if let Ok(v) = header::HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn set_cookie(resp: &mut Resp, value: &str) {
    if let Ok(v) = header::HeaderValue::from_str(value) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Resp {
    let mut resp = Response::new(http_body_util::Either::Left(Full::new(Bytes::from(body))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}
