//! Checks of single values — durations, counts, addresses, node URLs,
//! file paths, names, cookie names, ticket suffixes, host names, CIDR
//! blocks — each reporting its own problem at the value's position.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::diag::Diags;
use super::raw::Str;
use super::{NodeUrl, Scheme};

/// Suffixes shorter than this may end a random part by chance.
const SHORT_SUFFIX: usize = 3;

pub fn duration(v: Option<&Str>, default: Duration, d: &mut Diags) -> Option<Duration> {
    let Some(v) = v else {
        return Some(default);
    };
    match humantime::parse_duration(v.get_ref()) {
        Ok(t) if t.is_zero() => {
            d.error(v.span(), "duration must be greater than 0");
            None
        }
        Ok(t) => Some(t),
        Err(e) => {
            d.error(
                v.span(),
                format!(
                    "invalid duration `{}`: {e} (write e.g. \"2s\" or \"500ms\")",
                    v.get_ref()
                ),
            );
            None
        }
    }
}

/// A share between 0 and 1 (`pressure`, `address_failure_share`).
pub fn share(v: Option<&Spanned<f64>>, key: &str, default: f64, d: &mut Diags) -> Option<f64> {
    let Some(v) = v else {
        return Some(default);
    };
    let x = *v.get_ref();
    if (0.0..=1.0).contains(&x) {
        Some(x)
    } else {
        d.error(
            v.span(),
            format!("`{key}` must be between 0 and 1, not {x}"),
        );
        None
    }
}

pub fn threshold(v: Option<&Spanned<i64>>, key: &str, default: u32, d: &mut Diags) -> Option<u32> {
    count(v, key, 1..=1000, default.into(), d).and_then(|n| u32::try_from(n).ok())
}

/// An integer in `range`, or `default` when absent.
pub fn count(
    v: Option<&Spanned<i64>>,
    key: &str,
    range: std::ops::RangeInclusive<i64>,
    default: i64,
    d: &mut Diags,
) -> Option<i64> {
    let Some(v) = v else { return Some(default) };
    if range.contains(v.get_ref()) {
        return Some(*v.get_ref());
    }
    d.error(
        v.span(),
        format!(
            "`{key}` must be between {} and {}, not {}",
            range.start(),
            range.end(),
            v.get_ref()
        ),
    );
    None
}

/// [`count`] for a size or a number of things.
pub fn size(
    v: Option<&Spanned<i64>>,
    key: &str,
    range: std::ops::RangeInclusive<usize>,
    default: usize,
    d: &mut Diags,
) -> Option<usize> {
    let (start, end) = (*range.start() as i64, *range.end() as i64);
    count(v, key, start..=end, default as i64, d).and_then(|n| usize::try_from(n).ok())
}

pub fn node_url(v: &Str, d: &mut Diags) -> Option<NodeUrl> {
    let text = v.get_ref();
    let bad = |d: &mut Diags, why: &str| {
        d.error(
            v.span(),
            format!("node url `{text}` {why}: expected http(s)://HOST:PORT"),
        );
        None
    };
    let Ok(u) = url::Url::parse(text) else {
        return bad(d, "is not a URL");
    };
    let scheme = match u.scheme() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return bad(d, "must use http or https"),
    };
    if !u.username().is_empty() || u.password().is_some() {
        return bad(d, "must not contain credentials");
    }
    if !matches!(u.path(), "" | "/") || u.query().is_some() || u.fragment().is_some() {
        return bad(d, "must not have a path, query or fragment");
    }
    let (host, ipv4) = match u.host() {
        Some(url::Host::Domain(h)) => (h.to_owned(), None),
        Some(url::Host::Ipv4(ip)) => (ip.to_string(), Some(ip)),
        Some(url::Host::Ipv6(ip)) => (ip.to_string(), None),
        None => return bad(d, "has no host"),
    };
    let port = u.port_or_known_default()?;
    Some(NodeUrl {
        scheme,
        host,
        port,
        ipv4,
    })
}

pub fn addr(v: &Str, d: &mut Diags) -> Option<SocketAddr> {
    match v.get_ref().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            let hint = match v.get_ref().parse::<IpAddr>() {
                Ok(_) => " (the port is missing)",
                Err(_) => "",
            };
            d.error(
                v.span(),
                format!(
                    "`{}` is not an IP:PORT address{hint}, e.g. \"0.0.0.0:8443\" or \"[::]:8443\"",
                    v.get_ref()
                ),
            );
            None
        }
    }
}

/// Each value of a list key checked by `check` (every bad one reported);
/// `None` if any is bad, an empty list when the key is absent.
pub fn each<T>(
    list: Option<&Spanned<Vec<Str>>>,
    d: &mut Diags,
    mut check: impl FnMut(&Str, &mut Diags) -> Option<T>,
) -> Option<Vec<T>> {
    let checked: Vec<Option<T>> = list
        .iter()
        .flat_map(|l| l.get_ref())
        .map(|v| check(v, d))
        .collect();
    checked.into_iter().collect()
}

pub fn file(v: &Str, base: &Path, d: &mut Diags) -> Option<PathBuf> {
    if v.get_ref().is_empty() {
        d.error(v.span(), "file path is empty");
        return None;
    }
    Some(base.join(v.get_ref()))
}

/// A file that holds a secret (a TLS private key, a route-cookie key):
/// as [`file`], with a warning when the file exists and anyone on the
/// machine may read or write it.
pub fn secret_file(v: &Str, base: &Path, d: &mut Diags) -> Option<PathBuf> {
    let path = file(v, base, d)?;
    warn_if_open(&path, v.span(), d);
    Some(path)
}

/// Warns (at `span`) when the secret in `path` is open to every user.
pub fn warn_if_open(path: &Path, span: Range<usize>, d: &mut Diags) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o006 != 0 {
            d.warn(
                span,
                format!(
                    "{} holds a secret and is open to every user on this machine (mode {:o}): chmod o-rw",
                    path.display(),
                    mode & 0o777
                ),
            );
        }
    }
}

/// Pool and node names appear in URLs, metrics and logs.
pub fn name(v: &Str, what: &str, d: &mut Diags) -> bool {
    let s = v.get_ref();
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        d.error(
            v.span(),
            format!("{what} name `{s}` must be non-empty letters, digits, `-`, `_` or `.`"),
        );
    }
    ok
}

/// A cookie name is an RFC 6265 token.
pub fn cookie_name(v: &Str, d: &mut Diags) -> bool {
    let s = v.get_ref();
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
    if !ok {
        d.error(v.span(), format!("`{s}` is not a valid cookie name"));
    }
    ok
}

/// A ticket suffix is a host name: letters, digits, `-` and `.`
/// (and `_`), not starting with `-`.
pub fn suffix(v: &Str, d: &mut Diags) -> bool {
    let s = v.get_ref();
    let ok = !s.is_empty()
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !ok {
        d.error(v.span(), format!("ticket suffix `{s}` must be letters, digits, `-`, `.` or `_`, not starting with `-`"));
    } else if s.len() < SHORT_SUFFIX {
        d.warn(
            v.span(),
            format!("ticket suffix `{s}` is shorter than {SHORT_SUFFIX} characters: a random part can end in it by chance"),
        );
    }
    ok
}

/// A DNS name (lowercased); with `wildcard`, `*.` may start it.
pub fn host_name(v: &Str, what: &str, wildcard: bool, d: &mut Diags) -> Option<String> {
    let s = v.get_ref().to_ascii_lowercase();
    let rest = match s.strip_prefix("*.") {
        Some(rest) if wildcard => rest,
        _ => s.as_str(),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if rest.len() <= 253 && rest.split('.').all(label_ok) {
        return Some(s);
    }
    let form = if wildcard {
        "a DNS name such as `cas.example.edu` or `*.example.edu`"
    } else {
        "a DNS name such as `cas.example.edu`"
    };
    d.error(v.span(), format!("{what} `{}` is not {form}", v.get_ref()));
    None
}

/// `host` or `host:port`, as a `Host` header carries it.
pub fn authority(v: &Str, what: &str, d: &mut Diags) -> Option<String> {
    let s = v.get_ref();
    match s.parse::<http::uri::Authority>() {
        Ok(a) if !s.is_empty() && !s.contains('@') && a.as_str() == s => Some(s.clone()),
        _ => {
            d.error(
                v.span(),
                format!("{what} `{s}` is not a host or host:port, e.g. \"cas.example.edu\""),
            );
            None
        }
    }
}

/// A CIDR block (`10.0.0.0/8`, `2001:db8::/32`) or one address.
pub fn cidr(v: &Str, d: &mut Diags) -> Option<ipnet::IpNet> {
    let s = v.get_ref();
    if let Ok(net) = s.parse::<ipnet::IpNet>() {
        if net.trunc() != net {
            d.warn(
                v.span(),
                format!("`{s}` has host bits set: it means `{}`", net.trunc()),
            );
        }
        return Some(net.trunc());
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ipnet::IpNet::from(ip));
    }
    d.error(
        v.span(),
        format!("`{s}` is not an IP address or CIDR block, e.g. \"10.0.0.0/8\""),
    );
    None
}
