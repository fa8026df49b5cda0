//! The `cache-policy` world in HTTP terms: load a policy, ask it for a
//! static file's caching headers.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use super::RequestView;
use super::bindings::CachePolicyBindings;
use super::bindings::cache_hooks::{CacheDecision, Expiry, FileInfo};
use super::bindings::types::RequestHead;
use super::convert;
use super::error::PluginError;
use super::limits::Limits;
use super::memo::Memo;
use super::pool::{Instance, Pool};
use super::runtime::PluginRuntime;
use super::tenant::Tenant;
use crate::static_files::{CacheHeaders, FileMeta};

/// A loaded cache policy: one attachment of a `cache-policy` plugin on a
/// static location, with its own config, limits and warm instances. Cheap
/// to clone; `Send + Sync`.
#[derive(Clone)]
pub struct CachePolicy {
    pool: Arc<Pool<CachePolicyBindings>>,
    /// Decisions of a policy that declared its inputs (`cache-inputs`),
    /// keyed by what `decide` was given.
    memo: Arc<Memo<Arc<Remembered>>>,
}

/// A remembered decision: rendered once when its headers do not depend on
/// the time (no expiry, or `max`), else rendered anew for each answer.
enum Remembered {
    Fixed(CacheHeaders),
    Timed(CacheDecision),
}

impl std::fmt::Debug for CachePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachePolicy").field("plugin", &self.name()).finish()
    }
}

impl PluginRuntime {
    /// Loads the cache policy `name` from `dir`, like
    /// [`PluginRuntime::load_header_policy`]: resolves the file, merges the
    /// defaults with `config`, compiles (or takes from the cache), checks that
    /// it is a `cache-policy` plugin ([`PluginError::WrongWorld`] otherwise)
    /// and calls its `configure`.
    pub async fn load_cache_policy(
        &self,
        dir: &Path,
        name: &str,
        config: &toml::Table,
        limits: Limits,
    ) -> Result<CachePolicy, PluginError> {
        let pool = self.load::<CachePolicyBindings>(dir, name, config, limits).await?;
        Ok(CachePolicy::new(pool))
    }

    /// Loads the cache policy `name` for `tenant`, like
    /// [`Self::load_header_policy_for`]: from the tenant's plugin directory
    /// only, under its limits; every `decide` is admitted by the plugin's
    /// circuit breaker and the tenant's concurrency cap, counted in the
    /// plugin metrics, and its warm instances count against the tenant's cap.
    pub async fn load_cache_policy_for(
        &self,
        tenant: &Tenant,
        name: &str,
        config: &toml::Table,
    ) -> Result<CachePolicy, PluginError> {
        let pool = self.load_for::<CachePolicyBindings>(tenant, name, config).await?;
        Ok(CachePolicy::new(pool))
    }
}

/// The hook's name in errors and metrics.
const HOOK: &str = "decide";

impl CachePolicy {
    pub(crate) fn new(pool: Arc<Pool<CachePolicyBindings>>) -> Self {
        Self { pool, memo: Arc::new(Memo::new()) }
    }

    /// The plugin's name, as attached.
    pub fn name(&self) -> &str {
        self.pool.name()
    }

    /// The tenant it was loaded for (`None` when loaded without one).
    pub fn tenant(&self) -> Option<&str> {
        self.pool.tenant()
    }

    /// Runs `decide` for `file` answered to `req` and renders the decision
    /// (gale writes the dates; see `wit/cache-policy.wit`). The caller adds
    /// the headers with [`CacheHeaders::apply`]. On error the instance is
    /// discarded and the caller applies the attachment's failure policy.
    ///
    /// A policy that declared its inputs (`cache-inputs`) is given only
    /// those, and its decision is remembered for the next answer with the
    /// same inputs.
    pub async fn decide(&self, req: &RequestView<'_>, file: &FileMeta) -> Result<CacheHeaders, PluginError> {
        let Some(inputs) = self.pool.declared() else {
            let decision = self.call(&convert::request_head(req, true), &convert::file_info(file)).await?;
            return self.render(decision);
        };
        let mtime = convert::file_info_mtime(file);
        let mut key = inputs.request.key(req);
        key.bytes(file.path.as_bytes())
            .option(if inputs.query { file.query.as_deref().map(str::as_bytes) } else { None })
            .number(if inputs.size { file.size } else { 0 })
            .number(if inputs.mtime { mtime } else { 0 })
            .bytes(file.content_type.as_bytes());
        let key = key.finish();
        if let Some(answer) = self.memo.get(&key) {
            self.pool.remembered(HOOK);
            return match &*answer {
                Remembered::Fixed(headers) => Ok(headers.clone()),
                Remembered::Timed(decision) => self.render(decision.clone()),
            };
        }
        let mut info = convert::file_info(file);
        if !inputs.query {
            info.query = None;
        }
        if !inputs.size {
            info.size = 0;
        }
        if !inputs.mtime {
            info.mtime = 0;
        }
        let decision = self.call(&inputs.request.head(req), &info).await?;
        // Validated before it is remembered: a bad answer is never reused.
        // Headers that do not depend on the time are kept rendered.
        let timed = matches!(decision.expires, Some(Expiry::At(_) | Expiry::After(_)));
        let rendered = self.render(decision.clone())?;
        let answer = if timed { Remembered::Timed(decision) } else { Remembered::Fixed(rendered.clone()) };
        self.memo.put(key, Arc::new(answer));
        Ok(rendered)
    }

    /// A call into the guest, boxed: its future is kilobytes, and the static
    /// handler's future (carried by every request) should not be.
    async fn call(&self, head: &RequestHead, info: &FileInfo) -> Result<CacheDecision, PluginError> {
        Box::pin(async move {
            let call = |mut i: Instance<CachePolicyBindings>| async move {
                let result = i.bindings.hooks().call_decide(&mut i.store, head, info).await;
                (i, result)
            };
            self.pool.call(HOOK, call).await
        })
        .await
    }

    fn render(&self, decision: CacheDecision) -> Result<CacheHeaders, PluginError> {
        convert::cache_headers(decision, SystemTime::now()).map_err(|message| PluginError::InvalidOutput {
            plugin: self.name().to_owned(),
            hook: HOOK,
            message,
        })
    }

    /// What `decide` declared it reads, when its answers are remembered.
    pub(crate) fn declared(&self) -> Option<&super::bindings::CacheInputs> {
        self.pool.declared().as_ref()
    }

    #[cfg(test)]
    pub(crate) fn remembered(&self) -> usize {
        self.memo.len()
    }

    /// The plugin's counters (from `host.counter-add`), sorted by name.
    pub fn counters(&self) -> Vec<(String, u64)> {
        self.pool.shared.counters()
    }
}
