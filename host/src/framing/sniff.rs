//! A read-side tap on a client connection that follows HTTP/1.1 message
//! boundaries in the raw bytes (heads, `Content-Length` bodies, chunked
//! bodies) and records, for each request head, whether its framing headers
//! were ambiguous in a way hyper resolves silently. hyper serves requests on
//! a connection one at a time, in order, so the n-th verdict belongs to the
//! n-th request the service sees.
//!
//! The tap never changes the bytes; it only ends the stream early, after
//! answering a head itself (see [`Tapped`]). When it cannot follow the
//! stream (a head or body hyper will reject anyway), it stops watching.
//! After an upgrade request it keeps following: if the backend refuses, the
//! connection stays HTTP and its next requests need their verdicts.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::FramingError;

/// Verdicts for the heads seen so far, in order; `None` means clean.
#[derive(Debug, Default, Clone)]
pub struct Verdicts(Arc<Mutex<VecDeque<Option<FramingError>>>>);

impl Verdicts {
    /// The verdict for the next request, in order.
    pub fn next(&self) -> Option<FramingError> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).pop_front().flatten()
    }

    /// How many verdicts are recorded and not yet taken (the differential
    /// fuzz check counts heads with it).
    pub fn pending(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn push(&self, v: Option<FramingError>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push_back(v);
    }
}

const MAX_TRACKED_HEAD: usize = 256 * 1024;

#[derive(Debug)]
enum State {
    /// Collecting a request head.
    Head(Vec<u8>),
    /// Inside a body with this many bytes left.
    Length(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// No longer following the stream.
    Off,
}

#[derive(Debug)]
enum Chunk {
    /// Reading a chunk-size line; `size` so far, `in_ext` after `;`.
    Size {
        size: u64,
        digits: usize,
        in_ext: bool,
    },
    Data(u64),
    /// The CRLF after chunk data.
    DataEnd {
        seen_cr: bool,
    },
    /// Trailer section, read as hyper reads it: a line ends only at CRLF
    /// (an LF alone is part of the line), and the section ends at a line
    /// that is CRLF alone. `at_line_start` and `seen_cr` say where in a
    /// line the last byte left it.
    Trailer {
        at_line_start: bool,
        seen_cr: bool,
    },
}

/// Follows one connection's request framing.
#[derive(Debug)]
pub struct Tracker {
    state: State,
    verdicts: Verdicts,
    /// A request asked for an upgrade (or was a CONNECT): what follows may
    /// be a tunnel rather than HTTP. The tracker goes on following it as
    /// HTTP (if the backend refused, hyper goes on reading requests and
    /// their verdicts count), but a stalled "head" is no longer one.
    after_upgrade: bool,
}

impl Tracker {
    /// A tracker that records into `verdicts`.
    pub fn new(verdicts: Verdicts) -> Self {
        Self { state: State::Head(Vec::new()), verdicts, after_upgrade: false }
    }

    /// Whether the tracker still follows the stream (it stops after a head
    /// or a body hyper rejects).
    pub fn following(&self) -> bool {
        !matches!(self.state, State::Off)
    }

    /// Whether the tracker waits for (or is reading) a request head: the
    /// previous message, body included, has ended.
    pub fn awaiting_head(&self) -> bool {
        matches!(self.state, State::Head(_))
    }

    /// Whether part of a request head has arrived but not all of it.
    pub fn head_in_progress(&self) -> bool {
        !self.after_upgrade && matches!(&self.state, State::Head(b) if b.iter().any(|c| !c.is_ascii_whitespace()))
    }

    /// The bytes of a request head that has started to arrive but is not
    /// complete yet (empty otherwise).
    pub fn pending_head(&self) -> &[u8] {
        match &self.state {
            State::Head(b) => b,
            _ => &[],
        }
    }

    /// Feeds bytes in the order they were read.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            bytes = match &mut self.state {
                State::Off => return,
                State::Length(n) => {
                    let take = (*n).min(bytes.len() as u64) as usize;
                    *n -= take as u64;
                    if *n == 0 {
                        self.state = State::Head(Vec::new());
                    }
                    &bytes[take..]
                }
                State::Chunked(c) => {
                    let (used, done) = chunk_step(c, bytes);
                    match done {
                        Some(true) => self.state = State::Head(Vec::new()),
                        Some(false) => self.state = State::Off,
                        None => {}
                    }
                    &bytes[used..]
                }
                State::Head(buf) if buf.is_empty() => {
                    // The common case, a whole head in one read: parsed in
                    // place, copied only when it is incomplete.
                    match self.parse_head(bytes) {
                        Some(head_len) => &bytes[head_len..],
                        None => {
                            if !matches!(self.state, State::Off) {
                                self.state = if bytes.len() > MAX_TRACKED_HEAD {
                                    State::Off
                                } else {
                                    State::Head(bytes.to_vec())
                                };
                            }
                            return;
                        }
                    }
                }
                State::Head(buf) => {
                    let before = buf.len();
                    buf.extend_from_slice(bytes);
                    let buf = std::mem::take(buf);
                    match self.parse_head(&buf) {
                        Some(head_len) => &bytes[head_len - before..],
                        None => {
                            if !matches!(self.state, State::Off) {
                                if buf.len() > MAX_TRACKED_HEAD {
                                    self.state = State::Off;
                                } else {
                                    self.state = State::Head(buf);
                                }
                            }
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Parses a complete head from `buf`, records its verdict and sets the
    /// body state; returns the head's length, or `None` if incomplete.
    fn parse_head(&mut self, buf: &[u8]) -> Option<usize> {
        // Uninitialised: zeroing 128 headers (4 KiB) per request would cost
        // more than the parse.
        let mut headers = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; 128];
        let mut req = httparse::Request::new(&mut []);
        match req.parse_with_uninit_headers(buf, &mut headers) {
            Ok(httparse::Status::Complete(len)) => {
                self.record(&req);
                Some(len)
            }
            Ok(httparse::Status::Partial) => None,
            Err(httparse::Error::TooManyHeaders) => self.parse_long_head(buf),
            Err(_) => {
                // hyper rejects this head itself; nothing more to follow.
                self.state = State::Off;
                None
            }
        }
    }

    /// [`Self::parse_head`] for a head with more headers than the stack
    /// array holds (`max_headers` may allow hundreds): a head the tracker
    /// stopped following would escape its checks. No head has more headers
    /// than lines, so that many slots always suffice.
    fn parse_long_head(&mut self, buf: &[u8]) -> Option<usize> {
        let lines = buf.iter().filter(|b| **b == b'\n').count();
        let mut headers = vec![httparse::EMPTY_HEADER; lines];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                self.record(&req);
                Some(len)
            }
            Ok(httparse::Status::Partial) => None,
            Err(_) => {
                self.state = State::Off;
                None
            }
        }
    }

    /// Records the verdict on a complete head and sets the body state.
    fn record(&mut self, req: &httparse::Request<'_, '_>) {
        let mut lengths = 0;
        let mut length: Option<u64> = None;
        let mut te = false;
        let mut chunked_last = false;
        let mut upgrade = false;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                lengths += 1;
                length = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse().ok());
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                te = true;
                chunked_last = h
                    .value
                    .rsplit(|b| *b == b',')
                    .next()
                    .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
        let verdict = if te && lengths > 0 {
            Some(FramingError::ContentLengthWithTransferEncoding)
        } else if lengths > 1 {
            Some(FramingError::DuplicateContentLength)
        } else {
            None
        };
        self.verdicts.push(verdict);
        let connect = req.method.is_some_and(|m| m.eq_ignore_ascii_case("CONNECT"));
        self.after_upgrade |= upgrade || connect;
        self.state = if te && !chunked_last {
            State::Off
        } else if te {
            State::Chunked(Chunk::Size { size: 0, digits: 0, in_ext: false })
        } else {
            match length {
                Some(0) | None if lengths == 0 => State::Head(Vec::new()),
                Some(0) => State::Head(Vec::new()),
                Some(n) => State::Length(n),
                None => State::Off,
            }
        };
    }
}

/// Advances a chunked-body parser; returns bytes used and, when the body
/// ended, `Some(true)` (or `Some(false)` when it cannot be followed).
fn chunk_step(c: &mut Chunk, bytes: &[u8]) -> (usize, Option<bool>) {
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match c {
            Chunk::Size { size, digits, in_ext } => {
                i += 1;
                if b == b'\n' {
                    if *digits == 0 {
                        return (i, Some(false));
                    }
                    *c = if *size == 0 {
                        Chunk::Trailer { at_line_start: true, seen_cr: false }
                    } else {
                        Chunk::Data(*size)
                    };
                } else if *in_ext || b == b'\r' {
                } else if b == b';' || b == b' ' || b == b'\t' {
                    *in_ext = true;
                } else if let Some(d) = (b as char).to_digit(16) {
                    *digits += 1;
                    // Leading zeros are allowed, as hyper allows them; a size
                    // past u64 is refused by hyper too.
                    match size.checked_mul(16).and_then(|s| s.checked_add(u64::from(d))) {
                        Some(n) => *size = n,
                        None => return (i, Some(false)),
                    }
                } else {
                    return (i, Some(false));
                }
            }
            Chunk::Data(n) => {
                let take = (*n).min((bytes.len() - i) as u64) as usize;
                *n -= take as u64;
                i += take;
                if *n == 0 {
                    *c = Chunk::DataEnd { seen_cr: false };
                }
            }
            Chunk::DataEnd { seen_cr } => {
                i += 1;
                match b {
                    b'\r' if !*seen_cr => *seen_cr = true,
                    b'\n' => *c = Chunk::Size { size: 0, digits: 0, in_ext: false },
                    _ => return (i, Some(false)),
                }
            }
            Chunk::Trailer { at_line_start, seen_cr } => {
                i += 1;
                match (b, *seen_cr) {
                    // CRLF: the end of the section if the line was empty.
                    (b'\n', true) if *at_line_start => return (i, Some(true)),
                    (b'\n', true) => *at_line_start = true,
                    // hyper refuses anything but LF after a CR here.
                    (_, true) => return (i, Some(false)),
                    (b'\r', false) => {}
                    (_, false) => *at_line_start = false,
                }
                *seen_cr = b == b'\r';
            }
        }
    }
    (i, None)
}

/// What a client that stalls mid-head is told before the connection closes.
const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/html\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// What a client whose request target passes `max_uri_size` is told.
const URI_TOO_LONG: &[u8] =
    b"HTTP/1.1 414 URI Too Long\r\nContent-Type: text/html\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// At most this much of a refused head's first line is kept for the log.
const KEPT_LINE: usize = 1024;

/// The limits the tap enforces on request heads, before hyper sees them.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// When the connection was accepted: the first request's head must
    /// arrive within `header_timeout` of it (nginx's `client_header_timeout`
    /// from accept), or the connection is closed without a word.
    pub accepted: tokio::time::Instant,
    /// `client_header_timeout`.
    pub header_timeout: Duration,
    /// `max_uri_size`: a longer request target gets 414 as soon as that
    /// many bytes of it have arrived (hyper would buffer it up to
    /// `max_header_size` and answer 431).
    pub max_uri: u64,
}

/// What the tap tells its connection's owner as it goes.
pub trait TapObserver: Send + Sync {
    /// Bytes of a request (not only blank lines) arrived.
    fn request_bytes(&self);
    /// The tap answered `status` itself (408, 414) and ended the read side;
    /// `first_line` is what arrived of the head's first line (at most 1 KiB).
    fn answered(&self, status: u16, first_line: &[u8]);
}

pin_project_lite::pin_project! {
    /// An I/O stream whose reads are shown to a [`Tracker`]. It also
    /// enforces [`HeadLimits`]: a first request that does not start within
    /// `client_header_timeout` of accept ends the connection silently (like
    /// nginx); a head that has started to arrive and stalls past it gets a
    /// 408 (hyper's own header timer closes without a word, which is right
    /// for an idle keep-alive connection but not for a head cut short); a
    /// request target longer than `max_uri_size` gets a 414. After an answer
    /// the read side ends.
    pub struct Tapped<T> {
        #[pin]
        inner: T,
        tracker: Tracker,
        limits: HeadLimits,
        observer: Arc<dyn TapObserver>,
        // No byte of a first request yet: `deadline` runs from accept.
        awaiting_first: bool,
        deadline: Option<Pin<Box<Sleep>>>,
        // The answer being sent and how many of its bytes are written.
        reply: Option<(&'static [u8], usize)>,
        done: bool,
    }
}

impl<T> Tapped<T> {
    /// Wraps `inner`, recording verdicts into `verdicts` and telling
    /// `observer` when requests start and what the tap answered.
    pub fn new(inner: T, verdicts: Verdicts, limits: HeadLimits, observer: Arc<dyn TapObserver>) -> Self {
        let first = tokio::time::sleep_until(limits.accepted + limits.header_timeout);
        Self {
            inner,
            tracker: Tracker::new(verdicts),
            limits,
            observer,
            awaiting_first: true,
            deadline: Some(Box::pin(first)),
            reply: None,
            done: false,
        }
    }
}

/// Whether the request target in `head` (what arrived of a head) is already
/// longer than `limit`; looked at only once the head itself is.
fn target_too_long(head: &[u8], limit: u64) -> bool {
    if head.len() as u64 <= limit {
        return false;
    }
    let line = head.trim_ascii_start();
    let line = match line.iter().position(|b| *b == b'\n') {
        // A complete line: the target ends at its last space.
        Some(end) => {
            let l = line[..end].trim_ascii_end();
            match l.iter().rposition(|b| *b == b' ') {
                Some(sp) => &l[..sp],
                None => l,
            }
        }
        None => line,
    };
    match line.iter().position(|b| *b == b' ') {
        Some(sp) => (line.len() - sp - 1) as u64 > limit,
        None => false,
    }
}

/// The first line of `head` so far with its LF if it ended, at most
/// [`KEPT_LINE`] bytes of it.
fn first_line(head: &[u8]) -> &[u8] {
    let line = head.trim_ascii_start();
    let end = line.iter().position(|b| *b == b'\n').map_or(line.len(), |lf| lf + 1);
    &line[..end.min(KEPT_LINE)]
}

impl<T: AsyncRead + AsyncWrite> AsyncRead for Tapped<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut this = self.project();
        loop {
            if *this.done {
                return Poll::Ready(Ok(()));
            }
            if let Some((reply, sent)) = this.reply.as_mut() {
                while *sent < reply.len() {
                    match this.inner.as_mut().poll_write(cx, &reply[*sent..]) {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => break,
                        Poll::Ready(Ok(n)) => *sent += n,
                        Poll::Pending => return Poll::Pending,
                    }
                }
                let _ = this.inner.as_mut().poll_flush(cx);
                *this.done = true;
                continue;
            }
            let before = buf.filled().len();
            let r = this.inner.as_mut().poll_read(cx, buf);
            if let Poll::Ready(Ok(())) = r {
                let read = &buf.filled()[before..];
                if !read.is_empty() {
                    this.tracker.feed(read);
                    if read.iter().any(|b| !b.is_ascii_whitespace()) {
                        *this.awaiting_first = false;
                        this.observer.request_bytes();
                    }
                    if target_too_long(this.tracker.pending_head(), this.limits.max_uri) {
                        // hyper never sees the rest of this head: it reads
                        // the end of the stream after the 414.
                        this.observer.answered(414, first_line(this.tracker.pending_head()));
                        buf.set_filled(before);
                        *this.deadline = None;
                        *this.reply = Some((URI_TOO_LONG, 0));
                        continue;
                    }
                }
                if !*this.awaiting_first {
                    if !this.tracker.head_in_progress() {
                        *this.deadline = None;
                    } else if this.deadline.is_none() {
                        *this.deadline = Some(Box::pin(tokio::time::sleep(this.limits.header_timeout)));
                    }
                }
            }
            let expired = match this.deadline.as_mut() {
                Some(d) => d.as_mut().poll(cx).is_ready(),
                None => false,
            };
            if expired && *this.awaiting_first {
                // Nothing of a request within client_header_timeout of accept.
                *this.deadline = None;
                *this.done = true;
                return Poll::Ready(Ok(()));
            }
            if expired && this.tracker.head_in_progress() {
                this.observer.answered(408, first_line(this.tracker.pending_head()));
                *this.deadline = None;
                *this.reply = Some((REQUEST_TIMEOUT, 0));
                if buf.filled().len() > before {
                    // Hand over what was read; the 408 goes out on the next read.
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            return r;
        }
    }
}

impl<T: AsyncWrite> AsyncWrite for Tapped<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
#[path = "sniff_tests.rs"]
mod tests;
