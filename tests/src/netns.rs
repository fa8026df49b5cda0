//! Several hosts on one machine: Linux network namespaces joined by a bridge, made and removed
//! by the test (root only). Every address lives inside the namespaces (10.231.0.0/24 on the
//! bridge); the machine's own network is not touched.
//!
//! A [`Lan`] is a "switch" namespace holding a bridge; each [`Host`] is a namespace with one
//! veth interface `eth0` plugged into it. Processes are started in a host with
//! [`Host::join_on_spawn`] (the child calls setns(2) before exec); the test's own threads reach a
//! host's network with [`Host::run`] or [`Host::enter`] (setns on one thread). [`Lan`]'s `Drop`
//! deletes every namespace it made, also when the test panics; namespaces left by a test process
//! that was killed are deleted by the next [`Lan::create`].

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The prefix of every namespace the tests make: `galet<pid>-<host>`.
const PREFIX: &str = "galet";

/// Why this machine cannot make network namespaces for a test, if it cannot (not root, no `ip`,
/// or the kernel refuses).
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (network namespaces need CAP_SYS_ADMIN)".into());
    }
    let probe = format!("{PREFIX}{}-probe", std::process::id());
    match Command::new("ip").args(["netns", "add", &probe]).output() {
        Err(e) => Some(format!("no `ip` command ({e}); install iproute2")),
        Ok(out) if !out.status.success() => {
            Some(format!("`ip netns add` failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
        }
        Ok(_) => {
            let _ = Command::new("ip").args(["netns", "delete", &probe]).output();
            None
        }
    }
}

/// Runs `ip ARGS`; panics with its stderr on failure.
#[track_caller]
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| panic!("ip {}: {e}", args.join(" ")));
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
}

/// A bridge in a namespace of its own, and the host namespaces plugged into it.
pub struct Lan {
    switch: String,
    names: Vec<String>,
}

/// One host: a network namespace with `eth0` at `10.231.0.N/24` and `lo` up.
pub struct Host {
    name: String,
    ip: Ipv4Addr,
    ns: File,
}

impl Lan {
    /// Makes the switch namespace and its bridge (after deleting namespaces that test processes
    /// no longer running left behind).
    #[track_caller]
    pub fn create() -> Lan {
        remove_stale();
        let switch = format!("{PREFIX}{}-switch", std::process::id());
        ip(&["netns", "add", &switch]);
        let lan = Lan { switch: switch.clone(), names: vec![switch.clone()] };
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        lan
    }

    /// Adds a host at `10.231.0.{last}`; `label` names its namespace and its switch port.
    #[track_caller]
    pub fn host(&mut self, label: &str, last: u8) -> Host {
        let name = format!("{PREFIX}{}-{label}", std::process::id());
        ip(&["netns", "add", &name]);
        self.names.push(name.clone());
        let port = format!("p-{label}");
        ip(&["-n", &name, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", &self.switch]);
        ip(&["-n", &self.switch, "link", "set", &port, "master", "br0"]);
        ip(&["-n", &self.switch, "link", "set", &port, "up"]);
        let address = Ipv4Addr::new(10, 231, 0, last);
        ip(&["-n", &name, "addr", "add", &format!("{address}/24"), "dev", "eth0"]);
        ip(&["-n", &name, "link", "set", "eth0", "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        let path = netns_path(&name);
        let ns = File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        Host { name, ip: address, ns }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for name in self.names.drain(..).rev() {
            let _ = Command::new("ip").args(["netns", "delete", &name]).output();
        }
    }
}

fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// Deletes the namespaces of test processes that are gone (killed before their `Drop` ran).
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|rest| rest.split('-').next()) else { continue };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = Command::new("ip").args(["netns", "delete", name]).output();
        }
    }
}

impl Host {
    /// Its address on the LAN.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The namespace's name (`ip netns exec NAME ...`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's file, for [`join_on_spawn`] (`Launch::netns`).
    pub fn path(&self) -> PathBuf {
        netns_path(&self.name)
    }

    /// Takes its link down (a cable pulled): packets to and from it are lost, nothing is refused.
    #[track_caller]
    pub fn cut(&self) {
        ip(&["-n", &self.name, "link", "set", "eth0", "down"]);
    }

    /// Brings its link back up.
    #[track_caller]
    pub fn restore(&self) {
        ip(&["-n", &self.name, "link", "set", "eth0", "up"]);
    }

    /// Moves the calling thread into this host's network (for good: call it on a thread of its
    /// own). Sockets the thread opens afterwards live there.
    #[track_caller]
    pub fn enter(&self) {
        set_thread_netns(&self.ns, &self.name);
    }

    /// Runs `f` on a thread inside this host's network and returns what it returns (a panic in
    /// `f` is passed on).
    #[track_caller]
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            let handle = s.spawn(|| {
                self.enter();
                f()
            });
            handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

/// Moves the calling thread into the network namespace at `netns` (a [`Host::path`]), for good.
#[track_caller]
pub fn enter(netns: &Path) {
    let ns = File::open(netns).unwrap_or_else(|e| panic!("open {}: {e}", netns.display()));
    set_thread_netns(&ns, &netns.display().to_string());
}

#[track_caller]
fn set_thread_netns(ns: &File, name: &str) {
    // SAFETY: setns(2) on an open namespace file; it changes only this thread's network
    // namespace.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns into {name}: {}", io::Error::last_os_error());
}

/// Makes `command`'s child join the network namespace at `netns` before it runs.
#[track_caller]
pub fn join_on_spawn(command: &mut Command, netns: &Path) {
    let ns = File::open(netns).unwrap_or_else(|e| panic!("open {}: {e}", netns.display()));
    // SAFETY: the closure runs in the child between fork and exec and only calls setns(2), which
    // is async-signal-safe, on a descriptor the parent opened (kept alive by the closure).
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || {
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
        });
    }
}
