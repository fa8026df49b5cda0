//! Rate limits for repeated log lines: the first occurrence of a key is
//! logged, then at most one line per interval, which says how many were
//! suppressed since the last one.
//!
//! A line that a client can cause on every request (a plugin that traps on
//! its input, a connection refused at a limit) must not let that client fill
//! the disk with one line per request. The counters (metrics) still count
//! every event; the log keeps the story.
//!
//! ```
//! use std::time::Duration;
//! use gale::log_limit::LogLimit;
//!
//! let limit = LogLimit::new(Duration::from_secs(5), 1024);
//! if let Some(suppressed) = limit.should_log(("tenant", "plugin")) {
//!     eprintln!("plugin failed ({suppressed} more like this suppressed)");
//! }
//! assert_eq!(limit.should_log(("tenant", "plugin")), None, "the second within 5 s is counted, not logged");
//! ```

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Which lines of each key to write. Cheap when nothing is logged: one map
/// lookup under a lock, on error paths only.
#[derive(Debug)]
pub struct LogLimit<K> {
    interval: Duration,
    capacity: usize,
    keys: Mutex<HashMap<K, Seen>>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    /// When this key's last line was written.
    logged_at: Instant,
    /// Occurrences since then that were not logged.
    suppressed: u64,
}

impl<K: Eq + Hash> LogLimit<K> {
    /// At most one line per `interval` per key, for up to `capacity` keys
    /// seen within one interval (see [`Self::should_log`] for what happens
    /// past that).
    pub fn new(interval: Duration, capacity: usize) -> Self {
        Self { interval, capacity, keys: Mutex::new(HashMap::new()) }
    }

    /// The interval between two lines of one key.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Whether to log this occurrence of `key`: `Some(n)` to log it now,
    /// where `n` occurrences were suppressed since the key's last line (0
    /// for its first); `None` to skip it (it is counted into the next
    /// line's `n`).
    ///
    /// The count of a key that never recurs is not reported (nothing runs
    /// in the background to flush it): the first occurrence after a quiet
    /// spell carries it. Past `capacity` distinct keys within one interval,
    /// further new keys are suppressed without being counted, so a flood of
    /// distinct keys bounds both the memory and the log.
    pub fn should_log(&self, key: K) -> Option<u64> {
        self.should_log_at(key, Instant::now())
    }

    /// [`Self::should_log`] at `now` (for tests, which drive the clock).
    pub(crate) fn should_log_at(&self, key: K, now: Instant) -> Option<u64> {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(seen) = keys.get_mut(&key) {
            if now.saturating_duration_since(seen.logged_at) < self.interval {
                seen.suppressed = seen.suppressed.saturating_add(1);
                return None;
            }
            let suppressed = seen.suppressed;
            *seen = Seen { logged_at: now, suppressed: 0 };
            return Some(suppressed);
        }
        if keys.len() >= self.capacity {
            // Keys quiet for an interval log their next occurrence anyway:
            // forgetting them loses only their unreported counts.
            keys.retain(|_, seen| now.saturating_duration_since(seen.logged_at) < self.interval);
            if keys.len() >= self.capacity {
                return None;
            }
        }
        keys.insert(key, Seen { logged_at: now, suppressed: 0 });
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn first_logged_then_one_line_per_interval_with_the_count() {
        let t0 = Instant::now();
        let limit = LogLimit::new(5 * S, 16);
        assert_eq!(limit.should_log_at("a", t0), Some(0));
        for i in 1..=9 {
            assert_eq!(limit.should_log_at("a", t0 + i * S / 2), None, "within the interval");
        }
        // Another key has its own budget.
        assert_eq!(limit.should_log_at("b", t0 + S), Some(0));
        assert_eq!(limit.should_log_at("a", t0 + 5 * S), Some(9));
        assert_eq!(limit.should_log_at("a", t0 + 6 * S), None);
        // After a quiet spell the next occurrence carries the pending count.
        assert_eq!(limit.should_log_at("a", t0 + 60 * S), Some(1));
        assert_eq!(limit.should_log_at("a", t0 + 120 * S), Some(0));
    }

    #[test]
    fn keys_are_bounded_and_quiet_ones_are_forgotten() {
        let t0 = Instant::now();
        let limit = LogLimit::new(5 * S, 2);
        assert_eq!(limit.should_log_at(1, t0), Some(0));
        assert_eq!(limit.should_log_at(2, t0), Some(0));
        assert_eq!(limit.should_log_at(3, t0 + S), None, "full: a new key is not logged");
        assert_eq!(limit.should_log_at(1, t0 + S), None, "known keys are still counted");
        // Once the first two are quiet for an interval, room is made.
        assert_eq!(limit.should_log_at(3, t0 + 6 * S), Some(0));
        assert_eq!(limit.should_log_at(4, t0 + 6 * S), Some(0));
        assert_eq!(limit.keys.lock().expect("lock").len(), 2);
    }
}
