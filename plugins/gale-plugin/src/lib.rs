//! Write gale plugins in Rust.
//!
//! A gale plugin is a WebAssembly component exporting one of the worlds of
//! the WIT package `gale:plugin` (embedded in this crate). This crate hides
//! the bindings, the exports and the per-instance state: a plugin is a type
//! built from its `Config` (any `serde::Deserialize`) that implements the
//! world's trait, and one macro call that exports it.
//!
//! | world | trait | macro |
//! |---|---|---|
//! | `header-policy` | [`HeaderPolicy`] | [`header_policy!`] |
//! | `cache-policy` | [`CachePolicy`] | [`cache_policy!`] |
//! | `upload-fields` | [`UploadFields`] | [`upload_fields!`] |
//!
//! ```
//! use gale_plugin::{Decision, HeaderOp, HeaderPolicy, RequestHead, ResponseHead};
//!
//! #[derive(serde::Deserialize)]
//! struct Tagger { name: String, #[serde(default)] banned_agents: Vec<String> }
//!
//! impl HeaderPolicy for Tagger {
//!     type Config = Self;
//!     fn new(config: Self) -> Result<Self, String> { Ok(config) }
//!
//!     fn on_request(&self, request: &RequestHead) -> Decision {
//!         let agent = request.header_str("user-agent").unwrap_or_default();
//!         if self.banned_agents.iter().any(|banned| agent.contains(banned.as_str())) {
//!             return Decision::respond(403, "banned\n");
//!         }
//!         Decision::next()
//!     }
//!
//!     fn on_response(&self, _: &RequestHead, _: &ResponseHead) -> Vec<HeaderOp> {
//!         vec![HeaderOp::set("x-served-by", &self.name)]
//!     }
//! }
//!
//! gale_plugin::header_policy!(Tagger);
//! # fn main() {}
//! ```
//!
//! Remembered answers (gale's memo of hook answers) are opt-in: the macro's
//! plain form builds the plain world, where every hook gets the whole request.
//! `header_policy!(T, remember)` and `cache_policy!(T, remember)` export the
//! `memoizable-*` worlds, and the inputs a hook reads are then named in the
//! trait's `inputs` method, next to the hooks that read them; anything left
//! undeclared is not given to the hook. [`testing::assert_inputs_declared`]
//! catches a hook that reads what it did not declare, in a native unit test.
//!
//! The crate must be a dependency named `gale_plugin` (the generated glue
//! refers to it by that name) of a `cdylib` crate built for `wasm32-wasip2`.

mod cache;
mod header;
mod helpers;
mod host;
pub mod testing;
mod upload;
mod wit;

pub use cache::{CacheDecision, CachePolicy, DecisionInputs, Expiry, FileInfo, FileInputs};
pub use header::{Decision, Declaration, HeaderPolicy, Interest, ResponseInputs};
pub use host::{LogLevel, counter_add, log};
/// `serde`, re-exported so that `#[derive(gale_plugin::serde::Deserialize)]`
/// needs no dependency of its own (add `#[serde(crate = "gale_plugin::serde")]`).
pub use serde;
pub use types::{Header, HeaderOp, LocalResponse, RequestHead, RequestInputs, ResponseHead};
pub use upload::{FormField, StoredFile, TextDecision, UploadFields};

/// The types of `gale:plugin/types`, generated once here and shared by every
/// plugin's glue (through wit-bindgen's `with`).
// The generated glue holds raw C-ABI code, which needs `unsafe`.
#[allow(unsafe_code)]
mod bindings {
    crate::__with_wit!(__private_generate_types);
}

/// The WIT types (`header`, `header-op`, `request-head`, ...), with helpers
/// (see [`RequestHead::header`], [`HeaderOp::set`]).
pub mod types {
    pub use crate::bindings::gale::plugin::types::*;
}

#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::gale::plugin::host;
    pub use crate::bindings::gale::plugin::types;
    pub use serde_json;
    pub use wit_bindgen;

    /// Parses the configuration gale hands to `configure` and builds the
    /// plugin from it. (gale's message already names the plugin.)
    pub fn configure<C: serde::de::DeserializeOwned, T>(
        json: &str,
        new: impl FnOnce(C) -> Result<T, String>,
    ) -> Result<T, String> {
        let config = serde_json::from_str(json).map_err(|e| format!("invalid config: {e}"))?;
        new(config)
    }

    /// One configured plugin per instance: a wasm instance is single-threaded,
    /// and gale calls `configure` on every fresh instance before any hook.
    pub struct Slot<T>(std::cell::RefCell<Option<T>>);

    impl<T> Slot<T> {
        pub const fn new() -> Self {
            Slot(std::cell::RefCell::new(None))
        }

        pub fn set(&self, value: T) {
            *self.0.borrow_mut() = Some(value);
        }

        /// Runs `f` with the plugin. Before `configure` there is none, which
        /// only a host breaking the contract can cause: trap with the reason.
        pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
            let plugin = self.0.borrow();
            match plugin.as_ref() {
                Some(plugin) => f(plugin),
                None => panic!("gale-plugin: a hook was called before `configure`"),
            }
        }
    }

    impl<T> Default for Slot<T> {
        fn default() -> Self {
            Self::new()
        }
    }
}

/// Generates this crate's bindings (the callback of `__with_wit!`).
#[doc(hidden)]
#[macro_export]
macro_rules! __private_generate_types {
    ($wit:tt) => {
        ::wit_bindgen::generate!({
            inline: $wit,
            // The world only brings `types` and `host` in; its exports are
            // never used here (each plugin's glue has its own), and with
            // `pub_export_macro` this crate's type section lists imports
            // only, so it adds no export to any component.
            world: "gale:plugin/memoizable-header-policy",
            pub_export_macro: true,
            export_macro_name: "__gale_plugin_unused_export",
            default_bindings_module: "gale_plugin::__private::unused",
            additional_derives: [PartialEq, Eq],
        });
    };
}

/// The callback of `__with_wit!` that gives the text itself.
#[doc(hidden)]
#[macro_export]
macro_rules! __private_wit_text {
    ($wit:tt) => {
        $wit
    };
}

/// The embedded WIT package `gale:plugin`, as one document: what every
/// plugin's glue is generated from.
pub const WIT: &str = __with_wit!(__private_wit_text);

#[cfg(test)]
mod tests {
    /// The embedded package is the repository's `wit/` (when this crate is
    /// built inside the repository; a packaged copy has no `wit/` next to it).
    #[test]
    fn embedded_wit_matches_the_repository() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
        if !root.is_dir() {
            return;
        }
        let mut want = String::from("package gale:plugin@0.1.0;\n");
        for world in ["types", "header-policy", "cache-policy", "upload-fields"] {
            let text = std::fs::read_to_string(root.join(format!("{world}.wit"))).expect("readable wit file");
            text.lines().filter(|l| !l.starts_with("package ")).for_each(|l| {
                want.push_str(l);
                want.push('\n');
            });
        }
        assert!(super::WIT == want, "src/wit.rs differs from wit/: run plugins/gale-plugin/sync-wit.sh");
    }
}
