//! The response body of a static file: empty, a small file read at open time (or kept by the
//! open file cache), or a stream of chunks, so a large file is never held in memory whole. A
//! chunk the page cache holds is copied on the runtime thread; one that needs the disk is read
//! on the blocking pool.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::task::JoinHandle;

/// Bytes read per chunk of a streamed file: large enough that the per-chunk cost (a system call,
/// a frame, and for a chunk not in the page cache a hop to the blocking pool) is small next to
/// the copy, small enough to keep per-download memory bounded.
pub const CHUNK_SIZE: usize = 512 * 1024;

/// The body of a static response. Its length is always known (`size_hint` is exact), so the
/// server sends `Content-Length`, never chunked encoding.
#[derive(Debug)]
pub struct StaticBody {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Empty,
    Full(Option<Bytes>),
    File(FileStream),
}

#[derive(Debug)]
struct FileStream {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    reading: Option<JoinHandle<io::Result<Bytes>>>,
}

impl StaticBody {
    /// No body (HEAD, 304, 416, redirects).
    pub fn empty() -> Self {
        Self { inner: Inner::Empty }
    }

    /// A body already in memory (small files are read in the same trip as the open).
    pub fn full(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            return Self::empty();
        }
        Self { inner: Inner::Full(Some(bytes)) }
    }

    /// `len` bytes of `file` from `offset`, read in [`CHUNK_SIZE`] pieces on the blocking pool.
    /// Positional reads: the file's cursor is never used, so one descriptor (kept by the open
    /// file cache) serves any number of concurrent bodies. A file that shrinks while being sent
    /// ends the body with an error (the promised length cannot be kept).
    pub(crate) fn file(file: Arc<File>, offset: u64, len: u64) -> Self {
        if len == 0 {
            return Self::empty();
        }
        Self { inner: Inner::File(FileStream { file, offset, remaining: len, reading: None }) }
    }
}

impl Body for StaticBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match &mut self.inner {
            Inner::Empty => Poll::Ready(None),
            Inner::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Inner::File(stream) => stream.poll_chunk(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Empty => true,
            Inner::Full(bytes) => bytes.is_none(),
            Inner::File(stream) => stream.remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Empty => SizeHint::with_exact(0),
            Inner::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::File(stream) => SizeHint::with_exact(stream.remaining),
        }
    }
}

impl FileStream {
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let len = usize::try_from(self.remaining).map_or(CHUNK_SIZE, |r| r.min(CHUNK_SIZE));
        if self.reading.is_none() {
            // What the page cache holds is copied here, on the runtime thread: a trip to the
            // blocking pool costs two thread switches per chunk, more than the copy. Within the
            // task's budget, so a long file still lets other connections run.
            let coop = ready!(tokio::task::coop::poll_proceed(cx));
            if let Some(chunk) = read_cached(&self.file, self.offset, len) {
                coop.made_progress();
                return Poll::Ready(Some(Ok(self.advance(chunk))));
            }
        }
        // Not in memory (or end of file, or an error): the blocking pool reads it, and decides.
        let reading = self.reading.get_or_insert_with(|| {
            let file = Arc::clone(&self.file);
            let offset = self.offset;
            tokio::task::spawn_blocking(move || read_chunk(&file, offset, len))
        });
        let result = ready!(Pin::new(reading).poll(cx));
        self.reading = None;
        let chunk = match result {
            Ok(Ok(chunk)) if !chunk.is_empty() => chunk,
            Ok(Ok(_)) => {
                self.remaining = 0;
                return Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while it was being sent",
                ))));
            }
            Ok(Err(e)) => {
                self.remaining = 0;
                return Poll::Ready(Some(Err(e)));
            }
            Err(join) => {
                self.remaining = 0;
                return Poll::Ready(Some(Err(io::Error::other(join))));
            }
        };
        Poll::Ready(Some(Ok(self.advance(chunk))))
    }

    fn advance(&mut self, chunk: Bytes) -> Frame<Bytes> {
        self.offset += chunk.len() as u64;
        self.remaining -= chunk.len() as u64;
        Frame::data(chunk)
    }
}

/// Up to `len` bytes at `offset` if the page cache has them (`preadv2` with `RWF_NOWAIT`, which
/// never waits for the disk); `None` when it has none of them, at end of file, on any error, or
/// where the kernel or file system does not support the flag: the caller then reads on the
/// blocking pool, which also reports end of file and errors.
#[allow(unsafe_code)]
fn read_cached(file: &File, offset: u64, len: usize) -> Option<Bytes> {
    let offset = libc::off_t::try_from(offset).ok()?;
    let mut buf = Vec::<u8>::with_capacity(len);
    let iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: len };
    // SAFETY: `iov` describes `len` bytes of `buf`'s allocation (its capacity is at least `len`),
    // which outlives the call; the kernel writes at most `iov_len` bytes there.
    let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset, libc::RWF_NOWAIT) };
    let n = usize::try_from(n).ok().filter(|&n| n > 0 && n <= len)?;
    // SAFETY: the kernel initialized the first `n` bytes, and `n <= len <= capacity`.
    unsafe { buf.set_len(n) };
    Some(Bytes::from(buf))
}

/// Reads up to `len` bytes at `offset`; fewer only at end of file. The buffer is not zeroed
/// first (the kernel fills it), which matters for the large chunks.
pub(crate) fn read_chunk(file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let at = offset + buf.len() as u64;
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at) {
            Ok(0) => break,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    buf.truncate(len);
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::os::unix::fs::FileExt;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn body_can_be_boxed_by_the_pipeline() {
        assert_send_sync::<StaticBody>();
    }

    #[tokio::test]
    async fn streams_a_file_in_bounded_chunks() {
        let tmp = tempfile::tempfile().expect("tempfile");
        let data: Vec<u8> = (0..CHUNK_SIZE * 2 + 123).map(|i| (i % 251) as u8).collect();
        tmp.write_all_at(&data, 0).expect("write");

        let mut body = StaticBody::file(Arc::new(tmp), 7, (data.len() - 7) as u64);
        assert_eq!(body.size_hint().exact(), Some((data.len() - 7) as u64));
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            let chunk = frame.expect("frame").into_data().expect("data");
            assert!(chunk.len() <= CHUNK_SIZE);
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, data[7..]);
        assert!(body.is_end_stream());
    }

    #[tokio::test]
    async fn a_file_that_shrinks_ends_with_an_error() {
        let tmp = tempfile::tempfile().expect("tempfile");
        tmp.write_all_at(b"0123456789", 0).expect("write");
        let body = StaticBody::file(Arc::new(tmp.try_clone().expect("clone")), 0, 20);
        let err = body.collect().await.expect_err("must fail");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn what_the_page_cache_holds_is_read_without_the_blocking_pool() {
        let tmp = tempfile::tempfile().expect("tempfile");
        tmp.write_all_at(b"0123456789", 0).expect("write");
        // Just written, so in the page cache. (A file system without RWF_NOWAIT reads answer
        // None, and the blocking pool reads instead: then there is nothing to check here.)
        if let Some(chunk) = read_cached(&tmp, 2, 5) {
            assert_eq!(chunk, "23456");
        }
        // Past the end: None, so that the blocking read reports the end of the file.
        assert_eq!(read_cached(&tmp, 10, 5), None);
    }

    #[tokio::test]
    async fn empty_and_full() {
        assert!(StaticBody::empty().is_end_stream());
        assert!(StaticBody::full(Bytes::new()).is_end_stream());
        let full = StaticBody::full(Bytes::from_static(b"abc"));
        assert_eq!(full.size_hint().exact(), Some(3));
        assert_eq!(full.collect().await.expect("ok").to_bytes(), "abc");
    }
}
