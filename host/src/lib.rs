//! gale: a reverse proxy and load balancer for pools of Tornado (or any HTTP)
//! processes, extensible with sandboxed WebAssembly components.
//!
//! The architecture and the request flow are described in `docs/architecture.md`.

pub mod error;
pub mod plugin;
