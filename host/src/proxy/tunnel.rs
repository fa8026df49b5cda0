//! Upgraded connections (WebSocket and any other `Upgrade`): once the backend
//! has answered 101, the client and backend connections are joined and bytes
//! copied both ways until either side closes or the tunnel is idle for its
//! timeout. A close on one side is passed on as a shutdown of the other.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

/// Counts open tunnels of one route against its cap.
#[derive(Debug)]
pub struct TunnelSlots {
    open: AtomicUsize,
    max: usize,
}

/// One open tunnel's place under the cap; freed on drop.
#[derive(Debug)]
pub struct TunnelSlot(Arc<TunnelSlots>);

impl TunnelSlots {
    /// A cap of `max` open tunnels.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { open: AtomicUsize::new(0), max })
    }

    /// Takes a slot, or `None` when the cap is reached.
    pub fn try_take(self: &Arc<Self>) -> Option<TunnelSlot> {
        let mut cur = self.open.load(Ordering::Relaxed);
        loop {
            if cur >= self.max {
                return None;
            }
            match self.open.compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(TunnelSlot(self.clone())),
                Err(now) => cur = now,
            }
        }
    }

    /// Tunnels open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

impl Drop for TunnelSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long the second side of a tunnel may stay open after the first closed.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Waits for both upgrades, then copies until close or idle timeout.
pub async fn run(client: OnUpgrade, upstream: OnUpgrade, idle: Duration, slot: TunnelSlot) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade did not complete");
            return;
        }
    };
    let started = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let a = Activity { inner: TokioIo::new(client), last: last.clone(), started };
    let b = Activity { inner: TokioIo::new(upstream), last: last.clone(), started };
    let (mut client_read, mut client_write) = tokio::io::split(a);
    let (mut upstream_read, mut upstream_write) = tokio::io::split(b);
    // Each direction passes on its end of stream as a shutdown of the other
    // side's writing half.
    let up = async {
        let _ = tokio::io::copy(&mut client_read, &mut upstream_write).await;
        let _ = upstream_write.shutdown().await;
    };
    let down = async {
        let _ = tokio::io::copy(&mut upstream_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    // Once one side has closed, the other gets CLOSE_GRACE to finish (a
    // WebSocket close frame in reply), then the tunnel ends either way, so
    // a peer that never closes cannot hold the route's slot.
    let mut linger: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let check = idle.min(Duration::from_secs(1)).max(Duration::from_millis(10));
    loop {
        tokio::select! {
            _ = &mut up, if !up_done => up_done = true,
            _ = &mut down, if !down_done => down_done = true,
            _ = async { if let Some(l) = linger.as_mut() { l.await } }, if linger.is_some() => {
                tracing::debug!("tunnel: one side closed {CLOSE_GRACE:?} ago; closing the other");
                break;
            }
            _ = tokio::time::sleep(check) => {
                let quiet = started.elapsed().saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                if quiet >= idle {
                    tracing::debug!("tunnel idle for {idle:?}: closing");
                    break;
                }
            }
        }
        if up_done && down_done {
            break;
        }
        if (up_done || down_done) && linger.is_none() {
            linger = Some(Box::pin(tokio::time::sleep(CLOSE_GRACE)));
        }
    }
    drop(slot);
}

/// An I/O stream that records when bytes last moved.
struct Activity<T> {
    inner: T,
    last: Arc<AtomicU64>,
    started: Instant,
}

impl<T> Activity<T> {
    fn touch(&self) {
        self.last.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Activity<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Activity<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_cap_and_free() {
        let s = TunnelSlots::new(2);
        let a = s.try_take().expect("first");
        let _b = s.try_take().expect("second");
        assert!(s.try_take().is_none());
        drop(a);
        assert_eq!(s.open(), 1);
        assert!(s.try_take().is_some());
    }
}
