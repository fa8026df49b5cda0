//! Serving files from disk, the way nginx's `root`/`alias` locations do, without ever serving a
//! file outside the configured directory.
//!
//! [`serve`] is one handler call: method check, path decoding and refusal (`path`), the
//! `root`/`alias` mapping, opening under the symlink policy (`open`), conditional and range
//! evaluation (`conditional`), then a response whose body streams the file (`body`). It returns
//! the response together with a [`FileMeta`], so the pipeline can ask the cache policy (today
//! [`seed_expires_max`], later the `cache-policy` plugin) and add the headers it decides.
//!
//! The rules and where they differ from nginx are in `docs/static-and-gzip.md`.

mod body;
mod cache;
mod conditional;
mod config;
pub mod mime;
mod open;
pub mod path;

#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header, request};

pub use body::{CHUNK_SIZE, StaticBody};
pub use cache::{CacheHeaders, EXPIRES_MAX_CACHE_CONTROL, EXPIRES_MAX_DATE, FileMeta, seed_expires_max};
pub use config::{Base, FollowSymlinks, StaticConfig, StaticConfigError, StaticOptions};
pub use path::{PathError, RequestPath};

use conditional::{Conditions, Outcome, Validators};
use config::Settings;
use open::{Kind, OpenError, Opened};

/// The `Allow` header value that must accompany a 405 from this handler.
pub const ALLOWED_METHODS: &str = "GET, HEAD";

/// Bodies up to this size are read in the same trip to the blocking pool as the open, so a
/// small file costs one hop; larger ones stream in [`CHUNK_SIZE`] chunks.
const INLINE_READ_LIMIT: u64 = 64 * 1024;

/// Why no file response could be produced. Each variant knows its status ([`StaticError::status`]);
/// the error module turns it into the response.
#[derive(Debug, thiserror::Error)]
pub enum StaticError {
    /// Not GET or HEAD: 405, with `Allow: GET, HEAD` ([`ALLOWED_METHODS`]).
    #[error("method not allowed for static files")]
    MethodNotAllowed,
    /// The path is malformed (400) or refused (404); see [`PathError`].
    #[error(transparent)]
    Path(#[from] PathError),
    /// Nothing servable at that path (missing, not a regular file, or refused by the symlink
    /// policy): 404.
    #[error("file not found")]
    NotFound,
    /// A directory without any of its index files (nginx with `autoindex off`): 403.
    #[error("directory has no index file and listing is disabled")]
    DirectoryIndex,
    /// The file system denied access: 403.
    #[error("permission denied")]
    Forbidden,
    /// An unexpected I/O failure: 500.
    #[error("I/O error while opening the file: {0}")]
    Io(#[source] std::io::Error),
}

impl StaticError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            StaticError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            StaticError::Path(PathError::Refused(_)) | StaticError::NotFound => StatusCode::NOT_FOUND,
            StaticError::Path(_) => StatusCode::BAD_REQUEST,
            StaticError::DirectoryIndex | StaticError::Forbidden => StatusCode::FORBIDDEN,
            StaticError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<OpenError> for StaticError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::NotFound => StaticError::NotFound,
            OpenError::Forbidden => StaticError::Forbidden,
            OpenError::Io(e) => StaticError::Io(e),
        }
    }
}

/// A response from the static handler, with the file's facts when a file was found.
#[derive(Debug)]
pub struct Served {
    /// 200, 206, 304, 416, or 301 (directory without trailing slash).
    pub response: Response<StaticBody>,
    /// Present for every answer about a file (200, 206, 304, 416), absent for the redirect.
    /// The pipeline passes it to the cache policy and applies the [`CacheHeaders`] it returns
    /// with [`CacheHeaders::apply`].
    pub meta: Option<FileMeta>,
}

/// Serves the file `req` names under `cfg`.
///
/// `location_prefix` is the matched location's path (e.g. `/static/`); it matters only for
/// `alias`, whose directory replaces it. Opening and reading run on tokio's blocking pool; the
/// body streams large files chunk by chunk.
pub async fn serve(cfg: &StaticConfig, location_prefix: &str, req: &request::Parts) -> Result<Served, StaticError> {
    let head = match req.method {
        Method::GET => false,
        Method::HEAD => true,
        _ => return Err(StaticError::MethodNotAllowed),
    };
    let path = RequestPath::parse(req.uri.path())?;
    let names = match cfg.base() {
        Base::Root(_) => path.segments.clone(),
        Base::Alias(_) => path.strip_prefix(location_prefix)?,
    };
    let job = Job {
        settings: Arc::clone(cfg.settings()),
        names,
        display_path: path.display(),
        trailing_slash: path.trailing_slash,
        raw_path: req.uri.path().to_owned(),
        query: req.uri.query().map(str::to_owned),
        conditions: Conditions::from_headers(&req.headers),
        head,
    };
    tokio::task::spawn_blocking(move || job.run()).await.map_err(|e| StaticError::Io(std::io::Error::other(e)))?
}

/// Everything the blocking part needs, owned.
struct Job {
    settings: Arc<Settings>,
    names: Vec<OsString>,
    display_path: String,
    trailing_slash: bool,
    raw_path: String,
    query: Option<String>,
    conditions: Conditions,
    head: bool,
}

impl Job {
    fn run(self) -> Result<Served, StaticError> {
        let s = &self.settings;
        let base = s.base.dir();
        let opened = open::open(base, &self.names, s.follow_symlinks)?;
        let (opened, index_name) = match opened.kind {
            Kind::Other => return Err(StaticError::NotFound),
            // `/static/a.css/`: nginx gets ENOTDIR, a 404.
            Kind::File if self.trailing_slash && !self.names.is_empty() => {
                return Err(StaticError::NotFound);
            }
            Kind::File => (opened, None),
            Kind::Dir if !self.trailing_slash => return Ok(self.redirect_to_slash()),
            Kind::Dir => self.open_index()?,
        };
        let file_name: &[u8] = match (&index_name, self.names.last()) {
            (Some(index), _) => index.as_bytes(),
            (None, Some(last)) => last.as_bytes(),
            (None, None) => base.file_name().map_or(&[][..], |n| n.as_bytes()),
        };
        let content_type = match mime::lookup(file_name) {
            Some(t) => HeaderValue::from_static(t),
            None => s.default_type.clone(),
        };
        let mut meta_path = self.display_path.clone();
        if let Some(index) = &index_name {
            meta_path.push_str(index);
        }
        let validators = Validators::new(opened.size, opened.mtime);
        let outcome = conditional::evaluate(&validators, &self.conditions);
        let meta = FileMeta {
            path: meta_path,
            query: self.query.clone(),
            size: opened.size,
            mtime: opened.mtime,
            content_type: content_type.to_str().unwrap_or_default().to_owned(),
        };
        let response = respond(opened, &validators, outcome, content_type, self.head)?;
        Ok(Served { response, meta: Some(meta) })
    }

    /// Tries each index name in order; a directory with none is nginx's 403.
    fn open_index(&self) -> Result<(Opened, Option<String>), StaticError> {
        let s = &self.settings;
        for index in &s.index {
            let mut names = self.names.clone();
            names.push(OsString::from(index));
            match open::open(s.base.dir(), &names, s.follow_symlinks) {
                Ok(o) if o.kind == Kind::File => return Ok((o, Some(index.clone()))),
                Ok(_) | Err(OpenError::NotFound) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StaticError::DirectoryIndex)
    }

    /// `/static/dir` → 301 `/static/dir/` (query kept), with the path as the client wrote it.
    fn redirect_to_slash(&self) -> Served {
        let mut location = self.raw_path.clone();
        location.push('/');
        if let Some(q) = &self.query {
            location.push('?');
            location.push_str(q);
        }
        let mut response = Response::new(StaticBody::empty());
        *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
        if let Ok(v) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, v);
        }
        response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        Served { response, meta: None }
    }
}

/// Builds the response for an opened regular file.
fn respond(
    opened: Opened,
    v: &Validators,
    outcome: Outcome,
    content_type: HeaderValue,
    head: bool,
) -> Result<Response<StaticBody>, StaticError> {
    let mut builder = Response::builder().header(header::ETAG, &v.etag).header(header::LAST_MODIFIED, &v.last_modified);
    let (status, range) = match outcome {
        Outcome::NotModified => (StatusCode::NOT_MODIFIED, None),
        Outcome::Unsatisfiable => {
            builder =
                builder.header(header::CONTENT_RANGE, format!("bytes */{}", v.size)).header(header::CONTENT_LENGTH, 0);
            (StatusCode::RANGE_NOT_SATISFIABLE, None)
        }
        Outcome::Full => (StatusCode::OK, Some((0, v.size))),
        Outcome::Partial { start, end } => {
            builder = builder.header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{}", v.size));
            (StatusCode::PARTIAL_CONTENT, Some((start, end - start + 1)))
        }
    };
    let body = match range {
        None => StaticBody::empty(),
        Some((offset, len)) => {
            builder = builder
                .header(header::CONTENT_TYPE, content_type)
                .header(header::CONTENT_LENGTH, len)
                .header(header::ACCEPT_RANGES, "bytes");
            if head {
                StaticBody::empty()
            } else if len <= INLINE_READ_LIMIT {
                let bytes = read_inline(&opened, offset, len)?;
                StaticBody::full(bytes)
            } else {
                StaticBody::file(opened.file, offset, len)
            }
        }
    };
    builder.status(status).body(body).map_err(|e| StaticError::Io(std::io::Error::other(e)))
}

/// Reads a small body now; a file that changed size since `fstat` is an error, not a short body.
fn read_inline(opened: &Opened, offset: u64, len: u64) -> Result<Bytes, StaticError> {
    let want = usize::try_from(len).map_err(|e| StaticError::Io(std::io::Error::other(e)))?;
    let bytes = body::read_chunk(&opened.file, offset, want).map_err(StaticError::Io)?;
    if bytes.len() != want {
        return Err(StaticError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "file shrank while it was being read",
        )));
    }
    Ok(bytes)
}
