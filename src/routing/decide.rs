//! `route`: walks the extractor table in rule order, resolves each value
//! found to a node (ticket suffix, jvmRoute, learned table), records why each
//! applicable entry fell through, and ends with the `any` rule.

use super::extract::{EntryId, Source, ENTRIES};
use super::parse::{
    cookie, cookies, path_param, query_param, query_params, ticket_prefix_end, with_decoded,
};
use super::saml::{artifact_text, with_artifact};
use super::suffix::SuffixKind;
use super::table::{PoolInfo, RoutingTable};
use super::{Headers, Learned, NodeId, NodeStates, PoolId, RequestView, Rule};

/// How the chosen node was found.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum How {
    /// A ticket id ending in one of the node's `ticket_suffixes`.
    Suffix,
    /// A ticket id ending in the MD5 of the node's IPv4 address.
    F5Md5,
    /// A Tomcat jvmRoute in the session id.
    JvmRoute,
    /// The learned cookie table.
    Learned,
    /// The pool member an F5 `BIGipServer` cookie encodes.
    Bigip,
    /// casfront's sealed route cookie.
    RouteCookie,
    /// `any`: round robin over the usable primary nodes.
    RoundRobin,
    /// `any`: no primary was usable; a backup node.
    Backup,
}

impl How {
    pub const fn as_str(self) -> &'static str {
        match self {
            How::Suffix => "suffix",
            How::F5Md5 => "f5-md5",
            How::JvmRoute => "jvm-route",
            How::Learned => "learned",
            How::Bigip => "bigip",
            How::RouteCookie => "route-cookie",
            How::RoundRobin => "round-robin",
            How::Backup => "backup",
        }
    }
}

/// Why an applicable entry did not decide.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Cause {
    /// The parameter, cookie or element is absent or empty.
    NoValue,
    /// The value does not look like a ticket id (`[A-Z]+-...`).
    NotTicket,
    /// The decoded value is longer than any ticket id.
    TooLong,
    /// A ticket id whose suffix names no node of the pool.
    UnknownSuffix,
    /// A jvmRoute that names no node of the pool, and not learned either.
    UnknownRoute,
    /// An opaque value the learned table does not know.
    NotLearned,
    /// The owner was found but is down or disabled.
    Unusable(NodeId),
    /// An F5 cookie that encodes no member address (another encoding, or
    /// none), or a member that is no node of the pool.
    UnknownMember,
    /// A route cookie that does not open with the pool's keys (forged,
    /// sealed with a retired key, another pool's) or names no node.
    BadRouteCookie,
}

impl Cause {
    pub const fn as_str(self) -> &'static str {
        match self {
            Cause::NoValue => "no value",
            Cause::NotTicket => "not a ticket id",
            Cause::TooLong => "too long for a ticket id",
            Cause::UnknownSuffix => "unknown suffix",
            Cause::UnknownRoute => "unknown jvmRoute",
            Cause::NotLearned => "not learned",
            Cause::Unusable(_) => "owner not usable",
            Cause::UnknownMember => "unknown F5 pool member",
            Cause::BadRouteCookie => "route cookie does not open",
        }
    }
}

/// One entry that applied to the request and fell through.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Fall {
    pub entry: EntryId,
    /// For the `tgc-cookie` entry: which of the pool's `tgc_cookies` (its
    /// index); 0 otherwise. [`value_of`] gives the name and value again.
    pub cookie: u8,
    pub cause: Cause,
}

/// The most fall-throughs a decision records; later ones are only counted.
pub const MAX_FALLS: usize = 6;

/// The most TGT cookie names a pool may configure (`tgc_cookies`).
pub const MAX_TGC_COOKIES: usize = 4;

/// Fall-throughs in order, stored inline (no allocation).
#[derive(Copy, Clone, Debug)]
pub struct Falls {
    items: [Fall; MAX_FALLS],
    len: u8,
    dropped: u8,
}

impl Falls {
    const EMPTY: Falls = Falls {
        items: [Fall {
            entry: 0,
            cookie: 0,
            cause: Cause::NoValue,
        }; MAX_FALLS],
        len: 0,
        dropped: 0,
    };

    fn push(&mut self, fall: Fall) {
        match self.items.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = fall;
                self.len += 1;
            }
            None => self.dropped = self.dropped.saturating_add(1),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Fall> {
        self.items[..usize::from(self.len)].iter()
    }

    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Fall-throughs past [`MAX_FALLS`], not recorded.
    pub fn dropped(&self) -> usize {
        usize::from(self.dropped)
    }
}

/// The routing decision for one request.
#[derive(Copy, Clone, Debug)]
pub struct Decision<'r> {
    /// `None`: no pool's prefix matches the path (casfront answers 404).
    pub pool: Option<PoolId>,
    /// `None` with a pool: no usable node (casfront answers 503).
    pub node: Option<NodeId>,
    /// The rule that chose the node; `Any` when the `any` rule found none.
    pub rule: Option<Rule>,
    /// The extractor entry that decided (`None` for `any`).
    pub entry: Option<EntryId>,
    pub how: Option<How>,
    /// The parameter or cookie that decided, and its raw value (redact it).
    pub name: &'r [u8],
    pub value: Option<&'r [u8]>,
    /// Why earlier applicable entries fell through, in order.
    pub falls: Falls,
}

/// The parameter or cookie name an entry reads, and its raw value in `req`
/// (`cookie_ix`: which of the pool's `tgc_cookies`, for `tgc-cookie`). What
/// `route` reads, for whoever explains a decision; `route` itself reads the
/// TGT cookies of a pool in one pass with the same scanner.
pub fn value_of<'r, H: Headers + ?Sized>(
    source: Source,
    pool: &'r PoolInfo,
    req: &RequestView<'r, H>,
    cookie_ix: usize,
) -> (&'r [u8], Option<&'r [u8]>) {
    match source {
        Source::QueryTicket(p) => (
            p.as_bytes(),
            req.query.and_then(|q| query_param(q, p.as_bytes())),
        ),
        Source::SamlArtifact => (b"AssertionArtifact", req.body.and_then(artifact_text)),
        Source::TgcCookie => match pool.tgc_cookies.get(cookie_ix) {
            Some(name) => (name, cookie(req.headers, name)),
            None => (b"", None),
        },
        Source::SessionCookie => (
            &pool.session_cookie,
            cookie(req.headers, &pool.session_cookie),
        ),
        Source::SessionPathParam => (&pool.path_param, path_param(req.path, &pool.path_param)),
        Source::BigipCookie => match &pool.bigip_cookie {
            Some(name) => (name, cookie(req.headers, name)),
            None => (b"", None),
        },
        Source::FormTicket(p, _) => (
            p.as_bytes(),
            req.body
                .filter(|_| source.reads_body(req.query))
                .and_then(|b| query_param(b, p.as_bytes())),
        ),
        Source::RestTgt => (b"/v1/tickets/", rest_tgt(req.mapped, &pool.prefix)),
        Source::Delegated => req.query.map_or((b"", None), delegated),
        Source::RouteCookie => match &pool.route_cookie {
            Some(rc) => (&rc.name, cookie(req.headers, &rc.name)),
            None => (b"", None),
        },
        Source::Bearer => (b"Authorization", bearer(req.headers)),
    }
}

/// Whether `value`, a slice of the body prefix, runs to the prefix's end
/// while the body went on.
fn cut_short<H: Headers + ?Sized>(req: &RequestView<'_, H>, value: &[u8]) -> bool {
    req.body_cut
        && req.body.is_some_and(|b| {
            let end = b.as_ptr_range().end;
            value.as_ptr_range().end == end
        })
}

/// Where delegated authentication brings its `TST-` id back to `/login`.
fn delegated(query: &[u8]) -> (&'static [u8], Option<&[u8]>) {
    const NAMES: [&[u8]; 4] = [
        b"delegatedclientid",
        b"client_name",
        b"state",
        b"RelayState",
    ];
    let mut found = [None; 4];
    query_params(query, &NAMES, &mut found);
    let [client, callback, state, relay] = found;
    if client.is_some() {
        return (NAMES[0], client);
    }
    match (callback, state, relay) {
        (Some(_), Some(v), _) => (NAMES[2], Some(v)),
        (Some(_), None, Some(v)) => (NAMES[3], Some(v)),
        _ => (b"", None),
    }
}

/// The id after `/v1/tickets/` in a pool's REST path.
fn rest_tgt<'p>(path: &'p [u8], prefix: &[u8]) -> Option<&'p [u8]> {
    let rel = if prefix == b"/" {
        path
    } else {
        path.strip_prefix(prefix)?
    };
    let rest = rel.strip_prefix(b"/v1/tickets/")?;
    let end = rest
        .iter()
        .position(|&b| b == b'/' || b == b';')
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The token of the first `Authorization: Bearer` header.
fn bearer<H: Headers + ?Sized>(headers: &H) -> Option<&[u8]> {
    headers.values("authorization").find_map(|v| {
        let v = v.trim_ascii();
        (v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ")).then(|| v[7..].trim_ascii())
    })
}

/// Routes one request. `pick` drives the `any` rule's round robin (a
/// counter, or a hash for stickiness); the same inputs give the same answer.
pub fn route<'r, H, S, L>(
    table: &'r RoutingTable,
    req: &RequestView<'r, H>,
    states: &S,
    learned: &L,
    pick: u64,
) -> Decision<'r>
where
    H: Headers + ?Sized,
    S: NodeStates + ?Sized,
    L: Learned + ?Sized,
{
    let mut d = Decision {
        pool: None,
        node: None,
        rule: None,
        entry: None,
        how: None,
        name: b"",
        value: None,
        falls: Falls::EMPTY,
    };
    let Some((pool_id, pool, rel)) = table.pool_for(req.mapped, req.cert) else {
        return d;
    };
    d.pool = Some(pool_id);
    let cx = Resolver {
        pool_id,
        pool,
        states,
        learned,
    };
    let mut applicable = pool.applicable(req.method, rel);
    while applicable != 0 {
        let i = applicable.trailing_zeros() as usize;
        applicable &= applicable - 1;
        let entry = &ENTRIES[i];
        let id = i as EntryId;
        let mut attempt = |name: &'r [u8], value: Option<&'r [u8]>, cookie: usize| {
            let result = match value {
                None | Some(b"") => Err(Cause::NoValue),
                // A form value running to the end of a prefix that stopped
                // short of the body may be cut (`-cas12` read as `-cas1`).
                Some(v) if matches!(entry.source, Source::FormTicket(..)) && cut_short(req, v) => {
                    Err(Cause::TooLong)
                }
                Some(v) => cx.resolve(entry.source, name, v),
            };
            match result {
                Ok((node, how)) => Some((node, how, name, value)),
                Err(Cause::NoValue) if entry.quiet => None,
                Err(cause) => {
                    d.falls.push(Fall {
                        entry: id,
                        cookie: cookie as u8,
                        cause,
                    });
                    None
                }
            }
        };
        let hit = match entry.source {
            Source::TgcCookie => {
                // One pass for all names, then each in configured order.
                let names = &pool.tgc_cookies[..pool.tgc_cookies.len().min(MAX_TGC_COOKIES)];
                let mut found = [None; MAX_TGC_COOKIES];
                cookies(req.headers, names, &mut found);
                let mut hit = None;
                let mut seen = false;
                for (k, (name, v)) in names.iter().zip(found).enumerate() {
                    if v.is_some() {
                        seen = true;
                        hit = attempt(name, v, k);
                        if hit.is_some() {
                            break;
                        }
                    }
                }
                if seen {
                    hit
                } else {
                    attempt(b"", None, 0)
                }
            }
            source => {
                let (name, value) = value_of(source, pool, req, 0);
                attempt(name, value, 0)
            }
        };
        if let Some((node, how, name, value)) = hit {
            d.node = Some(node);
            d.rule = Some(entry.rule);
            d.entry = Some(id);
            d.how = Some(how);
            d.name = name;
            d.value = value;
            return d;
        }
    }
    d.rule = Some(Rule::Any);
    if let Some((node, how)) = pick_any(pool, states, pick) {
        d.node = Some(node);
        d.how = Some(how);
    }
    d
}

/// Whether a TGT cookie (`tgc`) or session cookie value names its node by
/// itself (a readable ticket id's suffix, a jvmRoute): routing never looks
/// such a value up in the learned table, so learning it would be wasted.
pub fn names_its_node(
    table: &RoutingTable,
    pool_id: PoolId,
    tgc: bool,
    name: &[u8],
    value: &[u8],
) -> bool {
    let Some(pool) = table.pool(pool_id) else {
        return false;
    };
    let r = Resolver {
        pool_id,
        pool,
        states: &super::AllHealthy,
        learned: &super::NothingLearned,
    };
    let source = if tgc {
        Source::TgcCookie
    } else {
        Source::SessionCookie
    };
    r.resolve(source, name, value).is_ok()
}

struct Resolver<'a, S: ?Sized, L: ?Sized> {
    pool_id: PoolId,
    pool: &'a PoolInfo,
    states: &'a S,
    learned: &'a L,
}

impl<S: NodeStates + ?Sized, L: Learned + ?Sized> Resolver<'_, S, L> {
    /// Turns a value found by `source` into its owner, if usable.
    fn resolve(&self, source: Source, name: &[u8], raw: &[u8]) -> Result<(NodeId, How), Cause> {
        let found = match source {
            // A ticket id in a query parameter (`+` means space).
            Source::QueryTicket(_) | Source::FormTicket(..) | Source::Delegated => {
                with_decoded(raw, true, |id| self.by_suffix(id))
            }
            Source::RestTgt | Source::Bearer => with_decoded(raw, false, |id| self.by_suffix(id)),
            Source::SamlArtifact => with_artifact(raw, |id| self.by_suffix(id)),
            // A readable ticket id (CAS 3.x/4.0, or crypto off), else learned.
            Source::TgcCookie => {
                with_decoded(raw, false, |id| self.by_suffix(id)).or_else(|cause| {
                    let unlearned = match cause {
                        Cause::NotTicket => Cause::NotLearned,
                        other => other,
                    };
                    self.learned(name, raw).ok_or(unlearned)
                })
            }
            // A Tomcat jvmRoute, else the learned table.
            Source::SessionCookie | Source::SessionPathParam => self.session(raw),
            Source::RouteCookie => self.route_cookie(raw),
            Source::BigipCookie => super::suffix::bigip_member(raw)
                .and_then(|m| self.pool.members.get(&m))
                .map(|&n| (n, How::Bigip))
                .ok_or(Cause::UnknownMember),
        }?;
        if self.states.state(found.0).usable_for_affinity() {
            Ok(found)
        } else {
            Err(Cause::Unusable(found.0))
        }
    }

    /// The node a route cookie names, if it opens with the pool's keys.
    fn route_cookie(&self, raw: &[u8]) -> Result<(NodeId, How), Cause> {
        let rc = self
            .pool
            .route_cookie
            .as_ref()
            .ok_or(Cause::BadRouteCookie)?;
        let mut buf = super::route_cookie::buffer();
        rc.open(self.pool.name.as_bytes(), raw, &mut buf)
            .and_then(|name| self.pool.by_name.get(name.as_bytes()).copied())
            .map(|n| (n, How::RouteCookie))
            .ok_or(Cause::BadRouteCookie)
    }

    /// The owner of a decoded ticket id (`None`: it did not fit the buffer).
    fn by_suffix(&self, id: Option<&[u8]>) -> Result<(NodeId, How), Cause> {
        let id = id.ok_or(Cause::TooLong)?;
        let dash = ticket_prefix_end(id).ok_or(Cause::NotTicket)?;
        match self.pool.suffixes.lookup(id, dash) {
            Some(m) if m.kind == SuffixKind::Name => Ok((m.node, How::Suffix)),
            Some(m) => Ok((m.node, How::F5Md5)),
            None => Err(Cause::UnknownSuffix),
        }
    }

    /// Tomcat appends `.jvmRoute` to the session id; the route is the text
    /// after the first `.`. The learned table knows the id by the cookie's
    /// name, whether it came as a cookie or as a path parameter.
    fn session(&self, raw: &[u8]) -> Result<(NodeId, How), Cause> {
        let name = &self.pool.session_cookie;
        let route = with_decoded(raw, false, |id| {
            let id = id?;
            let dot = memchr::memchr(b'.', id)?;
            Some(self.pool.jvm_routes.get(&id[dot + 1..]).copied())
        });
        match route {
            Some(Some(node)) => Ok((node, How::JvmRoute)),
            Some(None) => self.learned(name, raw).ok_or(Cause::UnknownRoute),
            None => self.learned(name, raw).ok_or(Cause::NotLearned),
        }
    }

    /// The learned owner, if it is a node of this pool (a stale table must
    /// not send a request to another pool).
    fn learned(&self, name: &[u8], raw: &[u8]) -> Option<(NodeId, How)> {
        let node = self.learned.lookup(self.pool_id, name, raw)?;
        self.pool
            .nodes
            .contains(&node)
            .then_some((node, How::Learned))
    }
}

/// The `any` rule: round robin from `pick` over the primaries usable for new
/// logins, then the backups. The node at `pick % n` is taken when usable
/// (the common case, O(1)); otherwise the `(pick / n)`-th of the usable
/// ones: each down slot is reached once per round of `n` picks, so its
/// picks are spread over the usable nodes in turn, whatever their places.
/// (Indexing by `pick` itself would tie the usable node to the down slot's
/// parity: two down slots at odd places would both land on one node.)
fn pick_any<S: NodeStates + ?Sized>(
    pool: &PoolInfo,
    states: &S,
    pick: u64,
) -> Option<(NodeId, How)> {
    let round = |list: &[NodeId]| {
        let usable = |id: &NodeId| states.state(*id).usable_for_any();
        let nth = |n: usize| usize::try_from(pick % n as u64).ok();
        let first = *list.get(nth(list.len().max(1))?)?;
        if usable(&first) {
            return Some(first);
        }
        let count = list.iter().filter(|id| usable(id)).count().max(1);
        let round_no = pick / list.len().max(1) as u64;
        let k = usize::try_from(round_no % count as u64).ok()?;
        list.iter().filter(|id| usable(id)).nth(k).copied()
    };
    round(&pool.primaries)
        .map(|n| (n, How::RoundRobin))
        .or_else(|| round(&pool.backups).map(|n| (n, How::Backup)))
}
