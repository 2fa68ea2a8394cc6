//! A fixed request mix for `casfront bench --mix FILE`: one request per
//! line, `METHOD TARGET`, its headers on the indented lines after it
//! (`Name: value`); `#` starts a comment line. Errors name line and column.

use http::Method;

/// One request of a mix.
#[derive(Clone, Debug, PartialEq)]
pub struct MixRequest {
    pub method: Method,
    pub target: String,
    pub headers: Vec<(String, String)>,
}

/// The requests of `text`, or the first error as `line:column: what`.
pub fn parse(text: &str) -> Result<Vec<MixRequest>, String> {
    let mut out: Vec<MixRequest> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = |col: usize, what: &str| format!("{}:{}: {what}", i + 1, col + 1);
        let body = line.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let indent = line.len() - body.len();
        if indent > 0 {
            let Some(last) = out.last_mut() else {
                return Err(at(indent, "a header before any request"));
            };
            let Some((name, value)) = body.split_once(':') else {
                return Err(at(indent, "a header is `Name: value`"));
            };
            let name = name.trim();
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(at(indent, &format!("`{name}` is not a header name")));
            }
            let value = value.trim();
            if http::HeaderValue::from_str(value).is_err() {
                return Err(at(
                    indent + name.len() + 1,
                    "the header value has a control character",
                ));
            }
            last.headers.push((name.to_owned(), value.to_owned()));
            continue;
        }
        let (method, target) = body.split_once(' ').unwrap_or((body, ""));
        let target = target.trim();
        let Ok(method) = Method::from_bytes(method.as_bytes()) else {
            return Err(at(0, &format!("`{method}` is not a method")));
        };
        if !target.starts_with('/') || target.parse::<http::Uri>().is_err() {
            return Err(at(
                method.as_str().len() + 1,
                "the target is a path and query starting with `/`",
            ));
        }
        out.push(MixRequest {
            method,
            target: target.to_owned(),
            headers: Vec::new(),
        });
    }
    if out.is_empty() {
        return Err("1:1: the mix has no request".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_with_headers_and_comments() {
        let m = parse("# mix\nGET /cas/login?service=x\n  Cookie: CASTGC=TGT-1-a-cas1\n\nPOST /cas/samlValidate\n").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(
            m[0].headers,
            [("Cookie".to_owned(), "CASTGC=TGT-1-a-cas1".to_owned())]
        );
        assert_eq!(m[1].method, Method::POST);
    }

    #[test]
    fn the_committed_mix_parses() {
        let m = parse(include_str!("../../benches/anchors/mix.txt")).unwrap();
        assert_eq!(m.len(), 12);
        assert_eq!(m.iter().filter(|r| !r.headers.is_empty()).count(), 6);
    }

    #[test]
    fn errors_name_line_and_column() {
        assert_eq!(
            parse("  Cookie: a=b\n").unwrap_err(),
            "1:3: a header before any request"
        );
        assert_eq!(
            parse("GET /a\n  Cookie a=b\n").unwrap_err(),
            "2:3: a header is `Name: value`"
        );
        assert_eq!(
            parse("GET cas\n").unwrap_err(),
            "1:5: the target is a path and query starting with `/`"
        );
        assert_eq!(parse("G@T /\n").unwrap_err(), "1:1: `G@T` is not a method");
        assert_eq!(
            parse("# only\n").unwrap_err(),
            "1:1: the mix has no request"
        );
    }
}
