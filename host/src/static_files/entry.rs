//! What a static location knows about one file it opened: everything a response needs, rendered
//! once. The open file cache keeps these, so a hit formats nothing and reads nothing: the header
//! values are shared, and a small file's bytes are shared too.

use std::fs::File;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use super::StaticError;
use super::body::{self, StaticBody};
use super::conditional::{Outcome, Validators};
use super::open::Opened;

/// One version of one file, as found by a walk under the symlink policy.
#[derive(Debug)]
pub(crate) struct FileEntry {
    /// ETag, Last-Modified and size, for conditional and range requests.
    pub validators: Validators,
    /// Modification time (for the cache policy's data).
    pub mtime: SystemTime,
    /// The `Content-Type` (extension table or `default_type`).
    pub content_type: HeaderValue,
    /// The index name, when the request named a directory and this is its index.
    pub index: Option<String>,
    etag: HeaderValue,
    last_modified: HeaderValue,
    content_length: HeaderValue,
    content: Content,
}

/// Where the bytes come from.
#[derive(Debug)]
enum Content {
    /// The whole file, read once when it was opened (its descriptor is closed).
    Bytes(Bytes),
    /// A larger file: the open descriptor, read on every request (positional reads, shared).
    File(Arc<File>),
}

impl FileEntry {
    /// Describes an opened regular file; reads it whole if it is at most `keep_bytes_up_to` long.
    /// A file that shrinks between `fstat` and the read is an error, never a short body.
    pub(crate) fn load(
        opened: Opened,
        content_type: HeaderValue,
        index: Option<String>,
        keep_bytes_up_to: u64,
    ) -> Result<Self, StaticError> {
        let validators = Validators::new(opened.size, opened.mtime);
        let content = if opened.size <= keep_bytes_up_to {
            Content::Bytes(read_whole(&opened.file, opened.size)?)
        } else {
            Content::File(Arc::new(opened.file))
        };
        let etag = HeaderValue::from_str(&validators.etag).map_err(invalid)?;
        let last_modified = HeaderValue::from_str(&validators.last_modified).map_err(invalid)?;
        Ok(Self {
            content_length: HeaderValue::from(opened.size),
            validators,
            mtime: opened.mtime,
            content_type,
            index,
            etag,
            last_modified,
            content,
        })
    }

    /// The response for this file with the outcome of the request's conditions and range.
    pub(crate) fn respond(&self, outcome: Outcome, head: bool) -> Response<StaticBody> {
        let size = self.validators.size;
        let mut headers = HeaderMap::with_capacity(8);
        headers.insert(header::ETAG, self.etag.clone());
        headers.insert(header::LAST_MODIFIED, self.last_modified.clone());
        let (status, range) = match outcome {
            Outcome::NotModified => (StatusCode::NOT_MODIFIED, None),
            Outcome::Unsatisfiable => {
                headers.insert(header::CONTENT_RANGE, header_value(format!("bytes */{size}")));
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
                (StatusCode::RANGE_NOT_SATISFIABLE, None)
            }
            Outcome::Full => (StatusCode::OK, Some((0, size))),
            Outcome::Partial { start, end } => {
                headers.insert(header::CONTENT_RANGE, header_value(format!("bytes {start}-{end}/{size}")));
                (StatusCode::PARTIAL_CONTENT, Some((start, end - start + 1)))
            }
        };
        let body = match range {
            None => StaticBody::empty(),
            Some((offset, len)) => {
                headers.insert(header::CONTENT_TYPE, self.content_type.clone());
                let length = if len == size { self.content_length.clone() } else { HeaderValue::from(len) };
                headers.insert(header::CONTENT_LENGTH, length);
                headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                if head { StaticBody::empty() } else { self.body(offset, len) }
            }
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }

    /// `len` bytes from `offset`; the range is within the file (`conditional` checked it).
    fn body(&self, offset: u64, len: u64) -> StaticBody {
        match &self.content {
            Content::Bytes(bytes) => {
                // Both fit in usize: the bytes are in memory.
                let start = usize::try_from(offset).unwrap_or(bytes.len()).min(bytes.len());
                let end = usize::try_from(offset + len).unwrap_or(bytes.len()).min(bytes.len());
                StaticBody::full(bytes.slice(start..end))
            }
            Content::File(file) => StaticBody::file(Arc::clone(file), offset, len),
        }
    }
}

/// Reads exactly `size` bytes from the start of the file.
fn read_whole(file: &File, size: u64) -> Result<Bytes, StaticError> {
    let want = usize::try_from(size).map_err(|e| StaticError::Io(std::io::Error::other(e)))?;
    let bytes = body::read_chunk(file, 0, want).map_err(StaticError::Io)?;
    if bytes.len() != want {
        return Err(StaticError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "file shrank while it was being read",
        )));
    }
    Ok(bytes)
}

/// Digits, spaces, slashes, dashes and `*`: always a valid header value.
fn header_value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn invalid(e: http::header::InvalidHeaderValue) -> StaticError {
    StaticError::Io(std::io::Error::other(e))
}
