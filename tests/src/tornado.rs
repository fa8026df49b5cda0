//! Real Tornado backends: `tests/tornado/app.py` processes on OS-assigned ports.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::http::{self, Request};
use crate::output::{Captured, drain};
use crate::{paths, process};

/// How long a backend may take to print its port (Python start-up on a loaded machine).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One running Tornado process; killed when dropped.
pub struct Tornado {
    name: String,
    addr: SocketAddr,
    child: Mutex<Child>,
    stderr: Captured,
}

/// A process started but not yet known to listen.
struct Starting {
    name: String,
    ip: std::net::IpAddr,
    child: Child,
    stdout: Receiver<String>,
    stderr: Captured,
}

impl Tornado {
    /// Starts one backend named `name` and waits until it listens.
    #[track_caller]
    pub fn spawn(name: &str) -> Tornado {
        Starting::new(name).ready()
    }

    /// Starts one backend on a given port (a backend that comes back where it was).
    #[track_caller]
    pub fn spawn_at(name: &str, port: u16) -> Tornado {
        Starting::with_port(name, port).ready()
    }

    /// Starts one backend listening on `ip:port` (`port` 0: the OS picks), for names that
    /// resolve to several loopback addresses with one port.
    #[track_caller]
    pub fn spawn_on(name: &str, ip: std::net::IpAddr, port: u16) -> Tornado {
        Starting::on(name, ip, port).ready()
    }

    /// Starts one backend on `ip:port` inside the network namespace at `netns` (a host of the
    /// multi-host test); ask it things from a thread in that namespace.
    #[track_caller]
    pub fn spawn_in(name: &str, netns: &std::path::Path, ip: std::net::IpAddr, port: u16) -> Tornado {
        Starting::on_in(name, ip, port, Some(netns)).ready()
    }

    /// Sets what its `/health` answers from now on: `status` after `delay` (asked directly,
    /// not through gale).
    #[track_caller]
    pub fn set_health(&self, status: u16, delay: Duration) {
        let response =
            http::send(self.addr, &Request::get(&format!("/health-set?status={status}&delay={}", delay.as_secs_f64())));
        response.expect_status(200);
    }

    /// Starts `n` backends (named `tornado-0` ...) at once, then waits for all of them.
    #[track_caller]
    pub fn spawn_pool(n: usize) -> Vec<Tornado> {
        let starting: Vec<Starting> = (0..n).map(|i| Starting::new(&format!("tornado-{i}"))).collect();
        starting.into_iter().map(Starting::ready).collect()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port (what `/whoami` reports as `port`).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The name it was given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its counters, asked directly (not through gale, and not counted).
    #[track_caller]
    pub fn stats(&self) -> Stats {
        let response = http::send(self.addr, &Request::get("/stats"));
        response.expect_status(200);
        response.json()
    }

    /// Its counters, or None if it does not answer (it died, or is dying).
    pub fn try_stats(&self) -> Option<Stats> {
        let mut conn = http::Conn::try_open(self.addr).ok()?;
        let response = conn.try_send(&Request::get("/stats")).ok()?;
        (response.status == 200).then(|| response.json())
    }

    /// How many requests for `path` it received (started, even if they never finished).
    #[track_caller]
    pub fn hits(&self, path: &str) -> u64 {
        self.stats().hits.get(path).copied().unwrap_or(0)
    }

    /// How many requests for `path` it is handling right now.
    #[track_caller]
    pub fn inflight(&self, path: &str) -> u64 {
        self.stats().inflight.get(path).copied().unwrap_or(0)
    }

    /// Its exit status if it has exited (a `/die` request kills it).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        child.try_wait().expect("try_wait on a tornado")
    }

    /// Whether it has exited.
    pub fn has_exited(&self) -> bool {
        self.exit_status().is_some()
    }

    /// Waits up to `timeout` for it to exit; returns whether it did.
    pub fn wait_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.has_exited() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends it a signal: `SIGSTOP` makes a backend that accepts connections (the kernel
    /// completes the handshake) and never answers; `SIGCONT` brings it back.
    pub fn signal(&self, signal: libc::c_int) {
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child, which
        // is reaped only under this lock (so the pid cannot have been reused).
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
    }

    /// Kills it now (a backend that crashed).
    pub fn kill(&self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }

    /// What it logged so far (Tornado's access log and errors).
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }
}

impl Drop for Tornado {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Starting {
    #[track_caller]
    fn new(name: &str) -> Starting {
        Self::with_port(name, 0)
    }

    #[track_caller]
    fn with_port(name: &str, port: u16) -> Starting {
        Self::on(name, Ipv4Addr::LOCALHOST.into(), port)
    }

    #[track_caller]
    fn on(name: &str, ip: std::net::IpAddr, port: u16) -> Starting {
        Self::on_in(name, ip, port, None)
    }

    #[track_caller]
    fn on_in(name: &str, ip: std::net::IpAddr, port: u16, netns: Option<&std::path::Path>) -> Starting {
        let python = paths::python();
        let mut command = Command::new(&python);
        if let Some(netns) = netns {
            crate::netns::join_on_spawn(&mut command, netns);
        }
        command
            .arg(paths::tornado_app())
            .args(["--port", &port.to_string(), "--name", name, "--host", &ip.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child =
            process::spawn(command).unwrap_or_else(|e| panic!("start {} tests/tornado/app.py: {e}", python.display()));
        let (_, stdout) = drain(child.stdout.take().expect("piped stdout"));
        let (stderr, _) = drain(child.stderr.take().expect("piped stderr"));
        Starting { name: name.to_owned(), ip, child, stdout, stderr }
    }

    #[track_caller]
    fn ready(mut self) -> Tornado {
        let line = self.stdout.recv_timeout(START_TIMEOUT);
        let port = line.as_deref().ok().and_then(|l| l.trim().parse::<u16>().ok());
        let Some(port) = port else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!("tornado {} did not print its port ({line:?}); stderr:\n{}", self.name, self.stderr.text());
        };
        Tornado {
            name: self.name,
            addr: SocketAddr::new(self.ip, port),
            child: Mutex::new(self.child),
            stderr: self.stderr,
        }
    }
}

/// What `/whoami` reports: what the backend received, after Tornado's `xheaders` processing.
#[derive(Clone, Debug, Deserialize)]
pub struct Whoami {
    /// The backend's port.
    pub port: u16,
    /// The backend's pid.
    pub pid: u32,
    /// The backend's name.
    pub name: String,
    /// `request.remote_ip`: from X-Real-IP (xheaders), else the socket peer.
    pub remote_ip: String,
    /// `request.protocol`: from X-Scheme / X-Forwarded-Proto (xheaders), else `http`.
    pub protocol: String,
    /// `request.host`: the Host header.
    pub host: String,
    /// The request method.
    pub method: String,
    /// The request target.
    pub uri: String,
    /// The request's HTTP version.
    pub version: String,
    /// Every header received, by Tornado's normalised name (`X-Real-Ip`).
    pub headers: BTreeMap<String, Vec<String>>,
    /// The body's length.
    pub body_length: usize,
    /// The client port of the connection the request came on (gale's upstream connection).
    pub peer_port: Option<u16>,
}

impl Whoami {
    /// Every value of a header the backend received (names compared case-insensitively).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, values)| values.iter().map(String::as_str))
            .collect()
    }

    /// The only value of a header; panics if it came more than once.
    #[track_caller]
    pub fn header(&self, name: &str) -> Option<&str> {
        let values = self.header_all(name);
        assert!(values.len() <= 1, "{name} reached the backend {} times: {values:?}", values.len());
        values.first().copied()
    }
}

/// A backend's counters from `/stats`.
#[derive(Clone, Debug, Deserialize)]
pub struct Stats {
    /// Requests received per path.
    pub hits: HashMap<String, u64>,
    /// Requests being handled per path.
    pub inflight: HashMap<String, u64>,
    /// Distinct client connections (address, port) seen.
    pub peers: usize,
    /// The `Host` of the last `/health` request.
    #[serde(default)]
    pub health_host: Option<String>,
    /// Client connections open now, the one asking included (idle keep-alive ones too).
    #[serde(default)]
    pub open_connections: usize,
}
