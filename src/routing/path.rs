//! Paths as a servlet container (Tomcat) maps them: each segment's `;`
//! parameters removed, percent-encodings decoded, empty and `.` segments
//! dropped, `..` applied. The one normaliser: the request path maps a
//! path once, and routing (pool and endpoint), client-certificate paths
//! and the login throttle all read the mapped path, so that
//! `/cas/%6Cogin` or `/cas//login` is the login a node will see.

use std::borrow::Cow;

/// `path` as a servlet container maps it: each segment's `;` parameters
/// removed, percent-encodings decoded, empty and `.` segments dropped, `..`
/// applied. Paths with none of these come back as they are.
pub fn servlet_path(path: &str) -> Cow<'_, str> {
    if is_mapped(path.as_bytes()) {
        return Cow::Borrowed(path);
    }
    let mut out: Vec<Cow<'_, str>> = Vec::new();
    for segment in path.split('/') {
        let segment = segment.split(';').next().unwrap_or("");
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        match &*decoded {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(decoded),
        }
    }
    let mut joined = String::with_capacity(path.len());
    for segment in &out {
        joined.push('/');
        joined.push_str(segment);
    }
    if joined.is_empty() {
        joined.push('/');
    }
    Cow::Owned(joined)
}

/// Whether `path` maps to itself: no `;` or `%`, no empty or dot
/// segment (a trailing `/` is an empty one). One pass, no allocation: the
/// common case of every request.
fn is_mapped(path: &[u8]) -> bool {
    if path.len() > 1 && path.ends_with(b"/") {
        return false;
    }
    let mut after_slash = false;
    for &b in path {
        match b {
            b';' | b'%' => return false,
            b'/' | b'.' if after_slash => return false,
            _ => {}
        }
        after_slash = b == b'/';
    }
    true
}

#[cfg(test)]
mod tests {
    use super::servlet_path;

    #[test]
    fn login_paths_are_compared_as_the_node_maps_them() {
        for (path, mapped) in [
            ("/cas/login", "/cas/login"),
            ("/cas/login/", "/cas/login"),
            ("/", "/"),
            ("/cas/login;jsessionid=ABC.cas1", "/cas/login"),
            ("/cas/%6Cogin", "/cas/login"),
            ("/cas//login", "/cas/login"),
            ("/cas/./login", "/cas/login"),
            ("/cas/x/../login", "/cas/login"),
            ("/cas;x=1/login/", "/cas/login"),
            ("/cas/v1/tickets", "/cas/v1/tickets"),
            ("/../..", "/"),
        ] {
            assert_eq!(servlet_path(path), mapped, "{path}");
        }
    }

    /// Every request maps its path: one that maps to itself is borrowed.
    #[test]
    fn a_plain_path_is_not_copied() {
        for path in ["/cas/login", "/cas/serviceValidate", "/", "/cas/.x", "*"] {
            let expected_borrowed = !path.contains("/.");
            let borrowed = matches!(servlet_path(path), std::borrow::Cow::Borrowed(_));
            assert_eq!(borrowed, expected_borrowed, "{path}");
        }
    }
}
