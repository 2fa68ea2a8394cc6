//! The SAML 1.1 artifact in a `POST /samlValidate` SOAP body: java-cas-client
//! and python-cas send `TARGET` in the query and the service ticket as
//! `<samlp:AssertionArtifact>` in the body. This finds the element's text in
//! a bounded body prefix and decodes it (trim, XML entities, CDATA,
//! percent-escapes) into a stack buffer. It is not an XML parser, and needs
//! none: ticket ids never contain `<`, `&` or `%`.

use super::parse::{with_decoded, DecodeBuf, MAX_TICKET_LEN};

const NAME: &[u8] = b"AssertionArtifact";

/// The raw text of the first `<AssertionArtifact>` or `<p:AssertionArtifact>`
/// start tag's content, untrimmed and undecoded; `None` if there is none or
/// the prefix ends inside it.
pub fn artifact_text(body: &[u8]) -> Option<&[u8]> {
    for at in memchr::memmem::find_iter(body, NAME) {
        if !opens_tag(&body[..at]) {
            continue;
        }
        let after = &body[at + NAME.len()..];
        // The name must end here: `>`, `/` or whitespace (attributes).
        match after.first() {
            Some(b'>' | b'/') => {}
            Some(b) if b.is_ascii_whitespace() => {}
            _ => continue,
        }
        let gt = memchr::memchr(b'>', after)?;
        if gt > 0 && after[gt - 1] == b'/' {
            return Some(&after[gt..gt]); // <AssertionArtifact/>: empty
        }
        let content = &after[gt + 1..];
        if let Some(cdata) = content.strip_prefix(b"<![CDATA[") {
            let end = memchr::memmem::find(cdata, b"]]>")?;
            return Some(&cdata[..end]);
        }
        let end = memchr::memchr(b'<', content)?;
        return Some(&content[..end]);
    }
    None
}

/// Whether `before` ends with `<` or `<prefix:` (a start tag, not `</`).
fn opens_tag(before: &[u8]) -> bool {
    match before.last() {
        Some(b'<') => true,
        Some(b':') => {
            let name = &before[..before.len() - 1];
            let start = name
                .iter()
                .rposition(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'))
                .map_or(0, |k| k + 1);
            start > 0 && start < name.len() && name[start - 1] == b'<'
        }
        _ => false,
    }
}

/// Calls `f` with the artifact text decoded: XML whitespace trimmed, the
/// five named entities and numeric character references (ASCII only)
/// replaced (anything else after `&` is kept as it is), then percent-escapes
/// decoded. `None` when the result does not fit in [`MAX_TICKET_LEN`].
pub fn with_artifact<R>(raw: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> R {
    let raw = raw.trim_ascii();
    if memchr::memchr(b'&', raw).is_none() {
        return with_decoded(raw, false, f);
    }
    let mut tmp: DecodeBuf = [0; MAX_TICKET_LEN];
    match unescape(raw, &mut tmp) {
        Some(n) => with_decoded(&tmp[..n], false, f),
        None => f(None),
    }
}

/// Replaces XML character references into `out`; the length written, or
/// `None` when it does not fit.
fn unescape(raw: &[u8], out: &mut DecodeBuf) -> Option<usize> {
    let mut n = 0;
    let mut i = 0;
    while i < raw.len() {
        let reference = (raw[i] == b'&')
            .then(|| raw.get(i + 1..(i + 10).min(raw.len())))
            .flatten()
            .and_then(|r| memchr::memchr(b';', r))
            .and_then(|semi| Some((entity(&raw[i + 1..i + 1 + semi])?, semi + 2)));
        let (byte, used) = reference.unwrap_or((raw[i], 1));
        *out.get_mut(n)? = byte;
        n += 1;
        i += used;
    }
    Some(n)
}

/// The ASCII byte an entity name (between `&` and `;`) stands for.
fn entity(name: &[u8]) -> Option<u8> {
    let code = match name {
        b"amp" => return Some(b'&'),
        b"lt" => return Some(b'<'),
        b"gt" => return Some(b'>'),
        b"quot" => return Some(b'"'),
        b"apos" => return Some(b'\''),
        [b'#', b'x' | b'X', hex @ ..] => {
            u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?
        }
        [b'#', dec @ ..] => std::str::from_utf8(dec).ok()?.parse::<u32>().ok()?,
        _ => return None,
    };
    u8::try_from(code).ok().filter(u8::is_ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOAP: &str = r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Header/><SOAP-ENV:Body><samlp:Request xmlns:samlp="urn:oasis:names:tc:SAML:1.0:protocol" MajorVersion="1" MinorVersion="1" RequestID="_192.168.16.51.1024506224022" IssueInstant="2002-06-19T17:03:44.022Z"><samlp:AssertionArtifact>
      ST-1-u4hrm3td92cLxpCvrjylcas-cas2
    </samlp:AssertionArtifact></samlp:Request></SOAP-ENV:Body></SOAP-ENV:Envelope>"#;

    fn decoded(body: &str) -> Option<Vec<u8>> {
        with_artifact(artifact_text(body.as_bytes())?, |v| v.map(<[u8]>::to_vec))
    }

    #[test]
    fn java_cas_client_body() {
        assert_eq!(
            decoded(SOAP).as_deref(),
            Some(&b"ST-1-u4hrm3td92cLxpCvrjylcas-cas2"[..])
        );
    }

    #[test]
    fn forms() {
        let d = |s: &str| decoded(s).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(
            d("<AssertionArtifact>ST-1-a-n1</AssertionArtifact>").as_deref(),
            Some("ST-1-a-n1")
        );
        assert_eq!(
            d("<AssertionArtifact id=\"x\">ST-1-a-n1<").as_deref(),
            Some("ST-1-a-n1")
        );
        assert_eq!(
            d("<p:AssertionArtifact>ST-1-a%2Dn1</p:AssertionArtifact>").as_deref(),
            Some("ST-1-a-n1")
        );
        assert_eq!(
            d("<AssertionArtifact>ST&#45;1-a&#x2D;n&amp;1<").as_deref(),
            Some("ST-1-a-n&1")
        );
        assert_eq!(
            d("<AssertionArtifact>ST-1-%26amp<").as_deref(),
            Some("ST-1-&amp")
        );
        assert_eq!(d("<AssertionArtifact>&#45;%41<").as_deref(), Some("-A"));
        assert_eq!(
            d("<AssertionArtifact><![CDATA[ ST-1-a-n1 ]]></AssertionArtifact>").as_deref(),
            Some("ST-1-a-n1")
        );
        assert_eq!(d("<AssertionArtifact/>").as_deref(), Some(""));
        // Not the element: a closing tag, another name, a truncated prefix.
        assert_eq!(d("</AssertionArtifact>ST-1-a-n1<"), None);
        assert_eq!(d("<AssertionArtifacts>ST-1-a-n1<"), None);
        assert_eq!(d("<x AssertionArtifact>ST-1-a-n1<"), None);
        assert_eq!(d("<AssertionArtifact>ST-1-a-n1"), None);
        // Not a reference: kept as it is (then no ticket id, or no suffix).
        assert_eq!(d("<AssertionArtifact>&bogus;<").as_deref(), Some("&bogus;"));
        assert_eq!(
            d("<AssertionArtifact>ST-1-&#300;-&<").as_deref(),
            Some("ST-1-&#300;-&")
        );
        assert_eq!(
            d(&format!("<AssertionArtifact>{}<", "&amp;".repeat(600))),
            None
        );
        assert_eq!(d(":AssertionArtifact>x<"), None);
    }
}
