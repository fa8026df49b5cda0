//! `gale plugins call` and `gale plugins test`: a plugin run without a
//! server or a socket, through the same runtime, engine and limits `gale
//! run` gives the global tenant by default (hook deadline, memory cap,
//! breaker, concurrency cap): a header policy on one request (and
//! optionally one backend response), a cache policy on one file
//! (`worlds.rs`), an upload-fields policy on the parts of one upload.
//!
//! A plugin is named like an attachment (found in a plugin directory, `-`
//! and `_` alike, with its `<name>.toml` defaults) or given as a path to a
//! `.wasm` (then its directory is the plugin directory). Each request gets
//! a freshly loaded policy, so nothing one case did (guest state, answers
//! remembered) reaches the next.
//!
//! `--check-inputs` calls each hook that declared its inputs
//! (`hook-inputs`) a second time with the whole request: a different
//! answer means the hook reads something it did not declare, which gale
//! never passes it, so the rule silently does nothing under `gale run`.

mod cases;
pub mod cli;
mod request;
mod worlds;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri};

pub use cases::{CaseOutcome, Cases};
pub use request::{parse_header, parse_request, parse_status};
pub use worlds::{FilePart, StaticFile, UploadAnswers, stored_file};

use crate::config::Config;
use crate::plugin::{
    HeaderEdit, HeaderPolicy, HookRequest, LoadedPlugin, PluginError, PluginRuntime, RequestAction, RequestView,
    RuntimeOptions, Tenant, TenantSettings, WorldKind,
};

/// Why the runner could not run the plugin at all (exit status 2); a hook
/// that fails while running is an [`Outcome`], not this.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// A bad argument: `--request`, `-H`, `--response`, `--config`.
    #[error("{0}")]
    Usage(String),
    /// The cases file is unreadable or malformed (`FILE:LINE:COL: ...`).
    #[error("{0}")]
    Cases(String),
    /// The plugin cannot be found, compiled or configured.
    #[error("{0}")]
    Load(String),
}

/// Where a plugin comes from.
#[derive(Debug, Clone)]
pub struct PluginSource {
    /// The plugin directory it is looked up in.
    pub dir: PathBuf,
    /// The name it is looked up by.
    pub name: String,
}

impl PluginSource {
    /// `plugin` as given on the command line: a path to a `.wasm` (when it
    /// ends in `.wasm` or contains a `/`), else a name in `plugin_dir`.
    pub fn new(plugin: &str, plugin_dir: &Path) -> Result<Self, RunnerError> {
        let as_path = Path::new(plugin);
        if !(plugin.ends_with(".wasm") || plugin.contains('/')) {
            return Ok(Self { dir: plugin_dir.to_owned(), name: plugin.to_owned() });
        }
        if !as_path.is_file() {
            return Err(RunnerError::Load(format!("{plugin}: no such file (give a .wasm file or a plugin name)")));
        }
        let stem = as_path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let dir = as_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if as_path.extension().and_then(|e| e.to_str()) != Some("wasm") {
            return Err(RunnerError::Load(format!("{plugin}: a plugin file must end in .wasm")));
        }
        Ok(Self { dir: dir.to_owned(), name: stem.to_owned() })
    }
}

/// The tenant settings `gale run` gives servers without a tenant when
/// `[global]` sets no plugin limits, with the plugin directory replaced.
pub fn default_settings(plugin_dir: &Path) -> TenantSettings {
    let config = default_config();
    let mut settings = crate::tenancy::settings(&config, None);
    plugin_dir.clone_into(&mut settings.plugin_dir);
    settings
}

/// The plugin directory `gale run` uses when `[global] plugin_dir` is
/// unset: `plugins`, beside the config file (here: the working directory).
pub fn default_plugin_dir() -> PathBuf {
    default_config().global.plugin_dir
}

fn default_config() -> Config {
    // The built-in config is tested to parse (config::tests); a failure
    // here would be a build bug, so fall back to the listed defaults.
    crate::config::parse("<built-in config>", crate::config::DEFAULT_CONFIG, Path::new(""))
        .expect("the built-in config parses")
}

/// A request as the runner hands it to the hooks.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// Path and query, the path in normal form (as the pipeline passes it).
    pub uri: Uri,
    pub headers: HeaderMap,
    /// `$host`: the Host header without port, else `localhost`.
    pub host: String,
    pub remote_addr: std::net::SocketAddr,
    pub scheme: String,
}

impl Request {
    pub(crate) fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            uri: &self.uri,
            headers: &self.headers,
            remote_addr: self.remote_addr,
            scheme: &self.scheme,
            host: &self.host,
        }
    }
}

/// A response head given to `on-response` (a backend's, or the local one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
}

/// What `on-request` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go on, with these edits applied to the request headers; `headers`
    /// is the request's headers after them.
    Continue { edits: Vec<String>, headers: HeaderMap },
    /// Answer locally.
    Respond { status: StatusCode, headers: HeaderMap, body: Bytes },
}

/// Everything one run produced.
#[derive(Debug)]
pub struct Outcome {
    /// `on-request`'s decision, or its failure.
    pub request: Result<Decision, PluginError>,
    /// The response after `on-response`: run on the local response, or on
    /// the backend response given; `None` when there was neither (or
    /// `on-request` failed).
    pub response: Option<Result<ResponseHead, PluginError>>,
    /// Hooks whose answer changed when given the whole request: the hook
    /// and both answers rendered (`--check-inputs` only).
    pub undeclared: Vec<Undeclared>,
}

/// A hook that read an input it did not declare.
#[derive(Debug)]
pub struct Undeclared {
    pub hook: &'static str,
    /// Its answer given the declared inputs only (what `gale run` sees).
    pub declared: String,
    /// Its answer given the whole request.
    pub whole: String,
}

impl std::fmt::Display for Undeclared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: input read but not declared: given only its declared inputs (as gale runs it) it answers\n{}\
             but given the whole request it answers\n{}\
             declare every header and request part the hook reads in `declare-inputs`",
            self.hook,
            indent(&self.declared),
            indent(&self.whole)
        )
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// The runner: one plugin runtime, reused for every request.
pub struct Runner {
    runtime: PluginRuntime,
    settings: TenantSettings,
    source: PluginSource,
}

impl Runner {
    /// A runner for `source` under `settings`' limits; compiles nothing yet.
    pub fn new(source: PluginSource, mut settings: TenantSettings) -> Result<Self, RunnerError> {
        settings.plugin_dir.clone_from(&source.dir);
        // No disk cache: the runner must not write beside the user's files.
        let runtime = PluginRuntime::new(RuntimeOptions::default()).map_err(|e| RunnerError::Load(e.to_string()))?;
        Ok(Self { runtime, settings, source })
    }

    /// Loads the plugin afresh with `config` (merged over `<name>.toml`),
    /// as the world its component exports, under a tenant of its own.
    pub async fn load(&self, config: &toml::Table) -> Result<LoadedPlugin, RunnerError> {
        let tenant = Tenant::new(self.settings.clone());
        self.runtime.load_any_for(&tenant, &self.source.name, config).await.map_err(|e| self.load_error(e, config))
    }

    fn load_error(&self, e: PluginError, config: &toml::Table) -> RunnerError {
        RunnerError::Load(load_error(&self.source.dir, &self.source.name, &e, config))
    }

    /// Runs `on-request` on `req`, then `on-response` on the local response
    /// or on `response` (when given), as the pipeline would.
    pub async fn run(
        &self,
        policy: &HeaderPolicy,
        req: &Request,
        response: Option<&ResponseHead>,
        check_inputs: bool,
    ) -> Outcome {
        let view = req.view();
        let mut undeclared = Vec::new();
        let (action, memoized) = match policy.on_request_remembered(&view).await {
            Some(result) => (result, true),
            None => (policy.on_request(&view).await, false),
        };
        let request = action.map(|a| decision(a, &req.headers));
        if check_inputs
            && memoized
            && let Ok(declared) = &request
        {
            let whole = policy.on_request_with(&HookRequest::new(&view)).await.map(|a| decision(a, &req.headers));
            let whole = match whole {
                Ok(d) => render_decision(&d),
                Err(e) => format!("error: {}\n", one_line(&e.to_string())),
            };
            let declared = render_decision(declared);
            if declared != whole {
                undeclared.push(Undeclared { hook: "on-request", declared, whole });
            }
        }
        let given = match &request {
            Ok(Decision::Respond { status, headers, .. }) => {
                Some(ResponseHead { status: *status, headers: headers.clone() })
            }
            Ok(Decision::Continue { .. }) => response.cloned(),
            Err(_) => None,
        };
        let response = match given {
            Some(head) => {
                let mut headers = head.headers.clone();
                let result = policy.on_response(&view, head.status, &mut headers).await;
                let declared_inputs = policy.wants_response() && !policy.response_needs_whole_request();
                if check_inputs && declared_inputs && result.is_ok() {
                    let mut whole = head.headers.clone();
                    let full = policy.on_response_with(&HookRequest::new(&view), head.status, &mut whole).await;
                    let whole = match full {
                        Ok(()) => render_response(&ResponseHead { status: head.status, headers: whole }),
                        Err(e) => format!("error: {}\n", one_line(&e.to_string())),
                    };
                    let declared = render_response(&ResponseHead { status: head.status, headers: headers.clone() });
                    if declared != whole {
                        undeclared.push(Undeclared { hook: "on-response", declared, whole });
                    }
                }
                Some(result.map(|()| ResponseHead { status: head.status, headers }))
            }
            None => None,
        };
        Outcome { request, response, undeclared }
    }
}

/// A load error in one line; a rejected config names its key, as `gale
/// check` does, without positions in the JSON text.
pub fn load_error(dir: &Path, name: &str, e: &PluginError, config: &toml::Table) -> String {
    if let PluginError::Config { plugin, message } = e
        && let Ok(resolved) = crate::plugin::resolve(dir, name, config)
    {
        let r = crate::config::plugin_keys::rejection(&resolved.config_json, message);
        let at = r.path.map(|p| format!("`{p}`: ")).unwrap_or_default();
        return one_line(&format!("plugin `{plugin}` rejected its config: {at}{}", r.message));
    }
    one_line(&e.to_string())
}

fn decision(action: RequestAction, headers: &HeaderMap) -> Decision {
    match action {
        RequestAction::Continue(edits) => {
            let mut after = headers.clone();
            edits.apply(&mut after);
            let edits = edits
                .iter()
                .map(|e| match e {
                    HeaderEdit::Set(n, v) => format!("set {n}: {}", String::from_utf8_lossy(v.as_bytes())),
                    HeaderEdit::Append(n, v) => format!("append {n}: {}", String::from_utf8_lossy(v.as_bytes())),
                    HeaderEdit::Remove(n) => format!("remove {n}"),
                })
                .collect();
            Decision::Continue { edits, headers: after }
        }
        RequestAction::Respond(response) => {
            let (parts, body) = response.into_parts();
            Decision::Respond { status: parts.status, headers: parts.headers, body }
        }
    }
}

/// Joins a multi-line message (wasmtime's causes) into one line.
pub fn one_line(message: &str) -> String {
    message.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

/// `on-request`'s decision for a person.
pub fn render_decision(d: &Decision) -> String {
    let mut out = String::new();
    match d {
        Decision::Continue { edits, .. } if edits.is_empty() => out.push_str("continue (no header edits)\n"),
        Decision::Continue { edits, .. } => {
            out.push_str("continue, editing the request headers:\n");
            for e in edits {
                let _ = writeln!(out, "  {e}");
            }
        }
        Decision::Respond { status, headers, body } => {
            let _ = writeln!(out, "respond {}", status_text(*status));
            render_headers(&mut out, headers);
            if !body.is_empty() {
                let _ = writeln!(out, "  body: {:?}", String::from_utf8_lossy(body));
            }
        }
    }
    out
}

/// A response head after `on-response`, for a person.
pub fn render_response(r: &ResponseHead) -> String {
    let mut out = format!("{}\n", status_text(r.status));
    render_headers(&mut out, &r.headers);
    out
}

fn render_headers(out: &mut String, headers: &HeaderMap) {
    for (name, value) in headers {
        let _ = writeln!(out, "  {name}: {}", String::from_utf8_lossy(value.as_bytes()));
    }
}

fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// What gale does when a hook of a plugin of world `kind` fails: the
/// attachment's `on_error` (docs/plugins.md, "Failure policy").
pub fn failure_note(kind: WorldKind, e: &PluginError) -> String {
    let (closed, open) = match kind {
        WorldKind::Header => ("a 503", "skips the plugin for it"),
        WorldKind::Cache => ("a 503", "sends the file without caching headers"),
        WorldKind::UploadFields => {
            ("a 503 and its stored files are deleted", "makes that one decision with the built-in field policy")
        }
    };
    format!(
        "under gale run this request gets {closed} (on_error = \"fail-closed\", the default); \
         with on_error = \"fail-open\" gale {open} [{}]",
        e.kind()
    )
}
