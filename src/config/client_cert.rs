//! Client certificates in the configuration: `[tls] client_auth`,
//! `client_ca`, `client_crl`; the `[client_cert]` section (the headers that
//! tell nodes of a certificate); a pool's `client_cert_required`,
//! `client_cert_paths` and `client_cert_match`.

use std::path::{Path, PathBuf};

use http::HeaderName;
use toml::Spanned;

use super::diag::Diags;
use super::edge::header_name;
use super::raw::{RawClientCert, RawPool, RawTls, Str};
use super::values::{each, file, host_name};
use crate::routing::cert::CertMatch;

/// `[tls] client_auth`: whether the TLS handshake asks for a certificate.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// Never asked for.
    #[default]
    Off,
    /// Asked for; a connection without one, or with one that does not
    /// verify, is still served and marked `NONE` or `FAILED:reason`.
    Optional,
    /// The handshake fails without a certificate that verifies.
    Required,
}

/// Who may present client certificates.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientTrust {
    pub auth: ClientAuth,
    /// PEM bundle of the issuers trusted (also advertised to browsers).
    pub ca: Option<PathBuf>,
    /// CRL files (PEM or DER) checked for every certificate of the chain.
    pub crls: Vec<PathBuf>,
    /// When not empty, certificates are asked for only in handshakes for
    /// these server names (SNI, lowercase), so that browsers show no
    /// certificate picker on the others.
    pub names: Vec<String>,
}

/// How the certificate itself is sent.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum CertFormat {
    /// PEM on one line, line breaks turned into spaces (Apache's
    /// `mod_headers`; what CAS's `RequestHeaderX509CertificateExtractor`
    /// and Tomcat's `SSLValve` read).
    #[default]
    Pem,
    /// PEM percent-encoded (nginx's `$ssl_client_escaped_cert`).
    PemUrlencoded,
    /// The DER certificate in base64, no markers.
    Base64,
}

/// `[client_cert]`: header names (`None`: not sent) and format.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientCertHeaders {
    pub format: CertFormat,
    pub cert: Option<HeaderName>,
    pub subject: Option<HeaderName>,
    pub issuer: Option<HeaderName>,
    pub serial: Option<HeaderName>,
    pub san: Option<HeaderName>,
    pub verify: Option<HeaderName>,
    /// Also send Envoy's `x-forwarded-client-cert`.
    pub xfcc: bool,
}

/// The default header names: nginx's variable names, which Apereo CAS
/// (`cas.authn.x509.ssl-header-name=ssl_client_cert`) reads.
pub mod names {
    pub const CERT: &str = "ssl_client_cert";
    pub const SUBJECT: &str = "ssl_client_s_dn";
    pub const ISSUER: &str = "ssl_client_i_dn";
    pub const SERIAL: &str = "ssl_client_serial";
    pub const SAN: &str = "ssl_client_san";
    pub const VERIFY: &str = "ssl_client_verify";
    pub const XFCC: &str = "x-forwarded-client-cert";
}

impl Default for ClientCertHeaders {
    fn default() -> Self {
        let h = HeaderName::from_static;
        ClientCertHeaders {
            format: CertFormat::Pem,
            cert: Some(h(names::CERT)),
            subject: Some(h(names::SUBJECT)),
            issuer: Some(h(names::ISSUER)),
            serial: Some(h(names::SERIAL)),
            san: Some(h(names::SAN)),
            verify: Some(h(names::VERIFY)),
            xfcc: false,
        }
    }
}

/// A pool's certificate requirements and routing rule.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoolCert {
    /// Every request of the pool needs a verified certificate (else 403).
    pub required: bool,
    /// Paths (prefixes on segment boundaries, under the pool's prefix)
    /// that need one.
    pub paths: Vec<String>,
    /// The pool takes only requests whose verified certificate matches.
    pub matches: Option<CertMatch>,
}

/// The client keys of `[tls]`.
pub(super) fn trust(t: &RawTls, base: &Path, d: &mut Diags) -> Option<ClientTrust> {
    let auth = match t.client_auth.as_ref() {
        None => Some(ClientAuth::Off),
        Some(v) => match v.get_ref().as_str() {
            "off" => Some(ClientAuth::Off),
            "optional" => Some(ClientAuth::Optional),
            "required" => Some(ClientAuth::Required),
            other => {
                d.error(
                    v.span(),
                    format!("client_auth `{other}` is not \"off\", \"optional\" or \"required\""),
                );
                None
            }
        },
    };
    let ca = match &t.client_ca {
        Some(f) => file(f, base, d).map(Some),
        None => Some(None),
    };
    let crls = each(t.client_crl.as_ref(), d, |f, d| file(f, base, d));
    match (auth, &t.client_ca, &t.client_auth) {
        (Some(ClientAuth::Optional | ClientAuth::Required), None, Some(v)) => d.error(
            v.span(),
            "client_auth needs `client_ca`: the issuers whose certificates are accepted",
        ),
        (Some(ClientAuth::Off), Some(ca), _) => d.warn(
            ca.span(),
            "`client_ca` is set but client_auth is \"off\": no certificate is asked for",
        ),
        _ => {}
    }
    if let (Some(crl), None) = (&t.client_crl, &t.client_ca) {
        d.error(crl.span(), "`client_crl` is set without `client_ca`");
    }
    let names = each(t.client_auth_names.as_ref(), d, |n, d| {
        host_name(n, "client_auth_names entry", false, d)
    });
    if let (Some(l), Some(ClientAuth::Off)) = (&t.client_auth_names, auth) {
        if !l.get_ref().is_empty() {
            d.error(
                l.span(),
                "`client_auth_names` needs client_auth = \"optional\" or \"required\"",
            );
        }
    }
    Some(ClientTrust {
        auth: auth?,
        ca: ca?,
        crls: crls?,
        names: names?,
    })
}

/// `[client_cert]`, with defaults.
pub(super) fn headers(
    raw: Option<Spanned<RawClientCert>>,
    d: &mut Diags,
) -> Option<ClientCertHeaders> {
    let Some(raw) = raw.map(Spanned::into_inner) else {
        return Some(ClientCertHeaders::default());
    };
    let def = ClientCertHeaders::default();
    let format = match raw.format.as_ref() {
        None => Some(def.format),
        Some(v) => match v.get_ref().as_str() {
            "pem" => Some(CertFormat::Pem),
            "pem-urlencoded" => Some(CertFormat::PemUrlencoded),
            "base64" => Some(CertFormat::Base64),
            other => {
                d.error(
                    v.span(),
                    format!("format `{other}` is not \"pem\", \"pem-urlencoded\" or \"base64\""),
                );
                None
            }
        },
    };
    let mut seen: Vec<(HeaderName, std::ops::Range<usize>)> = Vec::new();
    let mut name = |v: &Option<Str>, default: Option<HeaderName>| -> Option<Option<HeaderName>> {
        let Some(v) = v else {
            return Some(default);
        };
        if v.get_ref().is_empty() {
            return Some(None);
        }
        let n = header_name(v, d)?;
        if n.as_str().starts_with("x-forwarded-") || n == http::header::COOKIE {
            d.error(v.span(), format!("`{n}` is set by casfront or the client"));
            return None;
        }
        if let Some((_, first)) = seen.iter().find(|(s, _)| *s == n) {
            let (line, col) = d.line_col(first.start);
            d.error(v.span(), format!("`{n}` is already used (at {line}:{col})"));
            return None;
        }
        seen.push((n.clone(), v.span()));
        Some(Some(n))
    };
    let cert = name(&raw.cert_header, def.cert);
    let subject = name(&raw.subject_header, def.subject);
    let issuer = name(&raw.issuer_header, def.issuer);
    let serial = name(&raw.serial_header, def.serial);
    let san = name(&raw.san_header, def.san);
    let verify = name(&raw.verify_header, def.verify);
    Some(ClientCertHeaders {
        format: format?,
        cert: cert?,
        subject: subject?,
        issuer: issuer?,
        serial: serial?,
        san: san?,
        verify: verify?,
        xfcc: raw.xfcc.map_or(def.xfcc, Spanned::into_inner),
    })
}

/// A pool's client certificate keys. `auth` is `[tls] client_auth` when
/// it was valid; `prefix` the pool's normalised path prefix.
pub(super) fn pool(
    p: &RawPool,
    prefix: Option<&str>,
    auth: Option<ClientAuth>,
    d: &mut Diags,
) -> Option<PoolCert> {
    let paths = each(p.client_cert_paths.as_ref(), d, |v, d| {
        cert_path(v, prefix, d)
    });
    let matches = match &p.client_cert_match {
        None => Some(None),
        Some(v) => match CertMatch::parse(v.get_ref()) {
            Ok(m) => Some(Some(m)),
            Err(why) => {
                d.error(v.span(), format!("client_cert_match: {why}"));
                None
            }
        },
    };
    if auth == Some(ClientAuth::Off) {
        let spans = [
            p.client_cert_required
                .as_ref()
                .filter(|r| *r.get_ref())
                .map(Spanned::span),
            p.client_cert_paths.as_ref().map(Spanned::span),
            p.client_cert_match.as_ref().map(Spanned::span),
        ];
        for span in spans.into_iter().flatten() {
            d.error(
                span,
                "this needs client certificates: set [tls] client_auth = \"optional\" (or \"required\") and client_ca",
            );
        }
    }
    Some(PoolCert {
        required: p
            .client_cert_required
            .as_ref()
            .is_some_and(|r| *r.get_ref()),
        paths: paths?,
        matches: matches?,
    })
}

/// One of `client_cert_paths`: under the pool's prefix, no trailing `/`.
fn cert_path(v: &Str, prefix: Option<&str>, d: &mut Diags) -> Option<String> {
    let p = v.get_ref();
    let trimmed = match p.trim_end_matches('/') {
        "" => "/",
        t => t,
    };
    let under = |prefix: &str| {
        prefix == "/"
            || trimmed
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    if !p.starts_with('/') || p.contains(['?', '#', ';']) || p.contains(char::is_whitespace) {
        d.error(
            v.span(),
            format!("`{p}` is not a path (it starts with `/`, without query or spaces)"),
        );
        return None;
    }
    // Compared with request paths as the node maps them.
    let mapped = trimmed.split('/').all(|seg| !matches!(seg, "." | ".."))
        && !trimmed.contains("//")
        && !trimmed.contains('%');
    if !mapped {
        d.error(
            v.span(),
            format!("`{p}` has `%`, `//`, `.` or `..`: write the path as the node sees it"),
        );
        return None;
    }
    if let Some(prefix) = prefix.filter(|pre| !under(pre)) {
        d.error(
            v.span(),
            format!("`{p}` is not under the pool's path_prefix `{prefix}`"),
        );
        return None;
    }
    Some(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, CertFormat, ClientAuth, PoolCert};
    use std::path::Path;

    const BASE: &str = "[listen]\nhttps = \"127.0.0.1:8443\"\n";
    const POOL: &str = "[[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n";
    const NODE: &str = "[[pool.node]]\nname = \"cas1\"\nurl = \"http://10.0.0.1:8080\"\n";

    fn with(tls: &str, pool: &str, rest: &str) -> crate::config::Parsed {
        // A `pool` that brings its own nodes gets no other.
        let node = if pool.contains("[[pool.node]]") {
            ""
        } else {
            NODE
        };
        let text = format!(
            "{BASE}[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n{tls}\n{rest}\n{POOL}{pool}\n{node}"
        );
        parse(&text, Path::new("/etc/casfront"))
    }

    fn errors(p: &crate::config::Parsed) -> Vec<String> {
        p.errors().map(ToString::to_string).collect()
    }

    #[test]
    fn defaults_are_off_and_nginx_names() {
        let p = with("", "", "");
        let c = p.config.unwrap();
        assert_eq!(c.tls.client.auth, ClientAuth::Off);
        assert_eq!(c.client_cert.format, CertFormat::Pem);
        assert_eq!(c.client_cert.cert.unwrap().as_str(), "ssl_client_cert");
        assert_eq!(c.client_cert.verify.unwrap().as_str(), "ssl_client_verify");
        assert!(!c.client_cert.xfcc);
        assert_eq!(c.pools[0].client_cert, PoolCert::default());
    }

    #[test]
    fn everything_set() {
        let p = with(
            "client_auth = \"optional\"\nclient_ca = \"ca.pem\"\nclient_crl = [\"a.crl\"]\nclient_auth_names = [\"X509.cas.example.edu\"]",
            "client_cert_required = true\nclient_cert_paths = [\"/cas/x509/\"]\nclient_cert_match = \"subject.OU=Smart Card\"",
            "[client_cert]\nformat = \"base64\"\ncert_header = \"X-Client-Cert\"\nsan_header = \"\"\nxfcc = true",
        );
        assert!(errors(&p).is_empty(), "{:?}", errors(&p));
        let c = p.config.unwrap();
        assert_eq!(c.tls.client.auth, ClientAuth::Optional);
        assert_eq!(c.tls.client.ca.unwrap(), Path::new("/etc/casfront/ca.pem"));
        assert_eq!(c.tls.client.crls.len(), 1);
        assert_eq!(c.tls.client.names, ["x509.cas.example.edu"]);
        assert_eq!(c.client_cert.format, CertFormat::Base64);
        assert_eq!(c.client_cert.cert.unwrap().as_str(), "x-client-cert");
        assert!(c.client_cert.san.is_none());
        assert!(c.client_cert.xfcc);
        let pc = &c.pools[0].client_cert;
        assert!(pc.required);
        assert_eq!(pc.paths, ["/cas/x509"]);
        assert_eq!(pc.matches.as_ref().unwrap().value, "Smart Card");
    }

    #[test]
    fn mistakes_are_reported_with_positions() {
        let p = with(
            "client_auth = \"sometimes\"\nclient_crl = [\"a.crl\"]",
            "",
            "[client_cert]\nformat = \"der\"\ncert_header = \"Host\"\nsubject_header = \"x-forwarded-user\"\nissuer_header = \"ssl_client_verify\"",
        );
        let e = errors(&p).join("\n");
        for want in [
            "6:15: error: client_auth `sometimes`",
            "7:14: error: `client_crl` is set without `client_ca`",
            "format `der`",
            "`host` is casfront's to set",
            "`x-forwarded-user` is set by casfront",
        ] {
            assert!(e.contains(want), "{want} missing in:\n{e}");
        }
        // The default verify header is already ssl_client_verify.
        let p = with(
            "client_auth = \"optional\"\nclient_ca = \"ca.pem\"",
            "",
            "[client_cert]\nverify_header = \"V\"\nissuer_header = \"v\"",
        );
        assert!(
            errors(&p).join("\n").contains("`v` is already used"),
            "{:?}",
            errors(&p)
        );
        let p = with("client_auth = \"required\"", "", "");
        assert!(errors(&p)
            .join("\n")
            .contains("client_auth needs `client_ca`"));
    }

    #[test]
    fn pool_keys_need_client_auth_and_paths_under_the_prefix() {
        let p = with(
            "",
            "client_cert_required = true\nclient_cert_match = \"subject.OU=x\"",
            "",
        );
        let e = errors(&p);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("needs client certificates"), "{e:?}");
        let p = with(
            "client_auth = \"optional\"\nclient_ca = \"ca.pem\"",
            "client_cert_paths = [\"/cassandra\", \"x509\", \"/cas/ok\", \"/cas//x\", \"/cas/%78\"]\nclient_cert_match = \"owner=x\"",
            "",
        );
        let e = errors(&p).join("\n");
        assert!(
            e.contains("`/cassandra` is not under the pool's path_prefix `/cas`"),
            "{e}"
        );
        assert!(e.contains("`x509` is not a path"), "{e}");
        assert!(e.contains("`/cas//x` has `%`, `//`"), "{e}");
        assert!(e.contains("`/cas/%78` has `%`"), "{e}");
        assert!(e.contains("client_cert_match: the field `owner`"), "{e}");
        let p = with("client_ca = \"ca.pem\"", "", "");
        assert!(p.config.is_some());
        assert!(p
            .warnings()
            .any(|w| w.to_string().contains("client_auth is \"off\"")));
    }

    #[test]
    fn pools_routing_by_certificate_may_share_a_prefix() {
        let tls = "client_auth = \"optional\"\nclient_ca = \"ca.pem\"";
        let second = "[[pool]]\nname = \"smartcard\"\npath_prefix = \"/cas\"\nclient_cert_match = \"subject.OU=Smart Card\"\n[[pool.node]]\nname = \"sc1\"\nurl = \"http://10.0.0.9:8080\"\n";
        let p = with(tls, &format!("{NODE}{second}"), "");
        assert!(errors(&p).is_empty(), "{:?}", errors(&p));
        // Two plain pools on one prefix still clash.
        let plain = second.replace("client_cert_match = \"subject.OU=Smart Card\"\n", "");
        let p = with(tls, &format!("{NODE}{plain}"), "");
        assert!(
            errors(&p).join("\n").contains("duplicate path_prefix"),
            "{:?}",
            errors(&p)
        );
    }
}
