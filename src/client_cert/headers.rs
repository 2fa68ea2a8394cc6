//! The headers that tell a node of the client's certificate, and the
//! stripping that makes them unforgeable: every name casfront may send
//! (the configured ones, the defaults, `x-forwarded-client-cert`), with
//! `_` and `-` taken as the same (CGI and PHP fold them), is removed from
//! every request in every mode before casfront sets its own. Values are
//! made once per connection ([`Values`]); a request only clones them.

use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::x509::{Facts, San};
use super::ClientCert;
use crate::config::client_cert::names;
use crate::config::{CertFormat, ClientCertHeaders};

/// nginx's escaping of `$ssl_client_escaped_cert` (RFC 3986 unreserved
/// characters are kept).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The header values of one verified certificate.
#[derive(Clone, Debug)]
pub struct Values {
    pub cert: HeaderValue,
    pub subject: HeaderValue,
    pub issuer: HeaderValue,
    pub serial: HeaderValue,
    /// `None` when the certificate has none of the SANs read.
    pub san: Option<HeaderValue>,
    /// Only when `[client_cert] xfcc` is on.
    pub xfcc: Option<HeaderValue>,
}

impl Values {
    pub fn new(
        der: &[u8],
        facts: &Facts,
        format: CertFormat,
        xfcc: bool,
    ) -> Result<Values, String> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let pem = pem_lines(&b64);
        let cert = match format {
            CertFormat::Pem => pem.join(" "),
            CertFormat::PemUrlencoded => escaped(&pem),
            CertFormat::Base64 => b64.clone(),
        };
        let value = |s: &str| HeaderValue::from_str(s).map_err(|e| e.to_string());
        let sans = san_list(&facts.sans);
        Ok(Values {
            cert: value(&cert)?,
            subject: value(&facts.identity.subject.rfc4514)?,
            issuer: value(&facts.identity.issuer.rfc4514)?,
            serial: value(&facts.serial)?,
            san: (!sans.is_empty()).then(|| value(&sans)).transpose()?,
            xfcc: xfcc.then(|| value(&envoy(der, &pem, facts))).transpose()?,
        })
    }
}

/// The PEM lines: markers and 64-column base64.
fn pem_lines(b64: &str) -> Vec<&str> {
    let mut lines = vec!["-----BEGIN CERTIFICATE-----"];
    lines.extend(
        b64.as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap_or_default()),
    );
    lines.push("-----END CERTIFICATE-----");
    lines
}

/// The PEM text, percent-encoded.
fn escaped(pem: &[&str]) -> String {
    let mut text = pem.join("\n");
    text.push('\n');
    utf8_percent_encode(&text, COMPONENT).to_string()
}

/// `email:a@b, DNS:h, URI:u, UPN:p`; a value's `,`, `%` and any byte
/// outside visible ASCII are percent-encoded.
fn san_list(sans: &[San]) -> String {
    const SEP: &AsciiSet = &percent_encoding::CONTROLS.add(b',').add(b'%');
    let mut out = String::new();
    for san in sans {
        let (kind, v) = match san {
            San::Email(v) => ("email", v),
            San::Dns(v) => ("DNS", v),
            San::Uri(v) => ("URI", v),
            San::Upn(v) => ("UPN", v),
        };
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(kind);
        out.push(':');
        out.extend(utf8_percent_encode(v, SEP));
    }
    out
}

/// Envoy's `x-forwarded-client-cert`: `Hash` (SHA-256 of the DER, hex),
/// `Cert` (URL-encoded PEM), `Subject` (quoted), each `URI` and `DNS`.
fn envoy(der: &[u8], pem: &[&str], facts: &Facts) -> String {
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut out = String::from("Hash=");
    for b in hash.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out.push_str(";Cert=\"");
    out.push_str(&escaped(pem));
    out.push_str("\";Subject=");
    quoted(&facts.identity.subject.rfc4514, &mut out);
    for san in &facts.sans {
        let (key, v) = match san {
            San::Uri(v) => ("URI", v),
            San::Dns(v) => ("DNS", v),
            _ => continue,
        };
        out.push(';');
        out.push_str(key);
        out.push('=');
        // Bytes a header may not carry, percent-encoded.
        let v = utf8_percent_encode(v, percent_encoding::CONTROLS).to_string();
        if v.contains([',', ';', '=', '"']) {
            quoted(&v, &mut out);
        } else {
            out.push_str(&v);
        }
    }
    out
}

fn quoted(v: &str, out: &mut String) {
    out.push('"');
    for c in v.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// What a configuration sends, and strips.
#[derive(Debug)]
pub struct CertHeaders {
    names: ClientCertHeaders,
    strip: Strip,
}

impl CertHeaders {
    pub fn new(names: &ClientCertHeaders) -> CertHeaders {
        let mut all: Vec<&str> = vec![
            names::CERT,
            names::SUBJECT,
            names::ISSUER,
            names::SERIAL,
            names::SAN,
            names::VERIFY,
            names::XFCC,
        ];
        let configured = [
            &names.cert,
            &names.subject,
            &names.issuer,
            &names.serial,
            &names.san,
            &names.verify,
        ];
        all.extend(configured.into_iter().flatten().map(HeaderName::as_str));
        CertHeaders {
            names: names.clone(),
            strip: Strip::new(&all),
        }
    }

    pub fn names(&self) -> &ClientCertHeaders {
        &self.names
    }

    /// Whether `name` (lowercase) is one of the headers stripped and set
    /// here, `-` and `_` taken as the same: a trailer may not carry it.
    pub fn strips(&self, name: &str) -> bool {
        self.strip.hit(name)
    }

    /// Removes what a client sent under these names, then sets casfront's
    /// for the connection's certificate (`None`: client_auth is off).
    pub fn apply(&self, headers: &mut HeaderMap, cert: Option<&ClientCert>) {
        self.strip.strip(headers);
        let Some(cert) = cert else {
            return;
        };
        let n = &self.names;
        if let Some(name) = &n.verify {
            headers.insert(name.clone(), HeaderValue::from_static(cert.status.header()));
        }
        let Some(v) = cert.values() else {
            return;
        };
        let pairs = [
            (&n.cert, Some(&v.cert)),
            (&n.subject, Some(&v.subject)),
            (&n.issuer, Some(&v.issuer)),
            (&n.serial, Some(&v.serial)),
            (&n.san, v.san.as_ref()),
        ];
        for (name, value) in pairs {
            if let (Some(name), Some(value)) = (name, value) {
                headers.insert(name.clone(), value.clone());
            }
        }
        if let (true, Some(xfcc)) = (n.xfcc, &v.xfcc) {
            headers.insert(HeaderName::from_static(names::XFCC), xfcc.clone());
        }
    }
}

/// Header names to remove, found in one pass over the request's names:
/// a name's length is checked against a bit mask before any comparison,
/// which takes `-` and `_` as the same (header names are lowercase).
#[derive(Debug)]
struct Strip {
    lengths: u128,
    /// Lowercase, every `-` as `_`.
    names: Vec<String>,
}

impl Strip {
    fn new(names: &[&str]) -> Strip {
        let mut all: Vec<String> = Vec::new();
        for n in names {
            let n = n.to_ascii_lowercase().replace('-', "_");
            if !all.contains(&n) {
                all.push(n);
            }
        }
        let lengths = all.iter().fold(0u128, |m, n| m | 1u128 << n.len().min(127));
        Strip {
            lengths,
            names: all,
        }
    }

    fn hit(&self, name: &str) -> bool {
        let folded = |b: u8| if b == b'-' { b'_' } else { b };
        self.lengths & (1u128 << name.len().min(127)) != 0
            && self.names.iter().any(|n| {
                n.len() == name.len() && n.bytes().zip(name.bytes()).all(|(a, b)| a == folded(b))
            })
    }

    fn strip(&self, headers: &mut HeaderMap) {
        let hit = |k: &HeaderName| self.hit(k.as_str());
        if headers.keys().any(hit) {
            let found: Vec<HeaderName> = headers.keys().filter(|k| hit(k)).cloned().collect();
            for name in found {
                headers.remove(&name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forged() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("SSL_Client_Cert", "forged"),
            ("ssl-client-verify", "SUCCESS"),
            ("ssl_client-serial", "01"),
            ("SSL-CLIENT_I-DN", "CN=x"),
            ("ssl_client_s_dn", "CN=admin"),
            ("X-Forwarded-Client-Cert", "Hash=00"),
            ("x-user-cert", "forged"),
            ("accept", "*/*"),
        ] {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_static(v),
            );
        }
        h
    }

    #[test]
    fn forged_headers_are_stripped_in_every_case_and_spelling() {
        let cfg = ClientCertHeaders {
            cert: Some(HeaderName::from_static("x-user-cert")),
            ..Default::default()
        };
        let headers = CertHeaders::new(&cfg);
        let mut h = forged();
        headers.apply(&mut h, None);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["accept"]);
    }

    #[test]
    fn strips_reads_names_with_dashes_and_underscores_alike() {
        let headers = CertHeaders::new(&ClientCertHeaders::default());
        for name in ["ssl_client_verify", "ssl-client-verify", "ssl_client-s-dn"] {
            assert!(headers.strips(name), "{name}");
        }
        assert!(!headers.strips("x-sum"));
    }

    #[test]
    fn nothing_to_strip_leaves_the_map_alone() {
        let headers = CertHeaders::new(&ClientCertHeaders::default());
        let mut h = HeaderMap::new();
        h.insert("ssl_client_certs", HeaderValue::from_static("x"));
        h.insert("host", HeaderValue::from_static("x"));
        headers.apply(&mut h, None);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn san_list_escapes_separators() {
        let s = san_list(&[
            San::Email("a@b".into()),
            San::Uri("https://x/?a=1,2%".into()),
            San::Upn("zoë@X".into()),
        ]);
        assert_eq!(s, "email:a@b, URI:https://x/?a=1%2C2%25, UPN:zo%C3%AB@X");
    }

    #[test]
    fn pem_forms() {
        let b64 = "A".repeat(70);
        let lines = pem_lines(&b64);
        assert_eq!(lines.len(), 4);
        assert_eq!(escaped(&lines[..1]), "-----BEGIN%20CERTIFICATE-----%0A");
        let mut q = String::new();
        quoted("CN=a\"b\\", &mut q);
        assert_eq!(q, "\"CN=a\\\"b\\\\\"");
    }
}
