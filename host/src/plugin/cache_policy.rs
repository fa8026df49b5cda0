//! The `cache-policy` world in HTTP terms: load a policy, ask it for a
//! static file's caching headers.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use super::RequestView;
use super::bindings::CachePolicyBindings;
use super::convert;
use super::error::PluginError;
use super::limits::Limits;
use super::pool::Pool;
use super::runtime::PluginRuntime;
use crate::static_files::{CacheHeaders, FileMeta};

/// A loaded cache policy: one attachment of a `cache-policy` plugin on a
/// static location, with its own config, limits and warm instances. Cheap
/// to clone; `Send + Sync`.
#[derive(Clone)]
pub struct CachePolicy {
    pool: Arc<Pool<CachePolicyBindings>>,
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
        Ok(CachePolicy { pool })
    }
}

impl CachePolicy {
    /// The plugin's name, as attached.
    pub fn name(&self) -> &str {
        self.pool.name()
    }

    /// Runs `decide` for `file` answered to `req` and renders the decision
    /// (gale writes the dates; see `wit/cache-policy.wit`). The caller adds
    /// the headers with [`CacheHeaders::apply`]. On error the instance is
    /// discarded and the caller applies the attachment's failure policy.
    pub async fn decide(&self, req: &RequestView<'_>, file: &FileMeta) -> Result<CacheHeaders, PluginError> {
        const HOOK: &str = "decide";
        let head = convert::request_head(req, true);
        let info = convert::file_info(file);
        let mut instance = self.pool.take().await?;
        let limit = self.pool.timeout();
        self.pool.arm(&mut instance, limit);
        let call = instance.bindings.gale_plugin_cache_hooks().call_decide(&mut instance.store, &head, &info);
        let result = self.pool.run(limit, call).await;
        let decision = self.pool.finish(instance, HOOK, result)?;
        convert::cache_headers(decision, SystemTime::now()).map_err(|message| PluginError::InvalidOutput {
            plugin: self.name().to_owned(),
            hook: HOOK,
            message,
        })
    }

    /// The plugin's counters (from `host.counter-add`), sorted by name.
    pub fn counters(&self) -> Vec<(String, u64)> {
        self.pool.shared.counters()
    }
}
