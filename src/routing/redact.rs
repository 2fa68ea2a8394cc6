//! What logs and `explain` may show of a credential (DESIGN §5): a ticket id
//! becomes its prefix and, only when it ends in a suffix configured for the
//! pool, that suffix (`ST-…-cas2`); a compact JWS its `eyJ` and length;
//! anything else its length only.

use super::parse::ticket_prefix_end;
use super::table::PoolInfo;

/// A printable, non-secret form of a ticket id or cookie value. `pool`, when
/// given, lets a configured suffix be shown.
pub fn redact(value: &[u8], pool: Option<&PoolInfo>) -> String {
    if let Some(dash) = ticket_prefix_end(value) {
        let prefix = String::from_utf8_lossy(&value[..dash]);
        let suffix = pool
            .and_then(|p| p.suffixes.lookup(value, dash))
            .map(|m| &value[value.len() - m.len..]);
        return match suffix {
            Some(s) => format!("{prefix}-…-{}", String::from_utf8_lossy(s)),
            None => format!("{prefix}-…"),
        };
    }
    if value.starts_with(b"eyJ") {
        return format!("eyJ…({} bytes)", value.len());
    }
    format!("…({} bytes)", value.len())
}

#[cfg(test)]
mod tests {
    use super::redact;
    use crate::routing::tests::table;

    #[test]
    fn never_more_than_prefix_and_configured_suffix() {
        let t = table();
        let cas = t.pool(0);
        assert_eq!(
            redact(b"ST-12-Xy9kQ-rT3-cas-02.example.edu", cas),
            "ST-…-cas-02.example.edu"
        );
        assert_eq!(redact(b"ST-1-abc-cas2", cas), "ST-…-cas2");
        // No configured suffix: nothing of the random part.
        assert_eq!(redact(b"ST-12-Xy9kQ-rT3", cas), "ST-…");
        assert_eq!(redact(b"ST-1-2pVhiVjwq", cas), "ST-…");
        assert_eq!(redact(b"ST-1-abc-cas2", None), "ST-…");
        assert_eq!(redact(b"TGT-", cas), "TGT-…");
        assert_eq!(
            redact(b"eyJhbGciOiJIUzUxMiJ9.e30.sig", cas),
            "eyJ…(28 bytes)"
        );
        assert_eq!(redact(b"8F3A2B1C9D0E.cas1", cas), "…(17 bytes)");
        assert_eq!(redact(&[0xff, b'S', b'T', b'-'], cas), "…(4 bytes)");
    }
}
