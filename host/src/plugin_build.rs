//! `gale plugins build [DIR] [--install PLUGIN_DIR]`: builds a plugin crate
//! into its component with cargo (release, `wasm32-wasip2`), then checks the
//! component the way `gale run` will load it, before anyone attaches it:
//! the one world it exports (read from its exports), what it declares with
//! its default config (`NAME.toml` beside `Cargo.toml`), its size. With
//! `--install`, copies the component and its default config into a plugin
//! directory under the plugin's name.
//!
//! Exit status: 0 built and checked; 1 cargo failed, or the component is
//! not exactly one gale world, or it rejects its default config; 2 nothing
//! to build (no `Cargo.toml`, cargo not found, no component produced).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use crate::plugin::{LoadedPlugin, PluginError, PluginRuntime, RuntimeOptions};

/// The Rust target plugins are built for.
pub const TARGET: &str = "wasm32-wasip2";

/// `gale plugins build`'s arguments.
#[derive(Debug)]
pub struct BuildArgs {
    /// The plugin crate (holds `Cargo.toml`).
    pub dir: PathBuf,
    /// A plugin directory to copy the component (and `NAME.toml`) into.
    pub install: Option<PathBuf>,
}

/// Why nothing could be built or checked.
#[derive(Debug)]
enum Failure {
    /// Nothing to build: exit 2.
    Setup(String),
    /// Built but refused, or cargo failed: exit 1.
    Refused(String),
}

/// `gale plugins build`.
pub fn run(args: &BuildArgs) -> ExitCode {
    match build(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Setup(message)) => {
            eprintln!("gale: error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Refused(message)) => {
            eprintln!("gale: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn build(args: &BuildArgs) -> Result<(), Failure> {
    let manifest = args.dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(Failure::Setup(format!(
            "{}: no Cargo.toml here: give the plugin crate's folder (`gale plugins new` makes one)",
            args.dir.display()
        )));
    }
    let name = package_name(&manifest)?;
    let wasm = cargo_build(&manifest)?;
    let size = std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0);
    println!("built {} ({})", shown(&wasm), kib(size));
    let defaults = args.dir.join(format!("{name}.toml"));
    let config = read_defaults(&defaults)?;
    let loaded = check(&wasm, &config).map_err(|e| {
        let (dir, stem) = split(&wasm);
        let config = config.clone().unwrap_or_default();
        Failure::Refused(crate::plugin_runner::load_error(dir, stem, &e, &config))
    })?;
    let exports = loaded.1;
    println!("world: {} (exports {})", exports.variant, exports.names.join(", "));
    for line in loaded.0.declarations() {
        println!("  {line}");
    }
    match &config {
        Some(_) => println!("default config {}: accepted", shown(&defaults)),
        None => println!("default config: none ({} not found; the plugin accepted an empty config)", shown(&defaults)),
    }
    if let Some(plugin_dir) = &args.install {
        install(&wasm, config.is_some().then_some(defaults.as_path()), plugin_dir, &name)?;
    }
    Ok(())
}

/// The package's name in `manifest`, which is the plugin's name.
fn package_name(manifest: &Path) -> Result<String, Failure> {
    let text = std::fs::read_to_string(manifest).map_err(|e| Failure::Setup(format!("{}: {e}", manifest.display())))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| Failure::Setup(format!("{}: {}", manifest.display(), one_line(e.message()))))?;
    table
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(toml::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| Failure::Setup(format!("{}: no [package] name: not a plugin crate", manifest.display())))
}

/// Runs cargo; its progress and diagnostics go to our stderr as they come,
/// its JSON messages are read for the component's path.
fn cargo_build(manifest: &Path) -> Result<PathBuf, Failure> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child = Command::new(&cargo)
        .args(["build", "--release", "--target", TARGET, "--message-format=json-render-diagnostics", "--manifest-path"])
        .arg(manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            Failure::Setup(format!("cannot run {}: {e} (is the Rust toolchain installed?)", cargo.display()))
        })?;
    let wanted = std::fs::canonicalize(manifest).unwrap_or_else(|_| manifest.to_owned());
    let mut built = None;
    if let Some(out) = child.stdout.take() {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(b) = artifact(&line, &wanted) {
                built = Some(b);
            }
        }
    }
    let status = child.wait().map_err(|e| Failure::Setup(format!("cargo: {e}")))?;
    if !status.success() {
        return Err(Failure::Refused(format!(
            "cargo build failed (its messages are above); the target is installed with `rustup target add {TARGET}`"
        )));
    }
    built.ok_or_else(|| {
        Failure::Setup(format!(
            "{}: cargo built no component: the crate needs `[lib] crate-type = [\"cdylib\"]`",
            manifest.display()
        ))
    })
}

/// The component in one line of cargo's JSON output, when the line is the
/// artifact of the crate at `manifest`.
fn artifact(line: &str, manifest: &Path) -> Option<PathBuf> {
    let msg: serde_json::Value = serde_json::from_str(line).ok()?;
    if msg.get("reason")?.as_str()? != "compiler-artifact" {
        return None;
    }
    let path = Path::new(msg.get("manifest_path")?.as_str()?);
    if std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()) != manifest {
        return None;
    }
    let wasm = msg.get("filenames")?.as_array()?.iter().filter_map(|f| f.as_str()).find(|f| f.ends_with(".wasm"))?;
    Some(PathBuf::from(wasm))
}

fn read_defaults(path: &Path) -> Result<Option<toml::Table>, Failure> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Failure::Setup(format!("{}: {e}", path.display()))),
    };
    text.parse::<toml::Table>()
        .map(Some)
        .map_err(|e| Failure::Refused(format!("{}: not a TOML table: {}", path.display(), one_line(e.message()))))
}

/// Loads the component as `gale run` would: world from its exports, then
/// `configure` with the default config.
fn check(wasm: &Path, config: &Option<toml::Table>) -> Result<(LoadedPlugin, crate::plugin::Exports), PluginError> {
    let (dir, name) = split(wasm);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| PluginError::Engine { message: format!("cannot start the runtime: {e}") })?;
    rt.block_on(async {
        let runtime = PluginRuntime::new(RuntimeOptions::default())?;
        inspect(&runtime, dir, name, &config.clone().unwrap_or_default()).await
    })
}

/// Plugin `name` of `dir` loaded as `gale run` loads it, under the default
/// limits: the world its exports name, then `configure` with `config`
/// (merged over NAME.toml beside it). Also what `gale plugins list` shows.
pub(crate) async fn inspect(
    runtime: &PluginRuntime,
    dir: &Path,
    name: &str,
    config: &toml::Table,
) -> Result<(LoadedPlugin, crate::plugin::Exports), PluginError> {
    let exports = runtime.exports(dir, name)?;
    let limits = crate::plugin_runner::default_settings(dir).limits;
    let loaded = runtime.load_any(dir, name, config, limits).await?;
    Ok((loaded, exports))
}

/// The plugin directory and name a `.wasm` file is loaded by.
fn split(wasm: &Path) -> (&Path, &str) {
    let dir = wasm.parent().unwrap_or(Path::new("."));
    (dir, wasm.file_stem().and_then(|s| s.to_str()).unwrap_or_default())
}

fn install(wasm: &Path, defaults: Option<&Path>, plugin_dir: &Path, name: &str) -> Result<(), Failure> {
    let fail = |what: &Path, e: std::io::Error| Failure::Setup(format!("cannot install into {}: {e}", what.display()));
    std::fs::create_dir_all(plugin_dir).map_err(|e| fail(plugin_dir, e))?;
    let to = plugin_dir.join(format!("{name}.wasm"));
    std::fs::copy(wasm, &to).map_err(|e| fail(&to, e))?;
    println!("installed {}", to.display());
    if let Some(defaults) = defaults {
        let to = plugin_dir.join(format!("{name}.toml"));
        std::fs::copy(defaults, &to).map_err(|e| fail(&to, e))?;
        println!("installed {}", to.display());
    }
    Ok(())
}

/// A path relative to the working directory when it is below it.
fn shown(path: &Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    let path = path.strip_prefix(&cwd).unwrap_or(path);
    path.strip_prefix(".").unwrap_or(path).display().to_string()
}

pub(crate) fn kib(bytes: u64) -> String {
    if bytes < 1024 { format!("{bytes} bytes") } else { format!("{:.0} KiB", bytes as f64 / 1024.0) }
}

fn one_line(message: &str) -> String {
    crate::plugin_runner::one_line(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_component_is_read_from_cargos_message_for_this_crate_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let manifest = dir.path().join("Cargo.toml");
        std::fs::write(&manifest, "").expect("write");
        let manifest = std::fs::canonicalize(&manifest).expect("canonical");
        let line = |path: &Path, file: &str| {
            serde_json::json!({
                "reason": "compiler-artifact",
                "manifest_path": path,
                "target": { "name": "my-tagger", "kind": ["cdylib"] },
                "filenames": [file],
            })
            .to_string()
        };
        let built = artifact(&line(&manifest, "/t/my_tagger.wasm"), &manifest).expect("ours");
        assert_eq!(built, Path::new("/t/my_tagger.wasm"));
        assert!(artifact(&line(Path::new("/elsewhere/Cargo.toml"), "/t/dep.wasm"), &manifest).is_none(), "a dep");
        assert!(artifact(&line(&manifest, "/t/libmy_tagger.rlib"), &manifest).is_none(), "not a component");
        assert!(artifact("not json", &manifest).is_none());
        assert!(artifact(r#"{"reason":"build-finished","success":true}"#, &manifest).is_none());
    }
}
