//! Loops forever in on-request: the epoch deadline must cut it off.
//!
//! Test fixture for gale's plugin runtime, never for production. Config:
//! `{ path_prefix = "/x" }` limits the misbehaviour to matching paths
//! (default: every request); other requests continue with the header
//! `x-fixture: test-loop`, so a test can see the plugin recover.
//! `{ sleep = true }` sleeps for an hour instead of spinning: parked in a
//! host call, where the epoch cannot reach it, so gale's host deadline must.

use std::cell::{Cell, RefCell};

// The generated glue exports raw C-ABI functions, which needs `unsafe`.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "gale:plugin/header-policy" });
    use super::Fixture;
    export!(Fixture with_types_in crate::bindings);
}

use bindings::exports::gale::plugin::header_hooks::{Guest, RequestDecision};
use bindings::gale::plugin::types::{Header, HeaderOp, RequestHead, ResponseHead};

thread_local! {
    static PREFIX: RefCell<String> = RefCell::new("/".to_string());
    static SLEEP: Cell<bool> = const { Cell::new(false) };
}

struct Fixture;

impl Guest for Fixture {
    fn configure(config: String) -> Result<(), String> {
        let value: serde_json::Value = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        if let Some(prefix) = value.get("path_prefix") {
            let prefix = prefix.as_str().ok_or("path_prefix must be a string")?;
            PREFIX.with(|p| *p.borrow_mut() = prefix.to_string());
        }
        if let Some(sleep) = value.get("sleep") {
            SLEEP.set(sleep.as_bool().ok_or("sleep must be a boolean")?);
        }
        Ok(())
    }

    fn on_request(head: RequestHead) -> RequestDecision {
        if PREFIX.with(|p| head.path.starts_with(p.borrow().as_str())) {
            misbehave();
        }
        RequestDecision::Continue(vec![HeaderOp::Set(Header {
            name: "x-fixture".into(),
            value: b"test-loop".to_vec(),
        })])
    }

    fn on_response(_head: RequestHead, _response: ResponseHead) -> Vec<HeaderOp> {
        Vec::new()
    }
}

/// Spins (or sleeps) without end; only the host's deadline stops it.
fn misbehave() {
    if SLEEP.get() {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
