//! A demo node's modern mode: what CAS 4.1 to 7.x looks like to a front end
//! when the nodes share no keys (the default).
//!
//! - The TGT cookie is `TGC`, an opaque signed value (a compact-JWS-like
//!   `header.payload.signature`, HMAC-SHA256 with a key the node makes at
//!   start): only the node that set it accepts it, as with CAS's own
//!   per-node signing and encryption keys.
//! - Session ids carry no jvmRoute, and ticket ids a suffix only when the
//!   spec has one (CAS without `cas.host.name`).
//! - REST: `POST /v1/tickets` (a TGT), `POST /v1/tickets/TGT-...` (an ST),
//!   `DELETE /v1/tickets/TGT-...`.
//! - OAuth: `GET /oauth2.0/authorize` with the TGC gives a code (`OC-...`),
//!   `POST /oauth2.0/accessToken` redeems it once for an access token.
//!
//! `GET /logout` (both modes) expires the TGT cookie as CAS does:
//! `Max-Age=0` and an `Expires` in 1970.

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::*;

/// The node's own signing key for its `TGC` values.
pub(super) struct Signer(hmac::Key);

/// The JWS header of an HS256 token, base64url.
const HEADER: &str = "eyJhbGciOiJIUzI1NiJ9";

impl Signer {
    pub(super) fn new() -> Signer {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        // Generation fails only without an OS random source.
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).unwrap_or_else(|_| {
            hmac::Key::new(hmac::HMAC_SHA256, rand::random::<[u8; 32]>().as_slice())
        });
        Signer(key)
    }

    /// The cookie value for a TGT id.
    pub(super) fn seal(&self, tgt: &str) -> String {
        let signed = format!("{HEADER}.{}", URL_SAFE_NO_PAD.encode(tgt));
        let tag = hmac::sign(&self.0, signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The TGT id in a value this node signed.
    pub(super) fn open(&self, value: &str) -> Option<String> {
        let (signed, tag) = value.rsplit_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        hmac::verify(&self.0, signed.as_bytes(), &tag).ok()?;
        let payload = signed.strip_prefix(HEADER)?.strip_prefix('.')?;
        String::from_utf8(URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }
}

/// The TGT cookie's name in this mode.
pub(super) fn tgt_cookie(state: &State) -> &'static str {
    if state.spec.modern {
        "TGC"
    } else {
        "CASTGC"
    }
}

/// The TGT id the request's TGT cookie stands for, if this node set it.
pub(super) fn tgt_of(state: &State, req: &Request<Incoming>) -> Option<String> {
    let value = cookie(req, tgt_cookie(state))?;
    if state.spec.modern {
        state.signer.open(&value)
    } else {
        Some(value)
    }
}

/// The `Set-Cookie` value carrying `tgt`.
pub(super) fn tgt_set_cookie(state: &State, tgt: &str) -> String {
    let value = if state.spec.modern {
        state.signer.seal(tgt)
    } else {
        tgt.to_owned()
    };
    format!(
        "{}={value}; Path={}; Secure; HttpOnly",
        tgt_cookie(state),
        state.spec.prefix
    )
}

/// `GET /logout`: the TGT forgotten, its cookie expired.
pub(super) fn logout(state: &State, req: &Request<Incoming>) -> Resp {
    if let Some(tgt) = tgt_of(state, req) {
        lock(&state.tickets).remove(&tgt);
    }
    let mut resp = text(StatusCode::OK, "logged out\n");
    set_cookie(
        &mut resp,
        &format!(
            "{}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:10 GMT; Path={}; Secure; HttpOnly",
            tgt_cookie(state),
            state.spec.prefix
        ),
    );
    resp
}

async fn form(req: Request<Incoming>) -> Option<HashMap<String, String>> {
    let body = Limited::new(req.into_body(), MAX_FORM)
        .collect()
        .await
        .ok()?;
    Some(
        url::form_urlencoded::parse(&body.to_bytes())
            .into_owned()
            .collect(),
    )
}

/// `/v1/tickets` and `/v1/tickets/{TGT}`.
pub(super) async fn rest(state: &State, req: Request<Incoming>, tgt: Option<&str>) -> Resp {
    let method = req.method().clone();
    match (method, tgt) {
        (Method::POST, None) => {
            let Some(f) = form(req).await else {
                return text(StatusCode::BAD_REQUEST, "bad form\n");
            };
            let user = f.get("username").map(String::as_str).unwrap_or("");
            if user.is_empty() || Some(user) != f.get("password").map(String::as_str) {
                return text(StatusCode::UNAUTHORIZED, "bad credentials\n");
            }
            let tgt = state.issue("TGT", Kind::Tgt, user);
            let mut resp = text(StatusCode::CREATED, &format!("{tgt}\n"));
            let location = format!("{}/v1/tickets/{tgt}", state.spec.prefix);
            if let Ok(v) = header::HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp
        }
        (Method::POST, Some(tgt)) => {
            let Some(t) = state.valid(tgt, |k| matches!(k, Kind::Tgt)) else {
                return text(StatusCode::NOT_FOUND, "TGT not found on this node\n");
            };
            let service = form(req).await.and_then(|f| f.get("service").cloned());
            let Some(service) = service.filter(|s| !s.is_empty()) else {
                return text(StatusCode::BAD_REQUEST, "service required\n");
            };
            let st = state.issue("ST", Kind::St { service }, &t.user);
            text(StatusCode::OK, &st)
        }
        (Method::DELETE, Some(tgt)) => {
            lock(&state.tickets).remove(tgt);
            text(StatusCode::OK, &format!("{tgt}\n"))
        }
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "not allowed\n"),
    }
}

/// `POST /v1/users`: the user's attributes for the right password.
pub(super) async fn users(req: Request<Incoming>) -> Resp {
    let f = form(req).await.unwrap_or_default();
    let user = f.get("username").map(String::as_str).unwrap_or("");
    if user.is_empty() || Some(user) != f.get("password").map(String::as_str) {
        return text(StatusCode::UNAUTHORIZED, "bad credentials\n");
    }
    json(StatusCode::OK, &format!("{{\"id\":\"{user}\"}}"))
}

/// `GET /oauth2.0/authorize`: a code for a logged-in user.
pub(super) fn authorize(state: &State, req: &Request<Incoming>, redirect_uri: &str) -> Resp {
    let Some(t) = tgt_of(state, req).and_then(|id| state.valid(&id, |k| matches!(k, Kind::Tgt)))
    else {
        return text(StatusCode::UNAUTHORIZED, "not logged in on this node\n");
    };
    if redirect_uri.is_empty() {
        return text(StatusCode::BAD_REQUEST, "redirect_uri required\n");
    }
    let code = state.issue(
        "OC",
        Kind::St {
            service: redirect_uri.into(),
        },
        &t.user,
    );
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    redirect(&format!("{redirect_uri}{sep}code={code}"))
}

/// `POST /oauth2.0/accessToken`: the code redeemed once.
pub(super) async fn access_token(state: &State, req: Request<Incoming>) -> Resp {
    let f = form(req).await.unwrap_or_default();
    let field = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let redeemed = match field("grant_type") {
        "authorization_code" => state.redeem(field("code"), field("redirect_uri"), false),
        // The resource owner's password grant.
        "password" if !field("username").is_empty() && field("username") == field("password") => {
            Some(super::Ticket {
                kind: Kind::Tgt,
                user: field("username").to_owned(),
                expires: std::time::Instant::now(),
            })
        }
        _ => None,
    };
    match redeemed {
        Some(t) => {
            let at = state.issue("AT", Kind::Tgt, &t.user);
            json(
                StatusCode::OK,
                &format!(
                    "{{\"access_token\":\"{at}\",\"token_type\":\"bearer\",\"user\":\"{}\"}}",
                    t.user
                ),
            )
        }
        None => json(StatusCode::BAD_REQUEST, "{\"error\":\"invalid_grant\"}"),
    }
}

fn json(status: StatusCode, body: &str) -> Resp {
    respond(status, "application/json", format!("{body}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_signer_opens_its_values() {
        let (a, b) = (Signer::new(), Signer::new());
        let v = a.seal("TGT-1-abc-cas1");
        assert_eq!(v.split('.').count(), 3);
        assert!(!v.contains("TGT-"));
        assert_eq!(a.open(&v).as_deref(), Some("TGT-1-abc-cas1"));
        assert_eq!(b.open(&v), None);
        let mut forged = v.clone();
        forged.replace_range(HEADER.len() + 1..HEADER.len() + 2, "X");
        assert_eq!(a.open(&forged), None);
        assert_eq!(a.open("garbage"), None);
    }
}
