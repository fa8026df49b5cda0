//! Differential check of `framing::sniff`'s tracker against hyper's own HTTP/1.1 server parser:
//! the same bytes go to both, and they must agree on where each request head and each body ends.
//!
//! The tracker's verdicts are matched to requests by position (the n-th verdict belongs to the
//! n-th request hyper hands gale), so a tracker that saw a head inside a body, or missed one,
//! would pin a verdict on the wrong request: a smuggled request could pass as clean. hyper is
//! driven over an in-memory stream that yields one byte per read, so the number of bytes read
//! when the service is called is exactly where that head ended.
//!
//! Invariants, for every input:
//! - for each request hyper dispatches, the tracker recorded a head ending at the same byte, and
//!   when hyper read the body to its end, the tracker's body ended at the same byte;
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

/// Where each head and each message (head and body) ended, as the tracker saw it, and where it
/// stopped following (if it did).
#[derive(Debug)]
struct TrackerView {
    head_ends: Vec<usize>,
    message_ends: Vec<usize>,
    stopped_at: Option<usize>,
}

fn tracker_view(input: &[u8]) -> TrackerView {
    let verdicts = Verdicts::default();
    let mut tracker = Tracker::new(verdicts.clone());
    let mut view = TrackerView { head_ends: Vec::new(), message_ends: Vec::new(), stopped_at: None };
    for (i, b) in input.iter().enumerate() {
        tracker.feed(std::slice::from_ref(b));
        while view.head_ends.len() < verdicts.pending() {
            view.head_ends.push(i + 1);
        }
        // A message ends when the tracker waits for the next head: at once for a request
        // without a body, after the body otherwise.
        if view.message_ends.len() < view.head_ends.len() && tracker.awaiting_head() {
            view.message_ends.push(i + 1);
        }
        if view.stopped_at.is_none() && !tracker.following() {
            view.stopped_at = Some(i + 1);
        }
    }
    view
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

/// One request as hyper served it: where its head ended, and where its body ended (`None` when
/// reading the body failed).
#[derive(Debug, Clone, Copy)]
struct Served {
    head_end: usize,
    message_end: Option<usize>,
}

/// What hyper (configured as gale's server configures it) made of `input`, each request's body
/// read to its end. `half_close` keeps hyper from reading ahead (to detect a closed connection)
/// while a response is pending, so the bytes read when a body ends are exactly that body's end;
/// it changes nothing in how requests are parsed.
fn hyper_view(input: &[u8], runtime: &tokio::runtime::Runtime) -> Vec<Served> {
    let read = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(Mutex::new(Vec::new()));
    let io = Trickle { input: input.into(), read: read.clone() };
    let service = {
        let served = served.clone();
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            // Recorded when hyper calls the service, right after it parsed the head.
            let index = {
                let mut served = served.lock().unwrap_or_else(|e| e.into_inner());
                served.push(Served { head_end: read.load(Ordering::SeqCst), message_end: None });
                served.len() - 1
            };
            let (served, read) = (served.clone(), read.clone());
            async move {
                if req.into_body().collect().await.is_ok() {
                    served.lock().unwrap_or_else(|e| e.into_inner())[index].message_end =
                        Some(read.load(Ordering::SeqCst));
                }
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Empty::<Bytes>::new()))
            }
        })
    };
    runtime.block_on(async {
        let conn = hyper::server::conn::http1::Builder::new()
            .header_read_timeout(None)
            .half_close(true)
            .max_header_size(32 * 1024)
            .serve_connection(io, service);
        // Every input ends (EOF), so the connection ends; the bound is a hang guard.
        let done = tokio::time::timeout(std::time::Duration::from_secs(10), conn).await;
        assert!(done.is_ok(), "hyper did not finish a {}-byte input", input.len());
    });
    served.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// A runtime for [`check`]; make one and reuse it across inputs.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a tokio runtime")
}

/// Input: a raw client byte stream (pipelined requests, any bytes).
pub fn check(input: &[u8], runtime: &tokio::runtime::Runtime) {
    let tracker = tracker_view(input);
    let hyper = hyper_view(input, runtime);
    let shown = String::from_utf8_lossy(input);
    let context = || format!("input: {shown:?}\nhyper: {hyper:?}\ntracker: {tracker:?}");
    for (i, served) in hyper.iter().enumerate() {
        let Some(&head_end) = tracker.head_ends.get(i) else {
            panic!(
                "request {i}: hyper dispatched a head ending at byte {} that the tracker never saw\n{}",
                served.head_end,
                context()
            );
        };
        assert_eq!(head_end, served.head_end, "request {i}: the heads end at different bytes\n{}", context());
        if let (Some(hyper_end), Some(&tracker_end)) = (served.message_end, tracker.message_ends.get(i)) {
            assert_eq!(tracker_end, hyper_end, "request {i}: the bodies end at different bytes\n{}", context());
        } else if let Some(hyper_end) = served.message_end {
            panic!("request {i}: hyper's body ends at byte {hyper_end}, the tracker's never does\n{}", context());
        }
    }
    if let Some(&extra) = tracker.head_ends.get(hyper.len()) {
        // hyper stopped before this head (it refused something and closed): the verdict is
        // never read. It must not lie inside hyper's last request.
        let last = hyper.last().map_or(0, |s| s.message_end.unwrap_or(s.head_end));
        assert!(extra > last, "the tracker saw a head ending at {extra} inside hyper's last request\n{}", context());
    }
    let whole = verdicts_split(input, &[]);
    for sizes in [&[1usize][..], &[2, 3], &[7, 1, 64]] {
        assert_eq!(
            verdicts_split(input, sizes),
            whole,
            "splitting the reads {sizes:?} changed the verdicts\ninput: {shown:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIPELINE: &[u8] = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n\
POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n\
POST /c HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi";

    fn head_end(input: &[u8], from: usize) -> usize {
        from + input[from..].windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4
    }

    #[test]
    fn both_sides_find_every_head_where_it_ends() {
        let first = head_end(PIPELINE, 0);
        let second = head_end(PIPELINE, first);
        let body_end = second + b"3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n".len();
        let third = head_end(PIPELINE, body_end);
        let want = vec![first, second, third];
        let hyper = hyper_view(PIPELINE, &runtime());
        assert_eq!(hyper.iter().map(|s| s.head_end).collect::<Vec<_>>(), want);
        assert_eq!(
            hyper.iter().map(|s| s.message_end).collect::<Vec<_>>(),
            vec![Some(first), Some(body_end), Some(PIPELINE.len())]
        );
        let tracker = tracker_view(PIPELINE);
        assert_eq!(tracker.head_ends, want);
        assert_eq!(tracker.message_ends, vec![first, body_end, PIPELINE.len()]);
        check(PIPELINE, &runtime());
    }
}
