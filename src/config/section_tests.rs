//! Tests of the `[admin]` and `[log]` sections, the request limits of
//! `[limits]` and `[pool.route_cookie]` (its key files and their modes).

use super::tests::{errors, parse_str, warnings, HEAD};
use super::*;

#[test]
fn admin_token() {
    let pool = "[[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n[[pool.node]]\nname = \"cas1\"\nurl = \"http://h:1\"\n";
    let ok = format!("{HEAD}[admin]\ntoken = \"0123456789abcdef\"\n{pool}");
    let c = parse_str(&ok).config.unwrap();
    assert_eq!(c.admin.token.as_deref(), Some("0123456789abcdef"));
    assert_eq!(c.admin.listen, "127.0.0.1:9901".parse().unwrap());
    let short = format!("{HEAD}[admin]\ntoken = \"secret\"\n{pool}");
    assert_eq!(
        errors(&short),
        ["7:9: admin token must be at least 16 printable characters without spaces"]
    );
    // Beyond loopback without a token: a warning with its position.
    let open = format!(
        "{HEAD}[admin]\nlisten = \"0.0.0.0:9901\"\nhosts = [\"status.example.edu\"]\n{pool}"
    );
    assert_eq!(
        warnings(&open),
        [
            "7:10: the admin API listens on 0.0.0.0:9901, beyond loopback, without a token: \
          anyone who reaches it can drain, disable or reload; set [admin] token"
        ]
    );
    assert_eq!(
        parse_str(&open).config.unwrap().admin.hosts,
        ["status.example.edu"]
    );
    assert!(warnings(&format!("{HEAD}[admin]\nlisten = \"[::1]:9901\"\n{pool}")).is_empty());
}

#[test]
fn log_section() {
    let pool = "[[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n[[pool.node]]\nname = \"cas1\"\nurl = \"http://h:1\"\n";
    let c = parse_str(&format!("{HEAD}{pool}")).config.unwrap();
    assert_eq!(
        (c.log.access, c.log.format, c.log.level),
        (true, LogFormat::Text, tracing::Level::INFO)
    );
    let set = format!("{HEAD}[log]\naccess = false\nformat = \"json\"\nlevel = \"warn\"\n{pool}");
    let c = parse_str(&set).config.unwrap();
    assert_eq!(
        (c.log.access, c.log.format, c.log.level),
        (false, LogFormat::Json, tracing::Level::WARN)
    );
    let bad = format!("{HEAD}[log]\nformat = \"xml\"\nlevel = \"loud\"\n{pool}");
    assert_eq!(
        errors(&bad),
        [
            "7:10: log format `xml`: expected `text` or `json`",
            "8:9: log level `loud`: expected one of error, warn, info, debug, trace"
        ]
    );
}

#[test]
fn request_limits() {
    let pool = "[[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n[[pool.node]]\nname = \"cas1\"\nurl = \"http://h:1\"\n";
    let c = parse_str(&format!("{HEAD}{pool}")).config.unwrap();
    assert_eq!((c.limits.max_uri, c.limits.max_header_bytes), (8192, 32768));
    let bad = format!("{HEAD}[limits]\nmax_uri = 100\nmax_header_bytes = 4096\n{pool}");
    assert_eq!(
        errors(&bad),
        [
            "7:11: `max_uri` must be between 256 and 65536, not 100",
            "8:20: `max_header_bytes` must be between 8192 and 1048576, not 4096"
        ]
    );
}

#[test]
fn route_cookie_keys_are_read_and_checked() {
    let dir = std::env::temp_dir().join(format!("casfront-rc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("good.key"), format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::write(dir.join("short.key"), "abcd\n").unwrap();
    let text = |section: &str| {
        format!(
            "[listen]\nhttps = \"127.0.0.1:8443\"\n[tls]\ncert = \"c\"\nkey = \"k\"\n\
             [[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n[[pool.node]]\nname = \"cas1\"\n\
             url = \"http://10.0.0.1:8080\"\n{section}"
        )
    };
    let p = parse(
        &text("[pool.route_cookie]\nkey_file = \"good.key\"\nprevious_key_file = \"good.key\"\n"),
        &dir,
    );
    let rc = p.config.unwrap().pools[0].route_cookie.clone().unwrap();
    assert_eq!((rc.name.as_str(), rc.keys.len()), ("CASFRONT_ROUTE", 2));
    assert_eq!(rc.keys[0], [0xab; 32]);
    // Debug output never shows a key.
    assert!(!format!("{rc:?}").contains("171"), "{rc:?}");
    let p = parse(
        &text("[pool.route_cookie]\nname = \"bad name\"\nkey_file = \"short.key\"\nprevious_key_file = \"none.key\"\n"),
        &dir,
    );
    let e: Vec<String> = p.errors().map(ToString::to_string).collect();
    let e = e.join("\n");
    assert!(
        e.contains("13:8: error: `bad name` is not a valid cookie name"),
        "{e}"
    );
    assert!(
        e.contains("14:12: error: ")
            && e.contains("short.key must hold 32 random bytes as 64 hex characters"),
        "{e}"
    );
    assert!(e.contains("15:21: error: cannot read"), "{e}");
    // Without key_file: the state directory's key, on by default, read
    // if it is there; created only by a process about to serve.
    let state = dir.join("state");
    let _ = std::fs::remove_dir_all(&state);
    let in_state = |section: &str| text(&format!("{section}[state]\ndirectory = \"state\"\n"));
    for section in ["", "[pool.route_cookie]\nname = \"R\"\n"] {
        let mut c = parse(&in_state(section), &dir).config.unwrap();
        let rc = c.pools[0].route_cookie.clone().unwrap();
        assert!(rc.generated && rc.keys.is_empty(), "{rc:?}");
        assert_eq!(c.state.route_key(), state.join("route.key"));
        assert!(!state.exists(), "parsing created the state directory");
        assert!(c
            .prepare_state(crate::config::Keep::OnDisk)
            .unwrap()
            .is_some());
        let rc = c.pools[0].route_cookie.clone().unwrap();
        assert_eq!(rc.keys.len(), 1);
        // Read back, the same key, by the next parse.
        let again = parse(&in_state(section), &dir).config.unwrap();
        assert_eq!(again.pools[0].route_cookie.as_ref().unwrap().keys, rc.keys);
        let _ = std::fs::remove_dir_all(&state);
    }
    let off = parse(&text("[pool.route_cookie]\nenabled = false\n"), &dir);
    assert_eq!(off.config.unwrap().pools[0].route_cookie, None);
    let p = parse(
        &text("[pool.route_cookie]\nprevious_key_file = \"good.key\"\n"),
        &dir,
    );
    assert!(p
        .errors()
        .any(|d| d.to_string().contains("previous_key_file needs key_file")));
    // A key every user may read is warned about, with its position.
    use std::os::unix::fs::PermissionsExt;
    let good = dir.join("good.key");
    let one = text("[pool.route_cookie]\nkey_file = \"good.key\"\n");
    let warnings = |mode| {
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(mode)).unwrap();
        let p = parse(&one, &dir);
        p.warnings().map(ToString::to_string).collect::<Vec<_>>()
    };
    let open = warnings(0o644);
    assert_eq!(open.len(), 1, "{open:?}");
    assert!(
        open[0].starts_with("13:12: warning: ") && open[0].ends_with("(mode 644): chmod o-rw"),
        "{open:?}"
    );
    assert!(warnings(0o600).is_empty());
    assert!(
        warnings(0o640).is_empty(),
        "a group such as ssl-cert may read it"
    );
}
