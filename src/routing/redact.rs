//! What logs and `explain` may show of a credential (tickets, cookies and
//! passwords are credentials: never logged whole): a ticket id
//! becomes its prefix and, only when it ends in a suffix configured for the
//! pool, that suffix (`ST-…-cas2`); a compact JWS its `eyJ` and length;
//! anything else its length only.

use super::parse::{decoded_eq, ticket_prefix_end};
use super::table::PoolInfo;

/// A printable, non-secret form of a ticket id or cookie value. `pool`, when
/// given, lets a configured suffix be shown.
pub fn redact(value: &[u8], pool: Option<&PoolInfo>) -> String {
    if let Some(dash) = ticket_prefix_end(value) {
        let prefix = String::from_utf8_lossy(&value[..dash]);
        let suffix = pool
            .and_then(|p| p.suffixes.lookup(value, dash))
            .map(|m| &value[value.len() - m.len..]);
        return match suffix {
            Some(s) => format!("{prefix}-…-{}", String::from_utf8_lossy(s)),
            None => format!("{prefix}-…"),
        };
    }
    if value.starts_with(b"eyJ") {
        return format!("eyJ…({} bytes)", value.len());
    }
    format!("…({} bytes)", value.len())
}

/// Query parameters whose values are credentials (CAS tickets, SAML
/// artifacts and messages, OAuth/OIDC codes, tokens, client secrets and
/// PKCE verifiers, a password sent the wrong way).
const SECRET_PARAMS: [&str; 22] = [
    "ticket",
    "pgt",
    "pgtId",
    "pgtIou",
    "SAMLart",
    "SAMLRequest",
    "SAMLResponse",
    "logoutRequest",
    "code",
    "code_verifier",
    "refresh_token",
    "access_token",
    "id_token",
    "id_token_hint",
    "token",
    "client_secret",
    "client_assertion",
    "assertion",
    "password",
    "RelayState",
    "state",
    "delegatedclientid",
];

/// A request target (path and query) fit for a log: the values of
/// credential query parameters redacted, path parameters (`;jsessionid=`)
/// redacted, and any path segment that looks like a ticket id (REST
/// `/v1/tickets/TGT-...`) redacted.
pub fn target(target: &str, pool: Option<&PoolInfo>) -> String {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let mut out = String::with_capacity(target.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let mut params = segment.split(';');
        let name = params.next().unwrap_or("");
        // Read decoded, as routing reads it (`%54GT-...` is a TGT id).
        let decoded: std::borrow::Cow<'_, [u8]> = percent_encoding::percent_decode_str(name).into();
        if ticket_prefix_end(&decoded).is_some() {
            out.push_str(&redact(&decoded, pool));
        } else {
            out.push_str(name);
        }
        for p in params {
            out.push(';');
            match p.split_once('=') {
                Some((k, v)) => {
                    out.push_str(k);
                    out.push('=');
                    out.push_str(&redact(v.as_bytes(), pool));
                }
                None => out.push_str(p),
            }
        }
    }
    if let Some(q) = query {
        out.push('?');
        for (i, pair) in q.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                // Keys are compared decoded, as the routing core reads them
                // (`t%69cket` is `ticket`).
                Some((k, v))
                    if SECRET_PARAMS
                        .iter()
                        .any(|p| decoded_eq(k.as_bytes(), p.as_bytes(), true)) =>
                {
                    out.push_str(k);
                    out.push('=');
                    out.push_str(&redact(v.as_bytes(), pool));
                }
                _ => out.push_str(pair),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{redact, target};

    #[test]
    fn targets_lose_their_credentials() {
        let t = table();
        let cas = t.pool(0);
        assert_eq!(
            target(
                "/cas/serviceValidate?service=https%3A%2F%2Fa&ticket=ST-9-secret-cas2",
                cas
            ),
            "/cas/serviceValidate?service=https%3A%2F%2Fa&ticket=ST-…-cas2"
        );
        assert_eq!(
            target("/cas/proxy?targetService=x&pgt=PGT-1-secret", cas),
            "/cas/proxy?targetService=x&pgt=PGT-…"
        );
        assert_eq!(
            target("/cas/login;jsessionid=ABCDEF0123.cas1?service=s", cas),
            "/cas/login;jsessionid=…(15 bytes)?service=s"
        );
        assert_eq!(
            target("/cas/v1/tickets/TGT-3-secret-cas1", cas),
            "/cas/v1/tickets/TGT-…-cas1"
        );
        assert_eq!(
            target(
                "/cas/oauth2.0/accessToken?code=OC-1-s&refresh_token=abc",
                cas
            ),
            "/cas/oauth2.0/accessToken?code=OC-…&refresh_token=…(3 bytes)"
        );
        assert_eq!(
            target("/cas/validate?t%69cket=ST-1-secret&%70gt=PGT-2-x", cas),
            "/cas/validate?t%69cket=ST-…&%70gt=PGT-…"
        );
        // OAuth/OIDC secrets, and a ticket id percent-encoded in the path.
        assert_eq!(
            target(
                "/cas/oidc/token?client_id=app&client_secret=s3cr3t&code_verifier=v3r1f13r&grant_type=x",
                cas
            ),
            "/cas/oidc/token?client_id=app&client_secret=…(6 bytes)&code_verifier=…(8 bytes)&grant_type=x"
        );
        assert_eq!(
            target("/cas/v1/tickets/%54GT-5-secret-cas1", cas),
            "/cas/v1/tickets/TGT-…-cas1"
        );
        assert_eq!(
            target("/cas/oidc/logout?id_token_hint=eyJhbGciOi.e30.sig", cas),
            "/cas/oidc/logout?id_token_hint=eyJ…(18 bytes)"
        );
        // Nothing to hide: unchanged.
        for plain in ["/", "/cas/login?service=x&renew=true", "/cas/", "/a//b?&x"] {
            assert_eq!(target(plain, cas), plain);
        }
    }
    use crate::routing::tests::table;

    #[test]
    fn never_more_than_prefix_and_configured_suffix() {
        let t = table();
        let cas = t.pool(0);
        assert_eq!(
            redact(b"ST-12-Xy9kQ-rT3-cas-02.example.edu", cas),
            "ST-…-cas-02.example.edu"
        );
        assert_eq!(redact(b"ST-1-abc-cas2", cas), "ST-…-cas2");
        // No configured suffix: nothing of the random part.
        assert_eq!(redact(b"ST-12-Xy9kQ-rT3", cas), "ST-…");
        assert_eq!(redact(b"ST-1-2pVhiVjwq", cas), "ST-…");
        assert_eq!(redact(b"ST-1-abc-cas2", None), "ST-…");
        assert_eq!(redact(b"TGT-", cas), "TGT-…");
        assert_eq!(
            redact(b"eyJhbGciOiJIUzUxMiJ9.e30.sig", cas),
            "eyJ…(28 bytes)"
        );
        assert_eq!(redact(b"8F3A2B1C9D0E.cas1", cas), "…(17 bytes)");
        assert_eq!(redact(&[0xff, b'S', b'T', b'-'], cas), "…(4 bytes)");
    }
}
