//! Raw file shape -> runtime config. Collects every error it finds (not just
//! the first) so `gale check` can list them all.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::diagnostics::{Collector, closest};
use super::listen::{admin, admin_apart, listeners, server_tls, socket_addr};
use super::raw::{self, RawConfig, Scalar};
use super::runtime::*;
use super::units::{ByteSize, parse_duration};
use super::upload::upload_route;

pub(crate) fn validate(raw: RawConfig, base: &Path, c: &mut Collector<'_>) -> Option<Config> {
    let mut raw_global = raw.global;
    let global_resolvers = super::upstream::resolvers(raw_global.resolvers.take(), c);
    let global = global(raw_global, base, c);
    let http = http(raw.http, c);
    let admin_span = raw.admin.as_ref().map(|a| a.get_ref().listen.span());
    let admin = raw.admin.and_then(|a| admin(a.into_inner(), c));

    let names: Vec<String> = raw.upstream.keys().cloned().collect();
    let tenant_names: Vec<String> = raw.tenant.keys().cloned().collect();
    let tenants = super::tenant::tenants(raw.tenant, global.as_ref(), base, c);
    let mut upstreams = Vec::new();
    for (name, up) in raw.upstream {
        upstreams.push(super::upstream::upstream(name, up, global_resolvers.as_deref(), base, c));
    }

    let mut servers = Vec::new();
    let mut spans = Vec::new();
    for s in raw.server {
        let span = s.span();
        spans.push(span.clone());
        let body_limit = http.as_ref().map_or(1 << 20, |h| h.client_max_body_size.bytes());
        let mut s = s.into_inner();
        let tenant = super::tenant::reference(s.tenant.take(), &tenant_names, c);
        let merge_slashes = http.as_ref().is_none_or(|h| h.merge_slashes);
        servers.push(server(s, span, &names, base, body_limit, merge_slashes, c).map(|s| Server { tenant, ..s }));
    }
    if servers.is_empty() {
        c.error(None, "no [[server]] block: add one with `listen` and at least one [[server.location]]");
    }
    let listeners = listeners(&servers, &spans, c);
    if let (Some(addr), Some(span), Some(listeners)) = (admin, admin_span, listeners.as_ref()) {
        admin_apart(addr, span, listeners, c);
    }

    if !c.diagnostics.is_empty() {
        return None;
    }
    Some(Config {
        global: global?,
        http: http?,
        admin,
        upstreams: upstreams.into_iter().collect::<Option<_>>()?,
        servers: servers.into_iter().collect::<Option<_>>()?,
        listeners: listeners?,
        tenants: tenants?,
    })
}

pub(super) fn duration(v: Option<Spanned<Scalar>>, default: Duration, c: &mut Collector<'_>) -> Option<Duration> {
    let Some(v) = v else { return Some(default) };
    match parse_duration(&v.get_ref().0) {
        Ok(d) => Some(d),
        Err(e) => {
            c.error(Some(v.span()), e);
            None
        }
    }
}

pub(super) fn size(v: Option<Spanned<Scalar>>, default: ByteSize, c: &mut Collector<'_>) -> Option<ByteSize> {
    let Some(v) = v else { return Some(default) };
    match ByteSize::parse(&v.get_ref().0) {
        Ok(s) => Some(s),
        Err(e) => {
            c.error(Some(v.span()), e);
            None
        }
    }
}

pub(super) fn int_in(
    v: Option<Spanned<i64>>,
    default: i64,
    lo: i64,
    hi: i64,
    what: &str,
    c: &mut Collector<'_>,
) -> Option<i64> {
    let Some(v) = v else { return Some(default) };
    let n = *v.get_ref();
    if n < lo || n > hi {
        c.error(Some(v.span()), format!("{what} must be between {lo} and {hi}, not {n}"));
        return None;
    }
    Some(n)
}

pub(super) fn path_from(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() { p.to_path_buf() } else { base.join(p) }
}

fn log_target(v: Option<Spanned<String>>, default: LogTarget, base: &Path) -> LogTarget {
    match v.as_ref().map(|s| s.get_ref().as_str()) {
        None => default,
        Some("off") => LogTarget::Off,
        Some("stdout") => LogTarget::Stdout,
        Some("stderr") => LogTarget::Stderr,
        Some(path) => LogTarget::File(path_from(base, path)),
    }
}

fn global(g: raw::RawGlobal, base: &Path, c: &mut Collector<'_>) -> Option<Global> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = int_in(g.threads, cpus as i64, 1, 1024, "threads", c);
    let max_connections = int_in(g.max_connections, 1024, 1, 10_000_000, "max_connections", c);
    let shutdown_timeout = duration(g.shutdown_timeout, Duration::from_secs(10), c);
    // 0 by default, as nginx and HAProxy stop at once; behind a Kubernetes Service or an L4
    // balancer a few seconds let it notice `/ready` before gale stops accepting.
    let shutdown_delay = duration(g.shutdown_delay, Duration::ZERO, c);
    let upgrade_timeout = duration(g.upgrade_timeout, Duration::from_secs(30), c);
    let watch_span = g.watch_config_interval.as_ref().map(|v| v.span());
    let watch_interval = duration(g.watch_config_interval, Duration::from_secs(1), c).filter(|d| {
        let ok = *d >= Duration::from_millis(100);
        if !ok {
            c.error(watch_span.clone(), "watch_config_interval must be at least 100ms".to_owned());
        }
        ok
    });
    let plugin_memory = size(g.plugin_memory, ByteSize(16 << 20), c);
    let plugin_hook_timeout = duration(g.plugin_hook_timeout, Duration::from_millis(10), c);
    let plugins =
        super::tenant::global_plugin_settings(g.plugin_max_concurrent, g.plugin_max_instances, g.plugin_breaker, c);
    Some(Global {
        threads: threads? as usize,
        max_connections: max_connections? as usize,
        pid_file: g.pid_file.map(|p| path_from(base, p.get_ref())),
        error_log: log_target(g.error_log, LogTarget::Stderr, base),
        log_level: g.log_level.unwrap_or_default(),
        access_log: log_target(g.access_log, LogTarget::Stdout, base),
        access_log_format: g.access_log_format.unwrap_or_default(),
        shutdown_timeout: shutdown_timeout?,
        shutdown_delay: shutdown_delay?,
        upgrade_timeout: upgrade_timeout?,
        watch_config: if g.watch_config.unwrap_or(false) { Some(watch_interval?) } else { None },
        plugin_dir: path_from(base, g.plugin_dir.as_ref().map_or("plugins", |p| p.get_ref())),
        plugin_cache_dir: path_from(base, g.plugin_cache_dir.as_ref().map_or("run/plugin-cache", |p| p.get_ref())),
        plugin_memory: plugin_memory?,
        plugin_hook_timeout: plugin_hook_timeout?,
        plugin_max_concurrent: plugins?.0,
        plugin_max_instances: plugins?.1,
        plugin_breaker: plugins?.2,
    })
}

fn http(h: raw::RawHttp, c: &mut Collector<'_>) -> Option<Http> {
    let keepalive_timeout = duration(h.keepalive_timeout, Duration::from_secs(65), c);
    let client_max_body_size = size(h.client_max_body_size, ByteSize(1 << 20), c);
    let client_header_timeout = duration(h.client_header_timeout, Duration::from_secs(60), c);
    let client_body_timeout = duration(h.client_body_timeout, Duration::from_secs(60), c);
    let max_header_size = match h.max_header_size {
        Some(v) => {
            let span = v.span();
            let s = size(Some(v), ByteSize(0), c)?;
            if s.bytes() < 8192 {
                c.error(Some(span), "max_header_size must be at least 8k");
                return None;
            }
            Some(s)
        }
        None => Some(ByteSize(32 << 10)),
    };
    let max_uri_size = size(h.max_uri_size, ByteSize(8 << 10), c);
    let max_headers = int_in(h.max_headers, 256, 1, 1024, "max_headers", c);
    let streams = int_in(h.http2_max_concurrent_streams, 128, 1, 10_000, "http2_max_concurrent_streams", c);
    Some(Http {
        keepalive_timeout: keepalive_timeout?,
        client_max_body_size: client_max_body_size?,
        client_header_timeout: client_header_timeout?,
        client_body_timeout: client_body_timeout?,
        max_header_size: max_header_size?,
        max_uri_size: max_uri_size?,
        max_headers: max_headers? as usize,
        gzip: match h.gzip {
            None => None,
            Some(g) => {
                let span = g.span();
                match crate::compress::GzipConfig::from_options(g.into_inner()) {
                    Ok(cfg) => Some(cfg),
                    Err(e) => {
                        c.error(Some(span), format!("gzip: {e}"));
                        return None;
                    }
                }
            }
        },
        http2: h.http2.unwrap_or(true),
        http2_max_concurrent_streams: streams? as u32,
        merge_slashes: h.merge_slashes.unwrap_or(true),
    })
}

/// Requests are matched by the normal form of their path (`uri_path`), so a
/// location path in any other form could never match: say which to write.
fn normal_location_path(matcher: &PathMatch, merge_slashes: bool) -> Result<(), String> {
    let path = matcher.path();
    match crate::uri_path::normalise(path, merge_slashes) {
        Ok(normal) if normal == path => Ok(()),
        Ok(normal) => {
            let written = match matcher {
                PathMatch::Exact(_) => format!("= {normal}"),
                PathMatch::Prefix(_) => normal.into_owned(),
            };
            Err(format!(
                "would never match: request paths are matched in normal form (docs/config.md, \
                 \"Path normalisation\"); write `{written}`"
            ))
        }
        Err(e) => Err(format!("would never match: such a request is answered 400 ({e})")),
    }
}

fn server(
    s: raw::RawServer,
    span: std::ops::Range<usize>,
    upstreams: &[String],
    base: &Path,
    body_limit: u64,
    merge_slashes: bool,
    c: &mut Collector<'_>,
) -> Option<Server> {
    let mut ok = true;
    let tls = match s.tls {
        Some(t) => match server_tls(t.into_inner(), base, c) {
            Some(t) => Some(t),
            None => {
                ok = false;
                None
            }
        },
        None => None,
    };
    if s.redirect_http && tls.is_some() {
        c.error(Some(span.clone()), "`redirect_http` belongs on a plain server block, not on one with `tls`");
        ok = false;
    }
    let mut listen = Vec::new();
    if s.listen.get_ref().is_empty() {
        c.error(Some(s.listen.span()), "`listen` is empty: give at least one address like `127.0.0.1:8080`");
        ok = false;
    }
    for l in s.listen.get_ref() {
        match socket_addr(l, "listen", c) {
            Some(a) => listen.push(a),
            None => ok = false,
        }
    }
    let mut names = Vec::new();
    for n in &s.server_name {
        let text = n.get_ref().trim().to_ascii_lowercase();
        if let Some(suffix) = text.strip_prefix('*') {
            if !suffix.starts_with('.') || suffix.len() < 2 || suffix.contains('*') {
                c.error(Some(n.span()), format!("`{text}`: a wildcard name must look like `*.example.org`"));
                ok = false;
                continue;
            }
            names.push(ServerName::Wildcard(suffix.to_owned()));
        } else if text.is_empty() || text.contains('*') || text.contains('/') {
            c.error(Some(n.span()), format!("`{text}` is not a valid server name"));
            ok = false;
        } else {
            names.push(ServerName::Exact(text));
        }
    }
    let mut locations = Vec::new();
    if s.location.is_empty() && !s.redirect_http {
        c.error(
            Some(span),
            "this [[server]] has no [[server.location]]: add one, e.g. path = \"/\" with proxy = { pass = \"...\" }",
        );
        ok = false;
    }
    let mut seen: HashMap<PathMatch, ()> = HashMap::new();
    for l in s.location {
        let lspan = l.span();
        let l = l.into_inner();
        let p = l.path.get_ref().trim();
        let matcher = if let Some(exact) = p.strip_prefix('=') {
            PathMatch::Exact(exact.trim().to_owned())
        } else {
            PathMatch::Prefix(p.to_owned())
        };
        if !matcher.path().starts_with('/') {
            c.error(
                Some(l.path.span()),
                format!("location path `{p}` must start with `/` (or `= /` for an exact match)"),
            );
            ok = false;
            continue;
        }
        if let Err(e) = normal_location_path(&matcher, merge_slashes) {
            c.error(Some(l.path.span()), format!("location path `{p}` {e}"));
            ok = false;
        }
        if seen.insert(matcher.clone(), ()).is_some() {
            c.error(Some(l.path.span()), format!("duplicate location `{p}` in this server"));
            ok = false;
        }
        let handler = match (l.proxy, l.static_files, l.upload) {
            (Some(proxy), None, None) => proxy_route(proxy.into_inner(), upstreams, c),
            (None, Some(st), None) => static_route(st, base, c),
            (None, None, Some(up)) => upload_route(up, upstreams, body_limit, base, c),
            (None, None, None) => {
                c.error(
                    Some(lspan),
                    format!(
                        "location `{p}` has no handler: add `proxy = {{ pass = \"UPSTREAM\" }}` or `static = {{ root = \"DIR\" }}`"
                    ),
                );
                None
            }
            _ => {
                c.error(
                    Some(lspan),
                    format!("location `{p}` has more than one of `proxy`, `static`, `upload`: choose one"),
                );
                None
            }
        };
        match handler {
            Some(handler) => {
                let plugins = l
                    .plugins
                    .into_iter()
                    .map(|a| {
                        let (line, col) = c.position(a.span());
                        let a = a.into_inner();
                        let config_at = a.config_span.map_or((line, col), |s| c.position(s));
                        let config_keys = a
                            .config_keys
                            .into_iter()
                            .map(|(path, span)| {
                                let start = super::plugin_keys::key_start(c.text(), span.start);
                                let (line, col) = c.position(start..span.end);
                                (path, line, col)
                            })
                            .collect();
                        Attachment {
                            name: a.name,
                            config: a.config,
                            on_error: a.on_error.unwrap_or_default(),
                            line,
                            col,
                            config_at,
                            config_keys,
                        }
                    })
                    .collect();
                locations.push(Location { matcher, handler, plugins })
            }
            None => ok = false,
        }
    }
    if !ok {
        return None;
    }
    Some(Server {
        names,
        listen,
        default_server: s.default_server,
        tls,
        redirect_http: s.redirect_http,
        locations,
        tenant: None,
    })
}

/// Resolves `pass = "NAME"` to an upstream, with a hint when it is unknown.
pub(super) fn upstream_ref(pass: &Spanned<String>, upstreams: &[String], c: &mut Collector<'_>) -> Option<UpstreamId> {
    let name = pass.get_ref();
    if let Some(i) = upstreams.iter().position(|u| u == name) {
        return Some(UpstreamId(i));
    }
    let hint = match closest(name, upstreams) {
        Some(best) => format!("; did you mean `{best}`?"),
        None if upstreams.is_empty() => "; define it with [upstream.NAME]".to_owned(),
        None => format!("; defined upstreams: {}", upstreams.join(", ")),
    };
    c.error(Some(pass.span()), format!("unknown upstream `{name}`{hint}"));
    None
}

fn proxy_route(proxy: raw::RawProxy, upstreams: &[String], c: &mut Collector<'_>) -> Option<Handler> {
    let max_tunnels = int_in(proxy.max_tunnels, 10_000, 0, 10_000_000, "max_tunnels", c);
    let tunnel_idle_timeout = duration(proxy.tunnel_idle_timeout, Duration::from_secs(3600), c);
    let allow_upgrade = allow_upgrade(proxy.allow_upgrade, c);
    let upstream = upstream_ref(&proxy.pass, upstreams, c)?;
    Some(Handler::Proxy(ProxyRoute {
        upstream,
        max_tunnels: max_tunnels? as usize,
        tunnel_idle_timeout: tunnel_idle_timeout?,
        allow_upgrade: allow_upgrade?,
    }))
}

/// `allow_upgrade`: protocol names as `Upgrade` carries them (RFC 9110
/// tokens, matched without case and without a `/version`).
fn allow_upgrade(list: Option<Vec<Spanned<String>>>, c: &mut Collector<'_>) -> Option<Vec<String>> {
    let Some(list) = list else { return Some(vec!["websocket".to_owned()]) };
    let mut out = Vec::new();
    let mut ok = true;
    for name in list {
        let text = name.get_ref();
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if text.is_empty() || !text.bytes().all(token) {
            c.error(
                Some(name.span()),
                format!(
                    "`allow_upgrade`: {text:?} is not a protocol name: give names like \"websocket\", without a version"
                ),
            );
            ok = false;
            continue;
        }
        out.push(text.to_ascii_lowercase());
    }
    ok.then_some(out)
}

fn static_route(
    st: Spanned<crate::static_files::StaticOptions>,
    base: &Path,
    c: &mut Collector<'_>,
) -> Option<Handler> {
    let span = st.span();
    let mut options = st.into_inner();
    // Relative directories are relative to the config file, like every path.
    options.root = options.root.map(|p| base.join(p));
    options.alias = options.alias.map(|p| base.join(p));
    match crate::static_files::StaticConfig::from_options(options) {
        Ok(cfg) => Some(Handler::Static(cfg)),
        Err(e) => {
            c.error(Some(span), format!("static: {e}"));
            None
        }
    }
}
