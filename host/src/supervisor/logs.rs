//! Children's stdout and stderr. gale reads both pipes and writes what it
//! reads to the child's log file (appending; reopened after SIGUSR1, so
//! logrotate can move the file away), or to gale's own stderr/stdout with
//! each line prefixed by the child's name.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

/// Bumped on SIGUSR1; every [`LogFile`] reopens its path before its next
/// write once it sees a new value.
#[derive(Debug, Clone, Default)]
pub(super) struct Reopen(Arc<AtomicU64>);

impl Reopen {
    /// Asks every log file to reopen.
    pub fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn generation(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A child's log file, shared by its stdout and stderr copiers.
#[derive(Debug)]
pub(super) struct LogFile {
    path: PathBuf,
    reopen: Reopen,
    /// The generation the file was opened at; `None` after a failed reopen.
    file: Mutex<(u64, Option<File>)>,
}

impl LogFile {
    /// Opens `path` for appending, creating its directory.
    pub fn open(path: &Path, reopen: Reopen) -> io::Result<Arc<Self>> {
        let generation = reopen.generation();
        let file = open_append(path)?;
        Ok(Arc::new(Self { path: path.to_path_buf(), reopen, file: Mutex::new((generation, Some(file))) }))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self, bytes: &[u8]) {
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.reopen.generation();
        if guard.0 != now {
            guard.0 = now;
            guard.1 = match open_append(&self.path) {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::error!(path = %self.path.display(), error = %e, "cannot reopen child log; its output is lost until the next SIGUSR1");
                    None
                }
            };
        }
        if let Some(f) = guard.1.as_mut()
            && let Err(e) = f.write_all(bytes)
        {
            tracing::error!(path = %self.path.display(), error = %e, "cannot write child log");
            guard.1 = None;
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new().create(true).append(true).open(path)
}

/// Where one child's output goes.
#[derive(Debug, Clone)]
pub(super) enum Sink {
    /// gale's stderr, lines prefixed.
    Stderr {
        prefix: String,
    },
    /// gale's stdout, lines prefixed.
    Stdout {
        prefix: String,
    },
    File(Arc<LogFile>),
}

/// Copies `pipe` to `sink` until the child closes it.
pub(super) fn copy(mut pipe: impl AsyncRead + Unpin + Send + 'static, sink: Sink) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut lines = Prefixer::default();
        loop {
            let n = match pipe.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            match &sink {
                Sink::File(f) => f.write(chunk),
                Sink::Stderr { prefix } => {
                    let _ = io::stderr().lock().write_all(&lines.apply(prefix, chunk));
                }
                Sink::Stdout { prefix } => {
                    let mut out = io::stdout().lock();
                    let _ = out.write_all(&lines.apply(prefix, chunk));
                    let _ = out.flush();
                }
            }
        }
    })
}

/// Puts a prefix at the start of every line of a stream read in chunks.
#[derive(Debug)]
struct Prefixer {
    at_line_start: bool,
}

impl Default for Prefixer {
    fn default() -> Self {
        Self { at_line_start: true }
    }
}

impl Prefixer {
    fn apply(&mut self, prefix: &str, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len() + prefix.len() * 2);
        for &b in chunk {
            if self.at_line_start {
                out.extend_from_slice(prefix.as_bytes());
                self.at_line_start = false;
            }
            out.push(b);
            if b == b'\n' {
                self.at_line_start = true;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_every_line_across_chunks() {
        let mut p = Prefixer::default();
        let mut out = p.apply("[a] ", b"one\ntw");
        out.extend(p.apply("[a] ", b"o\n"));
        out.extend(p.apply("[a] ", b"\nthree"));
        assert_eq!(String::from_utf8(out).expect("utf8"), "[a] one\n[a] two\n[a] \n[a] three");
    }

    #[test]
    fn a_log_file_reopens_after_a_bump() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("logs/app-0.log");
        let reopen = Reopen::default();
        let log = LogFile::open(&path, reopen.clone()).expect("open");
        log.write(b"before\n");
        let rotated = dir.path().join("logs/app-0.log.1");
        std::fs::rename(&path, &rotated).expect("rotate");
        log.write(b"still old\n");
        reopen.bump();
        log.write(b"after\n");
        assert_eq!(std::fs::read_to_string(&rotated).expect("read"), "before\nstill old\n");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "after\n");
    }
}
