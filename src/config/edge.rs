//! The edge sections: `[rate_limit]` and a pool's `[pool.headers]`, turned
//! into their part of the [`super::Config`] with defaults applied.

use http::{HeaderName, HeaderValue};
use toml::Spanned;

use super::diag::Diags;
use super::raw::{RawHeaderMap, RawHeaders, RawRateLimit, Str};
use super::values::{duration, share, size};
use super::{HeaderRules, RateLimit};

/// `[rate_limit]`, with defaults.
pub fn rate_limit(raw: Option<Spanned<RawRateLimit>>, d: &mut Diags) -> Option<RateLimit> {
    let raw = raw.map(Spanned::into_inner);
    let r = raw.as_ref();
    let def = RateLimit::default();
    let rate = |v: Option<&Spanned<i64>>, key: &str, default: u32, d: &mut Diags| {
        size(v, key, 0..=1_000_000, default as usize, d).and_then(|n| u32::try_from(n).ok())
    };
    let requests_per_second = rate(
        r.and_then(|l| l.requests_per_second.as_ref()),
        "requests_per_second",
        def.requests_per_second,
        d,
    );
    let burst = rate(r.and_then(|l| l.burst.as_ref()), "burst", def.burst, d);
    let login_per_minute = rate(
        r.and_then(|l| l.login_per_minute.as_ref()),
        "login_per_minute",
        def.login_per_minute,
        d,
    );
    let login_burst = rate(
        r.and_then(|l| l.login_burst.as_ref()),
        "login_burst",
        def.login_burst,
        d,
    );
    let login_failures = rate(
        r.and_then(|l| l.login_failures.as_ref()),
        "login_failures",
        def.login_failures,
        d,
    );
    let login_window = duration(r.and_then(|l| l.login_window.as_ref()), def.login_window, d);
    let address_failures = rate(
        r.and_then(|l| l.address_failures.as_ref()),
        "address_failures",
        def.address_failures,
        d,
    );
    let address_failure_share = share(
        r.and_then(|l| l.address_failure_share.as_ref()),
        "address_failure_share",
        def.address_failure_share,
        d,
    );
    let address_failure_ceiling = rate(
        r.and_then(|l| l.address_failure_ceiling.as_ref()),
        "address_failure_ceiling",
        def.address_failure_ceiling,
        d,
    );
    let max_clients = size(
        r.and_then(|l| l.max_clients.as_ref()),
        "max_clients",
        1000..=100_000_000,
        def.max_clients,
        d,
    );
    let burst = needs_burst(
        requests_per_second,
        burst,
        r.and_then(|l| l.burst.as_ref()),
        d,
    );
    let login_burst = needs_burst(
        login_per_minute,
        login_burst,
        r.and_then(|l| l.login_burst.as_ref()),
        d,
    );
    Some(RateLimit {
        requests_per_second: requests_per_second?,
        burst: burst?,
        login_per_minute: login_per_minute?,
        login_burst: login_burst?,
        login_failures: login_failures?,
        login_window: login_window?,
        address_failures: address_failures?,
        address_failure_share: address_failure_share?,
        address_failure_ceiling: address_failure_ceiling?,
        max_clients: max_clients?,
    })
}

/// A burst of 0 would refuse everything: a limit that is on needs one.
fn needs_burst(
    rate: Option<u32>,
    burst: Option<u32>,
    at: Option<&Spanned<i64>>,
    d: &mut Diags,
) -> Option<u32> {
    if let (Some(1..), Some(0), Some(at)) = (rate, burst, at) {
        d.error(at.span(), "a burst must be at least 1 while its rate is on");
        return None;
    }
    burst
}

/// Headers casfront frames or routes by itself: a rule may not touch them.
const OWN: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
];

/// `[pool.headers]`, empty when absent.
pub fn headers(raw: Option<Spanned<RawHeaders>>, d: &mut Diags) -> Option<HeaderRules> {
    let Some(raw) = raw.map(Spanned::into_inner) else {
        return Some(HeaderRules::default());
    };
    let request_set = set(raw.request_set.as_ref(), d);
    let request_remove = remove(raw.request_remove.as_ref(), d);
    let response_set = set(raw.response_set.as_ref(), d);
    let response_remove = remove(raw.response_remove.as_ref(), d);
    Some(HeaderRules {
        request_set: request_set?,
        request_remove: request_remove?,
        response_set: response_set?,
        response_remove: response_remove?,
    })
}

fn set(map: Option<&RawHeaderMap>, d: &mut Diags) -> Option<Vec<(HeaderName, HeaderValue)>> {
    let mut ok = true;
    let mut out = Vec::new();
    for (name, value) in map.iter().flat_map(|m| m.get_ref()) {
        let name = header_name(name, d);
        let parsed = HeaderValue::from_str(value.get_ref()).ok();
        if parsed.is_none() {
            d.error(
                value.span(),
                "header value must be visible ASCII, spaces and tabs",
            );
        }
        match (name, parsed) {
            (Some(name), Some(value)) => out.push((name, value)),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

fn remove(list: Option<&Spanned<Vec<Str>>>, d: &mut Diags) -> Option<Vec<HeaderName>> {
    super::values::each(list, d, header_name)
}

pub(super) fn header_name(v: &Str, d: &mut Diags) -> Option<HeaderName> {
    let Ok(name) = HeaderName::from_bytes(v.get_ref().as_bytes()) else {
        d.error(v.span(), format!("`{}` is not a header name", v.get_ref()));
        return None;
    };
    if OWN.contains(&name.as_str()) {
        d.error(v.span(), format!("`{name}` is casfront's to set"));
        return None;
    }
    Some(name)
}
