//! The one table of where a request carries the value that names its node:
//! which rule, which methods, which pool-relative paths, and where the value
//! is (query parameter, cookie, path parameter, body). A new CAS endpoint is
//! one more entry here. The order of the table is the order of the rules.

use super::{Method, Rule};

/// Index into [`ENTRIES`].
pub type EntryId = u8;

/// Where an entry finds its value, and how it resolves it to a node.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A query parameter holding a ticket id, resolved by suffix.
    QueryTicket(&'static str),
    /// `<samlp:AssertionArtifact>` in a SOAP body, resolved by suffix.
    SamlArtifact,
    /// The pool's TGT cookies (`tgc_cookies`): by suffix when the value is a
    /// readable ticket id, else by the learned table.
    TgcCookie,
    /// The pool's session cookie: by Tomcat jvmRoute, else the learned table.
    SessionCookie,
    /// The `;jsessionid=` path parameter (the session cookie's lowercase
    /// name): by jvmRoute, else the learned table.
    SessionPathParam,
    /// An F5 `BIGipServer<pool>` persistence cookie (the pool's
    /// `bigip_cookie`): the node whose URL has the address and port it
    /// encodes. For a cut-over from an F5.
    BigipCookie,
    /// A parameter of a form-encoded body prefix holding a ticket id,
    /// resolved by suffix; `when`: read only if the query has this
    /// parameter (a SAML2 POST to `/login?client_name=...`).
    FormTicket(&'static str, Option<&'static str>),
    /// The TGT id in a REST path, `/v1/tickets/TGT-...`, by suffix.
    RestTgt,
    /// `Authorization: Bearer` when the token is a ticket id, by suffix.
    Bearer,
    /// casfront's sealed route cookie (the pool's `[pool.route_cookie]`):
    /// the node name it opens to.
    RouteCookie,
    /// Delegated authentication coming back to `/login` with its `TST-`
    /// id: `delegatedclientid=`, or with `client_name=` (a pac4j callback)
    /// `state=` (OAuth/OIDC) or `RelayState=` (SAML2 redirect binding);
    /// one pass over the query. By suffix.
    Delegated,
}

impl Source {
    /// Whether the entry reads the request body's prefix for a request
    /// with this query: a form entry with a `when` condition only if the
    /// query has that parameter.
    pub fn reads_body(self, query: Option<&[u8]>) -> bool {
        match self {
            Source::SamlArtifact | Source::FormTicket(_, None) => true,
            Source::FormTicket(_, Some(when)) => {
                query.is_some_and(|q| super::parse::query_param(q, when.as_bytes()).is_some())
            }
            _ => false,
        }
    }
}

/// A set of methods (bit mask of [`Method::bit`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Methods(u8);

impl Methods {
    pub const GET_HEAD: Methods = Methods(Method::Get.bit() | Method::Head.bit());
    pub const POST: Methods = Methods(Method::Post.bit());
    pub const ANY: Methods = Methods(0xff);

    pub const fn contains(self, m: Method) -> bool {
        self.0 & m.bit() != 0
    }
}

/// Every pool-relative CAS endpoint an entry of the table names. A request
/// path is classified once against this list ([`endpoint_of`]); entries
/// hold a bit mask over it.
pub static ENDPOINTS: [&str; 13] = [
    "/validate",
    "/serviceValidate",
    "/proxyValidate",
    "/samlValidate",
    "/p3/serviceValidate",
    "/p3/proxyValidate",
    "/proxy",
    "/oauth2.0/accessToken",
    "/oauth2.0/token",
    "/oidc/token",
    "/oauth2.0/profile",
    "/oidc/profile",
    "/login",
];

/// Which pool-relative paths an entry applies to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Paths {
    Any,
    /// A bit mask over [`ENDPOINTS`]; build it with [`Paths::of`].
    OneOf(u16),
}

impl Paths {
    /// The endpoints named, checked at compile time against [`ENDPOINTS`].
    pub const fn of(names: &[&str]) -> Paths {
        let mut mask = 0u16;
        let mut i = 0;
        while i < names.len() {
            let mut k = 0;
            loop {
                assert!(
                    k < ENDPOINTS.len(),
                    "an entry names a path missing from ENDPOINTS"
                );
                if const_eq(names[i].as_bytes(), ENDPOINTS[k].as_bytes()) {
                    break;
                }
                k += 1;
            }
            mask |= 1 << k;
            i += 1;
        }
        Paths::OneOf(mask)
    }

    /// Whether the request's endpoint (from [`endpoint_of`]) is one of these.
    pub fn matches(self, endpoint: Option<usize>) -> bool {
        match (self, endpoint) {
            (Paths::Any, _) => true,
            (Paths::OneOf(mask), Some(e)) => mask & (1 << e) != 0,
            (Paths::OneOf(_), None) => false,
        }
    }
}

const fn const_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Which of [`ENDPOINTS`] the pool-relative path `rel` is, on whole
/// segments (see [`path_is`]).
pub fn endpoint_of(rel: &[u8]) -> Option<usize> {
    if super::parse::find(b';', rel).is_none() {
        // No path parameter, the common case: one `match`, which the
        // compiler turns into a switch on the length and a comparison.
        let rel = rel.strip_suffix(b"/").unwrap_or(rel);
        return match rel {
            b"/validate" => Some(0),
            b"/serviceValidate" => Some(1),
            b"/proxyValidate" => Some(2),
            b"/samlValidate" => Some(3),
            b"/p3/serviceValidate" => Some(4),
            b"/p3/proxyValidate" => Some(5),
            b"/proxy" => Some(6),
            b"/oauth2.0/accessToken" => Some(7),
            b"/oauth2.0/token" => Some(8),
            b"/oidc/token" => Some(9),
            b"/oauth2.0/profile" => Some(10),
            b"/oidc/profile" => Some(11),
            b"/login" => Some(12),
            _ => None,
        };
    }
    ENDPOINTS.iter().position(|e| path_is(rel, e.as_bytes()))
}

/// One row of the table.
#[derive(Copy, Clone, Debug)]
pub struct Entry {
    /// A short stable name, shown by `explain` and in metrics.
    pub name: &'static str,
    pub rule: Rule,
    pub methods: Methods,
    pub paths: Paths,
    pub source: Source,
    /// A request without the value is no fall-through (not counted, not
    /// explained): entries that serve a few requests of common paths
    /// (delegated login comes back to `/login`).
    pub quiet: bool,
}

/// CAS validation endpoints (CAS 1, 2, 3 and SAML 1.1 protocols).
const VALIDATE: Paths = Paths::of(&[
    "/validate",
    "/serviceValidate",
    "/proxyValidate",
    "/samlValidate",
    "/p3/serviceValidate",
    "/p3/proxyValidate",
]);

/// OAuth/OIDC token endpoints (codes and refresh tokens are redeemed here).
const TOKEN: Paths = Paths::of(&["/oauth2.0/accessToken", "/oauth2.0/token", "/oidc/token"]);

/// OAuth/OIDC profile (user info) endpoints, called with a bearer token.
const PROFILE: Paths = Paths::of(&["/oauth2.0/profile", "/oidc/profile"]);

/// Delegated authentication comes back to the login page.
const LOGIN: Paths = Paths::of(&["/login"]);

/// The extractor table, in rule order (`docs/routing.md`).
pub static ENTRIES: &[Entry] = &[
    Entry {
        name: "validate-ticket",
        rule: Rule::Ticket,
        methods: Methods::GET_HEAD,
        paths: VALIDATE,
        source: Source::QueryTicket("ticket"),
        quiet: false,
    },
    Entry {
        name: "saml-artifact",
        rule: Rule::Ticket,
        methods: Methods::POST,
        paths: Paths::of(&["/samlValidate"]),
        source: Source::SamlArtifact,
        quiet: false,
    },
    Entry {
        name: "saml-ticket",
        rule: Rule::Ticket,
        methods: Methods::POST,
        paths: Paths::of(&["/samlValidate"]),
        source: Source::QueryTicket("ticket"),
        quiet: false,
    },
    Entry {
        name: "oauth-code",
        rule: Rule::Ticket,
        methods: Methods::ANY,
        paths: TOKEN,
        source: Source::QueryTicket("code"),
        quiet: true,
    },
    Entry {
        name: "oauth-code-form",
        rule: Rule::Ticket,
        methods: Methods::POST,
        paths: TOKEN,
        source: Source::FormTicket("code", None),
        quiet: true,
    },
    Entry {
        name: "oauth-refresh",
        rule: Rule::Ticket,
        methods: Methods::ANY,
        paths: TOKEN,
        source: Source::QueryTicket("refresh_token"),
        quiet: true,
    },
    Entry {
        name: "oauth-refresh-form",
        rule: Rule::Ticket,
        methods: Methods::POST,
        paths: TOKEN,
        source: Source::FormTicket("refresh_token", None),
        quiet: true,
    },
    Entry {
        name: "oauth-bearer",
        rule: Rule::Ticket,
        methods: Methods::ANY,
        paths: PROFILE,
        source: Source::Bearer,
        quiet: true,
    },
    Entry {
        name: "delegated",
        rule: Rule::Ticket,
        methods: Methods::ANY,
        paths: LOGIN,
        source: Source::Delegated,
        quiet: true,
    },
    Entry {
        name: "delegated-relaystate-form",
        rule: Rule::Ticket,
        methods: Methods::POST,
        paths: LOGIN,
        source: Source::FormTicket("RelayState", Some("client_name")),
        quiet: true,
    },
    Entry {
        name: "proxy-pgt",
        rule: Rule::Pgt,
        methods: Methods::GET_HEAD,
        paths: Paths::of(&["/proxy"]),
        source: Source::QueryTicket("pgt"),
        quiet: false,
    },
    Entry {
        name: "rest-tgt",
        rule: Rule::Tgc,
        methods: Methods::ANY,
        paths: Paths::Any,
        source: Source::RestTgt,
        quiet: true,
    },
    Entry {
        name: "tgc-cookie",
        rule: Rule::Tgc,
        methods: Methods::GET_HEAD,
        paths: Paths::Any,
        source: Source::TgcCookie,
        quiet: false,
    },
    Entry {
        name: "session-cookie",
        rule: Rule::Session,
        methods: Methods::ANY,
        paths: Paths::Any,
        source: Source::SessionCookie,
        quiet: false,
    },
    Entry {
        name: "session-path",
        rule: Rule::Session,
        methods: Methods::ANY,
        paths: Paths::Any,
        source: Source::SessionPathParam,
        quiet: false,
    },
    Entry {
        name: "route-cookie",
        rule: Rule::Session,
        methods: Methods::ANY,
        paths: Paths::Any,
        source: Source::RouteCookie,
        quiet: true,
    },
    Entry {
        name: "bigip-cookie",
        rule: Rule::Session,
        methods: Methods::ANY,
        paths: Paths::Any,
        source: Source::BigipCookie,
        quiet: true,
    },
];

/// Whether the pool-relative path `rel` is `endpoint`, on whole segments:
/// path parameters (`;jsessionid=...`) are ignored and one trailing `/` is
/// allowed, so `/serviceValidate;jsessionid=X` matches `/serviceValidate`
/// but `/proxyValidate` does not match `/proxy`.
pub fn path_is(rel: &[u8], endpoint: &[u8]) -> bool {
    let (mut i, mut j) = (0, 0);
    loop {
        if rel.get(i) == Some(&b';') {
            i = skip_param(rel, i);
            continue;
        }
        if j == endpoint.len() {
            // The rest may be one `/` (with parameters) and nothing else.
            if rel.get(i) == Some(&b'/') {
                i += 1;
                if rel.get(i) == Some(&b';') {
                    i = skip_param(rel, i);
                }
            }
            return i == rel.len();
        }
        match rel.get(i) {
            Some(&c) if c == endpoint[j] => {
                i += 1;
                j += 1;
            }
            _ => return false,
        }
    }
}

/// From a `;` at `i`, the index of the next `/` or the end.
fn skip_param(rel: &[u8], i: usize) -> usize {
    match memchr::memchr(b'/', &rel[i..]) {
        Some(k) => i + k,
        None => rel.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_segments() {
        assert!(path_is(b"/serviceValidate", b"/serviceValidate"));
        assert!(path_is(b"/serviceValidate/", b"/serviceValidate"));
        assert!(path_is(
            b"/serviceValidate;jsessionid=AB.cas1",
            b"/serviceValidate"
        ));
        assert!(path_is(b"/p3;x=1/serviceValidate", b"/p3/serviceValidate"));
        assert!(!path_is(b"/proxyValidate", b"/proxy"));
        assert!(!path_is(b"/proxy/x", b"/proxy"));
        assert!(!path_is(b"/serviceValidateX", b"/serviceValidate"));
        assert!(!path_is(b"/servicevalidate", b"/serviceValidate"));
        assert!(!path_is(b"", b"/proxy"));
        assert!(!path_is(b"/", b"/proxy"));
        assert!(!path_is(b"/proxy//", b"/proxy"));
    }

    #[test]
    fn endpoints_on_whole_segments() {
        let e = |rel: &str| endpoint_of(rel.as_bytes()).map(|k| ENDPOINTS[k]);
        assert_eq!(e("/proxy"), Some("/proxy"));
        assert_eq!(e("/proxy/"), Some("/proxy"));
        assert_eq!(e("/proxy;jsessionid=A.b"), Some("/proxy"));
        assert_eq!(e("/proxyValidate"), Some("/proxyValidate"));
        assert_eq!(e("/p3;x/proxyValidate/;y"), Some("/p3/proxyValidate"));
        assert_eq!(e("/prox"), None);
        assert_eq!(e("/proxy//"), None);
        assert_eq!(e(""), None);
        assert_eq!(e("/"), None);
        // Both paths of `endpoint_of` agree with `path_is`.
        for rel in [
            "/proxy",
            "/proxy/",
            "/proxyValidate",
            "/p3/serviceValidate",
            "/p3/serviceValidate//",
            "/login",
        ] {
            let plain = endpoint_of(rel.as_bytes());
            let slow = ENDPOINTS
                .iter()
                .position(|p| path_is(rel.as_bytes(), p.as_bytes()));
            assert_eq!(plain, slow, "{rel}");
        }
    }

    #[test]
    fn the_match_follows_endpoints() {
        for (i, e) in ENDPOINTS.iter().enumerate() {
            assert_eq!(endpoint_of(e.as_bytes()), Some(i), "{e}");
            assert_eq!(endpoint_of(format!("{e}/").as_bytes()), Some(i), "{e}/");
        }
    }

    #[test]
    fn masks() {
        assert_eq!(
            Paths::of(&["/validate", "/proxy"]),
            Paths::OneOf(0b100_0001)
        );
        assert!(VALIDATE.matches(Some(3)) && !VALIDATE.matches(Some(6)) && !VALIDATE.matches(None));
        assert!(Paths::Any.matches(None));
    }

    #[test]
    fn entries_are_in_rule_order() {
        let ranks: Vec<u8> = ENTRIES.iter().map(|e| e.rule as u8).collect();
        assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{ranks:?}");
        // A pool's entry masks are u32.
        assert!(ENTRIES.len() <= 32);
    }
}
