//! The WebAssembly plugin runtime: gale's policies (header rules, cache
//! rules, upload field rules) are WASI components defined by the WIT package
//! in `wit/`, loaded from the plugin directory and run sandboxed.
//!
//! Lifecycle: a plugin is compiled once (and cached on disk by content
//! hash), pre-instantiated once per attachment, and each hook call takes a
//! warm instance from the attachment's pool; a trap or a limit hit discards
//! that instance only. Limits per call: an epoch deadline (time) and a
//! memory cap. WASI is linked with a context that denies everything.
//!
//! The public API speaks `http` types only; the WIT types stay inside this
//! module (`bindings` generates them, `convert` translates). See
//! `docs/plugins.md` for the contract and how to write a plugin.

mod bindings;
mod cache_policy;
mod convert;
mod error;
mod header_policy;
mod headers;
mod host;
mod limits;
mod loaded;
mod pool;
mod runtime;
mod source;
mod upload_fields;

pub use cache_policy::CachePolicy;
pub use error::PluginError;
pub use header_policy::{HeaderPolicy, RequestAction, RequestView};
pub use headers::{HeaderEdit, HeaderEdits};
pub use limits::Limits;
pub use loaded::LoadedPlugin;
pub use runtime::{PluginRuntime, RuntimeOptions};
pub use upload_fields::UploadFieldsPlugin;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod worlds_tests;
