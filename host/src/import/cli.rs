//! The `gale import` command: the gale config to stdout or `-o FILE`, the
//! report to stderr and, as JSON, to `--report FILE`. Exit 0 once written
//! (directives gale cannot translate are in the report), 1 when the nginx
//! configuration cannot be read (one `FILE:LINE:COL: message` line) or an
//! output cannot be written.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{Options, import};

/// `gale import` arguments.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The nginx configuration (nginx.conf); its includes are read too.
    pub config: PathBuf,
    /// Write the gale config here instead of stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Keep nginx's meaning where gale's default is safer: `proxy_next_upstream
    /// error` stays `next_upstream = "error"` instead of `"connect"`.
    #[arg(long)]
    pub keep_semantics: bool,
    /// `[global] plugin_dir` to write when a plugin is attached (default
    /// `plugins`, beside the written config).
    #[arg(long)]
    pub plugin_dir: Option<String>,
}

/// Runs `gale import`.
pub fn run(args: ImportArgs) -> ExitCode {
    let opts = Options { keep_semantics: args.keep_semantics, plugin_dir: args.plugin_dir };
    let imported = match import(&args.config, &opts) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    eprint!("{}", imported.report.to_text());
    if let Some(path) = &args.report {
        let json = format!("{:#}\n", imported.report.to_json());
        if let Err(e) = std::fs::write(path, json) {
            eprintln!("gale: error: cannot write the report {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    match &args.output {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &imported.toml) {
                eprintln!("gale: error: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
        None => print!("{}", imported.toml),
    }
    ExitCode::SUCCESS
}
