//! Servers given by DNS name (nginx's `server ... resolve`, HAProxy's
//! `resolvers`): one task per pool asks for every name's A and AAAA records,
//! puts the answer in rotation, and asks again when the answer expires —
//! the records' TTL, at least 1 s, at most `resolve_interval`. A failed
//! lookup (no answer, NXDOMAIN, no address, garbage) keeps the last good
//! answer and is asked again sooner (within 5 s); it is logged, rate-limited,
//! and counted.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use tokio::task::AbortHandle;

use crate::config::NamedBackend;
use crate::log_limit::LogLimit;

use super::UpstreamPool;

/// Shortest time between two lookups of a name.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Longest wait before a failed lookup is tried again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// Per DNS server query timeout (two attempts).
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// The most addresses taken from one answer (the first, in answer order).
pub const MAX_ADDRESSES: usize = 256;

/// What a name resolved to, for `/status`.
#[derive(Debug, Clone)]
pub struct NameStatus {
    pub name: String,
    pub port: u16,
    pub addresses: Vec<SocketAddr>,
    /// Why the last lookup failed (`None`: it succeeded, or none ran yet).
    pub last_error: Option<String>,
    /// Seconds since the last good answer.
    pub age_seconds: Option<u64>,
}

/// Counters of one (upstream, name), kept across reloads.
#[derive(Debug, Default)]
pub struct ResolveCounters {
    pub ok: AtomicU64,
    pub error: AtomicU64,
}

/// Counters by (upstream, name).
type CounterMap = std::collections::BTreeMap<(String, String), Arc<ResolveCounters>>;

/// The counters of `name` in `upstream` (created on first use).
pub fn counters(upstream: &str, name: &str) -> Arc<ResolveCounters> {
    static C: OnceLock<Mutex<CounterMap>> = OnceLock::new();
    let map = C.get_or_init(Default::default);
    map.lock().unwrap_or_else(|e| e.into_inner()).entry((upstream.to_owned(), name.to_owned())).or_default().clone()
}

/// One name's state in a pool.
#[derive(Debug)]
pub(super) struct NameState {
    name: String,
    port: u16,
    pub counters: Arc<ResolveCounters>,
    last: Mutex<Last>,
}

#[derive(Debug, Default)]
struct Last {
    addresses: Vec<SocketAddr>,
    error: Option<String>,
    good_at: Option<Instant>,
}

impl NameState {
    pub fn new(upstream: &str, n: &NamedBackend) -> Self {
        Self {
            name: n.host.clone(),
            port: n.port,
            counters: counters(upstream, &n.host),
            last: Mutex::new(Last::default()),
        }
    }

    pub fn status(&self) -> NameStatus {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        NameStatus {
            name: self.name.clone(),
            port: self.port,
            addresses: last.addresses.clone(),
            last_error: last.error.clone(),
            age_seconds: last.good_at.map(|t| t.elapsed().as_secs()),
        }
    }
}

/// Starts the pool's resolver task (none without names or outside a tokio
/// runtime). It holds the pool weakly; the pool aborts it when dropped.
pub(super) fn spawn(pool: &Arc<UpstreamPool>) -> Option<AbortHandle> {
    if pool.config.named.is_empty() {
        return None;
    }
    let rt = tokio::runtime::Handle::try_current().ok()?;
    let resolver = resolver(&pool.config.resolvers);
    Some(rt.spawn(run(Arc::downgrade(pool), resolver)).abort_handle())
}

/// A resolver for `servers` (empty: the system's configuration).
pub fn resolver(servers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let mut builder = if servers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| format!("cannot read the system's DNS configuration: {e}"))?
    } else {
        let ns = servers
            .iter()
            .map(|a| {
                let mut n = NameServerConfig::udp_and_tcp(a.ip());
                for c in &mut n.connections {
                    c.port = a.port();
                }
                n
            })
            .collect();
        TokioResolver::builder_with_config(ResolverConfig::from_name_servers(ns), TokioRuntimeProvider::default())
    };
    let opts = builder.options_mut();
    // gale keeps the answer itself and asks again when it decides to; a
    // cache would answer from memory up to the TTL, past resolve_interval.
    opts.cache_size = 0;
    opts.timeout = QUERY_TIMEOUT;
    opts.attempts = 2;
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    builder.build().map_err(|e| format!("cannot make a DNS resolver: {e}"))
}

/// Resolves `host` once: its addresses (deduplicated, in answer order, at
/// most [`MAX_ADDRESSES`]) and how long the answer may be kept.
pub async fn lookup(resolver: &TokioResolver, host: &str) -> Result<(Vec<IpAddr>, Duration, usize), String> {
    let deadline = QUERY_TIMEOUT * 3;
    let answer = match tokio::time::timeout(deadline, resolver.lookup_ip(host)).await {
        Err(_) => return Err(format!("no answer within {deadline:?}")),
        Ok(Err(e)) if e.is_nx_domain() => return Err("NXDOMAIN (no such name)".to_owned()),
        Ok(Err(e)) if e.is_no_records_found() => return Err("the answer holds no address".to_owned()),
        Ok(Err(e)) => return Err(e.to_string()),
        Ok(Ok(a)) => a,
    };
    let ttl = answer.valid_until().saturating_duration_since(Instant::now());
    let mut ips: Vec<IpAddr> = Vec::new();
    let mut total = 0;
    for ip in answer.iter() {
        if !ips.contains(&ip) {
            total += 1;
            if ips.len() < MAX_ADDRESSES {
                ips.push(ip);
            }
        }
    }
    if ips.is_empty() {
        return Err("the answer holds no address".to_owned());
    }
    Ok((ips, ttl, total))
}

fn log_limit() -> &'static LogLimit<(String, String)> {
    static L: OnceLock<LogLimit<(String, String)>> = OnceLock::new();
    L.get_or_init(|| LogLimit::new(Duration::from_secs(60), 1024))
}

async fn run(pool: Weak<UpstreamPool>, resolver: Result<TokioResolver, String>) {
    loop {
        let Some(p) = pool.upgrade() else { return };
        let interval = p.config.resolve_interval;
        let names = p.config.named.clone();
        let upstream = p.config.name.clone();
        drop(p);
        let mut next = interval;
        for (i, named) in names.iter().enumerate() {
            let result = match &resolver {
                Ok(r) => lookup(r, &named.host).await,
                Err(e) => Err(e.clone()),
            };
            let Some(p) = pool.upgrade() else { return };
            let state = &p.names[i];
            match result {
                Ok((ips, ttl, total)) => {
                    state.counters.ok.fetch_add(1, Ordering::Relaxed);
                    if total > ips.len() {
                        let key = (upstream.clone(), format!("{}/large", named.host));
                        if let Some(n) = log_limit().should_log(key) {
                            tracing::warn!(upstream = %upstream, name = %named.host, "DNS answer holds {total} addresses; using the first {} ({n} more like this suppressed)", ips.len());
                        }
                    }
                    let addrs: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(*ip, named.port)).collect();
                    let changed = p.set_addresses(i, &addrs);
                    let mut last = state.last.lock().unwrap_or_else(|e| e.into_inner());
                    if changed {
                        tracing::info!(upstream = %upstream, name = %named.host, "resolved to {}", list(&addrs));
                    } else if last.error.is_some()
                        && let Some(n) = log_limit().should_log((upstream.clone(), format!("{}/again", named.host)))
                    {
                        tracing::info!(upstream = %upstream, name = %named.host, "resolves again, to {} ({n} more like this suppressed)", list(&addrs));
                    }
                    *last = Last { addresses: addrs, error: None, good_at: Some(Instant::now()) };
                    next = next.min(ttl.max(MIN_INTERVAL));
                }
                Err(e) => {
                    state.counters.error.fetch_add(1, Ordering::Relaxed);
                    let mut last = state.last.lock().unwrap_or_else(|e| e.into_inner());
                    let kept = if last.addresses.is_empty() {
                        "no address yet: requests get 502 until it resolves".to_owned()
                    } else {
                        format!("keeping the last answer ({})", list(&last.addresses))
                    };
                    if let Some(n) = log_limit().should_log((upstream.clone(), named.host.clone())) {
                        tracing::warn!(upstream = %upstream, name = %named.host, "cannot resolve: {e}; {kept} ({n} more like this suppressed)");
                    }
                    last.error = Some(e);
                    next = next.min(RETRY_AFTER_FAILURE);
                }
            }
        }
        if let Some(p) = pool.upgrade() {
            p.first_round.send_replace(true);
        }
        tokio::time::sleep(next.max(MIN_INTERVAL)).await;
    }
}

fn list(addrs: &[SocketAddr]) -> String {
    addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// `gale check --strict`: resolves every server name of `config` once, as
/// `gale run` would, and returns a `FILE:LINE:COL: ...` line for each that
/// does not resolve, placed at its first `"name:port"` in `text` (the
/// config file's text).
pub async fn unresolved(config: &crate::config::Config, file: &str, text: &str) -> Vec<String> {
    let text = text.to_ascii_lowercase();
    let mut out = Vec::new();
    for up in &config.upstreams {
        if up.named.is_empty() {
            continue;
        }
        let resolver = resolver(&up.resolvers);
        for n in &up.named {
            let result = match &resolver {
                Ok(r) => lookup(r, &n.host).await.map(|_| ()),
                Err(e) => Err(e.clone()),
            };
            if let Err(error) = result {
                let (line, col) = text.find(&format!("\"{}:{}\"", n.host, n.port)).map_or((1, 1), |i| {
                    let line_start = text[..i].rfind('\n').map_or(0, |n| n + 1);
                    (text[..i].matches('\n').count() + 1, i - line_start + 1)
                });
                out.push(format!(
                    "{file}:{line}:{col}: upstream `{}`: `{}:{}` does not resolve: {error}",
                    up.name, n.host, n.port
                ));
            }
        }
    }
    out
}
