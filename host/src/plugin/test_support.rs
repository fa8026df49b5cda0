//! What the plugin tests share: the built guests, a runtime, relaxed limits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Limits, PluginRuntime, RuntimeOptions};

/// `<repo>/target/plugins`, which must hold the guests `wasm` names (file
/// stems, e.g. `header_policy`), built by `scripts/build-plugins.sh`.
pub(crate) fn plugins_dir(wasm: &[&str]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
    for stem in wasm {
        let file = dir.join(format!("{stem}.wasm"));
        assert!(file.is_file(), "{} is missing: run scripts/build-plugins.sh first", file.display());
    }
    dir
}

/// A runtime whose compile cache is `cache`.
pub(crate) fn runtime(cache: &Path) -> PluginRuntime {
    PluginRuntime::new(RuntimeOptions { cache_dir: Some(cache.to_owned()), ..Default::default() })
        .expect("runtime starts")
}

/// Default limits with a long hook deadline. Deadlines are wall-clock: on a
/// loaded test machine a descheduled thread can overrun 10 ms, and only the
/// timeout tests are about timing.
pub(crate) fn relaxed() -> Limits {
    Limits { timeout: Duration::from_secs(2), ..Limits::default() }
}

/// A TOML table from text.
pub(crate) fn table(text: &str) -> toml::Table {
    text.parse().expect("valid toml")
}
