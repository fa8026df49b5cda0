//! Where the things under test live: the repo, the `gale` binary, the venv's Python.
//!
//! Each can be overridden by an environment variable so CI or a developer can point the suite
//! at another build (`GALE_BIN`) or interpreter (`GALE_PYTHON`).

use std::path::{Path, PathBuf};

/// The repository root (this crate lives in `<repo>/tests`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The `gale` binary: `$GALE_BIN`, else `debug/gale` in cargo's target dir.
///
/// The harness runs the binary that `scripts/test.sh` built just before; it does not build it
/// itself (a test binary cannot depend on another package's binary in cargo).
pub fn gale_bin() -> PathBuf {
    let path = match std::env::var_os("GALE_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => {
            let target =
                std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"));
            repo_root().join(target).join("debug").join("gale")
        }
    };
    assert!(
        path.is_file(),
        "the gale binary {} does not exist: run `cargo build -p gale` (scripts/test.sh does) \
         or set GALE_BIN",
        path.display()
    );
    path
}

/// The Python that has Tornado: `$GALE_PYTHON`, else `<repo>/.venv/bin/python`.
pub fn python() -> PathBuf {
    let path = std::env::var_os("GALE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv").join("bin").join("python"));
    assert!(path.exists(), "no Python with Tornado at {}: run scripts/setup.sh (or set GALE_PYTHON)", path.display());
    path
}

/// The demo and test backend.
pub fn tornado_app() -> PathBuf {
    repo_root().join("tests").join("tornado").join("app.py")
}
