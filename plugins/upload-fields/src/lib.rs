//! gale's bundled upload field policy: nginx-upload-module's `upload_set_form_field`,
//! `upload_aggregate_form_field` and `upload_pass_form_field`, with the seed's configuration as
//! the default, and client fields forged to look generated (`file.path`) refused (D2).
//!
//! Config: `{ set = ["name", "content_type", "path"], aggregate = ["md5", "size"],
//! pass_fields = ["somearg"], anchored = false, allow_generated_names = false }` (the default).
//! See `docs/uploads.md`.

mod policy;

use std::cell::RefCell;

/// The guest side of the WIT package (the one `generate!` of this crate).
// The generated glue exports raw C-ABI functions, which needs `unsafe`.
#[allow(unsafe_code)]
pub(crate) mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "gale:plugin/upload-fields",
        // Fields are compared in tests.
        additional_derives: [PartialEq, Eq],
    });
    use super::UploadFields;
    export!(UploadFields with_types_in crate::bindings);
}

use bindings::exports::gale::plugin::upload_hooks::{FormField, Guest, StoredFile, TextDecision};
use bindings::gale::plugin::host::{self, LogLevel};
use policy::{Policy, Text};

thread_local! {
    /// Set by `configure`; a wasm instance is single-threaded.
    static POLICY: RefCell<Option<Policy>> = const { RefCell::new(None) };
}

/// Runs `f` with the configured policy (the seed's before `configure`, which gale always calls
/// first).
fn with_policy<T>(f: impl FnOnce(&Policy) -> T) -> T {
    POLICY.with(|p| {
        let mut p = p.borrow_mut();
        f(p.get_or_insert_with(Policy::seed))
    })
}

struct UploadFields;

impl Guest for UploadFields {
    fn configure(config: String) -> Result<(), String> {
        let policy = policy::parse(&config)?;
        POLICY.with(|p| *p.borrow_mut() = Some(policy));
        Ok(())
    }

    fn needs_sha256() -> bool {
        with_policy(Policy::needs_sha256)
    }

    fn text_field(name: Vec<u8>) -> TextDecision {
        match with_policy(|p| p.text(&name)) {
            Text::Pass => TextDecision::Pass,
            Text::Drop => TextDecision::Drop,
            Text::Forged => {
                host::counter_add("forged_names_dropped", 1);
                host::log(
                    LogLevel::Warn,
                    &format!(
                        "dropped a client field named like a generated upload field (D2): {}",
                        String::from_utf8_lossy(&name)
                    ),
                );
                TextDecision::Drop
            }
        }
    }

    fn file_fields(file: StoredFile) -> Vec<FormField> {
        with_policy(|p| p.fields_for(&file))
    }
}
