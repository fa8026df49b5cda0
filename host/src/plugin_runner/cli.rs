//! The commands `gale plugins call` and `gale plugins test`: arguments in,
//! text and an exit status out. Exit status: 0 all went as expected; 1 a
//! hook failed, a case failed, or a hook read an undeclared input; 2 the
//! plugin could not be run at all (bad arguments or cases file, plugin not
//! found, not a header policy, config rejected).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use http::HeaderMap;

use super::{
    Cases, Decision, PluginSource, Runner, RunnerError, default_plugin_dir, default_settings, failure_note,
    parse_header, parse_request, parse_status, render_decision, render_response,
};

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
    /// For a cache policy: the file's size and content type.
    pub file_size: u64,
    pub content_type: String,
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
    let source = source(&args.plugin, args.plugin_dir.clone())?;
    let runner = Runner::new(source.clone(), default_settings(&source.dir))?;
    let outcome = block_on(async {
        let policy = match runner.load(&config).await {
            Ok(policy) => policy,
            Err(e) => match runner.load_cache_policy(&config).await? {
                Some(cache) => return Ok(Err(decide(&cache, &request, &args).await)),
                None => return Err(e),
            },
        };
        Ok::<_, RunnerError>(Ok(runner.run(&policy, &request, response.as_ref(), args.check_inputs).await))
    })??;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(code) => return Ok(code),
    };
    let mut failed = false;
    match &outcome.request {
        Ok(d) => print!("on-request: {}", render_decision(d)),
        Err(e) => {
            println!("on-request: error: {}", super::one_line(&e.to_string()));
            println!("  {}", failure_note(e));
            failed = true;
        }
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
        Some(Err(e)) => {
            println!("on-response: error: {}", super::one_line(&e.to_string()));
            println!("  {}", failure_note(e));
            failed = true;
        }
        None => {}
    }
    for u in &outcome.undeclared {
        println!("{u}");
        failed = true;
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// A cache policy's `decide` for the file the request names.
async fn decide(policy: &crate::plugin::CachePolicy, request: &super::Request, args: &CallArgs) -> ExitCode {
    let file = crate::static_files::FileMeta {
        path: request.uri.path().to_owned(),
        query: request.uri.query().map(str::to_owned),
        size: args.file_size,
        mtime: std::time::SystemTime::UNIX_EPOCH,
        content_type: args.content_type.clone(),
    };
    match policy.decide(&request.view(), &file).await {
        Ok(headers) => {
            print!("decide: {}", super::render_cache_headers(&headers));
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("decide: error: {}", super::one_line(&e.to_string()));
            println!("  {}", failure_note(&e));
            ExitCode::FAILURE
        }
    }
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
            // A fresh policy per case: no guest state or remembered answer
            // of one case reaches the next.
            let policy = runner.load(&case.config).await?;
            let outcome = runner.run(&policy, &case.request, case.response.as_ref(), check_inputs).await;
            let result = case.check(&outcome);
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
