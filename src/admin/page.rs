//! The status page (`GET /` on the admin listener), in the spirit of
//! HAProxy's stats page: one table per pool, a row per node with its state
//! (coloured), how long it has been in it, its last check, requests,
//! errors and p50/p99 latency. One self-contained HTML document (inline
//! CSS, no script, no external asset) that refreshes itself every 5 s.

use std::fmt::Write;

use super::NodeRow;

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.3em;margin:0 0 .2em}p.meta{color:#666;margin:0 0 1.2em}\
h2{font-size:1.1em;margin:1.2em 0 .4em}\
table{border-collapse:collapse;min-width:46em}\
th,td{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:right}\
th{background:#f3f3f3}th:first-child,td:first-child,td.state{text-align:left}\
td.state{font-weight:600}\
tr.healthy td.state{color:#137333}tr.draining td.state{color:#b06000}\
tr.down td.state{color:#c5221f}tr.disabled td.state{color:#5f6368}\
tr.down{background:#fce8e6}tr.draining{background:#fef7e0}tr.disabled{background:#f1f3f4}";

/// The page for `rows` (every node, grouped by pool in order), the
/// reload counts (ok, failed) and the failed-login throttle's refusals now
/// ((address, user) pairs, addresses).
pub fn render(rows: &[NodeRow], reloads: (u64, u64), throttled: (usize, usize)) -> String {
    let mut s = String::with_capacity(4096);
    let up = rows
        .iter()
        .filter(|r| matches!(r.state, "healthy" | "draining"))
        .count();
    // Writing to a String cannot fail.
    let _ = write!(
        s,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"5\">\
         <title>casfront status</title><style>{STYLE}</style></head><body>\
         <h1>casfront</h1><p class=\"meta\">{up} of {} node(s) usable · \
         reloads: {} ok, {} failed · failed logins held back: {} (address, user) \
         pair(s), {} address(es) · refreshes every 5 s · \
         <a href=\"/status.json\">status.json</a> · <a href=\"/metrics\">metrics</a></p>",
        rows.len(),
        reloads.0,
        reloads.1,
        throttled.0,
        throttled.1
    );
    let mut pool: Option<&str> = None;
    for r in rows {
        if pool != Some(r.pool.as_str()) {
            if pool.is_some() {
                s.push_str("</tbody></table>");
            }
            pool = Some(&r.pool);
            let _ = write!(
                s,
                "<h2>pool {}</h2><table><thead><tr><th>node</th><th>state</th>\
                 <th>since</th><th>last check</th><th>requests</th><th>errors</th>\
                 <th>p50</th><th>p99</th></tr></thead><tbody>",
                escape(&r.pool)
            );
        }
        let _ = write!(
            s,
            "<tr class=\"{state}\"><td>{name}{backup}</td><td class=\"state\">{state}</td>\
             <td>{since}</td><td>{check}</td><td>{requests}</td><td>{errors}</td>\
             <td>{p50}</td><td>{p99}</td></tr>",
            state = r.state,
            name = escape(&r.name),
            backup = match (r.backup, r.source) {
                (true, _) => " (backup)",
                (false, "dns") => " (dns)",
                _ => "",
            },
            since = ago(Some(r.state_since_ms_ago)),
            check = ago(r.last_check_ms_ago),
            requests = r.requests,
            errors = r.errors,
            p50 = ms(r.p50_ms),
            p99 = ms(r.p99_ms),
        );
    }
    if pool.is_some() {
        s.push_str("</tbody></table>");
    }
    s.push_str("</body></html>");
    s
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// `3 s ago`, `2 min ago`, `5 h ago`; `never` for none.
fn ago(ms: Option<u64>) -> String {
    let Some(ms) = ms else {
        return "never".into();
    };
    let secs = ms / 1000;
    match secs {
        0..=119 => format!("{secs} s ago"),
        120..=7199 => format!("{} min ago", secs / 60),
        _ => format!("{} h ago", secs / 3600),
    }
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v < 10.0 => format!("{v:.2} ms"),
        Some(v) => format!("{v:.0} ms"),
        None => "–".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pool: &str, name: &str, state: &'static str) -> NodeRow {
        NodeRow {
            pool: pool.into(),
            name: name.into(),
            source: "config",
            backup: false,
            state,
            state_since_ms_ago: 130_000,
            last_check_ms_ago: Some(1_500),
            requests: 42,
            errors: 1,
            p50_ms: Some(0.8),
            p99_ms: Some(25.0),
        }
    }

    #[test]
    fn a_table_per_pool_and_a_row_per_node() {
        let page = render(
            &[
                row("cas", "cas1", "healthy"),
                row("cas", "cas<2>", "down"),
                row("registry", "reg1", "draining"),
            ],
            (3, 1),
            (2, 1),
        );
        assert_eq!(page.matches("<table>").count(), 2);
        assert!(page.contains("failed logins held back: 2 (address, user) pair(s), 1 address(es)"));
        assert_eq!(page.matches("<tr class=").count(), 3);
        assert!(page.contains("2 of 3 node(s) usable"));
        assert!(page.contains("reloads: 3 ok, 1 failed"));
        assert!(page.contains("<td>cas&lt;2&gt;</td><td class=\"state\">down</td>"));
        assert!(page.contains("<td>2 min ago</td><td>1 s ago</td><td>42</td><td>1</td>"));
        assert!(page.contains("<td>0.80 ms</td><td>25 ms</td>"));
        assert!(!page.contains("http://") && !page.contains("https://"));
    }
}
