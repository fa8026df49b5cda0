//! Configuration: a TOML file read in two layers. `raw` mirrors the file
//! (unknown keys rejected, spans kept); `validate` checks it and builds the
//! `runtime` types, which cannot hold a bad value. Errors carry
//! `FILE:LINE:COL` and, for typos, a did-you-mean hint.

mod diagnostics;
mod listen;
pub(crate) mod plugin_keys;
mod process;
pub mod raw;
mod runtime;
mod template;
mod tenant;
mod units;
mod upload;
mod upstream;
mod validate;

use std::path::Path;

pub use diagnostics::{ConfigError, Diagnostic};
pub use runtime::*;
pub use units::{ByteSize, parse_duration};

/// The config `gale run` uses without `--config`: the reference configuration's `location /`
/// on 127.0.0.1:8080 in front of 127.0.0.1:8000-8003.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// Reads and validates a config file; relative paths in it are resolved
/// against the file's directory.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
    // Relative paths in the file are relative to its directory, made
    // absolute so they mean the same after a chdir.
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let base = absolute.parent().unwrap_or(Path::new("/"));
    parse(&path.display().to_string(), &text, base)
}

/// Validates config text. `file` names it in errors; `base` resolves
/// relative paths.
pub fn parse(file: &str, text: &str, base: &Path) -> Result<Config, ConfigError> {
    let mut c = diagnostics::Collector::new(text);
    if let Some(raw) = read_raw(text, &mut c)
        && let Some(cfg) = validate::validate(raw, base, &mut c)
        && c.diagnostics.is_empty()
    {
        return Ok(cfg);
    }
    let mut diagnostics = c.diagnostics;
    diagnostics.sort_by_key(|d| (d.line, d.col));
    Err(ConfigError::Invalid { file: file.to_owned(), diagnostics })
}

/// Reads the file's shape. serde stops at the first unknown key or value,
/// so each one found is reported, removed from the document, and the read
/// repeated: `gale check` lists every typo at once, then the semantic
/// errors of what is left.
fn read_raw(text: &str, c: &mut diagnostics::Collector<'_>) -> Option<raw::RawConfig> {
    use serde::Deserialize;
    let mut doc = match toml::de::DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            c.error(e.span(), diagnostics::explain_serde_message(e.message()));
            return None;
        }
    };
    for _ in 0..64 {
        match raw::RawConfig::deserialize(toml::de::Deserializer::from(doc.clone())) {
            Ok(raw) => return Some(raw),
            Err(e) => {
                let message = e.message();
                c.error(e.span(), diagnostics::explain_serde_message(message));
                let unknown = message.starts_with("unknown field") || message.starts_with("unknown variant");
                let removed = unknown && e.span().is_some_and(|span| remove_entry_at(doc.get_mut(), span.start));
                if !removed {
                    return None;
                }
            }
        }
    }
    None
}

/// Removes the key/value pair whose key or value starts at `pos`.
fn remove_entry_at(table: &mut toml::de::DeTable<'_>, pos: usize) -> bool {
    use toml::de::DeValue;
    let mut hit = None;
    for (k, v) in table.iter() {
        if k.span().start == pos
            || (v.span().start == pos && !matches!(v.get_ref(), DeValue::Table(_) | DeValue::Array(_)))
        {
            hit = Some(k.clone());
            break;
        }
    }
    if let Some(k) = hit {
        table.remove(&k);
        return true;
    }
    for (_, v) in table.iter_mut() {
        if remove_in_value(v.get_mut(), pos) {
            return true;
        }
    }
    false
}

fn remove_in_value(v: &mut toml::de::DeValue<'_>, pos: usize) -> bool {
    use toml::de::DeValue;
    match v {
        DeValue::Table(t) => remove_entry_at(t, pos),
        DeValue::Array(items) => items.iter_mut().any(|item| remove_in_value(item.get_mut(), pos)),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
