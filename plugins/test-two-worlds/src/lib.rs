//! A component that exports the hooks of two gale worlds (`header-hooks`
//! and `cache-hooks`). The gale-plugin SDK cannot make one (one macro, one
//! world), so this is written on wit-bindgen directly. gale must refuse it,
//! naming both worlds, in `gale check`, `gale run` and `gale plugins build`.
//!
//! Test fixture for gale, never for production.

// The generated glue exports raw C-ABI functions, which needs `unsafe`.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        path: ["../../wit", "two-worlds.wit"],
        world: "test:two-worlds/two-worlds",
        generate_all,
    });
    use super::Fixture;
    export!(Fixture with_types_in crate::bindings);
}

use bindings::exports::gale::plugin::cache_hooks::{self, CacheDecision, FileInfo};
use bindings::exports::gale::plugin::header_hooks::{self, RequestDecision};
use bindings::gale::plugin::types::{HeaderOp, RequestHead, ResponseHead};

struct Fixture;

impl header_hooks::Guest for Fixture {
    fn configure(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn on_request(_head: RequestHead) -> RequestDecision {
        RequestDecision::Continue(Vec::new())
    }

    fn on_response(_head: RequestHead, _response: ResponseHead) -> Vec<HeaderOp> {
        Vec::new()
    }
}

impl cache_hooks::Guest for Fixture {
    fn configure(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn decide(_request: RequestHead, _file: FileInfo) -> CacheDecision {
        CacheDecision { cache_control: None, expires: None }
    }
}
