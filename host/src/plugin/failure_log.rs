//! The log line of a failed plugin call, written where the attachment's
//! failure policy is applied, at most once per [`REPEAT_INTERVAL`] per
//! (tenant, plugin, hook, kind of error): a client that makes a plugin fail
//! on every request must not fill the disk (the metrics count every call).

use std::sync::LazyLock;
use std::time::Duration;

use super::error::PluginError;
use crate::log_limit::LogLimit;

/// How often one (tenant, plugin, hook, kind) may write a line.
pub const REPEAT_INTERVAL: Duration = Duration::from_secs(5);

/// Distinct keys within one interval; keys come from the config (tenants,
/// plugins, hooks) and the few kinds of error, so this is never reached in
/// practice.
const KEYS: usize = 4096;

type Key = (String, String, &'static str, &'static str);

fn limit() -> &'static LogLimit<Key> {
    static LIMIT: LazyLock<LogLimit<Key>> = LazyLock::new(|| LogLimit::new(REPEAT_INTERVAL, KEYS));
    &LIMIT
}

/// What the attachment's failure policy did with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consequence {
    /// `fail-closed`: the request is answered 503.
    Refused,
    /// `fail-open`: the request goes on without the plugin; says what
    /// happened instead, e.g. "skipped".
    Skipped(&'static str),
}

/// Logs `error` of a call of `tenant`'s plugin and what the failure policy
/// made of it: ERROR when the request was refused, WARN when it went on.
/// Repeats within [`REPEAT_INTERVAL`] are counted and reported by the next
/// line ("N more like this suppressed").
pub fn log_failure(tenant: Option<&str>, error: &PluginError, consequence: Consequence) {
    let tenant = tenant.unwrap_or_default();
    let plugin = error.plugin().unwrap_or_default();
    let hook = error.hook().unwrap_or("load");
    let key = (tenant.to_owned(), plugin.to_owned(), hook, error.kind());
    let Some(suppressed) = limit().should_log(key) else { return };
    let repeats = match suppressed {
        0 => String::new(),
        n => format!(" ({n} more like this suppressed since the previous one)"),
    };
    match consequence {
        Consequence::Refused => tracing::error!(
            tenant,
            plugin,
            hook,
            error = %error,
            suppressed,
            "plugin failed; request answered 503 (fail-closed){repeats}"
        ),
        Consequence::Skipped(instead) => tracing::warn!(
            tenant,
            plugin,
            hook,
            error = %error,
            suppressed,
            "plugin failed; {instead} (fail-open){repeats}"
        ),
    }
}
