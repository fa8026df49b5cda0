//! A body wrapper that gzips its inner body as it streams, or passes it through untouched.
//!
//! Frames are compressed as they arrive, without a flush, so ready data compresses well. When
//! the inner body has nothing more to give right now, the encoder is sync-flushed and what it
//! produced is sent: a slow upstream's bytes are never held back by the compressor, and nothing
//! is buffered beyond zlib's window and one output chunk.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

/// The boxed error of a [`GzipBody`]: the inner body's error or a compression failure.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Compressed output is sent once this much has accumulated, even while input keeps coming.
const EMIT_AT: usize = 16 * 1024;
/// After this much input without any output (very compressible data), yield to the scheduler
/// so one response cannot monopolise a worker thread.
const YIELD_AFTER: usize = 256 * 1024;

pin_project_lite::pin_project! {
    /// The response body after the gzip stage: either the inner body as it was, or its gzip
    /// encoding (no known length, so the server sends it chunked).
    pub struct GzipBody<B> {
        #[pin]
        inner: B,
        state: State,
    }
}

enum State {
    Identity,
    Gzip(Box<Encoder>),
    /// The gzip trailer was sent; the inner body's trailers (if any) are still to go.
    Finished(Option<HeaderMap>),
    Done,
}

struct Encoder {
    gz: GzEncoder<Vec<u8>>,
    /// Input written since the last flush.
    unflushed: bool,
    /// Input bytes consumed since output was last sent.
    consumed: usize,
}

impl<B> GzipBody<B> {
    /// Passes `inner` through unchanged.
    pub fn identity(inner: B) -> Self {
        Self { inner, state: State::Identity }
    }

    /// Compresses `inner` at `level` (1-9; out-of-range values are clamped).
    pub fn gzip(inner: B, level: u32) -> Self {
        let gz = GzEncoder::new(Vec::new(), Compression::new(level.clamp(1, 9)));
        Self { inner, state: State::Gzip(Box::new(Encoder { gz, unflushed: false, consumed: 0 })) }
    }

    /// Whether this body compresses (as opposed to passing through).
    pub fn is_compressing(&self) -> bool {
        !matches!(self.state, State::Identity)
    }
}

impl<B> std::fmt::Debug for GzipBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GzipBody").field("compressing", &self.is_compressing()).finish_non_exhaustive()
    }
}

impl Encoder {
    fn take_output(&mut self) -> Option<Bytes> {
        self.consumed = 0;
        let out = std::mem::take(self.gz.get_mut());
        (!out.is_empty()).then(|| Bytes::from(out))
    }

    fn finish(&mut self) -> std::io::Result<Bytes> {
        self.gz.try_finish()?;
        Ok(self.take_output().unwrap_or_default())
    }
}

impl<B> Body for GzipBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            let enc = match this.state {
                State::Identity => {
                    return this.inner.poll_frame(cx).map(|f| f.map(|r| r.map_err(Into::into)));
                }
                State::Done => return Poll::Ready(None),
                State::Finished(trailers) => {
                    let trailers = trailers.take();
                    *this.state = State::Done;
                    return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                }
                State::Gzip(enc) => enc,
            };
            match this.inner.as_mut().poll_frame(cx) {
                Poll::Pending => {
                    if enc.unflushed {
                        enc.unflushed = false;
                        if let Err(e) = enc.gz.flush() {
                            *this.state = State::Done;
                            return Poll::Ready(Some(Err(e.into())));
                        }
                        if let Some(out) = enc.take_output() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Some(Err(e))) => {
                    *this.state = State::Done;
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    let trailers = match frame.into_data() {
                        Ok(data) => {
                            if data.is_empty() {
                                continue;
                            }
                            if let Err(e) = enc.gz.write_all(&data) {
                                *this.state = State::Done;
                                return Poll::Ready(Some(Err(e.into())));
                            }
                            enc.unflushed = true;
                            enc.consumed += data.len();
                            if enc.gz.get_ref().len() >= EMIT_AT
                                && let Some(out) = enc.take_output()
                            {
                                return Poll::Ready(Some(Ok(Frame::data(out))));
                            }
                            if enc.consumed >= YIELD_AFTER {
                                enc.consumed = 0;
                                cx.waker().wake_by_ref();
                                return Poll::Pending;
                            }
                            continue;
                        }
                        Err(frame) => frame.into_trailers().ok(),
                    };
                    return finish(this.state, trailers);
                }
                Poll::Ready(None) => return finish(this.state, None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            State::Identity => self.inner.is_end_stream(),
            State::Done => true,
            State::Gzip(_) | State::Finished(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Identity => self.inner.size_hint(),
            State::Done => SizeHint::with_exact(0),
            State::Gzip(_) | State::Finished(_) => SizeHint::default(),
        }
    }
}

/// Writes the gzip trailer and moves on to the inner trailers.
fn finish(state: &mut State, trailers: Option<HeaderMap>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    let State::Gzip(enc) = state else {
        *state = State::Done;
        return Poll::Ready(None);
    };
    match enc.finish() {
        Ok(out) => {
            *state = State::Finished(trailers);
            Poll::Ready(Some(Ok(Frame::data(out))))
        }
        Err(e) => {
            *state = State::Done;
            Poll::Ready(Some(Err(e.into())))
        }
    }
}
