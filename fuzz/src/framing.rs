//! Differential check of `framing::sniff`'s tracker against hyper's own HTTP/1.1 server parser:
//! the same bytes go to both, and they must agree on where each request head ends.
//!
//! The tracker's verdicts are matched to requests by position (the n-th verdict belongs to the
//! n-th request hyper hands gale), so a tracker that saw a head inside a body, or missed one,
//! would pin a verdict on the wrong request: a smuggled request could pass as clean. hyper is
//! driven over an in-memory stream that yields one byte per read, so the number of bytes read
//! when the service is called is exactly where that head ended.
//!
//! Invariants, for every input:
//! - for each request hyper dispatches, the tracker recorded a head ending at the same offset,
//!   unless the tracker had stopped following the stream before (it stops, by design, after a
//!   request asking for an upgrade or CONNECT; docs/fuzzing.md lists why that is safe);
//! - the tracker may record heads hyper never dispatched only after hyper stopped (it refused
//!   something and closed): those verdicts are never read;
//! - the tracker's verdicts do not depend on how the bytes are split into reads.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use gale::framing::sniff::{Tracker, Verdicts};
use http_body_util::{BodyExt, Empty};
use hyper::rt::{Read, ReadBufCursor, Write};

/// Where each head ended, as the tracker saw it, and where it stopped following (if it did).
#[derive(Debug)]
struct TrackerView {
    head_ends: Vec<usize>,
    stopped_at: Option<usize>,
}

fn tracker_view(input: &[u8]) -> TrackerView {
    let verdicts = Verdicts::default();
    let mut tracker = Tracker::new(verdicts.clone());
    let mut head_ends = Vec::new();
    let mut stopped_at = None;
    for (i, b) in input.iter().enumerate() {
        tracker.feed(std::slice::from_ref(b));
        while head_ends.len() < verdicts.pending() {
            head_ends.push(i + 1);
        }
        if stopped_at.is_none() && !tracker.following() {
            stopped_at = Some(i + 1);
        }
    }
    TrackerView { head_ends, stopped_at }
}

/// The verdicts for `input` fed in the pieces `sizes` chooses (cycled).
fn verdicts_split(input: &[u8], sizes: &[usize]) -> Vec<Option<gale::framing::FramingError>> {
    let verdicts = Verdicts::default();
    let mut tracker = Tracker::new(verdicts.clone());
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes.get(i % sizes.len().max(1)).copied().unwrap_or(rest.len()).clamp(1, rest.len());
        i += 1;
        tracker.feed(&rest[..n]);
        rest = &rest[n..];
    }
    let mut out = Vec::new();
    while verdicts.pending() > 0 {
        out.push(verdicts.next());
    }
    out
}

/// A client stream held in memory: one byte per read, writes discarded, EOF at the end.
struct Trickle {
    input: Arc<[u8]>,
    read: Arc<AtomicUsize>,
}

impl Read for Trickle {
    fn poll_read(self: Pin<&mut Self>, _cx: &mut Context<'_>, mut buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        let at = self.read.load(Ordering::SeqCst);
        if let Some(b) = self.input.get(at) {
            buf.put_slice(std::slice::from_ref(b));
            self.read.store(at + 1, Ordering::SeqCst);
        }
        Poll::Ready(Ok(()))
    }
}

impl Write for Trickle {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Where each request head ended for hyper (configured as gale's server configures it), with
/// each request's body read to its end.
fn hyper_head_ends(input: &[u8], runtime: &tokio::runtime::Runtime) -> Vec<usize> {
    let read = Arc::new(AtomicUsize::new(0));
    let ends = Arc::new(Mutex::new(Vec::new()));
    let io = Trickle { input: input.into(), read: read.clone() };
    let service = {
        let ends = ends.clone();
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            // Recorded when hyper calls the service, right after it parsed the head.
            ends.lock().unwrap_or_else(|e| e.into_inner()).push(read.load(Ordering::SeqCst));
            async move {
                let _ = req.into_body().collect().await;
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Empty::<Bytes>::new()))
            }
        })
    };
    runtime.block_on(async {
        let conn = hyper::server::conn::http1::Builder::new()
            .header_read_timeout(None)
            .max_header_size(32 * 1024)
            .serve_connection(io, service);
        // Every input ends (EOF), so the connection ends; the bound is a hang guard.
        let done = tokio::time::timeout(std::time::Duration::from_secs(10), conn).await;
        assert!(done.is_ok(), "hyper did not finish a {}-byte input", input.len());
    });
    let ends = ends.lock().unwrap_or_else(|e| e.into_inner()).clone();
    ends
}

/// A runtime for [`check`]; make one and reuse it across inputs.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a tokio runtime")
}

/// Input: a raw client byte stream (pipelined requests, any bytes).
pub fn check(input: &[u8], runtime: &tokio::runtime::Runtime) {
    let tracker = tracker_view(input);
    let hyper = hyper_head_ends(input, runtime);
    let shown = String::from_utf8_lossy(input);
    for (i, &end) in hyper.iter().enumerate() {
        match tracker.head_ends.get(i) {
            Some(&t) => assert_eq!(
                t, end,
                "request {i}: hyper's head ends at byte {end}, the tracker's at {t}\ninput: {shown:?}\nhyper: {hyper:?}\ntracker: {tracker:?}"
            ),
            None => assert!(
                tracker.stopped_at.is_some_and(|at| at <= end),
                "request {i}: hyper dispatched a head ending at byte {end} that the tracker never saw\ninput: {shown:?}\nhyper: {hyper:?}\ntracker: {tracker:?}"
            ),
        }
    }
    if tracker.head_ends.len() > hyper.len()
        && let Some(&extra) = tracker.head_ends.get(hyper.len())
    {
        // hyper stopped before this head (it refused something and closed): the verdict is
        // never read. It must not be a head hyper was still reading as a body and then took
        // as a request: that would show as a dispatched head above.
        let last = hyper.last().copied().unwrap_or(0);
        assert!(extra > last, "the tracker saw a head at {extra} inside hyper's request ending at {last}");
    }
    let whole = verdicts_split(input, &[]);
    for sizes in [&[1usize][..], &[2, 3], &[7, 1, 64]] {
        assert_eq!(verdicts_split(input, sizes), whole, "splitting the reads {sizes:?} changed the verdicts\ninput: {shown:?}");
    }
}
