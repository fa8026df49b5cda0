//! Traps in on-request: the host must discard the instance and go on.
//!
//! Test fixture for gale's plugin runtime, never for production. Config:
//! `{ path_prefix = "/x" }` limits the misbehaviour to matching paths
//! (default: every request); other requests continue with the header
//! `x-fixture: test-trap`, so a test can see the plugin recover.

use gale_plugin::{Decision, HeaderOp, HeaderPolicy, RequestHead};

#[derive(serde::Deserialize)]
struct Fixture {
    #[serde(default)]
    path_prefix: String,
}

impl HeaderPolicy for Fixture {
    type Config = Self;
    fn new(config: Self) -> Result<Self, String> {
        Ok(config)
    }

    fn on_request(&self, head: &RequestHead) -> Decision {
        if head.path.starts_with(&self.path_prefix) {
            // With `panic = "abort"` a panic is a wasm trap.
            panic!("test-trap: trapping on purpose");
        }
        Decision::Continue(vec![HeaderOp::set("x-fixture", "test-trap")])
    }
}

gale_plugin::header_policy!(Fixture);
