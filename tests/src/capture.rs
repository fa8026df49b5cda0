//! A capture backend: a tiny HTTP/1.1 server on an OS-assigned loopback port that records the
//! exact bytes of every request it receives and answers a status the test chooses.
//!
//! The upload tests need the forwarded form byte for byte, which a Tornado handler cannot give
//! (Tornado parses it). When a request carries a multipart form, the backend also takes a
//! snapshot of every stored file the form points at (`<field>.path`) *before* it answers: after
//! a 200 gale deletes them, so the snapshot is the only way to check their bytes and mode.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use md5::Digest as _;

use crate::multipart;

/// Files up to this size are kept whole in a snapshot; larger ones only by md5 and size.
const SNAPSHOT_CONTENTS_MAX: u64 = 1 << 20;

/// One request as the backend received it.
#[derive(Clone, Debug)]
pub struct Captured {
    /// The request head exactly as received, request line to the blank line included.
    pub head: Vec<u8>,
    /// The request line, without CRLF.
    pub request_line: String,
    /// Header lines in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked if it came chunked).
    pub body: Vec<u8>,
    /// Whether the body came with `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// The stored files the form's `.path` fields name, as they were when the request arrived.
    pub files: Vec<Snapshot>,
}

/// A stored file as the backend saw it while handling the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The path from the `.path` field.
    pub path: PathBuf,
    /// Whether it existed (a regular file, not a link).
    pub exists: bool,
    /// Its permission bits.
    pub mode: u32,
    /// Its size.
    pub size: u64,
    /// Its md5, lower-case hex.
    pub md5: String,
    /// Its bytes when at most 1 MiB.
    pub contents: Option<Vec<u8>>,
}

impl Captured {
    /// The first value of a header (names compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The request target from the request line.
    pub fn target(&self) -> &str {
        self.request_line.split(' ').nth(1).unwrap_or_default()
    }

    /// The forwarded form's fields (panics, with the body, if it is not in the forwarded
    /// grammar with the Content-Type's boundary).
    #[track_caller]
    pub fn form(&self) -> Vec<multipart::Field> {
        let ct = self.header("content-type").unwrap_or_else(|| panic!("no Content-Type: {}", self.request_line));
        let boundary = multipart::boundary_of(ct).unwrap_or_else(|| panic!("no boundary in {ct:?}"));
        multipart::parse_forwarded(&self.body, &boundary).unwrap_or_else(|e| {
            panic!("forwarded body is not a forwarded form ({e}):\n{}", multipart::preview(&self.body))
        })
    }
}

/// What to answer a request with.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// How long to wait before answering.
    pub delay: Duration,
}

type Responder = dyn Fn(&Captured) -> Reply + Send + Sync;

struct Shared {
    requests: Mutex<Vec<Captured>>,
    stop: AtomicBool,
    respond: Box<Responder>,
}

/// A running capture backend; stopped when dropped.
pub struct Capture {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Capture {
    /// A backend that answers every request with `status` at once.
    pub fn start(status: u16) -> Capture {
        Self::with(move |_| Reply { status, delay: Duration::ZERO })
    }

    /// A backend that answers what `respond` says about each request.
    pub fn with(respond: impl Fn(&Captured) -> Reply + Send + Sync + 'static) -> Capture {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind capture backend");
        let addr = listener.local_addr().expect("local_addr");
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            respond: Box::new(respond),
        });
        let accept_shared = shared.clone();
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let shared = accept_shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &shared);
                });
            }
        });
        Capture { addr, shared, accept: Some(accept) }
    }

    /// The address to put in gale's upstream pool.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<Captured> {
        self.shared.requests.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many requests it received.
    pub fn count(&self) -> usize {
        self.shared.requests.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The only request received; panics if there were none or several.
    #[track_caller]
    pub fn only(&self) -> Captured {
        let requests = self.requests();
        assert_eq!(
            requests.len(),
            1,
            "expected exactly one request at the backend, got {:?}",
            requests.iter().map(|r| &r.request_line).collect::<Vec<_>>()
        );
        requests.into_iter().next().expect("one request")
    }

    /// Forgets the requests received so far.
    pub fn clear(&self) {
        self.shared.requests.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Waits (up to `timeout`, a hang detector) until it has received `n` requests.
    #[track_caller]
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Captured> {
        let deadline = Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if requests.len() >= n {
                return requests;
            }
            assert!(Instant::now() < deadline, "the capture backend got {} of {n} requests", requests.len());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Serves one connection: requests in a row (gale keeps upstream connections alive).
fn serve(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let Some(captured) = read_request(&mut reader)? else { return Ok(()) };
        let reply = (shared.respond)(&captured);
        shared.requests.lock().unwrap_or_else(|e| e.into_inner()).push(captured);
        std::thread::sleep(reply.delay);
        let body = b"captured\n";
        let head = format!(
            "HTTP/1.1 {} Captured\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            reply.status,
            body.len()
        );
        writer.write_all(head.as_bytes())?;
        writer.write_all(body)?;
        writer.flush()?;
    }
}

/// Reads one request; `None` on a clean EOF before it.
fn read_request(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Captured>> {
    let mut head = Vec::new();
    loop {
        let start = head.len();
        let n = reader.read_until(b'\n', &mut head)?;
        if n == 0 {
            return if head.is_empty() { Ok(None) } else { Err(io::ErrorKind::UnexpectedEof.into()) };
        }
        if &head[start..] == b"\r\n" || &head[start..] == b"\n" {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.lines();
    let request_line = lines.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':').map(|(n, v)| (n.to_owned(), v.trim().to_owned()))).collect();
    let header = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    let chunked = header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        read_chunked(reader)?
    } else {
        let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        body
    };
    let mut captured = Captured { head, request_line, headers, body, chunked, files: Vec::new() };
    captured.files = snapshots(&captured);
    Ok(Some(captured))
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or_default(), 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad chunk line {line:?}")))?;
        if size == 0 {
            loop {
                let mut trailer = String::new();
                if reader.read_line(&mut trailer)? == 0 || trailer.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = String::new();
        reader.read_line(&mut crlf)?;
    }
}

/// Snapshots of the files named by `.path` fields, if the body is a forwarded form.
fn snapshots(captured: &Captured) -> Vec<Snapshot> {
    let Some(boundary) = captured.header("content-type").and_then(multipart::boundary_of) else {
        return Vec::new();
    };
    let Ok(fields) = multipart::parse_forwarded(&captured.body, &boundary) else {
        return Vec::new();
    };
    fields
        .iter()
        .filter(|(name, _)| name.ends_with(b".path"))
        .map(|(_, value)| snapshot(PathBuf::from(String::from_utf8_lossy(value).into_owned())))
        .collect()
}

fn snapshot(path: PathBuf) -> Snapshot {
    let missing = |path| Snapshot { path, exists: false, mode: 0, size: 0, md5: String::new(), contents: None };
    let Ok(meta) = std::fs::symlink_metadata(&path) else { return missing(path) };
    if !meta.file_type().is_file() {
        return missing(path);
    }
    let Ok(mut f) = std::fs::File::open(&path) else { return missing(path) };
    let mut hasher = md5::Md5::new();
    let mut contents = Vec::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                size += n as u64;
                if size <= SNAPSHOT_CONTENTS_MAX {
                    contents.extend_from_slice(&buf[..n]);
                }
            }
            Err(_) => return missing(path),
        }
    }
    Snapshot {
        exists: true,
        mode: meta.permissions().mode() & 0o7777,
        size,
        md5: multipart::hex(&hasher.finalize()),
        contents: (size <= SNAPSHOT_CONTENTS_MAX).then_some(contents),
        path,
    }
}
