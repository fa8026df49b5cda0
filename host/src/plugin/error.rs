//! The plugin module's error type: what went wrong, with which plugin, in
//! which hook.
//!
//! Load errors (a missing file, a component of the wrong world, a rejected
//! config) stop `gale check` and startup. Call errors (trap, timeout, memory
//! limit, invalid output) happen per request; the pipeline applies the
//! attachment's failure policy to them (fail-closed 503 or fail-open skip).

use std::path::PathBuf;
use std::time::Duration;

/// Why a plugin could not be loaded or a hook call failed.
///
/// Every variant names the plugin; call errors also name the hook
/// (`instantiate`, `configure`, `on-request`, `on-response`), so a log line
/// alone says where to look.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The plugin name has characters other than ASCII letters, digits, `-`
    /// and `_` (it would not name a file inside the plugin directory).
    #[error("plugin name {name:?} is invalid: use only ASCII letters, digits, `-` and `_`")]
    InvalidName {
        /// The rejected name.
        name: String,
    },

    /// No `<name>.wasm` (with `-` or `_`) in the plugin directory.
    #[error("plugin `{plugin}`: no {} in the plugin directory {} (build the plugin with `cargo build --release --target wasm32-wasip2` in its crate and copy the .wasm from target/wasm32-wasip2/release/ there)",
        tried.iter().map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect::<Vec<_>>().join(" or "),
        dir.display())]
    NotFound {
        /// The plugin's name as configured.
        plugin: String,
        /// The plugin directory.
        dir: PathBuf,
        /// The file names looked for.
        tried: Vec<PathBuf>,
    },

    /// Reading the component or its defaults file failed.
    #[error("plugin `{plugin}`: cannot read {}: {source}", path.display())]
    Read {
        /// The plugin's name.
        plugin: String,
        /// The file that could not be read.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The defaults file `<name>.toml` is not valid TOML, or the config
    /// cannot be handed over as JSON.
    #[error("plugin `{plugin}`: {message}")]
    Defaults {
        /// The plugin's name.
        plugin: String,
        /// What is wrong, with the file name.
        message: String,
    },

    /// The file is not a WebAssembly component wasmtime can compile (e.g. a
    /// core module, or garbage).
    #[error("plugin `{plugin}`: {} is not a valid WebAssembly component: {message}", path.display())]
    Compile {
        /// The plugin's name.
        plugin: String,
        /// The `.wasm` file.
        path: PathBuf,
        /// wasmtime's explanation.
        message: String,
    },

    /// The component does not implement the world it is attached as (it
    /// lacks the expected export, or imports something gale does not offer).
    #[error("plugin `{plugin}`: not a `{world}` plugin: {message}")]
    WrongWorld {
        /// The plugin's name.
        plugin: String,
        /// The world expected, e.g. `header-policy` (for a plugin loaded as
        /// any world, or placed where its world does not fit, the worlds
        /// that would).
        world: &'static str,
        /// What does not match.
        message: String,
    },

    /// The plugin rejected its configuration; `message` is the plugin's own.
    #[error("plugin `{plugin}` rejected its config: {message}")]
    Config {
        /// The plugin's name.
        plugin: String,
        /// The plugin's explanation.
        message: String,
    },

    /// The guest trapped (a panic, `unreachable`, an out-of-bounds access).
    /// The instance was discarded.
    #[error("plugin `{plugin}` trapped in {hook}: {trap}")]
    Trap {
        /// The plugin's name.
        plugin: String,
        /// The hook that was running.
        hook: &'static str,
        /// The trap, with the guest's last stderr output (its panic message)
        /// when there is one.
        trap: String,
    },

    /// The hook ran past its time limit and was interrupted. The instance
    /// was discarded.
    #[error("plugin `{plugin}` exceeded its time limit of {limit:?} in {hook}")]
    Timeout {
        /// The plugin's name.
        plugin: String,
        /// The hook that was running.
        hook: &'static str,
        /// The limit that was hit.
        limit: Duration,
    },

    /// The guest tried to grow its memory past the limit. The instance was
    /// discarded.
    #[error("plugin `{plugin}` exceeded its memory limit of {limit} bytes in {hook}")]
    MemoryLimit {
        /// The plugin's name.
        plugin: String,
        /// The hook that was running.
        hook: &'static str,
        /// The limit in bytes.
        limit: usize,
    },

    /// The hook returned something gale cannot use (an invalid header name
    /// or value, a framing header, a bad status). The instance is kept: it
    /// did not misbehave as a program, only its answer is refused.
    #[error("plugin `{plugin}` returned an invalid result from {hook}: {message}")]
    InvalidOutput {
        /// The plugin's name.
        plugin: String,
        /// The hook that returned it.
        hook: &'static str,
        /// What is invalid.
        message: String,
    },

    /// The plugin is quarantined by its tenant's circuit breaker (too many
    /// of its calls hit a limit lately): the call was refused without
    /// running it.
    #[error(
        "plugin `{plugin}` of tenant `{tenant}` is quarantined: too many of its calls hit a limit; {hook} not run (retry in {retry_in:?})"
    )]
    Quarantined {
        /// The plugin's name.
        plugin: String,
        /// The tenant it belongs to.
        tenant: String,
        /// The hook that was not run.
        hook: &'static str,
        /// Time left before the next retry (zero while a retry is running).
        retry_in: Duration,
    },

    /// Every one of the tenant's `max_concurrent` plugin call slots stayed
    /// taken while this call waited: it was not run.
    #[error(
        "plugin `{plugin}` of tenant `{tenant}`: all {max_concurrent} concurrent plugin calls of the tenant are busy; {hook} not run after waiting {waited:?}"
    )]
    Busy {
        /// The plugin's name.
        plugin: String,
        /// The tenant whose slots are taken.
        tenant: String,
        /// The hook that was not run.
        hook: &'static str,
        /// The tenant's cap.
        max_concurrent: usize,
        /// How long the call waited for a slot.
        waited: Duration,
    },

    /// The wasmtime engine could not be created (bad runtime options).
    #[error("cannot start the plugin runtime: {message}")]
    Engine {
        /// wasmtime's explanation.
        message: String,
    },
}

impl PluginError {
    /// True for errors of a single hook call (trap, timeout, memory limit,
    /// invalid output, quarantined, busy): the ones the attachment's failure
    /// policy decides about. Everything else is a load error and stops
    /// `gale check`.
    pub fn is_call_error(&self) -> bool {
        matches!(
            self,
            Self::Trap { .. }
                | Self::Timeout { .. }
                | Self::MemoryLimit { .. }
                | Self::InvalidOutput { .. }
                | Self::Quarantined { .. }
                | Self::Busy { .. }
        )
    }

    /// True when the call was refused without running because the plugin
    /// is quarantined.
    pub fn is_quarantined(&self) -> bool {
        matches!(self, Self::Quarantined { .. })
    }

    /// True for failures that cost the machine whatever the request was: the
    /// call ran to its time limit or grew to its memory cap, or a fresh
    /// instance could not be set up (instantiated and configured). Only
    /// these feed the plugin's circuit breaker. A trap or an invalid answer
    /// ends as quickly as a call and may be caused by one request's input,
    /// so `on_error` answers it for that request alone; a `Busy` refusal is
    /// the tenant's concurrency cap at work, not this plugin's failure.
    pub fn is_limit_hit(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::MemoryLimit { .. } | Self::Config { .. } => true,
            Self::Trap { hook, .. } => matches!(*hook, "instantiate" | "configure"),
            _ => false,
        }
    }

    /// The kind of error, in the words of the `outcome` label of
    /// `gale_plugin_calls_total` where there is one: `trap`, `timeout`,
    /// `memory_limit`, `busy`, `quarantined`; else `invalid_output`,
    /// `config`, or `load` for the other load errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Trap { .. } => "trap",
            Self::Timeout { .. } => "timeout",
            Self::MemoryLimit { .. } => "memory_limit",
            Self::Busy { .. } => "busy",
            Self::Quarantined { .. } => "quarantined",
            Self::InvalidOutput { .. } => "invalid_output",
            Self::Config { .. } => "config",
            Self::InvalidName { .. }
            | Self::NotFound { .. }
            | Self::Read { .. }
            | Self::Defaults { .. }
            | Self::Compile { .. }
            | Self::WrongWorld { .. }
            | Self::Engine { .. } => "load",
        }
    }

    /// The hook a call error happened in (`None` for load errors).
    pub fn hook(&self) -> Option<&'static str> {
        match self {
            Self::Trap { hook, .. }
            | Self::Timeout { hook, .. }
            | Self::MemoryLimit { hook, .. }
            | Self::InvalidOutput { hook, .. }
            | Self::Quarantined { hook, .. }
            | Self::Busy { hook, .. } => Some(*hook),
            _ => None,
        }
    }

    /// The plugin the error is about, when there is one.
    pub fn plugin(&self) -> Option<&str> {
        match self {
            Self::InvalidName { name } => Some(name),
            Self::NotFound { plugin, .. }
            | Self::Read { plugin, .. }
            | Self::Defaults { plugin, .. }
            | Self::Compile { plugin, .. }
            | Self::WrongWorld { plugin, .. }
            | Self::Config { plugin, .. }
            | Self::Trap { plugin, .. }
            | Self::Timeout { plugin, .. }
            | Self::MemoryLimit { plugin, .. }
            | Self::InvalidOutput { plugin, .. }
            | Self::Quarantined { plugin, .. }
            | Self::Busy { plugin, .. } => Some(plugin),
            Self::Engine { .. } => None,
        }
    }
}
