//! Routing by client certificate: a pool's `client_cert_match` rule
//! (`subject.OU=Smart Card`, `issuer=CN=Example CA,O=Example`) and the
//! names of a verified certificate it is matched against. A pool with a
//! rule takes the requests under its prefix whose connection presented a
//! verified certificate that matches; the others fall to the pool without
//! a rule that shares the prefix, or to a shorter prefix.

/// Which name of the certificate a rule reads.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Dn {
    Subject,
    Issuer,
}

/// A pool's `client_cert_match`: `FIELD=VALUE`, where FIELD is `subject`
/// or `issuer` (the whole RFC 4514 name) or `subject.ATTR` / `issuer.ATTR`
/// (any attribute of that type, e.g. `OU`, `O`, `CN`, `DC`, or a dotted
/// OID). Values compare ASCII case-insensitively, as directory names do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertMatch {
    pub dn: Dn,
    /// Upper-case attribute name or dotted OID; `None`: the whole name.
    pub attr: Option<String>,
    pub value: String,
}

impl CertMatch {
    /// Parses `FIELD=VALUE`; the error says what is wrong.
    pub fn parse(s: &str) -> Result<CertMatch, String> {
        let Some((field, value)) = s.split_once('=') else {
            return Err(format!(
                "`{s}` is not FIELD=VALUE (e.g. `subject.OU=Smart Card` or `issuer.CN=Example CA`)"
            ));
        };
        let (dn, attr) = match field.trim().split_once('.') {
            Some((dn, attr)) => (dn, Some(attr)),
            None => (field.trim(), None),
        };
        let dn = match dn {
            "subject" => Dn::Subject,
            "issuer" => Dn::Issuer,
            other => {
                return Err(format!(
                    "the field `{other}` is not `subject` or `issuer` (e.g. `subject.OU`)"
                ))
            }
        };
        let attr = match attr {
            None => None,
            Some(a)
                if !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.') =>
            {
                Some(a.to_ascii_uppercase())
            }
            Some(a) => return Err(format!("`{a}` is not an attribute name (CN, OU, O...)")),
        };
        if value.is_empty() {
            return Err("the value to match is empty".into());
        }
        Ok(CertMatch {
            dn,
            attr,
            value: value.to_owned(),
        })
    }

    /// Whether a verified certificate's names satisfy the rule.
    pub fn matches(&self, id: &CertIdentity) -> bool {
        let name = match self.dn {
            Dn::Subject => &id.subject,
            Dn::Issuer => &id.issuer,
        };
        match &self.attr {
            None => name.rfc4514.eq_ignore_ascii_case(&self.value),
            Some(a) => name
                .attrs
                .iter()
                .any(|(t, v)| t.eq_ignore_ascii_case(a) && v.eq_ignore_ascii_case(&self.value)),
        }
    }
}

/// A distinguished name: its RFC 4514 string and its attributes in
/// certificate order (type as `CN`, `OU`... or a dotted OID; value decoded).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Name {
    pub rfc4514: String,
    pub attrs: Vec<(String, String)>,
}

/// The names of a verified client certificate, parsed once per connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertIdentity {
    pub subject: Name,
    pub issuer: Name,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> CertIdentity {
        CertIdentity {
            subject: Name {
                rfc4514: "CN=alice,OU=Smart Card,O=Example".into(),
                attrs: vec![
                    ("O".into(), "Example".into()),
                    ("OU".into(), "Smart Card".into()),
                    ("CN".into(), "alice".into()),
                ],
            },
            issuer: Name {
                rfc4514: "CN=Example CA".into(),
                attrs: vec![("CN".into(), "Example CA".into())],
            },
        }
    }

    #[test]
    fn rules_parse_and_match() {
        let m = CertMatch::parse("subject.ou=smart card").unwrap();
        assert_eq!(m.attr.as_deref(), Some("OU"));
        assert!(m.matches(&id()));
        assert!(CertMatch::parse("issuer=cn=example ca")
            .unwrap()
            .matches(&id()));
        assert!(CertMatch::parse("issuer.CN=Example CA")
            .unwrap()
            .matches(&id()));
        assert!(!CertMatch::parse("subject.OU=Staff").unwrap().matches(&id()));
        // The attribute is looked up by type, not by position or substring.
        assert!(!CertMatch::parse("subject.O=Smart Card")
            .unwrap()
            .matches(&id()));
        assert!(!CertMatch::parse("subject=CN=alice").unwrap().matches(&id()));
    }

    #[test]
    fn bad_rules_say_why() {
        for bad in [
            "subject.OU",
            "owner.CN=x",
            "subject.=x",
            "subject.O U=x",
            "subject.CN=",
        ] {
            assert!(CertMatch::parse(bad).is_err(), "{bad}");
        }
        // The value may itself hold `=`.
        let m = CertMatch::parse("issuer=CN=A,O=B").unwrap();
        assert_eq!(m.value, "CN=A,O=B");
    }
}
