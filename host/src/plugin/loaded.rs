//! Loading a plugin as whichever world it implements, for attachments that
//! do not say which: gale's config lists plugins by name only.

use std::path::Path;

use http::HeaderName;

use super::bindings::{CachePolicyBindings, HeaderPolicyBindings, UploadFieldsBindings};
use super::cache_policy::CachePolicy;
use super::error::PluginError;
use super::exports::{Exports, WorldKind};
use super::header_policy::HeaderPolicy;
use super::limits::Limits;
use super::memo::Inputs;
use super::runtime::PluginRuntime;
use super::tenant::{Scope, Tenant};
use super::upload_fields::UploadFieldsPlugin;

/// The worlds a plugin of unknown world may be, as the `WrongWorld` error
/// names them when it is none of them (or several).
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
        self.kind().name()
    }

    /// The world, as [`WorldKind`].
    pub fn kind(&self) -> WorldKind {
        match self {
            LoadedPlugin::Header(_) => WorldKind::Header,
            LoadedPlugin::Cache(_) => WorldKind::Cache,
            LoadedPlugin::UploadFields(_) => WorldKind::UploadFields,
        }
    }

    /// What the configured plugin declared about itself, one line per
    /// hook, for a person (`gale plugins build`).
    pub fn declarations(&self) -> Vec<String> {
        match self {
            LoadedPlugin::Header(p) => {
                let d = p.declared();
                let hook = |name: &str, wanted: bool, inputs: Option<String>| match (wanted, inputs) {
                    (false, _) => format!("{name}: not called (header-interest)"),
                    (true, Some(inputs)) => format!("{name}: reads {inputs}; answers remembered"),
                    (true, None) => format!("{name}: given the whole request; answers not remembered"),
                };
                let response = d.on_response.as_ref().map(|(inputs, headers)| {
                    let names: Vec<&str> = headers.iter().map(HeaderName::as_str).collect();
                    let headers = match names.as_slice() {
                        [] => "no response header".to_owned(),
                        names => format!("the response headers {}", names.join(", ")),
                    };
                    format!("{} and {headers}", inputs_text(inputs))
                });
                vec![
                    hook("on-request", p.wants_request(), d.on_request.as_ref().map(inputs_text)),
                    hook("on-response", p.wants_response(), response),
                ]
            }
            LoadedPlugin::Cache(p) => vec![match p.declared() {
                Some(c) => {
                    let file: Vec<&str> = [(c.query, "query"), (c.size, "size"), (c.mtime, "mtime")]
                        .into_iter()
                        .filter_map(|(on, name)| on.then_some(name))
                        .collect();
                    let file = if file.is_empty() { "path and type only".to_owned() } else { file.join(", ") };
                    format!("decide: reads {} and the file's {file}; answers remembered", inputs_text(&c.request))
                }
                None => "decide: given the whole request; answers not remembered".to_owned(),
            }],
            LoadedPlugin::UploadFields(p) => {
                vec![format!(
                    "sha-256 of stored files: {}",
                    if p.needs_sha256() { "asked for" } else { "not asked for" }
                )]
            }
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

/// Declared request inputs in words: `path, headers user-agent`.
fn inputs_text(i: &Inputs) -> String {
    let parts = [
        (i.method, "method"),
        (i.path, "path"),
        (i.query, "query"),
        (i.remote_addr, "remote address"),
        (i.remote_port, "remote port"),
        (i.scheme, "scheme"),
        (i.host, "host"),
    ];
    let mut words: Vec<String> = parts.into_iter().filter(|(on, _)| *on).map(|(_, w)| w.to_owned()).collect();
    if !i.headers.is_empty() {
        let names: Vec<&str> = i.headers.iter().map(HeaderName::as_str).collect();
        words.push(format!("headers {}", names.join(", ")));
    }
    if words.is_empty() { "nothing of the request".to_owned() } else { words.join(", ") }
}

impl PluginRuntime {
    /// Loads plugin `name` as the world its component exports (see
    /// [`Self::exports`]): a component of none of gale's worlds, or of
    /// several, is [`PluginError::WrongWorld`]. No containment beyond
    /// `limits`: see [`Self::load_any_for`].
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
        let scope = tenant.map(|t| Scope::new(t, name));
        match self.exports(dir, name)?.kind {
            WorldKind::Header => {
                let pool = self.load_scoped::<HeaderPolicyBindings>(dir, name, config, limits, scope).await?;
                Ok(LoadedPlugin::Header(HeaderPolicy::new(pool)))
            }
            WorldKind::Cache => {
                let pool = self.load_scoped::<CachePolicyBindings>(dir, name, config, limits, scope).await?;
                Ok(LoadedPlugin::Cache(CachePolicy::new(pool)))
            }
            WorldKind::UploadFields => {
                let pool = self.load_scoped::<UploadFieldsBindings>(dir, name, config, limits, scope).await?;
                UploadFieldsPlugin::new(pool).await.map(LoadedPlugin::UploadFields)
            }
        }
    }

    /// The world plugin `name` in `dir` implements, read from its
    /// component's exports (compiling it, or taking it from the cache).
    /// A component of no gale world, or of several, is
    /// [`PluginError::WrongWorld`] saying which.
    pub fn exports(&self, dir: &Path, name: &str) -> Result<Exports, PluginError> {
        let files = super::source::find(dir, name)?;
        let component = self.component(name, &files.wasm)?;
        super::exports::world_of(self.engine(), &component).map_err(|message| PluginError::WrongWorld {
            plugin: name.to_owned(),
            world: ANY_WORLD,
            message,
        })
    }
}
