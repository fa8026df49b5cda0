//! Passive health, nginx's `max_fails` / `fail_timeout`: a backend that
//! fails `max_fails` times within `fail_timeout` is left out for
//! `fail_timeout`, then given real traffic again.
//!
//! A failure is an attempt that got no response header: no connection, a
//! connection broken before the header, or no header within `read_timeout`
//! (a timeout is never retried, but it counts: a backend that accepts and
//! never answers must leave rotation). A response, whatever its status, is a
//! success and starts the count again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failure bookkeeping for one backend.
#[derive(Debug)]
pub struct Health {
    max_fails: u32,
    fail_timeout: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    fails: u32,
    window_start: Option<Instant>,
    down_until: Option<Instant>,
}

impl Health {
    /// `max_fails == 0` disables the check: the backend is always available.
    pub fn new(max_fails: u32, fail_timeout: Duration) -> Self {
        Self { max_fails, fail_timeout, state: Mutex::new(State::default()) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the backend may be given a request at `now`.
    pub fn is_available(&self, now: Instant) -> bool {
        if self.max_fails == 0 {
            return true;
        }
        self.state().down_until.is_none_or(|t| now >= t)
    }

    /// Records a failed attempt; returns true when it just marked the backend down.
    pub fn record_failure(&self, now: Instant) -> bool {
        if self.max_fails == 0 {
            return false;
        }
        let mut s = self.state();
        if s.window_start.is_none_or(|w| now.duration_since(w) > self.fail_timeout) {
            s.window_start = Some(now);
            s.fails = 0;
        }
        s.fails += 1;
        if s.fails >= self.max_fails {
            s.down_until = Some(now + self.fail_timeout);
            s.fails = 0;
            s.window_start = None;
            return true;
        }
        false
    }

    /// Records a successful exchange: the failure count starts again.
    pub fn record_success(&self) {
        if self.max_fails == 0 {
            return;
        }
        let mut s = self.state();
        s.fails = 0;
        s.window_start = None;
    }

    /// Forgets every failure: the backend is a new process (a supervised
    /// child that just started accepting).
    pub fn reset(&self) {
        *self.state() = State::default();
    }

    /// Whether the backend is currently marked down (for status pages).
    pub fn is_down(&self, now: Instant) -> bool {
        !self.is_available(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failure_marks_down_for_fail_timeout_by_default() {
        let h = Health::new(1, Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(h.is_available(t0));
        assert!(h.record_failure(t0));
        assert!(!h.is_available(t0 + Duration::from_secs(9)));
        assert!(h.is_available(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn failures_must_fall_within_the_window() {
        let h = Health::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(!h.record_failure(t0));
        // The second failure comes after the window: counting starts again.
        assert!(!h.record_failure(t0 + Duration::from_secs(11)));
        assert!(h.is_available(t0 + Duration::from_secs(11)));
        assert!(h.record_failure(t0 + Duration::from_secs(12)));
        assert!(!h.is_available(t0 + Duration::from_secs(12)));
    }

    #[test]
    fn reset_brings_a_down_backend_back() {
        let h = Health::new(1, Duration::from_secs(10));
        let t0 = Instant::now();
        h.record_failure(t0);
        assert!(!h.is_available(t0));
        h.reset();
        assert!(h.is_available(t0));
    }

    #[test]
    fn success_resets_and_zero_disables() {
        let h = Health::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        h.record_failure(t0);
        h.record_success();
        assert!(!h.record_failure(t0));
        let off = Health::new(0, Duration::from_secs(10));
        for _ in 0..10 {
            off.record_failure(t0);
        }
        assert!(off.is_available(t0));
    }
}
