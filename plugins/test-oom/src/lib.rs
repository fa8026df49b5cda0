//! Grows its memory in on-request until the host's memory limit stops it.
//!
//! Test fixture for gale's plugin runtime, never for production. Config:
//! `{ path_prefix = "/x" }` limits the misbehaviour to matching paths
//! (default: every request); other requests continue with the header
//! `x-fixture: test-oom`, so a test can see the plugin recover.

use std::cell::RefCell;

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
}

struct Fixture;

impl Guest for Fixture {
    fn configure(config: String) -> Result<(), String> {
        let value: serde_json::Value = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        if let Some(prefix) = value.get("path_prefix") {
            let prefix = prefix.as_str().ok_or("path_prefix must be a string")?;
            PREFIX.with(|p| *p.borrow_mut() = prefix.to_string());
        }
        Ok(())
    }

    fn on_request(head: RequestHead) -> RequestDecision {
        if PREFIX.with(|p| head.path.starts_with(p.borrow().as_str())) {
            misbehave();
        }
        RequestDecision::Continue(vec![HeaderOp::Set(Header { name: "x-fixture".into(), value: b"test-oom".to_vec() })])
    }

    fn on_response(_head: RequestHead, _response: ResponseHead) -> Vec<HeaderOp> {
        Vec::new()
    }
}

/// Allocates and touches 1 MiB blocks until growing memory fails.
fn misbehave() {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(std::hint::black_box(vec![1u8; 1 << 20]));
    }
}
