//! Configuration tests: defaults, every kind of error with its position,
//! warnings, and the example file.

use std::path::Path;
use std::time::Duration;

use super::*;

pub(super) const HEAD: &str =
    "[listen]\nhttps = \"0.0.0.0:8443\"\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n";

pub(super) fn parse_str(s: &str) -> Parsed {
    parse(s, Path::new("/etc/casfront"))
}

/// Errors as `line:col: message` strings.
pub(super) fn errors(s: &str) -> Vec<String> {
    parse_str(s)
        .errors()
        .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
        .collect()
}

pub(super) fn warnings(s: &str) -> Vec<String> {
    parse_str(s)
        .warnings()
        .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
        .collect()
}

fn with_pool(pool: &str) -> String {
    format!("{HEAD}{pool}")
}

#[test]
fn defaults_are_applied() {
    let p = parse_str(&with_pool(
        "[[pool]]\nname = \"cas\"\npath_prefix = \"/cas/\"\n[[pool.node]]\nname = \"cas1\"\nurl = \"https://cas1.example.edu\"\n",
    ));
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
    let c = p.config.unwrap();
    assert_eq!(c.tls.certificates.len(), 1);
    assert_eq!(c.tls.certificates[0].cert, Path::new("/etc/casfront/c.pem"));
    assert!(c.tls.certificates[0].names.is_empty());
    assert_eq!(c.limits, Limits::default());
    assert_eq!(c.limits.body_prefix, 16 * 1024);
    assert!(c.listen.trusted_proxies.is_empty());
    assert_eq!(c.pools[0].host_override, None);
    assert_eq!(c.pools[0].upstream_ca, None);
    assert_eq!(c.pools[0].nodes[0].server_name, None);
    assert_eq!(c.admin.listen, "127.0.0.1:9901".parse().unwrap());
    assert_eq!(c.listen.http, None);
    let pool = &c.pools[0];
    assert_eq!(pool.path_prefix, "/cas");
    assert_eq!(pool.tgc_cookies, ["TGC", "CASTGC"]);
    assert_eq!(pool.session_cookie, "JSESSIONID");
    assert_eq!(
        pool.health,
        HealthCheck {
            path: "/cas/login".into(),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3
        }
    );
    assert_eq!(pool.upstream, Upstream::default());
    assert_eq!(pool.upstream.idle_timeout, Duration::from_secs(15));
    assert_eq!(
        c.learned,
        LearnedCookies {
            capacity: 100_000,
            ttl: Duration::from_secs(1800)
        }
    );
    let n = &pool.nodes[0];
    assert_eq!(
        (
            n.ticket_suffixes.as_slice(),
            n.jvm_route.as_str(),
            n.f5_md5,
            n.backup
        ),
        (&["cas1".to_owned()][..], "cas1", false, false)
    );
    assert_eq!(
        n.url,
        NodeUrl {
            scheme: Scheme::Https,
            host: "cas1.example.edu".into(),
            port: 443,
            ipv4: None
        }
    );
    assert_eq!(n.url.authority(), "cas1.example.edu:443");
}

#[test]
fn three_mistakes_are_all_reported_with_positions() {
    let src = with_pool(
        "[[pool]]\nname = \"cas\"\npath_prefix = \"cas\"\n\
         [pool.health]\nrise = 0\n\
         [[pool.node]]\nname = \"n1\"\nurl = \"https://10.0.0.1:8443\"\nweight = 3\n",
    );
    assert_eq!(
        errors(&src),
        [
            "8:15: path_prefix `cas` must start with `/`",
            "10:8: `rise` must be between 1 and 1000, not 0",
            "14:1: unknown key `weight`; expected one of: name, url, ticket_suffixes, f5_md5, jvm_route, backup, server_name",
        ]
    );
}

#[test]
fn unknown_and_missing_keys() {
    let src = "[listen]\nhttps = \"0.0.0.0:8443\"\nhtps = 1\n[tls]\ncert = \"a\"\n[tsl]\n[[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n[[pool.node]]\nname = \"a1b\"\n";
    assert_eq!(
        errors(src),
        [
            "3:1: unknown key `htps` (did you mean `https`?); expected one of: https, http, trusted_proxies, hosts, proxy_protocol",
            "5:8: `tls.cert` is set without `tls.key`",
            "6:2: unknown section `tsl` (did you mean `tls`?); expected one of: listen, tls, client_cert, admin, learned, limits, rate_limit, log, state, pool",
            "10:1: missing key `url` in [[pool.node]]",
        ]
    );
}

#[test]
fn every_bad_value_and_missing_key_of_one_section() {
    // One node: both required keys missing, two values of the wrong type,
    // and a pool with a wrong type beside a bad value.
    let src = with_pool(
        "[[pool]]\nname = 3\npath_prefix = \"cas\"\n\
         [[pool.node]]\nbackup = \"yes\"\nticket_suffixes = [1]\n",
    );
    let e = errors(&src);
    assert_eq!(e.len(), 6, "{e:#?}");
    assert!(
        e[0].starts_with("7:8: invalid type: integer `3`, expected a string"),
        "{e:#?}"
    );
    assert_eq!(e[1], "8:15: path_prefix `cas` must start with `/`");
    assert_eq!(e[2], "9:1: missing key `name` in [[pool.node]]");
    assert_eq!(e[3], "9:1: missing key `url` in [[pool.node]]");
    assert!(
        e[4].starts_with("10:10: invalid type: string \"yes\", expected a boolean"),
        "{e:#?}"
    );
    assert!(
        e[5].starts_with("11:20: invalid type: integer `1`, expected a string"),
        "{e:#?}"
    );
}

#[test]
fn missing_sections() {
    let e = errors("");
    assert_eq!(
        e,
        [
            "1:1: missing section [listen]: `listen.https` is required",
            "1:1: missing section [tls]: `tls.cert` and `tls.key` are required",
            "1:1: no [[pool]]: at least one pool with nodes is required",
        ]
    );
}

#[test]
fn toml_syntax_error_has_a_position() {
    let e = errors("[listen]\nhttps = \"0.0.0.0:8443\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("2:"), "{e:?}");
}

#[test]
fn wrong_shapes() {
    let e = errors(&with_pool("[pool]\nname = \"cas\"\n"));
    assert!(e.iter().any(|m| m.contains("write [[pool]]")), "{e:?}");
    let e = errors(&with_pool("[[pool]]\nname = 3\npath_prefix = \"/x\"\n[[pool.node]]\nname=\"a12\"\nurl=\"http://h:1\"\n"));
    assert!(
        e.iter()
            .any(|m| m.starts_with("7:8:") && m.contains("invalid type")),
        "{e:?}"
    );
}

#[test]
fn duplicate_names_and_prefixes() {
    let src = with_pool(
        "[[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n[[pool.node]]\nname = \"cas1\"\nurl = \"http://a:1\"\n\
         [[pool]]\nname = \"cas\"\npath_prefix = \"/cas/\"\n[[pool.node]]\nname = \"cas1\"\nurl = \"http://b:1\"\n",
    );
    let e = errors(&src);
    assert_eq!(
        e,
        [
            "13:8: duplicate pool name `cas` (first at 7:8)",
            "14:15: duplicate path_prefix `/cas` (first at 8:15)",
            "16:8: duplicate node name `cas1` (first at 10:8)",
        ]
    );
}

#[test]
fn node_urls() {
    for (url, why) in [
        ("ftp://h:21", "must use http or https"),
        ("https://h:8443/cas", "must not have a path"),
        ("https://u:p@h:1", "must not contain credentials"),
        ("h:8443", "must use http or https"),
        ("not a url", "is not a URL"),
        ("https://h:99999", "is not a URL"),
    ] {
        let src = with_pool(&format!(
            "[[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n[[pool.node]]\nname = \"cas1\"\nurl = \"{url}\"\n"
        ));
        let e = errors(&src);
        assert!(
            e.len() == 1 && e[0].starts_with("11:7:") && e[0].contains(why),
            "{url}: {e:?}"
        );
    }
    let ok = parse_str(&with_pool(
        "[[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n[[pool.node]]\nname = \"cas1\"\nurl = \"http://[::1]:8080/\"\n",
    ));
    let url = &ok.config.unwrap().pools[0].nodes[0].url;
    assert_eq!(
        (url.scheme, url.authority()),
        (Scheme::Http, "[::1]:8080".to_owned())
    );
}

#[test]
fn suffix_claims() {
    let src = with_pool(
        "[[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n\
         [[pool.node]]\nname = \"cas1\"\nurl = \"http://10.0.0.1:1\"\nticket_suffixes = [\"cas-02.example.edu\"]\n\
         [[pool.node]]\nname = \"cas2\"\nurl = \"http://10.0.0.2:1\"\nticket_suffixes = [\"02.example.edu\", \"x1\"]\n\
         [[pool.node]]\nname = \"cas3\"\nurl = \"http://10.0.0.3:1\"\nticket_suffixes = [\"cas-02.example.edu\"]\njvm_route = \"cas2\"\n",
    );
    assert_eq!(
        errors(&src),
        [
            "20:20: ticket suffix `cas-02.example.edu` is claimed by nodes `cas1` and `cas3`",
            "21:13: jvm_route `cas2` is claimed by nodes `cas2` and `cas3`",
        ]
    );
    let w = warnings(&src);
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(w[0].starts_with("16:20: suffix `02.example.edu` of node `cas2` is a tail of `cas-02.example.edu` (node `cas1`)"));
    assert!(w[1].starts_with("16:20: suffix `02.example.edu` of node `cas2` is a tail of `cas-02.example.edu` (node `cas3`)"));
    assert!(w[2].starts_with("16:38: ticket suffix `x1` is shorter than 3"));
}

#[test]
fn suffixes_across_pools_do_not_conflict() {
    let src = with_pool(
        "[[pool]]\nname = \"a\"\npath_prefix = \"/a\"\n[[pool.node]]\nname = \"a1\"\nurl = \"http://h:1\"\nticket_suffixes = [\"same\"]\n\
         [[pool]]\nname = \"b\"\npath_prefix = \"/b\"\n[[pool.node]]\nname = \"b1\"\nurl = \"http://h:2\"\nticket_suffixes = [\"same\"]\n",
    );
    assert!(errors(&src).is_empty());
}

#[test]
fn f5_claims_and_hosts() {
    let src = with_pool(
        "[[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n\
         [[pool.node]]\nname = \"cas1\"\nurl = \"http://cas1.example.edu:1\"\nf5_md5 = true\n\
         [[pool.node]]\nname = \"cas2\"\nurl = \"http://10.0.0.2:1\"\nf5_md5 = true\n\
         [[pool.node]]\nname = \"cas3\"\nurl = \"https://10.0.0.2:2\"\nf5_md5 = true\n",
    );
    let e = errors(&src);
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(
        e[0],
        "12:10: f5_md5 = true needs a node url whose host is an IPv4 address"
    );
    assert!(
        e[1].starts_with("20:10: ticket suffix `")
            && e[1].ends_with("is claimed by nodes `cas2` and `cas3`"),
        "{e:?}"
    );
}

#[test]
fn bad_values() {
    // A second [listen]: TOML itself refuses it, at the second header.
    assert_eq!(errors(&with_pool("[listen]\n")), ["6:2: duplicate key"]);
    let src = String::from(
        "[listen]\nhttps = \"0.0.0.0\"\nhttp = \"localhost:80\"\n[tls]\ncert = \"\"\nkey = \"k\"\n[admin]\nlisten = \"x\"\n\
         [[pool]]\nname = \"a b\"\npath_prefix = \"/a?b\"\ntgc_cookies = [\"TGC\", \"bad;name\"]\nsession_cookie = \"\"\n\
         [pool.health]\npath = \"login\"\ninterval = \"0s\"\ntimeout = \"fast\"\nfall = -1\n\
         [[pool.node]]\nname = \"n/1\"\nurl = \"http://h:1\"\nticket_suffixes = [\"-abc\", \"a b\"]\njvm_route = \"\"\n"
    );
    let e = errors(&src);
    let expect = [
        "2:9: `0.0.0.0` is not an IP:PORT address (the port is missing)",
        "3:8: `localhost:80` is not an IP:PORT address",
        "5:8: file path is empty",
        "8:10: `x` is not an IP:PORT address",
        "10:8: pool name `a b` must be",
        "11:15: path_prefix `/a?b` must not contain '?'",
        "12:23: `bad;name` is not a valid cookie name",
        "13:18: `` is not a valid cookie name",
        "15:8: health path `login` must start with `/`",
        "16:12: duration must be greater than 0",
        "17:11: invalid duration `fast`",
        "18:8: `fall` must be between 1 and 1000, not -1",
        "20:8: node name `n/1` must be",
        "22:20: ticket suffix `-abc` must be",
        "22:28: ticket suffix `a b` must be",
        "23:13: jvm_route `` must be non-empty",
    ];
    assert_eq!(e.len(), expect.len(), "{e:#?}");
    for (got, want) in e.iter().zip(expect) {
        assert!(got.starts_with(want), "got {got:?}, want {want:?}");
    }
}

#[test]
fn upstream_and_learned_sections() {
    let src = format!(
        "{HEAD}[learned]\ncapacity = 1\nttl = \"soon\"\n\
         [[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n\
         [pool.upstream]\nconnect_timeout = \"250ms\"\nidle_timeout = \"25s\"\nmax_idle = -1\nretries = 3\n\
         [[pool.node]]\nname = \"cas1\"\nurl = \"http://h:1\"\n"
    );
    assert_eq!(
        errors(&src),
        [
            "7:12: `capacity` must be between 2 and 100000000, not 1",
            "8:7: invalid duration `soon`: expected number at 0 (write e.g. \"2s\" or \"500ms\")",
            "15:12: `max_idle` must be between 0 and 10000, not -1",
            "16:1: unknown key `retries`; expected one of: connect_timeout, response_timeout, idle_timeout, max_idle, max_connections, queue_timeout, down_cooldown",
        ]
    );
    assert_eq!(
        warnings(&src),
        ["14:16: idle_timeout is not below Tomcat's default keep-alive (20s): a pooled connection may be reused after the node closed it"]
    );
    let ok = src
        .replace("capacity = 1\n", "")
        .replace("ttl = \"soon\"\n", "ttl = \"5m\"\n")
        .replace("max_idle = -1\nretries = 3\n", "max_idle = 0\n");
    let c = parse_str(&ok).config.unwrap();
    assert_eq!(
        (
            c.learned.ttl,
            c.pools[0].upstream.connect_timeout,
            c.pools[0].upstream.max_idle
        ),
        (Duration::from_secs(300), Duration::from_millis(250), 0)
    );
    // No cap by default; a cap below max_idle warns; a negative one is an error.
    assert_eq!(c.pools[0].upstream.max_connections, 0);
    assert_eq!(c.pools[0].upstream.queue_timeout, Duration::from_secs(5));
    let capped = ok.replace(
        "max_idle = 0\n",
        "max_idle = 8\nmax_connections = 4\nqueue_timeout = \"750ms\"\n",
    );
    assert_eq!(
        warnings(&capped)[1..],
        ["15:19: max_idle (8) is above max_connections (4): at most 4 connections per node are kept"]
    );
    // The default max_idle (256) above a cap is no mistake: no warning.
    let only_cap = ok.replace("max_idle = 0\n", "max_connections = 4\n");
    assert_eq!(warnings(&only_cap).len(), 1, "{:?}", warnings(&only_cap));
    let c = parse_str(&capped).config.unwrap();
    let u = &c.pools[0].upstream;
    assert_eq!(
        (u.max_connections, u.queue_timeout),
        (4, Duration::from_millis(750))
    );
    assert_eq!(
        errors(&capped.replace("max_connections = 4", "max_connections = -2")),
        ["15:19: `max_connections` must be between 0 and 100000, not -2"]
    );
}

#[test]
fn slow_health_checks_warn() {
    let src = with_pool("[[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n[pool.health]\ninterval = \"1s\"\ntimeout = \"1500ms\"\n[[pool.node]]\nname = \"cas1\"\nurl = \"http://h:1\"\n");
    assert!(errors(&src).is_empty());
    assert_eq!(
        warnings(&src),
        ["11:11: health timeout is not shorter than interval: checks will overlap"]
    );
    // Only the interval set, below the default 1 s timeout.
    let short = src
        .replace("timeout = \"1500ms\"\n", "")
        .replace("\"1s\"", "\"500ms\"");
    assert_eq!(
        warnings(&short),
        ["10:12: health timeout is not shorter than interval: checks will overlap"]
    );
}

#[test]
fn too_many_tgc_cookies() {
    let src = with_pool("[[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\ntgc_cookies = [\"a\", \"b\", \"c\", \"d\", \"e\"]\n[[pool.node]]\nname = \"cas1\"\nurl = \"http://h:1\"\n");
    assert_eq!(errors(&src), ["9:15: tgc_cookies lists 5 names: at most 4"]);
}

#[test]
fn example_config_is_valid_and_documents_every_key() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/casfront.example.toml");
    let p = load(&path).unwrap();
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
    let c = p.config.unwrap();
    assert_eq!(c.pools.len(), 3);
    let text = std::fs::read_to_string(&path).unwrap();
    let sections = [
        ("listen", diag::fields_of::<raw::RawListen>()),
        ("tls", diag::fields_of::<raw::RawTls>()),
        ("client_cert", diag::fields_of::<raw::RawClientCert>()),
        ("admin", diag::fields_of::<raw::RawAdmin>()),
        ("pool", diag::fields_of::<raw::RawPool>()),
        ("pool.health", diag::fields_of::<raw::RawHealth>()),
        ("pool.upstream", diag::fields_of::<raw::RawUpstream>()),
        ("learned", diag::fields_of::<raw::RawLearned>()),
        ("limits", diag::fields_of::<raw::RawLimits>()),
        ("rate_limit", diag::fields_of::<raw::RawRateLimit>()),
        ("pool.headers", diag::fields_of::<raw::RawHeaders>()),
        ("log", diag::fields_of::<raw::RawLog>()),
        ("tls.certificate", diag::fields_of::<raw::RawCertificate>()),
        ("pool.node", diag::fields_of::<raw::RawNode>()),
    ];
    for (section, fields) in sections {
        for key in fields {
            let set = format!("\n{key} = ");
            assert!(
                text.contains(&set),
                "the example does not set `{section}.{key}`"
            );
        }
    }
}

#[test]
fn certificates_by_sni() {
    let src = "[listen]\nhttps = \"0.0.0.0:8443\"\n\
               [[tls.certificate]]\ncert = \"a.pem\"\nkey = \"a.key\"\n\
               [[tls.certificate]]\ncert = \"/b.pem\"\nkey = \"b.key\"\nnames = [\"Login.Example.org\", \"*.idp.example.edu\"]\n\
               [[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n[[pool.node]]\nname = \"cas1\"\nurl = \"http://h:1\"\n";
    let c = parse_str(src).config.unwrap();
    let certs = &c.tls.certificates;
    assert_eq!(certs.len(), 2);
    assert_eq!(certs[0].cert, Path::new("/etc/casfront/a.pem"));
    assert!(certs[0].names.is_empty());
    assert_eq!(certs[1].cert, Path::new("/b.pem"));
    assert_eq!(certs[1].names, ["login.example.org", "*.idp.example.edu"]);
    // [tls] cert/key comes first, then the list.
    let both = src.replace("[listen]\nhttps = \"0.0.0.0:8443\"\n", HEAD);
    let c = parse_str(&both).config.unwrap();
    assert_eq!(c.tls.certificates.len(), 3);
    assert_eq!(c.tls.certificates[0].cert, Path::new("/etc/casfront/c.pem"));

    let bad = src
        .replace("\"*.idp.example.edu\"", "\"a..b\", \"*.*.x\"")
        .replace("key = \"a.key\"\n", "");
    assert_eq!(
        errors(&bad),
        [
            "3:1: missing key `key` in [[tls.certificate]]",
            "8:31: certificate name `a..b` is not a DNS name such as `cas.example.edu` or `*.example.edu`",
            "8:39: certificate name `*.*.x` is not a DNS name such as `cas.example.edu` or `*.example.edu`",
        ]
    );
    let none = "[listen]\nhttps = \"0.0.0.0:8443\"\n[tls]\nkey = \"k.pem\"\n";
    assert_eq!(
        errors(none)[1..],
        ["4:7: `tls.key` is set without `tls.cert`"]
    );
    assert_eq!(
        errors("[listen]\nhttps = \"0.0.0.0:8443\"\n[tls]\n")[1..],
        ["3:1: [tls] needs `cert` and `key` (or a [[tls.certificate]] list)"]
    );
}

#[test]
fn proxies_overrides_and_limits() {
    let src = String::from(
        "[listen]\nhttps = \"0.0.0.0:8443\"\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.1\", \"2001:db8::/32\"]\n\
         [tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
         [limits]\nbody_prefix = 4096\nbody_wait = \"2s\"\n\
         [[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\nhost_override = \"cas.example.edu\"\nupstream_ca = \"ca.pem\"\n\
         [[pool.node]]\nname = \"cas1\"\nurl = \"https://10.0.0.11:8443\"\nserver_name = \"CAS1.example.edu\"\n"
    );
    let p = parse_str(&src);
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
    let c = p.config.unwrap();
    assert_eq!(c.listen.trusted_proxies.len(), 3);
    assert!(c.listen.trusts("10.1.2.3".parse().unwrap()));
    assert!(c.listen.trusts("::ffff:10.1.2.3".parse().unwrap()));
    assert!(c.listen.trusts("192.0.2.1".parse().unwrap()));
    assert!(!c.listen.trusts("192.0.2.2".parse().unwrap()));
    assert!(c.listen.trusts("2001:db8::1".parse().unwrap()));
    assert_eq!(
        c.limits,
        Limits {
            body_prefix: 4096,
            body_wait: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(30),
            ..Limits::default()
        }
    );
    let pool = &c.pools[0];
    assert_eq!(pool.host_override.as_deref(), Some("cas.example.edu"));
    assert_eq!(
        pool.upstream_ca.as_deref(),
        Some(Path::new("/etc/casfront/ca.pem"))
    );
    assert_eq!(
        pool.nodes[0].server_name.as_deref(),
        Some("cas1.example.edu")
    );

    let bad = src
        .replace("\"192.0.2.1\"", "\"192.0.2.300\"")
        .replace("4096", "10")
        .replace("\"cas.example.edu\"", "\"cas example\"")
        .replace("\"CAS1.example.edu\"", "\"10.0.0.11:8443\"");
    assert_eq!(
        errors(&bad),
        [
            "3:34: `192.0.2.300` is not an IP address or CIDR block, e.g. \"10.0.0.0/8\"",
            "8:15: `body_prefix` must be between 256 and 1048576, not 10",
            "13:17: host_override `cas example` is not a host or host:port, e.g. \"cas.example.edu\"",
            "18:15: server_name `10.0.0.11:8443` is not a DNS name such as `cas.example.edu`",
        ]
    );
    assert_eq!(
        warnings(&src.replace("10.0.0.0/8", "10.0.0.1/8")),
        ["3:20: `10.0.0.1/8` has host bits set: it means `10.0.0.0/8`"]
    );
}
