//! Counters and histograms for `/metrics`, in Prometheus text format.
//!
//! The request path only touches atomics: every series is created when a
//! config is loaded (not per request) and handed out as an `Arc`. Series are
//! kept in one process-wide registry keyed by their labels, so they survive
//! a reload that keeps the same server or backend.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Upper bounds (seconds) of latency histogram buckets.
pub const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Requests answered by one server block, by status code.
#[derive(Debug)]
pub struct ServerMetrics {
    by_status: Box<[AtomicU64; 600]>,
}

impl ServerMetrics {
    fn new() -> Self {
        Self { by_status: Box::new(std::array::from_fn(|_| AtomicU64::new(0))) }
    }

    /// Counts one response.
    pub fn response(&self, status: u16) {
        if let Some(c) = self.by_status.get(usize::from(status)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// How an attempt on a backend ended.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Response,
    ConnectError,
    Closed,
    Timeout,
}

/// One backend's exchanges.
#[derive(Debug, Default)]
pub struct BackendMetrics {
    responses: AtomicU64,
    connect_errors: AtomicU64,
    closed: AtomicU64,
    timeouts: AtomicU64,
    /// Time to the response header.
    pub latency: Histogram,
}

impl BackendMetrics {
    /// Counts one attempt's outcome.
    pub fn outcome(&self, o: Outcome) {
        let c = match o {
            Outcome::Response => &self.responses,
            Outcome::ConnectError => &self.connect_errors,
            Outcome::Closed => &self.closed,
            Outcome::Timeout => &self.timeouts,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Client connections, process-wide: the open count and what
/// `max_connections` did when it was reached.
#[derive(Debug, Default)]
pub struct ConnectionMetrics {
    open: AtomicU64,
    limit_reached: AtomicU64,
    reclaimed: AtomicU64,
}

impl ConnectionMetrics {
    /// Sets the number of open client connections.
    pub fn set_open(&self, n: usize) {
        self.open.store(n as u64, Ordering::Relaxed);
    }

    /// Counts one time a new connection found every slot taken.
    pub fn limit_reached(&self) {
        self.limit_reached.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts idle connections closed to make room.
    pub fn reclaimed(&self, n: u64) {
        self.reclaimed.fetch_add(n, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String) {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.push_str("# HELP gale_connections_open Client connections open.\n");
        out.push_str("# TYPE gale_connections_open gauge\n");
        let _ = writeln!(out, "gale_connections_open {}", load(&self.open));
        out.push_str(
            "# HELP gale_connections_limit_reached_total Times a new client connection found max_connections open.\n",
        );
        out.push_str("# TYPE gale_connections_limit_reached_total counter\n");
        let _ = writeln!(out, "gale_connections_limit_reached_total {}", load(&self.limit_reached));
        out.push_str(
            "# HELP gale_connections_reclaimed_total Idle client connections closed to make room under max_connections.\n",
        );
        out.push_str("# TYPE gale_connections_reclaimed_total counter\n");
        let _ = writeln!(out, "gale_connections_reclaimed_total {}", load(&self.reclaimed));
    }
}

/// The process's connection series.
pub fn connections() -> &'static ConnectionMetrics {
    static C: OnceLock<ConnectionMetrics> = OnceLock::new();
    C.get_or_init(Default::default)
}

/// A source of extra series rendered into `/metrics` (plugins register one).
pub type Renderer = Box<dyn Fn(&mut String) + Send + Sync>;

#[derive(Default)]
struct Registry {
    servers: BTreeMap<String, Arc<ServerMetrics>>,
    backends: BTreeMap<(String, String), Arc<BackendMetrics>>,
    extra: Vec<Renderer>,
}

fn registry() -> &'static Mutex<Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(Default::default)
}

fn lock() -> std::sync::MutexGuard<'static, Registry> {
    registry().lock().unwrap_or_else(|e| e.into_inner())
}

/// The series for server block `name` (created on first use).
pub fn server(name: &str) -> Arc<ServerMetrics> {
    lock().servers.entry(name.to_owned()).or_insert_with(|| Arc::new(ServerMetrics::new())).clone()
}

/// The series for `backend` of `upstream` (created on first use).
pub fn backend(upstream: &str, backend: &str) -> Arc<BackendMetrics> {
    lock().backends.entry((upstream.to_owned(), backend.to_owned())).or_default().clone()
}

/// Drops the series of `backend` of `upstream` when `held` is the last
/// user besides the registry (an address a DNS name no longer resolves to:
/// pods come and go, and their series must not pile up for ever).
pub fn release_backend(upstream: &str, backend: &str, held: &Arc<BackendMetrics>) {
    let mut r = lock();
    let key = (upstream.to_owned(), backend.to_owned());
    if r.backends.get(&key).is_some_and(|m| Arc::ptr_eq(m, held) && Arc::strong_count(held) <= 2) {
        r.backends.remove(&key);
    }
}

/// Adds a renderer for series owned elsewhere.
pub fn register(r: Renderer) {
    lock().extra.push(r);
}

/// Escapes a label value.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Everything, in Prometheus text exposition format.
pub fn render() -> String {
    let r = lock();
    let mut out = String::new();
    out.push_str("# HELP gale_requests_total Responses sent, by server block and status.\n");
    out.push_str("# TYPE gale_requests_total counter\n");
    for (name, m) in &r.servers {
        for (status, c) in m.by_status.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            if n > 0 {
                let _ = writeln!(out, "gale_requests_total{{server=\"{}\",status=\"{status}\"}} {n}", label(name));
            }
        }
    }
    out.push_str("# HELP gale_upstream_attempts_total Attempts on a backend, by outcome.\n");
    out.push_str("# TYPE gale_upstream_attempts_total counter\n");
    for ((up, be), m) in &r.backends {
        for (outcome, c) in [
            ("response", &m.responses),
            ("connect_error", &m.connect_errors),
            ("closed", &m.closed),
            ("timeout", &m.timeouts),
        ] {
            let _ = writeln!(
                out,
                "gale_upstream_attempts_total{{upstream=\"{}\",backend=\"{}\",outcome=\"{outcome}\"}} {}",
                label(up),
                label(be),
                c.load(Ordering::Relaxed)
            );
        }
    }
    out.push_str("# HELP gale_upstream_response_seconds Time from sending a request to its response header.\n");
    out.push_str("# TYPE gale_upstream_response_seconds histogram\n");
    for ((up, be), m) in &r.backends {
        m.latency.render(
            &mut out,
            "gale_upstream_response_seconds",
            &format!("upstream=\"{}\",backend=\"{}\"", label(up), label(be)),
        );
    }
    connections().render(&mut out);
    for extra in &r.extra {
        extra(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_render_with_labels_and_cumulative_buckets() {
        let s = server("metrics-test.example");
        s.response(200);
        s.response(200);
        s.response(502);
        let b = backend("metrics-test-up", "127.0.0.1:1");
        b.outcome(Outcome::ConnectError);
        b.latency.observe(Duration::from_millis(3));
        b.latency.observe(Duration::from_millis(30));
        let text = render();
        assert!(text.contains("gale_requests_total{server=\"metrics-test.example\",status=\"200\"} 2"), "{text}");
        assert!(text.contains("gale_requests_total{server=\"metrics-test.example\",status=\"502\"} 1"));
        assert!(text.contains(
            "gale_upstream_attempts_total{upstream=\"metrics-test-up\",backend=\"127.0.0.1:1\",outcome=\"connect_error\"} 1"
        ));
        assert!(text.contains(
            "gale_upstream_response_seconds_bucket{upstream=\"metrics-test-up\",backend=\"127.0.0.1:1\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "gale_upstream_response_seconds_bucket{upstream=\"metrics-test-up\",backend=\"127.0.0.1:1\",le=\"+Inf\"} 2"
        ));
        // The same labels give the same series.
        assert!(Arc::ptr_eq(&s, &server("metrics-test.example")));
    }
}
