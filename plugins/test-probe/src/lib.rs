//! A capability probe: on every response it tries to read a file, list a
//! directory, open a TCP connection and read the environment, and reports
//! what it saw in response headers (and gale's log). gale links WASI with a
//! context that denies all of these; tests assert the reports say so.
//!
//! Test fixture for gale, never for production. Config (all optional):
//! `{ file = "/etc/hostname", dir = "/", connect = "127.0.0.1:80",
//! env = "PATH" }`. Headers: `x-probe-file`, `x-probe-dir`,
//! `x-probe-socket`, `x-probe-env` (`denied: <error>`, `absent`, or
//! `ALLOWED: ...` when the sandbox let it through), `x-probe-env-count`,
//! `x-probe-args`, and `x-probe-calls` (this instance's response count:
//! guest state, which lives per instance, so per tenant and attachment).

use std::cell::{Cell, RefCell};

// The generated glue exports raw C-ABI functions, which needs `unsafe`.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "gale:plugin/header-policy" });
    use super::Probe;
    export!(Probe with_types_in crate::bindings);
}

use bindings::exports::gale::plugin::header_hooks::{Guest, RequestDecision};
use bindings::gale::plugin::host::{self, LogLevel};
use bindings::gale::plugin::types::{Header, HeaderOp, RequestHead, ResponseHead};

struct Targets {
    file: String,
    dir: String,
    connect: String,
    env: String,
}

thread_local! {
    static TARGETS: RefCell<Targets> = RefCell::new(Targets {
        file: "/etc/hostname".into(),
        dir: "/".into(),
        connect: "127.0.0.1:80".into(),
        env: "PATH".into(),
    });
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

struct Probe;

impl Guest for Probe {
    fn configure(config: String) -> Result<(), String> {
        let value: serde_json::Value = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        let text = |key: &str| -> Result<Option<String>, String> {
            match value.get(key) {
                None => Ok(None),
                Some(v) => v.as_str().map(|s| Some(s.to_string())).ok_or_else(|| format!("{key} must be a string")),
            }
        };
        let (file, dir, connect, env) = (text("file")?, text("dir")?, text("connect")?, text("env")?);
        TARGETS.with(|t| {
            let mut t = t.borrow_mut();
            if let Some(v) = file {
                t.file = v;
            }
            if let Some(v) = dir {
                t.dir = v;
            }
            if let Some(v) = connect {
                t.connect = v;
            }
            if let Some(v) = env {
                t.env = v;
            }
        });
        Ok(())
    }

    fn on_request(_head: RequestHead) -> RequestDecision {
        RequestDecision::Continue(Vec::new())
    }

    fn on_response(_head: RequestHead, _response: ResponseHead) -> Vec<HeaderOp> {
        let calls = CALLS.with(|c| {
            c.set(c.get() + 1);
            c.get()
        });
        let report = TARGETS.with(|t| probe(&t.borrow()));
        host::log(
            LogLevel::Info,
            &format!("test-probe: {}", report.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")),
        );
        let mut ops: Vec<HeaderOp> = report.into_iter().map(|(name, value)| set(name, &value)).collect();
        ops.push(set("x-probe-calls", &calls.to_string()));
        ops
    }
}

/// Tries each capability; what it saw, per header name.
fn probe(t: &Targets) -> Vec<(&'static str, String)> {
    let file = match std::fs::read(&t.file) {
        Ok(bytes) => format!("ALLOWED: read {} bytes of {}", bytes.len(), t.file),
        Err(e) => format!("denied: {e}"),
    };
    let dir = match std::fs::read_dir(&t.dir) {
        Ok(entries) => format!("ALLOWED: listed {} entries of {}", entries.count(), t.dir),
        Err(e) => format!("denied: {e}"),
    };
    let socket = match std::net::TcpStream::connect(t.connect.as_str()) {
        Ok(_) => format!("ALLOWED: connected to {}", t.connect),
        Err(e) => format!("denied: {e}"),
    };
    let env = match std::env::var_os(&t.env) {
        Some(v) => format!("ALLOWED: {} has {} bytes", t.env, v.len()),
        None => "absent".to_string(),
    };
    vec![
        ("x-probe-file", file),
        ("x-probe-dir", dir),
        ("x-probe-socket", socket),
        ("x-probe-env", env),
        ("x-probe-env-count", std::env::vars_os().count().to_string()),
        ("x-probe-args", std::env::args_os().count().to_string()),
    ]
}

/// A `set` op; the value keeps printable ASCII only (error texts may hold
/// anything, header values may not).
fn set(name: &str, value: &str) -> HeaderOp {
    let value: String = value.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect();
    HeaderOp::Set(Header { name: name.into(), value: value.into_bytes() })
}
