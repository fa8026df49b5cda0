//! The standing adversarial suite: gale's edge tried as an attacker would, through the real binary
//! in front of real Tornado processes, loopback only, every loop bounded. One file per attack
//! surface; each case asserts the answer gale must give (a status, a closed connection, a log line,
//! a counter), never a timing.

mod backends;
mod breaker;
mod connections;
mod framing;
mod headers;
mod http2;
mod paths;
