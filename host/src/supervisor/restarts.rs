//! When to start a child again: supervisord's startsecs/startretries with an
//! exponential backoff. Pure: the child task reports what happened and is
//! told what to do next.
//!
//! A *failed start* is a child that could not be spawned, exited before its
//! port accepted, did not accept within `start_timeout`, or exited less than
//! `start_timeout` after it was spawned. Failed starts in a row are counted;
//! after the `start_retries + 1`-th the child is given up on (supervisord's
//! FATAL). A child that ran longer than `start_timeout` and then exited is
//! restarted at once, and the count starts again.

use std::time::Duration;

/// The wait before the first retry; it doubles with each failed start.
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);

/// The longest wait between two retries.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What the child task does after a start attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Start again after `delay` (zero: at once).
    Restart { delay: Duration },
    /// Too many failed starts in a row: mark the child failed.
    GiveUp,
}

/// The wait after the `n`-th failed start in a row (`n >= 1`):
/// 0.5 s, 1 s, 2 s, 4 s ... up to [`BACKOFF_MAX`].
pub fn backoff(n: u32) -> Duration {
    let doublings = n.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1 << doublings).min(BACKOFF_MAX)
}

/// Failed-start bookkeeping for one child.
#[derive(Debug, Clone)]
pub struct Restarts {
    start_retries: u32,
    start_timeout: Duration,
    failed_in_a_row: u32,
}

impl Restarts {
    /// Counting starts from zero.
    pub fn new(start_retries: u32, start_timeout: Duration) -> Self {
        Self { start_retries, start_timeout, failed_in_a_row: 0 }
    }

    /// A start attempt failed before the child accepted on its port.
    pub fn failed_start(&mut self) -> Next {
        self.failed_in_a_row = self.failed_in_a_row.saturating_add(1);
        if self.failed_in_a_row > self.start_retries {
            Next::GiveUp
        } else {
            Next::Restart { delay: backoff(self.failed_in_a_row) }
        }
    }

    /// A child that had accepted on its port exited, `ran` after it was spawned.
    pub fn exited(&mut self, ran: Duration) -> Next {
        if ran < self.start_timeout {
            return self.failed_start();
        }
        self.failed_in_a_row = 0;
        Next::Restart { delay: Duration::ZERO }
    }

    /// A fresh start asked for by an operator (a rolling restart): earlier
    /// failures no longer count.
    pub fn reset(&mut self) {
        self.failed_in_a_row = 0;
    }

    /// Failed starts in a row so far.
    pub fn failed_in_a_row(&self) -> u32 {
        self.failed_in_a_row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECS: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let schedule: Vec<Duration> = (1..=8).map(backoff).collect();
        assert_eq!(
            schedule,
            [Duration::from_millis(500), SECS(1), SECS(2), SECS(4), SECS(8), SECS(16), SECS(30), SECS(30)]
        );
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn gives_up_after_start_retries_plus_one_failed_starts() {
        // supervisord: startretries = 3 means four attempts.
        let mut r = Restarts::new(3, SECS(10));
        assert_eq!(r.failed_start(), Next::Restart { delay: backoff(1) });
        assert_eq!(r.failed_start(), Next::Restart { delay: backoff(2) });
        assert_eq!(r.failed_start(), Next::Restart { delay: backoff(3) });
        assert_eq!(r.failed_start(), Next::GiveUp);
        let mut none = Restarts::new(0, SECS(10));
        assert_eq!(none.failed_start(), Next::GiveUp);
    }

    #[test]
    fn a_quick_exit_counts_as_a_failed_start() {
        let mut r = Restarts::new(1, SECS(10));
        assert_eq!(r.exited(SECS(3)), Next::Restart { delay: backoff(1) });
        assert_eq!(r.exited(SECS(9)), Next::GiveUp);
    }

    #[test]
    fn a_long_run_resets_the_count_and_restarts_at_once() {
        let mut r = Restarts::new(1, SECS(10));
        assert_eq!(r.failed_start(), Next::Restart { delay: backoff(1) });
        assert_eq!(r.exited(SECS(60)), Next::Restart { delay: Duration::ZERO });
        assert_eq!(r.failed_in_a_row(), 0);
        assert_eq!(r.failed_start(), Next::Restart { delay: backoff(1) });
        r.reset();
        assert_eq!(r.failed_in_a_row(), 0);
    }
}
