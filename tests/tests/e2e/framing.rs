//! Strict HTTP/1.1 framing on the client side: ambiguous requests are refused with 400 (and
//! the connection closed) before anything reaches a backend; limits give 413/414/431; bodies
//! are re-framed upstream.

use std::time::Duration;

use gale_tests::http::{self, Conn, Request, Response};
use gale_tests::{Gale, Tornado, Whoami};

use crate::pool;

/// Sends `raw` bytes on a new connection and asserts the response status, that gale closes
/// the connection after it (the framing of what follows is unknown), and that the backend saw
/// nothing.
#[track_caller]
fn assert_refused(gale: &Gale, backend: &Tornado, raw: &str, status: u16) {
    let response = assert_answered(gale, raw, status, true);
    let stats = backend.stats();
    assert!(stats.hits.is_empty(), "the backend saw a refused request {}: {stats:?}\n{response}", shorten(raw));
}

/// Sends `raw` bytes, asserts the status and, if `must_close`, that gale closes the connection.
#[track_caller]
fn assert_answered(gale: &Gale, raw: &str, status: u16, must_close: bool) -> Response {
    let mut conn = gale.conn();
    let _ = conn.write_raw(raw.as_bytes());
    let response = conn.read_response(false).unwrap_or_else(|e| panic!("no response to {}: {e}", shorten(raw)));
    assert_eq!(response.status, status, "request {} got:\n{response}", shorten(raw));
    if must_close {
        assert!(
            conn.closed_by_peer(Duration::from_secs(10)),
            "gale kept the connection open after answering {} with {status}",
            shorten(raw)
        );
    }
    response
}

/// A request short enough for a failure message.
fn shorten(raw: &str) -> String {
    if raw.len() <= 300 { format!("{raw:?}") } else { format!("{:?}... ({} bytes)", &raw[..200], raw.len()) }
}

#[test]
fn content_length_with_transfer_encoding_is_400() {
    let (t, gale) = pool(1, |c| c);
    assert_refused(
        &gale,
        &t[0],
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n\
         0\r\n\r\nGET /whoami HTTP/1.1\r\nHost: a\r\n\r\n",
        400,
    );
}

#[test]
fn unequal_duplicate_content_length_is_400() {
    let (t, gale) = pool(1, |c| c);
    assert_refused(
        &gale,
        &t[0],
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
        400,
    );
    assert_refused(&gale, &t[0], "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 5\r\n\r\nabcde", 400);
}

#[test]
fn transfer_encoding_other_than_chunked_is_400() {
    let (t, gale) = pool(1, |c| c);
    assert_refused(&gale, &t[0], "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nabc", 400);
}

#[test]
fn obs_fold_is_400() {
    let (t, gale) = pool(1, |c| c);
    assert_refused(&gale, &t[0], "GET /whoami HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n", 400);
}

#[test]
fn missing_or_duplicate_host_on_http11_is_400() {
    let (t, gale) = pool(1, |c| c);
    assert_refused(&gale, &t[0], "GET /whoami HTTP/1.1\r\n\r\n", 400);
    assert_refused(&gale, &t[0], "GET /whoami HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
}

#[test]
fn http10_without_host_is_served() {
    let (_t, gale) = pool(1, |c| c);
    let response = gale.send(&Request::get("/whoami").version("HTTP/1.0").without_host());
    response.expect_status(200);
    let who: Whoami = response.json();
    assert_eq!(who.uri, "/whoami");
}

#[test]
fn too_long_uri_is_414() {
    let (t, gale) = pool(1, |c| c);
    // The default limit is 8 KiB (nginx's large_client_header_buffers).
    let raw = format!("GET /whoami?q={} HTTP/1.1\r\nHost: a\r\n\r\n", "x".repeat(16 << 10));
    // The whole head was read, so gale may keep the connection open.
    assert_answered(&gale, &raw, 414, false);
    assert!(t[0].stats().hits.is_empty());
}

#[test]
fn too_large_headers_are_431() {
    let (t, gale) = pool(1, |c| c);
    // The default limit is 32 KiB.
    let headers: String = (0..40).map(|i| format!("X-Big-{i}: {}\r\n", "y".repeat(1000))).collect();
    let raw = format!("GET /whoami HTTP/1.1\r\nHost: a\r\n{headers}\r\n");
    assert_refused(&gale, &t[0], &raw, 431);
}

#[test]
fn content_length_over_the_limit_is_413_before_the_body_is_sent() {
    let (t, gale) = pool(1, |c| c.http("client_max_body_size", "1K"));
    // Only the head: a 413 proves the size was checked before reading (or waiting for) a body.
    let mut conn = gale.conn();
    conn.write_raw(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n").expect("write head");
    let response = conn.read_response(false).expect("a response to the head alone");
    assert_eq!(response.status, 413, "{response}");
    // The unread body must not be taken for a next request: gale closes the connection.
    let smuggled = format!("GET /smuggled/whoami HTTP/1.1\r\nHost: a\r\nX-Pad: {}\r\n\r\n", "p".repeat(2000));
    let _ = conn.write_raw(&smuggled.as_bytes()[..2000]);
    let next = conn.read_response(false);
    gale_tests::http::assert_closed(&next, "the unread body of a refused request");
    let stats = t[0].stats();
    assert!(stats.hits.is_empty(), "the backend saw the oversized request: {stats:?}");

    // At the limit exactly, the body passes.
    let echo: serde_json::Value = gale.send(&Request::post("/echo", vec![b'a'; 1024])).expect_status(200).json();
    assert_eq!(echo["length"], 1024);
}

#[test]
fn chunked_body_over_the_limit_is_413() {
    let (_t, gale) = pool(1, |c| c.http("client_max_body_size", "1K"));
    let chunks = vec![vec![b'z'; 600]; 4];
    let response = gale.send(&Request::post("/echo", Vec::new()).chunked(chunks));
    assert_eq!(response.status, 413, "{response}");

    // Under the limit, a chunked body is re-framed and arrives whole.
    let chunks = vec![b"hello ".to_vec(), b"chunked ".to_vec(), b"world".to_vec()];
    let response = gale.send(&Request::post("/echo?back=1", Vec::new()).chunked(chunks));
    response.expect_status(200);
    assert_eq!(response.text(), "hello chunked world");
}

#[test]
fn a_refused_request_cannot_smuggle_a_second_one() {
    let (t, gale) = pool(1, |c| c);
    // If gale used Content-Length, "GET /smuggled" would be read as a second request.
    let raw = "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\
               Content-Length: 4\r\n\r\n0\r\n\r\nGET /smuggled/whoami HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut conn = gale.conn();
    let _ = conn.write_raw(raw.as_bytes());
    let first = conn.read_response(false).expect("a response");
    assert_eq!(first.status, 400, "{first}");
    gale_tests::http::assert_closed(&conn.read_response(false), "after the refused request");
    let stats = t[0].stats();
    assert_eq!(stats.hits.get("/smuggled/whoami"), None, "{stats:?}");
}

#[test]
fn a_stalled_request_head_is_408() {
    let (t, gale) = pool(1, |c| c.http("client_header_timeout", "1s"));
    let mut conn = Conn::open(gale.addr());
    conn.write_raw(b"GET /whoami HTTP/1.1\r\nHost: a\r\n").expect("write half a head");
    let response = conn.read_response(false).expect("a 408 response after client_header_timeout");
    assert_eq!(response.status, 408, "{response}");
    assert!(t[0].stats().hits.is_empty());
    // A well-behaved client on another connection is not affected.
    http::get(gale.addr(), "/whoami").expect_status(200);
}
