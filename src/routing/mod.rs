//! The routing core: given a request, the routing table built from the
//! pools ([`table::PoolSpec`]), the nodes' current states and the
//! learned-cookie lookup, decide which pool, node and rule serve the
//! request (the rules: `docs/routing.md`). The bottom layer: it imports
//! nothing else of casfront (`docs/architecture.md`).
//!
//! It is pure: no I/O, no clock, no randomness (the `any` rule's pick is an
//! input), no allocation per decision, and it never panics on any input.
//! Submodules: [`extract`] (the one table of where tickets live), [`parse`]
//! (byte-level query, cookie and path scanners), [`suffix`] (ticket suffix
//! index), [`saml`] (SAML 1.1 artifact in a POST body), [`table`] (the
//! routing table), [`redact`] (what logs may show of a credential),
//! [`cert`] (pools chosen by client certificate), [`route_cookie`]
//! (casfront's sealed route cookie), [`set_cookie`] (the nodes'
//! `Set-Cookie` headers), [`path`] (paths as a servlet container maps
//! them, the one normaliser).

pub mod cert;
pub mod extract;
pub mod parse;
pub mod path;
pub mod redact;
pub mod route_cookie;
pub mod saml;
pub mod set_cookie;
pub mod suffix;
pub mod table;

mod decide;
#[cfg(test)]
mod tests;

pub use decide::{
    names_its_node, route, value_of, Cause, Decision, Fall, Falls, How, MAX_FALLS, MAX_TGC_COOKIES,
};
pub use extract::{Entry, EntryId, Source, ENTRIES};
pub use table::{NodeInfo, NodeSpec, PoolInfo, PoolSpec, RoutingTable};

/// Index of a node in [`RoutingTable::nodes`] (global across pools, in
/// configuration order).
pub type NodeId = u16;
/// Index of a pool in [`RoutingTable::pools`], in configuration order.
pub type PoolId = u16;

/// The request method, as far as routing cares.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    /// PUT, DELETE, OPTIONS, PATCH, extension methods: only the `session`
    /// and `any` rules apply.
    Other,
}

impl Method {
    /// Classifies a method token (case-sensitive, as RFC 9110 says).
    pub fn from_bytes(m: &[u8]) -> Method {
        match m {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            _ => Method::Other,
        }
    }

    pub(crate) const fn bit(self) -> u8 {
        match self {
            Method::Get => 1,
            Method::Head => 2,
            Method::Post => 4,
            Method::Other => 8,
        }
    }
}

/// The rule that chose the node, in order of precedence (`docs/routing.md`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    Ticket,
    Pgt,
    Tgc,
    Session,
    Any,
}

impl Rule {
    pub const fn as_str(self) -> &'static str {
        match self {
            Rule::Ticket => "ticket",
            Rule::Pgt => "pgt",
            Rule::Tgc => "tgc",
            Rule::Session => "session",
            Rule::Any => "any",
        }
    }
}

/// A node's state as routing sees it: health and administrative state
/// combined by the caller (disabled beats down beats draining).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum NodeState {
    #[default]
    Healthy,
    /// Healthy, but takes no new logins: still owns its tickets and sessions.
    Draining,
    /// Failing health checks or connections.
    Down,
    /// Taken out by an operator: receives nothing.
    Disabled,
}

impl NodeState {
    /// Usable by the rules that follow a ticket or a session to its owner.
    pub const fn usable_for_affinity(self) -> bool {
        matches!(self, NodeState::Healthy | NodeState::Draining)
    }

    /// Usable by the `any` rule (new logins).
    pub const fn usable_for_any(self) -> bool {
        matches!(self, NodeState::Healthy)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            NodeState::Healthy => "healthy",
            NodeState::Draining => "draining",
            NodeState::Down => "down",
            NodeState::Disabled => "disabled",
        }
    }
}

/// The current state of every node, indexed by [`NodeId`].
pub trait NodeStates {
    fn state(&self, node: NodeId) -> NodeState;
}

/// A plain slice of states; a node past its end counts as down.
impl NodeStates for [NodeState] {
    fn state(&self, node: NodeId) -> NodeState {
        self.get(usize::from(node))
            .copied()
            .unwrap_or(NodeState::Down)
    }
}

/// Every node healthy (benches, `explain` without `--down`).
pub struct AllHealthy;

impl NodeStates for AllHealthy {
    fn state(&self, _node: NodeId) -> NodeState {
        NodeState::Healthy
    }
}

/// The learned `(cookie name, value) -> node` table, filled by the data
/// plane from the nodes' `Set-Cookie` headers (`docs/routing.md`, "The learned table").
pub trait Learned {
    /// `value` is the cookie value exactly as the client sent it.
    fn lookup(&self, pool: PoolId, cookie: &[u8], value: &[u8]) -> Option<NodeId>;
}

/// An empty learned table.
pub struct NothingLearned;

impl Learned for NothingLearned {
    fn lookup(&self, _pool: PoolId, _cookie: &[u8], _value: &[u8]) -> Option<NodeId> {
        None
    }
}

/// Access to the request's header values by lowercase name, in the order
/// they were received (several `Cookie` headers arrive over HTTP/2).
pub trait Headers {
    fn values<'s>(&'s self, lowercase_name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's;
}

/// A list of `(name, value)` pairs, values as text or raw bytes (header
/// values need not be UTF-8); names compare case-insensitively.
impl<V: AsRef<[u8]>> Headers for [(&str, V)] {
    fn values<'s>(&'s self, lowercase_name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(lowercase_name))
            .map(|(_, v)| v.as_ref())
    }
}

/// What the routing core reads of a request. Everything is borrowed.
pub struct RequestView<'r, H: Headers + ?Sized> {
    pub method: Method,
    /// The path as received (still percent-encoded, path parameters kept):
    /// where the `;jsessionid=` path parameter is read.
    pub path: &'r [u8],
    /// The path as the node's servlet container maps it
    /// ([`path::servlet_path`]): what pools, endpoints and REST ids are
    /// matched on. The path as received unless the caller mapped it (the
    /// matchers skip `;` parameters themselves).
    pub mapped: &'r [u8],
    /// The query string without its `?`.
    pub query: Option<&'r [u8]>,
    pub headers: &'r H,
    /// A bounded prefix of the body, when the data plane read one (only for
    /// requests where a body carries a ticket: `POST /samlValidate`).
    pub body: Option<&'r [u8]>,
    /// The names of the connection's verified client certificate, for the
    /// pools that route by one (`client_cert_match`).
    pub cert: Option<&'r cert::CertIdentity>,
    /// The body goes on past `body` (the prefix stopped at its cap): a
    /// form value that reaches its end may be cut short.
    pub body_cut: bool,
}

impl<'r, H: Headers + ?Sized> RequestView<'r, H> {
    /// Splits an origin-form request target (`/path?query`) into path and query.
    pub fn new(method: Method, target: &'r [u8], headers: &'r H) -> Self {
        let (path, query) = match memchr::memchr(b'?', target) {
            Some(q) => (&target[..q], Some(&target[q + 1..])),
            None => (target, None),
        };
        RequestView {
            method,
            path,
            mapped: path,
            query,
            headers,
            body: None,
            cert: None,
            body_cut: false,
        }
    }

    /// The same view with the path mapped as the node will map it.
    pub fn with_mapped_path(mut self, mapped: &'r [u8]) -> Self {
        self.mapped = mapped;
        self
    }

    /// The same view with the client certificate's names.
    pub fn with_cert(mut self, cert: Option<&'r cert::CertIdentity>) -> Self {
        self.cert = cert;
        self
    }

    /// The same view, its body prefix `cut` short of the whole body.
    pub fn cut(mut self, cut: bool) -> Self {
        self.body_cut = cut;
        self
    }

    /// The same view with a body prefix.
    pub fn with_body(mut self, body: &'r [u8]) -> Self {
        self.body = Some(body);
        self
    }
}
