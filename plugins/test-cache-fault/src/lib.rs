//! A cache policy that misbehaves on purpose in `decide`, for the files
//! under a path prefix: it spins (`mode = "spin"`, the epoch deadline must
//! cut it off) or panics (`mode = "trap"`).
//!
//! Test fixture for gale's plugin runtime, never for production. Config:
//! `{ mode = "spin" | "trap", path_prefix = "/x" }` (defaults: `spin`, every
//! file; a prefix not starting with `/` is rejected without naming a key).
//! Other files get `cache-control: max-age=60, test-cache-fault`, so a test
//! can see the plugin answer.

use gale_plugin::{CacheDecision, CachePolicy, FileInfo, RequestHead};

#[derive(serde::Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Mode {
    #[default]
    Spin,
    Trap,
}

#[derive(serde::Deserialize)]
struct Fixture {
    #[serde(default = "every_file")]
    path_prefix: String,
    #[serde(default)]
    mode: Mode,
}

fn every_file() -> String {
    "/".into()
}

impl CachePolicy for Fixture {
    type Config = Self;
    fn new(config: Self) -> Result<Self, String> {
        if !config.path_prefix.starts_with('/') {
            return Err("the prefix must start with `/`".into());
        }
        Ok(config)
    }

    fn decide(&self, _: &RequestHead, file: &FileInfo) -> CacheDecision {
        if file.path.starts_with(&self.path_prefix) {
            misbehave(self.mode);
        }
        CacheDecision { cache_control: Some("max-age=60, test-cache-fault".into()), expires: None }
    }
}

gale_plugin::cache_policy!(Fixture);

/// Panics, or spins without end: only the host's deadline stops it.
fn misbehave(mode: Mode) {
    if let Mode::Trap = mode {
        panic!("test-cache-fault: trapping on purpose");
    }
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
