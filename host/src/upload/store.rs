//! The private file store: where file parts are written while they stream in.
//!
//! Safer than nginx-upload-module (D10, D11, D12):
//! * names are 128 random bits in hex (32 characters), not a guessable counter;
//! * files are created with `openat(store, name, O_CREAT|O_EXCL|O_NOFOLLOW)` relative to a
//!   directory descriptor opened once, so neither the final component nor a swapped parent path
//!   can redirect the write; the mode is exactly the configured one (default 0600) whatever the
//!   umask, set with `fchmod` on the new descriptor;
//! * an existing store directory is never chowned or chmodded: a missing store (unless `create`)
//!   or a group/world-writable one, or one owned by another user, fails config load;
//! * [`Store::sweep`] removes orphans older than a TTL, at startup and periodically.
//!
//! Writing happens on the upload writer threads (`writers.rs`, at a lower CPU priority) in
//! batches, with md5 (and sha256 when asked) computed beside it (on a second writer thread when
//! there is a second CPU, see [`FileSink`]), so neither hashing nor disk I/O runs on the async
//! workers and at most two batches are in memory per upload.

use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use gale_md5::Md5;
use rustix::fs::{AtFlags, Mode, OFlags};
use sha2::{Digest as _, Sha256};
use tokio::task::JoinHandle;

use super::writers;

/// How the store is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Mode of created files (rw bits only).
    pub mode: u32,
    /// Create the directory (0700) if it is missing.
    pub create: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { mode: 0o600, create: false }
    }
}

/// Why a store directory was refused at config load.
#[derive(Debug, thiserror::Error)]
pub enum StoreConfigError {
    /// Relative paths would make `.path` fields depend on gale's working directory.
    #[error("{0}: the store must be an absolute path")]
    NotAbsolute(PathBuf),
    /// Missing and `create` not set.
    #[error("{0}: the store directory does not exist (create it with mode 0700, or set create = true)")]
    Missing(PathBuf),
    /// Not a directory.
    #[error("{0}: the store is not a directory")]
    NotADirectory(PathBuf),
    /// Group- or world-writable: other users could replace uploads (the reference configuration's `/tmp` is).
    #[error("{path}: the store is group- or world-writable (mode {mode:o}); use a private directory (0700 or 0750)")]
    Unsafe {
        /// The store.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Owned by a user other than gale's (or root).
    #[error("{path}: the store is owned by uid {owner}, not by gale's uid {euid}")]
    WrongOwner {
        /// The store.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// gale's effective uid.
        euid: u32,
    },
    /// The file mode has bits other than read/write.
    #[error("access mode {0:o} has bits other than read/write")]
    BadMode(u32),
    /// Anything else: the probe file could not be created, permission denied, ...
    #[error("{path}: {source}")]
    Io {
        /// The store.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
}

/// An I/O failure while storing an upload: 507 when the disk or quota is full, 503 otherwise
/// (D5; nginx-upload-module silently dropped the file and answered 200).
#[derive(Debug, thiserror::Error)]
#[error("upload store: {op}: {source}")]
pub struct StoreError {
    /// What was being done.
    pub op: &'static str,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

impl StoreError {
    fn new(op: &'static str, source: io::Error) -> Self {
        StoreError { op, source }
    }

    /// ENOSPC or EDQUOT: the client should hear 507 Insufficient Storage.
    pub fn is_no_space(&self) -> bool {
        matches!(self.source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
    }
}

/// An opened, checked store directory. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

#[derive(Debug)]
struct StoreInner {
    /// Canonical absolute path (what `.path` fields start with).
    path: PathBuf,
    /// The directory, opened once; every create/unlink is relative to it.
    dir: File,
    mode: u32,
}

impl Store {
    /// Opens and checks the store (see the module doc); creates it only if `options.create`.
    pub fn open(path: &Path, options: &StoreOptions) -> Result<Store, StoreConfigError> {
        if options.mode & !0o666 != 0 {
            return Err(StoreConfigError::BadMode(options.mode));
        }
        if !path.is_absolute() {
            return Err(StoreConfigError::NotAbsolute(path.to_owned()));
        }
        let io_err = |source| StoreConfigError::Io { path: path.to_owned(), source };
        match std::fs::symlink_metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !options.create {
                    return Err(StoreConfigError::Missing(path.to_owned()));
                }
                std::fs::DirBuilder::new().mode(0o700).create(path).map_err(io_err)?;
            }
            Err(e) => return Err(io_err(e)),
        }
        let canonical = std::fs::canonicalize(path).map_err(io_err)?;
        let fd = rustix::fs::open(&canonical, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| match e {
                rustix::io::Errno::NOTDIR => StoreConfigError::NotADirectory(path.to_owned()),
                e => io_err(e.into()),
            })?;
        let dir = File::from(fd);
        let meta = dir.metadata().map_err(io_err)?;
        if meta.mode() & 0o022 != 0 {
            return Err(StoreConfigError::Unsafe { path: canonical, mode: meta.mode() & 0o7777 });
        }
        let euid = rustix::process::geteuid().as_raw();
        if meta.uid() != euid && meta.uid() != 0 {
            return Err(StoreConfigError::WrongOwner { path: canonical, owner: meta.uid(), euid });
        }
        let store = Store { inner: Arc::new(StoreInner { path: canonical, dir, mode: options.mode }) };
        // Probe: fail at load, not on the first upload, if the store is not writable.
        let (name, file) = store.create_file().map_err(|e| io_err(e.source))?;
        drop(file);
        store.remove(&name).map_err(io_err)?;
        Ok(store)
    }

    /// The canonical absolute directory path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The mode given to stored files.
    pub fn mode(&self) -> u32 {
        self.inner.mode
    }

    /// Absolute path of a stored file (the `.path` field's value).
    pub fn file_path(&self, name: &str) -> PathBuf {
        self.inner.path.join(name)
    }

    /// Creates a new file with a fresh random name (retrying on the 2^-128 collision).
    pub(crate) fn create_file(&self) -> Result<(String, File), StoreError> {
        let mut last = None;
        for _ in 0..4 {
            let name = random_name().map_err(|e| StoreError::new("random name", e))?;
            match self.open_new(&name) {
                Ok(file) => return Ok((name, file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(StoreError::new("create", e)),
            }
        }
        Err(StoreError::new("create", last.unwrap_or_else(|| io::Error::other("name collision"))))
    }

    /// [`Self::create_file`] on the upload writer threads, so that the event loop never waits on
    /// the store directory's lock (see `writers.rs`). A file whose creator went away before
    /// claiming it is removed.
    pub(crate) async fn create_file_off_loop(&self) -> Result<NewFile, StoreError> {
        let store = self.clone();
        writers::start(move || store.create_file().map(|(name, file)| NewFile { store, name, file: Some(file) }))
            .await
            .map_err(|_| StoreError::new("create", io::Error::other("the upload writer thread failed")))?
    }

    /// `openat(O_CREAT|O_EXCL|O_NOFOLLOW)` then `fchmod` to the exact mode.
    pub(crate) fn open_new(&self, name: &str) -> io::Result<File> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(self.inner.mode);
        let fd = rustix::fs::openat(&self.inner.dir, name, flags, mode)?;
        // Our own new descriptor: this never touches anything that existed before.
        rustix::fs::fchmod(&fd, mode)?;
        Ok(File::from(fd))
    }

    /// Unlinks a stored file; a file already gone (the backend moved it) is not an error.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        match rustix::fs::unlinkat(&self.inner.dir, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes regular files named like ours whose mtime is older than `ttl` (D12). Blocking:
    /// run it on the blocking pool (see [`spawn_sweeper`]).
    pub fn sweep(&self, ttl: Duration) -> io::Result<SweepReport> {
        let now = SystemTime::now();
        let mut report = SweepReport::default();
        for entry in std::fs::read_dir(&self.inner.path)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !is_store_name(&name) {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                continue; // removed meanwhile
            };
            let old = meta.modified().ok().and_then(|m| now.duration_since(m).ok()).is_some_and(|age| age > ttl);
            if !meta.file_type().is_file() || !old {
                continue;
            }
            match self.remove(&name) {
                Ok(()) => report.removed += 1,
                Err(e) => {
                    tracing::warn!(store = %self.inner.path.display(), %name, error = %e, "sweeper could not remove an orphan");
                    report.failed += 1;
                }
            }
        }
        Ok(report)
    }
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Orphans removed.
    pub removed: usize,
    /// Orphans that could not be removed.
    pub failed: usize,
}

/// How often the sweeper runs for a TTL: a quarter of it, between 1 second and 10 minutes.
pub fn sweep_interval(ttl: Duration) -> Duration {
    (ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(600))
}

/// Sweeps now and then every [`sweep_interval`] until the task is aborted. The caller keeps
/// the handle and aborts it when the location goes away (reload, shutdown).
pub fn spawn_sweeper(store: Store, ttl: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let s = store.clone();
            match tokio::task::spawn_blocking(move || s.sweep(ttl)).await {
                Ok(Ok(r)) if r.removed > 0 || r.failed > 0 => {
                    tracing::info!(store = %store.path().display(), removed = r.removed, failed = r.failed, "swept upload orphans");
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(store = %store.path().display(), error = %e, "upload sweeper failed")
                }
                Err(e) => tracing::warn!(error = %e, "upload sweeper task failed"),
            }
            tokio::time::sleep(sweep_interval(ttl)).await;
        }
    })
}

/// 32 lower-case hex digits from the OS CSPRNG.
fn random_name() -> io::Result<String> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(hex(&raw))
}

/// Whether `name` has the shape of a store file name (the sweeper touches nothing else).
pub fn is_store_name(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Lower-case hex, as nginx-upload-module's `$upload_file_md5`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// A just-created store file, removed (on the writer threads) unless claimed.
pub(crate) struct NewFile {
    store: Store,
    name: String,
    file: Option<File>,
}

impl NewFile {
    /// The store name and the open file, now the caller's to clean up.
    pub(crate) fn claim(mut self) -> Result<(String, File), StoreError> {
        let file =
            self.file.take().ok_or_else(|| StoreError::new("create", io::Error::other("file already claimed")))?;
        Ok((std::mem::take(&mut self.name), file))
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let (store, name) = (self.store.clone(), std::mem::take(&mut self.name));
            writers::spawn(move || {
                let _ = store.remove(&name);
            });
        }
    }
}

/// Size and digests of a completed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    /// Bytes written.
    pub size: u64,
    /// Lower-case hex md5.
    pub md5: String,
    /// Lower-case hex sha256, when asked for.
    pub sha256: Option<String>,
}

/// Batch size handed to a writer thread: large enough to amortise the hop, small enough to keep
/// memory flat (at most two batches per upload are alive). Measured on a 1 GiB upload with gale on
/// one core (2026-11-30): 2 MiB batches cost 3-6% less CPU than 1 MiB when the machine was quiet,
/// but when it is slow the first upload after start grows the process by 15.9-21.8 MB with 2 MiB,
/// up to 15.4 MB with 1 MiB, 6.7-8.4 MB with 512 KiB and 6.2-6.5 MB with 256 KiB, against the
/// 16 MiB that issue 5 allows; 512 KiB cost 0-5.6% more CPU than 1 MiB in two A/Bs, which the
/// AVX-512 md5 (10-14% less) pays for. Why the batches decide it: hyper's ~400 KB read buffers
/// are "large" objects for mimalloc, eight to a 4 MiB page, and buffers freed on the writer
/// threads come back to the event loop's heap late, so more bytes in flight touch more pages.
pub(crate) const BATCH_BYTES: usize = 512 * 1024;

/// The digests of one file's data so far.
struct Hasher {
    md5: Md5,
    sha256: Option<Sha256>,
}

impl Hasher {
    fn update(&mut self, chunks: &[Bytes]) {
        for chunk in chunks {
            self.md5.update(chunk);
            if let Some(sha) = &mut self.sha256 {
                sha.update(chunk);
            }
        }
    }
}

/// The file being written and its size so far.
struct Output {
    file: File,
    size: u64,
}

impl Output {
    fn write(&mut self, chunks: &[Bytes]) -> io::Result<()> {
        write_all_vectored(&mut self.file, chunks)?;
        self.size += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
        Ok(())
    }
}

/// Bytes hashed before they are written when one thread does both: small enough to be still in
/// cache when `writev` copies them into the page cache, large enough that a write is one syscall
/// per many client chunks (the parser hands out a chunk's held-back tail, tens of bytes, as a
/// chunk of its own).
const WRITE_GROUP_BYTES: usize = 128 * 1024;

/// Hashes and writes a batch on one thread, in cache-sized groups.
fn hash_and_write(hasher: &mut Hasher, output: &mut Output, batch: &[Bytes]) -> io::Result<()> {
    let mut rest = batch;
    while !rest.is_empty() {
        let mut end = 0;
        let mut group_len = 0;
        while end < rest.len() && group_len < WRITE_GROUP_BYTES {
            group_len += rest[end].len();
            end += 1;
        }
        let (group, after) = rest.split_at(end);
        hasher.update(group);
        output.write(group)?;
        rest = after;
    }
    Ok(())
}

/// `write_all` for several buffers: `writev` until every byte is written.
fn write_all_vectored(file: &mut File, chunks: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
    let mut slices = &mut slices[..];
    IoSlice::advance_slices(&mut slices, 0); // skips empty chunks
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

type Receiver<T> = tokio::sync::oneshot::Receiver<T>;

/// The state of a file's hashing and writing between batches.
enum Work {
    /// Nothing in flight.
    Idle(Box<Hasher>, Box<Output>),
    /// One batch being hashed and written by one writer thread.
    Together(Receiver<io::Result<(Box<Hasher>, Box<Output>)>>),
    /// One batch being hashed by one writer thread and written by another.
    Apart(Receiver<Box<Hasher>>, Receiver<io::Result<Box<Output>>>),
    /// A writer thread failed; the sink is unusable.
    Lost,
}

/// Streams one file's data to disk, hashing it on the way; one batch is in flight while the next
/// fills. With more than one CPU the batch is hashed and written on two writer threads at once:
/// md5 alone is about half of an upload's CPU time, the page-cache copy and the socket receive
/// most of the rest, so the three then run side by side and an upload streams at close to md5's
/// speed instead of the sum of the three.
pub(crate) struct FileSink {
    work: Work,
    /// Hash and write on two threads ([`writers::parallel`]).
    apart: bool,
    batch: Vec<Bytes>,
    batch_len: usize,
}

impl FileSink {
    /// Wraps a freshly created file.
    pub(crate) fn new(file: File, sha256: bool) -> Self {
        Self::with_threads(file, sha256, writers::parallel())
    }

    /// [`Self::new`], hashing and writing on two threads (`apart`) or one.
    pub(crate) fn with_threads(file: File, sha256: bool, apart: bool) -> Self {
        let hasher = Box::new(Hasher { md5: Md5::new(), sha256: sha256.then(Sha256::new) });
        let work = Work::Idle(hasher, Box::new(Output { file, size: 0 }));
        FileSink { work, apart, batch: Vec::new(), batch_len: 0 }
    }

    /// Queues data; hands a full batch to the writer threads.
    pub(crate) async fn write(&mut self, data: Bytes) -> Result<(), StoreError> {
        self.batch_len += data.len();
        self.batch.push(data);
        if self.batch_len >= BATCH_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Waits for the batch in flight, if any.
    async fn settle(&mut self) -> Result<(Box<Hasher>, Box<Output>), StoreError> {
        let lost = || StoreError::new("write", io::Error::other("the upload writer thread failed"));
        match std::mem::replace(&mut self.work, Work::Lost) {
            Work::Idle(hasher, output) => Ok((hasher, output)),
            Work::Together(done) => done.await.map_err(|_| lost())?.map_err(|e| StoreError::new("write", e)),
            Work::Apart(hashed, written) => {
                let output = written.await.map_err(|_| lost())?.map_err(|e| StoreError::new("write", e))?;
                Ok((hashed.await.map_err(|_| lost())?, output))
            }
            Work::Lost => Err(lost()),
        }
    }

    async fn flush(&mut self) -> Result<(), StoreError> {
        let (mut hasher, mut output) = self.settle().await?;
        let batch = std::mem::take(&mut self.batch);
        self.batch_len = 0;
        self.work = if self.apart {
            let for_hash = batch.clone(); // reference counts, not bytes
            let hashed = writers::start(move || {
                hasher.update(&for_hash);
                hasher
            });
            Work::Apart(hashed, writers::start(move || output.write(&batch).map(|()| output)))
        } else {
            Work::Together(writers::start(move || {
                hash_and_write(&mut hasher, &mut output, &batch)?;
                Ok((hasher, output))
            }))
        };
        Ok(())
    }

    /// Writes what is left and returns the size and digests.
    pub(crate) async fn finish(mut self) -> Result<Digests, StoreError> {
        if !self.batch.is_empty() {
            self.flush().await?;
        }
        let (hasher, output) = self.settle().await?;
        let Hasher { md5, sha256 } = *hasher;
        Ok(Digests { size: output.size, md5: hex(&md5.finalize()), sha256: sha256.map(|s| hex(&s.finalize())) })
    }
}
