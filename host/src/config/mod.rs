//! Configuration: a TOML file read in two layers. `raw` mirrors the file
//! (unknown keys rejected, spans kept); `validate` checks it and builds the
//! `runtime` types, which cannot hold a bad value. Errors carry
//! `FILE:LINE:COL` and, for typos, a did-you-mean hint.

mod diagnostics;
mod process;
pub mod raw;
mod runtime;
mod template;
mod tenant;
mod units;
mod validate;

use std::path::Path;

pub use diagnostics::{ConfigError, Diagnostic};
pub use runtime::*;
pub use units::{ByteSize, parse_duration};

/// The config `gale run` uses without `--config`: the seed's `location /`
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
    match toml::from_str::<raw::RawConfig>(text) {
        Ok(raw) => {
            if let Some(cfg) = validate::validate(raw, base, &mut c) {
                return Ok(cfg);
            }
        }
        Err(e) => c.error(e.span(), diagnostics::explain_serde_message(e.message())),
    }
    Err(ConfigError::Invalid { file: file.to_owned(), diagnostics: c.diagnostics })
}

#[cfg(test)]
mod tests;
