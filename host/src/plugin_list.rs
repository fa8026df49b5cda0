//! `gale plugins list`: what a plugin directory holds, each component
//! loaded as `gale run` would load it (`plugin_build::inspect`): its name
//! as a config attaches it, file and size, the world its exports name, and
//! what its hooks declare under its default config (NAME.toml beside it).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::plugin::{PluginRuntime, RuntimeOptions, plugin_key};
use crate::plugin_build::{inspect, kib};

/// `gale plugins list [--plugin-dir DIR]`: exits 0, 1 when a component is
/// refused (listed with the reason), 2 when the directory cannot be read.
pub fn run(plugin_dir: Option<PathBuf>) -> ExitCode {
    let dir = plugin_dir.unwrap_or_else(|| PathBuf::from("plugins"));
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
            .collect(),
        Err(e) => {
            eprintln!("gale: error: cannot read the plugin directory {}: {e}", dir.display());
            return ExitCode::from(2);
        }
    };
    files.sort();
    if files.is_empty() {
        println!("{}: no plugins (no .wasm file)", dir.display());
        return ExitCode::SUCCESS;
    }
    println!("{}: {} {}", dir.display(), files.len(), if files.len() == 1 { "plugin" } else { "plugins" });
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let Ok(rt) = runtime else {
        eprintln!("gale: error: cannot start the runtime");
        return ExitCode::from(2);
    };
    let all_loaded = rt.block_on(async {
        let runtime = match PluginRuntime::new(RuntimeOptions::default()) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("gale: error: cannot start the plugin runtime: {e}");
                return false;
            }
        };
        let mut all = true;
        for file in &files {
            all &= show(&runtime, &dir, file).await;
        }
        all
    });
    if all_loaded { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Prints one component; false if it was refused.
async fn show(runtime: &PluginRuntime, dir: &Path, file: &Path) -> bool {
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let file_name = file.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let defaults = dir.join(format!("{stem}.toml"));
    let name = plugin_key(stem);
    match inspect(runtime, dir, stem, &toml::Table::new()).await {
        Ok((loaded, exports)) => {
            println!("{name}: {file_name}, {}, world {}", kib(size), exports.variant);
            for line in loaded.declarations() {
                println!("  {line}");
            }
            if defaults.is_file() {
                println!("  default config: {}", defaults.display());
            } else {
                println!("  default config: none");
            }
            true
        }
        Err(e) => {
            let message = crate::plugin_runner::one_line(&e.to_string());
            println!("{name}: {file_name}, {}, refused: {message}", kib(size));
            false
        }
    }
}
