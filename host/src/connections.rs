//! The open client connections and which of them are idle, so that when
//! `max_connections` is reached the oldest idle ones can be closed to make
//! room for a new client (nginx's "reusable" connections).
//!
//! A connection is idle when no request is in flight on it: accepted with
//! nothing of a request yet (never started), or a keep-alive connection
//! between requests. It stops being idle when bytes of a request arrive or a
//! request is handed to the pipeline, and becomes idle again when the last
//! response body in flight is done. Those transitions are relaxed atomic
//! stores on the connection's own [`Conn`]; the registry's lock is taken
//! only at accept, at close, and when the limit is reached.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::framing::sniff::TapObserver;
use crate::metrics;

/// `idle_since` of a connection with a request in flight.
const BUSY: u64 = 0;

/// How often, at most, the warning that the limit was reached is logged.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Every open client connection of the process.
pub struct Registry {
    shared: Arc<Shared>,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    warning: Mutex<Warning>,
}

/// What each connection reaches back to.
struct Shared {
    epoch: Instant,
    next_id: AtomicU64,
    /// Accept loops waiting for room: tell them when a connection goes idle.
    starving: AtomicU32,
    became_idle: Notify,
}

/// Counts since the last warning line.
#[derive(Default)]
struct Warning {
    last: Option<Instant>,
    times: u64,
    reclaimed: u64,
}

/// One open connection's state, shared by its task, its tap and its
/// requests' response bodies.
pub struct Conn {
    id: u64,
    shared: Arc<Shared>,
    /// Microseconds (+1) since the registry's epoch at which the connection
    /// became idle; [`BUSY`] while a request is in flight.
    idle_since: AtomicU64,
    /// Requests in flight: handed to the pipeline, response body not done.
    in_flight: AtomicU32,
    /// A request has started on this connection (a byte of one, or a call).
    started: AtomicBool,
    /// Asked to close by [`Registry::make_room`].
    reclaimed: AtomicBool,
    close: Notify,
    /// The answer the tap wrote itself, with the head's first line.
    tap_answer: OnceLock<(u16, Box<[u8]>)>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            shared: Arc::new(Shared {
                epoch: Instant::now(),
                next_id: AtomicU64::new(1),
                starving: AtomicU32::new(0),
                became_idle: Notify::new(),
            }),
            open: Mutex::new(HashMap::new()),
            warning: Mutex::new(Warning::default()),
        }
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a connection just accepted (idle, never started); it is
    /// removed when the returned handle is dropped.
    pub fn register(self: &Arc<Self>) -> Registered {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            id,
            shared: self.shared.clone(),
            idle_since: AtomicU64::new(self.shared.now()),
            in_flight: AtomicU32::new(0),
            started: AtomicBool::new(false),
            reclaimed: AtomicBool::new(false),
            close: Notify::new(),
            tap_answer: OnceLock::new(),
        });
        let mut open = self.lock();
        open.insert(id, conn.clone());
        metrics::connections().set_open(open.len());
        drop(open);
        Registered { registry: self.clone(), conn }
    }

    /// Waits for a permit when none is free: asks the oldest idle
    /// connections to close (up to 32 at a time, as nginx drains its
    /// reusable connections), again whenever another connection goes idle,
    /// until one closes. `None` if the semaphore is closed.
    pub async fn make_room(&self, permits: &Arc<Semaphore>, max: usize) -> Option<OwnedSemaphorePermit> {
        metrics::connections().limit_reached();
        let _starving = Starving::new(&self.shared);
        let mut first = true;
        loop {
            let idle = self.shared.became_idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            let reclaimed = self.reclaim_oldest();
            self.warn(max, first, reclaimed);
            first = false;
            tokio::select! {
                p = permits.clone().acquire_owned() => return p.ok(),
                _ = idle => {}
            }
        }
    }

    /// Asks the oldest idle connections to close; returns how many.
    fn reclaim_oldest(&self) -> u64 {
        let mut idle: Vec<(u64, Arc<Conn>)> = self
            .lock()
            .values()
            .filter(|c| !c.reclaimed.load(Ordering::Relaxed))
            .filter_map(|c| match c.idle_since.load(Ordering::Relaxed) {
                BUSY => None,
                since => Some((since, c.clone())),
            })
            .collect();
        // nginx: max(min(32, reusable / 8), 1).
        let n = (idle.len() / 8).clamp(1, 32).min(idle.len());
        if n == 0 {
            return 0;
        }
        if n < idle.len() {
            idle.select_nth_unstable_by_key(n - 1, |(since, _)| *since);
        }
        for (_, c) in &idle[..n] {
            c.reclaimed.store(true, Ordering::Relaxed);
            c.close.notify_one();
        }
        metrics::connections().reclaimed(n as u64);
        n as u64
    }

    /// The error log's warning that the limit bit (`first` of a wait, with
    /// `reclaimed` connections asked to close), at most every [`WARN_EVERY`],
    /// with the counts since the last one.
    fn warn(&self, max: usize, first: bool, reclaimed: u64) {
        let mut w = self.warning.lock().unwrap_or_else(|e| e.into_inner());
        w.times += u64::from(first);
        w.reclaimed += reclaimed;
        let now = Instant::now();
        if !first || w.last.is_some_and(|last| now.duration_since(last) < WARN_EVERY) {
            return;
        }
        let (times, reclaimed) = (w.times, w.reclaimed);
        *w = Warning { last: Some(now), times: 0, reclaimed: 0 };
        drop(w);
        tracing::warn!(
            max_connections = max,
            times,
            reclaimed,
            "max_connections reached; idle connections closed to make room (counts since the last such warning)"
        );
    }
}

/// An accept loop waiting in [`Registry::make_room`] (also when its task is
/// aborted mid-wait, at shutdown or reload).
struct Starving<'a>(&'a Shared);

impl<'a> Starving<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.starving.fetch_add(1, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for Starving<'_> {
    fn drop(&mut self) {
        self.0.starving.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    /// Microseconds since the epoch, never [`BUSY`].
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX - 1) + 1
    }
}

impl Conn {
    /// Whether no request is in flight.
    pub fn is_idle(&self) -> bool {
        self.idle_since.load(Ordering::Relaxed) != BUSY
    }

    /// How long the connection has been idle; `None` while a request is in
    /// flight.
    pub fn idle_for(&self) -> Option<Duration> {
        match self.idle_since.load(Ordering::Relaxed) {
            BUSY => None,
            since => Some(Duration::from_micros(self.shared.now().saturating_sub(since))),
        }
    }

    /// Whether a request ever started on this connection.
    pub fn started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    /// Resolves when the registry asks this connection to close.
    pub async fn reclaimed(&self) {
        self.close.notified().await;
    }

    /// A connection asked to close that had a request start meanwhile stays
    /// open, and may be asked again once it is idle.
    pub fn reprieve(&self) {
        self.reclaimed.store(false, Ordering::Relaxed);
    }

    /// What the tap answered itself, if it did.
    pub fn tap_answer(&self) -> Option<(u16, &[u8])> {
        self.tap_answer.get().map(|(s, l)| (*s, &l[..]))
    }

    fn busy(&self) {
        if self.idle_since.load(Ordering::Relaxed) != BUSY {
            self.idle_since.store(BUSY, Ordering::Relaxed);
        }
        if !self.started.load(Ordering::Relaxed) {
            self.started.store(true, Ordering::Relaxed);
        }
    }

    /// A request handed to the pipeline; the guard, kept with its response
    /// body, ends it.
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.busy();
        InFlight(self.clone())
    }
}

impl TapObserver for Conn {
    fn request_bytes(&self) {
        self.busy();
    }

    fn answered(&self, status: u16, first_line: &[u8]) {
        let _ = self.tap_answer.set((status, first_line.into()));
    }
}

/// A request in flight on a [`Conn`]; the connection becomes idle when the
/// last one is dropped (with the response body hyper has finished sending).
pub struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let conn = &self.0;
        if conn.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            conn.idle_since.store(conn.shared.now(), Ordering::Relaxed);
            if conn.shared.starving.load(Ordering::Relaxed) > 0 {
                conn.shared.became_idle.notify_waiters();
            }
        }
    }
}

/// A registered connection; unregistered when dropped.
pub struct Registered {
    registry: Arc<Registry>,
    conn: Arc<Conn>,
}

impl Registered {
    /// The connection's shared state.
    pub fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut open = self.registry.lock();
        open.remove(&self.conn.id);
        metrics::connections().set_open(open.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reclaims_the_oldest_idle_connections_never_busy_ones() {
        let registry = Arc::new(Registry::default());
        let busy = registry.register();
        let _request = busy.conn().request();
        let old = registry.register();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let newer: Vec<_> = (0..8).map(|_| registry.register()).collect();
        // 9 idle: max(min(32, 9 / 8), 1) = 1, the oldest.
        assert_eq!(registry.reclaim_oldest(), 1);
        assert!(old.conn().reclaimed.load(Ordering::Relaxed));
        assert!(!busy.conn().reclaimed.load(Ordering::Relaxed));
        assert!(newer.iter().all(|c| !c.conn().reclaimed.load(Ordering::Relaxed)));
        // A connection asked once is not counted again.
        assert_eq!(registry.reclaim_oldest(), 1);
        assert_eq!(newer.iter().filter(|c| c.conn().reclaimed.load(Ordering::Relaxed)).count(), 1);
    }

    #[test]
    fn a_connection_is_idle_again_when_its_last_request_ends() {
        let registry = Arc::new(Registry::default());
        let r = registry.register();
        assert!(r.conn().is_idle() && !r.conn().started());
        let a = r.conn().request();
        let b = r.conn().request();
        assert!(!r.conn().is_idle() && r.conn().started());
        drop(a);
        assert!(!r.conn().is_idle());
        drop(b);
        assert!(r.conn().is_idle());
        r.conn().request_bytes();
        assert!(!r.conn().is_idle());
    }
}
