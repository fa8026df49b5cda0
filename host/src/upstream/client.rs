//! Talking to one backend: a small keep-alive pool of HTTP/1.1 connections
//! (hyper's client connection API, so gale decides when a connection counts
//! as made, which the retry policy depends on), and the response body that
//! hands its connection back to the pool once read to the end. An idle
//! connection is closed after `keepalive_timeout` (nginx's upstream
//! `keepalive_timeout`): a burst of load must not leave its sockets open on
//! both sides for good.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::body::{BoxError, UpstreamRequestBody};

/// A sender on one upstream connection.
pub type Sender = SendRequest<UpstreamRequestBody>;

/// Why no connection could be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {addr} failed: {source}")]
    Io { addr: SocketAddr, source: std::io::Error },
    #[error("connect to {addr} timed out")]
    Timeout { addr: SocketAddr },
    #[error("HTTP handshake with {addr} failed: {source}")]
    Handshake { addr: SocketAddr, source: hyper::Error },
}

/// Idle keep-alive connections to one backend.
#[derive(Debug)]
pub struct ConnPool {
    addr: SocketAddr,
    idle: Mutex<IdleConns>,
    max_idle: usize,
    /// How long a connection may stay idle before it is closed.
    idle_timeout: Duration,
    connect_timeout: Duration,
    /// The backend left its pool (its DNS name no longer resolves to it):
    /// connections whose exchange ends are closed, not kept.
    retired: std::sync::atomic::AtomicBool,
}

/// The idle connections, oldest first, and whether a task is closing the
/// ones idle for too long.
#[derive(Debug, Default)]
struct IdleConns {
    conns: Vec<(Sender, Instant)>,
    reaper: bool,
}

impl ConnPool {
    /// A pool keeping at most `max_idle` idle connections to `addr`, each
    /// for at most `idle_timeout`.
    pub fn new(addr: SocketAddr, max_idle: usize, idle_timeout: Duration, connect_timeout: Duration) -> Self {
        Self {
            addr,
            idle: Mutex::new(IdleConns::default()),
            max_idle,
            idle_timeout,
            connect_timeout,
            retired: Default::default(),
        }
    }

    /// An idle connection that is still open and ready, if any: the most
    /// recently used one (the others then age out when load drops).
    pub async fn take_idle(&self) -> Option<Sender> {
        loop {
            let (mut s, since) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).conns.pop()?;
            // Past its timeout but not yet closed by the reaper: close it now.
            if s.is_closed() || since.elapsed() >= self.idle_timeout {
                continue;
            }
            if s.is_ready() || s.ready().await.is_ok() {
                return Some(s);
            }
        }
    }

    /// Opens a new connection.
    pub async fn connect(&self) -> Result<Sender, ConnectError> {
        let addr = self.addr;
        let stream = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
            Err(_) => return Err(ConnectError::Timeout { addr }),
            Ok(Err(source)) => return Err(ConnectError::Io { addr, source }),
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|source| ConnectError::Handshake { addr, source })?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(%addr, error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Drops every idle connection: the backend process was replaced, so
    /// they lead to a process that is gone.
    pub fn clear_idle(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).conns.clear();
    }

    /// Closes the idle connections and keeps none from now on.
    pub fn retire(&self) {
        self.retired.store(true, std::sync::atomic::Ordering::SeqCst);
        self.clear_idle();
    }

    /// Whether [`Self::retire`] was called.
    pub fn is_retired(&self) -> bool {
        self.retired.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Returns a connection whose exchange finished cleanly.
    pub fn put(self: &Arc<Self>, sender: Sender) {
        if sender.is_closed() || self.is_retired() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.conns.len() < self.max_idle {
            idle.conns.push((sender, Instant::now()));
            if !idle.reaper {
                idle.reaper = true;
                tokio::spawn(reap(Arc::downgrade(self)));
            }
        }
    }
}

/// Closes (drops the sender of, so hyper shuts the socket) each idle
/// connection once it has been idle for the pool's `idle_timeout`; ends when
/// no connection is idle (the next `put` starts another) or the pool is gone.
async fn reap(pool: Weak<ConnPool>) {
    loop {
        let next = {
            let Some(pool) = pool.upgrade() else { return };
            let mut idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            idle.conns.retain(|(s, since)| !s.is_closed() && now.duration_since(*since) < pool.idle_timeout);
            match idle.conns.first() {
                Some((_, oldest)) => *oldest + pool.idle_timeout,
                None => {
                    idle.reaper = false;
                    return;
                }
            }
        };
        tokio::time::sleep_until(next).await;
    }
}

/// Runs when an upstream exchange ends, however it ends (for in-flight
/// counts and the like).
pub type OnDone = Box<dyn FnOnce() + Send>;

/// An upstream response body: enforces `read_timeout` between reads and
/// returns the connection to its pool when read to the end. Dropped early
/// (client gone, error), the connection is closed instead: it may still
/// have unread bytes.
pub struct UpstreamBody {
    inner: Incoming,
    read_timeout: Duration,
    /// The `read_timeout` timer, made at the first wait: a body that is
    /// read to its end without waiting (most small ones) never touches the
    /// timer wheel.
    sleep: Option<Pin<Box<Sleep>>>,
    /// A frame arrived since the timer was last set: the next wait starts
    /// a new `read_timeout`.
    progressed: bool,
    conn: Option<(Arc<ConnPool>, Sender)>,
    on_done: Option<OnDone>,
}

/// The upstream stopped sending for `read_timeout` mid-body.
#[derive(Debug, thiserror::Error)]
#[error("upstream read timed out mid-body")]
pub struct UpstreamBodyTimeout;

impl UpstreamBody {
    /// Wraps a response body read from `conn`.
    pub fn new(
        inner: Incoming,
        read_timeout: Duration,
        conn: Option<(Arc<ConnPool>, Sender)>,
        on_done: OnDone,
    ) -> Self {
        let mut this = Self { inner, read_timeout, sleep: None, progressed: true, conn, on_done: Some(on_done) };
        if this.inner.is_end_stream() {
            this.finish(true);
        }
        this
    }

    fn finish(&mut self, clean: bool) {
        if let Some((pool, sender)) = self.conn.take()
            && clean
        {
            pool.put(sender);
        }
        if let Some(done) = self.on_done.take() {
            done();
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        self.finish(false);
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.progressed = true;
                if this.inner.is_end_stream() {
                    this.finish(true);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(false);
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => {
                this.finish(true);
                Poll::Ready(None)
            }
            Poll::Pending => {
                let read_timeout = this.read_timeout;
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(read_timeout)));
                if std::mem::take(&mut this.progressed) {
                    sleep.as_mut().reset(Instant::now() + read_timeout);
                }
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.finish(false);
                        Poll::Ready(Some(Err(Box::new(UpstreamBodyTimeout))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
