//! Active health checks, HAProxy's `option httpchk` with `rise` / `fall`:
//! every `interval` each backend is sent `GET path` on a connection of its
//! own (never one of the keep-alive pool, which would hide a backend that
//! stopped accepting); a status in `expect_status` within `timeout` passes.
//! `fall` failures in a row take the backend out of rotation, `rise` passes
//! in a row bring it back. A backend starts up, as with HAProxy and nginx
//! Plus without `mandatory`: a pool serves at once after start or reload.
//!
//! The verdict is separate from passive health (`health.rs`); the balancer
//! uses a backend only when both say up.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::AbortHandle;

use crate::config::HealthCheck;

/// Most bytes of a check's response head read before giving up on it.
const MAX_HEAD: usize = 16 << 10;

/// One backend's active-check state.
#[derive(Debug)]
pub struct ActiveHealth {
    up: AtomicBool,
    /// Whether a checker runs (for status pages: `null` when none does).
    checked: AtomicBool,
    streak: Mutex<Streak>,
    pub passed: AtomicU64,
    pub failed: AtomicU64,
    /// Why the last check failed.
    last_error: Mutex<Option<String>>,
}

#[derive(Debug, Default)]
struct Streak {
    passes: u32,
    fails: u32,
}

impl Default for ActiveHealth {
    fn default() -> Self {
        Self::new()
    }
}

impl ActiveHealth {
    /// Up, with no check run yet.
    pub fn new() -> Self {
        Self {
            up: AtomicBool::new(true),
            checked: AtomicBool::new(false),
            streak: Mutex::new(Streak::default()),
            passed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// Whether the checks (if any) say the backend may get requests.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// Whether a checker runs for this backend.
    pub fn is_checked(&self) -> bool {
        self.checked.load(Ordering::Relaxed)
    }

    /// Why the last check failed, if it did.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Up again with no streak: the backend is a new process (a supervised
    /// child that passed its start-up check).
    pub fn reset(&self) {
        *self.streak.lock().unwrap_or_else(|e| e.into_inner()) = Streak::default();
        self.up.store(true, Ordering::SeqCst);
    }

    /// Books one check; returns the new state when it changed.
    pub fn record(&self, result: Result<(), String>, rise: u32, fall: u32) -> Option<bool> {
        let mut s = self.streak.lock().unwrap_or_else(|e| e.into_inner());
        let up = self.is_up();
        match result {
            Ok(()) => {
                self.passed.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                s.fails = 0;
                s.passes = s.passes.saturating_add(1);
                if !up && s.passes >= rise {
                    self.up.store(true, Ordering::SeqCst);
                    return Some(true);
                }
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                s.passes = 0;
                s.fails = s.fails.saturating_add(1);
                if up && s.fails >= fall {
                    self.up.store(false, Ordering::SeqCst);
                    return Some(false);
                }
            }
        }
        None
    }
}

/// Starts checking `backend` (on the current tokio runtime; none outside
/// one, as in `gale check`). The task holds the backend weakly and ends with
/// it.
pub(super) fn spawn(backend: &Arc<super::Backend>, hc: HealthCheck, upstream: String) -> Option<AbortHandle> {
    let rt = tokio::runtime::Handle::try_current().ok()?;
    backend.active.checked.store(true, Ordering::Relaxed);
    let weak = Arc::downgrade(backend);
    let addr = backend.addr;
    Some(rt.spawn(run(weak, addr, hc, upstream)).abort_handle())
}

async fn run(backend: Weak<super::Backend>, addr: SocketAddr, hc: HealthCheck, upstream: String) {
    // The first check at a random point of the first interval: the checks
    // of many backends (a pool, a DNS answer) spread out instead of landing
    // together, as HAProxy spreads its own.
    let mut random = [0u8; 8];
    let _ = getrandom::fill(&mut random);
    let offset = hc.interval.mul_f64((u64::from_le_bytes(random) % 1000) as f64 / 1000.0);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, hc.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let result = check(addr, &hc).await;
        let Some(b) = backend.upgrade() else { return };
        let error = result.as_ref().err().cloned();
        match b.active.record(result, hc.rise, hc.fall) {
            Some(false) => tracing::warn!(
                upstream = %upstream, %addr,
                "backend failed {} health checks in a row, out of rotation: {}",
                hc.fall, error.unwrap_or_default()
            ),
            Some(true) => {
                tracing::info!(upstream = %upstream, %addr, "backend passed {} health checks in a row, back in rotation", hc.rise)
            }
            None => {}
        }
    }
}

/// One check: connect, send, read the status line, all within `timeout`.
pub async fn check(addr: SocketAddr, hc: &HealthCheck) -> Result<(), String> {
    let status = match tokio::time::timeout(hc.timeout, status_of(addr, hc)).await {
        Err(_) => return Err(format!("no answer within {:?}", hc.timeout)),
        Ok(r) => r?,
    };
    let (lo, hi) = hc.expect_status;
    if (lo..=hi).contains(&status) { Ok(()) } else { Err(format!("status {status}, expected {lo}-{hi}")) }
}

async fn status_of(addr: SocketAddr, hc: &HealthCheck) -> Result<u16, String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: gale-health-check\r\nConnection: close\r\n\r\n",
        hc.path, hc.host
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 2048];
        let n = stream.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed before a response head".to_owned());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => return resp.code.ok_or_else(|| "no status".to_owned()),
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => return Err("response head too large".to_owned()),
            Err(httparse::Error::TooManyHeaders) => {
                // The status line parsed; the check needs nothing else.
                return resp.code.ok_or_else(|| "no status".to_owned());
            }
            Err(e) => return Err(format!("bad response: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fall_takes_down_and_rise_brings_back() {
        let h = ActiveHealth::new();
        assert!(h.is_up());
        assert_eq!(h.record(Err("x".into()), 2, 3), None);
        assert_eq!(h.record(Err("x".into()), 2, 3), None);
        assert_eq!(h.record(Err("x".into()), 2, 3), Some(false));
        assert!(!h.is_up());
        assert_eq!(h.record(Ok(()), 2, 3), None, "one pass is not enough");
        assert_eq!(h.record(Err("x".into()), 2, 3), None, "a failure restarts the count");
        assert_eq!(h.record(Ok(()), 2, 3), None);
        assert_eq!(h.record(Ok(()), 2, 3), Some(true));
        assert!(h.is_up());
        assert_eq!(h.failed.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn a_pass_resets_the_failures() {
        let h = ActiveHealth::new();
        h.record(Err("x".into()), 1, 2);
        h.record(Ok(()), 1, 2);
        assert_eq!(h.record(Err("x".into()), 1, 2), None);
        assert!(h.is_up());
    }

    /// A backend that answers every connection with `reply` (after reading the request head),
    /// then holds the connection open.
    async fn backend(reply: &'static [u8]) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    let _ = s.write_all(reply).await;
                    tokio::time::sleep(Duration::from_secs(5)).await;
                });
            }
        });
        addr
    }

    fn hc(expect: (u16, u16)) -> HealthCheck {
        HealthCheck {
            path: "/health".into(),
            host: "app".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(300),
            rise: 1,
            fall: 1,
            expect_status: expect,
        }
    }

    #[tokio::test]
    async fn what_passes_and_what_fails() {
        let ok = backend(b"HTTP/1.1 204 No Content\r\n\r\n").await;
        assert_eq!(check(ok, &hc((200, 299))).await, Ok(()));
        let e = check(ok, &hc((200, 200))).await.expect_err("204 is not 200");
        assert!(e.contains("status 204"), "{e}");
        let garbage = backend(b"HELLO THERE\r\n\r\n").await;
        let e = check(garbage, &hc((200, 399))).await.expect_err("garbage");
        assert!(e.contains("bad response"), "{e}");
        // A head that never ends within MAX_HEAD: refused, not read for ever.
        static HUGE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let huge = HUGE.get_or_init(|| {
            let mut h = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
            h.extend(std::iter::repeat_n(b'a', 20_000));
            h
        });
        let big = backend(huge).await;
        let e = check(big, &hc((200, 399))).await.expect_err("huge head");
        assert!(e.contains("too large"), "{e}");
        let silent = backend(b"").await;
        let e = check(silent, &hc((200, 399))).await.expect_err("no answer");
        assert!(e.contains("no answer within"), "{e}");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let closed = listener.local_addr().expect("addr");
        drop(listener);
        let e = check(closed, &hc((200, 399))).await.expect_err("refused");
        assert!(e.contains("connect"), "{e}");
    }
}
