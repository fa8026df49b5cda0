//! A `Site` is everything that lives as long as one config: upstream pools,
//! routing tables, TLS acceptors, tunnel caps, metric series, the access
//! log. A reload builds a new one beside the old (reusing pools, logs and
//! series that did not change, so health state and keep-alive connections
//! survive) and swaps it in; requests in flight finish on the old one.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::access_log::AccessLog;
use crate::attach::{CacheHook, LocationPlugins};
use crate::config::{Config, Handler, OnError, ServerName};
use crate::metrics::{self, ServerMetrics};
use crate::plugin::{HeaderPolicy, PluginError, PluginRuntime};
use crate::proxy::tunnel::TunnelSlots;
use crate::router::ListenerRoutes;
use crate::tls;
use crate::upload::{self, FieldPolicy, NativeFieldPolicy};
use crate::upstream::UpstreamPool;

/// The longest a new Site waits for its pools' first DNS answers.
const FIRST_RESOLUTION_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Identifies a listener across reloads: its configured address, and which
/// occurrence of that address it is (several `:0` listeners may coexist).
pub type ListenerKey = (SocketAddr, usize);

/// Why a validated config could not be made live.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error("cannot open access_log: {0}")]
    AccessLog(std::io::Error),
    #[error("TLS setup for {addr} failed: {cause}")]
    Tls { addr: SocketAddr, cause: rustls::Error },
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Plugins(Vec<PluginLoadError>),
}

/// A plugin attachment that could not be loaded, with its place in the config.
#[derive(Debug, thiserror::Error)]
#[error("{line}:{col}: {error}")]
pub struct PluginLoadError {
    pub line: usize,
    pub col: usize,
    pub error: PluginError,
}

/// A loaded header-policy attachment and what to do when it fails.
#[derive(Clone)]
pub struct Hook {
    pub policy: HeaderPolicy,
    pub on_error: OnError,
}

/// Loaded plugins, per server, per location, placed by world.
pub type LoadedPlugins = Vec<Vec<LocationPlugins>>;

/// Loads (compiles or takes from the cache, configures) every plugin the
/// config attaches, each as the world its component exports, and places it
/// by world and location kind (see `attach`); reports every attachment that
/// fails, not just the first. A server's plugins are its tenant's
/// (`tenancy.rs`): from the tenant's plugin directory only, under its limits,
/// its breaker, concurrency cap and warm-instance cap, whatever the world.
pub async fn load_plugins(config: &Config, runtime: &PluginRuntime) -> Result<LoadedPlugins, Vec<PluginLoadError>> {
    let tenants = crate::tenancy::Tenants::from_config(config);
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for server in &config.servers {
        let tenant = tenants.for_server(server);
        let mut per_server = Vec::new();
        for location in &server.locations {
            let mut placed = LocationPlugins::default();
            for a in &location.plugins {
                let loaded = runtime.load_any_for(tenant, &a.name, &a.config).await;
                match loaded.and_then(|p| placed.place(p, a.on_error, &location.handler)) {
                    Ok(()) => {}
                    // Reported at the key it is about, in the user's words.
                    Err(PluginError::Config { plugin, message }) => {
                        let json = crate::plugin::resolve(tenant.plugin_dir(), &a.name, &a.config)
                            .map(|r| r.config_json)
                            .unwrap_or_default();
                        let (line, col, message) = a.rejection(&json, &message);
                        errors.push(PluginLoadError { line, col, error: PluginError::Config { plugin, message } });
                    }
                    Err(error) => errors.push(PluginLoadError { line: a.line, col: a.col, error }),
                }
            }
            per_server.push(placed);
        }
        out.push(per_server);
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// The live state for one config.
pub struct Site {
    pub config: Config,
    pub upstreams: Vec<Arc<UpstreamPool>>,
    /// Per listener, in `config.listeners` order.
    pub routes: Vec<ListenerRoutes>,
    /// Per listener: the TLS acceptor of an HTTPS listener.
    pub tls: Vec<Option<TlsAcceptor>>,
    /// Live state per server, per location.
    pub locations: Vec<Vec<LocationState>>,
    /// Response counters per server.
    pub server_metrics: Vec<Arc<ServerMetrics>>,
    pub access_log: AccessLog,
    keys: Vec<ListenerKey>,
    /// The addresses really bound, per listener (port 0 resolved).
    bound: OnceLock<Vec<SocketAddr>>,
    /// Upload store sweepers; stopped when the site is dropped.
    sweepers: Vec<JoinHandle<()>>,
}

impl Drop for Site {
    fn drop(&mut self) {
        for s in &self.sweepers {
            s.abort();
        }
    }
}

/// What a location needs at request time besides its config.
pub struct LocationState {
    /// Open upgraded connections, under the route's cap.
    pub tunnels: Arc<TunnelSlots>,
    /// Decides the fields of an upload location's rewritten form.
    pub field_policy: Option<Arc<dyn FieldPolicy>>,
    /// Header-policy plugins, in attachment order.
    pub hooks: Vec<Hook>,
    /// A static location's cache-policy plugin.
    pub cache: Option<CacheHook>,
}

impl LocationState {
    fn new(handler: &Handler, plugins: LocationPlugins, sweepers: &mut Vec<JoinHandle<()>>) -> Self {
        let LocationPlugins { hooks, cache, fields, .. } = plugins;
        let state = |tunnels, field_policy| Self { tunnels, field_policy, hooks, cache };
        match handler {
            Handler::Proxy(route) => state(TunnelSlots::new(route.max_tunnels), None),
            Handler::Static(_) => state(TunnelSlots::new(0), None),
            Handler::Upload(route) => {
                if let Some(ttl) = route.config.sweep_ttl {
                    sweepers.push(upload::spawn_sweeper(route.config.store.clone(), ttl));
                }
                // An upload-fields plugin, else the built-in reference policy.
                let field_policy =
                    fields.unwrap_or_else(|| Arc::new(NativeFieldPolicy::reference()) as Arc<dyn FieldPolicy>);
                state(TunnelSlots::new(0), Some(field_policy))
            }
        }
    }
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site").field("listeners", &self.keys).finish_non_exhaustive()
    }
}

impl Site {
    /// Makes `config` live, reusing what `previous` has that is unchanged.
    /// Loads the config's plugins, then makes it live (see [`Site::new`]).
    pub async fn build(config: Config, previous: Option<&Site>, runtime: &PluginRuntime) -> Result<Self, SiteError> {
        let plugins = load_plugins(&config, runtime).await.map_err(SiteError::Plugins)?;
        let site = Self::new(config, previous, plugins)?;
        // A pool with DNS names goes live with its first answers (or after
        // its first failed lookups): swapped in empty, it would answer 502.
        for pool in &site.upstreams {
            pool.first_resolution(FIRST_RESOLUTION_WAIT).await;
        }
        Ok(site)
    }

    /// Makes `config` live with its loaded plugins, reusing what `previous`
    /// has that is unchanged.
    pub fn new(config: Config, previous: Option<&Site>, mut plugins: LoadedPlugins) -> Result<Self, SiteError> {
        let g = &config.global;
        let access_log = match previous {
            Some(p)
                if p.config.global.access_log == g.access_log
                    && p.config.global.access_log_format == g.access_log_format =>
            {
                p.access_log.clone()
            }
            _ => {
                let log = AccessLog::open(&g.access_log, g.access_log_format).map_err(SiteError::AccessLog)?;
                log.spawn_flusher(std::time::Duration::from_secs(1));
                log
            }
        };
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| {
                previous
                    .and_then(|p| p.upstreams.iter().find(|old| old.config == *u).cloned())
                    .unwrap_or_else(|| UpstreamPool::new(u.clone()))
            })
            .collect();
        let routes = config.listeners.iter().map(|l| ListenerRoutes::new(l.servers.clone())).collect();
        let mut tls = Vec::new();
        for l in &config.listeners {
            tls.push(if l.tls {
                let entries = l
                    .servers
                    .iter()
                    .filter_map(|&i| {
                        let s = &config.servers[i];
                        s.tls.as_ref().map(|t| (s.names.clone(), t.certified.clone()))
                    })
                    .collect();
                let cfg = tls::server_config(tls::SniResolver::new(entries), config.http.http2)
                    .map_err(|source| SiteError::Tls { addr: l.addr, cause: source })?;
                Some(TlsAcceptor::from(cfg))
            } else {
                None
            });
        }
        let mut sweepers = Vec::new();
        let locations = config
            .servers
            .iter()
            .enumerate()
            .map(|(si, s)| {
                s.locations
                    .iter()
                    .enumerate()
                    .map(|(li, l)| {
                        let placed =
                            plugins.get_mut(si).and_then(|p| p.get_mut(li)).map(std::mem::take).unwrap_or_default();
                        let mut state = LocationState::new(&l.handler, placed, &mut sweepers);
                        // Tunnels opened before a reload still count against
                        // the cap of the same route, if its cap is unchanged.
                        if let Some(old) = previous.and_then(|p| p.same_location(&server_label(s), l)) {
                            state.tunnels = old.tunnels.clone();
                        }
                        state
                    })
                    .collect()
            })
            .collect();
        let server_metrics = config.servers.iter().map(|s| metrics::server(&server_label(s))).collect();
        let mut keys: Vec<ListenerKey> = Vec::new();
        for l in &config.listeners {
            let nth = keys.iter().filter(|(a, _)| *a == l.addr).count();
            keys.push((l.addr, nth));
        }
        Ok(Self {
            config,
            upstreams,
            routes,
            tls,
            locations,
            server_metrics,
            access_log,
            keys,
            bound: OnceLock::new(),
            sweepers,
        })
    }

    /// This site's state for a location equal to `location` (same server,
    /// same path, same handler settings), if it has one.
    fn same_location(&self, server: &str, location: &crate::config::Location) -> Option<&LocationState> {
        let si = self.config.servers.iter().position(|s| server_label(s) == server)?;
        let li = self.config.servers[si].locations.iter().position(|l| {
            l.matcher == location.matcher
                && match (&l.handler, &location.handler) {
                    (Handler::Proxy(a), Handler::Proxy(b)) => a.max_tunnels == b.max_tunnels,
                    _ => false,
                }
        })?;
        self.locations.get(si)?.get(li)
    }

    /// The listeners, in `config.listeners` order.
    pub fn listener_keys(&self) -> &[ListenerKey] {
        &self.keys
    }

    /// Where a listener is in this config, if it still exists.
    pub fn listener_index(&self, key: ListenerKey) -> Option<usize> {
        self.keys.iter().position(|k| *k == key)
    }

    /// Records the bound addresses (once), for redirects that name a port.
    pub fn set_bound_addrs(&self, addrs: Vec<SocketAddr>) {
        let _ = self.bound.set(addrs);
    }

    /// The port of the first HTTPS listener, for `redirect_http`.
    pub fn https_port(&self) -> u16 {
        let bound = self.bound.get();
        self.config
            .listeners
            .iter()
            .enumerate()
            .find(|(_, l)| l.tls)
            .map_or(443, |(i, l)| bound.and_then(|b| b.get(i)).map_or(l.addr.port(), |a| a.port()))
    }
}

/// The `server` label of a server block: its first name, else its first
/// listen address.
pub(crate) fn server_label(s: &crate::config::Server) -> String {
    match s.names.first() {
        Some(ServerName::Exact(n)) => n.clone(),
        Some(ServerName::Wildcard(suffix)) => format!("*{suffix}"),
        None => s.listen.first().map_or_else(|| "_".to_owned(), |a| a.to_string()),
    }
}
