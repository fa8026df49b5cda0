//! Grows its memory in on-request until the host's memory limit stops it.
//!
//! Test fixture for gale's plugin runtime, never for production. Config:
//! `{ path_prefix = "/x" }` limits the misbehaviour to matching paths
//! (default: every request); other requests continue with the header
//! `x-fixture: test-oom`, so a test can see the plugin recover.

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
            // Allocates and touches 1 MiB blocks until growing memory fails.
            let mut blocks: Vec<Vec<u8>> = Vec::new();
            loop {
                blocks.push(std::hint::black_box(vec![1u8; 1 << 20]));
            }
        }
        Decision::Continue(vec![HeaderOp::set("x-fixture", "test-oom")])
    }
}

gale_plugin::header_policy!(Fixture);
