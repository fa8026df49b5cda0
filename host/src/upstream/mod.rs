//! Upstream pools: a set of backends with a balancer, passive health and a
//! keep-alive connection pool per backend. This module picks backends and
//! keeps their state; the proxy decides what to send and when to retry.

pub mod balancer;
pub mod client;
pub mod health;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// False while a supervised child is starting, failed or being
    /// replaced: the balancer skips the backend.
    in_rotation: AtomicBool,
}

impl Backend {
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

    /// Whether the backend can take a request at `now` as far as gale knows:
    /// in rotation and not marked down by its health state. `/ready` asks.
    pub fn is_live(&self, now: Instant) -> bool {
        self.in_rotation() && self.health.is_available(now)
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
                    in_rotation: AtomicBool::new(true),
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
                available: !t && b.in_rotation() && b.health.is_available(now),
                in_flight: b.in_flight(),
            })
            .collect();
        self.balancer.pick(&views)
    }

    /// Whether at least one backend is live (see [`Backend::is_live`]).
    pub fn has_live_backend(&self, now: Instant) -> bool {
        self.backends.iter().any(|b| b.is_live(now))
    }

    /// Marks a request in flight on backend `i` until the guard drops.
    pub fn start(&self, i: usize) -> InFlight {
        let b = &self.backends[i];
        b.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(b.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_skips_backends_out_of_rotation() {
        let text = r#"
[upstream.app]
servers = ["127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8002"]
[[server]]
listen = ["127.0.0.1:8080"]
[[server.location]]
path = "/"
proxy = { pass = "app" }
"#;
        let cfg = config::parse("t.toml", text, std::path::Path::new(".")).expect("valid");
        let pool = UpstreamPool::new(cfg.upstreams[0].clone());
        assert!(pool.backends.iter().all(|b| b.in_rotation()), "in rotation by default");
        pool.backends[1].set_in_rotation(false);
        let tried = [false; 3];
        let picks: Vec<_> = (0..6).map(|_| pool.select(&tried).expect("a backend")).collect();
        assert_eq!(picks, [0, 2, 0, 2, 0, 2]);
        for b in &pool.backends {
            b.set_in_rotation(false);
        }
        assert_eq!(pool.select(&tried), None);
    }
}
