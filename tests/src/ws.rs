//! A minimal WebSocket client (RFC 6455) over any byte stream: a plain `TcpStream` for `ws`,
//! a [`crate::tls::TlsStream`] for `wss`.
//!
//! Minimal on purpose, like [`crate::http`]: it shows exactly what came back to a handshake
//! (a refusal keeps its status, headers and body, and the connection for a next request), and
//! it sends frames as a browser does (masked, one frame per message), so what a test checks is
//! gale's tunnel, not a library's recovery. It sends `Origin` equal to `Host`, as a browser on
//! that page would: Tornado answers 403 when they differ, so a proxy that rewrote `Host`
//! shows up as a refused handshake.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use crate::http::READ_TIMEOUT;

/// The `Sec-WebSocket-Key` of RFC 6455's example, and the accept value it must produce.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A message, or a control frame, as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A close frame: its status code (if any) and reason.
    Close(Option<u16>, String),
    /// A ping's payload.
    Ping(Vec<u8>),
    /// A pong's payload.
    Pong(Vec<u8>),
}

/// The answer to a handshake that was not `101 Switching Protocols`.
#[derive(Debug)]
pub struct Refused<S> {
    /// The status code.
    pub status: u16,
    /// Header lines, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (framed by Content-Length; empty without one).
    pub body: Vec<u8>,
    /// The connection, for a next request on it.
    pub stream: BufReader<S>,
}

impl<S> Refused<S> {
    /// The first value of a header (names compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An open WebSocket.
pub struct WebSocket<S> {
    stream: BufReader<S>,
    mask_seed: u32,
}

impl<S> std::fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket").finish_non_exhaustive()
    }
}

/// Opens `ws://addr/path` with `Host: addr`.
#[track_caller]
pub fn connect(addr: SocketAddr, path: &str) -> WebSocket<TcpStream> {
    match try_connect(addr, path) {
        Ok(Ok(ws)) => ws,
        Ok(Err(refused)) => {
            panic!(
                "WebSocket handshake to {addr}{path} got {}: {:?}\n{}",
                refused.status,
                refused.headers,
                refused.text()
            )
        }
        Err(e) => panic!("WebSocket handshake to {addr}{path}: {e}"),
    }
}

/// Opens `ws://addr/path`: the socket, or the answer that refused it.
pub fn try_connect(addr: SocketAddr, path: &str) -> io::Result<Result<WebSocket<TcpStream>, Refused<TcpStream>>> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    stream.set_nodelay(true)?;
    handshake(stream, &addr.to_string(), path)
}

/// The client handshake on an open stream (`host` is the `Host` and `Origin` host).
pub fn handshake<S: Read + Write>(
    mut stream: S,
    host: &str,
    path: &str,
) -> io::Result<Result<WebSocket<S>, Refused<S>>> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://{host}\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    stream.flush()?;
    let mut stream = BufReader::new(stream);
    let (status, headers) = read_head(&mut stream)?;
    let header = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    if status != 101 {
        let length = header("content-length").and_then(|l| l.parse::<usize>().ok()).unwrap_or(0);
        let mut body = vec![0; length];
        stream.read_exact(&mut body)?;
        return Ok(Err(Refused { status, headers, body, stream }));
    }
    let accept = header("sec-websocket-accept");
    if accept.as_deref() != Some(ACCEPT) {
        return Err(invalid(format!("101 with Sec-WebSocket-Accept {accept:?}, expected {ACCEPT}")));
    }
    Ok(Ok(WebSocket { stream, mask_seed: 0x9e37_79b9 }))
}

fn read_head<R: BufRead>(reader: &mut R) -> io::Result<(u16, Vec<(String, String)>)> {
    let status_line = read_line(reader)?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/"))
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            return Ok((status, headers));
        }
        let (name, value) = line.split_once(':').ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
}

fn read_line<R: BufRead>(reader: &mut R) -> io::Result<String> {
    let mut line = Vec::new();
    if reader.by_ref().take(64 * 1024).read_until(b'\n', &mut line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed before a full response head"));
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| invalid("non-UTF-8 response head".into()))
}

impl<S: Read + Write> WebSocket<S> {
    /// Sends a text message.
    pub fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.send_frame(0x1, text.as_bytes())
    }

    /// Sends a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> io::Result<()> {
        self.send_frame(0x2, data)
    }

    /// Sends a close frame with `code` (the connection stays open to read the server's close).
    pub fn send_close(&mut self, code: u16) -> io::Result<()> {
        self.send_frame(0x8, &code.to_be_bytes())
    }

    /// Sends `text` and returns the next message; panics unless it is the same text.
    #[track_caller]
    pub fn echo(&mut self, text: &str) {
        self.send_text(text).unwrap_or_else(|e| panic!("send {text:?}: {e}"));
        match self.recv() {
            Ok(Message::Text(back)) => assert_eq!(back, text, "the echo differs"),
            other => panic!("sent {text:?}, got {other:?}"),
        }
    }

    /// Sends a text message and returns the next message (for `__whoami__`).
    #[track_caller]
    pub fn ask(&mut self, text: &str) -> String {
        self.send_text(text).unwrap_or_else(|e| panic!("send {text:?}: {e}"));
        match self.recv() {
            Ok(Message::Text(back)) => back,
            other => panic!("sent {text:?}, got {other:?}"),
        }
    }

    /// One frame, masked as a client must (a fresh mask per frame).
    fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        self.mask_seed = self.mask_seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let mask = self.mask_seed.to_be_bytes();
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= usize::from(u16::MAX) => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        let stream = self.stream.get_mut();
        stream.write_all(&frame)?;
        stream.flush()
    }

    /// The next frame. Messages are expected unfragmented (Tornado sends one frame each).
    pub fn recv(&mut self) -> io::Result<Message> {
        let mut head = [0u8; 2];
        self.stream.read_exact(&mut head)?;
        let opcode = head[0] & 0x0f;
        if head[0] & 0x80 == 0 {
            return Err(invalid("fragmented message (FIN not set)".into()));
        }
        let masked = head[1] & 0x80 != 0;
        let len = match head[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b)?;
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b)?;
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        let mut mask = [0u8; 4];
        if masked {
            self.stream.read_exact(&mut mask)?;
        }
        let len = usize::try_from(len).map_err(|_| invalid("frame too large".into()))?;
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload)?;
        if masked {
            payload.iter_mut().enumerate().for_each(|(i, b)| *b ^= mask[i % 4]);
        }
        Ok(match opcode {
            0x1 => Message::Text(String::from_utf8(payload).map_err(|_| invalid("non-UTF-8 text".into()))?),
            0x2 => Message::Binary(payload),
            0x8 => {
                let code = (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                Message::Close(code, String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into_owned())
            }
            0x9 => Message::Ping(payload),
            0xa => Message::Pong(payload),
            other => return Err(invalid(format!("unknown opcode {other:#x}"))),
        })
    }

    /// Whether the peer closed the byte stream (EOF or reset), skipping any frames still in
    /// flight; false when the read timeout passes first.
    pub fn at_eof(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => {
                    return matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::UnexpectedEof
                    );
                }
            }
        }
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        self.stream.get_ref()
    }
}

impl WebSocket<TcpStream> {
    /// Changes the read timeout (the hang detector) of a plain socket.
    pub fn set_read_timeout(&self, timeout: Duration) {
        self.stream.get_ref().set_read_timeout(Some(timeout)).expect("set_read_timeout");
    }

    /// Closes the TCP connection without a close frame (a client that vanished).
    pub fn abort(self) {
        let _ = self.stream.get_ref().shutdown(Shutdown::Both);
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}
