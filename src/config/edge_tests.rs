//! Tests of the edge configuration: `[limits]` connection keys,
//! `[rate_limit]`, `[listen] hosts`/`proxy_protocol`, `[pool.headers]`.

use std::time::Duration;

use super::tests::{errors, parse_str, HEAD};
use super::*;

const POOL: &str = "[[pool]]\nname = \"cas\"\npath_prefix = \"/cas\"\n[[pool.node]]\nname = \"cas1\"\nurl = \"http://h:1\"\n";

#[test]
fn edge_defaults() {
    let c = parse_str(&format!("{HEAD}{POOL}")).config.unwrap();
    let l = &c.limits;
    assert_eq!((l.max_connections, l.max_connections_per_ip), (10_000, 256));
    assert_eq!(
        (l.handshake_timeout, l.header_read_timeout, l.idle_timeout),
        (
            Duration::from_secs(10),
            Duration::from_secs(15),
            Duration::from_secs(60)
        )
    );
    assert_eq!((l.h2_max_streams, l.h2_max_resets), (100, 100));
    assert_eq!(l.send_timeout, Duration::from_secs(30));
    let r = &c.rate_limit;
    assert_eq!((r.requests_per_second, r.burst), (100, 200));
    assert_eq!((r.login_per_minute, r.login_burst), (0, 20));
    assert_eq!(
        (r.login_failures, r.login_window),
        (5, Duration::from_secs(900))
    );
    assert_eq!(
        (
            r.address_failures,
            r.address_failure_share,
            r.address_failure_ceiling
        ),
        (30, 0.8, 5000)
    );
    assert_eq!(l.pressure, 0.5);
    assert_eq!(c.pools[0].login_username_field, "username");
    assert_eq!(r.max_clients, 100_000);
    assert!(c.listen.hosts.is_empty() && c.listen.proxy_protocol.is_empty());
    assert_eq!(c.pools[0].headers, HeaderRules::default());
}

#[test]
fn edge_values_are_read() {
    let text = format!(
        "[listen]\nhttps = \"0.0.0.0:8443\"\nhosts = [\"CAS.example.edu\", \"*.example.org\"]\n\
         proxy_protocol = [\"10.1.0.0/16\", \"192.0.2.7\"]\n\
         [tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
         [limits]\nmax_connections = 50\nmax_connections_per_ip = 5\nhandshake_timeout = \"3s\"\n\
         header_read_timeout = \"2s\"\nidle_timeout = \"9s\"\nh2_max_streams = 8\nh2_max_resets = 4\n\
         [rate_limit]\nrequests_per_second = 0\nlogin_per_minute = 5\nlogin_burst = 2\n\
         {POOL}[pool.headers]\nrequest_set = {{ \"X-Site\" = \"main\" }}\nrequest_remove = [\"X-Debug\"]\n\
         response_set = {{ \"Strict-Transport-Security\" = \"max-age=31536000\" }}\nresponse_remove = [\"Server\"]\n"
    );
    let p = parse_str(&text);
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
    let c = p.config.unwrap();
    assert_eq!(c.listen.hosts, ["cas.example.edu", "*.example.org"]);
    assert!(c.listen.sends_proxy_header("10.1.200.3".parse().unwrap()));
    assert!(c
        .listen
        .sends_proxy_header("::ffff:192.0.2.7".parse().unwrap()));
    assert!(!c.listen.sends_proxy_header("10.2.0.1".parse().unwrap()));
    let l = &c.limits;
    assert_eq!((l.max_connections, l.max_connections_per_ip), (50, 5));
    assert_eq!(l.handshake_timeout, Duration::from_secs(3));
    assert_eq!(l.header_read_timeout, Duration::from_secs(2));
    assert_eq!(l.idle_timeout, Duration::from_secs(9));
    assert_eq!((l.h2_max_streams, l.h2_max_resets), (8, 4));
    let r = &c.rate_limit;
    assert_eq!((r.requests_per_second, r.burst), (0, 200));
    assert_eq!((r.login_per_minute, r.login_burst), (5, 2));
    let h = &c.pools[0].headers;
    let pairs = |l: &[(http::HeaderName, http::HeaderValue)]| -> Vec<(String, String)> {
        l.iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect()
    };
    assert_eq!(
        pairs(&h.request_set),
        [("x-site".to_owned(), "main".to_owned())]
    );
    assert_eq!(h.request_remove, ["x-debug"]);
    assert_eq!(
        pairs(&h.response_set),
        [(
            "strict-transport-security".to_owned(),
            "max-age=31536000".to_owned()
        )]
    );
    assert_eq!(h.response_remove, ["server"]);
}

#[test]
fn edge_errors_have_positions() {
    let text = format!(
        "[listen]\nhttps = \"0.0.0.0:8443\"\nhosts = [\"bad host\"]\nproxy_protocol = [\"10.0.0.0/33\"]\n\
         [tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
         [limits]\nmax_connections_per_ip = 0\nidle_timeout = \"soon\"\n\
         [rate_limit]\nburst = 0\nmax_clients = 10\n\
         {POOL}[pool.headers]\nrequest_set = {{ \"Bad Name\" = \"x\", \"X-Ok\" = \"a\\u0001\" }}\n\
         request_remove = [\"Content-Length\"]\nresponse_remove = [\"Host\"]\n"
    );
    assert_eq!(
        errors(&text),
        [
            "3:10: host `bad host` is not a DNS name such as `cas.example.edu` or `*.example.edu`",
            "4:19: `10.0.0.0/33` is not an IP address or CIDR block, e.g. \"10.0.0.0/8\"",
            "9:26: `max_connections_per_ip` must be between 1 and 1000000, not 0",
            "10:16: invalid duration `soon`: expected number at 0 (write e.g. \"2s\" or \"500ms\")",
            "12:9: a burst must be at least 1 while its rate is on",
            "13:15: `max_clients` must be between 1000 and 100000000, not 10",
            "21:17: `Bad Name` is not a header name",
            "21:44: header value must be visible ASCII, spaces and tabs",
            "22:19: `content-length` is casfront's to set",
            "23:20: `host` is casfront's to set",
        ]
    );
}
