//! The `gale` binary under test, as a running process or a one-shot command.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::http::{self, Conn, Request, Response};
use crate::output::{Captured, drain};
use crate::{paths, process};

/// How long gale may take to print its `listening` line.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a one-shot command or a shutdown may take before the test calls it a hang.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The line gale prints on stdout once every listener is bound.
const LISTENING: &str = "gale: listening on ";

/// How [`Gale::start_with`] starts gale: another binary than [`paths::gale_bin`] (an upgrade
/// test runs a copy), extra environment variables (`NOTIFY_SOCKET`), another network namespace
/// (the multi-host test).
#[derive(Clone, Debug, Default)]
pub struct Launch {
    /// The binary; `None` for [`paths::gale_bin`].
    pub bin: Option<PathBuf>,
    /// Added to the environment.
    pub env: Vec<(String, String)>,
    /// The network namespace (`/run/netns/NAME`) gale runs in; `None`: the test's.
    pub netns: Option<PathBuf>,
}

/// A running `gale run --config FILE`; killed when dropped.
pub struct Gale {
    child: Child,
    addrs: Vec<SocketAddr>,
    stdout: Captured,
    stderr: Captured,
    config_path: PathBuf,
    dir: TempDir,
}

impl Gale {
    /// Writes `config` to `gale.toml` in a fresh temporary directory (also gale's working
    /// directory), starts the binary and waits for its `gale: listening on ...` line. Panics
    /// with gale's stderr if it exits or stays silent.
    #[track_caller]
    pub fn start(config: &str) -> Gale {
        Gale::start_with(config, &Launch::default())
    }

    /// [`Gale::start`] with another binary or extra environment variables.
    #[track_caller]
    pub fn start_with(config: &str, launch: &Launch) -> Gale {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("gale.toml");
        std::fs::write(&config_path, config).expect("write gale.toml");
        let mut command = match &launch.bin {
            Some(bin) => Command::new(bin),
            None => gale_command(),
        };
        command.envs(launch.env.iter().map(|(k, v)| (k, v)));
        if let Some(netns) = &launch.netns {
            crate::netns::join_on_spawn(&mut command, netns);
        }
        command
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = process::spawn(command).expect("spawn gale");
        let (stdout, lines) = drain(child.stdout.take().expect("piped stdout"));
        let (stderr, stderr_lines) = drain(child.stderr.take().expect("piped stderr"));

        let deadline = Instant::now() + START_TIMEOUT;
        let addrs = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(list) = line.strip_prefix(LISTENING) {
                        break parse_addrs(list)
                            .unwrap_or_else(|| panic!("gale printed a bad listening line {line:?}"));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "gale did not print `{LISTENING}...` within {START_TIMEOUT:?}\n\
                         config:\n{config}\nstdout:\n{}\nstderr:\n{}",
                        stdout.text(),
                        stderr.text()
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = child.wait().expect("wait gale");
                    // The stderr reader ends at EOF: wait for it so the last lines are there.
                    while stderr_lines.recv_timeout(Duration::from_secs(5)).is_ok() {}
                    panic!(
                        "gale exited ({status}) before listening\nconfig:\n{config}\n\
                         stdout:\n{}\nstderr:\n{}",
                        stdout.text(),
                        stderr.text()
                    );
                }
            }
        };
        Gale { child, addrs, stdout, stderr, config_path, dir }
    }

    /// The first listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every listening address, in the order gale printed them.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// gale's working directory (a temporary directory, removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config file gale was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// What gale wrote to stderr so far (its logs).
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// What gale wrote to stdout so far (the listening line, an stdout access log).
    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    /// Sends a signal (`SIGTERM`, `SIGINT`, `SIGQUIT`, ...).
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child, which
        // we have not reaped yet (so the pid cannot have been reused).
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
    }

    /// Waits for gale to exit; panics (with its stderr) if it takes longer than 30 s.
    #[track_caller]
    pub fn wait(&mut self) -> ExitStatus {
        match self.wait_timeout(EXIT_TIMEOUT) {
            Some(status) => status,
            None => panic!("gale did not exit within {EXIT_TIMEOUT:?}; stderr:\n{}", self.stderr()),
        }
    }

    /// Waits up to `timeout` for gale to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait gale") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A new client connection to the first listener.
    #[track_caller]
    pub fn conn(&self) -> Conn {
        Conn::open(self.addr())
    }

    /// Sends a request on a new connection.
    #[track_caller]
    pub fn send(&self, request: &Request) -> Response {
        http::send(self.addr(), request)
    }

    /// GET on a new connection.
    #[track_caller]
    pub fn get(&self, target: &str) -> Response {
        http::get(self.addr(), target)
    }
}

/// How much of gale's log a failing test prints.
const TAIL_LINES: usize = 80;

impl Drop for Gale {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        // A test failed while this gale ran: say what gale logged, whatever the assertion
        // printed (cargo test shows a failing test's stderr).
        if std::thread::panicking() {
            eprintln!("{}", log_tail(&self.stderr.text(), TAIL_LINES, self.child.id()));
        }
    }
}

/// The last `n` lines of `log`, framed for a failing test's output.
fn log_tail(log: &str, n: usize, pid: u32) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let skipped = lines.len().saturating_sub(n);
    let mut out =
        format!("---- gale (pid {pid}) stderr, last {} of {} lines ----\n", lines.len() - skipped, lines.len());
    for line in &lines[skipped..] {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("---- end of gale stderr ----");
    out
}

fn parse_addrs(list: &str) -> Option<Vec<SocketAddr>> {
    let addrs: Option<Vec<SocketAddr>> = list.split_whitespace().map(|a| a.parse().ok()).collect();
    addrs.filter(|a| !a.is_empty())
}

/// A `Command` for the gale binary (see [`paths::gale_bin`]).
pub fn gale_command() -> Command {
    Command::new(paths::gale_bin())
}

/// A finished one-shot gale command.
#[derive(Debug)]
pub struct Finished {
    /// The exit status.
    pub status: ExitStatus,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

impl Finished {
    /// The exit code (None if killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The non-empty lines of stderr.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| !l.trim().is_empty()).collect()
    }
}

/// Runs `gale ARGS` in `dir` (or the current directory) to completion; panics if it is still
/// running after 30 s (a command that should fail fast must not start serving).
#[track_caller]
pub fn run_gale(args: &[&str], dir: Option<&Path>) -> Finished {
    let mut command = gale_command();
    command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let mut child = process::spawn(command).expect("spawn gale");
    let (stdout, out_lines) = drain(child.stdout.take().expect("piped stdout"));
    let (stderr, err_lines) = drain(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + EXIT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait gale") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`gale {}` still running after {EXIT_TIMEOUT:?}\nstdout:\n{}\nstderr:\n{}",
                args.join(" "),
                stdout.text(),
                stderr.text()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // The readers end when the pipes close: wait for both so nothing is lost.
    while out_lines.recv_timeout(Duration::from_secs(5)).is_ok() {}
    while err_lines.recv_timeout(Duration::from_secs(5)).is_ok() {}
    Finished { status, stdout: stdout.text(), stderr: stderr.text() }
}
