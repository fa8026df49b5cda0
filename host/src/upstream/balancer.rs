//! Choosing a backend: smooth weighted round robin (nginx's algorithm: over a
//! cycle each peer is picked in proportion to its weight, interleaved rather
//! than in bursts) or least connections (fewest in flight per unit of weight,
//! ties broken round robin). Pure logic; the caller says which peers are
//! available and how busy they are.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::Balance;

/// What the balancer needs to know about one peer right now.
#[derive(Debug, Clone, Copy)]
pub struct PeerView {
    pub weight: u32,
    /// Healthy and not already tried for this request.
    pub available: bool,
    pub in_flight: usize,
}

/// Per-pool balancing state.
#[derive(Debug)]
pub struct Balancer {
    kind: Balance,
    /// Smooth WRR current weights, one per peer.
    current: Mutex<Vec<i64>>,
    /// Rotating start for least_conn ties.
    next: AtomicUsize,
}

impl Balancer {
    /// A balancer for `peers` peers.
    pub fn new(kind: Balance, peers: usize) -> Self {
        Self { kind, current: Mutex::new(vec![0; peers]), next: AtomicUsize::new(0) }
    }

    /// Picks an available peer, or `None` when none is available.
    pub fn pick(&self, peers: &[PeerView]) -> Option<usize> {
        match self.kind {
            Balance::RoundRobin => self.pick_round_robin(peers),
            Balance::LeastConn => self.pick_least_conn(peers),
        }
    }

    fn pick_round_robin(&self, peers: &[PeerView]) -> Option<usize> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, p) in peers.iter().enumerate() {
            if !p.available {
                continue;
            }
            let w = i64::from(p.weight);
            current[i] += w;
            total += w;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        current[b] -= total;
        Some(b)
    }

    fn pick_least_conn(&self, peers: &[PeerView]) -> Option<usize> {
        let n = peers.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<usize> = None;
        for k in 0..n {
            let i = (start + k) % n;
            let p = &peers[i];
            if !p.available {
                continue;
            }
            // in_flight / weight compared without division.
            let better = match best {
                None => true,
                Some(b) => {
                    let q = &peers[b];
                    (p.in_flight as u128) * u128::from(q.weight) < (q.in_flight as u128) * u128::from(p.weight)
                }
            };
            if better {
                best = Some(i);
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(weights: &[u32]) -> Vec<PeerView> {
        weights.iter().map(|&w| PeerView { weight: w, available: true, in_flight: 0 }).collect()
    }

    #[test]
    fn round_robin_cycles_in_order() {
        let b = Balancer::new(Balance::RoundRobin, 4);
        let p = peers(&[1, 1, 1, 1]);
        let picks: Vec<_> = (0..8).map(|_| b.pick(&p).unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 2, 3, 0, 1, 2, 3]);
    }

    #[test]
    fn weighted_round_robin_is_smooth() {
        // nginx's documented example: weights 5,1,1 give a a b a c a a.
        let b = Balancer::new(Balance::RoundRobin, 3);
        let p = peers(&[5, 1, 1]);
        let picks: Vec<_> = (0..7).map(|_| b.pick(&p).unwrap()).collect();
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn unavailable_peers_are_skipped_and_none_when_all_are() {
        let b = Balancer::new(Balance::RoundRobin, 3);
        let mut p = peers(&[1, 1, 1]);
        p[1].available = false;
        let picks: Vec<_> = (0..4).map(|_| b.pick(&p).unwrap()).collect();
        assert!(!picks.contains(&1));
        for x in &mut p {
            x.available = false;
        }
        assert_eq!(b.pick(&p), None);
    }

    #[test]
    fn least_conn_prefers_idle_and_respects_weight() {
        let b = Balancer::new(Balance::LeastConn, 3);
        let mut p = peers(&[1, 1, 1]);
        p[0].in_flight = 2;
        p[1].in_flight = 0;
        p[2].in_flight = 1;
        assert_eq!(b.pick(&p), Some(1));
        // Weight 4 with 3 in flight (0.75 each) beats weight 1 with 1.
        let mut p = peers(&[1, 4]);
        p[0].in_flight = 1;
        p[1].in_flight = 3;
        assert_eq!(b.pick(&p), Some(1));
    }

    #[test]
    fn least_conn_spreads_ties() {
        let b = Balancer::new(Balance::LeastConn, 4);
        let p = peers(&[1, 1, 1, 1]);
        let mut seen = [false; 4];
        for _ in 0..4 {
            seen[b.pick(&p).unwrap()] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
