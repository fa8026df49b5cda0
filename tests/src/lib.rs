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
//!
//! Everything panics with the processes' stderr on failure: a test failure should say what the
//! binary printed, not just "assertion failed".

pub mod config;
pub mod gale;
pub mod http;
pub mod net;
mod output;
pub mod paths;
pub mod tornado;

pub use config::ConfigBuilder;
pub use gale::{Finished, Gale, gale_command, run_gale};
pub use http::{Conn, Request, Response};
pub use libc::{SIGINT, SIGKILL, SIGQUIT, SIGTERM};
pub use net::{dead_addr, free_port, wait_until};
pub use tornado::{Stats, Tornado, Whoami};
