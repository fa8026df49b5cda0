//! Request rates for the status page. A counter gives a rate only between
//! two readings, so the admin listener reads the per-server status classes
//! every [`EVERY`] and keeps the readings of the last [`WINDOW`] in a small
//! ring; a rate is the change from the oldest reading to now. Reading is
//! the same work as a scrape of `/metrics`, off the request path.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::samples;

/// How often the ring takes a reading.
pub const EVERY: Duration = Duration::from_secs(5);
/// How far back a rate looks.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Responses by status class (1xx..5xx) per server.
pub type Classes = BTreeMap<String, [u64; 5]>;

struct Reading {
    at: Instant,
    classes: Classes,
}

fn ring() -> &'static Mutex<VecDeque<Reading>> {
    static R: OnceLock<Mutex<VecDeque<Reading>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// Takes a reading now (the sampler task calls this every [`EVERY`]).
pub fn record() {
    let classes = samples::status_classes(&samples::parse(&crate::metrics::render()));
    push(Instant::now(), classes);
}

fn push(at: Instant, classes: Classes) {
    let mut ring = ring().lock().unwrap_or_else(|e| e.into_inner());
    ring.push_back(Reading { at, classes });
    // Keep one reading at or beyond the window, so a rate spans all of it.
    while ring.len() > 2 && ring.get(1).is_some_and(|r| at.duration_since(r.at) >= WINDOW) {
        ring.pop_front();
    }
}

/// Responses per second by status class of each server, between the oldest
/// reading of the ring and `now_classes` (taken at `now`), and the span
/// that covers; `None` before the first reading.
pub fn since_oldest(now: Instant, now_classes: &Classes) -> Option<(Duration, BTreeMap<String, [f64; 5]>)> {
    let ring = ring().lock().unwrap_or_else(|e| e.into_inner());
    let oldest = ring.front()?;
    let span = now.saturating_duration_since(oldest.at);
    if span < Duration::from_millis(500) {
        return None;
    }
    let secs = span.as_secs_f64();
    let rates = now_classes
        .iter()
        .map(|(server, now)| {
            let before = oldest.classes.get(server).copied().unwrap_or_default();
            (server.clone(), std::array::from_fn(|i| now[i].saturating_sub(before[i]) as f64 / secs))
        })
        .collect();
    Some((span, rates))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_spans_the_window_and_old_readings_go() {
        let t0 = Instant::now();
        let classes = |ok: u64, err: u64| Classes::from([("s".to_owned(), [0, ok, 0, 0, err])]);
        for i in 0..30u64 {
            push(t0 + EVERY * i as u32, classes(i * 10, i));
        }
        let len = ring().lock().map(|r| r.len()).unwrap_or_default();
        assert!(len <= (WINDOW.as_secs() / EVERY.as_secs()) as usize + 2, "the ring is bounded: {len}");
        let now = t0 + EVERY * 30;
        let (span, rates) = since_oldest(now, &classes(300, 30)).expect("a rate");
        assert!(span >= WINDOW && span < WINDOW + EVERY * 2, "{span:?}");
        let secs = span.as_secs_f64();
        let expect_ok = (span.as_secs() / EVERY.as_secs() * 10) as f64 / secs;
        assert!((rates["s"][1] - expect_ok).abs() < 1e-9, "{rates:?}");
        assert!((rates["s"][1] - 2.0).abs() < 0.01, "10 responses per 5 s: {rates:?}");
        assert!((rates["s"][4] - 0.2).abs() < 0.01, "{rates:?}");
    }
}
