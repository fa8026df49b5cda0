//! `location` blocks -> `[[server.location]]`: the path, one handler
//! (`proxy`, `static` or `upload`) and the plugins that carry what nginx
//! wrote as directives (`expires` -> `static-cache`, `proxy_set_header` and
//! `add_header` beyond gale's own headers -> `header-policy`, a non-default
//! field policy -> `upload-fields`), plus the per-upstream and `[http]`
//! settings the translator gathers (`next_upstream`, `gzip`).

use std::collections::BTreeMap;

use super::emit::{self, Table, lit, lit_list};
use super::parse::Directive;
use super::report::Fate;
use super::settings::is_scope;
use super::translate::{Level, Scope, Seen, Translator, Use};
use super::upload::{self, Upload};
use super::values;

/// A translated location, or one whose only job is a `return`, which
/// borrows a handler from another location of its server.
pub(super) enum Out {
    Done(Table),
    NeedsHandler(Table, usize),
}

/// `location @name { proxy_pass http://UPSTREAM; }` of a server: name -> upstream.
pub(super) fn named_locations(list: &[Directive]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for d in list {
        if d.name == "location"
            && let [name] = d.args.as_slice()
            && name.starts_with('@')
            && let Some(pass) = d.block.as_deref().unwrap_or_default().iter().find(|x| x.name == "proxy_pass")
            && let Some(target) = pass.args.first()
            && let Some(host) = proxy_target(target).map(|(h, _)| h)
        {
            out.insert(name.clone(), host);
        }
    }
    out
}

/// `http://HOST[:PORT][URI]` -> (host, URI); `None` for other schemes and variables.
fn proxy_target(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    if rest.contains('$') {
        return None;
    }
    let (host, uri) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    Some((host.to_owned(), uri.to_owned()))
}

/// A `location` regex gale can write as a path: `^/literal` (a prefix) or
/// `^/literal$` (exact); `None` otherwise.
fn regex_path(re: &str) -> Option<String> {
    let body = re.strip_prefix('^')?;
    let (body, exact) = match body.strip_suffix('$') {
        Some(b) if !b.ends_with('\\') => (b, true),
        _ => (body, false),
    };
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('.' | '/' | '-')) => out.push(e),
                _ => return None,
            },
            c if c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '~') => out.push(c),
            _ => return None,
        }
    }
    if !out.starts_with('/') {
        return None;
    }
    Some(if exact { format!("= {out}") } else { out })
}

/// The fate of a `proxy_set_header`.
pub(super) fn set_header_fate(d: &Directive) -> Fate {
    match d.args.as_slice() {
        [name, value] => {
            if gale_sets(name, value) {
                Fate::Default(format!("gale sends `{name}: {value}` itself (config.md, \"What the backend sees\")"))
            } else if values::template_ok(value) {
                Fate::Translated("a header-policy plugin's `request.set` on the locations under it".to_owned())
            } else {
                Fate::Unsupported(
                    "a header-policy plugin's `request.set`, with the variables plugins.md lists".to_owned(),
                )
            }
        }
        _ => Fate::Unsupported("proxy_set_header takes a name and a value".to_owned()),
    }
}

/// Whether a `proxy_set_header` sets what gale sends anyway.
fn is_default_header(d: &Directive) -> bool {
    matches!(d.args.as_slice(), [name, value] if gale_sets(name, value))
}

/// Whether gale sends this header with this value by itself.
fn gale_sets(name: &str, value: &str) -> bool {
    let v = value.to_ascii_lowercase();
    match name.to_ascii_lowercase().as_str() {
        "host" => v == "$http_host",
        "x-real-ip" => v == "$remote_addr",
        "x-scheme" | "x-forwarded-proto" => v == "$scheme",
        "x-forwarded-for" => v == "$proxy_add_x_forwarded_for",
        "upgrade" => v == "$http_upgrade",
        "connection" => matches!(v.as_str(), "" | "upgrade" | "$connection_upgrade" | "keep-alive"),
        _ => false,
    }
}

/// The `static-cache` rule an `expires` makes: `Ok(None)` for `off`.
fn expires_rule(d: &Directive) -> Result<Option<Vec<(&'static str, String)>>, String> {
    match d.args.as_slice() {
        [v] if v == "off" => Ok(None),
        [v] if v == "max" => Ok(Some(vec![("max_age", lit("max"))])),
        [v] if v == "epoch" || v.starts_with('-') => Ok(Some(vec![("no_cache", "true".into())])),
        [v] => match values::time_ms(v) {
            Some(ms) => Ok(Some(vec![("max_age", (ms / 1000).to_string())])),
            None => Err(format!("`{v}` is not a time static-cache takes")),
        },
        _ => Err("static-cache rules take `max`, `epoch` or a time (no `modified`, no `@time`)".to_owned()),
    }
}

pub(super) fn expires_fate(d: &Directive) -> Fate {
    match expires_rule(d) {
        Ok(None) => Fate::Default("gale adds no caching headers unless a static-cache plugin does".to_owned()),
        Ok(Some(_)) if d.args[0] == "epoch" || d.args[0].starts_with('-') => Fate::Changed(
            "the static-cache plugin's `no_cache`: `Cache-Control: no-cache`, without nginx's `Expires` in the past"
                .to_owned(),
        ),
        Ok(Some(_)) => Fate::Translated("the static-cache plugin on the static locations under it".to_owned()),
        Err(e) => Fate::Unsupported(e),
    }
}

/// The header-policy attachment for a location, if it needs one.
fn header_policy(
    t: &mut Translator<'_>,
    set: &[Seen<'_>],
    add: &[Seen<'_>],
    deny: Option<(u16, Option<String>)>,
    forwards: bool,
) -> Option<String> {
    let mut request = Vec::new();
    if forwards {
        for (d, _) in set {
            if let [name, value] = d.args.as_slice()
                && !gale_sets(name, value)
                && values::template_ok(value)
            {
                request.push((name.to_ascii_lowercase(), lit(value)));
            }
        }
    }
    let mut response = Vec::new();
    for (d, _) in add {
        if let [name, value, ..] = d.args.as_slice()
            && values::template_ok(value)
        {
            response.push((name.to_ascii_lowercase(), lit(value)));
        }
    }
    let mut config: Vec<(&str, String)> = Vec::new();
    let table = |pairs: &[(String, String)]| {
        let refs: Vec<(&str, String)> = pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        emit::inline(&[("set", emit::inline(&refs))])
    };
    if !request.is_empty() {
        config.push(("request", table(&request)));
    }
    if !response.is_empty() {
        config.push(("response", table(&response)));
    }
    if let Some((status, body)) = deny {
        let mut rule = vec![("status", status.to_string())];
        if let Some(b) = body {
            rule.push(("body", lit(&b)));
        }
        config.push(("deny", format!("[{}]", emit::inline(&rule))));
    }
    if config.is_empty() {
        return None;
    }
    t.plugins_attached = true;
    Some(emit::inline(&[("name", lit("header-policy")), ("config", emit::inline(&config))]))
}

impl<'a> Translator<'a> {
    /// One `location` block; `None` when nothing of it is written.
    pub(super) fn location(
        &mut self,
        d: &'a Directive,
        outer: &Scope<'a>,
        named: &BTreeMap<String, String>,
    ) -> Option<Out> {
        let list = d.block.as_deref().unwrap_or_default();
        let here = self.report.add(d, Fate::Translated("[[server.location]]".to_owned()));
        let path = match d.args.as_slice() {
            [name] if name.starts_with('@') => {
                let fate = if named.contains_key(name) {
                    Fate::Translated("the `pass` of the upload locations that name it".to_owned())
                } else {
                    Fate::Unsupported("named locations (error_page, try_files) have no gale equivalent".to_owned())
                };
                self.report.refine(here, fate);
                self.named_body(d, list);
                return None;
            }
            [p] if p.starts_with("^~") && p.len() > 2 => p[2..].to_owned(),
            [p] if p.starts_with('=') && p.len() > 1 => format!("= {}", &p[1..]),
            [p] => p.clone(),
            [m, p] if m == "=" => format!("= {p}"),
            [m, p] if m == "^~" => {
                self.report.refine(
                    here,
                    Fate::Translated("a prefix location (gale has no regex locations for `^~` to beat)".to_owned()),
                );
                p.clone()
            }
            [m, re] if m == "~" || m == "~*" => match regex_path(re) {
                Some(p) if m == "~" => {
                    self.report.refine(
                        here,
                        Fate::Changed(format!(
                            "`path = \"{p}\"`: the regex is a literal path; gale picks the longest prefix, where nginx \
                             tried regexes in order after the prefixes"
                        )),
                    );
                    p
                }
                _ => {
                    self.report.refine(
                        here,
                        Fate::Unsupported(
                            "gale's locations are prefixes and exact paths; a regex that is `^/literal` or \
                             `^/literal$` becomes one"
                                .to_owned(),
                        ),
                    );
                    self.skip_block(d, list);
                    return None;
                }
            },
            _ => {
                self.report.refine(here, Fate::Unsupported("location takes a path".to_owned()));
                self.skip_block(d, list);
                return None;
            }
        };
        let mut scope = outer.clone();
        if list.iter().any(|x| x.name == "proxy_set_header") {
            scope.set_headers.clear();
        }
        if list.iter().any(|x| x.name == "add_header") {
            scope.add_headers.clear();
        }
        let mut table = Table::from_block(d);
        table.set("path", lit(&path), &[]);
        let mut proxy: Option<(String, &'a Directive)> = None;
        let mut alias: Option<&'a Directive> = None;
        let mut expires_if: Option<Seen<'a>> = None;
        let mut ret: Option<(u16, Option<String>, &'a Directive)> = None;
        let mut up = Upload::default();
        for x in list {
            if self.scope_directive(x, &mut scope, Level::Location) {
                continue;
            }
            if upload::directive(self, x, &mut up) {
                continue;
            }
            match x.name.as_str() {
                _ if is_scope(x) => {}
                "proxy_pass" => match x.args.first().and_then(|u| proxy_target(u)) {
                    Some((host, uri)) => {
                        let upstream = self.upstream_for(&host, x);
                        let Some(upstream) = upstream else { continue };
                        let fate = if uri.is_empty() || uri == "/" && path == "/" {
                            Fate::Translated(format!("proxy = {{ pass = \"{upstream}\" }}"))
                        } else {
                            Fate::Changed(format!(
                                "proxy = {{ pass = \"{upstream}\" }}; gale forwards the client's path unchanged, where \
                                 nginx replaced the location's prefix by `{uri}`"
                            ))
                        };
                        self.report.add(x, fate);
                        proxy = Some((upstream, x));
                    }
                    None => {
                        self.report.add(
                            x,
                            Fate::Unsupported(
                                "gale proxies to `http://UPSTREAM` or `http://IP:PORT` (no https, no variables)"
                                    .to_owned(),
                            ),
                        );
                    }
                },
                "alias" => {
                    self.report.add(x, Fate::Translated("static.alias".to_owned()));
                    alias = Some(x);
                }
                "if" => {
                    let cond: String = x.args.concat();
                    let inner = x.block.as_deref().unwrap_or_default();
                    if (cond == "($query_string)" || cond == "($args)")
                        && let [e] = inner
                        && e.name == "expires"
                    {
                        self.report.add(x, Fate::Translated("a static-cache rule with `query = true`".to_owned()));
                        let i = self.report.add(e, expires_fate(e));
                        expires_if = Some((e, i));
                    } else {
                        self.report.add(
                            x,
                            Fate::Unsupported(
                                "gale has no `if`; `if ($query_string) { expires ...; }` becomes a static-cache rule, \
                                 other conditions need a plugin"
                                    .to_owned(),
                            ),
                        );
                        self.skip_block(x, inner);
                    }
                }
                "return" => {
                    let code = x.args.first().and_then(|c| c.parse::<u16>().ok()).filter(|c| (200..=599).contains(c));
                    match code {
                        Some(c) if !(300..400).contains(&c) => {
                            let body = x.args.get(1).cloned();
                            let fate = if body.as_deref().is_some_and(|b| b.contains('$')) {
                                Fate::Changed(
                                    "a header-policy `deny` rule; its body is sent as written, without variables"
                                        .to_owned(),
                                )
                            } else {
                                Fate::Translated("a header-policy `deny` rule answering every request".to_owned())
                            };
                            self.report.add(x, fate);
                            ret = Some((c, body, x));
                        }
                        _ => {
                            self.report.add(
                                x,
                                Fate::Unsupported(
                                    "redirects: `redirect_http` on a server redirects to https".to_owned(),
                                ),
                            );
                        }
                    }
                }
                "location" => {
                    self.report.add(
                        x,
                        Fate::Unsupported("nested locations: write each as a location of the server".to_owned()),
                    );
                    self.skip_block(x, x.block.as_deref().unwrap_or_default());
                }
                _ => self.other(x),
            }
        }
        let mut plugins: Vec<String> = Vec::new();
        let mut forwards = false;
        // nginx's `expires` also applies to proxied answers; gale's
        // cache policies are for static files.
        if (up.pass.is_some() || proxy.is_some())
            && let Some((e, i)) = scope.expires
            && e.args.first().is_none_or(|a| a != "off")
        {
            self.report.refine(
                i,
                Fate::Changed(
                    "the static-cache plugin on static locations only: proxied answers keep the backend's caching \
                     headers"
                        .to_owned(),
                ),
            );
        }
        let handler = if up.pass.is_some() {
            forwards = true;
            upload::handler(self, &mut up, named, &scope)
        } else if let Some((upstream, _)) = &proxy {
            forwards = true;
            self.uses.push(Use {
                upstream: upstream.clone(),
                read_timeout: scope.read_timeout,
                connect_timeout: scope.connect_timeout,
                next_upstream: scope.next_upstream,
            });
            Some(("proxy", emit::inline(&[("pass", lit(upstream))])))
        } else if ret.is_some() {
            None
        } else if alias.is_some() || scope.root.is_some() {
            Some(("static", self.static_handler(alias, &scope, expires_if, &mut plugins)))
        } else {
            self.report.refine(
                here,
                Fate::Unsupported(
                    "no proxy_pass, root, alias or upload_pass: nginx would serve files from its `html` folder"
                        .to_owned(),
                ),
            );
            return None;
        };
        if let Some(p) = header_policy(
            self,
            &scope.set_headers,
            &scope.add_headers,
            ret.as_ref().map(|(c, b, _)| (*c, b.clone())),
            forwards,
        ) {
            plugins.insert(0, p);
        }
        if let Some(p) = up.plugin.take() {
            plugins.push(p);
        }
        if !plugins.is_empty() {
            // The directives the plugins carry (the upload's are named above its handler).
            let mut from: Vec<&Directive> = Vec::new();
            from.extend(
                expires_if.or(scope.expires).map(|(d, _)| d).filter(|_| alias.is_some() || scope.root.is_some()),
            );
            from.extend(scope.set_headers.iter().filter(|(d, _)| forwards && !is_default_header(d)).map(|(d, _)| *d));
            from.extend(scope.add_headers.iter().map(|(d, _)| *d));
            from.extend(ret.as_ref().map(|(_, _, d)| *d));
            table.set("plugins", format!("[{}]", plugins.join(", ")), &from);
        }
        match handler {
            Some((key, value)) => {
                // The directives the handler replaces, for its comment.
                let mut sources: Vec<&Directive> = Vec::new();
                match key {
                    "proxy" => sources.extend(proxy.as_ref().map(|(_, d)| *d)),
                    "upload" => sources.extend(list.iter().filter(|x| x.name.starts_with("upload_"))),
                    _ => sources.extend(alias.or(scope.root.map(|(d, _)| d))),
                }
                let from = sources.iter().map(|d| format!("`{}` ({})", d.text(), d.source())).collect();
                table.entries.insert(1, emit::Entry { key: key.to_owned(), value, from });
                Some(Out::Done(table))
            }
            None if ret.is_some() => Some(Out::NeedsHandler(table, here)),
            None => {
                self.report.refine(here, Fate::Unsupported("its upload could not be translated".to_owned()));
                None
            }
        }
    }

    /// The body of a named location: only its `proxy_pass` matters to gale.
    fn named_body(&mut self, d: &'a Directive, list: &'a [Directive]) {
        for x in list {
            let fate = match x.name.as_str() {
                "proxy_pass" => {
                    Fate::Translated("`upload.pass` of the upload locations that name this location".to_owned())
                }
                "proxy_set_header" => set_header_fate(x),
                _ => match super::table::fixed(&x.name) {
                    Some(f) => f,
                    None => Fate::Unsupported(format!("inside `{}`, of which gale keeps the upstream only", d.text())),
                },
            };
            self.report.add(x, fate);
            if let Some(b) = &x.block {
                self.skip_block(x, b);
            }
        }
    }

    /// The upstream `proxy_pass http://HOST` names: an upstream block, or
    /// an address that gets a pool of its own.
    pub(super) fn upstream_for(&mut self, host: &str, d: &'a Directive) -> Option<String> {
        if self.upstream_names.iter().any(|n| n == host) {
            return Some(host.to_owned());
        }
        let Some(addr) = values::backend_addr(host) else {
            self.report.add(
                d,
                Fate::Unsupported(
                    "gale's upstreams are `upstream` blocks or IP addresses, not names to resolve".to_owned(),
                ),
            );
            return None;
        };
        let name: String =
            format!("backend-{addr}").chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        if self.model.upstream_mut(&name).is_none() {
            let mut table = Table { source: Some(format!("`{}` at {}", d.text(), d.source())), entries: Vec::new() };
            table.set("servers", lit_list(&[addr]), &[]);
            self.model.upstreams.push((name.clone(), table));
            self.upstream_names.push(name.clone());
        }
        Some(name)
    }

    fn static_handler(
        &mut self,
        alias: Option<&'a Directive>,
        scope: &Scope<'a>,
        expires_if: Option<Seen<'a>>,
        plugins: &mut Vec<String>,
    ) -> String {
        let mut pairs = Vec::new();
        match (alias, scope.root) {
            (Some(a), _) => pairs.push(("alias", lit(a.args.first().map_or("", String::as_str)))),
            (None, Some((r, _))) => pairs.push(("root", lit(r.args.first().map_or("", String::as_str)))),
            (None, None) => {}
        }
        if let Some((i, _)) = scope.index {
            pairs.push(("index", lit_list(&i.args)));
        }
        if let Some((t, _)) = scope.default_type
            && t.args.first().is_some_and(|v| v != "application/octet-stream")
        {
            pairs.push(("default_type", lit(&t.args[0])));
        }
        // `if ($query_string) { expires max; }` is static-cache's default.
        let rule = match (expires_if, scope.expires) {
            (Some((e, _)), _) => expires_rule(e).ok().flatten().map(|mut r| {
                r.insert(0, ("query", "true".to_owned()));
                r
            }),
            (None, Some((e, _))) => expires_rule(e).ok().flatten(),
            (None, None) => None,
        };
        if let Some(r) = rule {
            self.plugins_attached = true;
            // `if ($query_string) { expires max; }` is static-cache's default.
            if r.len() == 2 && r[0].0 == "query" && r[1] == ("max_age", lit("max")) {
                plugins.push(lit("static-cache"));
            } else {
                let config = emit::inline(&[("rules", format!("[{}]", emit::inline(&r)))]);
                plugins.push(emit::inline(&[("name", lit("static-cache")), ("config", config)]));
            }
        }
        emit::inline(&pairs)
    }
}

/// A `return`-only location answers before its handler runs: it takes the
/// handler of another location of its server (or a pool of the config).
pub(super) fn lend_handlers(t: &mut Translator<'_>, server: &mut emit::Server, pending: &[(usize, usize)]) {
    let lender = server
        .locations
        .iter()
        .find_map(|l| l.entries.iter().find(|e| e.key == "proxy").map(|e| e.value.clone()))
        .or_else(|| t.model.upstreams.first().map(|(n, _)| emit::inline(&[("pass", lit(n))])));
    let mut drop = Vec::new();
    for &(i, report) in pending {
        match &lender {
            Some(v) => server.locations[i].entries.insert(
                1,
                emit::Entry {
                    key: "proxy".to_owned(),
                    value: v.clone(),
                    from: vec!["never reached: the deny rule answers first (a location needs a handler)".to_owned()],
                },
            ),
            None => {
                t.report.refine(
                    report,
                    Fate::Unsupported("a `return` needs another location to borrow a handler from".to_owned()),
                );
                drop.push(i);
            }
        }
    }
    for i in drop.into_iter().rev() {
        server.locations.remove(i);
    }
}
