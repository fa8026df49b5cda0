//! `gale plugins new NAME --world WORLD [--dir DIR] [--sdk PATH]`: scaffolds
//! a standalone plugin crate on the SDK crate `gale-plugin`, one that builds
//! as it is outside this repository (its own empty `[workspace]`, the pinned
//! versions and the release profile of `plugins/Cargo.toml`).
//!
//! The templates are files in `plugin_new/templates/`, compiled in; the SDK
//! is not published yet, so the crate depends on it by path: `--sdk`, else
//! the copy in the source tree this binary was built from.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `gale plugins new` exits with this when it creates nothing: the same
/// "cannot run" status as `gale plugins call` and `test`.
const REFUSED: u8 = 2;

/// The SDK beside the sources gale was built from (`host/../plugins/gale-plugin`).
const BUILT_FROM_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/gale-plugin");

const CARGO_TOML: &str = include_str!("plugin_new/templates/Cargo.toml.tmpl");
const README: &str = include_str!("plugin_new/templates/README.md.tmpl");
const GITIGNORE: &str = include_str!("plugin_new/templates/gitignore.tmpl");

/// A world a crate can be scaffolded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    HeaderPolicy,
    CachePolicy,
    UploadFields,
}

impl World {
    const ALL: [World; 3] = [World::HeaderPolicy, World::CachePolicy, World::UploadFields];

    /// The WIT world's name, also the `--world` value.
    pub fn name(self) -> &'static str {
        match self {
            World::HeaderPolicy => "header-policy",
            World::CachePolicy => "cache-policy",
            World::UploadFields => "upload-fields",
        }
    }

    fn parse(text: &str) -> Result<World, NewError> {
        World::ALL.into_iter().find(|w| w.name() == text).ok_or_else(|| NewError::UnknownWorld(text.to_string()))
    }

    fn lib_rs(self) -> &'static str {
        match self {
            World::HeaderPolicy => include_str!("plugin_new/templates/header-policy.rs"),
            World::CachePolicy => include_str!("plugin_new/templates/cache-policy.rs"),
            World::UploadFields => include_str!("plugin_new/templates/upload-fields.rs"),
        }
    }

    fn default_config(self) -> &'static str {
        match self {
            World::HeaderPolicy => include_str!("plugin_new/templates/header-policy.toml"),
            World::CachePolicy => include_str!("plugin_new/templates/cache-policy.toml"),
            World::UploadFields => include_str!("plugin_new/templates/upload-fields.toml"),
        }
    }

    /// `cases.toml` for `gale plugins test`.
    fn cases(self) -> &'static str {
        match self {
            World::HeaderPolicy => include_str!("plugin_new/templates/header-policy.cases.toml"),
            World::CachePolicy => include_str!("plugin_new/templates/cache-policy.cases.toml"),
            World::UploadFields => include_str!("plugin_new/templates/upload-fields.cases.toml"),
        }
    }

    /// The README's lines for the world: a `gale plugins call` example,
    /// the kind of location, and an example of one.
    fn readme_parts(self) -> [(&'static str, &'static str); 4] {
        match self {
            World::HeaderPolicy => [
                ("{{call_example}}", "--request 'GET /' -H 'User-Agent: BadBot'"),
                ("{{location_kind}}", "a `proxy` (or `static`) location"),
                ("{{location_example}}", "path = \"/\"\nproxy = { pass = \"app\" }"),
                ("{{config_example}}", "tag = \"edge-1\""),
            ],
            World::CachePolicy => [
                ("{{call_example}}", "--request 'GET /app.css' --content-type text/css"),
                ("{{location_kind}}", "a `static` location"),
                ("{{location_example}}", "path = \"/static/\"\nstatic = { root = \"/var/www/static\" }"),
                ("{{config_example}}", "max_age = 3600"),
            ],
            World::UploadFields => [
                ("{{call_example}}", "--text-field title --file doc=notes.txt --file-size 3"),
                ("{{location_kind}}", "an `upload` location"),
                (
                    "{{location_example}}",
                    "path = \"/upload\"\nupload = { pass = \"app\", store = \"/var/spool/gale\" }",
                ),
                ("{{config_example}}", "pass = [\"title\"]"),
            ],
        }
    }
}

/// Where cargo puts the crate's component, relative to the crate.
fn artifact(name: &str) -> String {
    format!("target/wasm32-wasip2/release/{}.wasm", name.replace('-', "_"))
}

/// Why nothing was created; each is one line.
#[derive(Debug, thiserror::Error)]
pub enum NewError {
    #[error(
        "`{0}` is not a valid plugin name: use a lower-case ASCII letter, then letters, digits, `-` or `_` (at most 64)"
    )]
    BadName(String),
    #[error("`{0}` cannot be a plugin name: it is a Rust keyword or the name of a crate the plugin uses")]
    ReservedName(String),
    #[error("unknown world `{0}`: expected header-policy, cache-policy or upload-fields")]
    UnknownWorld(String),
    #[error("{0} already exists and is not an empty directory: choose another --dir")]
    Exists(PathBuf),
    #[error(
        "the SDK crate gale-plugin is not at {0}: give its folder (plugins/gale-plugin in gale's sources) with --sdk"
    )]
    NoSdk(PathBuf),
    #[error("the path {0} is not UTF-8, which Cargo.toml cannot hold")]
    NotUtf8(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// What `gale plugins new` was asked for.
pub struct NewArgs {
    pub name: String,
    pub world: String,
    /// The crate's folder (default: `./NAME`).
    pub dir: Option<PathBuf>,
    /// The SDK crate's folder (default: [`BUILT_FROM_SDK`]).
    pub sdk: Option<PathBuf>,
}

/// Runs `gale plugins new`: prints what it made and the next commands, or
/// one error line and exits 2.
pub fn run(args: NewArgs) -> ExitCode {
    match scaffold(&args) {
        Ok((dir, files)) => {
            let shown = dir.display();
            println!(
                "created the {} plugin `{}` in {shown}: {}",
                World::parse(&args.world).map_or("", World::name),
                args.name,
                files.join(", ")
            );
            println!(
                "next: cd {shown} && gale plugins build && gale plugins test {} (see README.md)",
                artifact(&args.name)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gale: error: {e}");
            ExitCode::from(REFUSED)
        }
    }
}

/// Writes the crate; returns its folder and the files written, in order.
/// Everything is checked before the first file is written.
pub fn scaffold(args: &NewArgs) -> Result<(PathBuf, Vec<String>), NewError> {
    check_name(&args.name)?;
    let world = World::parse(&args.world)?;
    let sdk = args.sdk.clone().unwrap_or_else(|| PathBuf::from(BUILT_FROM_SDK));
    let sdk = sdk_dir(&sdk)?;
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() && !is_empty_dir(&dir) {
        return Err(NewError::Exists(dir));
    }

    let files = render(&args.name, world, &sdk)?;
    let mut written = Vec::with_capacity(files.len());
    for (relative, text) in files {
        let path = dir.join(&relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| NewError::Write { path: parent.to_path_buf(), source })?;
        }
        std::fs::write(&path, text).map_err(|source| NewError::Write { path: path.clone(), source })?;
        written.push(relative);
    }
    Ok((dir, written))
}

/// The files of the crate, relative to its folder, with their text.
fn render(name: &str, world: World, sdk: &Path) -> Result<Vec<(String, String)>, NewError> {
    let sdk_text = sdk.to_str().ok_or_else(|| NewError::NotUtf8(sdk.to_path_buf()))?;
    // A TOML basic string, quoted and escaped by the toml crate.
    let sdk_toml = toml::Value::String(sdk_text.to_string()).to_string();
    let crate_name = name.replace('-', "_");
    let fill = |template: &str| {
        let mut text = template.to_string();
        for (key, value) in world.readme_parts() {
            text = text.replace(key, value);
        }
        text.replace("{{name}}", name)
            .replace("{{crate_name}}", &crate_name)
            .replace("{{world}}", world.name())
            .replace("{{sdk_path}}", &sdk_toml)
            .replace("{{sdk_display}}", sdk_text)
    };
    Ok(vec![
        ("Cargo.toml".to_string(), fill(CARGO_TOML)),
        ("src/lib.rs".to_string(), fill(world.lib_rs())),
        (format!("{name}.toml"), fill(world.default_config())),
        ("cases.toml".to_string(), fill(world.cases())),
        ("README.md".to_string(), fill(README)),
        (".gitignore".to_string(), fill(GITIGNORE)),
    ])
}

/// A crate name cargo accepts that is also a plugin name gale accepts, in
/// lower case so that the response header the example sets is its name.
fn check_name(name: &str) -> Result<(), NewError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !first_ok || !rest_ok || name.len() > 64 {
        return Err(NewError::BadName(name.to_string()));
    }
    if RESERVED.contains(&name.replace('-', "_").as_str()) {
        return Err(NewError::ReservedName(name.to_string()));
    }
    Ok(())
}

/// Names cargo refuses (keywords, the standard crates) and the plugin's own
/// dependencies, which a package of the same name would shadow.
const RESERVED: &[&str] = &[
    "abstract",
    "alloc",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "core",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gale_plugin",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "proc_macro",
    "pub",
    "ref",
    "return",
    "self",
    "serde",
    "static",
    "std",
    "struct",
    "super",
    "test",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
];

/// The SDK's folder, absolute (the generated crate may live anywhere).
fn sdk_dir(sdk: &Path) -> Result<PathBuf, NewError> {
    if !sdk.join("Cargo.toml").is_file() || !sdk.join("src/lib.rs").is_file() {
        return Err(NewError::NoSdk(sdk.to_path_buf()));
    }
    std::path::absolute(sdk).and_then(|p| p.canonicalize()).map_err(|_| NewError::NoSdk(sdk.to_path_buf()))
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_cargo_and_gale() {
        for good in ["my-policy", "tagger", "a", "edge_tag2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1abc", "-x", "My-Policy", "a b", "a.b", "ünï", &"x".repeat(65)] {
            assert!(matches!(check_name(bad), Err(NewError::BadName(_))), "{bad}");
        }
        for reserved in ["test", "gale-plugin", "self", "proc-macro"] {
            assert!(matches!(check_name(reserved), Err(NewError::ReservedName(_))), "{reserved}");
        }
    }

    #[test]
    fn every_placeholder_of_every_world_is_filled() {
        let sdk = Path::new("/opt/gale \"src\"/plugins/gale-plugin");
        for world in World::ALL {
            let files = render("my-policy", world, sdk).expect("rendered");
            for (path, text) in &files {
                assert!(!text.contains("{{"), "{world:?} {path}: {text}");
            }
            let cargo = &files[0].1;
            let manifest: toml::Table = cargo.parse().expect("Cargo.toml is TOML");
            let sdk_dep = &manifest["dependencies"]["gale-plugin"]["path"];
            assert_eq!(sdk_dep.as_str(), Some("/opt/gale \"src\"/plugins/gale-plugin"));
            assert!(manifest["workspace"].as_table().is_some_and(toml::Table::is_empty));
            let defaults = files.iter().find(|(p, _)| p == "my-policy.toml").expect("default config");
            defaults.1.parse::<toml::Table>().expect("the default config is TOML");
        }
    }

    #[test]
    fn the_release_profile_is_the_plugins_workspace_one() {
        let ours: toml::Table = CARGO_TOML.replace("{{sdk_path}}", "\"x\"").parse().expect("TOML");
        let theirs: toml::Table = include_str!("../../plugins/Cargo.toml").parse().expect("plugins/Cargo.toml is TOML");
        assert_eq!(ours["profile"]["release"], theirs["profile"]["release"]);
        let serde = |t: &toml::Table| t["dependencies"]["serde"]["version"].clone();
        assert_eq!(serde(&ours), theirs["workspace"]["dependencies"]["serde"]["version"]);
    }

    #[test]
    fn unknown_worlds_are_refused() {
        assert!(matches!(World::parse("memoizable-header-policy"), Err(NewError::UnknownWorld(_))));
        assert_eq!(World::parse("cache-policy").ok(), Some(World::CachePolicy));
    }
}
