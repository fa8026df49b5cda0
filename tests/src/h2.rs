//! A real HTTP/2 client for abuse tests: `tests/h2/abuse.py`, built on the python `h2` library
//! (pinned in scripts/requirements.txt, installed in the venv by scripts/setup.sh). Each run is
//! one scenario on one TLS connection (ALPN h2) and prints what came back as JSON.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use serde::Deserialize;

use crate::paths::{python, repo_root};

/// What the server sent back on the scenario's connection.
#[derive(Debug, Deserialize)]
pub struct Outcome {
    /// `:status` per stream id.
    pub status: BTreeMap<String, u16>,
    /// Response body per stream id (text, cut at 2,000 characters).
    pub body: BTreeMap<String, String>,
    /// RST_STREAM error code per stream id.
    pub reset: BTreeMap<String, u32>,
    /// The GOAWAY error code, if the server sent one.
    pub goaway: Option<u32>,
    /// Whether the server closed the connection (EOF or reset).
    pub closed: bool,
    /// The client-side error that ended reading, if any.
    pub error: Option<String>,
    /// The stream the scenario's request used (request, hpack-bomb).
    pub stream: Option<u32>,
    /// How many streams or frames the scenario sent (rapid-reset, continuation).
    pub sent: Option<u64>,
}

impl Outcome {
    /// The status of the scenario's own stream.
    pub fn stream_status(&self) -> Option<u16> {
        self.stream.and_then(|s| self.status.get(&s.to_string()).copied())
    }

    /// The RST_STREAM code of the scenario's own stream.
    pub fn stream_reset(&self) -> Option<u32> {
        self.stream.and_then(|s| self.reset.get(&s.to_string()).copied())
    }

    /// The body of the scenario's own stream.
    pub fn stream_body(&self) -> &str {
        self.stream.and_then(|s| self.body.get(&s.to_string())).map_or("", String::as_str)
    }
}

/// HTTP/2 error codes (RFC 9113 7) the tests look for.
pub const PROTOCOL_ERROR: u32 = 0x1;
/// The code servers use to tell a client to slow down.
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// Runs `scenario` against `addr` (TLS, SNI `sni`, trusting `ca`) with `args` (further
/// `--count N`, `--header name=value`, `--authority a`); panics with the script's output if it
/// does not print an outcome.
#[track_caller]
pub fn run(scenario: &str, addr: SocketAddr, sni: &str, ca: &Path, args: &[&str]) -> Outcome {
    let script = repo_root().join("tests").join("h2").join("abuse.py");
    let mut command = Command::new(python());
    command
        .arg(&script)
        .arg(scenario)
        .arg("--addr")
        .arg(addr.to_string())
        .arg("--sni")
        .arg(sni)
        .arg("--ca")
        .arg(ca)
        .args(args);
    let out = crate::process::output(command, scenario, std::time::Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{scenario} failed ({}):\nstdout: {stdout}\nstderr: {stderr}", out.status);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{scenario} printed no outcome ({e}):\nstdout: {stdout}\nstderr: {stderr}"))
}
