//! `gale import nginx.conf`: an nginx configuration (nginx-upload-module's
//! directives included) -> the equivalent gale config, and a report of what
//! became of every directive.
//!
//! The steps, one module each: `lexer` (nginx's token rules, FILE:LINE:COL
//! errors), `parse` (the directive tree, includes followed), `translate`
//! (main, events, http, upstream, server) with `settings` (what blocks pass
//! down, and what gale sets once), `location` and `upload`,
//! `table` (the directives whose fate is fixed: gale's default, or the
//! nearest gale feature), `values` (nginx's times, sizes and addresses),
//! `emit` (the TOML, a comment per block naming its nginx source) and
//! `report` (text for stderr, JSON for `--report`). `cli` is the command.
//! docs/migrating-from-nginx.md walks a translation.

mod cli;
mod emit;
mod lexer;
mod location;
mod parse;
mod report;
mod settings;
mod table;
mod translate;
mod upload;
mod values;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use cli::{ImportArgs, run};
pub use parse::ImportError;
pub use report::{Fate, Report};
pub use translate::Options;

/// A translated configuration.
#[derive(Debug)]
pub struct Imported {
    /// The gale config (TOML).
    pub toml: String,
    /// Every directive with its fate.
    pub report: Report,
}

/// Reads the nginx configuration at `path` (with its includes) and translates it.
pub fn import(path: &Path, opts: &Options) -> Result<Imported, ImportError> {
    let tree = parse::parse_file(path)?;
    let (model, report) = translate::translate(&tree, opts);
    let [t, c, d, u] = report.counts();
    let header = format!(
        "Written by `gale import {}`{}.\n\
         {t} directives translated, {c} translated with a change in behaviour, {d} left to gale's defaults,\n\
         {u} not supported: the report (stderr, or --report FILE) says which and why.\n\
         Check it with `gale check --config FILE`; docs/config.md documents every key.",
        path.display(),
        if opts.keep_semantics { " --keep-semantics" } else { "" }
    );
    Ok(Imported { toml: model.to_toml(&header), report })
}
