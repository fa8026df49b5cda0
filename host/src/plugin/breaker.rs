//! The circuit breaker of one (tenant, plugin): after `failures` traps,
//! timeouts or memory-limit hits within `window`, the plugin is quarantined
//! — its calls are refused without running it, so the attachment's failure
//! policy applies at once — and retried after a backoff that doubles (up to
//! `max_backoff`) for as long as the retry fails.
//!
//! States: `Closed` (calls run; failures are counted in a sliding window),
//! `Open` (calls refused until `retry_at`), `Probing` (one call runs as a
//! probe, the others are still refused; its success closes the breaker, its
//! failure opens it again with twice the backoff). [`State`] is the pure
//! machine, driven with explicit instants so that it is tested without
//! sleeping; [`Breaker`] puts it behind a mutex and logs transitions.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// When a plugin is quarantined and how it is retried. Defaults: 5
/// failures within 10 s open the breaker; first retry after 1 s, then 2 s,
/// 4 s ... at most 60 s. `failures = 0` switches the breaker off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Failures (traps, timeouts, memory-limit hits) within `window` that
    /// open the breaker; 0 never opens it.
    pub failures: u32,
    /// The sliding window failures are counted in.
    pub window: Duration,
    /// How long the first quarantine lasts before a retry.
    pub backoff: Duration,
    /// The longest quarantine: the backoff doubles up to this.
    pub max_backoff: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failures: 5,
            window: Duration::from_secs(10),
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// Whether a call may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Run it normally.
    Run,
    /// Run it as the probe of a quarantined plugin: its outcome decides
    /// whether the quarantine ends.
    Probe,
    /// Do not run it: the plugin is quarantined for this much longer.
    Refuse(Duration),
}

/// A change of state worth logging and counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    /// The breaker opened: `failures` within the window (or a failed probe).
    Opened {
        /// The quarantine before the next retry.
        backoff: Duration,
        /// True when a probe failed (the quarantine was extended).
        after_probe: bool,
    },
    /// A probe succeeded: the plugin is back in service after being out
    /// for `quarantined`.
    Closed {
        /// How long the plugin was out of service.
        quarantined: Duration,
    },
}

/// The breaker's state, for `/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls run.
    Closed,
    /// Calls are refused.
    Open,
    /// One call runs as a probe; the others are refused.
    Probing,
}

impl BreakerState {
    /// The state's name, as `/status` and the metrics say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::Probing => "probing",
        }
    }
}

/// The pure state machine.
#[derive(Debug)]
pub(crate) struct State {
    settings: BreakerSettings,
    /// Failure instants within the window (closed state only).
    recent: VecDeque<Instant>,
    phase: Phase,
    /// The current backoff (doubles while probes fail).
    backoff: Duration,
    /// When the quarantine began (open or probing).
    since: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed,
    Open { retry_at: Instant },
    Probing,
}

impl State {
    pub(crate) fn new(settings: BreakerSettings) -> Self {
        Self { settings, recent: VecDeque::new(), phase: Phase::Closed, backoff: settings.backoff, since: None }
    }

    /// Whether calls run without question (no quarantine or probe).
    pub(crate) fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Decides whether a call at `now` may run. The first call after the
    /// backoff becomes the probe.
    pub(crate) fn admit(&mut self, now: Instant) -> Admit {
        match self.phase {
            Phase::Closed => Admit::Run,
            Phase::Open { retry_at } if now >= retry_at => {
                self.phase = Phase::Probing;
                Admit::Probe
            }
            Phase::Open { retry_at } => Admit::Refuse(retry_at - now),
            // Refused until the probe reports; a short hint for the log.
            Phase::Probing => Admit::Refuse(Duration::ZERO),
        }
    }

    /// Records a call that ran and succeeded (`probe`: it was the probe).
    pub(crate) fn success(&mut self, now: Instant, probe: bool) -> Option<Transition> {
        if probe && self.phase == Phase::Probing {
            let quarantined = self.since.map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
            self.phase = Phase::Closed;
            self.recent.clear();
            self.backoff = self.settings.backoff;
            self.since = None;
            return Some(Transition::Closed { quarantined });
        }
        None
    }

    /// Records a trap, timeout or memory-limit hit.
    pub(crate) fn failure(&mut self, now: Instant, probe: bool) -> Option<Transition> {
        if self.settings.failures == 0 {
            return None;
        }
        match self.phase {
            Phase::Probing if probe => {
                self.backoff = (self.backoff * 2).min(self.settings.max_backoff);
                self.phase = Phase::Open { retry_at: now + self.backoff };
                Some(Transition::Opened { backoff: self.backoff, after_probe: true })
            }
            Phase::Closed => {
                self.recent.push_back(now);
                while self.recent.front().is_some_and(|t| now.saturating_duration_since(*t) > self.settings.window) {
                    self.recent.pop_front();
                }
                if self.recent.len() < self.settings.failures as usize {
                    return None;
                }
                self.recent.clear();
                self.backoff = self.settings.backoff.min(self.settings.max_backoff);
                self.phase = Phase::Open { retry_at: now + self.backoff };
                self.since = Some(now);
                Some(Transition::Opened { backoff: self.backoff, after_probe: false })
            }
            // A call admitted before the breaker opened, finishing late:
            // the quarantine is already decided.
            Phase::Open { .. } | Phase::Probing => None,
        }
    }

    /// The probe never reported (its request was dropped, or it was
    /// refused a concurrency slot): the next call probes again.
    pub(crate) fn abandon(&mut self, now: Instant) {
        if self.phase == Phase::Probing {
            self.phase = Phase::Open { retry_at: now };
        }
    }

    /// The state now, failures in the window, and the time to the next
    /// retry when open.
    pub(crate) fn snapshot(&self, now: Instant) -> (BreakerState, usize, Option<Duration>) {
        match self.phase {
            Phase::Closed => {
                let recent =
                    self.recent.iter().filter(|t| now.saturating_duration_since(**t) <= self.settings.window).count();
                (BreakerState::Closed, recent, None)
            }
            Phase::Open { retry_at } => (BreakerState::Open, 0, Some(retry_at.saturating_duration_since(now))),
            Phase::Probing => (BreakerState::Probing, 0, None),
        }
    }
}

/// A breaker shared by every attachment of one plugin in one tenant.
#[derive(Debug)]
pub(crate) struct Breaker {
    pub(crate) tenant: String,
    pub(crate) plugin: String,
    settings: BreakerSettings,
    state: Mutex<State>,
    /// Whether `state` is closed, readable without the lock: every call is
    /// admitted and every success recorded, and while closed neither needs
    /// the lock or the clock (a few hundred nanoseconds per call saved).
    closed: AtomicBool,
}

impl Breaker {
    pub(crate) fn new(tenant: &str, plugin: &str, settings: BreakerSettings) -> Self {
        Self {
            tenant: tenant.to_owned(),
            plugin: plugin.to_owned(),
            settings,
            state: Mutex::new(State::new(settings)),
            closed: AtomicBool::new(true),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the state under the lock, then mirrors its phase.
    fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut state = self.lock();
        let result = f(&mut state);
        self.closed.store(state.is_closed(), Ordering::Release);
        result
    }

    pub(crate) fn admit(&self) -> Admit {
        if self.closed.load(Ordering::Acquire) {
            return Admit::Run;
        }
        self.with_state(|state| state.admit(Instant::now()))
    }

    /// Records a call's outcome; logs and returns a transition.
    pub(crate) fn record(&self, failed: bool, probe: bool, hook: &str) -> Option<Transition> {
        if !failed && !probe {
            // A success that is not a probe changes nothing, in any phase.
            return None;
        }
        let now = Instant::now();
        let transition =
            self.with_state(|state| if failed { state.failure(now, probe) } else { state.success(now, probe) });
        let (tenant, plugin) = (&self.tenant, &self.plugin);
        match transition {
            Some(Transition::Opened { backoff, after_probe: false }) => {
                let BreakerSettings { failures, window, .. } = self.settings;
                tracing::error!(
                    tenant = %tenant,
                    plugin = %plugin,
                    "plugin quarantined: {failures} failures within {window:?} (last in {hook}); \
                     its failure policy applies without running it; retry in {backoff:?}"
                );
            }
            Some(Transition::Opened { backoff, after_probe: true }) => {
                tracing::error!(
                    tenant = %tenant,
                    plugin = %plugin,
                    "plugin still failing after quarantine (retry in {hook} failed); quarantined again, retry in {backoff:?}"
                );
            }
            Some(Transition::Closed { quarantined }) => {
                tracing::warn!(
                    tenant = %tenant,
                    plugin = %plugin,
                    "plugin back in service: the retry succeeded after {:.1} s in quarantine",
                    quarantined.as_secs_f64()
                );
            }
            None => {}
        }
        transition
    }

    pub(crate) fn abandon(&self) {
        self.with_state(|state| state.abandon(Instant::now()));
    }

    pub(crate) fn snapshot(&self) -> (BreakerState, usize, Option<Duration>) {
        self.lock().snapshot(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failures: 3,
            window: Duration::from_secs(10),
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(3),
        }
    }

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn opens_after_n_failures_within_the_window() {
        let t0 = Instant::now();
        let mut b = State::new(settings());
        assert_eq!(b.admit(t0), Admit::Run);
        assert_eq!(b.failure(t0, false), None);
        assert_eq!(b.failure(t0 + S, false), None);
        assert_eq!(b.success(t0 + S, false), None, "a success in the closed state changes nothing");
        assert_eq!(b.snapshot(t0 + S).1, 2);
        assert_eq!(b.failure(t0 + 2 * S, false), Some(Transition::Opened { backoff: S, after_probe: false }));
        assert_eq!(b.admit(t0 + 2 * S + 400 * MS), Admit::Refuse(600 * MS));
        assert_eq!(b.snapshot(t0 + 2 * S).0, BreakerState::Open);
    }

    #[test]
    fn old_failures_leave_the_window() {
        let t0 = Instant::now();
        let mut b = State::new(settings());
        b.failure(t0, false);
        b.failure(t0 + S, false);
        // 11 s later the first two are out of the 10 s window.
        assert_eq!(b.failure(t0 + 12 * S, false), None);
        assert_eq!(b.failure(t0 + 13 * S, false), None);
        assert!(matches!(b.failure(t0 + 14 * S, false), Some(Transition::Opened { .. })));
    }

    #[test]
    fn one_probe_after_the_backoff_and_success_closes() {
        let t0 = Instant::now();
        let mut b = State::new(settings());
        for _ in 0..3 {
            b.failure(t0, false);
        }
        assert_eq!(b.admit(t0 + S), Admit::Probe);
        // While the probe runs, everything else is refused.
        assert_eq!(b.admit(t0 + S), Admit::Refuse(Duration::ZERO));
        assert_eq!(b.snapshot(t0 + S).0, BreakerState::Probing);
        // A late failure of a call admitted before the quarantine is ignored.
        assert_eq!(b.failure(t0 + S, false), None);
        assert_eq!(b.success(t0 + S + 5 * MS, true), Some(Transition::Closed { quarantined: S + 5 * MS }));
        assert_eq!(b.admit(t0 + S + 5 * MS), Admit::Run);
        assert_eq!(b.snapshot(t0 + S).1, 0, "the window starts afresh");
    }

    #[test]
    fn failed_probes_double_the_backoff_up_to_the_cap() {
        let t0 = Instant::now();
        let mut b = State::new(settings());
        for _ in 0..3 {
            b.failure(t0, false);
        }
        let mut now = t0 + S;
        for want in [2 * S, 3 * S, 3 * S] {
            assert_eq!(b.admit(now), Admit::Probe);
            assert_eq!(b.failure(now, true), Some(Transition::Opened { backoff: want, after_probe: true }));
            assert_eq!(b.admit(now + want - MS), Admit::Refuse(MS));
            now += want;
        }
        assert_eq!(b.admit(now), Admit::Probe);
        assert_eq!(b.success(now, true), Some(Transition::Closed { quarantined: now - t0 }));
        // The next quarantine starts from the first backoff again.
        for _ in 0..3 {
            b.failure(now, false);
        }
        assert_eq!(b.admit(now + S), Admit::Probe);
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_call_probe() {
        let t0 = Instant::now();
        let mut b = State::new(settings());
        for _ in 0..3 {
            b.failure(t0, false);
        }
        assert_eq!(b.admit(t0 + S), Admit::Probe);
        b.abandon(t0 + S);
        assert_eq!(b.admit(t0 + S), Admit::Probe);
    }

    #[test]
    fn zero_failures_switches_it_off() {
        let t0 = Instant::now();
        let mut b = State::new(BreakerSettings { failures: 0, ..settings() });
        for i in 0..100 {
            assert_eq!(b.failure(t0 + i * MS, false), None);
        }
        assert_eq!(b.admit(t0 + S), Admit::Run);
    }
}
