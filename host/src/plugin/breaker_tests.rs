//! The breaker's state machine, driven with explicit instants.

use super::*;

fn settings() -> BreakerSettings {
    BreakerSettings {
        failures: 3,
        failure_percent: 50,
        window: Duration::from_secs(10),
        backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(3),
    }
}

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

fn c(limit_hits: u64, calls: u64) -> Counts {
    Counts { limit_hits, calls }
}

/// Opens `b` (closed, at `t`) with three limit hits.
fn open(b: &mut State, t: Instant) -> Option<Transition> {
    b.limit_hit(t, false, c(1, 1));
    b.limit_hit(t, false, c(2, 2));
    b.limit_hit(t, false, c(3, 3))
}

#[test]
fn opens_after_n_limit_hits_within_the_window() {
    let t0 = Instant::now();
    let mut b = State::new(settings());
    assert_eq!(b.admit(t0), Admit::Run);
    assert_eq!(b.limit_hit(t0, false, c(1, 1)), None);
    assert_eq!(b.limit_hit(t0 + S, false, c(2, 2)), None);
    assert_eq!(b.within_limits(t0 + S, false), None, "a success in the closed state changes nothing");
    assert_eq!(
        b.limit_hit(t0 + 2 * S, false, c(3, 4)),
        Some(Transition::Opened { backoff: S, failures: 3, calls: 4, after_probe: false })
    );
    assert_eq!(b.admit(t0 + 2 * S + 400 * MS), Admit::Refuse(600 * MS));
    assert_eq!(b.snapshot(t0 + 2 * S).0, BreakerState::Open);
}

#[test]
fn limit_hits_below_the_share_of_calls_do_not_open_it() {
    let t0 = Instant::now();
    let mut b = State::new(settings());
    // One call in ten spins: 3, 4, 5 ... hits among 30, 40, 50 calls.
    for i in 1..=20u32 {
        let hits = u64::from(i);
        assert_eq!(b.limit_hit(t0 + i * 100 * MS, false, c(hits, 10 * hits)), None, "{hits} hits");
    }
    // Half of the window's calls: it opens.
    assert!(matches!(b.limit_hit(t0 + 2100 * MS, false, c(21, 42)), Some(Transition::Opened { failures: 21, .. })));
}

#[test]
fn zero_percent_opens_on_the_count_alone() {
    let t0 = Instant::now();
    let mut b = State::new(BreakerSettings { failure_percent: 0, ..settings() });
    assert_eq!(b.limit_hit(t0, false, c(1, 1000)), None);
    assert_eq!(b.limit_hit(t0, false, c(2, 1000)), None);
    assert!(matches!(b.limit_hit(t0, false, c(3, 1000)), Some(Transition::Opened { .. })));
}

#[test]
fn one_probe_after_the_backoff_and_success_closes() {
    let t0 = Instant::now();
    let mut b = State::new(settings());
    assert!(open(&mut b, t0).is_some());
    assert_eq!(b.admit(t0 + S), Admit::Probe);
    // While the probe runs, everything else is refused.
    assert_eq!(b.admit(t0 + S), Admit::Refuse(Duration::ZERO));
    assert_eq!(b.snapshot(t0 + S).0, BreakerState::Probing);
    // A late failure of a call admitted before the quarantine is ignored.
    assert_eq!(b.limit_hit(t0 + S, false, c(9, 9)), None);
    assert_eq!(b.within_limits(t0 + S + 5 * MS, true), Some(Transition::Closed { quarantined: S + 5 * MS }));
    assert_eq!(b.admit(t0 + S + 5 * MS), Admit::Run);
}

#[test]
fn failed_probes_double_the_backoff_up_to_the_cap() {
    let t0 = Instant::now();
    let mut b = State::new(settings());
    open(&mut b, t0);
    let mut now = t0 + S;
    for want in [2 * S, 3 * S, 3 * S] {
        assert_eq!(b.admit(now), Admit::Probe);
        assert_eq!(
            b.limit_hit(now, true, c(1, 1)),
            Some(Transition::Opened { backoff: want, failures: 0, calls: 0, after_probe: true })
        );
        assert_eq!(b.admit(now + want - MS), Admit::Refuse(MS));
        now += want;
    }
    assert_eq!(b.admit(now), Admit::Probe);
    assert_eq!(b.within_limits(now, true), Some(Transition::Closed { quarantined: now - t0 }));
    // The next quarantine starts from the first backoff again.
    open(&mut b, now);
    assert_eq!(b.admit(now + S), Admit::Probe);
}

#[test]
fn an_abandoned_probe_lets_the_next_call_probe() {
    let t0 = Instant::now();
    let mut b = State::new(settings());
    open(&mut b, t0);
    assert_eq!(b.admit(t0 + S), Admit::Probe);
    b.abandon(t0 + S);
    assert_eq!(b.admit(t0 + S), Admit::Probe);
}

#[test]
fn zero_failures_switches_it_off() {
    let t0 = Instant::now();
    let mut b = State::new(BreakerSettings { failures: 0, ..settings() });
    for i in 1..100 {
        assert_eq!(b.limit_hit(t0 + i * MS, false, c(u64::from(i), u64::from(i))), None);
    }
    assert_eq!(b.admit(t0 + S), Admit::Run);
}

#[test]
fn the_window_counts_per_slice_and_forgets_old_slices() {
    let t0 = Instant::now();
    let w = Window::new(10 * S, t0);
    for i in 0..5 {
        w.add(t0 + i * S);
    }
    w.add(t0 + 4 * S);
    assert_eq!(w.count(t0 + 4 * S), 6);
    // At 12 s, the slices of 0 s and 1 s (and 2 s, just) are out.
    assert_eq!(w.count(t0 + 12 * S + 500 * MS), 3);
    // The slot of 3 s is reused for 13 s and starts from zero: 4 s's two, and this one.
    w.add(t0 + 13 * S);
    assert_eq!(w.count(t0 + 13 * S), 3);
    assert_eq!(w.count(t0 + 60 * S), 0);
    w.clear();
    assert_eq!(w.count(t0 + 13 * S), 0);
}

#[test]
fn old_limit_hits_leave_the_window() {
    let b = Breaker::new("t", "p", settings());
    let t0 = Instant::now();
    b.record(t0, Health::LimitHit, false, "on-request");
    b.record(t0 + S, Health::LimitHit, false, "on-request");
    // 11 s later the first two are out of the 10 s window.
    assert_eq!(b.record(t0 + 12 * S, Health::LimitHit, false, "on-request"), None);
    assert_eq!(b.record(t0 + 13 * S, Health::LimitHit, false, "on-request"), None);
    assert!(matches!(
        b.record(t0 + 14 * S, Health::LimitHit, false, "on-request"),
        Some(Transition::Opened { failures: 3, calls: 3, .. })
    ));
}

#[test]
fn calls_within_limits_never_open_it_and_limit_hits_open_it_at_the_share() {
    let b = Breaker::new("t", "p", settings());
    let t0 = Instant::now();
    // Calls that end within their limits (traps included) change nothing.
    for i in 0..200u32 {
        assert_eq!(b.record(t0 + i * 10 * MS, Health::WithinLimits, false, "on-request"), None);
    }
    assert_eq!(b.admit(), Admit::Run);
    let snap = b.snapshot();
    assert_eq!((snap.state, snap.recent_failures), (BreakerState::Closed, 0));
    // Spinning calls among good ones: 3 of 9 is a third, below half.
    let t1 = t0 + 30 * S;
    for i in 0..9u32 {
        let health = if i % 3 == 2 { Health::LimitHit } else { Health::WithinLimits };
        assert_eq!(b.record(t1 + i * MS, health, false, "on-request"), None, "call {i}");
    }
    // Two more: 5 of 11 is still below half; then 6 of 12 opens it.
    assert_eq!(b.record(t1 + 10 * MS, Health::LimitHit, false, "on-request"), None);
    assert_eq!(b.record(t1 + 11 * MS, Health::LimitHit, false, "on-request"), None);
    assert!(matches!(
        b.record(t1 + 12 * MS, Health::LimitHit, false, "on-request"),
        Some(Transition::Opened { failures: 6, calls: 12, .. })
    ));
    assert!(matches!(b.admit(), Admit::Refuse(_)));
}

#[test]
fn the_share_is_taken_per_hook() {
    let b = Breaker::new("t", "p", settings());
    let t0 = Instant::now();
    // Fail-open: on-request spins on every request, on-response still runs and returns.
    for i in 0..2u32 {
        let t = t0 + i * MS;
        assert_eq!(b.record(t, Health::LimitHit, false, "on-request"), None);
        assert_eq!(b.record(t, Health::WithinLimits, false, "on-response"), None);
    }
    let snap = b.snapshot();
    assert_eq!((snap.recent_failures, snap.recent_calls), (2, 4));
    // Three of on-request's three calls, though three of the plugin's five.
    assert!(matches!(
        b.record(t0 + 2 * MS, Health::LimitHit, false, "on-request"),
        Some(Transition::Opened { failures: 3, calls: 3, .. })
    ));
}

#[test]
fn a_probe_within_its_limits_ends_the_quarantine() {
    let s = BreakerSettings { backoff: MS, max_backoff: MS, ..settings() };
    let b = Breaker::new("t", "p", s);
    let t0 = Instant::now();
    for _ in 0..3 {
        b.record(t0, Health::LimitHit, false, "on-request");
    }
    assert_eq!(b.snapshot().state, BreakerState::Open);
    std::thread::sleep(2 * MS);
    assert_eq!(b.admit(), Admit::Probe);
    // E.g. the probe trapped on its request's input (see `Scope::settle`).
    let closed = b.record(Instant::now(), Health::WithinLimits, true, "on-request");
    assert!(matches!(closed, Some(Transition::Closed { .. })), "{closed:?}");
    assert_eq!(b.admit(), Admit::Run);
    let snap = b.snapshot();
    assert_eq!((snap.recent_failures, snap.recent_calls), (0, 0), "the windows start afresh");
}
