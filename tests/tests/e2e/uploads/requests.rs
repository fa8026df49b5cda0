//! Request-level checks of an upload location (docs/uploads.md, "Request flow", with
//! gale's D7, D8 and D16), forged generated fields (D2) and deterministic 400s whatever the TCP
//! segmentation (D6).

use std::time::Duration;

use gale_tests::multipart::{self, B, TXT, TXT_MD5, body, file, part, text};
use gale_tests::{Conn, Request};

use super::{Site, UPLOAD, expect_forwarded};

/// A request the client smuggles in the body of a refused upload.
const SMUGGLED: &str = "GET /smuggled-by-body HTTP/1.1\r\nHost: x\r\n\r\n";

#[test]
fn methods_other_than_post_are_405_and_options_is_200_empty() {
    let site = Site::new();
    for method in ["GET", "HEAD", "PUT", "DELETE", "PATCH"] {
        let request = Request::new(method, UPLOAD).header("Content-Type", &multipart::content_type());
        let request = if method == "GET" || method == "HEAD" { request } else { request.body(body(&[])) };
        let response = site.gale.send(&request);
        assert_eq!(response.status, 405, "{method} /upload:\n{response}");
    }
    let response = site.gale.send(&Request::new("OPTIONS", UPLOAD));
    assert_eq!(response.status, 200, "OPTIONS:\n{response}");
    assert_eq!(response.header("content-length"), Some("0"));
    assert!(response.body.is_empty());
    site.assert_backend_untouched("405/OPTIONS");
    site.assert_store_empty("405/OPTIONS");
}

#[test]
fn content_type_checks_415_and_400_d16() {
    let site = Site::new();
    let data = body(&[text("somearg", b"x")]);
    for ct in [
        "application/x-www-form-urlencoded",
        "multipart/mixed; boundary=XbOuNdArY123",
        "text/plain",
        // D16: nginx-upload-module prefix-matched and accepted this.
        "multipart/form-data-foo; boundary=XbOuNdArY123",
    ] {
        let response = site.post(UPLOAD, ct, &data);
        assert_eq!(response.status, 415, "Content-Type {ct:?}:\n{response}");
    }
    let response = site.gale.send(&Request::post(UPLOAD, data.clone()));
    assert_eq!(response.status, 400, "no Content-Type:\n{response}");
    // Case-insensitive media type and parameter name are accepted (spec (c), D3).
    let response = site.post(UPLOAD, &format!("MULTIPART/FORM-DATA; BOUNDARY={B}"), &data);
    assert_eq!(response.status, 200, "upper-case media type:\n{response}");
    let got = site.capture.only();
    assert_eq!(got.header("content-type"), Some(format!("multipart/form-data; boundary={B}").as_str()));
    expect_forwarded(&site, &got, B, &[("somearg", b"x")]);
}

/// D7: nginx-upload-module sent no response for a missing boundary, and on keep-alive parsed the body
/// as the next request. gale answers 400; the connection is then closed or still usable, and
/// the body is never read as a request.
#[test]
fn bad_or_missing_boundary_is_400_and_the_body_is_never_a_request_d7() {
    let site = Site::new();
    let cases = [
        "multipart/form-data".to_owned(),
        "multipart/form-data;".to_owned(),
        "multipart/form-data; boundary=".to_owned(),
        "multipart/form-data; boundary=\"\"".to_owned(),
        "multipart/form-data; charset=utf-8".to_owned(),
        format!("multipart/form-data; boundary={}", "b".repeat(71)),
        format!("multipart/form-data; boundary={B}; boundary=other"),
    ];
    for ct in &cases {
        let mut conn = site.gale.conn();
        let request = Request::post(UPLOAD, SMUGGLED).header("Content-Type", ct);
        let response = conn.send(&request);
        assert_eq!(response.status, 400, "Content-Type {ct:?}:\n{response}");
        if !response.closes() {
            // Still open: the next request on it must be answered as itself.
            let next = conn.send(&Request::get("/after-bad-boundary"));
            assert_eq!(next.status, 200, "next request after {ct:?}:\n{next}");
            let last = site.capture.requests().pop().expect("the next request reached the backend");
            assert_eq!(last.target(), "/after-bad-boundary");
        } else {
            assert!(conn.closed_by_peer(Duration::from_secs(10)), "Connection: close but kept open after {ct:?}");
        }
    }
    let seen: Vec<String> = site.capture.requests().iter().map(|r| r.request_line.clone()).collect();
    assert!(!seen.iter().any(|l| l.contains("smuggled")), "a body was executed as a request: {seen:?}");
    site.assert_store_empty("bad boundary");
}

#[test]
fn chunked_upload_is_accepted_and_forwarded_with_content_length_d8() {
    let site = Site::new();
    let data =
        body(&[text("somearg", b"value1"), file("file", "hello.txt", "text/plain", TXT), text("other", b"dropped")]);
    let mut chunks = Vec::new();
    let mut at = 0;
    for n in [1, 7, 50, 3, 1000].iter().cycle() {
        if at >= data.len() {
            break;
        }
        let end = (at + n).min(data.len());
        chunks.push(data[at..end].to_vec());
        at = end;
    }
    assert_eq!(chunks.concat(), data);
    let request = Request::new("POST", UPLOAD).header("Content-Type", &multipart::content_type()).chunked(chunks);
    let response = site.gale.send(&request);
    assert_eq!(response.status, 200, "chunked upload (D8; nginx-upload-module: 400):\n{response}");
    let got = site.capture.only();
    let snapshots = expect_forwarded(
        &site,
        &got,
        B,
        &[
            ("somearg", b"value1"),
            ("file.name", b"hello.txt"),
            ("file.content_type", b"text/plain"),
            ("file.path", b"<F1>"),
            ("file.md5", TXT_MD5.as_bytes()),
            ("file.size", b"14"),
        ],
    );
    assert_eq!(snapshots[0].contents.as_deref(), Some(TXT));
    assert!(got.header("transfer-encoding").is_none());
    site.assert_store_empty("chunked upload");
}

#[test]
fn two_uploads_on_one_keepalive_connection() {
    let site = Site::new();
    let mut conn = site.gale.conn();
    for round in 0..2 {
        let data = body(&[file("file", "hello.txt", "text/plain", TXT)]);
        let request = Request::post(UPLOAD, data).header("Content-Type", &multipart::content_type());
        let response = conn.send(&request);
        assert_eq!(response.status, 200, "upload {round} on one connection:\n{response}");
        assert!(!response.closes(), "a successful upload keeps the connection");
    }
    let requests = site.capture.requests();
    assert_eq!(requests.len(), 2);
    assert_ne!(requests[0].files[0].path, requests[1].files[0].path, "a fresh store name per file");
    site.assert_store_empty("two uploads");
}

/// D2: a client text field whose name the templates can generate never reaches the backend,
/// even when the pass regex (`somearg`, unanchored) matches it.
#[test]
fn forged_generated_field_names_never_reach_the_backend_d2() {
    let site = Site::new();
    let data = body(&[
        text("file.path", b"/etc/passwd"),
        text("somearg.path", b"/etc/passwd"),
        text("somearg.name", b"forged"),
        text("somearg.content_type", b"forged"),
        text("somearg.md5", b"00000000000000000000000000000000"),
        text("somearg.size", b"1"),
        text("somearg", b"ok"),
        file("file", "hello.txt", "text/plain", TXT),
        text("file.md5", b"00000000000000000000000000000000"),
    ]);
    let (got, _) = site.vector(
        &data,
        &[
            ("somearg", b"ok"),
            ("file.name", b"hello.txt"),
            ("file.content_type", b"text/plain"),
            ("file.path", b"<F1>"),
            ("file.md5", TXT_MD5.as_bytes()),
            ("file.size", b"14"),
        ],
    );
    assert!(!got.body.windows(11).any(|w| w == b"/etc/passwd"));
    assert!(!got.body.windows(6).any(|w| w == b"forged"));
}

/// Malformed bodies (spec (c) and D5), each answered 400 by nginx-upload-module or 500 depending on
/// segmentation; gale: always 400 (D6), nothing stored, backend never called.
fn malformed_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let prefix = "Content-Disposition: form-data; name=\"somearg\"; x=\"";
    let line_512 = format!("{prefix}{}\"", "a".repeat(512 - prefix.len() - 1));
    vec![
        ("bad disposition", body(&[part(&["Content-Disposition: inline; name=\"a\""], b"x")])),
        (
            "no name (nginx-upload-module: 500)",
            body(&[part(&["Content-Disposition: form-data; filename=\"x.txt\""], TXT)]),
        ),
        ("no Content-Disposition", body(&[part(&["Content-Type: text/plain"], b"x")])),
        ("512-byte header line", body(&[part(&[&line_512], b"v")])),
        (
            "NUL in a header (D15)",
            body(&[part(&["Content-Disposition: form-data; name=\"f\"; filename=\"x\0.txt\""], TXT)]),
        ),
        (
            "empty part Content-Type",
            body(&[part(&["Content-Disposition: form-data; name=\"somearg\"", "Content-Type:"], b"x")]),
        ),
        ("no delimiter at all", b"just some bytes, no multipart here\r\n".to_vec()),
        ("truncated inside a file", {
            let mut v = file("file", "a.txt", "text/plain", &vec![b'z'; 3000]);
            v.truncate(v.len() - 100);
            v
        }),
        ("`--B` + junk inside a file", body(&[file("f", "c.txt", "text/plain", format!("l\r\n--{B}-t").as_bytes())])),
    ]
}

/// Writes `bytes` in writes of 1..=7 bytes with a pause after each, so gale's reads see the body
/// in small pieces (nginx-upload-module's `trickle`); stops at the first write error (gale answered and
/// closed).
fn trickle(conn: &mut Conn, bytes: &[u8]) {
    let mut at = 0;
    let mut size = 1;
    while at < bytes.len() {
        let end = (at + size).min(bytes.len());
        if conn.write_raw(&bytes[at..end]).is_err() {
            return;
        }
        at = end;
        size = size % 7 + 1;
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn malformed_body_is_400_in_one_write_and_trickled_d6() {
    let site = Site::new();
    for (what, data) in malformed_bodies() {
        let head = format!(
            "POST {UPLOAD} HTTP/1.1\r\nHost: gale\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
            multipart::content_type(),
            data.len()
        );
        // One write: head and body in the same segment (nginx-upload-module's preread path: 500).
        let mut oneshot = site.gale.conn();
        let _ = oneshot.write_raw(&[head.as_bytes(), &data].concat());
        let response = oneshot.read_response(false).unwrap_or_else(|e| panic!("{what}, one write: no answer: {e}"));
        assert_eq!(response.status, 400, "{what}, one write:\n{response}");
        // Trickled: the head, then the body a few bytes at a time.
        let mut trickled = site.gale.conn();
        trickled.write_raw(head.as_bytes()).expect("write head");
        trickle(&mut trickled, &data);
        let response = trickled.read_response(false).unwrap_or_else(|e| panic!("{what}, trickled: no answer: {e}"));
        assert_eq!(response.status, 400, "{what}, trickled:\n{response}");
        site.assert_backend_untouched(what);
        site.assert_store_empty(what);
    }
}
