//! Hot reload from a test: rewrite the config gale was started with, send SIGHUP (or run
//! `gale reload`), and wait for gale to log how the reload ended.
//!
//! gale logs one line per reload on stderr: `reloaded; listening on ...` on success,
//! `reload failed, keeping the old config: ...` on any error. Counting those lines is how a
//! test knows a reload finished without sleeping.

use std::time::{Duration, Instant};

use crate::gale::Gale;

/// What gale logs after a reload swapped the config in.
pub const RELOADED: &str = "reloaded; listening on ";

/// What gale logs after a reload failed.
pub const RELOAD_FAILED: &str = "reload failed, keeping the old config";

/// How long a reload may take before the test calls it a hang (certificates, binds and a
/// loaded machine included).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// How a reload ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The new config is in force; the addresses gale now listens on, as logged.
    Reloaded(String),
    /// The old config stays; what gale logged from the failure line on.
    Failed(String),
}

impl Outcome {
    /// Panics unless the reload succeeded.
    #[track_caller]
    pub fn expect_reloaded(&self) {
        if let Outcome::Failed(log) = self {
            panic!("the reload failed:\n{log}");
        }
    }

    /// The failure log; panics if the reload succeeded.
    #[track_caller]
    pub fn expect_failed(&self) -> &str {
        match self {
            Outcome::Failed(log) => log,
            Outcome::Reloaded(addrs) => panic!("the reload succeeded (listening on {addrs}), expected a failure"),
        }
    }
}

/// Where gale's reload log stands now: pass it to [`wait`] after triggering a reload.
#[derive(Clone, Copy, Debug)]
pub struct Mark(usize);

/// The current position in gale's reload log.
pub fn mark(gale: &Gale) -> Mark {
    Mark(outcome_lines(&gale.stderr()).len())
}

/// Waits for the first reload outcome gale logs after `mark`; panics (with stderr) after 30 s.
#[track_caller]
pub fn wait(gale: &Gale, mark: Mark) -> Outcome {
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    loop {
        let stderr = gale.stderr();
        let lines = outcome_lines(&stderr);
        if let Some((offset, line)) = lines.get(mark.0) {
            return match line.split_once(RELOADED) {
                Some((_, addrs)) => Outcome::Reloaded(addrs.trim().to_owned()),
                None => Outcome::Failed(stderr[*offset..].to_owned()),
            };
        }
        assert!(
            Instant::now() < deadline,
            "gale logged no reload outcome within {RELOAD_TIMEOUT:?}; stderr:\n{stderr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes `config` over the file gale was started with, sends SIGHUP and waits for the outcome.
#[track_caller]
pub fn sighup(gale: &Gale, config: &str) -> Outcome {
    std::fs::write(gale.config_path(), config).expect("rewrite gale.toml");
    let before = mark(gale);
    gale.signal(libc::SIGHUP);
    wait(gale, before)
}

/// Every reload outcome line in `stderr`, with its byte offset.
fn outcome_lines(stderr: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut offset = 0;
    for line in stderr.split_inclusive('\n') {
        if line.contains(RELOADED) || line.contains(RELOAD_FAILED) {
            out.push((offset, line.trim_end()));
        }
        offset += line.len();
    }
    out
}
