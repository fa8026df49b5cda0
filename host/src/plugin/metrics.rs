//! Plugin calls as Prometheus series, per (tenant, plugin, hook): calls by
//! outcome, a latency histogram, and how many times a failure in that hook
//! quarantined the plugin; plus per-tenant gauges (calls in flight, warm
//! instances) and each breaker's state.
//!
//! The series live in a process-wide registry keyed by their labels, so
//! they survive a reload; a pool looks its series up once per hook and then
//! only touches atomics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use super::tenant;

/// Upper bounds (seconds) of the call latency buckets: a warm call costs
/// microseconds, a fresh instance tens of them, a timeout the hook limit.
const BUCKETS: [f64; 12] =
    [0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.25];

/// How one hook call ended, as the metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It ran and returned (its answer may still be refused as invalid).
    Ok,
    /// The guest trapped.
    Trap,
    /// The call ran past its time limit.
    Timeout,
    /// The guest grew its memory past the limit.
    MemoryLimit,
    /// The tenant's `max_concurrent` slots stayed taken for the wait.
    Busy,
    /// Refused without running: the plugin is quarantined.
    Quarantined,
    /// Answered from memory without running (the hook declared its inputs).
    Remembered,
}

impl Outcome {
    const ALL: [Outcome; 7] = [
        Outcome::Ok,
        Outcome::Trap,
        Outcome::Timeout,
        Outcome::MemoryLimit,
        Outcome::Busy,
        Outcome::Quarantined,
        Outcome::Remembered,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Trap => "trap",
            Outcome::Timeout => "timeout",
            Outcome::MemoryLimit => "memory_limit",
            Outcome::Busy => "busy",
            Outcome::Quarantined => "quarantined",
            Outcome::Remembered => "remembered",
        }
    }
}

/// The series of one (tenant, plugin, hook).
#[derive(Debug, Default)]
pub(crate) struct CallMetrics {
    outcomes: [AtomicU64; Outcome::ALL.len()],
    quarantines: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl CallMetrics {
    /// Counts a call's outcome.
    pub(crate) fn outcome(&self, outcome: Outcome) {
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Records the duration of a call that ran.
    pub(crate) fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Counts a quarantine that a failure in this hook started.
    pub(crate) fn quarantine(&self) {
        self.quarantines.fetch_add(1, Ordering::Relaxed);
    }
}

type Key = (String, String, String);

fn registry() -> &'static Mutex<BTreeMap<Key, Arc<CallMetrics>>> {
    static R: OnceLock<Mutex<BTreeMap<Key, Arc<CallMetrics>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// The series of (`tenant`, `plugin`, `hook`), created on first use.
pub(crate) fn series(tenant: &str, plugin: &str, hook: &str) -> Arc<CallMetrics> {
    let mut r = registry().lock().unwrap_or_else(PoisonError::into_inner);
    r.entry((tenant.to_owned(), plugin.to_owned(), hook.to_owned())).or_default().clone()
}

/// Escapes a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Every plugin series, in Prometheus text format (appended to `out`).
pub fn render(out: &mut String) {
    let all: Vec<(Key, Arc<CallMetrics>)> = {
        let r = registry().lock().unwrap_or_else(PoisonError::into_inner);
        r.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let labels = |(t, p, h): &Key| format!("tenant=\"{}\",plugin=\"{}\",hook=\"{}\"", label(t), label(p), label(h));

    out.push_str("# HELP gale_plugin_calls_total Plugin hook calls, by outcome (ok, trap, timeout, memory_limit; busy: no concurrency slot; quarantined: refused without running).\n");
    out.push_str("# TYPE gale_plugin_calls_total counter\n");
    for (key, m) in &all {
        let l = labels(key);
        for o in Outcome::ALL {
            let n = m.outcomes[o as usize].load(Ordering::Relaxed);
            let _ = writeln!(out, "gale_plugin_calls_total{{{l},outcome=\"{}\"}} {n}", o.label());
        }
    }
    out.push_str("# HELP gale_plugin_call_seconds Duration of plugin hook calls that ran.\n");
    out.push_str("# TYPE gale_plugin_call_seconds histogram\n");
    for (key, m) in &all {
        let l = labels(key);
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += m.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "gale_plugin_call_seconds_bucket{{{l},le=\"{b}\"}} {cumulative}");
        }
        let count = m.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "gale_plugin_call_seconds_bucket{{{l},le=\"+Inf\"}} {count}");
        let sum = m.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "gale_plugin_call_seconds_sum{{{l}}} {sum}");
        let _ = writeln!(out, "gale_plugin_call_seconds_count{{{l}}} {count}");
    }
    out.push_str("# HELP gale_plugin_quarantines_total Times a failure in this hook quarantined the plugin (circuit breaker opened).\n");
    out.push_str("# TYPE gale_plugin_quarantines_total counter\n");
    for (key, m) in &all {
        let _ =
            writeln!(out, "gale_plugin_quarantines_total{{{}}} {}", labels(key), m.quarantines.load(Ordering::Relaxed));
    }

    let tenants = tenant::live();
    out.push_str("# HELP gale_plugin_quarantined Whether the plugin is quarantined now (1: open or probing).\n");
    out.push_str("# TYPE gale_plugin_quarantined gauge\n");
    for t in &tenants {
        for (plugin, breaker) in t.breakers() {
            let open = u8::from(breaker.state != super::BreakerState::Closed);
            let _ = writeln!(
                out,
                "gale_plugin_quarantined{{tenant=\"{}\",plugin=\"{}\"}} {open}",
                label(t.name()),
                label(&plugin)
            );
        }
    }
    out.push_str("# HELP gale_plugin_in_flight Plugin calls of the tenant running now (at most max_concurrent).\n");
    out.push_str("# TYPE gale_plugin_in_flight gauge\n");
    for t in &tenants {
        let _ = writeln!(out, "gale_plugin_in_flight{{tenant=\"{}\"}} {}", label(t.name()), t.in_flight());
    }
    out.push_str("# HELP gale_plugin_idle_instances Warm plugin instances the tenant keeps (at most max_instances).\n");
    out.push_str("# TYPE gale_plugin_idle_instances gauge\n");
    for t in &tenants {
        let _ = writeln!(out, "gale_plugin_idle_instances{{tenant=\"{}\"}} {}", label(t.name()), t.idle_instances());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_render_with_tenant_plugin_and_hook() {
        let m = series("metrics-t", "p\"q", "on-request");
        m.outcome(Outcome::Ok);
        m.outcome(Outcome::Trap);
        m.outcome(Outcome::Trap);
        m.observe(Duration::from_micros(20));
        m.observe(Duration::from_millis(3));
        m.quarantine();
        assert!(Arc::ptr_eq(&m, &series("metrics-t", "p\"q", "on-request")));
        let mut text = String::new();
        render(&mut text);
        let l = "tenant=\"metrics-t\",plugin=\"p\\\"q\",hook=\"on-request\"";
        for want in [
            format!("gale_plugin_calls_total{{{l},outcome=\"ok\"}} 1"),
            format!("gale_plugin_calls_total{{{l},outcome=\"trap\"}} 2"),
            format!("gale_plugin_calls_total{{{l},outcome=\"quarantined\"}} 0"),
            format!("gale_plugin_call_seconds_bucket{{{l},le=\"0.000025\"}} 1"),
            format!("gale_plugin_call_seconds_bucket{{{l},le=\"0.005\"}} 2"),
            format!("gale_plugin_call_seconds_count{{{l}}} 2"),
            format!("gale_plugin_quarantines_total{{{l}}} 1"),
        ] {
            assert!(text.contains(&want), "missing {want} in\n{text}");
        }
    }
}
