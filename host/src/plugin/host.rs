//! What a guest gets from gale: the store data of an instance, a WASI
//! context that denies everything, and the `host` interface (log, counters).

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::limits::MemoryLimiter;

/// Longest log message kept from a guest, in bytes.
const MAX_LOG_MESSAGE: usize = 4096;
/// Most counters a plugin may create; more are ignored.
const MAX_COUNTERS: usize = 64;
/// Longest counter name, in bytes.
const MAX_COUNTER_NAME: usize = 64;
/// How much of a guest's stderr is kept (its panic message, for traps).
const STDERR_TAIL: usize = 1024;

/// The store data of one plugin instance.
pub(crate) struct Ctx {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) shared: Arc<Shared>,
    pub(crate) stderr: StderrTail,
}

/// What all instances of one plugin attachment share: its name (for logs)
/// and its counters.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    counters: Mutex<HashMap<String, u64>>,
}

impl Shared {
    pub(crate) fn new(name: &str) -> Self {
        Self { name: name.into(), counters: Mutex::new(HashMap::new()) }
    }

    /// A snapshot of the counters, sorted by name.
    pub(crate) fn counters(&self) -> Vec<(String, u64)> {
        let counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<_> = counters.iter().map(|(k, v)| (k.clone(), *v)).collect();
        all.sort();
        all
    }

    fn add(&self, name: String, delta: u64) {
        let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(value) = counters.get_mut(&name) {
            *value = value.saturating_add(delta);
        } else if counters.len() < MAX_COUNTERS && name.len() <= MAX_COUNTER_NAME {
            counters.insert(name, delta);
        }
    }
}

impl Ctx {
    /// Fresh store data: no files, no network, no environment, no
    /// arguments, empty stdin and stdout; stderr is kept in a small buffer so
    /// that a trap can be reported with the guest's panic message.
    pub(crate) fn new(shared: Arc<Shared>, max_memory: usize) -> Self {
        let stderr = StderrTail::default();
        // The builder's defaults already deny files, env, args and socket
        // addresses; networking is switched off explicitly as well.
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .stderr(stderr.clone())
            .build();
        Self { wasi, table: ResourceTable::new(), limiter: MemoryLimiter::new(max_memory), shared, stderr }
    }
}

impl WasiView for Ctx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl super::bindings::host::Host for Ctx {
    fn log(&mut self, level: super::bindings::host::LogLevel, message: String) {
        use super::bindings::host::LogLevel;
        let message = truncate(&message, MAX_LOG_MESSAGE);
        let plugin = &*self.shared.name;
        match level {
            LogLevel::Trace => tracing::trace!(target: "gale::plugin", plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "gale::plugin", plugin, "{message}"),
            LogLevel::Info => tracing::info!(target: "gale::plugin", plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "gale::plugin", plugin, "{message}"),
            LogLevel::Error => tracing::error!(target: "gale::plugin", plugin, "{message}"),
        }
    }

    fn counter_add(&mut self, name: String, delta: u64) {
        self.shared.add(name, delta);
    }
}

impl super::bindings::types::Host for Ctx {}

/// The longest prefix of `text` of at most `max` bytes that ends on a
/// character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The last [`STDERR_TAIL`] bytes a guest wrote to stderr. Writes never
/// fail and never block, so a chatty guest cannot trap or stall on them.
#[derive(Clone, Default)]
pub(crate) struct StderrTail(Arc<Mutex<Vec<u8>>>, Arc<AtomicBool>);

impl StderrTail {
    fn push(&self, bytes: &[u8]) {
        self.1.store(true, Ordering::Release);
        let mut buf = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        buf.extend_from_slice(bytes);
        if buf.len() > STDERR_TAIL {
            let excess = buf.len() - STDERR_TAIL;
            buf.drain(..excess);
        }
    }

    /// Forgets earlier output (before each call); no lock when there was
    /// none, the usual case.
    pub(crate) fn clear(&self) {
        if self.1.swap(false, Ordering::AcqRel) {
            self.0.lock().unwrap_or_else(PoisonError::into_inner).clear();
        }
    }

    /// What was written since the last clear, trimmed, lossily decoded;
    /// without the Rust panic hook's advice to set `RUST_BACKTRACE`, which
    /// cannot be acted on in a sandbox that has no environment.
    pub(crate) fn text(&self) -> String {
        let buf = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let text = String::from_utf8_lossy(&buf);
        let kept: Vec<&str> =
            text.lines().filter(|l| !l.trim_start().starts_with("note: run with `RUST_BACKTRACE")).collect();
        kept.join("\n").trim().to_string()
    }
}

impl IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrTail {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for StderrTail {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for StderrTail {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(STDERR_TAIL)
    }
}

impl tokio::io::AsyncWrite for StderrTail {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_capped() {
        let shared = Shared::new("p");
        shared.add("a".into(), 2);
        shared.add("a".into(), u64::MAX);
        shared.add("x".repeat(MAX_COUNTER_NAME + 1), 1);
        for i in 0..100 {
            shared.add(format!("c{i:03}"), 1);
        }
        let counters = shared.counters();
        assert_eq!(counters.len(), MAX_COUNTERS);
        assert_eq!(counters[0], ("a".to_string(), u64::MAX));
    }

    #[test]
    fn stderr_keeps_the_tail() {
        let tail = StderrTail::default();
        tail.push(&vec![b'x'; STDERR_TAIL]);
        tail.push(b"panicked at here\n");
        let text = tail.text();
        assert!(text.ends_with("panicked at here"));
        assert_eq!(text.len(), STDERR_TAIL - 1);
        tail.clear();
        assert_eq!(tail.text(), "");
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
