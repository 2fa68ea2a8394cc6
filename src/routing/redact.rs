//! What logs and `explain` may show of a credential (DESIGN §5): a ticket id
//! becomes `ST-…-cas2` (its prefix and its last `-` part, which is the
//! suffix when there is one), anything else its first four bytes and length.

/// A printable, non-secret form of a ticket id or cookie value.
pub fn redact(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    if let Some(dash) = super::parse::ticket_prefix_end(value) {
        let prefix = &text[..dash];
        return match text.rfind('-') {
            // At least PREFIX-x-LAST: show LAST.
            Some(last) if last > dash + 1 => format!("{prefix}-…{}", &text[last..]),
            _ => format!("{prefix}-…"),
        };
    }
    if value.len() <= 8 {
        return format!("…({} bytes)", value.len());
    }
    let head: String = text.chars().take(4).collect();
    format!("{head}…({} bytes)", value.len())
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn never_the_whole_value() {
        assert_eq!(
            redact(b"ST-12-Xy9kQ-rT3-cas-01.example.edu"),
            "ST-…-01.example.edu"
        );
        assert_eq!(redact(b"ST-1-abc-cas2"), "ST-…-cas2");
        assert_eq!(redact(b"ST-1abc"), "ST-…");
        assert_eq!(redact(b"TGT-"), "TGT-…");
        assert_eq!(redact(b"eyJhbGciOiJIUzUxMiJ9.e30.sig"), "eyJh…(28 bytes)");
        assert_eq!(redact(b"short"), "…(5 bytes)");
        assert_eq!(
            redact(&[0xff, 0xfe, b'A', 0, 1, 2, 3, 4, 5, 6]),
            "\u{fffd}\u{fffd}A\0…(10 bytes)"
        );
    }
}
