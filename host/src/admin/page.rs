//! The status page (`GET /` on the admin listener): one self-contained HTML
//! page in the manner of HAProxy's stats page, built from the same data as
//! `/status` (its JSON) and `/metrics` (its text, read back by `samples`),
//! so the three never disagree. No script and nothing fetched: inline CSS,
//! and a `<meta http-equiv="refresh">` for the auto-refresh. Every name on
//! it (servers, upstreams, backends, tenants, plugins, log lines) comes
//! from a config or a plugin and is HTML-escaped.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::rates;
use super::samples::{self, Quantile, Sample};

/// Seconds between refreshes unless `?refresh=N` says otherwise.
pub const DEFAULT_REFRESH: u64 = 5;
/// The longest `?refresh=N` accepted.
pub const MAX_REFRESH: u64 = 3600;

/// The page's options from its query: `refresh=N` (0 turns it off).
pub fn refresh_from_query(query: Option<&str>) -> Result<u64, String> {
    let mut refresh = DEFAULT_REFRESH;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "refresh" {
            refresh = value
                .parse()
                .ok()
                .filter(|n| *n <= MAX_REFRESH)
                .ok_or_else(|| format!("refresh must be a whole number of seconds from 0 to {MAX_REFRESH}\n"))?;
        }
    }
    Ok(refresh)
}

/// HTML-escapes `s` for text and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page for `status` (the `/status` JSON) and `metrics` (the `/metrics`
/// text), refreshing every `refresh` seconds (0: never).
pub fn render(status: &Value, metrics: &str, refresh: u64) -> String {
    let all = samples::parse(metrics);
    let mut out = String::with_capacity(16 * 1024);
    head(&mut out, status, refresh);
    servers(&mut out, status, &all);
    upstreams(&mut out, status, &all);
    plugins(&mut out, status, &all);
    errors(&mut out);
    out.push_str("</body></html>\n");
    out
}

const STYLE: &str = "body{font:13px/1.35 system-ui,sans-serif;margin:0 1em 2em;color:#222;background:#fafafa}\
h1{font-size:18px;margin:.6em 0 .2em}h2{font-size:15px;margin:1.2em 0 .3em;border-bottom:2px solid #3a6ea5}\
h3{font-size:13px;margin:.8em 0 .2em}p.meta{color:#555;margin:.2em 0}\
table{border-collapse:collapse;margin:.2em 0 .6em;background:#fff}\
th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}\
th{background:#dde6f0;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.up,.running{background:#c8efc8}.down,.failed,.open{background:#f5b8b8}.draining,.backoff,.starting,.stopping,.probing{background:#f8e3a3}\
.err{color:#a00}.none{color:#888}code{font-size:12px}";

fn head(out: &mut String, status: &Value, refresh: u64) {
    let version = esc(status["version"].as_str().unwrap_or(""));
    let now = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z"))
        .unwrap_or_default();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    if refresh > 0 {
        let _ = write!(out, "<meta http-equiv=\"refresh\" content=\"{refresh}\">");
    }
    let _ = write!(out, "<title>gale {version} status</title><style>{STYLE}</style></head><body>");
    let _ = write!(out, "<h1>gale {version} status</h1><p class=\"meta\">Generated {now}; ");
    if refresh > 0 {
        let _ = write!(out, "refreshes every {refresh} s (<a href=\"?refresh=0\">stop</a>). ");
    } else {
        let _ =
            write!(out, "auto-refresh off (<a href=\"?refresh={DEFAULT_REFRESH}\">every {DEFAULT_REFRESH} s</a>). ");
    }
    out.push_str("Also: <a href=\"/status\">/status</a> (JSON), <a href=\"/metrics\">/metrics</a>.</p>");
    let listening: Vec<String> =
        status["listening"].as_array().into_iter().flatten().filter_map(Value::as_str).map(esc).collect();
    let _ = write!(out, "<p class=\"meta\" id=\"listening\">Listening on {}.</p>", listening.join(", "));
}

fn servers(out: &mut String, status: &Value, all: &[Sample]) {
    let classes = samples::status_classes(all);
    let rates = rates::since_oldest(Instant::now(), &classes);
    let open = samples::sum(all, "gale_connections_open", &[]);
    let refused = samples::sum(all, "gale_connections_limit_reached_total", &[]);
    out.push_str("<h2>Servers</h2>");
    let _ = write!(out, "<p class=\"meta\">{open} client connections open; max_connections reached {refused} times. ");
    match &rates {
        Some((span, _)) => {
            let _ = write!(out, "Rates over the last {} s.</p>", span.as_secs());
        }
        None => out.push_str("Rates: after the first reading (every 5 s).</p>"),
    }
    out.push_str(
        "<table id=\"servers\"><tr><th>Server</th><th>Names</th><th>Listen</th><th>TLS</th><th>Tenant</th>\
         <th>1xx</th><th>2xx</th><th>3xx</th><th>4xx</th><th>5xx</th><th>req/s</th><th>4xx/s</th><th>5xx/s</th></tr>",
    );
    for s in status["servers"].as_array().into_iter().flatten() {
        let label = s["label"].as_str().unwrap_or("");
        let list = |key: &str| -> String {
            s[key].as_array().into_iter().flatten().filter_map(Value::as_str).map(esc).collect::<Vec<_>>().join(", ")
        };
        let counts = classes.get(label).copied().unwrap_or_default();
        let _ = write!(
            out,
            "<tr class=\"server\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            esc(label),
            list("names"),
            list("listen"),
            if s["tls"].as_bool() == Some(true) { "yes" } else { "no" },
            esc(s["tenant"].as_str().unwrap_or("global")),
        );
        for c in counts {
            let _ = write!(out, "<td class=\"n\">{c}</td>");
        }
        match rates.as_ref().and_then(|(_, r)| r.get(label)) {
            Some(r) => {
                let _ = write!(
                    out,
                    "<td class=\"n\">{:.2}</td><td class=\"n\">{:.2}</td><td class=\"n\">{:.2}</td>",
                    r.iter().sum::<f64>(),
                    r[3],
                    r[4]
                );
            }
            None => out.push_str("<td class=\"none\">-</td><td class=\"none\">-</td><td class=\"none\">-</td>"),
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
}

fn upstreams(out: &mut String, status: &Value, all: &[Sample]) {
    out.push_str("<h2>Upstreams</h2>");
    let children: Vec<&Value> = status["children"].as_array().into_iter().flatten().collect();
    for u in status["upstreams"].as_array().into_iter().flatten() {
        let name = u["name"].as_str().unwrap_or("");
        let _ = write!(
            out,
            "<h3>{} <span class=\"meta\">({})</span></h3>",
            esc(name),
            esc(u["balance"].as_str().unwrap_or(""))
        );
        out.push_str(
            "<table class=\"upstream\"><tr><th>Backend</th><th>Address</th><th>Weight</th><th>State</th>\
             <th>Passive</th><th>Health check</th><th>In flight</th><th>Child</th><th>Responses</th>\
             <th>Connect errors</th><th>Closed</th><th>Timeouts</th><th>p50</th><th>p90</th><th>p99</th></tr>",
        );
        for b in u["backends"].as_array().into_iter().flatten() {
            let addr = b["address"].as_str().unwrap_or("");
            let port = addr.rsplit(':').next().and_then(|p| p.parse::<u64>().ok());
            let child = children
                .iter()
                .find(|c| c["upstream"].as_str() == Some(name) && c["port"].as_u64() == port && port.is_some());
            let state = backend_state(b);
            let _ = write!(
                out,
                "<tr class=\"backend\"><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"{state}\">{state}</td>\
                 <td class=\"{passive}\">{passive}</td><td{hc_class}>{hc}</td><td class=\"n\">{}</td><td>{}</td>",
                esc(b["name"].as_str().unwrap_or("")),
                esc(addr),
                b["weight"],
                b["in_flight"],
                child.map_or_else(|| "<span class=\"none\">-</span>".to_owned(), |c| child_cell(c)),
                passive = esc(b["passive"].as_str().unwrap_or("")),
                hc = health_cell(&b["health_check"]),
                hc_class =
                    b["health_check"]["state"].as_str().map_or(String::new(), |s| format!(" class=\"{}\"", esc(s))),
            );
            let labels = [("upstream", name), ("backend", addr)];
            for outcome in ["response", "connect_error", "closed", "timeout"] {
                let n =
                    samples::sum(all, "gale_upstream_attempts_total", &[labels[0], labels[1], ("outcome", outcome)]);
                let _ = write!(out, "<td class=\"n\">{n}</td>");
            }
            let buckets = samples::buckets(all, "gale_upstream_response_seconds", &labels);
            for q in [0.5, 0.9, 0.99] {
                let _ = write!(out, "<td class=\"n\">{}</td>", quantile_text(samples::quantile(&buckets, q)));
            }
            out.push_str("</tr>");
        }
        out.push_str("</table>");
        let names: Vec<&Value> = u["names"].as_array().into_iter().flatten().collect();
        if !names.is_empty() {
            out.push_str("<table class=\"names\"><tr><th>DNS name</th><th>Addresses</th><th>Last error</th></tr>");
            for n in names {
                let addrs: Vec<String> =
                    n["addresses"].as_array().into_iter().flatten().filter_map(Value::as_str).map(esc).collect();
                let _ = write!(
                    out,
                    "<tr><td>{}:{}</td><td>{}</td><td class=\"err\">{}</td></tr>",
                    esc(n["name"].as_str().unwrap_or("")),
                    n["port"],
                    addrs.join(", "),
                    esc(n["last_error"].as_str().unwrap_or(""))
                );
            }
            out.push_str("</table>");
        }
    }
}

/// up, down, or draining (out of rotation with requests still in flight).
fn backend_state(b: &Value) -> &'static str {
    let in_rotation = b["in_rotation"].as_bool().unwrap_or(true);
    match (b["state"].as_str(), in_rotation, b["in_flight"].as_u64().unwrap_or(0)) {
        (_, false, n) if n > 0 => "draining",
        (Some("up"), _, _) => "up",
        _ => "down",
    }
}

fn health_cell(h: &Value) -> String {
    if h.is_null() {
        return "<span class=\"none\">none</span>".to_owned();
    }
    let mut cell =
        format!("{} (passed {}, failed {})", esc(h["state"].as_str().unwrap_or("")), h["passed"], h["failed"]);
    if let Some(e) = h["last_error"].as_str() {
        let _ = write!(cell, "<br><span class=\"err\">{}</span>", esc(e));
    }
    cell
}

fn child_cell(c: &Value) -> String {
    let state = esc(c["state"].as_str().unwrap_or(""));
    let pid = c["pid"].as_u64().map_or_else(|| "no pid".to_owned(), |p| format!("pid {p}"));
    let mut cell =
        format!("<span class=\"child {state}\">{state}</span> {pid}, {} restarts", c["restarts"].as_u64().unwrap_or(0));
    if let Some(e) = c["last_exit"].as_str() {
        let _ = write!(cell, "<br><span class=\"err\">{}</span>", esc(e));
    }
    cell
}

fn plugins(out: &mut String, status: &Value, all: &[Sample]) {
    out.push_str("<h2>Plugins</h2>");
    let tenants: Vec<&Value> = status["plugins"]["tenants"].as_array().into_iter().flatten().collect();
    let mut series: Vec<(&str, &str, &str)> = samples::series(all, "gale_plugin_call_seconds_count")
        .map(|s| (s.label("tenant"), s.label("plugin"), s.label("hook")))
        .collect();
    series.dedup();
    if tenants.is_empty() && series.is_empty() {
        out.push_str("<p class=\"none\">No plugin is attached.</p>");
        return;
    }
    out.push_str(
        "<table id=\"tenants\"><tr><th>Tenant</th><th>Plugin dir</th><th>In flight</th><th>Warm instances</th>\
         <th>Memory</th><th>Hook timeout</th></tr>",
    );
    for t in &tenants {
        let limits = &t["limits"];
        let _ = write!(
            out,
            "<tr class=\"tenant\"><td>{}</td><td><code>{}</code></td><td class=\"n\">{} / {}</td>\
             <td class=\"n\">{} / {}</td><td class=\"n\">{} MiB</td><td class=\"n\">{} ms</td></tr>",
            esc(t["name"].as_str().unwrap_or("")),
            esc(t["plugin_dir"].as_str().unwrap_or("")),
            t["in_flight"],
            limits["max_concurrent"],
            t["idle_instances"],
            limits["max_instances"],
            limits["memory"].as_u64().unwrap_or(0) >> 20,
            limits["hook_timeout_ms"],
        );
    }
    out.push_str("</table>");
    out.push_str(
        "<table id=\"plugins\"><tr><th>Tenant</th><th>Plugin</th><th>Hook</th><th>Breaker</th><th>ok</th>\
         <th>trap</th><th>timeout</th><th>memory</th><th>busy</th><th>refused</th><th>remembered</th>\
         <th>Quarantines</th><th>p50</th><th>p99</th></tr>",
    );
    for (tenant, plugin, hook) in series {
        let breaker = tenants
            .iter()
            .filter(|t| t["name"].as_str() == Some(tenant))
            .flat_map(|t| t["plugins"].as_array().into_iter().flatten())
            .find(|p| p["name"].as_str() == Some(plugin))
            .and_then(|p| p["breaker"].as_str())
            .unwrap_or("closed");
        let _ = write!(
            out,
            "<tr class=\"plugin\"><td>{}</td><td>{}</td><td>{}</td><td class=\"{b}\">{b}</td>",
            esc(tenant),
            esc(plugin),
            esc(hook),
            b = esc(breaker)
        );
        let labels = [("tenant", tenant), ("plugin", plugin), ("hook", hook)];
        for outcome in ["ok", "trap", "timeout", "memory_limit", "busy", "quarantined", "remembered"] {
            let mut with = labels.to_vec();
            with.push(("outcome", outcome));
            let n = samples::sum(all, "gale_plugin_calls_total", &with);
            let _ = write!(out, "<td class=\"n\">{n}</td>");
        }
        let q = samples::sum(all, "gale_plugin_quarantines_total", &labels);
        let _ = write!(out, "<td class=\"n\">{q}</td>");
        let buckets = samples::buckets(all, "gale_plugin_call_seconds", &labels);
        for q in [0.5, 0.99] {
            let _ = write!(out, "<td class=\"n\">{}</td>", quantile_text(samples::quantile(&buckets, q)));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
}

fn errors(out: &mut String) {
    let recent = crate::recent_errors::recent();
    let _ = write!(
        out,
        "<h2>Recent errors</h2><p class=\"meta\">The last {} warnings and errors of the log, newest first.</p>",
        crate::recent_errors::KEEP
    );
    if recent.is_empty() {
        out.push_str("<p class=\"none\" id=\"errors\">None.</p>");
        return;
    }
    out.push_str("<table id=\"errors\"><tr><th>Time</th><th>Level</th><th>Message</th></tr>");
    for e in recent {
        let _ = write!(
            out,
            "<tr class=\"error\"><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&e.at),
            e.level,
            esc(&e.message)
        );
    }
    out.push_str("</table>");
}

fn quantile_text(q: Option<Quantile>) -> String {
    match q {
        None => "<span class=\"none\">-</span>".to_owned(),
        Some(Quantile::At(s)) => duration_text(s),
        Some(Quantile::Above(s)) => format!("&gt; {}", duration_text(s)),
    }
}

fn duration_text(secs: f64) -> String {
    let d = Duration::from_secs_f64(secs.max(0.0));
    if d < Duration::from_millis(1) {
        format!("{} µs", d.as_micros())
    } else if d < Duration::from_secs(1) {
        format!("{:.1} ms", secs * 1000.0)
    } else {
        format!("{secs:.2} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_the_query_is_checked() {
        assert_eq!(esc("<script>alert('x')</script>&\""), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;");
        assert_eq!(refresh_from_query(None), Ok(DEFAULT_REFRESH));
        assert_eq!(refresh_from_query(Some("refresh=0")), Ok(0));
        assert_eq!(refresh_from_query(Some("x=1&refresh=30")), Ok(30));
        for bad in ["refresh=", "refresh=-1", "refresh=abc", "refresh=3601", "refresh=99999999999999999999"] {
            assert!(refresh_from_query(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_hostile_name_never_reaches_the_page_as_markup() {
        let evil = "<script>alert(1)</script>";
        let status = serde_json::json!({
            "version": "0",
            "listening": ["127.0.0.1:1"],
            "servers": [{ "label": evil, "names": [evil], "listen": ["127.0.0.1:1"], "tls": false, "tenant": evil }],
            "upstreams": [{ "name": evil, "balance": "RoundRobin", "names": [], "backends": [
                { "address": "127.0.0.1:2", "name": evil, "weight": 1, "state": "up", "passive": "up",
                  "health_check": null, "in_flight": 0, "in_rotation": true }
            ]}],
            "plugins": { "tenants": [{ "name": evil, "plugin_dir": evil, "limits": {}, "plugins": [] }] },
        });
        let metrics =
            format!("gale_plugin_call_seconds_count{{tenant=\"{evil}\",plugin=\"{evil}\",hook=\"on-request\"}} 1\n");
        let page = render(&status, &metrics, 5);
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        assert!(!render(&status, &metrics, 0).contains("http-equiv"));
    }
}
