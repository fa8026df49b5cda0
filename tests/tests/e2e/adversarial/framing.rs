//! The smuggling and framing corpus: ambiguous and malformed HTTP/1.1 heads and bodies, each sent
//! raw on its own connection to gale in front of a capture backend, with gale's expected answer
//! (statuses, whether the connection is closed, what the backend received) and nginx 1.22's
//! verdict for the same bytes (nginx 1.22.1, `proxy_pass` with `proxy_http_version 1.1` and
//! `proxy_set_header Host $http_host` as in the reference nginx configuration, to a capture
//! backend; one raw request each, observed by hand). Where gale differs from nginx, the case
//! says why gale's answer is the safer one.
//!
//! A connection gale keeps open is then proven in sync: a `GET /probe` on it must be answered
//! 200 and reach the backend as `/probe`, so nothing of the case was left to be read as a
//! request.

use std::time::Duration;

use gale_tests::http::Conn;
use gale_tests::{Capture, ConfigBuilder, wait_until};
use tempfile::TempDir;

mod cases;

use cases::CASES;

/// The statuses of up to `n` responses on `conn` (one that cannot be read ends the list).
fn answers(conn: &mut Conn, n: usize) -> Vec<u16> {
    (0..n).map_while(|_| conn.read_response(false).ok().map(|r| r.status)).collect()
}

#[test]
fn smuggling_and_framing_corpus() {
    let backend = Capture::start(200);
    let gale = ConfigBuilder::new([backend.addr()]).start();
    let mut failures = Vec::new();
    for case in CASES {
        backend.clear();
        let mut conn = gale.conn();
        conn.set_read_timeout(Duration::from_secs(10));
        let _ = conn.write_raw(case.raw.as_bytes());
        let statuses = answers(&mut conn, case.statuses.len());
        let closed = if case.closed {
            conn.closed_by_peer(Duration::from_secs(10))
        } else {
            // Still open and in sync: the next request on it is read as a request.
            let probe = conn.write_raw(b"GET /probe HTTP/1.1\r\nHost: a\r\n\r\n").is_ok()
                && conn.read_response(false).is_ok_and(|r| r.status == 200);
            !probe
        };
        let mut seen: Vec<(String, String, String)> = backend
            .requests()
            .iter()
            .map(|r| {
                (
                    r.request_line.clone(),
                    r.header("host").unwrap_or("").to_owned(),
                    String::from_utf8_lossy(&r.body).into_owned(),
                )
            })
            .collect();
        if !case.closed && seen.last().is_some_and(|(line, _, _)| line == "GET /probe HTTP/1.1") {
            seen.pop();
        }
        let want: Vec<(String, String, String)> =
            case.backend.iter().map(|(l, h, b)| (l.to_string(), h.to_string(), b.to_string())).collect();
        if statuses != case.statuses || closed != case.closed || seen != want {
            failures.push(format!(
                "{}: got {statuses:?} {}, backend saw {seen:?}; want {:?} {}, backend {want:?} (nginx: {})",
                case.name,
                if closed { "closed" } else { "open" },
                case.statuses,
                if case.closed { "closed" } else { "open" },
                case.nginx
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n"),
        gale.stderr()
    );
}

/// The malformed chunked bodies of issue 19's finding 6, each sent to a proxied location and an
/// upload location: 400, the connection closed, nothing forwarded, and the error log says
/// "refused" with status 400 (before the fix: 499, logged as a client that went away).
#[test]
fn malformed_chunked_bodies_are_400_for_proxied_and_upload_locations() {
    let backend = Capture::start(200);
    let (_store_dir, store) = crate::uploads::private_store();
    let gale =
        ConfigBuilder::new([backend.addr()]).location(&crate::uploads::upload_location("/upload", &store, "")).start();
    let bodies: &[(&str, &str)] = &[
        ("size with junk", "5x\r\nhello\r\n0\r\n\r\n"),
        ("size overflow", "ffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
        ("0x prefix", "0x5\r\nhello\r\n0\r\n\r\n"),
        ("bare LF", "5\nhello\n0\n\n"),
        ("size mismatch", "5\r\nhel\r\n0\r\n\r\n"),
    ];
    for target in ["/echo", "/upload"] {
        for (what, body) in bodies {
            let raw = format!(
                "POST {target} HTTP/1.1\r\nHost: a\r\nContent-Type: multipart/form-data; boundary=XbOuNdArY123\r\n\
                 Transfer-Encoding: chunked\r\n\r\n{body}GET /whoami HTTP/1.1\r\nHost: a\r\n\r\n"
            );
            let mut conn = gale.conn();
            let _ = conn.write_raw(raw.as_bytes());
            let response = conn.read_response(false).unwrap_or_else(|e| panic!("{target}, {what}: no response ({e})"));
            assert_eq!(response.status, 400, "{target}, {what}: {response}\n{}", gale.stderr());
            assert!(conn.closed_by_peer(Duration::from_secs(10)), "{target}, {what}: the connection stayed open");
        }
    }
    assert_eq!(backend.count(), 0, "a malformed body was forwarded: {:?}", backend.requests());
    // The log lines are read from gale's stderr as they come: wait for all of them.
    let refused =
        || gale.stderr().lines().filter(|l| l.contains("request refused") && l.contains("status=400")).count();
    wait_until(Duration::from_secs(10), "a `request refused ... status=400` line per malformed body", || {
        refused() >= 2 * bodies.len()
    });
    let log = gale.stderr();
    assert!(!log.contains("status=499"), "a malformed body was logged as a client abort:\n{log}");
    assert_eq!(refused(), 2 * bodies.len(), "one refusal logged per malformed body:\n{log}");
}

/// A `static` location does not read request bodies: the file is served, and the connection is
/// closed when hyper cannot skip the malformed body, so what follows it is never read as a
/// request. (nginx reads and discards the body first, and answers 400; both leave nothing
/// behind on the connection.)
#[test]
fn malformed_chunked_body_to_a_static_location_closes_the_connection() {
    let backend = Capture::start(200);
    let root = TempDir::new().expect("tempdir");
    std::fs::create_dir(root.path().join("static")).expect("mkdir static");
    std::fs::write(root.path().join("static").join("a.txt"), "hi\n").expect("write a.txt");
    let root_toml = serde_json::to_string(&root.path().display().to_string()).expect("path as TOML string");
    let gale = ConfigBuilder::new([backend.addr()])
        .location(&format!("path = \"/static/\"\nstatic = {{ root = {root_toml} }}"))
        .start();
    let mut conn = gale.conn();
    let _ = conn.write_raw(
        b"GET /static/a.txt HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\nhello\r\n0\r\n\r\n\
          GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    );
    let response = conn.read_response(false).expect("a response");
    assert!(response.status == 200 || response.status == 400, "{response}");
    assert!(conn.closed_by_peer(Duration::from_secs(10)), "the connection stayed open after a malformed body");
    assert_eq!(
        backend.count(),
        0,
        "something after the malformed body was read as a request: {:?}",
        backend.requests()
    );
}
