//! The circuit breaker of one (tenant, plugin): it takes a plugin out of
//! service when its calls cost the machine, not when one input makes it
//! fail.
//!
//! What counts is a call that **hit a limit**: it ran until its deadline,
//! grew to its memory cap, or a fresh instance for it could not be set up.
//! Each of those costs a worker for a whole time limit, or a whole memory
//! budget, whatever the request. A **trap** does not count: it is answered
//! by the attachment's `on_error` for that one request (503 or skip), the
//! trapped instance is replaced, and it costs about what a call costs. If
//! traps counted, a client that can make a plugin trap (one crafted header)
//! could quarantine it for every client of the route — switching a
//! fail-open policy off for everyone, or a fail-closed route to 503.
//!
//! The breaker opens when, within `window`, at least `failures` calls of one
//! hook hit a limit **and** they are at least `failure_percent` of that
//! hook's calls that ran in the window: a plugin that times out on one unlucky input among many
//! good ones is cheaper to keep than to switch off; one that times out on
//! most calls is broken (or under a flood that burns the machine) and is
//! quarantined — its calls are refused without running it, so the
//! attachment's failure policy applies at once — and retried after a backoff
//! that doubles (up to `max_backoff`) for as long as the retry fails.
//!
//! States: `Closed` (calls run and are counted per slice of the window),
//! `Open` (calls refused until `retry_at`), `Probing` (one call runs as a
//! probe, the others are still refused; if it ends within its limits — a
//! trap included — the breaker closes, if it hits a limit it opens again
//! with twice the backoff). [`State`] is the pure machine, driven with
//! explicit instants so that it is tested without sleeping; [`Breaker`]
//! adds the lock-free counters (per hook, per slice of the window) and logs
//! transitions.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// When a plugin is quarantined and how it is retried. Defaults: 5 calls
/// that hit a limit within 10 s, making at least half of the calls in those
/// 10 s, open the breaker; first retry after 1 s, then 2 s, 4 s ... at most
/// 60 s. `failures = 0` switches the breaker off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Calls of one hook that hit a limit (timeouts, memory-limit hits,
    /// failed setups) within `window` that open the breaker, if they also
    /// make `failure_percent` of that hook's calls; 0 never opens it.
    pub failures: u32,
    /// The least share of the window's calls, in percent, that must have
    /// hit a limit; 0 opens on `failures` alone.
    pub failure_percent: u8,
    /// The sliding window calls and failures are counted in.
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
            failure_percent: 50,
            window: Duration::from_secs(10),
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// What a call that ran tells the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    /// It ended within its limits: it returned, or it trapped (the request's
    /// own failure, answered by `on_error` for that request only).
    WithinLimits,
    /// It hit a limit: its deadline, its memory cap, or a failed setup.
    LimitHit,
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
    /// The breaker opened: enough limit hits within the window (or a probe
    /// that hit a limit).
    Opened {
        /// The quarantine before the next retry.
        backoff: Duration,
        /// Limit hits in the window when it opened (0 after a probe).
        failures: u64,
        /// Calls that ran in the window when it opened (0 after a probe).
        calls: u64,
        /// True when a probe failed (the quarantine was extended).
        after_probe: bool,
    },
    /// A probe ended within its limits: the plugin is back in service after
    /// being out for `quarantined`.
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

/// One breaker as `/status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSnapshot {
    /// Closed, open or probing.
    pub state: BreakerState,
    /// Calls that hit a limit within the window (closed state).
    pub recent_failures: u64,
    /// Calls that ran within the window (closed state).
    pub recent_calls: u64,
    /// Time to the next retry, when open.
    pub retry_in: Option<Duration>,
}

/// Slices of a [`Window`]: counts are kept per tenth of the window, so the
/// window slides by a tenth (a count may be up to a tenth older).
const SLICES: usize = 10;
/// Bits of a slot that hold the count (the rest hold the slice number): 16
/// million calls per slice before the count saturates.
const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// Events within a sliding window, counted per slice without a lock: one
/// compare-and-swap per event on a word that holds the slice's number and
/// its count, so a slot reused for a later slice starts again from zero.
#[derive(Debug)]
struct Window {
    origin: Instant,
    slice_nanos: u128,
    slots: [AtomicU64; SLICES],
}

impl Window {
    fn new(window: Duration, origin: Instant) -> Self {
        // At least a millisecond per slice: the 40 bits of slice number
        // then last 34 years.
        let slice_nanos = (window.as_nanos() / SLICES as u128).max(1_000_000);
        Self { origin, slice_nanos, slots: Default::default() }
    }

    fn slice(&self, now: Instant) -> u64 {
        let n = now.saturating_duration_since(self.origin).as_nanos() / self.slice_nanos;
        u64::try_from(n).unwrap_or(u64::MAX) & (u64::MAX >> COUNT_BITS)
    }

    fn add(&self, now: Instant) {
        let slice = self.slice(now);
        let slot = &self.slots[(slice % SLICES as u64) as usize];
        let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(if v >> COUNT_BITS == slice {
                (v & !COUNT_MASK) | ((v & COUNT_MASK) + 1).min(COUNT_MASK)
            } else {
                (slice << COUNT_BITS) | 1
            })
        });
    }

    /// Events in the `SLICES` slices up to and including `now`'s.
    fn count(&self, now: Instant) -> u64 {
        let slice = self.slice(now);
        self.slots
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .filter(|v| slice.checked_sub(v >> COUNT_BITS).is_some_and(|age| age < SLICES as u64))
            .map(|v| v & COUNT_MASK)
            .sum()
    }

    fn clear(&self) {
        for slot in &self.slots {
            slot.store(0, Ordering::Relaxed);
        }
    }
}

/// One hook's calls and limit hits within the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Calls that hit a limit.
    pub(crate) limit_hits: u64,
    /// Calls that ran (the limit hits included).
    pub(crate) calls: u64,
}

/// The pure state machine.
#[derive(Debug)]
pub(crate) struct State {
    settings: BreakerSettings,
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
        Self { settings, phase: Phase::Closed, backoff: settings.backoff, since: None }
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

    /// Records a call that ended within its limits (`probe`: it was the
    /// probe).
    pub(crate) fn within_limits(&mut self, now: Instant, probe: bool) -> Option<Transition> {
        if probe && self.phase == Phase::Probing {
            let quarantined = self.since.map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
            self.phase = Phase::Closed;
            self.backoff = self.settings.backoff;
            self.since = None;
            return Some(Transition::Closed { quarantined });
        }
        None
    }

    /// Records a call that hit a limit; `counts` are its hook's within the
    /// window, this call included.
    pub(crate) fn limit_hit(&mut self, now: Instant, probe: bool, counts: Counts) -> Option<Transition> {
        if self.settings.failures == 0 {
            return None;
        }
        match self.phase {
            Phase::Probing if probe => {
                self.backoff = (self.backoff * 2).min(self.settings.max_backoff);
                self.phase = Phase::Open { retry_at: now + self.backoff };
                Some(Transition::Opened { backoff: self.backoff, failures: 0, calls: 0, after_probe: true })
            }
            Phase::Closed => {
                let failures = counts.limit_hits;
                // The counts are taken without a lock: never fewer calls
                // than failures.
                let calls = counts.calls.max(failures);
                let enough = failures >= u64::from(self.settings.failures);
                let share = failures * 100 >= u64::from(self.settings.failure_percent) * calls;
                if !(enough && share) {
                    return None;
                }
                self.backoff = self.settings.backoff.min(self.settings.max_backoff);
                self.phase = Phase::Open { retry_at: now + self.backoff };
                self.since = Some(now);
                Some(Transition::Opened { backoff: self.backoff, failures, calls, after_probe: false })
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

    /// The state now, and the time to the next retry when open.
    pub(crate) fn snapshot(&self, now: Instant) -> (BreakerState, Option<Duration>) {
        match self.phase {
            Phase::Closed => (BreakerState::Closed, None),
            Phase::Open { retry_at } => (BreakerState::Open, Some(retry_at.saturating_duration_since(now))),
            Phase::Probing => (BreakerState::Probing, None),
        }
    }
}

/// Hooks a breaker keeps their own windows for: a world calls at most three
/// (`upload-fields`), and the spare slots cost little. More share one window.
const HOOK_SLOTS: usize = 6;

/// One hook's windows. The share is taken per hook: a fail-open plugin
/// whose `on-request` spins on every request still has its `on-response`
/// run (and succeed) on each, and calls of both hooks together would never
/// be more than half limit hits.
#[derive(Debug)]
struct HookWindows {
    hook: &'static str,
    calls: Window,
    limit_hits: Window,
}

impl HookWindows {
    fn new(hook: &'static str, settings: &BreakerSettings, origin: Instant) -> Self {
        Self { hook, calls: Window::new(settings.window, origin), limit_hits: Window::new(settings.window, origin) }
    }

    fn counts(&self, now: Instant) -> Counts {
        Counts { limit_hits: self.limit_hits.count(now), calls: self.calls.count(now) }
    }

    fn clear(&self) {
        self.calls.clear();
        self.limit_hits.clear();
    }
}

/// A breaker shared by every attachment of one plugin in one tenant.
#[derive(Debug)]
pub(crate) struct Breaker {
    pub(crate) tenant: String,
    pub(crate) plugin: String,
    settings: BreakerSettings,
    origin: Instant,
    /// Calls and limit hits per hook within the window, counted without
    /// the lock; filled in first-use order and never changed.
    hooks: [OnceLock<HookWindows>; HOOK_SLOTS],
    /// The windows of hooks beyond [`HOOK_SLOTS`].
    other: HookWindows,
    state: Mutex<State>,
    /// Whether `state` is closed, readable without the lock: while closed,
    /// every call is admitted without the lock or the clock.
    closed: AtomicBool,
}

impl Breaker {
    pub(crate) fn new(tenant: &str, plugin: &str, settings: BreakerSettings) -> Self {
        let origin = Instant::now();
        Self {
            tenant: tenant.to_owned(),
            plugin: plugin.to_owned(),
            settings,
            origin,
            hooks: Default::default(),
            other: HookWindows::new("other", &settings, origin),
            state: Mutex::new(State::new(settings)),
            closed: AtomicBool::new(true),
        }
    }

    fn windows(&self, hook: &'static str) -> &HookWindows {
        for slot in &self.hooks {
            // A free slot is taken for this hook, unless another thread
            // takes it first (for its own hook): then look further.
            let windows = slot.get_or_init(|| HookWindows::new(hook, &self.settings, self.origin));
            if windows.hook == hook {
                return windows;
            }
        }
        &self.other
    }

    fn every_window(&self) -> impl Iterator<Item = &HookWindows> {
        self.hooks.iter().filter_map(OnceLock::get).chain(std::iter::once(&self.other))
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

    /// Records how a call of `hook` that ran at `now` ended; logs and
    /// returns a transition.
    pub(crate) fn record(&self, now: Instant, health: Health, probe: bool, hook: &'static str) -> Option<Transition> {
        if self.settings.failures == 0 {
            return None;
        }
        let windows = self.windows(hook);
        windows.calls.add(now);
        let transition = match (health, probe) {
            // Within limits and not a probe changes nothing, in any phase.
            (Health::WithinLimits, false) => return None,
            (Health::WithinLimits, true) => self.with_state(|state| state.within_limits(now, true)),
            (Health::LimitHit, _) => {
                windows.limit_hits.add(now);
                let counts = windows.counts(now);
                self.with_state(|state| state.limit_hit(now, probe, counts))
            }
        };
        if matches!(transition, Some(Transition::Opened { after_probe: false, .. } | Transition::Closed { .. })) {
            // The next closed phase counts afresh.
            self.every_window().for_each(HookWindows::clear);
        }
        self.log(transition, hook);
        transition
    }

    fn log(&self, transition: Option<Transition>, hook: &str) {
        let (tenant, plugin) = (&self.tenant, &self.plugin);
        match transition {
            Some(Transition::Opened { backoff, failures, calls, after_probe: false }) => {
                let window = self.settings.window;
                tracing::error!(
                    tenant = %tenant,
                    plugin = %plugin,
                    "plugin quarantined: {failures} of its {calls} {hook} calls within {window:?} hit a limit \
                     (time, memory or setup); its failure policy applies without running it; retry in {backoff:?}"
                );
            }
            Some(Transition::Opened { backoff, after_probe: true, .. }) => {
                tracing::error!(
                    tenant = %tenant,
                    plugin = %plugin,
                    "plugin still failing after quarantine (retry in {hook} hit a limit); quarantined again, retry in {backoff:?}"
                );
            }
            Some(Transition::Closed { quarantined }) => {
                tracing::warn!(
                    tenant = %tenant,
                    plugin = %plugin,
                    "plugin back in service: the retry ended within its limits after {:.1} s in quarantine",
                    quarantined.as_secs_f64()
                );
            }
            None => {}
        }
    }

    pub(crate) fn abandon(&self) {
        self.with_state(|state| state.abandon(Instant::now()));
    }

    /// The state, with the calls and limit hits of every hook in the
    /// window (while closed).
    pub(crate) fn snapshot(&self) -> BreakerSnapshot {
        let now = Instant::now();
        let (state, retry_in) = self.lock().snapshot(now);
        let (mut recent_failures, mut recent_calls) = (0, 0);
        if state == BreakerState::Closed {
            for counts in self.every_window().map(|w| w.counts(now)) {
                recent_failures += counts.limit_hits;
                recent_calls += counts.calls;
            }
        }
        BreakerSnapshot { state, recent_failures, recent_calls, retry_in }
    }
}

#[cfg(test)]
#[path = "breaker_tests.rs"]
mod tests;
