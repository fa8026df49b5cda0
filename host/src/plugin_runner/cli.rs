//! The commands `gale plugins call` and `gale plugins test`: arguments in,
//! text and an exit status out. Exit status: 0 all went as expected; 1 a
//! hook failed, a case failed, or a hook read an undeclared input; 2 the
//! plugin could not be run at all (bad arguments or cases file, plugin not
//! found or of no gale world, config rejected).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use http::HeaderMap;

use super::worlds::{self, FilePart, StaticFile};
use super::{
    Cases, Decision, PluginSource, Runner, RunnerError, default_plugin_dir, default_settings, failure_note,
    parse_header, parse_request, parse_status, render_decision, render_response,
};
use crate::plugin::{LoadedPlugin, WorldKind};

/// `gale plugins call`'s arguments, headers already split between the
/// request and the response.
#[derive(Debug)]
pub struct CallArgs {
    pub plugin: String,
    pub plugin_dir: Option<PathBuf>,
    pub config: Option<String>,
    pub request: String,
    pub request_headers: Vec<String>,
    pub response: Option<String>,
    pub response_headers: Vec<String>,
    pub remote: std::net::SocketAddr,
    pub check_inputs: bool,
    pub parts: Box<PartsArgs>,
}

/// `gale plugins call`'s inputs for the worlds other than header policies.
#[derive(Debug, clap::Args)]
pub struct PartsArgs {
    /// For a cache policy: the size of the file the request names; for an
    /// upload-fields policy: of each --file.
    #[arg(long, default_value_t = 1024)]
    pub file_size: u64,
    /// For a cache policy: the file's modification time, in seconds since
    /// the Unix epoch.
    #[arg(long, default_value_t = 0)]
    pub mtime: u64,
    /// For a cache policy: the file's content type; for an upload-fields
    /// policy: each --file's.
    #[arg(long, default_value = "application/octet-stream")]
    pub content_type: String,
    /// For an upload-fields policy: a text field's name; repeatable.
    #[arg(long = "text-field")]
    pub text_fields: Vec<String>,
    /// For an upload-fields policy: a file part, FIELD=FILENAME; repeatable.
    #[arg(long = "file")]
    pub files: Vec<String>,
}

const CANNOT_RUN: u8 = 2;

fn cannot_run(e: &RunnerError) -> ExitCode {
    eprintln!("gale: error: {e}");
    ExitCode::from(CANNOT_RUN)
}

fn block_on<F: Future>(f: F) -> Result<F::Output, RunnerError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RunnerError::Load(format!("cannot start the runtime: {e}")))?;
    Ok(rt.block_on(f))
}

/// The plugin's config from `--config`: a TOML inline table or a TOML
/// document.
fn config_arg(text: Option<&str>) -> Result<toml::Table, RunnerError> {
    let Some(text) = text else { return Ok(toml::Table::new()) };
    let trimmed = text.trim();
    let parsed = if trimmed.starts_with('{') {
        format!("config = {trimmed}").parse::<toml::Table>().map(|mut t| match t.remove("config") {
            Some(toml::Value::Table(t)) => t,
            _ => toml::Table::new(),
        })
    } else {
        trimmed.parse::<toml::Table>()
    };
    parsed.map_err(|e| {
        RunnerError::Usage(format!(
            "--config: not a TOML table ({}); write it as '{{ key = \"value\" }}'",
            super::one_line(e.message())
        ))
    })
}

fn headers(list: &[String]) -> Result<HeaderMap, RunnerError> {
    let mut map = HeaderMap::new();
    for h in list {
        let (name, value) = parse_header(h).map_err(|e| RunnerError::Usage(format!("-H: {e}")))?;
        map.append(name, value);
    }
    Ok(map)
}

fn source(plugin: &str, plugin_dir: Option<PathBuf>) -> Result<PluginSource, RunnerError> {
    PluginSource::new(plugin, &plugin_dir.unwrap_or_else(default_plugin_dir))
}

/// `gale plugins call`.
pub fn call(args: CallArgs) -> ExitCode {
    match try_call(args) {
        Ok(code) => code,
        Err(e) => cannot_run(&e),
    }
}

fn try_call(args: CallArgs) -> Result<ExitCode, RunnerError> {
    let config = config_arg(args.config.as_deref())?;
    let request = parse_request(&args.request, headers(&args.request_headers)?, args.remote)
        .map_err(|e| RunnerError::Usage(format!("--request: {e}")))?;
    let response = match &args.response {
        Some(status) => Some(super::ResponseHead {
            status: parse_status(status).map_err(|e| RunnerError::Usage(format!("--response: {e}")))?,
            headers: headers(&args.response_headers)?,
        }),
        None if !args.response_headers.is_empty() => {
            return Err(RunnerError::Usage("-H after --response needs --response".into()));
        }
        None => None,
    };
    let files = args.parts.files.iter().map(|f| file_part(f, &args.parts)).collect::<Result<Vec<_>, _>>()?;
    let source = source(&args.plugin, args.plugin_dir.clone())?;
    let runner = Runner::new(source.clone(), default_settings(&source.dir))?;
    block_on(async {
        let failed = match runner.load(&config).await? {
            LoadedPlugin::Header(policy) => {
                let outcome = runner.run(&policy, &request, response.as_ref(), args.check_inputs).await;
                print_outcome(&outcome)
            }
            LoadedPlugin::Cache(policy) => {
                let p = &args.parts;
                let file = StaticFile { size: p.file_size, mtime: p.mtime, content_type: p.content_type.clone() };
                match worlds::decide(&policy, &request, &file).await {
                    Ok(headers) => {
                        print!("decide: {}", worlds::render_cache_headers(&headers));
                        false
                    }
                    Err(e) => print_failure(WorldKind::Cache, "decide", &e),
                }
            }
            LoadedPlugin::UploadFields(policy) => {
                if args.parts.text_fields.is_empty() && files.is_empty() {
                    return Err(RunnerError::Usage(
                        "an upload-fields plugin: give the parts of an upload with --text-field NAME and \
                         --file FIELD=FILENAME"
                            .into(),
                    ));
                }
                let answers = worlds::upload(&policy, &args.parts.text_fields, &files).await;
                print!("{}", worlds::render_upload(&answers));
                match answers.error() {
                    Some(e) => {
                        println!("  {}", failure_note(WorldKind::UploadFields, e));
                        true
                    }
                    None => false,
                }
            }
        };
        Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
    })?
}

/// `--file FIELD=FILENAME`, with `--content-type` and `--file-size`.
fn file_part(arg: &str, args: &PartsArgs) -> Result<FilePart, RunnerError> {
    let Some((field, filename)) = arg.split_once('=') else {
        return Err(RunnerError::Usage(format!("--file {arg:?}: write it as FIELD=FILENAME, e.g. avatar=me.png")));
    };
    Ok(FilePart {
        field: field.to_owned(),
        filename: filename.to_owned(),
        content_type: args.content_type.clone(),
        size: args.file_size,
    })
}

/// Prints a header policy's outcome; whether anything failed.
fn print_outcome(outcome: &super::Outcome) -> bool {
    let mut failed = false;
    match &outcome.request {
        Ok(d) => print!("on-request: {}", render_decision(d)),
        Err(e) => failed |= print_failure(WorldKind::Header, "on-request", e),
    }
    match &outcome.response {
        Some(Ok(r)) => {
            let from = if matches!(outcome.request, Ok(Decision::Respond { .. })) {
                "the local response"
            } else {
                "the response"
            };
            print!("on-response ({from}): {}", render_response(r));
        }
        Some(Err(e)) => failed |= print_failure(WorldKind::Header, "on-response", e),
        None => {}
    }
    for u in &outcome.undeclared {
        println!("{u}");
        failed = true;
    }
    failed
}

/// Prints a hook's failure and what gale does then; always `true`.
fn print_failure(kind: WorldKind, hook: &str, e: &crate::plugin::PluginError) -> bool {
    println!("{hook}: error: {}", super::one_line(&e.to_string()));
    println!("  {}", failure_note(kind, e));
    true
}

/// `gale plugins test`.
pub fn test(plugin: &str, plugin_dir: Option<PathBuf>, cases: &Path, check_inputs: bool) -> ExitCode {
    match try_test(plugin, plugin_dir, cases, check_inputs) {
        Ok(code) => code,
        Err(e) => cannot_run(&e),
    }
}

fn try_test(
    plugin: &str,
    plugin_dir: Option<PathBuf>,
    file: &Path,
    check_inputs: bool,
) -> Result<ExitCode, RunnerError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| RunnerError::Cases(format!("{}: cannot read the cases file: {e}", file.display())))?;
    let cases = Cases::parse(&file.display().to_string(), &text).map_err(RunnerError::Cases)?;
    let source = source(plugin, plugin_dir)?;
    let runner = Runner::new(source.clone(), default_settings(&source.dir))?;
    let failed = block_on(async {
        let mut failed = 0usize;
        for case in &cases.cases {
            // A fresh plugin per case: no guest state or remembered answer
            // of one case reaches the next.
            let loaded = runner.load(&case.config).await?;
            let kind = loaded.kind();
            case.fits(kind).map_err(RunnerError::Cases)?;
            let result = match (&loaded, &case.request) {
                (LoadedPlugin::Header(policy), Some(request)) => {
                    case.check(&runner.run(policy, request, case.response.as_ref(), check_inputs).await)
                }
                (LoadedPlugin::Cache(policy), Some(request)) => {
                    let file = case.file.clone().unwrap_or_default();
                    case.check_cache(&worlds::decide(policy, request, &file).await)
                }
                (LoadedPlugin::UploadFields(policy), _) => {
                    case.check_upload(&worlds::upload(policy, &case.text_fields, &case.files).await)
                }
                // `fits` checked that header and cache cases have a request.
                (_, None) => return Err(RunnerError::Cases(format!("{}: case needs `request`", case.at))),
            };
            if result.differences.is_empty() {
                println!("ok    {} ({})", case.name, case.at);
            } else {
                failed += 1;
                println!("FAIL  {} ({})", case.name, case.at);
                for d in &result.differences {
                    for (i, line) in d.lines().enumerate() {
                        println!("{}{line}", if i == 0 { "  - " } else { "    " });
                    }
                }
            }
        }
        Ok::<_, RunnerError>(failed)
    })??;
    let total = cases.cases.len();
    let note = if check_inputs { ", inputs checked" } else { "" };
    println!("{total} cases: {} passed, {failed} failed{note}", total - failed);
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
