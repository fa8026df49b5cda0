//! What `gale check -v` prints once the config passed: each server with
//! its listeners, names and tenant; each location with its kind and its
//! plugins, each with the world its component exports; each upstream with
//! its servers (or its supervised children). A person sees what gale
//! understood, not only that it parsed.

use std::fmt::Write as _;

use crate::config::{Balance, Config, GLOBAL_TENANT, PathMatch, ServerName};
use crate::explain::{handler, on_error};
use crate::plugin::PluginRuntime;
use crate::tenancy::Tenants;

/// The report for `config`; plugins are read through a runtime on the
/// config's compile cache (which `gale check` has just filled).
pub fn report(config: &Config) -> Result<String, String> {
    if config.servers.iter().all(|s| s.locations.iter().all(|l| l.plugins.is_empty())) {
        return Ok(describe(config, None));
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let options = crate::plugin::RuntimeOptions {
            cache_dir: Some(config.global.plugin_cache_dir.clone()),
            ..crate::plugin::RuntimeOptions::default()
        };
        let runtime =
            PluginRuntime::new(options).map_err(|e| format!("gale: error: cannot start the plugin runtime: {e}"))?;
        Ok(describe(config, Some(&runtime)))
    })
}

/// The report, one item a line, indented by nesting. `runtime` reads each
/// attached plugin's world.
pub fn describe(config: &Config, runtime: Option<&PluginRuntime>) -> String {
    let mut out = String::new();
    let tenants = Tenants::from_config(config);
    for server in &config.servers {
        let names: Vec<String> = server
            .names
            .iter()
            .map(|n| match n {
                ServerName::Exact(n) => n.clone(),
                ServerName::Wildcard(suffix) => format!("*{suffix}"),
            })
            .collect();
        let listen: Vec<String> = server.listen.iter().map(ToString::to_string).collect();
        let tenant = server.tenant.and_then(|t| config.tenants.get(t.0)).map_or(GLOBAL_TENANT, |t| t.name.as_str());
        let _ = writeln!(
            out,
            "server {}: listen {}{}{}; tenant {tenant}",
            if names.is_empty() { "(no server_name)".to_owned() } else { names.join(", ") },
            listen.join(", "),
            if server.tls.is_some() { " (TLS)" } else { "" },
            if server.default_server { "; default_server" } else { "" },
        );
        let tenant = tenants.for_server(server);
        for location in &server.locations {
            let path = match &location.matcher {
                PathMatch::Prefix(p) => p.clone(),
                PathMatch::Exact(p) => format!("= {p}"),
            };
            let _ = writeln!(out, "  location {path}: {}", handler(config, &location.handler));
            for a in &location.plugins {
                let world = match runtime.map(|r| r.exports(tenant.plugin_dir(), &a.name)) {
                    Some(Ok(e)) => format!("world {}", e.variant),
                    Some(Err(e)) => format!("not loadable: {e}"),
                    None => "world unknown".to_owned(),
                };
                let _ = writeln!(out, "    plugin {}: {world}; on_error {}", a.name, on_error(a.on_error));
            }
        }
    }
    for u in &config.upstreams {
        let what = match &u.process {
            Some(p) => format!(
                "{} supervised {} on ports {}-{}",
                p.count,
                if p.count == 1 { "child" } else { "children" },
                p.base_port,
                usize::from(p.base_port) + p.count.saturating_sub(1)
            ),
            None => {
                let mut servers: Vec<String> = u.servers.iter().map(|b| b.addr.to_string()).collect();
                servers.extend(u.named.iter().map(|n| format!("{}:{} (DNS)", n.host, n.port)));
                format!("servers {}", servers.join(", "))
            }
        };
        let check = if u.health_check.is_some() { "; active health check" } else { "" };
        let balance = match u.balance {
            Balance::RoundRobin => "round_robin",
            Balance::LeastConn => "least_conn",
        };
        let _ = writeln!(out, "upstream {}: {what}; balance {balance}{check}", u.name);
    }
    out
}
