//! A `Site` is everything that lives as long as one config: upstream pools,
//! routing tables, TLS acceptors, tunnel caps, metric series, the access
//! log. A reload builds a new one beside the old (reusing pools, logs and
//! series that did not change, so health state and keep-alive connections
//! survive) and swaps it in; requests in flight finish on the old one.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use tokio_rustls::TlsAcceptor;

use crate::access_log::AccessLog;
use crate::config::{Config, Handler, ServerName};
use crate::metrics::{self, ServerMetrics};
use crate::proxy::tunnel::TunnelSlots;
use crate::router::ListenerRoutes;
use crate::tls;
use crate::upstream::UpstreamPool;

/// Identifies a listener across reloads: its configured address, and which
/// occurrence of that address it is (several `:0` listeners may coexist).
pub type ListenerKey = (SocketAddr, usize);

/// Why a validated config could not be made live.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error("cannot open access_log: {0}")]
    AccessLog(std::io::Error),
    #[error("TLS setup for {addr} failed: {source}")]
    Tls { addr: SocketAddr, source: rustls::Error },
}

/// The live state for one config.
pub struct Site {
    pub config: Config,
    pub upstreams: Vec<Arc<UpstreamPool>>,
    /// Per listener, in `config.listeners` order.
    pub routes: Vec<ListenerRoutes>,
    /// Per listener: the TLS acceptor of an HTTPS listener.
    pub tls: Vec<Option<TlsAcceptor>>,
    /// Open-tunnel counters per server, per location.
    pub tunnels: Vec<Vec<Arc<TunnelSlots>>>,
    /// Response counters per server.
    pub server_metrics: Vec<Arc<ServerMetrics>>,
    pub access_log: AccessLog,
    keys: Vec<ListenerKey>,
    /// The addresses really bound, per listener (port 0 resolved).
    bound: OnceLock<Vec<SocketAddr>>,
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site").field("listeners", &self.keys).finish_non_exhaustive()
    }
}

impl Site {
    /// Makes `config` live, reusing what `previous` has that is unchanged.
    pub fn new(config: Config, previous: Option<&Site>) -> Result<Self, SiteError> {
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
                    .unwrap_or_else(|| Arc::new(UpstreamPool::new(u.clone())))
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
                    .map_err(|source| SiteError::Tls { addr: l.addr, source })?;
                Some(TlsAcceptor::from(cfg))
            } else {
                None
            });
        }
        let tunnels = config
            .servers
            .iter()
            .map(|s| {
                s.locations
                    .iter()
                    .map(|l| match &l.handler {
                        Handler::Proxy(route) => TunnelSlots::new(route.max_tunnels),
                        Handler::Static(_) => TunnelSlots::new(0),
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
        Ok(Self { config, upstreams, routes, tls, tunnels, server_metrics, access_log, keys, bound: OnceLock::new() })
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
fn server_label(s: &crate::config::Server) -> String {
    match s.names.first() {
        Some(ServerName::Exact(n)) => n.clone(),
        Some(ServerName::Wildcard(suffix)) => format!("*{suffix}"),
        None => s.listen.first().map_or_else(|| "_".to_owned(), |a| a.to_string()),
    }
}
