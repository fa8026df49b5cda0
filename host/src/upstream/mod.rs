//! Upstream pools: a set of backends with a balancer, passive health and a
//! keep-alive connection pool per backend. This module picks backends and
//! keeps their state; the proxy decides what to send and when to retry.

pub mod balancer;
pub mod client;
pub mod health;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::config;
use crate::metrics::BackendMetrics;
use balancer::{Balancer, PeerView};
use client::ConnPool;
use health::Health;

/// One backend's live state.
#[derive(Debug)]
pub struct Backend {
    pub addr: std::net::SocketAddr,
    pub weight: u32,
    pub health: Health,
    pub conns: Arc<ConnPool>,
    pub metrics: Arc<BackendMetrics>,
    in_flight: AtomicUsize,
}

impl Backend {
    /// Requests currently being served by this backend.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// A pool as the proxy uses it.
#[derive(Debug)]
pub struct UpstreamPool {
    pub config: config::Upstream,
    pub backends: Vec<Arc<Backend>>,
    balancer: Balancer,
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
    /// Builds the live pool from its validated config.
    pub fn new(config: config::Upstream) -> Self {
        let backends = config
            .servers
            .iter()
            .map(|b| {
                Arc::new(Backend {
                    addr: b.addr,
                    weight: b.weight,
                    health: Health::new(config.max_fails, config.fail_timeout),
                    conns: Arc::new(ConnPool::new(b.addr, config.keepalive, config.connect_timeout)),
                    metrics: crate::metrics::backend(&config.name, &b.addr.to_string()),
                    in_flight: AtomicUsize::new(0),
                })
            })
            .collect::<Vec<_>>();
        let balancer = Balancer::new(config.balance, backends.len());
        Self { config, backends, balancer }
    }

    /// Picks a healthy backend not in `tried`, or `None` when none is left.
    pub fn select(&self, tried: &[bool]) -> Option<usize> {
        let now = Instant::now();
        let views: Vec<PeerView> = self
            .backends
            .iter()
            .zip(tried)
            .map(|(b, &t)| PeerView {
                weight: b.weight,
                available: !t && b.health.is_available(now),
                in_flight: b.in_flight(),
            })
            .collect();
        self.balancer.pick(&views)
    }

    /// Marks a request in flight on backend `i` until the guard drops.
    pub fn start(&self, i: usize) -> InFlight {
        let b = &self.backends[i];
        b.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(b.clone())
    }
}
