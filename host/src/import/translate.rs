//! The directive tree -> gale's config and the report: the main, `events`,
//! `http`, `upstream` and `server` contexts, and the settings nginx inherits
//! from `http` down to each `location` (`location.rs` translates those).
//!
//! nginx sets some things per location that gale sets per upstream pool
//! (`proxy_read_timeout`, `proxy_next_upstream`) or once for everything
//! (`client_max_body_size`, `gzip`): each location records what it inherited
//! for the upstream it proxies to, and the pool gets the value its locations
//! agree on, or the most permissive one with the directives marked "changed".

use std::collections::BTreeMap;

use super::emit::{self, Model, Table, lit};
use super::parse::Directive;
use super::report::{Fate, Report};
use super::settings::is_scope;
use super::table;
use super::values;

/// How the translation is made.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Keep nginx's meaning where gale's default is safer
    /// (`proxy_next_upstream error` stays `error`).
    pub keep_semantics: bool,
    /// `[global] plugin_dir` to write when a plugin is attached.
    pub plugin_dir: Option<String>,
}

/// A directive and its report entry.
pub(super) type Seen<'a> = (&'a Directive, usize);

/// What a location inherits from the blocks around it.
#[derive(Clone, Default)]
pub(super) struct Scope<'a> {
    pub read_timeout: Option<Seen<'a>>,
    pub connect_timeout: Option<Seen<'a>>,
    pub next_upstream: Option<Seen<'a>>,
    pub set_headers: Vec<Seen<'a>>,
    pub add_headers: Vec<Seen<'a>>,
    pub root: Option<Seen<'a>>,
    pub index: Option<Seen<'a>>,
    pub default_type: Option<Seen<'a>>,
    pub expires: Option<Seen<'a>>,
}

/// Where a directive is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Level {
    Http,
    Server,
    Location,
}

/// A location's use of an upstream, with the timeouts and retry rule it inherited.
pub(super) struct Use<'a> {
    pub upstream: String,
    pub read_timeout: Option<Seen<'a>>,
    pub connect_timeout: Option<Seen<'a>>,
    pub next_upstream: Option<Seen<'a>>,
}

pub(super) struct Translator<'a> {
    pub opts: &'a Options,
    pub model: Model,
    pub report: Report,
    /// The names of the `upstream` blocks.
    pub upstream_names: Vec<String>,
    pub uses: Vec<Use<'a>>,
    /// `client_max_body_size` wherever it is written.
    pub max_body: Vec<(Seen<'a>, String, Level)>,
    pub gzip: Vec<(Seen<'a>, Level)>,
    pub plugins_attached: bool,
}

/// Translates `tree`.
pub fn translate(tree: &[Directive], opts: &Options) -> (Model, Report) {
    let mut t = Translator {
        opts,
        model: Model::default(),
        report: Report::default(),
        upstream_names: Vec::new(),
        uses: Vec::new(),
        max_body: Vec::new(),
        gzip: Vec::new(),
        plugins_attached: false,
    };
    collect_upstreams(tree, &mut t.upstream_names);
    t.main(tree);
    t.finish();
    t.report.sort();
    (t.model, t.report)
}

fn collect_upstreams(list: &[Directive], out: &mut Vec<String>) {
    for d in list {
        if d.name == "upstream"
            && let Some(name) = d.args.first()
        {
            out.push(name.clone());
        }
        if let Some(block) = &d.block
            && d.name != "upstream"
        {
            collect_upstreams(block, out);
        }
    }
}

fn translated(s: impl Into<String>) -> Fate {
    Fate::Translated(s.into())
}

fn changed(s: impl Into<String>) -> Fate {
    Fate::Changed(s.into())
}

impl<'a> Translator<'a> {
    /// A directive with a fixed fate (table.rs), or one gale does not know.
    pub fn other(&mut self, d: &'a Directive) {
        let fate = table::fixed(&d.name).unwrap_or_else(|| {
            Fate::Unsupported("gale import does not know this directive; see docs/config.md for gale's keys".to_owned())
        });
        self.report.add(d, fate);
        if let Some(block) = &d.block {
            self.skip_block(d, block);
        }
    }

    /// Reports everything inside a block that is not translated.
    pub fn skip_block(&mut self, parent: &Directive, block: &'a [Directive]) {
        for d in block {
            self.report.add(
                d,
                Fate::Unsupported(format!("inside `{}` ({}), which is not translated", parent.text(), parent.source())),
            );
            if let Some(inner) = &d.block {
                self.skip_block(parent, inner);
            }
        }
    }

    fn include(&mut self, d: &'a Directive) {
        let mime = d.args.first().is_some_and(|a| a.ends_with("mime.types"));
        let fate = if mime {
            Fate::Default("not read: gale has mainline nginx's mime.types table built in".to_owned())
        } else {
            translated("its directives are imported in its place")
        };
        self.report.add(d, fate);
    }

    fn main(&mut self, list: &'a [Directive]) {
        for d in list {
            match d.name.as_str() {
                "include" => self.include(d),
                "worker_processes" => match d.args.as_slice() {
                    [n] if n == "auto" => {
                        self.report.add(d, Fate::Default("gale runs one thread per CPU by default".to_owned()));
                    }
                    [n] if n.parse::<u16>().is_ok_and(|n| n > 0) => {
                        self.model.global.set("threads", n.clone(), &[d]);
                        self.report.add(
                            d,
                            changed(format!("[global] threads = {n}: threads of one process rather than processes")),
                        );
                    }
                    _ => {
                        self.report.add(d, Fate::Unsupported("[global] threads takes a number".to_owned()));
                    }
                },
                "error_log" => self.error_log(d, Level::Http),
                "pid" => match d.args.as_slice() {
                    [path] => {
                        self.model.global.set("pid_file", lit(path), &[d]);
                        self.report
                            .add(d, translated("[global] pid_file (also how `gale reload`, `gale restart` find gale)"));
                    }
                    _ => {
                        self.report.add(d, Fate::Unsupported("[global] pid_file takes one path".to_owned()));
                    }
                },
                "events" => {
                    self.report.add(d, translated("its settings are below"));
                    for e in d.block.as_deref().unwrap_or_default() {
                        match (e.name.as_str(), e.args.as_slice()) {
                            ("worker_connections", [n]) if n.parse::<u32>().is_ok() => {
                                self.model.global.set("max_connections", n.clone(), &[e]);
                                self.report.add(
                                    e,
                                    changed(format!(
                                        "[global] max_connections = {n}: for the whole of gale, where nginx's is per worker process"
                                    )),
                                );
                            }
                            _ => self.other(e),
                        }
                    }
                }
                "http" => {
                    self.report.add(d, translated("[http], [upstream.NAME] and [[server]] below"));
                    self.http(d.block.as_deref().unwrap_or_default());
                }
                _ => self.other(d),
            }
        }
    }

    fn http(&mut self, list: &'a [Directive]) {
        let mut scope = Scope::default();
        for d in list {
            if d.name == "error_log" {
                self.error_log(d, Level::Http);
            } else if d.name != "include" {
                self.scope_directive(d, &mut scope, Level::Http);
            }
        }
        for d in list {
            match d.name.as_str() {
                "include" => self.include(d),
                "upstream" => self.upstream(d),
                "server" => self.server(d, &scope),
                _ if is_scope(d) => {}
                _ => self.other(d),
            }
        }
    }

    fn upstream(&mut self, d: &'a Directive) {
        let name = d.args.first().cloned().unwrap_or_default();
        let mut table = Table::from_block(d);
        let mut servers = Vec::new();
        let mut server_dirs = Vec::new();
        self.report.add(d, translated(format!("[upstream.{name}]")));
        for s in d.block.as_deref().unwrap_or_default() {
            match s.name.as_str() {
                "server" => {
                    let Some(addr) = s.args.first().and_then(|a| values::backend_addr(a)) else {
                        self.report.add(
                            s,
                            Fate::Unsupported("gale's upstream servers are IP addresses (`127.0.0.1:8000`)".to_owned()),
                        );
                        continue;
                    };
                    let mut weight = None;
                    let mut fate = translated(format!("`{addr}` in servers"));
                    let mut keep = true;
                    for p in &s.args[1..] {
                        if let Some(w) = p.strip_prefix("weight=") {
                            weight = Some(w.to_owned());
                        } else if let Some(v) = p.strip_prefix("max_fails=") {
                            table.set("max_fails", v.to_owned(), &[s]);
                        } else if let Some(v) = p.strip_prefix("fail_timeout=") {
                            if let Some(ms) = values::time_ms(v) {
                                table.set("fail_timeout", values::duration(ms), &[s]);
                            }
                        } else if p == "backup" {
                            keep = false;
                            fate = Fate::Unsupported(
                                "gale has no backup servers: list it as a server or leave it out".to_owned(),
                            );
                        } else if p == "down" {
                            keep = false;
                            fate = Fate::Default("left out, as it is marked down".to_owned());
                        } else {
                            fate = changed(format!("`{addr}` in servers; `{p}` has no gale equivalent"));
                        }
                    }
                    if s.args[1..].iter().any(|p| p.starts_with("max_fails=") || p.starts_with("fail_timeout=")) {
                        fate = changed(format!(
                            "`{addr}` in servers; max_fails and fail_timeout are per upstream in gale"
                        ));
                    }
                    self.report.add(s, fate);
                    if keep {
                        servers.push(match weight {
                            Some(w) => emit::inline(&[("address", lit(&addr)), ("weight", w)]),
                            None => lit(&addr),
                        });
                        server_dirs.push(s);
                    }
                }
                "keepalive" => match s.args.first() {
                    Some(n) if n.parse::<u32>().is_ok() => {
                        table.set("keepalive", n.clone(), &[s]);
                        self.report.add(s, translated("keepalive"));
                    }
                    _ => self.other(s),
                },
                "least_conn" => {
                    table.set("balance", lit("least_conn"), &[s]);
                    self.report.add(s, translated("balance = \"least_conn\""));
                }
                "ip_hash" | "hash" | "random" | "sticky" => {
                    self.report.add(
                        s,
                        Fate::Unsupported("gale balances by smooth round robin or balance = \"least_conn\"".to_owned()),
                    );
                }
                "zone" | "keepalive_timeout" | "keepalive_requests" | "keepalive_time" => {
                    self.report
                        .add(s, Fate::Default("gale's pools need no shared zone or keep-alive limits".to_owned()));
                }
                _ => self.other(s),
            }
        }
        if !servers.is_empty() {
            let value = format!("[{}]", servers.join(", "));
            let refs: Vec<&Directive> = server_dirs;
            table.entries.insert(
                0,
                emit::Entry {
                    key: "servers".to_owned(),
                    value,
                    from: refs.iter().map(|d| format!("`{}` ({})", d.text(), d.source())).collect(),
                },
            );
        }
        self.model.upstreams.push((name, table));
    }

    fn server(&mut self, d: &'a Directive, outer: &Scope<'a>) {
        let here = self.report.add(d, translated("[[server]]"));
        let list = d.block.as_deref().unwrap_or_default();
        let mut scope = outer.clone();
        // What this block sets replaces what it inherited (nginx's rule
        // for header lists).
        if list.iter().any(|x| x.name == "proxy_set_header") {
            scope.set_headers.clear();
        }
        if list.iter().any(|x| x.name == "add_header") {
            scope.add_headers.clear();
        }
        for x in list {
            self.scope_directive(x, &mut scope, Level::Server);
        }
        let mut server = emit::Server { table: Table::from_block(d), locations: Vec::new() };
        let mut listen = Vec::new();
        let mut listen_dirs = Vec::new();
        let (mut cert, mut key, mut wants_tls) = (None, None, false);
        let named = super::location::named_locations(list);
        let mut pending_returns = Vec::new();
        for x in list {
            match x.name.as_str() {
                _ if is_scope(x) => {}
                "include" => self.include(x),
                "listen" => {
                    let Some(addr) = x.args.first().and_then(|a| values::listen_addr(a)) else {
                        self.report.add(x, Fate::Unsupported("gale listens on IP addresses and ports".to_owned()));
                        continue;
                    };
                    let mut notes = Vec::new();
                    for p in &x.args[1..] {
                        match p.as_str() {
                            "default_server" | "default" => server.table.set("default_server", "true".into(), &[x]),
                            "ssl" => wants_tls = true,
                            "http2" => {}
                            other => notes.push(other.to_owned()),
                        }
                    }
                    let fate = if notes.is_empty() {
                        translated(format!("`{addr}` in listen"))
                    } else {
                        changed(format!("`{addr}` in listen; gale has no `{}`", notes.join("`, `")))
                    };
                    self.report.add(x, fate);
                    listen.push(addr);
                    listen_dirs.push(x);
                }
                "server_name" => {
                    let mut names = Vec::new();
                    let mut dropped = Vec::new();
                    for n in &x.args {
                        if n.is_empty() || n == "_" || n == "localhost" && x.args.len() == 1 {
                            dropped.push(n.clone());
                        } else if let Some(base) = n.strip_prefix('.') {
                            names.push(base.to_owned());
                            names.push(format!("*.{base}"));
                        } else if n.starts_with('~') || n.ends_with(".*") || n.contains('$') {
                            dropped.push(n.clone());
                        } else {
                            names.push(n.to_lowercase());
                        }
                    }
                    if !names.is_empty() {
                        server.table.set("server_name", emit::lit_list(&names), &[x]);
                    }
                    let fate = if dropped.iter().any(|n| n.starts_with('~') || n.ends_with(".*") || n.contains('$')) {
                        changed(format!(
                            "server_name; gale has exact names and `*.suffix` only, so {:?} are left out",
                            dropped
                        ))
                    } else if !dropped.is_empty() && names.is_empty() {
                        Fate::Default(
                            "a catch-all name: gale's first server on a listener takes unmatched hosts".to_owned(),
                        )
                    } else {
                        translated("server_name")
                    };
                    self.report.add(x, fate);
                }
                "ssl_certificate" => {
                    cert = Some(x);
                    self.report.add(x, translated("tls.cert"));
                }
                "ssl_certificate_key" => {
                    key = Some(x);
                    self.report.add(x, translated("tls.key"));
                }
                "ssl" => {
                    wants_tls = x.args.first().is_some_and(|a| a == "on");
                    self.report.add(x, translated("this server speaks TLS (`tls`)"));
                }
                "return" => {
                    let redirect = matches!(x.args.as_slice(), [code, url]
                        if matches!(code.as_str(), "301" | "302" | "307" | "308")
                            && ["https://$host", "https://$server_name", "https://$http_host"]
                                .iter()
                                .any(|p| url.starts_with(p)));
                    if redirect {
                        server.table.set("redirect_http", "true".into(), &[x]);
                        let fate = if x.args[0] == "301" {
                            translated("redirect_http = true")
                        } else {
                            changed("redirect_http = true, which answers 301")
                        };
                        self.report.add(x, fate);
                    } else {
                        self.report.add(
                            x,
                            Fate::Unsupported(
                                "at server level gale redirects to https only (redirect_http)".to_owned(),
                            ),
                        );
                    }
                }
                "location" => {
                    if let Some(out) = self.location(x, &scope, &named) {
                        match out {
                            super::location::Out::Done(t) => server.locations.push(t),
                            super::location::Out::NeedsHandler(t, i) => {
                                pending_returns.push((server.locations.len(), i));
                                server.locations.push(t);
                            }
                        }
                    }
                }
                _ => self.other(x),
            }
        }
        super::location::lend_handlers(self, &mut server, &pending_returns);
        if server.locations.is_empty() && server.table.get("redirect_http").is_none() {
            self.report.refine(
                here,
                Fate::Unsupported("left out: no location gale can translate, and a gale server needs one".to_owned()),
            );
            return;
        }
        if listen.is_empty() {
            listen.push("0.0.0.0:80".to_owned());
        }
        server.table.entries.insert(
            0,
            emit::Entry {
                key: "listen".to_owned(),
                value: emit::lit_list(&listen),
                from: listen_dirs.iter().map(|d| format!("`{}` ({})", d.text(), d.source())).collect(),
            },
        );
        // `listen ... ssl` without both files stays plain: gale check would
        // refuse a half `tls`, and the report already lists what is there.
        if let (Some(c), Some(k)) = (cert, key) {
            let v = emit::inline(&[("cert", lit(&c.args.join(" "))), ("key", lit(&k.args.join(" ")))]);
            server.table.set("tls", v, &[c, k]);
        } else if wants_tls {
            self.report
                .refine(here, changed("[[server]], plain HTTP: `ssl` without ssl_certificate and ssl_certificate_key"));
        }
        self.model.servers.push(server);
    }

    /// The settings gathered across blocks: upstream timeouts and retry
    /// rules, the body limit, gzip, the plugin directory.
    fn finish(&mut self) {
        self.apply_uses();
        // client_max_body_size: one value; the largest when they differ.
        if let Some(max) = self.max_body.iter().map(|(_, v, _)| v.clone()).max_by_key(|v| size_bytes(v)) {
            let all: Vec<&Directive> = self.max_body.iter().map(|((d, _), _, _)| *d).collect();
            let differ = self.max_body.iter().any(|(_, v, _)| size_bytes(v) != size_bytes(&max));
            self.model.http.set("client_max_body_size", lit(&max), &all);
            if differ || self.model.servers.len() > 1 && self.max_body.iter().any(|(_, _, l)| *l != Level::Http) {
                for ((_, i), _, _) in &self.max_body {
                    self.report.refine(
                        *i,
                        changed(format!(
                            "[http] client_max_body_size = {max}: one limit for every server and location"
                        )),
                    );
                }
            }
        }
        let gzip = std::mem::take(&mut self.gzip);
        super::settings::gzip(self, &gzip);
        if self.plugins_attached {
            let dir = self.opts.plugin_dir.clone().unwrap_or_else(|| "plugins".to_owned());
            self.model.global.entries.push(emit::Entry {
                key: "plugin_dir".to_owned(),
                value: lit(&dir),
                from: vec![
                    "where the bundled plugins (header_policy.wasm, static_cache.wasm, upload_fields.wasm) are installed: \
                     scripts/build-plugins.sh puts them in target/plugins"
                        .to_owned(),
                ],
            });
        }
    }

    fn apply_uses(&mut self) {
        let mut by_upstream: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, u) in self.uses.iter().enumerate() {
            by_upstream.entry(u.upstream.clone()).or_default().push(i);
        }
        for (name, uses) in by_upstream {
            for key in ["read_timeout", "connect_timeout"] {
                let seen: Vec<Option<Seen<'a>>> =
                    uses.iter()
                        .map(|&i| {
                            if key == "read_timeout" { self.uses[i].read_timeout } else { self.uses[i].connect_timeout }
                        })
                        .collect();
                // Unset is nginx's default, 60s, which is gale's too.
                let ms: Vec<u64> =
                    seen.iter().map(|s| s.and_then(|(d, _)| values::time_ms(&d.args[0])).unwrap_or(60_000)).collect();
                let Some(&max) = ms.iter().max() else { continue };
                let dirs: Vec<&Directive> = seen.iter().flatten().map(|(d, _)| *d).collect();
                if dirs.is_empty() {
                    continue;
                }
                if let Some(t) = self.model.upstream_mut(&name) {
                    t.set(key, values::duration(max), &dirs);
                }
                if ms.iter().any(|&m| m != max) {
                    for (_, i) in seen.iter().flatten() {
                        self.report.refine(
                            *i,
                            changed(format!(
                                "`{key}` is per upstream in gale: `{name}` gets the longest its locations use, {}",
                                values::duration(max)
                            )),
                        );
                    }
                }
            }
            let rules: Vec<Seen<'a>> = uses.iter().filter_map(|&i| self.uses[i].next_upstream).collect();
            if let Some(&(d, _)) = rules.first() {
                let (value, fate) = super::settings::next_upstream(d, self.opts.keep_semantics);
                if let Some(t) = self.model.upstream_mut(&name) {
                    t.set("next_upstream", lit(value), &[d]);
                }
                for &(other, i) in &rules {
                    let fate = if other.args == d.args {
                        fate.clone()
                    } else {
                        changed(format!("next_upstream is per upstream in gale: `{name}` takes `{}`", d.text()))
                    };
                    self.report.refine(i, fate);
                }
            }
        }
    }
}

/// A size gale writes (`100M`) in bytes, for comparisons.
fn size_bytes(v: &str) -> u64 {
    let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let n: u64 = v[..digits].parse().unwrap_or(0);
    n.saturating_mul(match &v[digits..] {
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => 1,
    })
}
