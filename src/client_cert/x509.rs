//! What a client certificate says, read with x509-parser once per
//! connection: subject and issuer as RFC 4514 strings (the last RDN first,
//! special characters escaped, anything outside visible ASCII as `\XX` so
//! that the string is a valid header value) with their attributes, the
//! serial in upper-case hex (as OpenSSL and nginx print it), and the
//! subject alternative names CAS and applications read: email, DNS, URI,
//! and the Microsoft UPN otherName of smart cards.

use std::fmt::Write;

use x509_parser::asn1_rs::{Any, FromDer, Tag};
use x509_parser::extensions::GeneralName;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

use crate::routing::cert::{CertIdentity, Name};

/// The Microsoft User Principal Name otherName (smart card logon).
const UPN: &str = "1.3.6.1.4.1.311.20.2.3";

/// One subject alternative name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum San {
    Email(String),
    Dns(String),
    Uri(String),
    Upn(String),
}

/// A certificate's names, serial and SANs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    pub identity: CertIdentity,
    pub serial: String,
    pub sans: Vec<San>,
}

/// Reads a DER certificate.
pub fn read(der: &[u8]) -> Result<Facts, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let mut sans = Vec::new();
    if let Some(ext) = cert.subject_alternative_name().map_err(|e| e.to_string())? {
        for n in &ext.value.general_names {
            match n {
                GeneralName::RFC822Name(s) => sans.push(San::Email((*s).to_owned())),
                GeneralName::DNSName(s) => sans.push(San::Dns((*s).to_owned())),
                GeneralName::URI(s) => sans.push(San::Uri((*s).to_owned())),
                GeneralName::OtherName(oid, value) if oid.to_id_string() == UPN => {
                    if let Some(upn) = utf8_in_explicit(value) {
                        sans.push(San::Upn(upn));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(Facts {
        identity: CertIdentity {
            subject: name(cert.subject()),
            issuer: name(cert.issuer()),
        },
        serial: serial_hex(cert.raw_serial()),
        sans,
    })
}

/// An otherName's `[0] EXPLICIT UTF8String`.
fn utf8_in_explicit(value: &[u8]) -> Option<String> {
    let (_, outer) = Any::from_der(value).ok()?;
    let (_, inner) = Any::from_der(outer.data).ok()?;
    (inner.tag() == Tag::Utf8String)
        .then(|| std::str::from_utf8(inner.data).ok().map(str::to_owned))
        .flatten()
}

/// Upper-case hex without leading zero bytes (the DER sign byte).
fn serial_hex(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    let mut s = String::with_capacity(2 * raw.len());
    for b in &raw[start.min(raw.len())..] {
        let _ = write!(s, "{b:02X}");
    }
    if s.is_empty() {
        s.push_str("00");
    }
    s
}

/// RFC 4514: the RDNs last first, `,` between them, `+` inside one.
fn name(n: &X509Name<'_>) -> Name {
    let mut out = Name::default();
    let rdns: Vec<_> = n.iter().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.rfc4514.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.rfc4514.push('+');
            }
            let ty = attr_type(atv);
            out.rfc4514.push_str(&ty);
            out.rfc4514.push('=');
            match decode(atv) {
                Some(v) => {
                    escape(&v, &mut out.rfc4514);
                    out.attrs.push((ty, v));
                }
                None => {
                    out.rfc4514.push('#');
                    for b in ber(atv.attr_value()) {
                        let _ = write!(out.rfc4514, "{b:02x}");
                    }
                }
            }
        }
    }
    // Attributes in certificate order (most significant first).
    out.attrs.reverse();
    out
}

/// A value's whole encoding (tag, length, content), as RFC 4514 §2.4
/// writes a value that is not a string.
fn ber(v: &Any<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.data.len() + 8);
    let class = (v.class() as u8) << 6;
    let constructed = if v.header.is_constructed() { 0x20 } else { 0 };
    let tag = v.tag().0;
    if tag < 31 {
        out.push(class | constructed | tag as u8);
    } else {
        out.push(class | constructed | 0x1f);
        let mut groups = Vec::new();
        let mut t = tag;
        loop {
            groups.push((t & 0x7f) as u8);
            t >>= 7;
            if t == 0 {
                break;
            }
        }
        for (i, g) in groups.iter().rev().enumerate() {
            out.push(if i + 1 < groups.len() { g | 0x80 } else { *g });
        }
    }
    let len = v.data.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(v.data);
    out
}

/// The short names RFC 4514 and OpenSSL print; others as a dotted OID.
fn attr_type(atv: &AttributeTypeAndValue<'_>) -> String {
    let oid = atv.attr_type().to_id_string();
    let short = match oid.as_str() {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.42" => "GN",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => return oid,
    };
    short.to_owned()
}

/// A string attribute's text; `None` for other types.
fn decode(atv: &AttributeTypeAndValue<'_>) -> Option<String> {
    let v = atv.attr_value();
    let data = v.data;
    match v.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => std::str::from_utf8(data).ok().map(str::to_owned),
        // Latin-1 in practice.
        Tag::TeletexString => Some(data.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString => {
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        Tag::UniversalString => data
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    }
}

/// RFC 4514 §2.4, and `\XX` for every byte outside visible ASCII.
fn escape(v: &str, out: &mut String) {
    let last = v.len().saturating_sub(1);
    for (i, b) in v.bytes().enumerate() {
        match b {
            b'"' | b'+' | b',' | b';' | b'<' | b'>' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            b'#' if i == 0 => out.push_str("\\#"),
            b' ' if i == 0 || i == last => out.push_str("\\ "),
            0x21..=0x7e | b' ' => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\{b:02X}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair, SanType};

    fn der(params: CertificateParams) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn names_serial_and_sans() {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CountryName, "US");
        p.distinguished_name
            .push(DnType::OrganizationName, "Example, Inc.");
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, "Smart Card");
        p.distinguished_name.push(DnType::CommonName, " Zoë #1+2 ");
        p.serial_number = Some(vec![0x00, 0x8a, 0x01].into());
        p.subject_alt_names = vec![
            SanType::Rfc822Name("alice@example.edu".try_into().unwrap()),
            SanType::DnsName("alice.example.edu".try_into().unwrap()),
            SanType::URI("https://id.example.edu/alice".try_into().unwrap()),
            SanType::OtherName((
                vec![1, 3, 6, 1, 4, 1, 311, 20, 2, 3],
                "alice@EXAMPLE.EDU".into(),
            )),
        ];
        let f = read(&der(p)).unwrap();
        assert_eq!(
            f.identity.subject.rfc4514,
            "CN=\\ Zo\\C3\\AB #1\\+2\\ ,OU=Smart Card,O=Example\\, Inc.,C=US"
        );
        assert_eq!(f.identity.subject.attrs[0], ("C".into(), "US".into()));
        assert_eq!(
            f.identity.subject.attrs[3],
            ("CN".into(), " Zoë #1+2 ".into())
        );
        // Self-signed: the issuer is the subject.
        assert_eq!(f.identity.issuer, f.identity.subject);
        assert_eq!(f.serial, "8A01");
        assert_eq!(
            f.sans,
            [
                San::Email("alice@example.edu".into()),
                San::Dns("alice.example.edu".into()),
                San::Uri("https://id.example.edu/alice".into()),
                San::Upn("alice@EXAMPLE.EDU".into()),
            ]
        );
    }

    #[test]
    fn leading_hash_and_other_string_types() {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = DistinguishedName::new();
        let bmp = "#bmp".try_into().unwrap();
        p.distinguished_name
            .push(DnType::CommonName, DnValue::BmpString(bmp));
        p.distinguished_name.push(
            DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 25]),
            DnValue::Ia5String("example".try_into().unwrap()),
        );
        let f = read(&der(p)).unwrap();
        assert_eq!(f.identity.subject.rfc4514, "DC=example,CN=\\#bmp");
    }

    #[test]
    fn values_that_are_not_strings_are_written_whole_in_hex() {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = DistinguishedName::new();
        // An OCTET STRING is not a directory string.
        p.distinguished_name.push(
            DnType::CustomDnType(vec![1, 2, 3, 4]),
            DnValue::PrintableString("x".try_into().unwrap()),
        );
        let mut der = der(p);
        // Retag the PrintableString (0x13) `x` as an OCTET STRING (0x04),
        // in the issuer and the subject.
        while let Some(at) = der.windows(3).position(|w| w == [0x13, 0x01, b'x']) {
            der[at] = 0x04;
        }
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(name(cert.subject()).rfc4514, "1.2.3.4=#040178");
    }

    #[test]
    fn serials() {
        assert_eq!(serial_hex(&[0, 0, 0x0f]), "0F");
        assert_eq!(serial_hex(&[0]), "00");
        assert_eq!(serial_hex(&[]), "00");
        assert_eq!(serial_hex(&[0x7f, 0]), "7F00");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(read(b"not a certificate").is_err());
    }
}
