//! A minimal HTTP/1.1 client over `TcpStream`.
//!
//! Minimal on purpose: it sends exactly the bytes a test describes (a forged header, a missing
//! Host, Content-Length *and* Transfer-Encoding, ...), where a real client library would refuse
//! or repair them, and it shows which connection a request used, which keep-alive tests need.
//! It parses responses framed by Content-Length, chunked encoding or connection close.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use serde::de::DeserializeOwned;

/// How long a read may block before the client gives up: detects a hang, never a pass/fail.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// The largest response head the client accepts (a runaway head is a bug to report, not OOM).
const MAX_HEAD: usize = 1 << 20;

/// A request to send: built up with the methods below, encoded only when sent.
#[derive(Clone, Debug)]
pub struct Request {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
    body: Body,
    auto_host: bool,
    auto_framing: bool,
}

#[derive(Clone, Debug)]
enum Body {
    Fixed(Vec<u8>),
    Chunked(Vec<Vec<u8>>),
}

impl Request {
    /// `METHOD target HTTP/1.1`; Host (the address the request is sent to) and the body's
    /// framing header are added when sent unless the test set them or turned them off.
    pub fn new(method: &str, target: &str) -> Self {
        Self {
            method: method.to_owned(),
            target: target.to_owned(),
            version: "HTTP/1.1".to_owned(),
            headers: Vec::new(),
            body: Body::Fixed(Vec::new()),
            auto_host: true,
            auto_framing: true,
        }
    }

    /// A GET without a body.
    pub fn get(target: &str) -> Self {
        Self::new("GET", target)
    }

    /// A POST with a Content-Length body.
    pub fn post(target: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::new("POST", target).body(body)
    }

    /// Adds a header line as given (duplicates allowed: framing tests need them).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets a Content-Length body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Fixed(body.into());
        self
    }

    /// Sets a chunked body sent as these chunks (with `Transfer-Encoding: chunked`).
    pub fn chunked(mut self, chunks: Vec<Vec<u8>>) -> Self {
        self.body = Body::Chunked(chunks);
        self
    }

    /// Sends no Host header at all (unless one was added with [`Request::header`]).
    pub fn without_host(mut self) -> Self {
        self.auto_host = false;
        self
    }

    /// Adds no Content-Length / Transfer-Encoding: the test writes its own (or none).
    pub fn without_framing(mut self) -> Self {
        self.auto_framing = false;
        self
    }

    /// Sets the protocol version of the request line (e.g. `HTTP/1.0`).
    pub fn version(mut self, version: &str) -> Self {
        self.version = version.to_owned();
        self
    }

    /// The method, so the reader knows a HEAD response has no body.
    pub fn method(&self) -> &str {
        &self.method
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// The exact bytes put on the wire; `host` is the default Host value.
    pub fn encode(&self, host: &str) -> Vec<u8> {
        let mut out = format!("{} {} {}\r\n", self.method, self.target, self.version);
        if self.auto_host && !self.has_header("host") {
            out.push_str(&format!("Host: {host}\r\n"));
        }
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        let framed = self.has_header("content-length") || self.has_header("transfer-encoding");
        if self.auto_framing && !framed {
            match &self.body {
                Body::Fixed(body) if !body.is_empty() || expects_body(&self.method) => {
                    out.push_str(&format!("Content-Length: {}\r\n", body.len()));
                }
                Body::Fixed(_) => {}
                Body::Chunked(_) => out.push_str("Transfer-Encoding: chunked\r\n"),
            }
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        match &self.body {
            Body::Fixed(body) => bytes.extend_from_slice(body),
            Body::Chunked(chunks) => {
                for chunk in chunks.iter().filter(|c| !c.is_empty()) {
                    bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    bytes.extend_from_slice(chunk);
                    bytes.extend_from_slice(b"\r\n");
                }
                bytes.extend_from_slice(b"0\r\n\r\n");
            }
        }
        bytes
    }
}

fn expects_body(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH")
}

/// A parsed response.
#[derive(Clone)]
pub struct Response {
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    /// The status code.
    pub status: u16,
    /// The reason phrase, as sent.
    pub reason: String,
    /// Header lines in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The decoded body.
    pub body: Vec<u8>,
    /// Whether the body came chunked.
    pub chunked: bool,
}

impl Response {
    /// The first value of a header (names compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the whole response if it is not.
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not the expected JSON ({e}):\n{self}"))
    }

    /// Asserts the status, showing the whole response when it differs.
    #[track_caller]
    pub fn expect_status(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "unexpected status in response:\n{self}");
        self
    }

    /// Whether the server said it closes the connection after this response.
    pub fn closes(&self) -> bool {
        self.header_all("connection").iter().any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} {} {}", self.version, self.status, self.reason)?;
        for (name, value) in &self.headers {
            writeln!(f, "{name}: {value}")?;
        }
        let text = self.text();
        let preview: String = text.chars().take(600).collect();
        write!(f, "\n{preview}")?;
        if preview.len() < text.len() {
            write!(f, "... ({} bytes in all)", self.body.len())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One client connection: several requests on it test keep-alive.
pub struct Conn {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
}

impl Conn {
    /// Connects, panicking with the address on failure.
    #[track_caller]
    pub fn open(addr: SocketAddr) -> Self {
        Self::try_open(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
    }

    /// Connects.
    pub fn try_open(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_write_timeout(Some(READ_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Self { addr, reader: BufReader::new(stream) })
    }

    /// This end's address (the port the server sees as the client's).
    pub fn local_addr(&self) -> SocketAddr {
        self.reader.get_ref().local_addr().expect("local_addr")
    }

    /// Changes the read timeout (the hang detector).
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.reader.get_ref().set_read_timeout(Some(timeout)).expect("set_read_timeout");
    }

    /// Sends a request and reads its response; panics on an I/O error.
    #[track_caller]
    pub fn send(&mut self, request: &Request) -> Response {
        let addr = self.addr;
        self.try_send(request).unwrap_or_else(|e| panic!("{} {} to {addr}: {e}", request.method, request.target))
    }

    /// Sends a request and reads its response.
    pub fn try_send(&mut self, request: &Request) -> io::Result<Response> {
        self.write_raw(&request.encode(&self.addr.to_string()))?;
        self.read_response(request.method() == "HEAD")
    }

    /// Writes bytes as they are.
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let stream = self.reader.get_mut();
        stream.write_all(bytes)?;
        stream.flush()
    }

    /// Closes the sending half (the server then reads EOF).
    pub fn shutdown_write(&mut self) {
        let _ = self.reader.get_ref().shutdown(Shutdown::Write);
    }

    /// Reads one response (skipping 1xx interim responses).
    pub fn read_response(&mut self, head_request: bool) -> io::Result<Response> {
        loop {
            let response = read_one(&mut self.reader, head_request)?;
            if !(100..200).contains(&response.status) || response.status == 101 {
                return Ok(response);
            }
        }
    }

    /// Whether the server closed the connection: reads until EOF (true), data (false: the
    /// bytes are a protocol error the caller asked about) or the timeout (false).
    pub fn closed_by_peer(&mut self, timeout: Duration) -> bool {
        self.set_read_timeout(timeout);
        let mut buf = [0u8; 1024];
        match self.reader.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted),
        }
    }
}

/// Sends one request on a new connection.
#[track_caller]
pub fn send(addr: SocketAddr, request: &Request) -> Response {
    Conn::open(addr).send(request)
}

/// GET on a new connection.
#[track_caller]
pub fn get(addr: SocketAddr, target: &str) -> Response {
    send(addr, &Request::get(target))
}

/// Sends raw bytes on a new connection and reads the first response. A write error is
/// ignored (the server may answer and close before reading everything: that is what some
/// framing tests check), then the response is read.
#[track_caller]
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> Response {
    let mut conn = Conn::open(addr);
    let _ = conn.write_raw(bytes);
    conn.read_response(false).unwrap_or_else(|e| {
        panic!("no response from {addr} to:\n{}\n({e})", String::from_utf8_lossy(&bytes[..bytes.len().min(600)]))
    })
}

fn read_one(reader: &mut BufReader<TcpStream>, head_request: bool) -> io::Result<Response> {
    let status_line = read_line(reader, true)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default().to_owned();
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| version.starts_with("HTTP/"))
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let reason = parts.next().unwrap_or_default().to_owned();

    let mut headers = Vec::new();
    let mut head_len = status_line.len();
    loop {
        let line = read_line(reader, false)?;
        if line.is_empty() {
            break;
        }
        head_len += line.len();
        if head_len > MAX_HEAD {
            return Err(invalid("response head too large".into()));
        }
        let (name, value) = line.split_once(':').ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    let mut response = Response { version, status, reason, headers, body: Vec::new(), chunked: false };

    let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    if no_body {
        return Ok(response);
    }
    let chunked = response.header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    if chunked {
        response.chunked = true;
        response.body = read_chunked(reader)?;
    } else if let Some(length) = response.header("content-length") {
        let length: usize = length.parse().map_err(|_| invalid(format!("bad Content-Length {length:?}")))?;
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        response.body = body;
    } else {
        reader.read_to_end(&mut response.body)?;
    }
    Ok(response)
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader, false)?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| invalid(format!("bad chunk size line {line:?}")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_line(reader, false)?.is_empty() {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        if !read_line(reader, false)?.is_empty() {
            return Err(invalid("chunk not followed by CRLF".into()));
        }
    }
}

/// Reads a CRLF (or LF) terminated line; EOF before any byte of the first line means the
/// server closed without answering.
fn read_line(reader: &mut BufReader<TcpStream>, first: bool) -> io::Result<String> {
    let mut line = Vec::new();
    let n = reader.by_ref().take(MAX_HEAD as u64).read_until(b'\n', &mut line)?;
    if n == 0 {
        let what =
            if first { "connection closed before a response" } else { "connection closed in the middle of a response" };
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, what));
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| invalid("non-UTF-8 response line".into()))
}

/// Whether `e` is the client's own read (or write) timeout: the server neither answered nor
/// closed, which a test must never take for a refusal.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// Asserts that the server closed the connection (EOF or reset) instead of answering; a
/// response or a read timeout (a hang) fails, naming `what`.
#[track_caller]
pub fn assert_closed(result: &io::Result<Response>, what: &str) {
    match result {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
            ) => {}
        Err(e) if is_timeout(e) => panic!("{what}: no answer and no close within the read timeout (a hang): {e}"),
        Err(e) => panic!("{what}: expected the connection closed, got the error {e:?}"),
        Ok(response) => panic!("{what}: expected the connection closed, got a response:\n{response}"),
    }
}

/// Asserts that no complete response came back and that the server did not just go silent:
/// the connection was closed, or what came was not a valid HTTP response. A read timeout fails.
#[track_caller]
pub fn assert_no_response(result: &io::Result<Response>, what: &str) {
    match result {
        Err(e) if is_timeout(e) => panic!("{what}: no answer and no close within the read timeout (a hang): {e}"),
        Err(_) => {}
        Ok(response) => panic!("{what}: expected no complete response, got:\n{response}"),
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_adds_host_and_content_length() {
        let bytes = Request::post("/echo", "hi").encode("127.0.0.1:1");
        assert_eq!(
            String::from_utf8(bytes).expect("utf-8"),
            "POST /echo HTTP/1.1\r\nHost: 127.0.0.1:1\r\nContent-Length: 2\r\n\r\nhi"
        );
    }

    #[test]
    fn encode_keeps_explicit_framing_and_can_drop_host() {
        let bytes = Request::get("/").without_host().header("Content-Length", "0").encode("x");
        assert_eq!(String::from_utf8(bytes).expect("utf-8"), "GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    }

    #[test]
    fn encode_chunked() {
        let bytes = Request::new("PUT", "/echo").chunked(vec![b"abc".to_vec(), b"de".to_vec()]).encode("h");
        assert_eq!(
            String::from_utf8(bytes).expect("utf-8"),
            "PUT /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
             3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        );
    }
}
