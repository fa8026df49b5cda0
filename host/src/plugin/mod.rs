//! The WebAssembly plugin runtime: gale's policies (header rules, cache
//! rules, upload field rules) are WASI components defined by the WIT package
//! in `wit/`, loaded from the plugin directory and run sandboxed.
//!
//! Tenants (`tenant.rs`): each owns a plugin directory, limits, a cap on
//! its calls in flight and on its warm instances, and a circuit breaker per
//! plugin (`breaker.rs`: calls that hit a limit open it, traps do not);
//! calls are counted per (tenant, plugin, hook) in `metrics.rs`, and a failed
//! call is logged where its failure policy is applied, repeats rate-limited
//! (`failure_log.rs`).
//!
//! Lifecycle: a plugin is compiled once (and cached on disk by content
//! hash), pre-instantiated once per attachment, and each hook call of every
//! world goes through one protocol (`Pool::call` in `pool.rs`): admitted by
//! the tenant, run on a warm instance from the attachment's pool, settled
//! into the metrics and the breaker; a trap or a limit hit discards that
//! instance only. Limits per call: an epoch deadline (time) and a
//! memory cap. WASI is linked with a context that denies everything.
//!
//! The public API speaks `http` types only; the WIT types stay inside this
//! module (`bindings` generates them, `convert` translates). See
//! `docs/plugins.md` for the contract and how to write a plugin.

mod bindings;
mod breaker;
mod cache_policy;
mod convert;
mod error;
mod exports;
mod failure_log;
mod header_policy;
mod headers;
mod host;
mod limits;
mod loaded;
mod memo;
mod metrics;
mod pool;
mod runtime;
mod source;
mod tenant;
mod upload_fields;

pub use breaker::{BreakerSettings, BreakerSnapshot, BreakerState};
pub use cache_policy::CachePolicy;
pub use error::PluginError;
pub use exports::{Exports, WorldKind};
pub use failure_log::{Consequence, REPEAT_INTERVAL, log_failure};
pub use header_policy::{HeaderPolicy, HookRequest, RequestAction, RequestView, ResponseInput};
pub use headers::{HeaderEdit, HeaderEdits};
pub use limits::Limits;
pub use loaded::LoadedPlugin;
pub use metrics::render as render_metrics;
pub use runtime::{PluginRuntime, RuntimeOptions};
pub use source::{Resolved, resolve};
pub use tenant::{Tenant, TenantSettings, plugin_key, status};
pub use upload_fields::UploadFieldsPlugin;

#[cfg(test)]
mod call_tests;
#[cfg(test)]
mod tenant_tests;
#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod worlds_tests;
