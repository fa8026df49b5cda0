//! The config's tenants made live: one [`Tenant`] per `[tenant.NAME]` plus
//! the `global` one (from `[global]`'s plugin settings) for servers without
//! `tenant`, built afresh with each config (so a reload ends quarantines
//! and picks up new limits); and the plugin series and `/status` section
//! published once per process.

use std::sync::Once;

use crate::config::{Config, GLOBAL_TENANT, Server, TenantConfig, TenantId};
use crate::plugin::{Limits, Tenant, TenantSettings};

/// The live tenants of one config.
#[derive(Debug)]
pub struct Tenants {
    global: Tenant,
    named: Vec<Tenant>,
}

impl Tenants {
    /// Builds every tenant of `config` (fresh state: closed breakers, no
    /// warm instances).
    pub fn from_config(config: &Config) -> Self {
        Self {
            global: Tenant::new(settings(config, None)),
            named: (0..config.tenants.len()).map(|i| Tenant::new(settings(config, Some(TenantId(i))))).collect(),
        }
    }

    /// The tenant whose plugins `server`'s locations run.
    pub fn for_server(&self, server: &Server) -> &Tenant {
        server.tenant.and_then(|TenantId(i)| self.named.get(i)).unwrap_or(&self.global)
    }
}

/// The plugin settings of tenant `id` (`None`: the global tenant).
pub fn settings(config: &Config, id: Option<TenantId>) -> TenantSettings {
    let g = &config.global;
    let memory = |m: crate::config::ByteSize| usize::try_from(m.bytes()).unwrap_or(usize::MAX);
    match id.and_then(|TenantId(i)| config.tenants.get(i)) {
        Some(TenantConfig { name, plugin_dir, memory: m, hook_timeout, max_concurrent, max_instances, breaker }) => {
            TenantSettings {
                name: name.clone(),
                plugin_dir: plugin_dir.clone(),
                limits: Limits { memory: memory(*m), timeout: *hook_timeout, ..Limits::default() },
                max_concurrent: *max_concurrent,
                max_instances: *max_instances,
                breaker: *breaker,
            }
        }
        None => TenantSettings {
            name: GLOBAL_TENANT.to_owned(),
            plugin_dir: g.plugin_dir.clone(),
            limits: Limits { memory: memory(g.plugin_memory), timeout: g.plugin_hook_timeout, ..Limits::default() },
            max_concurrent: g.plugin_max_concurrent,
            max_instances: g.plugin_max_instances,
            breaker: g.plugin_breaker,
        },
    }
}

/// Adds the plugin series to `/metrics` and the `plugins` section to
/// `/status` (tenants with plugins in use, their limits, calls in flight,
/// warm instances and each plugin's breaker). Once per process.
pub fn publish() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        crate::metrics::register(Box::new(crate::plugin::render_metrics));
        crate::admin::add_status_section(Box::new(|| ("plugins".to_owned(), crate::plugin::status())));
    });
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::plugin::BreakerSettings;

    #[test]
    fn servers_get_their_tenant_and_tenants_inherit_global_settings() {
        let text = r#"
[global]
plugin_dir = "shared"
plugin_hook_timeout = "20ms"
plugin_max_concurrent = 8
plugin_breaker = { failures = 7 }
[tenant.acme]
plugin_dir = "tenants/acme"
limits = { memory = "32MiB", max_instances = 4 }
breaker = { backoff = "2s" }
[tenant.zed]
plugin_dir = "/srv/zed"
limits = { hook_timeout = "5ms", max_concurrent = 2 }
[upstream.app]
servers = ["127.0.0.1:8000"]
[[server]]
listen = ["127.0.0.1:8080"]
tenant = "zed"
[[server.location]]
path = "/"
proxy = { pass = "app" }
[[server]]
listen = ["127.0.0.1:8081"]
[[server.location]]
path = "/"
proxy = { pass = "app" }
"#;
        let cfg = crate::config::parse("t.toml", text, Path::new("/etc/gale")).expect("valid");
        assert_eq!(cfg.tenants.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["acme", "zed"]);
        assert_eq!(cfg.servers[0].tenant, Some(TenantId(1)));
        assert_eq!(cfg.servers[1].tenant, None);

        let acme = settings(&cfg, Some(TenantId(0)));
        assert_eq!(acme.plugin_dir, Path::new("/etc/gale/tenants/acme"));
        assert_eq!(acme.limits.memory, 32 << 20);
        assert_eq!(acme.limits.timeout, Duration::from_millis(20), "inherited from [global]");
        assert_eq!((acme.max_concurrent, acme.max_instances), (8, 4));
        assert_eq!(
            acme.breaker,
            BreakerSettings { failures: 7, backoff: Duration::from_secs(2), ..BreakerSettings::default() }
        );

        let tenants = Tenants::from_config(&cfg);
        let zed = tenants.for_server(&cfg.servers[0]);
        assert_eq!(zed.name(), "zed");
        assert_eq!(zed.settings().limits.timeout, Duration::from_millis(5));
        assert_eq!(zed.settings().max_concurrent, 2);
        assert_eq!(zed.settings().max_instances, crate::config::DEFAULT_MAX_INSTANCES);
        let global = tenants.for_server(&cfg.servers[1]);
        assert_eq!(global.name(), "global");
        assert_eq!(global.plugin_dir(), Path::new("/etc/gale/shared"));
        assert_eq!(global.settings().breaker.failures, 7);
    }
}
