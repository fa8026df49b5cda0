//! Addresses and waiting: OS-assigned ports only, and polling instead of sleeping.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

/// An address where nothing listens: a port the OS gave us, then closed. Connecting to it is
/// refused, which is what a crashed backend looks like to a proxy.
pub fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr")
}

/// A port that was free a moment ago, for configs that need the same port twice (several
/// server blocks on one listener). Prefer `listen = ["127.0.0.1:0"]` whenever one is enough.
pub fn free_port() -> u16 {
    dead_addr().port()
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `timeout`.
///
/// The timeout only detects a hang: tests never pass or fail on timing.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
