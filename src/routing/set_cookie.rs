//! `Set-Cookie` headers as nodes send them: the cookie's name and value,
//! whether it expires the cookie (for the learned table), its attributes
//! and cookie dates (RFC 6265), and the `Set-Cookie` of casfront's own
//! route cookie built to follow one of them.

/// A `Set-Cookie` header's name and (unquoted) value, and whether it
/// expires the cookie: `Max-Age` of 0 or less, or, without `Max-Age`
/// (which wins, RFC 6265 §5.3), an `Expires` date in the past, as CAS
/// writes them on logout (`Max-Age=0; Expires=Thu, 01 Jan 1970 ...`).
pub fn parse_set_cookie(header: &[u8]) -> Option<(&[u8], &[u8], bool)> {
    // The clock is read only for an `Expires` without `Max-Age`.
    parse_set_cookie_with(header, || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}

/// The same at `now` (seconds since the Unix epoch).
pub fn parse_set_cookie_at(header: &[u8], now: u64) -> Option<(&[u8], &[u8], bool)> {
    parse_set_cookie_with(header, || now)
}

fn parse_set_cookie_with(header: &[u8], now: impl FnOnce() -> u64) -> Option<(&[u8], &[u8], bool)> {
    let pair = header.split(|&b| b == b';').next()?;
    let eq = pair.iter().position(|&b| b == b'=')?;
    let name = pair[..eq].trim_ascii();
    // Unquoted, as the routing core reads the value a browser sends back.
    let value = super::parse::unquote(pair[eq + 1..].trim_ascii());
    let (mut max_age, mut expires) = (None, None);
    for (key, v) in set_cookie_attrs(header) {
        if key.eq_ignore_ascii_case(b"max-age") {
            // RFC 6265 §5.2.2: a value that is not a number is ignored.
            if let Some(n) = std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.parse::<i64>().ok())
            {
                max_age = Some(n);
            }
        } else if key.eq_ignore_ascii_case(b"expires") {
            expires = cookie_date(v).or(expires);
        }
    }
    let expired = match (max_age, expires) {
        (Some(n), _) => n <= 0,
        (None, Some(at)) => at <= now(),
        (None, None) => false,
    };
    (!name.is_empty()).then_some((name, value, expired))
}

/// A `Set-Cookie` header's attributes after its `name=value`, as
/// (name, value) pairs trimmed (a flag's value is empty).
pub fn set_cookie_attrs(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    header.split(|&b| b == b';').skip(1).map(|attr| {
        let attr = attr.trim_ascii();
        match attr.iter().position(|&b| b == b'=') {
            Some(eq) => (attr[..eq].trim_ascii(), attr[eq + 1..].trim_ascii()),
            None => (attr, &attr[attr.len()..]),
        }
    })
}

/// A cookie date (RFC 6265 §5.1.1, lenient as browsers are: `Thu, 01 Jan
/// 1970 00:00:10 GMT`, `Thursday, 01-Jan-70 ...`, `Thu Jan  1 00:00:10
/// 1970`) in seconds since the Unix epoch; `None` if it is not one.
pub fn cookie_date(s: &[u8]) -> Option<u64> {
    const MONTHS: [&[u8; 3]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    let delimiter = |b: &u8| !(b.is_ascii_alphanumeric() || *b == b':' || *b >= 0x80);
    let (mut time, mut day, mut month, mut year) = (None, None, None, None);
    let digits = |t: &[u8], min: usize, max: usize| -> Option<u64> {
        let n = t.iter().take_while(|b| b.is_ascii_digit()).count();
        (min..=max).contains(&n).then(|| {
            t[..n]
                .iter()
                .fold(0u64, |v, &d| v * 10 + u64::from(d - b'0'))
        })
    };
    for token in s.split(delimiter).filter(|t| !t.is_empty()) {
        if time.is_none() {
            let mut hms = token.splitn(3, |&b| b == b':');
            let parsed = (|| {
                let h = digits(hms.next()?, 1, 2)?;
                let m = digits(hms.next()?, 1, 2)?;
                let s = digits(hms.next()?, 1, 2)?;
                Some((h, m, s))
            })();
            if parsed.is_some() {
                time = parsed;
                continue;
            }
        }
        if day.is_none() {
            if let Some(d) = digits(token, 1, 2) {
                day = Some(d);
                continue;
            }
        }
        if month.is_none() && token.len() >= 3 {
            let m = token[..3].to_ascii_lowercase();
            if let Some(i) = MONTHS.iter().position(|n| n[..] == m[..]) {
                month = Some(i as u64 + 1);
                continue;
            }
        }
        if year.is_none() {
            if let Some(y) = digits(token, 2, 4) {
                year = Some(match y {
                    70..=99 => y + 1900,
                    0..=69 => y + 2000,
                    y => y,
                });
            }
        }
    }
    let ((h, m, sec), d, mo, y) = (time?, day?, month?, year?);
    if !(1..=31).contains(&d) || y < 1601 || h > 23 || m > 59 || sec > 59 {
        return None;
    }
    // Days from 1970-01-01 to y-mo-d (Howard Hinnant's days_from_civil).
    let (y, mo, d) = (y as i64, mo as i64, d as i64);
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + (h * 3600 + m * 60 + sec) as i64;
    // Before the epoch is as past as the epoch.
    Some(secs.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_cookie_headers() {
        assert_eq!(
            parse_set_cookie(b"JSESSIONID=ABC.cas1; Path=/cas; HttpOnly"),
            Some((&b"JSESSIONID"[..], &b"ABC.cas1"[..], false))
        );
        assert_eq!(
            parse_set_cookie(b"TGC=\"\"; Max-Age=0; Path=/cas"),
            Some((&b"TGC"[..], &b""[..], true))
        );
        assert_eq!(
            parse_set_cookie(b"x=1; max-age=-1").map(|c| c.2),
            Some(true)
        );
        assert_eq!(
            parse_set_cookie(b"x=1; Max-Age=10").map(|c| c.2),
            Some(false)
        );
        assert_eq!(parse_set_cookie(b"noequals"), None);
        assert_eq!(parse_set_cookie(b"=v"), None);
    }

    #[test]
    fn expires_in_the_past_expires_unless_max_age_says_otherwise() {
        let now = 1_800_000_000; // 2027
        let expired = |h: &str| parse_set_cookie_at(h.as_bytes(), now).map(|c| c.2);
        // What CAS (Spring's CookieGenerator) writes on logout.
        assert_eq!(
            expired("TGC=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:10 GMT; Path=/cas"),
            Some(true)
        );
        assert_eq!(
            expired("TGC=; Expires=Thu, 01-Jan-1970 00:00:10 GMT"),
            Some(true)
        );
        assert_eq!(
            expired("TGC=x; Expires=Wed, 01 Jan 2025 00:00:00 GMT"),
            Some(true)
        );
        assert_eq!(
            expired("TGC=x; Expires=Fri, 01 Jan 2100 00:00:00 GMT"),
            Some(false)
        );
        // Max-Age wins over Expires.
        assert_eq!(
            expired("TGC=x; Expires=Thu, 01 Jan 1970 00:00:10 GMT; Max-Age=60"),
            Some(false)
        );
        assert_eq!(
            expired("TGC=x; Expires=Fri, 01 Jan 2100 00:00:00 GMT; Max-Age=0"),
            Some(true)
        );
        // A date that is not one is ignored.
        assert_eq!(expired("TGC=x; Expires=yesterday"), Some(false));
        assert_eq!(expired("TGC=x; Max-Age=soon"), Some(false));
    }

    #[test]
    fn set_cookie_attributes() {
        let attrs: Vec<_> = set_cookie_attrs(b"TGC=x; path = /cas/ ; Secure; Max-Age=60").collect();
        assert_eq!(
            attrs,
            [
                (&b"path"[..], &b"/cas/"[..]),
                (b"Secure", b""),
                (b"Max-Age", b"60")
            ]
        );
        assert_eq!(set_cookie_attrs(b"Path=/x").count(), 0);
    }

    #[test]
    fn cookie_dates() {
        assert_eq!(cookie_date(b"Thu, 01 Jan 1970 00:00:10 GMT"), Some(10));
        assert_eq!(
            cookie_date(b"Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            cookie_date(b"Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(cookie_date(b"Sun Nov  6 08:49:37 1994"), Some(784_111_777));
        assert_eq!(
            cookie_date(b"Tue, 29 Feb 2028 23:59:59 GMT"),
            Some(1_835_481_599)
        );
        for bad in [
            &b""[..],
            b"Thu, 01 Jan 1970",
            b"32 Jan 1970 00:00:00",
            b"01 Foo 1970 00:00:00",
            b"01 Jan 1970 24:00:00",
        ] {
            assert_eq!(cookie_date(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    proptest::proptest! {
        #[test]
        fn set_cookie_parsing_never_panics(h in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse_set_cookie_at(&h, 1_800_000_000);
            let _ = cookie_date(&h);
        }
    }
}
