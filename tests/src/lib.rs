//! gale's end-to-end harness: the real `gale` binary in front of real Tornado processes, driven
//! by real HTTP clients over loopback, every port OS-assigned.
//!
//! The pieces, each a builder that starts a real process and cleans up on `Drop` (the shape of
//! linkerd2-proxy's integration harness):
//!
//! - [`Tornado`]: one `tests/tornado/app.py` process (the venv's Python; `scripts/setup.sh`
//!   creates it), on a port the OS picked.
//! - [`ConfigBuilder`] renders a gale TOML config around a set of backends, and
//!   [`Gale::start`] runs the binary with it and waits until it is listening.
//! - [`http`]: a small HTTP/1.1 client over `TcpStream` that sends exactly the bytes a test
//!   asks for (framing tests need that; a full client would "fix" them) and parses the response.
//! - [`Capture`]: a backend that records the exact bytes it receives (the upload tests compare
//!   the forwarded form byte for byte), and [`multipart`] to build and check those forms.
//!
//! Every child process is started through [`process::spawn`] (killed with the test binary),
//! and a [`Gale`] dropped by a failing test prints the tail of its log.
//!
//! Everything panics with the processes' stderr on failure: a test failure should say what the
//! binary printed, not just "assertion failed".

pub mod capture;
pub mod config;
pub mod dns;
pub mod gale;
pub mod haproxy;
pub mod http;
pub mod multipart;
pub mod net;
pub mod netns;
mod output;
pub mod paths;
pub mod plugins;
pub mod process;
pub mod tornado;
// HTTPS, WebSocket, reload and admin helpers.
pub mod admin;
pub mod certs;
pub mod curl;
pub mod h2;
pub mod reload;
pub mod tls;
pub mod ws;

pub use capture::{Capture, Captured, Reply, Snapshot};
pub use config::ConfigBuilder;
pub use gale::{Finished, Gale, Launch, gale_command, run_gale};
pub use http::{Conn, Request, Response};
pub use libc::{SIGCONT, SIGINT, SIGKILL, SIGQUIT, SIGSTOP, SIGTERM};
pub use net::{dead_addr, free_port, wait_until};
pub use tornado::{Stats, Tornado, Whoami};
