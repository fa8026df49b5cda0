//! A cache policy that misbehaves on purpose in `decide`, for the files
//! under a path prefix: it spins (`mode = "spin"`, the epoch deadline must
//! cut it off) or panics (`mode = "trap"`).
//!
//! Test fixture for gale's plugin runtime, never for production. Config:
//! `{ mode = "spin" | "trap", path_prefix = "/x" }` (defaults: `spin`, every
//! file). Other files get `cache-control: max-age=60, test-cache-fault`, so a
//! test can see the plugin answer.

use std::cell::{Cell, RefCell};

// The generated glue exports raw C-ABI functions, which needs `unsafe`.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "gale:plugin/cache-policy" });
    use super::Fixture;
    export!(Fixture with_types_in crate::bindings);
}

use bindings::exports::gale::plugin::cache_hooks::{CacheDecision, FileInfo, Guest};
use bindings::gale::plugin::types::RequestHead;

thread_local! {
    static PREFIX: RefCell<String> = RefCell::new("/".to_string());
    static TRAP: Cell<bool> = const { Cell::new(false) };
}

struct Fixture;

impl Guest for Fixture {
    fn configure(config: String) -> Result<(), String> {
        let value: serde_json::Value = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        if let Some(prefix) = value.get("path_prefix") {
            let prefix = prefix.as_str().ok_or("path_prefix must be a string")?;
            PREFIX.with(|p| *p.borrow_mut() = prefix.to_string());
        }
        match value.get("mode").map(|m| m.as_str()) {
            None | Some(Some("spin")) => TRAP.set(false),
            Some(Some("trap")) => TRAP.set(true),
            _ => return Err("mode must be \"spin\" or \"trap\"".into()),
        }
        Ok(())
    }

    fn decide(_request: RequestHead, file: FileInfo) -> CacheDecision {
        if PREFIX.with(|p| file.path.starts_with(p.borrow().as_str())) {
            misbehave();
        }
        CacheDecision { cache_control: Some("max-age=60, test-cache-fault".into()), expires: None }
    }
}

/// Panics, or spins without end: only the host's deadline stops it.
fn misbehave() {
    if TRAP.get() {
        panic!("test-cache-fault: trapping on purpose");
    }
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
