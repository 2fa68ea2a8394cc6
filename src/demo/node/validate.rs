//! A demo node's validation endpoints: CAS 1.0 `/validate`, CAS 2/3
//! `/serviceValidate` and `/proxyValidate` (with a PGT on `pgtUrl`), SAML
//! 1.1 `/samlValidate`, and `/proxy` (a PT from a PGT).

use super::*;

pub(super) fn validate1(state: &State, ticket: &str, service: &str) -> Resp {
    match state.redeem(ticket, service, false) {
        Some(t) => text(StatusCode::OK, &format!("yes\n{}\n", t.user)),
        None => text(StatusCode::OK, "no\n\n"),
    }
}

pub(super) fn validate2(
    state: &State,
    ticket: &str,
    service: &str,
    pgt_url: &str,
    proxies: bool,
) -> Resp {
    let Some(t) = state.redeem(ticket, service, proxies) else {
        let reason = if ticket.is_empty() {
            "INVALID_REQUEST"
        } else {
            "INVALID_TICKET"
        };
        return xml(format!(
            "<cas:authenticationFailure code=\"{reason}\">Ticket {} not recognized</cas:authenticationFailure>",
            crate::routing::redact::redact(ticket.as_bytes(), None)
        ));
    };
    let mut extra = String::new();
    let mut pgt = None;
    if !pgt_url.is_empty() {
        let iou = format!(
            "PGTIOU-{}-{}",
            state.serial.fetch_add(1, Ordering::Relaxed),
            Alphanumeric.sample_string(&mut rand::rng(), 20)
        );
        extra = format!("<cas:proxyGrantingTicket>{iou}</cas:proxyGrantingTicket>");
        pgt = Some(state.issue("PGT", Kind::Pgt, &t.user));
    }
    let mut resp = xml(format!(
        "<cas:authenticationSuccess><cas:user>{}</cas:user>{extra}</cas:authenticationSuccess>",
        t.user
    ));
    if let Some(pgt) = pgt.and_then(|p| header::HeaderValue::from_str(&p).ok()) {
        resp.headers_mut().insert("x-demo-pgt", pgt);
    }
    resp
}

/// SAML 1.1 validation: the ST is the `AssertionArtifact` of the SOAP body.
/// The body length received is echoed in `X-Demo-Body-Len`.
pub(super) async fn saml_validate(state: &State, req: Request<Incoming>, target: &str) -> Resp {
    let Ok(body) = Limited::new(req.into_body(), 64 * MAX_FORM).collect().await else {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n");
    };
    let body = body.to_bytes();
    let ticket = crate::routing::saml::artifact_text(&body).and_then(|raw| {
        crate::routing::saml::with_artifact(raw, |v| {
            v.map(|v| String::from_utf8_lossy(v).into_owned())
        })
    });
    let status = match ticket.as_deref().and_then(|t| state.redeem(t, target, false)) {
        Some(t) => format!(
            "<samlp:Status><samlp:StatusCode Value=\"samlp:Success\"/></samlp:Status>\
             <saml:Assertion><saml:AuthenticationStatement><saml:Subject>\
             <saml:NameIdentifier>{}</saml:NameIdentifier></saml:Subject></saml:AuthenticationStatement></saml:Assertion>",
            t.user
        ),
        None => "<samlp:Status><samlp:StatusCode Value=\"samlp:Responder\"/></samlp:Status>".to_owned(),
    };
    let mut resp = respond(
        StatusCode::OK,
        "text/xml; charset=utf-8",
        format!("<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\"><SOAP-ENV:Body><samlp:Response>{status}</samlp:Response></SOAP-ENV:Body></SOAP-ENV:Envelope>\n"),
    );
    resp.headers_mut()
        .insert("x-demo-body-len", header::HeaderValue::from(body.len()));
    resp
}

pub(super) fn proxy(state: &State, pgt: &str, target: &str) -> Resp {
    match state.valid(pgt, |k| matches!(k, Kind::Pgt)) {
        Some(t) if !target.is_empty() => {
            let pt = state.issue(
                "PT",
                Kind::Pt {
                    service: target.into(),
                },
                &t.user,
            );
            xml(format!(
                "<cas:proxySuccess><cas:proxyTicket>{pt}</cas:proxyTicket></cas:proxySuccess>"
            ))
        }
        _ => xml(
            "<cas:proxyFailure code=\"INVALID_TICKET\">PGT not recognized</cas:proxyFailure>"
                .into(),
        ),
    }
}
