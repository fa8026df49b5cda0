//! The config file's shape, exactly as written: serde structs that mirror the
//! TOML, reject unknown keys, and keep source spans for later error messages.
//! Nothing here is validated; `validate.rs` turns this into runtime config.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use toml::Spanned;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub global: RawGlobal,
    #[serde(default)]
    pub http: RawHttp,
    pub admin: Option<Spanned<RawAdmin>>,
    #[serde(default)]
    pub upstream: BTreeMap<String, Spanned<RawUpstream>>,
    #[serde(default)]
    pub server: Vec<Spanned<RawServer>>,
    /// `[tenant.NAME]`: plugin owners with their own directory and limits.
    #[serde(default)]
    pub tenant: BTreeMap<String, Spanned<super::tenant::RawTenant>>,
}

/// `[global]`: process-wide settings (nginx's main context).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGlobal {
    pub threads: Option<Spanned<i64>>,
    pub max_connections: Option<Spanned<i64>>,
    pub pid_file: Option<Spanned<String>>,
    pub error_log: Option<Spanned<String>>,
    pub log_level: Option<LogLevel>,
    pub access_log: Option<Spanned<String>>,
    pub access_log_format: Option<AccessLogFormat>,
    pub shutdown_timeout: Option<Spanned<Scalar>>,
    /// How long gale keeps serving after a stop signal, with `/ready` at
    /// 503, before it drains.
    pub shutdown_delay: Option<Spanned<Scalar>>,
    /// Reload when the config file's content changes (a Kubernetes
    /// ConfigMap update swaps a symlink), checked every
    /// `watch_config_interval`.
    pub watch_config: Option<bool>,
    pub watch_config_interval: Option<Spanned<Scalar>>,
    /// How long an upgrade's new gale may take to be ready.
    pub upgrade_timeout: Option<Spanned<Scalar>>,
    pub plugin_dir: Option<Spanned<String>>,
    /// Where compiled plugins are cached between runs.
    pub plugin_cache_dir: Option<Spanned<String>>,
    /// Memory cap per plugin instance.
    pub plugin_memory: Option<Spanned<Scalar>>,
    /// Time cap per plugin hook call.
    pub plugin_hook_timeout: Option<Spanned<Scalar>>,
    /// Cap on plugin calls in flight for servers without a tenant.
    pub plugin_max_concurrent: Option<Spanned<i64>>,
    /// Cap on warm plugin instances for servers without a tenant.
    pub plugin_max_instances: Option<Spanned<i64>>,
    /// The circuit breaker for servers without a tenant (and tenants'
    /// default).
    pub plugin_breaker: Option<Spanned<super::tenant::RawBreaker>>,
    /// DNS servers for upstream servers given by name (`"10.0.0.2:53"`);
    /// default: the system's (/etc/resolv.conf).
    pub resolvers: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `[http]`: client-facing HTTP settings (nginx's http context).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub keepalive_timeout: Option<Spanned<Scalar>>,
    pub client_max_body_size: Option<Spanned<Scalar>>,
    pub client_header_timeout: Option<Spanned<Scalar>>,
    pub client_body_timeout: Option<Spanned<Scalar>>,
    pub max_header_size: Option<Spanned<Scalar>>,
    pub max_uri_size: Option<Spanned<Scalar>>,
    /// Most header fields in a request head.
    pub max_headers: Option<Spanned<i64>>,
    /// nginx's `gzip on` with its settings.
    pub gzip: Option<Spanned<crate::compress::GzipOptions>>,
    /// Offer HTTP/2 by ALPN on TLS listeners.
    pub http2: Option<bool>,
    pub http2_max_concurrent_streams: Option<Spanned<i64>>,
    /// nginx's `merge_slashes` (default on): `//` in a request path is `/`
    /// for location matching.
    pub merge_slashes: Option<bool>,
}

/// `[admin]`: the operator's listener (`/metrics`, `/status`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Spanned<String>,
    /// Allow a non-loopback address (the endpoints have no authentication).
    #[serde(default)]
    pub allow_remote: bool,
}

/// `[upstream.NAME]`: a pool of backends (nginx's `upstream` block plus the
/// `proxy_*` timeouts that belong to the pool).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// Required unless `process` gives the pool its backends.
    pub servers: Option<Spanned<Vec<Spanned<RawBackend>>>>,
    pub balance: Option<Balance>,
    pub next_upstream: Option<NextUpstream>,
    pub connect_timeout: Option<Spanned<Scalar>>,
    pub read_timeout: Option<Spanned<Scalar>>,
    pub max_fails: Option<Spanned<i64>>,
    pub fail_timeout: Option<Spanned<Scalar>>,
    pub keepalive: Option<Spanned<i64>>,
    pub keepalive_timeout: Option<Spanned<Scalar>>,
    /// Backends gale starts and supervises itself (supervisord's job).
    pub process: Option<Spanned<RawProcess>>,
    /// DNS servers for this upstream's named servers (else `[global]`'s).
    pub resolvers: Option<Spanned<Vec<Spanned<String>>>>,
    /// The longest a DNS answer is used before it is asked again (the
    /// record's TTL, when shorter, decides).
    pub resolve_interval: Option<Spanned<Scalar>>,
    /// Active health checks of every backend.
    pub health_check: Option<Spanned<RawHealthCheck>>,
}

/// `health_check = { ... }` on an upstream: HAProxy's `option httpchk`
/// with `inter`, `timeout check`, `rise`, `fall`, `http-check expect status`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub path: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub interval: Option<Spanned<Scalar>>,
    pub timeout: Option<Spanned<Scalar>>,
    pub rise: Option<Spanned<i64>>,
    pub fall: Option<Spanned<i64>>,
    /// `200`, `"2xx"` or `"200-399"`.
    pub expect_status: Option<Spanned<Scalar>>,
}

/// `process = { ... }` on an upstream: `count` children of `command`, on
/// ports `base_port ..`; each key replaces a supervisord program setting.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProcess {
    pub command: Spanned<Vec<Spanned<String>>>,
    pub count: Option<Spanned<i64>>,
    pub base_port: Spanned<i64>,
    pub cwd: Option<Spanned<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, Spanned<String>>,
    pub stop_signal: Option<Spanned<String>>,
    pub stop_timeout: Option<Spanned<Scalar>>,
    pub start_timeout: Option<Spanned<Scalar>>,
    pub start_retries: Option<Spanned<i64>>,
    pub log: Option<Spanned<String>>,
}

/// One backend: `"127.0.0.1:8000"` or `{ address = "...", weight = 2 }`.
#[derive(Debug)]
pub struct RawBackend {
    pub address: String,
    pub weight: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackendTable {
    address: String,
    weight: Option<i64>,
}

impl<'de> Deserialize<'de> for RawBackend {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawBackend;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address like \"127.0.0.1:8000\" or a table { address = \"...\", weight = N }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawBackend, E> {
                Ok(RawBackend { address: v.to_owned(), weight: None })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawBackend, A::Error> {
                let t = RawBackendTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawBackend { address: t.address, weight: t.weight })
            }
        }
        d.deserialize_any(V)
    }
}

/// How a pool picks a backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Smooth weighted round robin (nginx's default).
    #[default]
    RoundRobin,
    /// Fewest requests in flight (per weight): suits single-threaded Tornado.
    LeastConn,
}

/// When a failed attempt may be retried on another backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NextUpstream {
    /// Retry only when no connection could be made: a request that kills its
    /// backend ("query of death") is never sent to a second one.
    #[default]
    Connect,
    /// nginx's `proxy_next_upstream error`: also retry when the connection
    /// closed before a response header, for idempotent requests.
    Error,
    /// Never retry.
    Off,
}

/// The error log's verbosity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

/// The access log's line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogFormat {
    /// nginx's `combined`.
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

/// `[[server]]`: a virtual host (nginx's `server` block).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub server_name: Vec<Spanned<String>>,
    #[serde(default)]
    pub default_server: bool,
    /// `tls = { cert = "...", key = "..." }`: this server speaks HTTPS.
    pub tls: Option<Spanned<RawTls>>,
    /// Answer every request with a 301 to the same URL over https.
    #[serde(default)]
    pub redirect_http: bool,
    /// `tenant = "NAME"`: whose plugins (directory, limits) this server's
    /// locations use.
    pub tenant: Option<Spanned<String>>,
    #[serde(default)]
    pub location: Vec<Spanned<RawLocation>>,
}

/// PEM files of a server's certificate chain and private key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

/// `[[server.location]]`: a path and what handles it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocation {
    pub path: Spanned<String>,
    pub proxy: Option<Spanned<RawProxy>>,
    /// `static = { root = "..." }`: serve files (nginx `root` / `alias`).
    #[serde(rename = "static")]
    pub static_files: Option<Spanned<crate::static_files::StaticOptions>>,
    /// `upload = { store = "...", pass = "UPSTREAM" }`: nginx-upload-module.
    pub upload: Option<Spanned<RawUpload>>,
    /// Plugins attached to this location, in order.
    #[serde(default)]
    pub plugins: Vec<Spanned<RawAttachment>>,
}

/// A plugin attachment: `"name"` or `{ name = "...", config = { ... }, on_error = "..." }`.
#[derive(Debug)]
pub struct RawAttachment {
    pub name: String,
    pub config: toml::Table,
    pub on_error: Option<OnError>,
    /// Where the `config` table is written, when it is.
    pub config_span: Option<std::ops::Range<usize>>,
    /// Where each value inside it is written, by key path.
    pub config_keys: Vec<(String, std::ops::Range<usize>)>,
}

/// What happens to a request when a plugin fails (traps, times out, hits
/// its memory cap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Answer 503: a policy that cannot run is not silently skipped.
    #[default]
    FailClosed,
    /// Skip the plugin for this request (logged).
    FailOpen,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAttachmentTable {
    name: String,
    config: Option<Spanned<super::plugin_keys::SpannedConfig>>,
    on_error: Option<OnError>,
}

impl<'de> Deserialize<'de> for RawAttachment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAttachment;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a plugin name, or a table { name = \"...\", config = { ... }, on_error = \"fail-closed\" }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawAttachment, E> {
                Ok(RawAttachment {
                    name: v.to_owned(),
                    config: toml::Table::new(),
                    on_error: None,
                    config_span: None,
                    config_keys: Vec::new(),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawAttachment, A::Error> {
                let t = RawAttachmentTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let (config_span, config) = match t.config {
                    Some(c) => (Some(c.span()), c.into_inner()),
                    None => (None, super::plugin_keys::SpannedConfig::default()),
                };
                Ok(RawAttachment {
                    name: t.name,
                    config: config.table,
                    on_error: t.on_error,
                    config_span,
                    config_keys: config.keys,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `upload = { ... }`: store the files of a multipart form, send the
/// backend a rewritten form that says where they are.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpload {
    pub store: Spanned<String>,
    pub pass: Spanned<String>,
    #[serde(default)]
    pub create: bool,
    pub access: Option<Spanned<String>>,
    /// Statuses (`200`) or ranges (`"500-505"`).
    pub cleanup: Option<Spanned<Vec<Scalar>>>,
    /// `"1h"`, or `"off"` for no sweeper.
    pub sweep_ttl: Option<Spanned<Scalar>>,
    pub max_parts: Option<Spanned<i64>>,
    pub max_files: Option<Spanned<i64>>,
    pub max_part_header_bytes: Option<Spanned<i64>>,
    pub max_header_line: Option<Spanned<i64>>,
    pub max_form_bytes: Option<Spanned<Scalar>>,
}

/// `proxy = { pass = "UPSTREAM" }`: nginx's `proxy_pass http://UPSTREAM`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    pub pass: Spanned<String>,
    /// Cap on open upgraded connections (WebSocket tunnels) of this route.
    pub max_tunnels: Option<Spanned<i64>>,
    /// Idle time after which a tunnel is closed.
    pub tunnel_idle_timeout: Option<Spanned<Scalar>>,
    /// `Upgrade` protocols forwarded to the backend (default `["websocket"]`).
    pub allow_upgrade: Option<Vec<Spanned<String>>>,
}

/// A value written either as a string (`"65s"`, `"100M"`) or as a bare
/// integer (seconds, bytes); validation parses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string like \"65s\" or \"100M\", or a whole number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                if v < 0 {
                    return Err(E::custom("must not be negative"));
                }
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}
