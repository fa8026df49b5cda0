//! curl, the real HTTPS and HTTP/2 client: it verifies gale's certificate against the test CA
//! (name included) and negotiates HTTP/2 by ALPN on its own, so a test that passes through it
//! passes through what users run. `scripts/setup.sh` installs it when missing.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

/// What one curl run printed.
pub struct CurlOutput {
    /// Whether curl exited 0.
    pub success: bool,
    /// curl's exit code.
    pub code: Option<i32>,
    /// The response body (`-o -` is not used: stdout is the `-w` text).
    pub body: Vec<u8>,
    /// What `-w` printed.
    pub write_out: String,
    /// curl's stderr (`-sS`: errors only, or the `-v` trace).
    pub stderr: String,
}

impl std::fmt::Debug for CurlOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.text();
        let preview: String = text.chars().take(600).collect();
        f.debug_struct("CurlOutput")
            .field("code", &self.code)
            .field("write_out", &self.write_out)
            .field("stderr", &self.stderr)
            .field("body", &format_args!("{preview:?} ({} bytes)", self.body.len()))
            .finish()
    }
}

impl CurlOutput {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with everything curl printed if it is not.
    #[track_caller]
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("curl body is not the expected JSON ({e}): {self:#?}"))
    }
}

/// A curl request to `url`, resolving every `(name, port)` of `resolve` to `addr`'s IP and
/// trusting `ca` (a PEM file); `extra` are further curl arguments. `-w` prints
/// `%{http_code} %{http_version}` unless `extra` sets its own.
#[track_caller]
pub fn curl(url: &str, ca: Option<&Path>, resolve: &[(&str, SocketAddr)], extra: &[&str]) -> CurlOutput {
    let body = tempfile::NamedTempFile::new().expect("temp file for the body");
    let mut command = Command::new("curl");
    command.args(["-sS", "--max-time", "30", "-o"]).arg(body.path());
    if !extra.contains(&"-w") {
        command.args(["-w", "%{http_code} %{http_version}"]);
    }
    if let Some(ca) = ca {
        command.arg("--cacert").arg(ca);
    }
    for (name, addr) in resolve {
        command.arg("--resolve").arg(format!("{name}:{}:{}", addr.port(), addr.ip()));
    }
    command.args(extra).arg(url).stdin(Stdio::null());
    // curl's own --max-time is 30 s; the harness's bound only catches a curl that ignores it.
    let out = crate::process::output(command, "curl", std::time::Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("cannot run curl ({e}): run scripts/setup.sh, which installs it"));
    CurlOutput {
        success: out.status.success(),
        code: out.status.code(),
        body: std::fs::read(body.path()).expect("read the body curl wrote"),
        write_out: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
