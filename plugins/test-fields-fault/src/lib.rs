//! An upload-fields policy that misbehaves on purpose in `text-field` and
//! `file-fields`, for the field names under a prefix: it spins
//! (`mode = "spin"`, the epoch deadline must cut it off) or panics
//! (`mode = "trap"`).
//!
//! Test fixture for gale's plugin runtime, never for production. Config:
//! `{ mode = "spin" | "trap", name_prefix = "bad" }` (defaults: `spin`, every
//! field). Other text fields pass; another file is replaced by one field
//! `<field>_fixture` = `test-fields-fault`, so a test can see the plugin
//! answer.

use std::cell::{Cell, RefCell};

// The generated glue exports raw C-ABI functions, which needs `unsafe`.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "gale:plugin/upload-fields" });
    use super::Fixture;
    export!(Fixture with_types_in crate::bindings);
}

use bindings::exports::gale::plugin::upload_hooks::{FormField, Guest, StoredFile, TextDecision};

thread_local! {
    static PREFIX: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static TRAP: Cell<bool> = const { Cell::new(false) };
}

struct Fixture;

impl Guest for Fixture {
    fn configure(config: String) -> Result<(), String> {
        let value: serde_json::Value = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        if let Some(prefix) = value.get("name_prefix") {
            let prefix = prefix.as_str().ok_or("name_prefix must be a string")?;
            PREFIX.with(|p| *p.borrow_mut() = prefix.as_bytes().to_vec());
        }
        match value.get("mode").map(|m| m.as_str()) {
            None | Some(Some("spin")) => TRAP.set(false),
            Some(Some("trap")) => TRAP.set(true),
            _ => return Err("mode must be \"spin\" or \"trap\"".into()),
        }
        Ok(())
    }

    fn needs_sha256() -> bool {
        false
    }

    fn text_field(name: Vec<u8>) -> TextDecision {
        check(&name);
        TextDecision::Pass
    }

    fn file_fields(file: StoredFile) -> Vec<FormField> {
        check(&file.field_name);
        let mut name = file.field_name;
        name.extend_from_slice(b"_fixture");
        vec![FormField { name, value: b"test-fields-fault".to_vec() }]
    }
}

/// Misbehaves when `name` starts with the configured prefix.
fn check(name: &[u8]) {
    if PREFIX.with(|p| name.starts_with(&p.borrow())) {
        misbehave();
    }
}

/// Panics, or spins without end: only the host's deadline stops it.
fn misbehave() {
    if TRAP.get() {
        panic!("test-fields-fault: trapping on purpose");
    }
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
