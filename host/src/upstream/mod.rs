//! Upstream pools: a set of backends with a balancer, passive and active
//! health and a keep-alive connection pool per backend. This module picks
//! backends and keeps their state; the proxy decides what to send and when
//! to retry.
//!
//! A pool's backends are its fixed ones (a `process` section's children,
//! then literal addresses, in config order) plus the addresses its DNS
//! names resolve to now (`resolve.rs`). The set in rotation is a snapshot
//! swapped whole when an answer changes: requests hold the backend they
//! were given, so a removed address finishes what it has in flight and gets
//! nothing new.

pub mod active;
pub mod balancer;
pub mod client;
pub mod health;
mod publish;
mod resolve;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::task::AbortHandle;

use crate::config;
use crate::metrics::BackendMetrics;
use active::ActiveHealth;
use balancer::{Balancer, PeerView};
use client::ConnPool;
use health::Health;
pub use resolve::{NameStatus, unresolved};

/// One backend's live state.
#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    pub weight: u32,
    /// The DNS name this is an address of (`None`: written as an address).
    pub name: Option<String>,
    pub health: Health,
    /// The active health check's verdict (up when none is configured).
    pub active: ActiveHealth,
    pub conns: Arc<ConnPool>,
    pub metrics: Arc<BackendMetrics>,
    in_flight: AtomicUsize,
    /// False while a supervised child is starting, failed or being
    /// replaced: the balancer skips the backend.
    in_rotation: AtomicBool,
    /// The active health checker's task.
    checker: Mutex<Option<AbortHandle>>,
    /// For an address of a DNS name: its upstream, whose series of this
    /// address end with it.
    release_metrics: Option<String>,
}

impl Backend {
    fn new(cfg: &config::Upstream, addr: SocketAddr, weight: u32, name: Option<String>) -> Arc<Self> {
        let backend = Arc::new(Backend {
            addr,
            weight,
            health: Health::new(cfg.max_fails, cfg.fail_timeout),
            active: ActiveHealth::new(),
            conns: Arc::new(ConnPool::new(addr, cfg.keepalive, cfg.keepalive_timeout, cfg.connect_timeout)),
            metrics: crate::metrics::backend(&cfg.name, &addr.to_string()),
            in_flight: AtomicUsize::new(0),
            in_rotation: AtomicBool::new(true),
            checker: Mutex::new(None),
            release_metrics: name.is_some().then(|| cfg.name.clone()),
            name,
        });
        if let Some(hc) = &cfg.health_check {
            let task = active::spawn(&backend, hc.clone(), cfg.name.clone());
            *backend.checker.lock().unwrap_or_else(|e| e.into_inner()) = task;
        }
        backend
    }

    /// Requests currently being served by this backend.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether the balancer may pick this backend (passive health aside).
    pub fn in_rotation(&self) -> bool {
        self.in_rotation.load(Ordering::SeqCst)
    }

    /// Takes the backend in or out of rotation (the supervisor does, for
    /// the children it runs).
    pub fn set_in_rotation(&self, on: bool) {
        self.in_rotation.store(on, Ordering::SeqCst);
    }

    /// Whether a request may be sent here at `now`: in rotation, and both
    /// the passive and the active health say up.
    pub fn usable(&self, now: Instant) -> bool {
        self.in_rotation() && self.health.is_available(now) && self.active.is_up()
    }

    /// The address left the pool: no more health checks, no idle
    /// connections kept (those in use close when their exchange ends).
    fn retire(&self) {
        self.conns.retire();
        self.stop_checker();
    }

    fn stop_checker(&self) {
        if let Some(t) = self.checker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.abort();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop_checker();
        if let Some(upstream) = &self.release_metrics {
            crate::metrics::release_backend(upstream, &self.addr.to_string(), &self.metrics);
        }
    }
}

/// The backends in rotation now, with the balancer state of this set.
#[derive(Debug)]
pub struct Members {
    pub backends: Vec<Arc<Backend>>,
    balancer: Balancer,
}

/// A pool as the proxy uses it.
#[derive(Debug)]
pub struct UpstreamPool {
    pub config: config::Upstream,
    /// Children and literal addresses, in config order.
    fixed: Vec<Arc<Backend>>,
    /// Per DNS name (`config.named` order): its current addresses.
    resolved: Mutex<Vec<Vec<Arc<Backend>>>>,
    members: ArcSwap<Members>,
    names: Vec<resolve::NameState>,
    /// The resolver task; stopped when the pool is dropped.
    tasks: Mutex<Vec<AbortHandle>>,
    /// Set once every name has had its first answer (or failure).
    first_round: tokio::sync::watch::Sender<bool>,
}

impl Drop for UpstreamPool {
    fn drop(&mut self) {
        for t in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            t.abort();
        }
        for b in self.resolved.lock().unwrap_or_else(|e| e.into_inner()).iter().flatten() {
            b.retire();
        }
    }
}

/// Counts a request as in flight on a backend until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Backend>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl UpstreamPool {
    /// Builds the live pool from its validated config; a pool with DNS
    /// names starts resolving them (on the current tokio runtime, if any).
    pub fn new(config: config::Upstream) -> Arc<Self> {
        let fixed: Vec<_> = config.servers.iter().map(|b| Backend::new(&config, b.addr, b.weight, None)).collect();
        let members = Members { balancer: Balancer::new(config.balance, fixed.len()), backends: fixed.clone() };
        let names = config.named.iter().map(|n| resolve::NameState::new(&config.name, n)).collect();
        let (first_round, _) = tokio::sync::watch::channel(config.named.is_empty());
        let pool = Arc::new(Self {
            resolved: Mutex::new(vec![Vec::new(); config.named.len()]),
            config,
            fixed,
            members: ArcSwap::from_pointee(members),
            names,
            tasks: Mutex::new(Vec::new()),
            first_round,
        });
        if let Some(task) = resolve::spawn(&pool) {
            pool.tasks.lock().unwrap_or_else(|e| e.into_inner()).push(task);
        }
        publish::register(&pool);
        pool
    }

    /// The fixed backends (children first, then literal addresses).
    pub fn fixed(&self) -> &[Arc<Backend>] {
        &self.fixed
    }

    /// The backends in rotation now.
    pub fn members(&self) -> Arc<Members> {
        self.members.load_full()
    }

    /// What each DNS name resolved to last, for `/status`.
    pub fn names(&self) -> Vec<NameStatus> {
        self.names.iter().map(resolve::NameState::status).collect()
    }

    /// Waits until every DNS name had its first answer (or failure), at
    /// most `limit`: a new pool is swapped in with its addresses.
    pub async fn first_resolution(&self, limit: std::time::Duration) {
        let mut rx = self.first_round.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|done| *done)).await;
    }

    /// Picks a usable backend not in `tried`, or `None` when none is left.
    pub fn select(&self, tried: &[Arc<Backend>]) -> Option<Arc<Backend>> {
        let now = Instant::now();
        let members = self.members.load();
        let views: Vec<PeerView> = members
            .backends
            .iter()
            .map(|b| PeerView {
                weight: b.weight,
                available: b.usable(now) && !tried.iter().any(|t| Arc::ptr_eq(t, b)),
                in_flight: b.in_flight(),
            })
            .collect();
        members.balancer.pick(&views).map(|i| members.backends[i].clone())
    }

    /// Whether at least one backend may get a request at `now` (see
    /// [`Backend::usable`]); `/ready` asks.
    pub fn has_live_backend(&self, now: Instant) -> bool {
        self.members().backends.iter().any(|b| b.usable(now))
    }

    /// Marks a request in flight on `backend` until the guard drops.
    pub fn start(&self, backend: &Arc<Backend>) -> InFlight {
        backend.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(backend.clone())
    }

    /// Puts the addresses of name `index` in rotation: addresses it keeps
    /// keep their state (health, idle connections); new ones join; those
    /// gone are retired and drain.
    fn set_addresses(&self, index: usize, addrs: &[SocketAddr]) -> bool {
        let Some(named) = self.config.named.get(index) else { return false };
        let mut resolved = self.resolved.lock().unwrap_or_else(|e| e.into_inner());
        let current = &resolved[index];
        if current.len() == addrs.len() && current.iter().zip(addrs).all(|(b, a)| b.addr == *a) {
            return false;
        }
        let next: Vec<Arc<Backend>> = addrs
            .iter()
            .map(|a| {
                current
                    .iter()
                    .find(|b| b.addr == *a)
                    .cloned()
                    .unwrap_or_else(|| Backend::new(&self.config, *a, named.weight, Some(named.host.clone())))
            })
            .collect();
        for gone in current.iter().filter(|b| !addrs.contains(&b.addr)) {
            gone.retire();
        }
        resolved[index] = next;
        let backends: Vec<_> = self.fixed.iter().chain(resolved.iter().flatten()).cloned().collect();
        let balancer = Balancer::new(self.config.balance, backends.len());
        self.members.store(Arc::new(Members { backends, balancer }));
        true
    }
}

#[cfg(test)]
mod tests;
