//! The `upload-fields` world in the upload module's terms: a plugin that is
//! a [`FieldPolicy`]. Only names and the stored file's metadata cross into
//! wasm, never file bytes.

use std::path::Path;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::bindings::UploadFieldsBindings;
use super::convert;
use super::error::PluginError;
use super::limits::Limits;
use super::pool::{Instance, Pool};
use super::runtime::PluginRuntime;
use super::tenant::Tenant;
use crate::upload::{FieldPolicy, FormField, PolicyError, StoredFile, TextDecision};

/// A loaded upload-fields policy: one attachment of an `upload-fields`
/// plugin on an upload location. Cheap to clone; `Send + Sync`. As a
/// [`FieldPolicy`], its errors are boxed [`PluginError`]s (downcast them to
/// tell a plugin failure from other policy errors).
#[derive(Clone)]
pub struct UploadFieldsPlugin {
    pool: Arc<Pool<UploadFieldsBindings>>,
    /// The plugin's `needs-sha256`, asked once at load: its config cannot
    /// change afterwards.
    sha256: bool,
}

impl std::fmt::Debug for UploadFieldsPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadFieldsPlugin").field("plugin", &self.name()).field("sha256", &self.sha256).finish()
    }
}

impl PluginRuntime {
    /// Loads the upload-fields policy `name` from `dir`, like
    /// [`PluginRuntime::load_header_policy`] (a component of another world is
    /// [`PluginError::WrongWorld`]), then asks it once whether it needs the
    /// SHA-256 of stored files.
    pub async fn load_upload_fields(
        &self,
        dir: &Path,
        name: &str,
        config: &toml::Table,
        limits: Limits,
    ) -> Result<UploadFieldsPlugin, PluginError> {
        let pool = self.load::<UploadFieldsBindings>(dir, name, config, limits).await?;
        UploadFieldsPlugin::new(pool).await
    }

    /// Loads the upload-fields policy `name` for `tenant`, like
    /// [`Self::load_header_policy_for`]: from the tenant's plugin directory
    /// only, under its limits; every call (`needs-sha256` at load included)
    /// is admitted by the plugin's circuit breaker and the tenant's
    /// concurrency cap, counted in the plugin metrics, and its warm instances
    /// count against the tenant's cap.
    pub async fn load_upload_fields_for(
        &self,
        tenant: &Tenant,
        name: &str,
        config: &toml::Table,
    ) -> Result<UploadFieldsPlugin, PluginError> {
        let pool = self.load_for::<UploadFieldsBindings>(tenant, name, config).await?;
        UploadFieldsPlugin::new(pool).await
    }
}

impl UploadFieldsPlugin {
    /// Wraps a loaded pool, asking the plugin once whether it needs the
    /// SHA-256 of stored files.
    pub(crate) async fn new(pool: Arc<Pool<UploadFieldsBindings>>) -> Result<Self, PluginError> {
        let call = |mut i: Instance<UploadFieldsBindings>| async move {
            let result = i.bindings.gale_plugin_upload_hooks().call_needs_sha256(&mut i.store).await;
            (i, result)
        };
        let sha256 = pool.call("needs-sha256", call).await?;
        Ok(Self { pool, sha256 })
    }

    /// The plugin's name, as attached.
    pub fn name(&self) -> &str {
        self.pool.name()
    }

    /// The tenant it was loaded for (`None` when loaded without one).
    pub fn tenant(&self) -> Option<&str> {
        self.pool.tenant()
    }

    /// Whether the plugin asked for the SHA-256 of stored files.
    pub fn needs_sha256(&self) -> bool {
        self.sha256
    }

    /// Runs `text-field`: whether the client's text field `name` passes.
    pub async fn text_decision(&self, name: &[u8]) -> Result<TextDecision, PluginError> {
        let call = |mut i: Instance<UploadFieldsBindings>| async move {
            let result = i.bindings.gale_plugin_upload_hooks().call_text_field(&mut i.store, name).await;
            (i, result)
        };
        let decision = self.pool.call("text-field", call).await?;
        Ok(convert::text_decision(decision))
    }

    /// Runs `file-fields`: the fields that replace a stored file, in order.
    pub async fn fields_for(&self, file: &StoredFile) -> Result<Vec<FormField>, PluginError> {
        const HOOK: &str = "file-fields";
        let wit_file = convert::stored_file(file);
        let call = |mut i: Instance<UploadFieldsBindings>| async move {
            let result = i.bindings.gale_plugin_upload_hooks().call_file_fields(&mut i.store, &wit_file).await;
            (i, result)
        };
        let fields = self.pool.call(HOOK, call).await?;
        convert::form_fields(fields).map_err(|message| PluginError::InvalidOutput {
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

impl FieldPolicy for UploadFieldsPlugin {
    fn needs_sha256(&self) -> bool {
        self.sha256
    }

    fn text_field<'a>(&'a self, name: &'a [u8]) -> BoxFuture<'a, Result<TextDecision, PolicyError>> {
        Box::pin(async move { self.text_decision(name).await.map_err(|e| Box::new(e) as PolicyError) })
    }

    fn file_fields<'a>(&'a self, file: &'a StoredFile) -> BoxFuture<'a, Result<Vec<FormField>, PolicyError>> {
        Box::pin(async move { self.fields_for(file).await.map_err(|e| Box::new(e) as PolicyError) })
    }
}
