//! gale: a reverse proxy and load balancer for pools of Tornado (or any
//! HTTP) processes, extensible with sandboxed WebAssembly components.
//!
//! A request flows one way: `server` (listeners, connections, hyper) hands
//! it to `pipeline::handle`, whose module documentation is the one list of
//! the phases and their order (framing, route and plugin hooks, limits,
//! handler, finish); failures at any step become a response in `error`.
//! Only `pipeline` knows that order; the other modules are leaves. The
//! module map is in `docs/architecture.md`.
//!
//! Beside the request path, `supervisor` runs the backends of upstreams
//! with a `process` section (start, watch, restart, rolling restart); it
//! moves them in and out of the pools through the hooks `supervised` wires
//! up.

pub mod access_log;
pub mod admin;
pub mod attach;
pub mod body;
pub mod check_report;
pub mod compress;
pub mod config;
pub mod config_watch;
pub mod connections;
pub mod daemon;
pub mod error;
pub mod explain;
pub mod framing;
pub mod heap;
pub mod import;
pub mod lifecycle;
pub mod listeners;
pub mod log_limit;
pub mod metrics;
pub mod pipeline;
pub mod plugin;
pub mod plugin_build;
pub mod plugin_list;
pub mod plugin_new;
pub mod plugin_runner;
pub mod proxy;
pub mod recent_errors;
pub mod router;
pub mod server;
pub mod signals;
pub mod site;
pub mod static_files;
pub mod supervised;
pub mod supervisor;
pub mod systemd;
pub mod tenancy;
pub mod tls;
pub mod upgrade;
pub mod upload;
pub mod upstream;
pub mod uri_path;
