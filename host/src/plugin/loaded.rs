//! Loading a plugin as whichever world it implements, for attachments that
//! do not say which: gale's config lists plugins by name only.

use std::path::Path;

use super::bindings::{CachePolicyBindings, HeaderPolicyBindings, UploadFieldsBindings};
use super::cache_policy::CachePolicy;
use super::error::PluginError;
use super::header_policy::HeaderPolicy;
use super::limits::Limits;
use super::runtime::PluginRuntime;
use super::tenant::{Scope, Tenant};
use super::upload_fields::UploadFieldsPlugin;

/// The worlds [`PluginRuntime::load_any`] tries, in order, as the
/// `WrongWorld` error names them when none fits.
const ANY_WORLD: &str = "header-policy`, `cache-policy` or `upload-fields";

/// A plugin loaded as the world its component exports.
#[derive(Debug, Clone)]
pub enum LoadedPlugin {
    /// It exports `header-hooks`.
    Header(HeaderPolicy),
    /// It exports `cache-hooks`.
    Cache(CachePolicy),
    /// It exports `upload-hooks`.
    UploadFields(UploadFieldsPlugin),
}

impl LoadedPlugin {
    /// The world's name as in `wit/` (`header-policy`, `cache-policy`,
    /// `upload-fields`), for messages.
    pub fn world(&self) -> &'static str {
        match self {
            LoadedPlugin::Header(_) => "header-policy",
            LoadedPlugin::Cache(_) => "cache-policy",
            LoadedPlugin::UploadFields(_) => "upload-fields",
        }
    }

    /// The plugin's name, as attached.
    pub fn name(&self) -> &str {
        match self {
            LoadedPlugin::Header(p) => p.name(),
            LoadedPlugin::Cache(p) => p.name(),
            LoadedPlugin::UploadFields(p) => p.name(),
        }
    }
}

impl PluginRuntime {
    /// Loads plugin `name` as the world its component exports, trying
    /// `header-policy`, then `cache-policy`, then `upload-fields` (a
    /// component exporting several of them is taken as the first). Only the
    /// world that fits is configured. A component of none of them is
    /// [`PluginError::WrongWorld`] naming the three worlds, with what each
    /// check said. No containment beyond `limits`: see
    /// [`Self::load_any_for`].
    pub async fn load_any(
        &self,
        dir: &Path,
        name: &str,
        config: &toml::Table,
        limits: Limits,
    ) -> Result<LoadedPlugin, PluginError> {
        self.load_any_in(dir, limits, None, name, config).await
    }

    /// [`Self::load_any`] for `tenant`: from its plugin directory only,
    /// under its limits, and whatever the world, every call is admitted by
    /// the plugin's circuit breaker and the tenant's concurrency cap, counted
    /// in the plugin metrics, and its warm instances count against the
    /// tenant's cap (what `[[server.location]] plugins` uses).
    pub async fn load_any_for(
        &self,
        tenant: &Tenant,
        name: &str,
        config: &toml::Table,
    ) -> Result<LoadedPlugin, PluginError> {
        self.load_any_in(tenant.plugin_dir(), tenant.settings().limits, Some(tenant), name, config).await
    }

    async fn load_any_in(
        &self,
        dir: &Path,
        limits: Limits,
        tenant: Option<&Tenant>,
        name: &str,
        config: &toml::Table,
    ) -> Result<LoadedPlugin, PluginError> {
        let scope = || tenant.map(|t| Scope::new(t, name));
        let mut reasons: Vec<String> = Vec::new();
        let mut note = |e: PluginError| match e {
            PluginError::WrongWorld { message, .. } => {
                if !reasons.contains(&message) {
                    reasons.push(message);
                }
                Ok(())
            }
            other => Err(other),
        };
        match self.load_scoped::<HeaderPolicyBindings>(dir, name, config, limits, scope()).await {
            Ok(pool) => return Ok(LoadedPlugin::Header(HeaderPolicy::new(pool))),
            Err(e) => note(e)?,
        }
        match self.load_scoped::<CachePolicyBindings>(dir, name, config, limits, scope()).await {
            Ok(pool) => return Ok(LoadedPlugin::Cache(CachePolicy::new(pool))),
            Err(e) => note(e)?,
        }
        match self.load_scoped::<UploadFieldsBindings>(dir, name, config, limits, scope()).await {
            Ok(pool) => return UploadFieldsPlugin::new(pool).await.map(LoadedPlugin::UploadFields),
            Err(e) => note(e)?,
        }
        Err(PluginError::WrongWorld { plugin: name.to_owned(), world: ANY_WORLD, message: reasons.join("; ") })
    }
}
