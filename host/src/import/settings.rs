//! The settings a block passes down (nginx inherits them from `http` to
//! `server` to `location`) and the ones gale keeps once for everything:
//! timeouts and the retry rule (per upstream in gale), header lists, `root`,
//! `expires`, the body limit, timeouts of the client side, logs and gzip.

use super::emit::{self, lit, lit_list};
use super::parse::Directive;
use super::report::Fate;
use super::table;
use super::translate::{Level, Scope, Seen, Translator};
use super::values;

fn translated(s: impl Into<String>) -> Fate {
    Fate::Translated(s.into())
}

fn changed(s: impl Into<String>) -> Fate {
    Fate::Changed(s.into())
}

impl<'a> Translator<'a> {
    pub(super) fn error_log(&mut self, d: &'a Directive, level: Level) {
        let Some(target) = d.args.first() else {
            self.report.add(d, Fate::Unsupported("[global] error_log takes a path".to_owned()));
            return;
        };
        let target = if target == "/dev/null" { "off" } else { target.as_str() };
        self.model.global.set("error_log", lit(target), &[d]);
        if let Some(lvl) = d.args.get(1) {
            let gale = match lvl.as_str() {
                "debug" => "debug",
                "info" | "notice" => "info",
                "warn" => "warn",
                _ => "error",
            };
            self.model.global.set("log_level", lit(gale), &[d]);
        }
        let fate = if level == Level::Http {
            translated("[global] error_log (and log_level)")
        } else {
            changed("[global] error_log: gale has one error log")
        };
        self.report.add(d, fate);
    }

    /// The directives a block sets for everything inside it; returns whether
    /// `d` was one of them.
    pub fn scope_directive(&mut self, d: &'a Directive, scope: &mut Scope<'a>, level: Level) -> bool {
        let not_http = |what: &str| {
            if level == Level::Http {
                translated(format!("[http] {what}"))
            } else {
                changed(format!("[http] {what}: one value for every server in gale"))
            }
        };
        match d.name.as_str() {
            "proxy_read_timeout" | "proxy_connect_timeout" => {
                let key = if d.name == "proxy_read_timeout" { "read_timeout" } else { "connect_timeout" };
                if d.args.len() != 1 || values::time_ms(&d.args[0]).is_none() {
                    self.report.add(d, Fate::Unsupported(format!("{key} takes an nginx time")));
                    return true;
                }
                let i = self.report.add(d, translated(format!("`{key}` of the upstreams proxied to under it")));
                let slot = if key == "read_timeout" { &mut scope.read_timeout } else { &mut scope.connect_timeout };
                *slot = Some((d, i));
            }
            "proxy_next_upstream" => {
                let i = self.report.add(d, translated("`next_upstream` of the upstreams proxied to under it"));
                scope.next_upstream = Some((d, i));
            }
            "proxy_set_header" => {
                let i = self.report.add(d, super::location::set_header_fate(d));
                scope.set_headers.push((d, i));
            }
            "add_header" => {
                let fate = match d.args.as_slice() {
                    [_, v, always] if always == "always" && values::template_ok(v) => {
                        translated("a header-policy plugin's `response.set` on the locations under it")
                    }
                    [_, v] if values::template_ok(v) => changed(
                        "a header-policy plugin's `response.set` on the locations under it, for every status \
                         (nginx adds it to 2xx and 3xx answers only, unless `always`)",
                    ),
                    _ => Fate::Unsupported(
                        "a header-policy plugin's `response.set` (its variables are listed in plugins.md)".to_owned(),
                    ),
                };
                let i = self.report.add(d, fate);
                scope.add_headers.push((d, i));
            }
            "root" => {
                let i = self.report.add(d, translated("`static.root` of the locations that serve files under it"));
                scope.root = Some((d, i));
            }
            "index" => {
                let i = self.report.add(d, translated("`static.index` of the locations that serve files under it"));
                scope.index = Some((d, i));
            }
            "default_type" => {
                let fate = if d.args.first().is_some_and(|t| t == "application/octet-stream") {
                    Fate::Default("gale's static files default to application/octet-stream".to_owned())
                } else {
                    translated("`static.default_type` of the locations that serve files under it")
                };
                let i = self.report.add(d, fate);
                scope.default_type = Some((d, i));
            }
            "expires" => {
                let i = self.report.add(d, super::location::expires_fate(d));
                scope.expires = Some((d, i));
            }
            "proxy_pass_header" => {
                self.report.add(d, Fate::Default("gale passes the backend's headers, `Server` included".to_owned()));
            }
            "proxy_redirect" => {
                let fate = if d.args.first().is_some_and(|a| a == "off") {
                    Fate::Default("gale never rewrites the backend's `Location`".to_owned())
                } else {
                    Fate::Unsupported("gale never rewrites `Location`; a header-policy plugin can set it".to_owned())
                };
                self.report.add(d, fate);
            }
            "client_max_body_size" => match d.args.as_slice() {
                [v] if v != "0" && values::size(v).is_some() => {
                    // One server's limit is the whole config's: `finish` says
                    // when several differ.
                    let i = self.report.add(d, translated("[http] client_max_body_size"));
                    self.max_body.push(((d, i), values::size(v).unwrap_or_default(), level));
                }
                _ => {
                    self.report.add(
                        d,
                        Fate::Unsupported(
                            "[http] client_max_body_size takes a size (gale has no unlimited)".to_owned(),
                        ),
                    );
                }
            },
            "keepalive_timeout" | "client_header_timeout" | "client_body_timeout" => {
                match d.args.first().and_then(|v| values::time_ms(v)) {
                    Some(ms) => {
                        self.model.http.set(&d.name, values::duration(ms), &[d]);
                        let mut fate = not_http(&d.name);
                        if d.name == "keepalive_timeout" && d.args.len() > 1 {
                            fate = changed("[http] keepalive_timeout; gale sends no `Keep-Alive: timeout=` header");
                        }
                        self.report.add(d, fate);
                    }
                    None => {
                        self.report.add(d, Fate::Unsupported(format!("[http] {} takes a time", d.name)));
                    }
                }
            }
            "merge_slashes" => {
                let on = d.args.first().is_some_and(|a| a == "on");
                self.model.http.set("merge_slashes", on.to_string(), &[d]);
                self.report.add(d, not_http("merge_slashes"));
            }
            "large_client_header_buffers" => match d.args.get(1).and_then(|s| values::size(s)) {
                Some(size) => {
                    self.model.http.set("max_uri_size", lit(&size), &[d]);
                    self.report.add(
                        d,
                        changed("[http] max_uri_size = the buffer size; max_header_size (32k) caps the whole head"),
                    );
                }
                None => {
                    self.report.add(d, Fate::Unsupported("[http] max_uri_size, max_header_size".to_owned()));
                }
            },
            "access_log" => {
                let target = match d.args.first().map(String::as_str) {
                    Some("off") | Some("/dev/null") => "off",
                    Some(p) => p,
                    None => "stdout",
                };
                if self.model.global.get("access_log").is_none() || level == Level::Http {
                    self.model.global.set("access_log", lit(target), &[d]);
                }
                let mut fate = if level == Level::Http {
                    translated("[global] access_log, in nginx's combined format")
                } else {
                    changed("[global] access_log: gale has one access log for every server")
                };
                if d.args.get(1).is_some_and(|f| f != "combined") {
                    fate = changed("[global] access_log in the combined format (gale has no log_format)");
                }
                self.report.add(d, fate);
            }
            "error_log" if level != Level::Http => self.error_log(d, level),
            n if n == "gzip" || n.starts_with("gzip_") && table::fixed(n).is_none() => {
                let i = self.report.add(d, Fate::Translated(String::new()));
                self.gzip.push(((d, i), level));
            }
            _ => return false,
        }
        true
    }
}

/// A directive `scope_directive` handles (for the second pass over a block).
pub(super) fn is_scope(d: &Directive) -> bool {
    matches!(
        d.name.as_str(),
        "proxy_read_timeout"
            | "proxy_connect_timeout"
            | "proxy_next_upstream"
            | "proxy_set_header"
            | "add_header"
            | "root"
            | "index"
            | "default_type"
            | "expires"
            | "proxy_pass_header"
            | "proxy_redirect"
            | "client_max_body_size"
            | "keepalive_timeout"
            | "client_header_timeout"
            | "client_body_timeout"
            | "merge_slashes"
            | "large_client_header_buffers"
            | "access_log"
            | "error_log"
    ) || d.name == "gzip"
        || d.name.starts_with("gzip_") && table::fixed(&d.name).is_none()
}

/// `proxy_next_upstream ARGS` -> gale's `next_upstream` and the fate.
pub(super) fn next_upstream(d: &Directive, keep: bool) -> (&'static str, Fate) {
    let args: Vec<&str> = d.args.iter().map(String::as_str).collect();
    if args.contains(&"off") {
        return ("off", Fate::Translated("next_upstream = \"off\"".to_owned()));
    }
    let mut notes = Vec::new();
    let value = if args.contains(&"error") && keep {
        "error"
    } else {
        if args.contains(&"error") {
            notes.push(
                "next_upstream = \"connect\": retried only when no connection could be made, where nginx's `error` \
                 also resends a request whose connection broke before the answer (which passes a query of death \
                 to every backend); `--keep-semantics` writes \"error\""
                    .to_owned(),
            );
        } else {
            notes.push("next_upstream = \"connect\": gale retries only failed connections".to_owned());
        }
        "connect"
    };
    if args.contains(&"timeout") {
        notes.push("gale never retries a timeout".to_owned());
    }
    if args.iter().any(|a| a.starts_with("http_") || *a == "invalid_header" || *a == "non_idempotent") {
        notes.push("gale does not retry on a backend's answer, and retries only idempotent requests".to_owned());
    }
    if notes.is_empty() {
        (value, Fate::Translated(format!("next_upstream = \"{value}\"")))
    } else {
        if value == "error" {
            notes.insert(0, "next_upstream = \"error\"".to_owned());
        }
        (value, Fate::Changed(notes.join("; ")))
    }
}

/// `[http] gzip = { ... }` from the gzip directives wherever they are.
pub(super) fn gzip<'a>(t: &mut Translator<'a>, seen: &[(Seen<'a>, Level)]) {
    let on = seen.iter().any(|((d, _), _)| d.name == "gzip" && d.args.first().is_some_and(|a| a == "on"));
    let mut pairs: Vec<(&str, String)> = Vec::new();
    let mut dirs = Vec::new();
    for &((d, i), level) in seen {
        let where_ = if level == Level::Http { "" } else { " (for every server: gale's gzip is one [http] setting)" };
        let fate = if !on {
            Fate::Default("gzip stays off in gale, as here".to_owned())
        } else {
            match (d.name.as_str(), d.args.as_slice()) {
                ("gzip", _) => Fate::Translated(format!("[http] gzip{where_}")),
                ("gzip_min_length", [n]) if n.parse::<u64>().is_ok() => {
                    pairs.push(("min_length", n.clone()));
                    Fate::Translated(format!("[http] gzip.min_length{where_}"))
                }
                ("gzip_comp_level", [n]) if n.parse::<u8>().is_ok_and(|n| (1..=9).contains(&n)) => {
                    pairs.push(("level", n.clone()));
                    Fate::Translated(format!("[http] gzip.level{where_}"))
                }
                ("gzip_proxied", words) if !words.is_empty() => {
                    pairs.push(("proxied", lit_list(words)));
                    Fate::Translated(format!("[http] gzip.proxied{where_}"))
                }
                ("gzip_types", words) if !words.is_empty() => {
                    pairs.push(("types", lit_list(words)));
                    Fate::Translated(format!("[http] gzip.types (text/html is always included){where_}"))
                }
                ("gzip_http_version", [v]) if v == "1.1" => {
                    Fate::Default("gale compresses for HTTP/1.1 and HTTP/2 requests only".to_owned())
                }
                ("gzip_http_version", _) => {
                    Fate::Changed("gale compresses for HTTP/1.1 and HTTP/2 requests only (fixed)".to_owned())
                }
                _ => Fate::Unsupported("[http] gzip = { min_length, proxied, types, level }".to_owned()),
            }
        };
        if level != Level::Http && matches!(fate, Fate::Translated(_)) {
            t.report.refine(i, Fate::Changed(fate.note().to_owned()));
        } else {
            t.report.refine(i, fate);
        }
        dirs.push(d);
    }
    if on {
        // The last value of a key wins, as a later directive does in nginx.
        let mut unique: Vec<(&str, String)> = Vec::new();
        for (k, v) in pairs {
            unique.retain(|(k2, _)| *k2 != k);
            unique.push((k, v));
        }
        t.model.http.set("gzip", emit::inline(&unique), &dirs);
    }
}
