//! The bench harness's load generator: virtual users over HTTP/1.1
//! keep-alive (TLS or plain), each a browser and an application logging in
//! and validating in a loop ([`Workload::Flow`]), replaying a request mix,
//! doing full TLS handshakes, or holding idle connections. Each user
//! records into its own histogram; nothing is shared while it runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::mix::MixRequest;
use crate::demo::node::cluster::{hops_of, http1};

/// Where the load goes: `http(s)://host:port/prefix`.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// `Host`, e.g. `localhost:8443`.
    pub authority: String,
    /// The CAS context path, e.g. `/cas`.
    pub prefix: String,
    /// TLS (to this name) or plain HTTP.
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority, self.prefix)
    }
}

type Sender = SendRequest<Full<Bytes>>;

impl Target {
    /// A new connection (a full handshake when TLS has no resumption),
    /// and whether its handshake resumed a session.
    async fn connect(&self) -> std::io::Result<(Sender, bool)> {
        if self.tls.is_none() {
            return Ok((http1(self.tcp().await?).await?, false));
        }
        let (tls, resumed) = self.tls_stream().await?;
        Ok((http1(tls).await?, resumed))
    }

    async fn tcp(&self) -> std::io::Result<TcpStream> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        Ok(tcp)
    }

    /// A new TLS connection (an error for an http target), and whether
    /// its handshake resumed a session.
    pub(super) async fn tls_stream(
        &self,
    ) -> std::io::Result<(tokio_rustls::client::TlsStream<TcpStream>, bool)> {
        let Some((config, name)) = &self.tls else {
            return Err(std::io::Error::other("not an https target"));
        };
        let tcp = self.tcp().await?;
        let connector = tokio_rustls::TlsConnector::from(config.clone());
        let tls = connector.connect(name.clone(), tcp).await?;
        let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        Ok((tls, resumed))
    }

    /// The same target, its TLS client configured by `edit`.
    pub(super) fn with_client(&self, edit: impl FnOnce(&mut rustls::ClientConfig)) -> Target {
        let mut t = self.clone();
        if let Some((config, _)) = &mut t.tls {
            let mut own = (**config).clone();
            edit(&mut own);
            *config = Arc::new(own);
        }
        t
    }

    /// The same target for a client with a TLS session store of its own.
    fn with_own_sessions(&self) -> Target {
        self.with_client(|c| c.resumption = rustls::client::Resumption::in_memory_sessions(4))
    }
}

/// What the users do.
#[derive(Clone, Debug)]
pub enum Workload {
    /// The CAS login flow of [`flow`].
    Flow,
    /// These requests in turn, on one connection per user.
    Mix(Arc<Vec<MixRequest>>),
    /// A new connection (full TLS handshake) for every request; with
    /// `resume`, each user offers a session ticket from its own earlier
    /// connections (a client of its own, as a browser is).
    Handshakes { resume: bool },
}

/// What one user saw in the measured window.
pub struct Tally {
    pub latency: hdrhistogram::Histogram<u64>,
    pub requests: u64,
    pub errors: u64,
    pub logins: u64,
    /// Validations (ST and PT) whose response named the node answering.
    pub validations: u64,
    /// Those answered by the node whose suffix ends the ticket.
    pub on_issuer: u64,
    /// Node-to-node round trips (`X-Demo-Hops`) of completed logins.
    pub hops: u64,
    /// TLS handshakes made, and those that resumed a session.
    pub handshakes: u64,
    pub resumed: u64,
    /// The first few errors, described (never a whole ticket).
    pub samples: Vec<String>,
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            // 1 µs to 60 s, 3 significant digits: the bounds are valid.
            latency: hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(
                |_| hdrhistogram::Histogram::new(3).unwrap_or_else(|_| unreachable!()),
            ),
            requests: 0,
            errors: 0,
            logins: 0,
            validations: 0,
            on_issuer: 0,
            hops: 0,
            handshakes: 0,
            resumed: 0,
            samples: Vec::new(),
        }
    }

    pub fn merge(&mut self, o: Tally) {
        let _ = self.latency.add(&o.latency);
        self.requests += o.requests;
        self.errors += o.errors;
        self.logins += o.logins;
        self.validations += o.validations;
        self.on_issuer += o.on_issuer;
        self.hops += o.hops;
        self.handshakes += o.handshakes;
        self.resumed += o.resumed;
        for s in o.samples {
            if self.samples.len() < 5 && !self.samples.contains(&s) {
                self.samples.push(s);
            }
        }
    }

    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.samples.len() < 5 && !self.samples.contains(&what) {
            self.samples.push(what);
        }
    }
}

impl Default for Tally {
    fn default() -> Self {
        Tally::new()
    }
}

/// A response as the flow reads it.
pub(super) struct Reply {
    status: StatusCode,
    headers: header::HeaderMap,
    body: Bytes,
}

/// One user's connection: reconnects when the front end closed it.
pub(super) struct Conn<'t> {
    target: &'t Target,
    sender: Option<Sender>,
    /// The last connection made resumed a TLS session.
    resumed: bool,
}

impl<'t> Conn<'t> {
    pub(super) fn new(target: &'t Target) -> Conn<'t> {
        Conn {
            target,
            sender: None,
            resumed: false,
        }
    }

    pub(super) async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Reply, String> {
        let reusable = match self.sender.as_mut() {
            Some(s) => s.ready().await.is_ok(),
            None => false,
        };
        let mut sender = match self.sender.take() {
            Some(s) if reusable => s,
            _ => {
                let (sender, resumed) =
                    (self.target.connect().await).map_err(|e| format!("connect: {e}"))?;
                self.resumed = resumed;
                sender
            }
        };
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("response body: {e}"))?
            .to_bytes();
        self.sender = Some(sender);
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// How long a request may take before it counts as an error.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one user until `end`, recording the requests it starts from `from`
/// until `end` (a login counts when all of its requests did).
pub async fn user(
    target: Arc<Target>,
    work: Workload,
    id: usize,
    from: Instant,
    end: Instant,
) -> Tally {
    let mut tally = Tally::new();
    let mut u = User {
        target: &target,
        tally: &mut tally,
        from,
        end,
    };
    match work {
        Workload::Flow => {
            let mut browser = Conn::new(&target);
            let mut app = Conn::new(&target);
            let mut n = 0u64;
            while Instant::now() < end {
                n += 1;
                let name = format!("u{id}x{n}");
                let started = Instant::now();
                if let Some(hops) = flow(&mut u, &mut browser, &mut app, &name).await {
                    if started >= from {
                        u.tally.logins += 1;
                        u.tally.hops += u64::from(hops);
                    }
                }
            }
        }
        Workload::Mix(mix) => {
            let mut conn = Conn::new(&target);
            let mut i = id;
            while Instant::now() < end {
                let m = &mix[i % mix.len()];
                i += 1;
                let req = u.request(&m.method, &m.target, &m.headers, Bytes::new());
                let _ = u.exchange(&mut conn, req, |_| Ok(())).await;
            }
        }
        Workload::Handshakes { resume } => {
            let own = resume.then(|| target.with_own_sessions());
            let target = own.as_ref().unwrap_or(&target);
            while Instant::now() < end {
                let mut conn = Conn::new(target);
                let path = format!("{}/login", target.prefix);
                let req = u.request(&Method::GET, &path, &[], Bytes::new());
                let counted = Instant::now() >= from;
                if u.exchange(&mut conn, req, |_| Ok(())).await.is_some() && counted {
                    u.tally.handshakes += 1;
                    u.tally.resumed += u64::from(conn.resumed);
                }
            }
        }
    }
    tally
}

struct User<'a> {
    target: &'a Target,
    tally: &'a mut Tally,
    from: Instant,
    /// Nothing starts after it (a login under way stops there, uncounted).
    end: Instant,
}

impl User<'_> {
    fn request(
        &self,
        method: &Method,
        target: &str,
        headers: &[(String, String)],
        body: Bytes,
    ) -> Request<Full<Bytes>> {
        let mut b = Request::builder()
            .method(method.clone())
            .uri(target)
            .header(header::HOST, self.target.authority.as_str());
        for (k, v) in headers {
            b = b.header(k.as_str(), v.as_str());
        }
        if !body.is_empty() {
            b = b.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        b.body(Full::new(body))
            .unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
    }

    /// Sends, times and checks one request (`check` says what is wrong).
    async fn exchange(
        &mut self,
        conn: &mut Conn<'_>,
        req: Request<Full<Bytes>>,
        check: impl FnOnce(&Reply) -> Result<(), String>,
    ) -> Option<Reply> {
        let what = req.uri().path().to_owned();
        let start = Instant::now();
        if start >= self.end {
            return None;
        }
        let reply = match tokio::time::timeout(REQUEST_TIMEOUT, conn.send(req)).await {
            Ok(r) => r,
            Err(_) => {
                conn.sender = None;
                Err(format!("no answer in {}s", REQUEST_TIMEOUT.as_secs()))
            }
        };
        let done = Instant::now();
        let counted = start >= self.from;
        if counted {
            self.tally.requests += 1;
            let us = u64::try_from((done - start).as_micros()).unwrap_or(u64::MAX);
            let _ = self.tally.latency.record(us.max(1));
        }
        let result = reply.and_then(|r| {
            if r.status.is_server_error() || r.status.is_client_error() {
                return Err(format!("{} {}", r.status.as_u16(), first_line(&r.body)));
            }
            check(&r).map(|()| r)
        });
        match result {
            Ok(r) => Some(r),
            Err(e) => {
                if counted {
                    self.tally.error(format!("{what}: {e}"));
                }
                None
            }
        }
    }

    /// Validates `ticket` on `conn`: counts whether its node answered,
    /// whatever the answer, then whether it was a success.
    async fn validate(&mut self, conn: &mut Conn<'_>, target: &str, ticket: &str) -> Option<Reply> {
        let req = self.request(&Method::GET, target, &[], Bytes::new());
        let counted = (self.from..self.end).contains(&Instant::now());
        let reply = self.exchange(conn, req, |_| Ok(())).await?;
        if counted {
            self.answered(&reply, ticket);
        }
        match success(&reply) {
            Ok(()) => Some(reply),
            Err(e) => {
                if counted {
                    self.tally
                        .error(format!("{}: {e}", target.split('?').next().unwrap_or("")));
                }
                None
            }
        }
    }

    /// A validation's response: counts whether the ticket's node answered.
    fn answered(&mut self, reply: &Reply, ticket: &str) {
        let Some(node) = reply
            .headers
            .get("x-cas-node")
            .and_then(|v| v.to_str().ok())
        else {
            return;
        };
        self.tally.validations += 1;
        if ticket.rsplit_once('-').is_some_and(|(_, s)| s == node) {
            self.tally.on_issuer += 1;
        }
    }
}

const SERVICE: &str = "https://app.example.edu/portal/";
const PGT_URL: &str = "https://app.example.edu/portal/pgtCallback";
const BACKEND: &str = "https://api.example.edu/grades/";
const SECOND: &str = "https://mail.example.edu/";

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A short description of a failure body: a CAS failure code, else the
/// start of its first line with anything ticket-like hidden.
fn first_line(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    if let Some((_, rest)) = s.split_once("code=\"") {
        return rest.split('"').next().unwrap_or("").to_owned();
    }
    let line = s.lines().next().unwrap_or("").trim();
    let words: Vec<String> = line
        .split(' ')
        .take(12)
        .map(|w| {
            let ticketish = w.len() > 16 && w.contains('-')
                || ["ST-", "PT-", "PGT-", "TGT-", "OC-", "AT-", "RT-"]
                    .iter()
                    .any(|p| w.starts_with(p));
            if ticketish {
                crate::routing::redact::redact(w.as_bytes(), None)
            } else {
                w.to_owned()
            }
        })
        .collect();
    words.join(" ")
}

/// `name=value` of the first `Set-Cookie` for `name`.
fn set_cookie(r: &Reply, name: &str) -> Option<String> {
    r.headers.get_all(header::SET_COOKIE).iter().find_map(|v| {
        let (n, value, _) = crate::routing::set_cookie::parse_set_cookie(v.as_bytes())?;
        (n == name.as_bytes()).then(|| format!("{name}={}", String::from_utf8_lossy(value)))
    })
}

/// The ticket a redirect to a service carries.
fn ticket_in(r: &Reply) -> Result<String, String> {
    let loc = r
        .headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| format!("{} without a redirect", r.status.as_u16()))?;
    let (_, q) = loc
        .split_once("ticket=")
        .ok_or("a redirect without a ticket")?;
    Ok(q.split('&').next().unwrap_or("").to_owned())
}

/// Between two XML tags.
fn element<'b>(body: &'b [u8], tag: &str) -> Option<&'b str> {
    let s = std::str::from_utf8(body).ok()?;
    let open = format!("<cas:{tag}>");
    let start = s.find(&open)? + open.len();
    let len = s[start..].find('<')?;
    Some(&s[start..start + len])
}

fn success(r: &Reply) -> Result<(), String> {
    if element(&r.body, "user").is_some() {
        Ok(())
    } else {
        Err(first_line(&r.body))
    }
}

/// One login: the form, the POST (a TGT and an ST), the application's
/// validation asking for a PGT, a PT for a back end and its validation,
/// then single sign-on to a second service and its validation (CAS 3).
/// Answers the node-to-node round trips it took, or `None` at the first
/// failure (counted).
async fn flow(
    u: &mut User<'_>,
    browser: &mut Conn<'_>,
    app: &mut Conn<'_>,
    user: &str,
) -> Option<u32> {
    let p = u.target.prefix.clone();
    let mut hops = 0;
    let login = format!("{p}/login?service={}", enc(SERVICE));
    let req = u.request(&Method::GET, &login, &[], Bytes::new());
    let form = u.exchange(browser, req, |_| Ok(())).await?;
    hops += hops_of(&form.headers);
    let mut cookies = Vec::new();
    if let Some(c) = set_cookie(&form, "JSESSIONID") {
        cookies.push(("cookie".to_owned(), c));
    }
    let body = format!("username={user}&password={user}&service={}", enc(SERVICE));
    let req = u.request(&Method::POST, &format!("{p}/login"), &cookies, body.into());
    let posted = u.exchange(browser, req, |r| ticket_in(r).map(drop)).await?;
    hops += hops_of(&posted.headers);
    let st = ticket_in(&posted).ok()?;
    let tgc = set_cookie(&posted, "CASTGC").or_else(|| set_cookie(&posted, "TGC"));

    let v = format!(
        "{p}/serviceValidate?service={}&ticket={st}&pgtUrl={}",
        enc(SERVICE),
        enc(PGT_URL)
    );
    let valid = u.validate(app, &v, &st).await?;
    hops += hops_of(&valid.headers);
    // The demo nodes hand the PGT over in a header (they call no pgtUrl).
    if let Some(pgt) = valid
        .headers
        .get("x-demo-pgt")
        .and_then(|v| v.to_str().ok())
    {
        let pgt = pgt.to_owned();
        let t = format!("{p}/proxy?targetService={}&pgt={pgt}", enc(BACKEND));
        let req = u.request(&Method::GET, &t, &[], Bytes::new());
        let proxied = u
            .exchange(app, req, |r| {
                element(&r.body, "proxyTicket")
                    .map(drop)
                    .ok_or_else(|| first_line(&r.body))
            })
            .await?;
        hops += hops_of(&proxied.headers);
        let pt = element(&proxied.body, "proxyTicket")?.to_owned();
        let t = format!("{p}/proxyValidate?service={}&ticket={pt}", enc(BACKEND));
        let valid = u.validate(app, &t, &pt).await?;
        hops += hops_of(&valid.headers);
    }
    let Some(tgc) = tgc else {
        return Some(hops);
    };
    let sso = format!("{p}/login?service={}", enc(SECOND));
    let req = u.request(&Method::GET, &sso, &[("cookie".into(), tgc)], Bytes::new());
    let again = u.exchange(browser, req, |r| ticket_in(r).map(drop)).await?;
    hops += hops_of(&again.headers);
    let st2 = ticket_in(&again).ok()?;
    let v = format!(
        "{p}/p3/serviceValidate?service={}&ticket={st2}",
        enc(SECOND)
    );
    let valid = u.validate(app, &v, &st2).await?;
    hops += hops_of(&valid.headers);
    Some(hops)
}
