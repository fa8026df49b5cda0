//! Tenants in the config: `[tenant.NAME]` sections (their own plugin
//! directory, limits and circuit breaker), `tenant = "NAME"` on a
//! `[[server]]`, and the `[global]` plugin settings that servers without a
//! tenant use (and that a tenant's missing keys inherit).
//!
//! ```toml
//! [tenant.acme]
//! plugin_dir = "tenants/acme/plugins"
//! limits = { memory = "16MiB", hook_timeout = "5ms", max_concurrent = 64, max_instances = 32 }
//! breaker = { failures = 5, failure_percent = 50, window = "10s", backoff = "1s", max_backoff = "60s" }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::diagnostics::{Collector, closest};
use super::raw::Scalar;
use super::runtime::Global;
use super::units::{ByteSize, parse_duration};
use super::validate::{duration, int_in, path_from};
use crate::plugin::BreakerSettings;

/// The tenant name servers without `tenant` use in metrics and `/status`;
/// reserved, so no `[tenant.global]`.
pub const GLOBAL_TENANT: &str = "global";

/// Default cap on a tenant's plugin calls in flight.
pub const DEFAULT_MAX_CONCURRENT: usize = 64;
/// Default cap on a tenant's warm plugin instances, across its plugins.
pub const DEFAULT_MAX_INSTANCES: usize = 256;

/// `[tenant.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenant {
    /// Required: a tenant's plugins come from its own directory only.
    pub plugin_dir: Option<Spanned<String>>,
    pub limits: Option<Spanned<RawLimits>>,
    pub breaker: Option<Spanned<RawBreaker>>,
}

/// `limits = { ... }` on a tenant.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub memory: Option<Spanned<Scalar>>,
    pub hook_timeout: Option<Spanned<Scalar>>,
    pub max_concurrent: Option<Spanned<i64>>,
    pub max_instances: Option<Spanned<i64>>,
}

/// `breaker = { ... }` on a tenant, or `plugin_breaker` in `[global]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    pub failures: Option<Spanned<i64>>,
    pub failure_percent: Option<Spanned<i64>>,
    pub window: Option<Spanned<Scalar>>,
    pub backoff: Option<Spanned<Scalar>>,
    pub max_backoff: Option<Spanned<Scalar>>,
}

/// Index of a tenant in [`Config::tenants`](super::Config::tenants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TenantId(pub usize);

/// A validated `[tenant.NAME]`, with `[global]`'s values filled in for the
/// keys it leaves out.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantConfig {
    pub name: String,
    pub plugin_dir: PathBuf,
    /// Memory cap per plugin instance.
    pub memory: ByteSize,
    /// Time cap per hook call; also how long a call waits for a free
    /// concurrency slot.
    pub hook_timeout: Duration,
    /// Most plugin calls of the tenant in flight.
    pub max_concurrent: usize,
    /// Most warm instances kept across the tenant's plugins.
    pub max_instances: usize,
    pub breaker: BreakerSettings,
}

/// `[global]`'s `plugin_max_concurrent`, `plugin_max_instances` and
/// `plugin_breaker`.
pub(super) fn global_plugin_settings(
    max_concurrent: Option<Spanned<i64>>,
    max_instances: Option<Spanned<i64>>,
    breaker_table: Option<Spanned<RawBreaker>>,
    c: &mut Collector<'_>,
) -> Option<(usize, usize, BreakerSettings)> {
    let max_concurrent = concurrency(max_concurrent, DEFAULT_MAX_CONCURRENT, "plugin_max_concurrent", c);
    let max_instances = instances(max_instances, DEFAULT_MAX_INSTANCES, "plugin_max_instances", c);
    let breaker = breaker(breaker_table, BreakerSettings::default(), c);
    Some((max_concurrent?, max_instances?, breaker?))
}

fn concurrency(v: Option<Spanned<i64>>, default: usize, what: &str, c: &mut Collector<'_>) -> Option<usize> {
    int_in(v, default as i64, 1, 100_000, what, c).map(|n| n as usize)
}

fn instances(v: Option<Spanned<i64>>, default: usize, what: &str, c: &mut Collector<'_>) -> Option<usize> {
    int_in(v, default as i64, 0, 100_000, what, c).map(|n| n as usize)
}

/// A positive duration.
fn positive(v: Option<Spanned<Scalar>>, default: Duration, what: &str, c: &mut Collector<'_>) -> Option<Duration> {
    let span = v.as_ref().map(Spanned::span);
    let d = duration(v, default, c)?;
    if d.is_zero() {
        c.error(span, format!("{what} must be longer than 0"));
        return None;
    }
    Some(d)
}

fn breaker(
    raw: Option<Spanned<RawBreaker>>,
    inherit: BreakerSettings,
    c: &mut Collector<'_>,
) -> Option<BreakerSettings> {
    let Some(raw) = raw else { return Some(inherit) };
    let span = raw.span();
    let raw = raw.into_inner();
    let failures = int_in(raw.failures, i64::from(inherit.failures), 0, 1_000_000, "breaker failures", c);
    let percent = int_in(raw.failure_percent, i64::from(inherit.failure_percent), 0, 100, "breaker failure_percent", c);
    let window = positive(raw.window, inherit.window, "breaker window", c);
    let backoff = positive(raw.backoff, inherit.backoff, "breaker backoff", c);
    let max_backoff = positive(raw.max_backoff, inherit.max_backoff, "breaker max_backoff", c);
    let settings = BreakerSettings {
        failures: failures? as u32,
        failure_percent: percent? as u8,
        window: window?,
        backoff: backoff?,
        max_backoff: max_backoff?,
    };
    if settings.max_backoff < settings.backoff {
        c.error(
            Some(span),
            format!(
                "breaker max_backoff ({:?}) is shorter than backoff ({:?}): the backoff doubles up to max_backoff",
                settings.max_backoff, settings.backoff
            ),
        );
        return None;
    }
    Some(settings)
}

/// Checks every `[tenant.NAME]`; keys a tenant leaves out take `global`'s
/// values (the built-in defaults when `[global]` itself has errors).
pub(super) fn tenants(
    raw: BTreeMap<String, Spanned<RawTenant>>,
    global: Option<&Global>,
    base: &Path,
    c: &mut Collector<'_>,
) -> Option<Vec<TenantConfig>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (name, t) in raw {
        match tenant(name, t, global, base, c) {
            Some(t) => out.push(t),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn tenant(
    name: String,
    t: Spanned<RawTenant>,
    global: Option<&Global>,
    base: &Path,
    c: &mut Collector<'_>,
) -> Option<TenantConfig> {
    let span = t.span();
    let t = t.into_inner();
    let mut ok = true;
    if name == GLOBAL_TENANT {
        c.error(
            Some(span.clone()),
            "the tenant name `global` is reserved: servers without `tenant` use [global]'s plugin settings \
             and are labelled tenant=\"global\"",
        );
        ok = false;
    } else if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        c.error(
            Some(span.clone()),
            format!("tenant name {name:?} is invalid: use ASCII letters, digits, `-`, `_` and `.`"),
        );
        ok = false;
    }
    let plugin_dir = match &t.plugin_dir {
        Some(d) if d.get_ref().trim().is_empty() => {
            c.error(Some(d.span()), format!("tenant `{name}`: plugin_dir is empty"));
            None
        }
        Some(d) => Some(path_from(base, d.get_ref())),
        None => {
            c.error(
                Some(span),
                format!(
                    "tenant `{name}` has no plugin_dir: each tenant's plugins come from its own directory, \
                     e.g. plugin_dir = \"tenants/{name}/plugins\""
                ),
            );
            None
        }
    };
    let defaults = match global {
        Some(g) => {
            (g.plugin_memory, g.plugin_hook_timeout, g.plugin_max_concurrent, g.plugin_max_instances, g.plugin_breaker)
        }
        None => (
            ByteSize(16 << 20),
            Duration::from_millis(10),
            DEFAULT_MAX_CONCURRENT,
            DEFAULT_MAX_INSTANCES,
            BreakerSettings::default(),
        ),
    };
    let (memory, hook_timeout, max_concurrent, max_instances) = match t.limits.map(Spanned::into_inner) {
        None => (Some(defaults.0), Some(defaults.1), Some(defaults.2), Some(defaults.3)),
        Some(l) => (
            memory(l.memory, defaults.0, c),
            hook_timeout(l.hook_timeout, defaults.1, c),
            concurrency(l.max_concurrent, defaults.2, "max_concurrent", c),
            instances(l.max_instances, defaults.3, "max_instances", c),
        ),
    };
    let breaker = breaker(t.breaker, defaults.4, c);
    if !ok {
        return None;
    }
    Some(TenantConfig {
        name,
        plugin_dir: plugin_dir?,
        memory: memory?,
        hook_timeout: hook_timeout?,
        max_concurrent: max_concurrent?,
        max_instances: max_instances?,
        breaker: breaker?,
    })
}

/// 1 MiB to 4 GiB: a Rust guest alone needs about 1.1 MiB (its stack is
/// 1 MiB).
fn memory(v: Option<Spanned<Scalar>>, default: ByteSize, c: &mut Collector<'_>) -> Option<ByteSize> {
    let Some(v) = v else { return Some(default) };
    match ByteSize::parse(&v.get_ref().0) {
        Ok(s) if (1 << 20..=4 << 30).contains(&s.bytes()) => Some(s),
        Ok(_) => {
            c.error(Some(v.span()), format!("memory must be between 1M and 4G, not {}", v.get_ref().0));
            None
        }
        Err(e) => {
            c.error(Some(v.span()), e);
            None
        }
    }
}

/// 1 ms to 60 s: the epoch ticks every millisecond, and a hook holds a
/// worker thread while it runs.
fn hook_timeout(v: Option<Spanned<Scalar>>, default: Duration, c: &mut Collector<'_>) -> Option<Duration> {
    let Some(v) = v else { return Some(default) };
    match parse_duration(&v.get_ref().0) {
        Ok(d) if d >= Duration::from_millis(1) && d <= Duration::from_secs(60) => Some(d),
        Ok(_) => {
            c.error(Some(v.span()), format!("hook_timeout must be between 1ms and 60s, not {}", v.get_ref().0));
            None
        }
        Err(e) => {
            c.error(Some(v.span()), e);
            None
        }
    }
}

/// Resolves `tenant = "NAME"` on a server, with a hint when it is unknown.
pub(super) fn reference(v: Option<Spanned<String>>, tenants: &[String], c: &mut Collector<'_>) -> Option<TenantId> {
    let v = v?;
    let name = v.get_ref();
    if let Some(i) = tenants.iter().position(|t| t == name) {
        return Some(TenantId(i));
    }
    let hint = match closest(name, tenants) {
        _ if name == GLOBAL_TENANT => "; leave `tenant` out to use [global]'s plugin settings".to_owned(),
        Some(best) => format!("; did you mean `{best}`?"),
        None if tenants.is_empty() => format!("; define it with [tenant.{name}] and its plugin_dir"),
        None => format!("; defined tenants: {}", tenants.join(", ")),
    };
    c.error(Some(v.span()), format!("unknown tenant `{name}`{hint}"));
    None
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::plugin::BreakerSettings;

    fn breaker_of(global: &str, tenant: &str) -> (BreakerSettings, BreakerSettings) {
        let text = format!(
            "[global]\n{global}\n[tenant.t]\nplugin_dir = \"p\"\n{tenant}\n[upstream.app]\nservers = [\"127.0.0.1:8000\"]\n\
             [[server]]\nlisten = [\"127.0.0.1:8080\"]\n[[server.location]]\npath = \"/\"\nproxy = {{ pass = \"app\" }}\n"
        );
        let cfg = crate::config::parse("t.toml", &text, Path::new("/")).expect("valid");
        (cfg.global.plugin_breaker, cfg.tenants[0].breaker)
    }

    #[test]
    fn breaker_keys_of_earlier_configs_still_load_and_failure_percent_is_inherited() {
        // A config written before `failure_percent` existed: the default share applies.
        let (global, tenant) = breaker_of(
            "plugin_breaker = { failures = 3, window = \"1m\", backoff = \"2s\", max_backoff = \"10s\" }",
            "",
        );
        let want = BreakerSettings {
            failures: 3,
            failure_percent: 50,
            window: Duration::from_secs(60),
            backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(10),
        };
        assert_eq!((global, tenant), (want, want));
        let (global, tenant) =
            breaker_of("plugin_breaker = { failure_percent = 0 }", "breaker = { failure_percent = 90, failures = 9 }");
        assert_eq!(global, BreakerSettings { failure_percent: 0, ..BreakerSettings::default() });
        assert_eq!(tenant, BreakerSettings { failures: 9, failure_percent: 90, ..BreakerSettings::default() });
    }
}
