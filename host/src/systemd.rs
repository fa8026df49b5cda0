//! systemd's notify protocol (`Type=notify`, `sd_notify(3)`): `READY=1` once
//! gale serves, `RELOADING=1` with `MONOTONIC_USEC` when a reload starts and
//! `READY=1` when it is over, `STOPPING=1` at a stop, `MAINPID=` when an
//! upgrade hands the service to a new process. One datagram per state
//! change to the socket `$NOTIFY_SOCKET` names: a path, or `@name` in the
//! abstract namespace; without it every call does nothing. A failed send is
//! logged, never fatal: gale serves the same with or without a service
//! manager. (The `sd-notify` crate does not reach abstract sockets, which is
//! what systemd itself uses in containers and user sessions; the protocol
//! is these few lines.)

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Startup, or a reload, is over.
pub fn ready() {
    send("READY=1\n");
}

/// A reload starts. systemd (v253 on) wants the monotonic clock with it, to
/// tell this reload from an earlier one.
pub fn reloading() {
    send(&format!("RELOADING=1\nMONOTONIC_USEC={}\n", monotonic_usec()));
}

/// gale is stopping.
pub fn stopping() {
    send("STOPPING=1\n");
}

/// The service's main process is now `pid` (an upgrade's new gale).
pub fn main_pid(pid: u32) {
    send(&format!("MAINPID={pid}\n"));
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares with.
fn monotonic_usec() -> u128 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let secs = u128::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u128::try_from(now.tv_nsec).unwrap_or(0);
    secs * 1_000_000 + nanos / 1_000
}

/// Where `$NOTIFY_SOCKET` points: `@name` is abstract, anything else a path.
fn address(spec: &std::ffi::OsStr) -> io::Result<SocketAddr> {
    use std::os::unix::ffi::OsStrExt;
    match spec.as_bytes().strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(spec),
    }
}

fn send(message: &str) {
    let Some(spec) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let sent = address(&spec).and_then(|addr| {
        let socket = UnixDatagram::unbound()?;
        socket.send_to_addr(message.as_bytes(), &addr)
    });
    if let Err(e) = sent {
        let first = message.lines().next().unwrap_or_default();
        tracing::warn!(error = %e, "cannot send {first} to systemd (NOTIFY_SOCKET={})", spec.to_string_lossy());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_names_an_abstract_socket_and_anything_else_a_path() {
        let abstract_addr = address(std::ffi::OsStr::new("@gale/notify")).expect("abstract");
        assert_eq!(abstract_addr.as_abstract_name(), Some(&b"gale/notify"[..]));
        let path = address(std::ffi::OsStr::new("/run/systemd/notify")).expect("path");
        assert_eq!(path.as_pathname(), Some(std::path::Path::new("/run/systemd/notify")));
    }

    #[test]
    fn the_monotonic_clock_moves_forward() {
        let a = monotonic_usec();
        let b = monotonic_usec();
        assert!(a > 0 && b >= a);
    }
}
