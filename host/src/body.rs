//! Body types that cross module boundaries: the boxed response body every
//! handler returns, the client's request body with its size and idle-time
//! limits, and the body sent upstream.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

/// Errors inside bodies are type-erased, as hyper expects.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What every handler answers with.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// A complete, in-memory response body.
pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    http_body_util::Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// An empty response body.
pub fn empty() -> ResponseBody {
    http_body_util::Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Why reading the client's body stopped early. Recorded where the proxy can
/// see it, because the upstream client only reports "body error".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFault {
    /// More than `client_max_body_size` decoded bytes: 413.
    TooLarge,
    /// Nothing arrived for `client_body_timeout`: 408.
    Timeout,
    /// The client's connection failed or closed mid-body.
    Aborted,
    /// The body's own framing is broken (a chunk size that is not hex or
    /// overflows, a missing CRLF after a chunk, a bad trailer): 400. The
    /// client is still there and should be told.
    Malformed,
}

impl BodyFault {
    /// What a read error from hyper's body means. hyper reports a chunked
    /// body it cannot decode as an `io::Error` of kind `InvalidData` or
    /// `InvalidInput` inside its body error, and a connection that ended
    /// mid-body as `UnexpectedEof` (or the socket's own error); anything
    /// that is not recognisably the client's bytes counts as the client gone.
    fn of_read_error(e: &hyper::Error) -> Self {
        let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                return match io.kind() {
                    std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput => BodyFault::Malformed,
                    _ => BodyFault::Aborted,
                };
            }
            source = s.source();
        }
        if e.is_parse() { BodyFault::Malformed } else { BodyFault::Aborted }
    }
}

/// Shared record of a [`BodyFault`], set once.
pub type FaultSlot = Arc<OnceLock<BodyFault>>;

/// The client's request body, with `client_max_body_size` enforced on the
/// decoded bytes (so chunked bodies are capped too) and
/// `client_body_timeout` between reads.
pub struct ClientBody {
    inner: Incoming,
    limit: u64,
    seen: u64,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
    fault: FaultSlot,
}

impl ClientBody {
    /// Wraps `inner`; faults are recorded in `fault`.
    pub fn new(inner: Incoming, limit: u64, idle: Duration, fault: FaultSlot) -> Self {
        Self { inner, limit, seen: 0, idle, sleep: Box::pin(tokio::time::sleep(idle)), fault }
    }

    fn fail(&mut self, fault: BodyFault) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let _ = self.fault.set(fault);
        Poll::Ready(Some(Err(Box::new(BodyFaultError(fault)))))
    }
}

/// The error value a faulted [`ClientBody`] yields.
#[derive(Debug, thiserror::Error)]
#[error("client body: {0:?}")]
pub struct BodyFaultError(pub BodyFault);

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if this.seen > this.limit {
                        return this.fail(BodyFault::TooLarge);
                    }
                }
                let deadline = Instant::now() + this.idle;
                this.sleep.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let fault = BodyFault::of_read_error(&e);
                this.fail(fault)
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(this.sleep.as_mut().poll(cx));
                this.fail(BodyFault::Timeout)
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

/// The body of a request sent upstream: nothing, the client's body streamed
/// through, or bytes gale produced (such as a rewritten upload form).
pub enum UpstreamRequestBody {
    Empty,
    Client(ClientBody),
    Full(Option<Bytes>),
}

impl Body for UpstreamRequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            UpstreamRequestBody::Empty => Poll::Ready(None),
            UpstreamRequestBody::Client(b) => Pin::new(b).poll_frame(cx),
            UpstreamRequestBody::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamRequestBody::Empty => true,
            UpstreamRequestBody::Client(b) => b.is_end_stream(),
            UpstreamRequestBody::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamRequestBody::Empty => SizeHint::with_exact(0),
            UpstreamRequestBody::Client(b) => b.size_hint(),
            UpstreamRequestBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}
