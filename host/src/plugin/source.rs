//! Finding a plugin's files in the plugin directory and building the config
//! it receives: `<name>.wasm`, defaults from `<name>.toml`, merged with the
//! attachment's table, handed over as JSON.

use std::path::{Path, PathBuf};

use super::error::PluginError;

/// The files of one plugin.
#[derive(Debug)]
pub(crate) struct PluginFiles {
    /// The component.
    pub(crate) wasm: PathBuf,
    /// The optional defaults file, when present.
    pub(crate) defaults: Option<PathBuf>,
}

/// Looks for `<name>.wasm` in `dir`, with `-` and `_` treated alike (cargo
/// writes `header_policy.wasm` for the crate `header-policy`). The first
/// spelling tried is the name as written.
pub(crate) fn find(dir: &Path, name: &str) -> Result<PluginFiles, PluginError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(PluginError::InvalidName { name: name.to_owned() });
    }
    let mut stems: Vec<String> = Vec::with_capacity(3);
    for stem in [name.to_owned(), name.replace('-', "_"), name.replace('_', "-")] {
        if !stems.contains(&stem) {
            stems.push(stem);
        }
    }
    let tried: Vec<PathBuf> = stems.iter().map(|s| dir.join(format!("{s}.wasm"))).collect();
    let Some(wasm) = tried.iter().find(|p| p.is_file()).cloned() else {
        return Err(PluginError::NotFound { plugin: name.to_owned(), dir: dir.to_owned(), tried });
    };
    let defaults = stems.iter().map(|s| dir.join(format!("{s}.toml"))).find(|p| p.is_file());
    Ok(PluginFiles { wasm, defaults })
}

/// Where an attachment's plugin is and the config it receives, without
/// loading it: what `gale plugins explain` prints.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The component file.
    pub wasm: PathBuf,
    /// The defaults file, when there is one.
    pub defaults: Option<PathBuf>,
    /// The config `configure` receives: defaults merged with the
    /// attachment's table, as JSON.
    pub config_json: String,
}

/// Finds plugin `name` in `dir` (only there) and builds its config.
pub fn resolve(dir: &Path, name: &str, config: &toml::Table) -> Result<Resolved, PluginError> {
    let files = find(dir, name)?;
    let config_json = config_json(name, files.defaults.as_deref(), config)?;
    Ok(Resolved { wasm: files.wasm, defaults: files.defaults, config_json })
}

/// The JSON text handed to `configure`: the defaults file's table with the
/// attachment's `config` merged over it (tables merge key by key, at any
/// depth; any other value replaces the default).
pub(crate) fn config_json(plugin: &str, defaults: Option<&Path>, config: &toml::Table) -> Result<String, PluginError> {
    let mut merged = match defaults {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| PluginError::Read {
                plugin: plugin.to_owned(),
                path: path.to_owned(),
                source,
            })?;
            text.parse::<toml::Table>().map_err(|e| PluginError::Defaults {
                plugin: plugin.to_owned(),
                message: format!("invalid defaults file {}: {e}", path.display()),
            })?
        }
        None => toml::Table::new(),
    };
    merge(&mut merged, config);
    let json =
        table_to_json(&merged).map_err(|message| PluginError::Defaults { plugin: plugin.to_owned(), message })?;
    Ok(json.to_string())
}

fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(over_table)) => {
                merge(base_table, over_table);
            }
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

fn table_to_json(table: &toml::Table) -> Result<serde_json::Value, String> {
    table
        .iter()
        .map(|(k, v)| to_json(v).map(|v| (k.clone(), v)).map_err(|e| format!("{k}: {e}")))
        .collect::<Result<serde_json::Map<_, _>, _>>()
        .map(serde_json::Value::Object)
}

/// TOML to JSON; dates become their TOML text, since JSON has none.
fn to_json(value: &toml::Value) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    Ok(match value {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(J::Number)
            .ok_or_else(|| format!("{f} cannot be passed to a plugin (JSON has no inf/nan)"))?,
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(items) => J::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        toml::Value::Table(t) => table_to_json(t)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().expect("valid toml")
    }

    #[test]
    fn dash_and_underscore_name_the_same_plugin() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("header_policy.wasm"), b"").expect("write");
        std::fs::write(dir.path().join("header-policy.toml"), b"").expect("write");
        let files = find(dir.path(), "header-policy").expect("found");
        assert_eq!(files.wasm, dir.path().join("header_policy.wasm"));
        assert_eq!(files.defaults, Some(dir.path().join("header-policy.toml")));
        let files = find(dir.path(), "header_policy").expect("found");
        assert_eq!(files.wasm, dir.path().join("header_policy.wasm"));
    }

    #[test]
    fn missing_plugins_say_what_was_looked_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = find(dir.path(), "my-rules").expect_err("missing");
        let text = err.to_string();
        assert!(matches!(err, PluginError::NotFound { .. }));
        assert!(text.contains("my-rules.wasm or my_rules.wasm"), "{text}");
        assert!(text.contains(&format!("in the plugin directory {}", dir.path().display())), "{text}");
        assert!(text.contains("cargo build --release --target wasm32-wasip2"), "{text}");
        let err = find(dir.path(), "plain").expect_err("missing");
        assert!(err.to_string().contains("no plain.wasm in"), "{err}");
    }

    #[test]
    fn names_cannot_leave_the_directory() {
        for name in ["", "../x", "a/b", "a.b", "x y"] {
            let dir = tempfile::tempdir().expect("tempdir");
            assert!(matches!(find(dir.path(), name), Err(PluginError::InvalidName { .. })));
        }
    }

    #[test]
    fn attachment_config_merges_over_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let defaults = dir.path().join("p.toml");
        std::fs::write(&defaults, "[request.set]\nx-a = \"1\"\nx-b = \"2\"\n[response]\nremove = [\"server\"]\n")
            .expect("write");
        let json = config_json(
            "p",
            Some(&defaults),
            &table("request.set.x-b = \"3\"\nresponse.remove = []\nwhen = 1979-05-27\n"),
        )
        .expect("valid");
        let value: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(
            value,
            serde_json::json!({
                "request": {"set": {"x-a": "1", "x-b": "3"}},
                "response": {"remove": []},
                "when": "1979-05-27",
            })
        );
    }

    #[test]
    fn no_config_is_an_empty_object() {
        assert_eq!(config_json("p", None, &toml::Table::new()).expect("valid"), "{}");
    }

    #[test]
    fn bad_defaults_and_values_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let defaults = dir.path().join("p.toml");
        std::fs::write(&defaults, "request = [").expect("write");
        let err = config_json("p", Some(&defaults), &toml::Table::new()).expect_err("bad");
        assert!(err.to_string().contains("invalid defaults file"), "{err}");
        let err = config_json("p", None, &table("x = nan")).expect_err("bad");
        assert!(err.to_string().contains("x: NaN"), "{err}");
    }
}
