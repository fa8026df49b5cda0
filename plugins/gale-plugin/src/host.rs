//! What gale offers every plugin: its log and its metrics counters.
//!
//! In a native build (a plugin's unit tests) there is no gale to call: the
//! calls are recorded instead, for [`crate::testing::take_logs`] and
//! [`crate::testing::take_counters`].

pub use crate::bindings::gale::plugin::host::LogLevel;

/// Writes `message` to gale's error log at `level`, tagged with the plugin's
/// name (gale truncates messages past 4 KiB).
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::gale::plugin::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::record_log(level, message);
}

/// Adds `delta` to the plugin's counter `name`, reported in gale's metrics
/// (at most 64 counters, names up to 64 bytes).
pub fn counter_add(name: &str, delta: u64) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::gale::plugin::host::counter_add(name, delta);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::record_counter(name, delta);
}
