//! `gale plugins explain`: which server, location, tenant and plugin chain
//! a request for a host and path gets, with each plugin's resolved file
//! and the config it receives — worked out from the config alone, the way
//! the router and the plugin loader would, without serving; each plugin
//! found is then loaded ([`Explanation::configure`]) so that its
//! `configure` judges its config.

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::config::{Config, Handler, OnError, Server, ServerName};
use crate::plugin::{PluginError, PluginRuntime, Resolved, Tenant, TenantSettings};
use crate::router::{self, ListenerRoutes};

/// Why a request could not be placed.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// `--listen` names an address the config does not listen on.
    #[error("the config has no listener on {0}; it listens on {1}")]
    NoListener(SocketAddr, String),
    /// The path has no normal form: gale answers it 400 before routing.
    #[error("gale answers this path 400 before choosing a location: {0}")]
    Path(#[from] crate::uri_path::NormaliseError),
}

/// Where a request goes and what plugins it meets.
#[derive(Debug)]
pub struct Explanation {
    /// The host as matched (lower case, no port).
    pub host: String,
    /// The path as given.
    pub path: String,
    /// The path in normal form, which the location is chosen by
    /// (`uri_path`; docs/config.md, "Path normalisation").
    pub normal_path: String,
    /// The listener considered.
    pub listener: SocketAddr,
    /// The server block chosen (index into `Config::servers`).
    pub server: usize,
    /// How it was chosen: `name` (server_name matched) or `default`.
    pub chosen_by: &'static str,
    /// The server's label: its first name, else its first address.
    pub server_label: String,
    /// The server's tenant.
    pub tenant: TenantSettings,
    /// The location, when one matches: its index, path as written and
    /// handler.
    pub location: Option<(usize, String, String)>,
    /// The plugins, in the order their request hooks run.
    pub plugins: Vec<ExplainedPlugin>,
}

/// One attachment of the chain.
#[derive(Debug)]
pub struct ExplainedPlugin {
    /// The name as attached.
    pub name: String,
    pub on_error: OnError,
    /// The attachment's `config` table as written.
    pub config: toml::Table,
    /// The file found in the tenant's plugin directory and the merged
    /// config, or why the plugin cannot be loaded.
    pub resolved: Result<Resolved, PluginError>,
}

/// Works out the chain for `host` and `path`: on the listener `listen`
/// when given, else on the first listener where a `server_name` matches
/// `host`, else the first listener's default server.
pub fn explain(
    config: &Config,
    listen: Option<SocketAddr>,
    host: &str,
    path: &str,
) -> Result<Explanation, ExplainError> {
    let host = router::host_for_matching(host);
    let path = path.split_once('?').map_or(path, |(p, _)| p).to_owned();
    let normal_path = crate::uri_path::normalise(&path, config.http.merge_slashes)?.into_owned();
    let listener = match listen {
        Some(addr) => config.listeners.iter().find(|l| l.addr == addr).ok_or_else(|| {
            let all: Vec<String> = config.listeners.iter().map(|l| l.addr.to_string()).collect();
            ExplainError::NoListener(addr, all.join(", "))
        })?,
        None => config
            .listeners
            .iter()
            .find(|l| l.servers.iter().any(|&i| matches_name(&config.servers[i], &host)))
            .unwrap_or(&config.listeners[0]),
    };
    let (index, server) = ListenerRoutes::new(listener.servers.clone()).server(config, &host);
    let tenant = crate::tenancy::settings(config, server.tenant);
    let location = router::location(server, &normal_path);
    let plugins = location
        .map(|(_, l)| {
            l.plugins
                .iter()
                .map(|a| ExplainedPlugin {
                    name: a.name.clone(),
                    on_error: a.on_error,
                    config: a.config.clone(),
                    resolved: crate::plugin::resolve(&tenant.plugin_dir, &a.name, &a.config),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Explanation {
        chosen_by: if matches_name(server, &host) { "name" } else { "default" },
        server_label: label(server),
        host,
        path,
        normal_path,
        listener: listener.addr,
        server: index,
        tenant,
        location: location.map(|(i, l)| {
            let written = match &l.matcher {
                crate::config::PathMatch::Exact(p) => format!("= {p}"),
                crate::config::PathMatch::Prefix(p) => p.clone(),
            };
            (i, written, handler(config, &l.handler))
        }),
        plugins,
    })
}

fn matches_name(server: &Server, host: &str) -> bool {
    server.names.iter().any(|n| match n {
        ServerName::Exact(n) => n == host,
        ServerName::Wildcard(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
    })
}

fn label(server: &Server) -> String {
    match server.names.first() {
        Some(ServerName::Exact(n)) => n.clone(),
        Some(ServerName::Wildcard(suffix)) => format!("*{suffix}"),
        None => server.listen.first().map_or_else(|| "_".to_owned(), |a| a.to_string()),
    }
}

pub(crate) fn handler(config: &Config, h: &Handler) -> String {
    match h {
        Handler::Proxy(p) => format!("proxy -> upstream `{}`", config.upstreams[p.upstream.0].name),
        Handler::Static(_) => "static files".to_owned(),
        Handler::Upload(u) => format!("upload -> upstream `{}`", config.upstreams[u.upstream.0].name),
    }
}

pub(crate) fn on_error(e: OnError) -> &'static str {
    match e {
        OnError::FailClosed => "fail-closed",
        OnError::FailOpen => "fail-open",
    }
}

impl Explanation {
    /// Loads each plugin of the chain that was found, as `gale run` would
    /// (the world its component exports, under the tenant's limits), so
    /// that its `configure` says whether it accepts its config; a plugin
    /// that rejects it (or cannot be loaded) gets that error in place of
    /// its resolution.
    pub async fn configure(&mut self, runtime: &PluginRuntime) {
        let tenant = Tenant::new(self.tenant.clone());
        for p in &mut self.plugins {
            if p.resolved.is_err() {
                continue;
            }
            let loaded = match runtime.load_header_policy_for(&tenant, &p.name, &p.config).await {
                Err(PluginError::WrongWorld { .. }) => {
                    runtime.load_any(tenant.plugin_dir(), &p.name, &p.config, tenant.settings().limits).await.map(drop)
                }
                other => other.map(drop),
            };
            match (loaded, &p.resolved) {
                (Ok(()), _) => {}
                // Named by key, without positions in the JSON text.
                (Err(PluginError::Config { plugin, message }), Ok(r)) => {
                    let r = crate::config::plugin_keys::rejection(&r.config_json, &message);
                    let message = match r.path {
                        Some(path) => format!("`{path}`: {}", r.message),
                        None => r.message,
                    };
                    p.resolved = Err(PluginError::Config { plugin, message });
                }
                (Err(e), _) => p.resolved = Err(e),
            }
        }
    }

    /// True when every plugin of the chain was found and its config built.
    pub fn all_resolved(&self) -> bool {
        self.plugins.iter().all(|p| p.resolved.is_ok())
    }

    /// The explanation for a person.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let t = &self.tenant;
        let _ = writeln!(out, "request:  host {}, path {}", self.host, self.path);
        if self.normal_path != self.path {
            let _ = writeln!(out, "          matched as {}", self.normal_path);
        }
        let _ = writeln!(out, "listener: {}", self.listener);
        let _ = writeln!(out, "server:   #{} {} (chosen by {})", self.server + 1, self.server_label, self.chosen_by);
        let _ = writeln!(out, "tenant:   {}", t.name);
        let _ = writeln!(out, "  plugin_dir:     {}", t.plugin_dir.display());
        let _ = writeln!(
            out,
            "  limits:         memory {} bytes, hook_timeout {:?}, max_concurrent {}, max_instances {}",
            t.limits.memory, t.limits.timeout, t.max_concurrent, t.max_instances
        );
        let b = &t.breaker;
        let breaker = if b.failures == 0 {
            "off".to_owned()
        } else {
            format!(
                "quarantine after {} failures within {:?}; retry after {:?}, doubling up to {:?}",
                b.failures, b.window, b.backoff, b.max_backoff
            )
        };
        let _ = writeln!(out, "  breaker:        {breaker}");
        let Some((index, path, handler)) = &self.location else {
            let _ = writeln!(out, "location: none matches (404); no plugins run");
            return out;
        };
        let _ = writeln!(out, "location: #{} {path:?} ({handler})", index + 1);
        if self.plugins.is_empty() {
            let _ = writeln!(out, "plugins:  none");
            return out;
        }
        let _ = writeln!(
            out,
            "plugins:  {} (on-request in this order before the handler; on-response after it)",
            self.plugins.len()
        );
        for (i, p) in self.plugins.iter().enumerate() {
            let _ = writeln!(out, "  {}. {}", i + 1, p.name);
            let _ = writeln!(out, "     tenant:   {}", t.name);
            let _ = writeln!(out, "     on_error: {}", on_error(p.on_error));
            let config = toml::to_string(&p.config).unwrap_or_default();
            let config = if config.trim().is_empty() {
                "(none)".to_owned()
            } else {
                config.trim().replace('\n', "\n               ")
            };
            let _ = writeln!(out, "     config:   {config}");
            match &p.resolved {
                Ok(r) => {
                    let _ = writeln!(out, "     file:     {}", r.wasm.display());
                    let defaults = r.defaults.as_ref().map_or_else(|| "(none)".to_owned(), |d| d.display().to_string());
                    let _ = writeln!(out, "     defaults: {defaults}");
                    let _ = writeln!(out, "     receives: {}", r.config_json);
                }
                Err(e) => {
                    let _ = writeln!(out, "     error:    {e}");
                }
            }
        }
        out
    }

    /// The explanation as JSON (for tools and tests).
    pub fn to_json(&self) -> serde_json::Value {
        let t = &self.tenant;
        serde_json::json!({
            "host": self.host,
            "path": self.path,
            "normal_path": self.normal_path,
            "listener": self.listener.to_string(),
            "server": { "index": self.server, "label": self.server_label, "chosen_by": self.chosen_by },
            "tenant": {
                "name": t.name,
                "plugin_dir": t.plugin_dir.display().to_string(),
                "memory": t.limits.memory,
                "hook_timeout_ms": t.limits.timeout.as_secs_f64() * 1000.0,
                "max_concurrent": t.max_concurrent,
                "max_instances": t.max_instances,
                "breaker": {
                    "failures": t.breaker.failures,
                    "window_ms": t.breaker.window.as_secs_f64() * 1000.0,
                    "backoff_ms": t.breaker.backoff.as_secs_f64() * 1000.0,
                    "max_backoff_ms": t.breaker.max_backoff.as_secs_f64() * 1000.0,
                },
            },
            "location": self.location.as_ref().map(|(i, p, h)| serde_json::json!({ "index": i, "path": p, "handler": h })),
            "plugins": self.plugins.iter().map(|p| {
                let mut v = serde_json::json!({
                    "name": p.name,
                    "tenant": t.name,
                    "on_error": on_error(p.on_error),
                    "config": serde_json::to_value(&p.config).unwrap_or_default(),
                });
                match &p.resolved {
                    Ok(r) => {
                        v["file"] = r.wasm.display().to_string().into();
                        v["defaults"] = r.defaults.as_ref().map(|d| d.display().to_string()).into();
                        v["receives"] = serde_json::from_str(&r.config_json).unwrap_or_default();
                    }
                    Err(e) => v["error"] = e.to_string().into(),
                }
                v
            }).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(dir: &Path) -> Config {
        let text = format!(
            r#"
[global]
plugin_dir = "{g}"
[tenant.a]
plugin_dir = "{a}"
limits = {{ hook_timeout = "5ms" }}
[upstream.app]
servers = ["127.0.0.1:8000"]
[[server]]
listen = ["127.0.0.1:8080"]
server_name = ["a.test", "*.a.test"]
tenant = "a"
[[server.location]]
path = "/"
proxy = {{ pass = "app" }}
plugins = [{{ name = "probe", config = {{ path_prefix = "/x" }}, on_error = "fail-open" }}, "missing"]
[[server.location]]
path = "= /exact"
proxy = {{ pass = "app" }}
[[server]]
listen = ["127.0.0.1:8080"]
server_name = ["b.test"]
[[server.location]]
path = "/b/"
proxy = {{ pass = "app" }}
plugins = ["probe"]
"#,
            g = dir.join("global").display(),
            a = dir.join("a").display()
        );
        crate::config::parse("t.toml", &text, dir).expect("valid")
    }

    #[test]
    fn explains_server_location_tenant_and_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["global", "a"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        std::fs::write(dir.path().join("a/probe.wasm"), b"x").expect("write");
        std::fs::write(dir.path().join("a/probe.toml"), "greeting = \"hi\"\n").expect("write");
        // Only in the global directory: tenant `a` must not see it.
        std::fs::write(dir.path().join("global/missing.wasm"), b"x").expect("write");
        let cfg = config(dir.path());

        let e = explain(&cfg, None, "WWW.A.test:8080", "/x/1?q=2").expect("placed");
        assert_eq!((e.server, e.chosen_by, e.server_label.as_str()), (0, "name", "a.test"));
        assert_eq!(e.tenant.name, "a");
        assert_eq!(e.location.as_ref().map(|l| l.1.as_str()), Some("/"));
        assert_eq!(e.path, "/x/1");
        let probe = &e.plugins[0];
        let resolved = probe.resolved.as_ref().expect("found in a's dir");
        assert_eq!(resolved.wasm, dir.path().join("a/probe.wasm"));
        assert_eq!(resolved.config_json, r#"{"greeting":"hi","path_prefix":"/x"}"#);
        assert!(matches!(e.plugins[1].resolved, Err(PluginError::NotFound { .. })));
        assert!(!e.all_resolved());
        let text = e.to_text();
        for want in [
            "tenant:   a",
            "on_error: fail-open",
            "config:   path_prefix = \"/x\"",
            "a/probe.wasm",
            "error:    plugin `missing`",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        let json = e.to_json();
        assert_eq!(json["plugins"][0]["receives"]["greeting"], "hi");
        assert_eq!(json["tenant"]["hook_timeout_ms"], 5.0);

        let exact = explain(&cfg, None, "a.test", "/exact").expect("placed");
        assert_eq!(exact.location.as_ref().map(|l| l.1.as_str()), Some("= /exact"));
        assert!(exact.plugins.is_empty());
        // Chosen by the path's normal form, as the pipeline chooses.
        let spelled = explain(&cfg, None, "a.test", "//%65xact").expect("placed");
        assert_eq!(spelled.location.as_ref().map(|l| l.1.as_str()), Some("= /exact"));
        assert!(spelled.to_text().contains("matched as /exact"), "{}", spelled.to_text());
        assert!(matches!(explain(&cfg, None, "a.test", "/../exact"), Err(ExplainError::Path(_))));

        // An unknown host goes to the listener's default server (the first).
        let other = explain(&cfg, None, "b.test", "/b/c").expect("placed");
        assert_eq!((other.server, other.tenant.name.as_str()), (1, "global"));
        assert!(other.plugins[0].resolved.is_err(), "probe is not in the global dir");
        let none = explain(&cfg, None, "nowhere.test", "/b/").expect("placed");
        assert_eq!((none.server, none.chosen_by), (0, "default"));

        let bad = explain(&cfg, Some("127.0.0.1:9".parse().expect("addr")), "a.test", "/");
        assert!(matches!(bad, Err(ExplainError::NoListener(..))));
    }
}
