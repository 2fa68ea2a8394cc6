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

/// Which pool-relative paths an entry applies to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Paths {
    Any,
    /// Any of these paths, matched on whole segments (see [`path_is`]).
    OneOf(&'static [&'static str]),
}

impl Paths {
    /// `plain`: `rel` has no `;` (no path parameter), the common case,
    /// where a whole-segment match is a plain comparison.
    pub fn matches(self, rel: &[u8], plain: bool) -> bool {
        match self {
            Paths::Any => true,
            Paths::OneOf(list) if plain => list.iter().any(|p| {
                let p = p.as_bytes();
                rel.len() >= p.len()
                    && rel.len() <= p.len() + 1
                    && rel[..p.len()] == *p
                    && matches!(rel.get(p.len()), None | Some(b'/'))
            }),
            Paths::OneOf(list) => list.iter().any(|p| path_is(rel, p.as_bytes())),
        }
    }
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
}

/// CAS validation endpoints (CAS 1, 2, 3 and SAML 1.1 protocols).
const VALIDATE: &[&str] = &[
    "/validate",
    "/serviceValidate",
    "/proxyValidate",
    "/samlValidate",
    "/p3/serviceValidate",
    "/p3/proxyValidate",
];

/// The extractor table, in rule order (DESIGN §1).
pub static ENTRIES: &[Entry] = &[
    Entry {
        name: "validate-ticket",
        rule: Rule::Ticket,
        methods: Methods::GET_HEAD,
        paths: Paths::OneOf(VALIDATE),
        source: Source::QueryTicket("ticket"),
    },
    Entry {
        name: "saml-artifact",
        rule: Rule::Ticket,
        methods: Methods::POST,
        paths: Paths::OneOf(&["/samlValidate"]),
        source: Source::SamlArtifact,
    },
    Entry {
        name: "saml-ticket",
        rule: Rule::Ticket,
        methods: Methods::POST,
        paths: Paths::OneOf(&["/samlValidate"]),
        source: Source::QueryTicket("ticket"),
    },
    Entry {
        name: "proxy-pgt",
        rule: Rule::Pgt,
        methods: Methods::GET_HEAD,
        paths: Paths::OneOf(&["/proxy"]),
        source: Source::QueryTicket("pgt"),
    },
    Entry {
        name: "tgc-cookie",
        rule: Rule::Tgc,
        methods: Methods::GET_HEAD,
        paths: Paths::Any,
        source: Source::TgcCookie,
    },
    Entry {
        name: "session-cookie",
        rule: Rule::Session,
        methods: Methods::ANY,
        paths: Paths::Any,
        source: Source::SessionCookie,
    },
    Entry {
        name: "session-path",
        rule: Rule::Session,
        methods: Methods::ANY,
        paths: Paths::Any,
        source: Source::SessionPathParam,
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
    fn plain_and_parameter_paths_agree() {
        let paths = Paths::OneOf(&["/proxy", "/p3/serviceValidate"]);
        for rel in ["/proxy", "/proxy/", "/proxyValidate", "/prox", "/p3/serviceValidate", "/p3/serviceValidate//", "", "/"] {
            let rel = rel.as_bytes();
            let slow = paths.matches(rel, false);
            assert_eq!(paths.matches(rel, true), slow, "{}", String::from_utf8_lossy(rel));
        }
    }

    #[test]
    fn entries_are_in_rule_order() {
        let ranks: Vec<u8> = ENTRIES.iter().map(|e| e.rule as u8).collect();
        assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{ranks:?}");
        assert!(ENTRIES.len() < usize::from(u8::MAX));
    }
}
