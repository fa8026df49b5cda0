//! Loops forever in on-request: the epoch deadline must cut it off.
//!
//! Test fixture for gale's plugin runtime, never for production. Config:
//! `{ path_prefix = "/x" }` limits the misbehaviour to matching paths
//! (default: every request); other requests continue with the header
//! `x-fixture: test-loop`, so a test can see the plugin recover.
//! `{ sleep = true }` sleeps for an hour instead of spinning: parked in a
//! host call, where the epoch cannot reach it, so gale's host deadline must.

use gale_plugin::{Decision, HeaderOp, HeaderPolicy, RequestHead};

#[derive(serde::Deserialize)]
struct Fixture {
    #[serde(default)]
    path_prefix: String,
    #[serde(default)]
    sleep: bool,
}

impl HeaderPolicy for Fixture {
    type Config = Self;
    fn new(config: Self) -> Result<Self, String> {
        Ok(config)
    }

    fn on_request(&self, head: &RequestHead) -> Decision {
        if head.path.starts_with(&self.path_prefix) {
            // Spins (or sleeps) without end; only the host's deadline stops it.
            if self.sleep {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Decision::Continue(vec![HeaderOp::set("x-fixture", "test-loop")])
    }
}

gale_plugin::header_policy!(Fixture);
