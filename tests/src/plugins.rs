//! The WebAssembly plugins under test and the config pieces that attach them.
//!
//! The components are built by `scripts/build-plugins.sh` into `<repo>/target/plugins/`
//! (whatever `CARGO_TARGET_DIR` says); the harness does not build them itself, as it does not
//! build the `gale` binary. `$GALE_PLUGINS` points the suite at another folder.

use std::path::{Path, PathBuf};

use crate::config::ConfigBuilder;
use crate::paths;

/// The bundled header policy (the crate `header-policy`).
pub const HEADER_POLICY: &str = "header_policy.wasm";
/// Spins forever in `on-request`.
pub const TEST_LOOP: &str = "test_loop.wasm";
/// Panics (a trap) in `on-request`.
pub const TEST_TRAP: &str = "test_trap.wasm";
/// Allocates until stopped in `on-request`.
pub const TEST_OOM: &str = "test_oom.wasm";
/// Declares (`hook-inputs`) that its hooks read no header, yet reads `user-agent`.
pub const TEST_UNDECLARED: &str = "test_undeclared.wasm";

/// The SDK's example (`plugins/gale-plugin/examples/tagger.rs`): tags responses, denies
/// banned user agents.
pub const TAGGER: &str = "tagger.wasm";

/// Every component the plugin tests need.
pub const ALL: [&str; 6] = [HEADER_POLICY, TEST_LOOP, TEST_TRAP, TEST_OOM, TAGGER, TEST_UNDECLARED];

/// The hook time limit the tests use unless they are about the limit: generous, so a loaded
/// machine that deschedules gale for a while does not turn a good plugin into a 503.
pub const HOOK_TIMEOUT: &str = "200ms";

/// The folder holding the built components: `$GALE_PLUGINS`, else `<repo>/target/plugins`.
/// Panics, saying how to build them, when one of [`ALL`] is missing.
#[track_caller]
pub fn built_dir() -> PathBuf {
    let dir = std::env::var_os("GALE_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| paths::repo_root().join("target").join("plugins"));
    let missing: Vec<&str> = ALL.iter().copied().filter(|f| !dir.join(f).is_file()).collect();
    assert!(
        missing.is_empty(),
        "the plugin components {missing:?} are missing from {}: run scripts/build-plugins.sh \
         (or set GALE_PLUGINS)",
        dir.display()
    );
    dir
}

/// The path of one built component (`HEADER_POLICY`, `TEST_TRAP`, ...).
#[track_caller]
pub fn wasm(file: &str) -> PathBuf {
    built_dir().join(file)
}

/// Sets the `[global]` plugin keys: components from `plugin_dir`, compiled ones cached in
/// `plugin-cache` beside the config (a fresh temporary folder per gale), 16M of memory and
/// [`HOOK_TIMEOUT`] per hook call.
pub fn enable(builder: ConfigBuilder, plugin_dir: &Path) -> ConfigBuilder {
    builder
        .global("plugin_dir", plugin_dir.to_str().expect("utf-8 plugin dir"))
        .global("plugin_cache_dir", "plugin-cache")
        .global("plugin_memory", "16M")
        .global("plugin_hook_timeout", HOOK_TIMEOUT)
}

/// Attaches `plugins` (the TOML array, e.g. `["header-policy"]`) to the `location /` that
/// [`ConfigBuilder::render`] writes last.
#[track_caller]
pub fn on_root(rendered: &str, plugins: &str) -> String {
    let root = "[[server.location]]\npath = \"/\"\nproxy = { pass = \"tornadoes\" }\n";
    assert!(rendered.ends_with(root), "the rendered config does not end with `location /`:\n{rendered}");
    format!("{rendered}plugins = {}\n", plugins.trim())
}
