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

use std::cell::Cell;

use gale_plugin::{HeaderOp, HeaderPolicy, LogLevel, RequestHead, ResponseHead};

#[derive(serde::Deserialize)]
#[serde(default)]
struct Probe {
    file: String,
    dir: String,
    connect: String,
    env: String,
    /// This instance's response count.
    #[serde(skip)]
    calls: Cell<u64>,
}

impl Default for Probe {
    fn default() -> Self {
        let (file, dir, connect, env) = ("/etc/hostname".into(), "/".into(), "127.0.0.1:80".into(), "PATH".into());
        Probe { file, dir, connect, env, calls: Cell::new(0) }
    }
}

impl HeaderPolicy for Probe {
    type Config = Self;
    fn new(config: Self) -> Result<Self, String> {
        Ok(config)
    }

    fn on_response(&self, _head: &RequestHead, _response: &ResponseHead) -> Vec<HeaderOp> {
        self.calls.set(self.calls.get() + 1);
        let report = probe(self);
        let line: Vec<String> = report.iter().map(|(k, v)| format!("{k}={v}")).collect();
        gale_plugin::log(LogLevel::Info, &format!("test-probe: {}", line.join("; ")));
        let mut ops: Vec<HeaderOp> = report.into_iter().map(|(name, value)| set(name, &value)).collect();
        ops.push(set("x-probe-calls", &self.calls.get().to_string()));
        ops
    }
}

gale_plugin::header_policy!(Probe);

/// Tries each capability; what it saw, per header name.
fn probe(t: &Probe) -> Vec<(&'static str, String)> {
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
    HeaderOp::set(name, value)
}
