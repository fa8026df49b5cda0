//! Silent connections, slowloris and connection floods: the connection limit reclaims idle
//! connections; a connection that never sends a byte lives `client_header_timeout`; every answer
//! gale writes before a request reaches the pipeline (hyper's 400 and 431, the tap's 408 and 414)
//! is in the access log and `/metrics`; header count and URI length limits answer as nginx does.
//!
//! nginx 1.22's verdicts, for reference: with `worker_connections` exhausted it closes idle
//! keep-alive and not-yet-started connections ("N worker_connections are not enough, reusing
//! connections") and serves the newcomer; a connection with no byte is closed silently after
//! `client_header_timeout`; a request line longer than `large_client_header_buffers` is 414; all
//! of its 400, 408, 414 and 431 answers appear in the access log.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use gale_tests::admin::{Metrics, admin_addr, metrics};
use gale_tests::certs::{TestCa, tls_table};
use gale_tests::config::Raw;
use gale_tests::curl::curl;
use gale_tests::tls::{self, ClientOptions};
use gale_tests::{ConfigBuilder, Conn, Gale, Request, SIGTERM, Tornado, Whoami, wait_until};

/// The hang guard of every wait here: generous, never a verdict on speed.
const GUARD: Duration = Duration::from_secs(20);

/// The server label of the builder's one server (no `server_name`: its listen address).
const SERVER: &str = "127.0.0.1:0";

/// gale in front of `tornado` with a small connection limit, long keep-alive and header
/// timeouts (so nothing closes by a timer while a test runs unless it sets one), and an admin
/// listener; `extra` is added to the builder.
fn limited(tornado: &Tornado, extra: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> Gale {
    let builder = ConfigBuilder::new([tornado.addr()])
        .global("max_connections", 20u32)
        .global("access_log", "access.log")
        .http("keepalive_timeout", "300s")
        .http("client_header_timeout", "300s");
    Gale::start(&(extra(builder).render() + "\n[admin]\nlisten = \"127.0.0.1:0\"\n"))
}

/// The builder's server as HTTPS for `a.test`.
fn https(c: ConfigBuilder, cert: &std::path::Path, key: &std::path::Path) -> ConfigBuilder {
    c.server("server_name", Raw("[\"a.test\"]".into())).server("tls", Raw(tls_table(cert, key)))
}

/// Opens `n` TCP connections that send nothing.
fn silent(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let s = TcpStream::connect_timeout(&addr, GUARD).unwrap_or_else(|e| panic!("silent connection {i}: {e}"));
            s.set_nonblocking(true).expect("nonblocking");
            s
        })
        .collect()
}

/// Whether gale closed `s` (EOF or reset), without waiting: a nonblocking read.
fn closed_now(mut s: &TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted),
    }
}

fn closed_count(conns: &[TcpStream]) -> usize {
    conns.iter().filter(|s| closed_now(s)).count()
}

/// Waits until `/metrics` satisfies `cond`, then returns it.
#[track_caller]
fn metrics_when(admin: SocketAddr, what: &str, cond: impl Fn(&Metrics) -> bool) -> Metrics {
    wait_until(GUARD, what, || cond(&metrics(admin)));
    metrics(admin)
}

/// Stops gale (flushing the access log) and returns the log.
fn access_log(mut gale: Gale) -> String {
    gale.signal(SIGTERM);
    assert!(gale.wait_timeout(GUARD).is_some(), "gale did not stop on SIGTERM");
    std::fs::read_to_string(gale.dir().join("access.log")).expect("read access.log")
}

#[test]
fn silent_connections_past_max_connections_do_not_lock_out_a_new_client() {
    let tornado = Tornado::spawn("app");
    let gale = limited(&tornado, |c| c);
    let admin = admin_addr(&gale);

    // 10 old silent connections, registered before the 15 newer ones: 25 > max_connections.
    let old = silent(gale.addr(), 10);
    metrics_when(admin, "the 10 old connections open", |m| m.value("gale_connections_open", &[]) == 10.0);
    let newer = silent(gale.addr(), 15);

    // A real client is answered; before the fix it waited for a silent connection to time out.
    let mut client = Conn::open(gale.addr());
    client.set_read_timeout(GUARD);
    client.send(&Request::get("/whoami")).expect_status(200);

    // 26 clients, 20 slots: at least 6 silent connections were closed by gale, the oldest ones.
    wait_until(GUARD, "6 silent connections closed by gale", || closed_count(&old) >= 6);
    assert_eq!(closed_count(&newer), 0, "a newer idle connection was closed before an older one");
    // Counted just after the connections are asked to close: wait for it rather than race it.
    let m = metrics_when(admin, "6 reclaims counted", |m| m.value("gale_connections_reclaimed_total", &[]) >= 6.0);
    assert!(m.value("gale_connections_limit_reached_total", &[]) >= 1.0, "{}", m.text);
    assert!(m.value("gale_connections_open", &[]) <= 20.0, "{}", m.text);
    let warning = |l: &str| l.contains("WARN") && l.contains("max_connections reached");
    wait_until(GUARD, "the warning in the error log", || gale.stderr().lines().any(warning));
    let stderr = gale.stderr();
    assert_eq!(stderr.lines().filter(|l| warning(l)).count(), 1, "one rate-limited warning expected:\n{stderr}");
}

#[test]
fn silent_connections_do_not_lock_out_tls_clients() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_path = ca.write(dir.path());
    let (cert, key) = ca.issue(&["a.test"]).write(dir.path(), "a");
    let tornado = Tornado::spawn("app");
    let gale = limited(&tornado, |c| https(c, &cert, &key));
    let admin = admin_addr(&gale);

    let conns = silent(gale.addr(), 25);
    let url = format!("https://a.test:{}/whoami", gale.addr().port());
    for version in ["--http1.1", "--http2"] {
        let out = curl(&url, Some(&ca_path), &[("a.test", gale.addr())], &[version, "--max-time", "20"]);
        assert!(out.success && out.write_out.starts_with("200"), "{version}: {out:#?}");
    }
    wait_until(GUARD, "silent connections closed by gale", || closed_count(&conns) >= 5);
    metrics_when(admin, "reclaims counted", |m| m.value("gale_connections_reclaimed_total", &[]) >= 5.0);
}

/// Reads from `s` until gale closes it (true) or `GUARD` passes (false); data is discarded.
fn closed_within(s: &mut impl Read, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn a_connection_that_sends_nothing_is_closed_after_client_header_timeout() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = ca.issue(&["a.test"]).write(dir.path(), "a");
    let tornado = Tornado::spawn("app");
    // keepalive_timeout stays 300s: only client_header_timeout (1s) can close these in time.
    let plain = limited(&tornado, |c| c.http("client_header_timeout", "1s"));
    let tls_gale = limited(&tornado, |c| https(c.http("client_header_timeout", "1s"), &cert, &key));

    let mut s = TcpStream::connect(plain.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    assert!(closed_within(&mut s, GUARD), "a silent plain connection outlived client_header_timeout");

    let mut s = TcpStream::connect(tls_gale.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    assert!(closed_within(&mut s, GUARD), "a silent connection to the TLS port outlived client_header_timeout");

    for alpn in [&b"http/1.1"[..], b"h2"] {
        let (mut stream, hs) =
            tls::connect(tls_gale.addr(), &ClientOptions::sni("a.test").alpn(&[alpn])).expect("handshake");
        assert_eq!(hs.alpn.as_deref(), Some(alpn));
        stream.sock.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        assert!(
            closed_within(&mut stream, GUARD),
            "{}: a TLS connection with no request outlived client_header_timeout",
            String::from_utf8_lossy(alpn)
        );
    }
    // Nothing was asked, so nothing is logged as a request.
    let log = access_log(plain);
    assert!(log.trim().is_empty(), "a silent connection was logged:\n{log}");
}

/// Sends one HTTP/2 request (`GET /whoami` for `a.test`) on a fresh TLS connection with hand-made
/// frames and reads frames until its response ended; returns the connection, idle.
fn h2_request(addr: SocketAddr) -> tls::TlsStream {
    let (mut stream, hs) = tls::connect(addr, &ClientOptions::sni("a.test").alpn(&[b"h2"])).expect("handshake");
    assert_eq!(hs.alpn.as_deref(), Some(&b"h2"[..]));
    // HPACK: :method GET, :scheme https (static 2, 7), :path and :authority as literals.
    let mut block = vec![0x82, 0x87, 0x44, 7];
    block.extend_from_slice(b"/whoami");
    block.extend_from_slice(&[0x41, 6]);
    block.extend_from_slice(b"a.test");
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // SETTINGS, empty
    let len = u32::try_from(block.len()).expect("small").to_be_bytes();
    out.extend_from_slice(&[len[1], len[2], len[3], 0x1, 0x5, 0, 0, 0, 1]); // HEADERS, END_STREAM|END_HEADERS
    out.extend_from_slice(&block);
    stream.write_all(&out).expect("send the request");
    stream.flush().expect("flush");
    // Frames until one on stream 1 carries END_STREAM (bounded by GUARD through the read timeout).
    for _ in 0..1000 {
        let mut head = [0u8; 9];
        stream.read_exact(&mut head).expect("a frame header");
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).expect("a frame payload");
        let stream_id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        if stream_id == 1 && matches!(head[3], 0x0 | 0x1) && head[4] & 0x1 != 0 {
            return stream;
        }
    }
    panic!("no end of the response on stream 1 within 1000 frames");
}

#[test]
fn http2_connections_idle_past_keepalive_timeout_or_reclaimed_are_closed() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = ca.issue(&["a.test"]).write(dir.path(), "a");
    let tornado = Tornado::spawn("app");

    // Idle after a request: closed after keepalive_timeout (hyper has no such timer for HTTP/2).
    let gale = limited(&tornado, |c| https(c.http("keepalive_timeout", "1s"), &cert, &key));
    let mut idle = h2_request(gale.addr());
    idle.sock.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    assert!(closed_within(&mut idle, GUARD), "an idle HTTP/2 connection outlived keepalive_timeout");

    // Idle after a request, then the limit is reached: the oldest idle connection goes first.
    let gale = limited(&tornado, |c| https(c, &cert, &key));
    let admin = admin_addr(&gale);
    let mut idle = h2_request(gale.addr());
    idle.sock.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let _silent = silent(gale.addr(), 20);
    assert!(closed_within(&mut idle, GUARD), "the oldest idle HTTP/2 connection was not reclaimed");
    metrics_when(admin, "the reclaim counted", |m| m.value("gale_connections_reclaimed_total", &[]) >= 1.0);
}

#[test]
fn slowloris_heads_get_408_and_are_never_reclaimed_while_silent_ones_are() {
    let tornado = Tornado::spawn("app");
    // Long enough that the new client below is answered well before any 408 frees a slot.
    let gale = limited(&tornado, |c| c.http("client_header_timeout", "10s"));
    let admin = admin_addr(&gale);

    // 12 heads trickled and left unfinished, then 10 silent connections: 22 > 20.
    let mut slow: Vec<Conn> = (0..12).map(|_| Conn::open(gale.addr())).collect();
    for c in &mut slow {
        c.write_raw(b"GET /whoami HTTP/1.1\r\n").expect("request line");
        c.write_raw(b"Host: a\r\n").expect("a header");
        c.set_read_timeout(GUARD);
    }
    metrics_when(admin, "12 slowloris connections open", |m| m.value("gale_connections_open", &[]) == 12.0);
    let _silent = silent(gale.addr(), 10);
    let mut client = Conn::open(gale.addr());
    client.set_read_timeout(GUARD);
    client.send(&Request::get("/whoami")).expect_status(200);
    // Served by reclaiming silent connections, not by waiting for the slowloris ones' 408.
    let m = metrics(admin);
    assert_eq!(m.get("gale_requests_total", &[("server", SERVER), ("status", "408")]), None, "{}", m.text);
    assert!(m.value("gale_connections_reclaimed_total", &[]) >= 2.0, "{}", m.text);
    for (i, c) in slow.iter_mut().enumerate() {
        let r = c.read_response(false).unwrap_or_else(|e| panic!("slowloris {i}: no 408 ({e})"));
        assert_eq!(r.status, 408, "slowloris {i}");
    }
}

#[test]
fn answers_written_before_the_pipeline_are_logged_and_counted() {
    let tornado = Tornado::spawn("app");
    let gale = limited(&tornado, |c| c.http("client_header_timeout", "1s"));
    let admin = admin_addr(&gale);

    // A malformed request line: hyper's 400.
    let r = gale_tests::http::raw(gale.addr(), b"GET /x HTTP/9\x01\r\nHost: a\r\n\r\n");
    assert_eq!(r.status, 400);
    // A head past max_header_size (32k): hyper's 431.
    let big = format!("GET /big HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n", "b".repeat(40 << 10));
    assert_eq!(gale_tests::http::raw(gale.addr(), big.as_bytes()).status, 431);
    // A stalled head: the tap's 408.
    let mut c = Conn::open(gale.addr());
    c.set_read_timeout(GUARD);
    c.write_raw(b"GET /stalled HTTP/1.1\r\nHost: a\r\n").expect("write");
    assert_eq!(c.read_response(false).expect("a 408").status, 408);
    // A request target past max_uri_size (8k) that does not fit max_header_size: 414, not 431.
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "u".repeat(100 << 10));
    assert_eq!(gale_tests::http::raw(gale.addr(), long.as_bytes()).status, 414);

    // Counted when each connection ends, which may be just after the client read its answer.
    let counted = |m: &Metrics, status| m.get("gale_requests_total", &[("server", SERVER), ("status", status)]);
    let m = metrics_when(admin, "the four refused answers counted", |m| {
        ["400", "408", "414", "431"].iter().all(|s| counted(m, s).is_some())
    });
    for status in ["400", "408", "414", "431"] {
        assert_eq!(counted(&m, status), Some(1.0), "{status}:\n{}", m.text);
    }
    let log = access_log(gale);
    for (request, status) in [("\"-\"", 400), ("\"-\"", 431), ("\"GET /stalled HTTP/1.1\"", 408), ("\"GET - -\"", 414)]
    {
        let want = format!("{request} {status} 0 \"-\" \"-\"");
        assert!(
            log.lines().any(|l| l.starts_with("127.0.0.1 - - [") && l.ends_with(&want)),
            "no `{want}` line in:\n{log}"
        );
    }
}

#[test]
fn refused_heads_are_in_the_json_access_log() {
    let tornado = Tornado::spawn("app");
    let gale = limited(&tornado, |c| c.global("access_log_format", "json"));
    assert_eq!(gale_tests::http::raw(gale.addr(), b"\x16\x03\x01junk\r\n\r\n").status, 400);
    let log = access_log(gale);
    let line = log.lines().find(|l| l.contains("\"status\":400")).unwrap_or_else(|| panic!("no 400 in:\n{log}"));
    let v: serde_json::Value = serde_json::from_str(line).expect("one JSON object");
    assert_eq!((v["method"].as_str(), v["uri"].as_str(), v["protocol"].as_str()), (Some("-"), Some("-"), Some("-")));
}

/// A GET with `n` small headers `X-H-0: v0` ...
fn many_headers(n: usize) -> Request {
    with_headers(Request::get("/whoami"), n)
}

fn with_headers(request: Request, n: usize) -> Request {
    (0..n).fold(request, |r, i| r.header(&format!("X-H-{i}"), &format!("v{i}")))
}

#[test]
fn two_hundred_small_headers_are_forwarded_and_the_count_limit_is_a_key() {
    let tornado = Tornado::spawn("app");
    let gale = limited(&tornado, |c| c);
    let r = gale.send(&many_headers(200));
    r.expect_status(200);
    let who: Whoami = r.json();
    assert_eq!(who.header("X-H-199"), Some("v199"), "the 200th header did not reach Tornado");
    // Past the default of 256: 431, logged and counted like any answer.
    assert_eq!(gale.send(&many_headers(300)).status, 431);
    // A head with more headers than the framing tracker's stack array is still checked: equal
    // duplicate lengths (which hyper would merge) are refused.
    let smuggle = with_headers(Request::post("/whoami", "a"), 200)
        .header("Content-Length", "1")
        .header("Content-Length", "1")
        .without_framing();
    assert_eq!(gale.send(&smuggle).status, 400);

    let strict = limited(&tornado, |c| c.http("max_headers", 50u32));
    assert_eq!(strict.send(&many_headers(40)).status, 200);
    assert_eq!(strict.send(&many_headers(60)).status, 431);
}

#[test]
fn a_request_line_past_max_uri_size_is_414_however_long() {
    let tornado = Tornado::spawn("app");
    let gale = limited(&tornado, |c| c);
    // Longer than max_header_size: the tap answers before hyper would say 431.
    for len in [100 << 10, 40 << 10, 9 << 10] {
        let r = gale.get(&format!("/{}", "a".repeat(len)));
        assert_eq!(r.status, 414, "a {len}-byte target");
    }
    // Within max_uri_size: served.
    gale.get(&format!("/whoami?{}", "q".repeat(7 << 10))).expect_status(200);
}

#[test]
fn silent_connections_do_not_hold_up_a_graceful_shutdown() {
    let tornado = Tornado::spawn("app");
    // Only a connection gale waits for could make it take shutdown_timeout to stop.
    let mut gale = limited(&tornado, |c| c.global("shutdown_timeout", "120s"));
    let admin = admin_addr(&gale);
    let _silent = silent(gale.addr(), 5);
    metrics_when(admin, "5 connections open", |m| m.value("gale_connections_open", &[]) == 5.0);
    gale.signal(SIGTERM);
    let status = gale.wait_timeout(GUARD).expect("gale waited for connections on which nothing was asked");
    assert_eq!(status.code(), Some(0));
}
