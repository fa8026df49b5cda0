//! The validated, ready-to-run config. Every value here has been checked:
//! sizes and durations are parsed, names resolved to indices, addresses
//! parsed. Built only by `validate.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use super::raw::{AccessLogFormat, Balance, LogLevel, NextUpstream, OnError};
pub use super::template::{ChildVars, Template};
pub use super::tenant::{DEFAULT_MAX_CONCURRENT, DEFAULT_MAX_INSTANCES, GLOBAL_TENANT, TenantConfig, TenantId};
use super::units::ByteSize;

/// The whole validated config.
#[derive(Debug, Clone)]
pub struct Config {
    pub global: Global,
    pub http: Http,
    /// The admin listener, if configured.
    pub admin: Option<SocketAddr>,
    /// Pools, indexed by [`UpstreamId`].
    pub upstreams: Vec<Upstream>,
    /// Virtual hosts in file order.
    pub servers: Vec<Server>,
    /// One entry per distinct listen address, in first-seen order.
    pub listeners: Vec<Listener>,
    /// `[tenant.NAME]` sections, sorted by name, indexed by [`TenantId`].
    pub tenants: Vec<TenantConfig>,
}

/// Index of an upstream pool in [`Config::upstreams`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UpstreamId(pub usize);

/// Where a log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Off,
    Stdout,
    Stderr,
    File(PathBuf),
}

/// `[global]`.
#[derive(Debug, Clone)]
pub struct Global {
    pub threads: usize,
    pub max_connections: usize,
    pub pid_file: Option<PathBuf>,
    pub error_log: LogTarget,
    pub log_level: LogLevel,
    pub access_log: LogTarget,
    pub access_log_format: AccessLogFormat,
    pub shutdown_timeout: Duration,
    pub shutdown_delay: Duration,
    pub upgrade_timeout: Duration,
    /// `Some(interval)` when `watch_config` is on.
    pub watch_config: Option<Duration>,
    pub plugin_dir: PathBuf,
    pub plugin_cache_dir: PathBuf,
    pub plugin_memory: ByteSize,
    pub plugin_hook_timeout: Duration,
    pub plugin_max_concurrent: usize,
    pub plugin_max_instances: usize,
    pub plugin_breaker: crate::plugin::BreakerSettings,
}

/// `[http]`.
#[derive(Debug, Clone)]
pub struct Http {
    pub keepalive_timeout: Duration,
    pub client_max_body_size: ByteSize,
    pub client_header_timeout: Duration,
    pub client_body_timeout: Duration,
    pub max_header_size: ByteSize,
    pub max_uri_size: ByteSize,
    /// Most header fields in an HTTP/1.1 request head (more: 431).
    pub max_headers: usize,
    pub http2: bool,
    pub http2_max_concurrent_streams: u32,
    /// `None`: gzip off.
    pub gzip: Option<crate::compress::GzipConfig>,
    /// Merge `//` in the request path before matching locations (nginx's
    /// `merge_slashes`; `uri_path`).
    pub merge_slashes: bool,
}

/// `[upstream.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub name: String,
    pub servers: Vec<Backend>,
    pub balance: Balance,
    pub next_upstream: NextUpstream,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// 0 disables passive health checks (nginx `max_fails=0`).
    pub max_fails: u32,
    pub fail_timeout: Duration,
    /// Idle keep-alive connections kept per backend.
    pub keepalive: usize,
    /// How long an idle keep-alive connection is kept before it is closed.
    pub keepalive_timeout: Duration,
    /// Children gale supervises; they are `servers[0..count]`, in index order.
    pub process: Option<Process>,
    /// Servers given by DNS name: each stands for every address the name
    /// resolves to, re-resolved while gale runs.
    pub named: Vec<NamedBackend>,
    /// DNS servers asked for `named` (empty: the system's resolv.conf).
    pub resolvers: Vec<SocketAddr>,
    /// The longest an answer is kept before the name is asked again.
    pub resolve_interval: Duration,
    pub health_check: Option<HealthCheck>,
}

/// A server written `"name:port"`: resolved to A and AAAA records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedBackend {
    pub host: String,
    pub port: u16,
    /// The weight of each of its addresses.
    pub weight: u32,
}

/// `health_check = { ... }`: active checks of every backend of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub path: String,
    /// The `Host` header sent (default: the upstream's name).
    pub host: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Passed checks in a row that bring a down backend back.
    pub rise: u32,
    /// Failed checks in a row that take a backend down.
    pub fall: u32,
    /// Statuses that pass, inclusive.
    pub expect_status: (u16, u16),
}

/// `process = { ... }`: the children gale starts for an upstream. Child
/// `i` listens on `127.0.0.1:(base_port + i)` and is the pool's backend `i`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Program and arguments; the program is `command[0]`.
    pub command: Vec<Template>,
    pub count: usize,
    pub base_port: u16,
    /// Working directory (absolute, or relative to gale's own).
    pub cwd: PathBuf,
    /// Added to gale's environment, in file order.
    pub env: Vec<(String, Template)>,
    pub stop_signal: StopSignal,
    /// How long a child may take to exit after `stop_signal` before SIGKILL;
    /// also how long a rolling restart waits for in-flight requests.
    pub stop_timeout: Duration,
    /// How long a child may take to accept on its port; an exit sooner than
    /// this after start counts as a failed start.
    pub start_timeout: Duration,
    /// Failed starts in a row tolerated before the child is marked failed
    /// (it is tried `start_retries + 1` times, as supervisord does).
    pub start_retries: u32,
    pub log: ChildLog,
    /// The config file's directory: a relative `log` path is resolved
    /// against it.
    pub config_dir: PathBuf,
}

impl Process {
    /// The port of child `index`.
    pub fn port(&self, index: usize) -> u16 {
        // Validation keeps base_port + count - 1 within u16.
        self.base_port.saturating_add(u16::try_from(index).unwrap_or(u16::MAX))
    }
}

/// The signal that asks a child to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Term,
    Int,
    Quit,
    Hup,
    Kill,
    Usr1,
    Usr2,
}

impl StopSignal {
    /// Every signal, by its config name (without `SIG`).
    pub const ALL: [(&'static str, StopSignal); 7] = [
        ("TERM", StopSignal::Term),
        ("INT", StopSignal::Int),
        ("QUIT", StopSignal::Quit),
        ("HUP", StopSignal::Hup),
        ("KILL", StopSignal::Kill),
        ("USR1", StopSignal::Usr1),
        ("USR2", StopSignal::Usr2),
    ];

    /// The name as written in the config (`TERM`).
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, s)| *s == self).map_or("TERM", |(n, _)| n)
    }
}

/// Where a child's stdout and stderr go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildLog {
    Off,
    /// gale's stderr, each line prefixed with the child's name.
    Stderr,
    /// gale's stdout, each line prefixed with the child's name.
    Stdout,
    /// A file per the template (relative to `config_dir`), appended to and
    /// reopened on SIGUSR1.
    File(Template),
}

/// One backend of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub addr: SocketAddr,
    pub weight: u32,
}

/// `[[server]]`.
#[derive(Debug, Clone)]
pub struct Server {
    pub names: Vec<ServerName>,
    pub listen: Vec<SocketAddr>,
    pub default_server: bool,
    pub tls: Option<ServerTls>,
    pub redirect_http: bool,
    pub locations: Vec<Location>,
    /// Whose plugins this server's locations run; `None`: `[global]`'s.
    pub tenant: Option<TenantId>,
}

/// A server's certificate, loaded and checked against its key.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub certified: Arc<rustls::sign::CertifiedKey>,
}

/// A `server_name` entry, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerName {
    /// `www.example.org`
    Exact(String),
    /// `*.example.org`, stored as the suffix `.example.org`.
    Wildcard(String),
}

/// `[[server.location]]`.
#[derive(Debug, Clone)]
pub struct Location {
    pub matcher: PathMatch,
    pub handler: Handler,
    /// Plugins run on this location's requests and responses, in order.
    pub plugins: Vec<Attachment>,
}

/// A plugin attached to a location.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    /// As written; `-` and `_` name the same file.
    pub name: String,
    /// Handed to the plugin once per instance, as JSON.
    pub config: toml::Table,
    pub on_error: OnError,
    /// Where the attachment is in the config file, for `gale check`.
    pub line: usize,
    pub col: usize,
    /// Where its `config` table is (the attachment's place when it has
    /// none), and each value inside it by key path (`deny[0].status`): a
    /// config the plugin rejects is reported there.
    pub config_at: (usize, usize),
    pub config_keys: Vec<(String, usize, usize)>,
}

impl Attachment {
    /// Where a rejection of this attachment's config by the plugin is
    /// reported, and the message: at the key the plugin names (see
    /// `plugin_keys`), without positions in the JSON text it was given.
    pub fn rejection(&self, config_json: &str, message: &str) -> (usize, usize, String) {
        let r = super::plugin_keys::rejection(config_json, message);
        let found = r.path.as_deref().and_then(|path| {
            let mut path = path;
            loop {
                if let Some((p, line, col)) = self.config_keys.iter().find(|(p, ..)| p == path) {
                    return Some((p.as_str(), *line, *col));
                }
                path = &path[..path.rfind(['.', '['])?];
            }
        });
        // The key as the plugin named it, placed at its nearest written part.
        let message = match &r.path {
            Some(path) => format!("`{path}`: {}", r.message),
            None => r.message,
        };
        match found {
            Some((_, line, col)) => (line, col, message),
            None => (self.config_at.0, self.config_at.1, message),
        }
    }
}

/// How a location matches the request path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathMatch {
    /// `path = "/static/"`: the longest matching prefix wins.
    Prefix(String),
    /// `path = "= /exact"`: only this path; wins over every prefix.
    Exact(String),
}

impl PathMatch {
    /// The path text without the `= ` marker.
    pub fn path(&self) -> &str {
        match self {
            PathMatch::Prefix(p) | PathMatch::Exact(p) => p,
        }
    }
}

/// What answers a location's requests.
#[derive(Debug, Clone)]
pub enum Handler {
    /// Forward to an upstream pool.
    Proxy(ProxyRoute),
    /// Serve files from disk.
    Static(crate::static_files::StaticConfig),
    /// Store uploaded files, forward the rewritten form.
    Upload(UploadRoute),
}

/// `upload = { ... }` on a location.
#[derive(Debug, Clone)]
pub struct UploadRoute {
    pub config: crate::upload::UploadConfig,
    /// Where the rewritten form goes (the reference configuration's `@after_upload`).
    pub upstream: UpstreamId,
}

/// `proxy = { ... }` on a location.
#[derive(Debug, Clone)]
pub struct ProxyRoute {
    pub upstream: UpstreamId,
    /// Cap on open upgraded connections (WebSocket tunnels).
    pub max_tunnels: usize,
    /// Idle time after which a tunnel is closed (separate from the upstream's
    /// `read_timeout`, which is for request/response exchanges).
    pub tunnel_idle_timeout: Duration,
    /// The `Upgrade` protocols (lower case) forwarded as an upgrade; a
    /// request asking for another goes upstream as a plain request.
    pub allow_upgrade: Vec<String>,
}

/// A socket to listen on and the servers reachable through it.
#[derive(Debug, Clone)]
pub struct Listener {
    pub addr: SocketAddr,
    /// Indices into [`Config::servers`]; the first is the default server.
    pub servers: Vec<usize>,
    /// Whether connections are TLS (every server on the address has `tls`).
    pub tls: bool,
}
