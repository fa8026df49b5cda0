//! Serving files from disk, the way nginx's `root`/`alias` locations do, without ever serving a
//! file outside the configured directory.
//!
//! [`serve`] is one handler call: method check, path decoding and refusal (`path`), the
//! `root`/`alias` mapping, a lookup in the location's open file cache (`open_cache`), on a miss
//! opening under the symlink policy (`open`) and rendering what the response needs (`entry`),
//! conditional and range evaluation (`conditional`), then a response whose body is the cached
//! bytes or streams the file (`body`). It returns
//! the response together with a [`FileMeta`], so the pipeline can ask the location's cache-policy
//! plugin, if it has one (`attach.rs`), and add the headers it decides.
//!
//! The rules and where they differ from nginx are in `docs/static-and-gzip.md`.

mod body;
mod cache;
mod conditional;
mod config;
mod entry;
pub mod mime;
mod open;
mod open_cache;
pub mod path;

#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Method, Response, StatusCode, header, request};

pub use body::{CHUNK_SIZE, StaticBody};
pub use cache::{CacheHeaders, EXPIRES_MAX_CACHE_CONTROL, EXPIRES_MAX_DATE, FileMeta, query_string_expires_max};
pub use config::{Base, FollowSymlinks, OpenFileCacheOptions, StaticConfig, StaticConfigError, StaticOptions};
pub use open_cache::OpenFileCacheSettings;
pub use path::{PathError, RequestPath};

use conditional::Conditions;
use config::Settings;
use entry::FileEntry;
use open::{Kind, OpenError, Opened};

/// The `Allow` header value that must accompany a 405 from this handler.
pub const ALLOWED_METHODS: &str = "GET, HEAD";

/// Without the open file cache, bodies up to this size are read in the same trip to the blocking
/// pool as the open, so a small file costs one hop; larger ones stream in [`CHUNK_SIZE`] chunks.
/// With the cache, its `max_content_size` decides instead.
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

/// Serves the file `path` names under `cfg`.
///
/// `path` is the request's path in normal form (`crate::uri_path`), the one its location was
/// chosen by, so that no other spelling of it names another file. `location_prefix` is the matched location's path (e.g. `/static/`); it matters only for
/// `alias`, whose directory replaces it. A file found less than `open_file_cache.valid` ago is
/// answered from the location's open file cache without leaving the runtime thread; otherwise
/// opening (with every safety check) and reading run on tokio's blocking pool, and the body
/// streams large files chunk by chunk.
pub async fn serve(
    cfg: &StaticConfig,
    location_prefix: &str,
    path: &str,
    req: &request::Parts,
) -> Result<Served, StaticError> {
    let head = match req.method {
        Method::GET => false,
        Method::HEAD => true,
        _ => return Err(StaticError::MethodNotAllowed),
    };
    let request_path = path;
    let mut path = RequestPath::parse(request_path)?;
    let display_path = path.display();
    let names = match cfg.base() {
        Base::Root(_) => std::mem::take(&mut path.segments),
        Base::Alias(_) => path.strip_prefix(location_prefix)?,
    };
    let query = req.uri.query();
    let cache = cfg.cache();
    let key = cache.settings().enabled().then(|| cache_key(&names, path.trailing_slash));
    let hit = key.as_deref().and_then(|key| cache.get(key, Instant::now()));
    let entry = match hit {
        Some(entry) => entry,
        None => {
            let settings = cache.settings();
            let keep_bytes_up_to = if settings.enabled() { settings.max_content_size } else { INLINE_READ_LIMIT };
            let job = Job {
                settings: Arc::clone(cfg.settings()),
                names,
                trailing_slash: path.trailing_slash,
                keep_bytes_up_to,
            };
            let found = tokio::task::spawn_blocking(move || job.run())
                .await
                .map_err(|e| StaticError::Io(std::io::Error::other(e)))??;
            match found {
                Found::Directory => return Ok(redirect_to_slash(request_path, query)),
                Found::File { entry, at } => {
                    if let Some(key) = key {
                        cache.insert(key, Arc::clone(&entry), at, Instant::now());
                    }
                    entry
                }
            }
        }
    };
    let outcome = conditional::evaluate(&entry.validators, &Conditions::from_headers(&req.headers));
    let mut meta_path = display_path;
    if let Some(index) = &entry.index {
        meta_path.push_str(index);
    }
    let meta = FileMeta {
        path: meta_path,
        query: query.map(str::to_owned),
        size: entry.validators.size,
        mtime: entry.mtime,
        content_type: entry.content_type.to_str().unwrap_or_default().to_owned(),
    };
    Ok(Served { response: entry.respond(outcome, head), meta: Some(meta) })
}

/// The cache key of a request: its names joined with `/` (names never contain one), and a
/// final `/` when the request named a directory (`a/` serves an index, `a` redirects).
fn cache_key(names: &[OsString], trailing_slash: bool) -> Box<[u8]> {
    let mut key = Vec::with_capacity(names.iter().map(|n| n.len() + 1).sum::<usize>() + 1);
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            key.push(b'/');
        }
        key.extend_from_slice(name.as_bytes());
    }
    if trailing_slash {
        key.push(b'/');
    }
    key.into_boxed_slice()
}

/// What the blocking part found.
enum Found {
    /// A directory named without its trailing slash: redirect.
    Directory,
    /// A regular file (or a directory's index), found by a walk that started at `at`.
    File { entry: Arc<FileEntry>, at: Instant },
}

/// Everything the blocking part needs, owned.
struct Job {
    settings: Arc<Settings>,
    names: Vec<OsString>,
    trailing_slash: bool,
    keep_bytes_up_to: u64,
}

impl Job {
    fn run(self) -> Result<Found, StaticError> {
        let at = Instant::now();
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
            Kind::Dir if !self.trailing_slash => return Ok(Found::Directory),
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
        let entry = FileEntry::load(opened, content_type, index_name, self.keep_bytes_up_to)?;
        Ok(Found::File { entry: Arc::new(entry), at })
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
}

/// `/static/dir` → 301 `/static/dir/` (query kept), with the path in normal form, as nginx
/// redirects with `$uri`.
fn redirect_to_slash(path: &str, query: Option<&str>) -> Served {
    let mut location = path.to_owned();
    location.push('/');
    if let Some(q) = query {
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
