//! The process: start-up errors, keep-alive on both sides, logs, pid file, graceful shutdown.

use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use gale_tests::http::{Conn, Request};
use gale_tests::{SIGINT, SIGQUIT, SIGTERM, Whoami, run_gale, wait_until};

use crate::pool;

#[test]
fn version_prints_the_crate_version() {
    let out = run_gale(&["--version"], None);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout.trim(), "gale 0.1.0");
}

#[test]
fn a_busy_port_is_a_one_line_error_and_exit_1() {
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = gale_tests::ConfigBuilder::new([gale_tests::dead_addr()])
        .server("listen", gale_tests::config::Raw(format!("[\"{addr}\"]")))
        .render();
    let path = dir.path().join("gale.toml");
    std::fs::write(&path, config).expect("write config");
    let out = run_gale(&["run", "--config", path.to_str().expect("utf-8 path")], Some(dir.path()));
    assert_eq!(out.code(), Some(1), "{out:?}");
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "expected a one-line error, got:\n{}", out.stderr);
    assert!(lines[0].contains(&addr.to_string()), "the error should name {addr}: {}", lines[0]);
    assert!(!out.stdout.contains("listening"), "{out:?}");
}

#[test]
fn a_missing_config_file_is_a_one_line_error_and_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nope.toml");
    let path = path.to_str().expect("utf-8 path");
    for command in ["run", "check"] {
        let out = run_gale(&[command, "--config", path], None);
        assert_eq!(out.code(), Some(1), "gale {command}: {out:?}");
        let lines = out.stderr_lines();
        assert_eq!(lines.len(), 1, "gale {command}: expected one line, got:\n{}", out.stderr);
        assert!(lines[0].contains(path), "gale {command}: the error should name the file: {}", lines[0]);
        assert!(!out.stderr.contains("panicked"), "{out:?}");
    }
}

#[test]
fn a_client_connection_is_kept_alive_across_requests() {
    let (_t, gale) = pool(2, |c| c);
    let mut conn = gale.conn();
    for i in 0..3 {
        let response = conn.send(&Request::get("/whoami"));
        response.expect_status(200);
        assert!(!response.closes(), "request {i}: gale closed a keep-alive connection:\n{response}");
    }
    // An HTTP/1.0 client without keep-alive gets its connection closed.
    let mut old = gale.conn();
    old.send(&Request::get("/whoami").version("HTTP/1.0")).expect_status(200);
    assert!(old.closed_by_peer(Duration::from_secs(10)), "HTTP/1.0 connection left open");
}

#[test]
fn upstream_connections_are_reused() {
    let (t, gale) = pool(1, |c| c.upstream("keepalive", 8u32));
    let mut ports = Vec::new();
    for _ in 0..4 {
        // Each request on a new client connection: only the upstream side can be reused.
        let who: Whoami = gale.get("/whoami").expect_status(200).json();
        ports.push(who.peer_port.expect("peer port"));
        // No wait needed: gale puts the upstream connection back in its pool as it reads the
        // body's last byte, before it sends that byte on (host/src/upstream/client.rs).
    }
    ports.dedup();
    assert_eq!(ports.len(), 1, "gale opened a new upstream connection per request: {ports:?}");
    assert_eq!(t[0].stats().peers, 1);
}

#[test]
fn upstream_connections_are_reused_per_backend_under_round_robin() {
    let (_t, gale) = pool(2, |c| c);
    let mut seen: Vec<(u16, u16)> = Vec::new();
    for _ in 0..4 {
        let who: Whoami = gale.get("/whoami").expect_status(200).json();
        seen.push((who.port, who.peer_port.expect("peer port")));
    }
    // Requests 1 and 3 went to one backend, 2 and 4 to the other, each over one connection.
    assert_eq!(seen[0], seen[2], "{seen:?}");
    assert_eq!(seen[1], seen[3], "{seen:?}");
    assert_ne!(seen[0].0, seen[1].0, "{seen:?}");
}

#[test]
fn sigterm_lets_an_in_flight_request_finish_then_exits_0() {
    let (t, mut gale) = pool(1, |c| c.global("shutdown_timeout", "10s"));
    let addr = gale.addr();
    let in_flight = thread::spawn(move || Conn::open(addr).send(&Request::get("/slow?s=1")));
    wait_until(Duration::from_secs(10), "the request to reach the backend", || t[0].inflight("/slow") == 1);
    gale.signal(SIGTERM);
    let response = in_flight.join().expect("client thread");
    assert_eq!(response.status, 200, "the in-flight request was cut:\n{response}");
    let body: serde_json::Value = response.json();
    assert_eq!(body["slept"], 1.0);
    let status = gale.wait();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", gale.stderr());
    assert!(Conn::try_open(addr).is_err(), "gale still accepts connections after exiting");
}

#[test]
fn shutdown_timeout_bounds_a_request_that_would_not_finish() {
    let (t, mut gale) = pool(1, |c| c.global("shutdown_timeout", "1s"));
    let addr = gale.addr();
    let in_flight = thread::spawn(move || Conn::open(addr).try_send(&Request::get("/slow?s=60")));
    wait_until(Duration::from_secs(10), "the request to reach the backend", || t[0].inflight("/slow") == 1);
    gale.signal(SIGTERM);
    // Bounded by shutdown_timeout (1s), far below the request's 60 s: 20 s only detects a hang.
    let status = gale.wait_timeout(Duration::from_secs(20));
    assert!(status.is_some(), "gale waited past shutdown_timeout:\n{}", gale.stderr());
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(0)),
        "a drain cut by shutdown_timeout still exits 0:\n{}",
        gale.stderr()
    );
    // The cut request's connection is closed by the exiting gale: EOF, not a 200, not a hang.
    let response = in_flight.join().expect("client thread");
    gale_tests::http::assert_closed(&response, "a request cut by the shutdown");
}

#[test]
fn idle_keep_alive_connections_do_not_hold_up_shutdown() {
    let (_t, mut gale) = pool(1, |c| c.global("shutdown_timeout", "60s"));
    let mut idle = gale.conn();
    idle.send(&Request::get("/whoami")).expect_status(200);
    gale.signal(SIGTERM);
    // Nothing is in flight: gale must not wait out the 60 s for the idle connection.
    let status = gale.wait_timeout(Duration::from_secs(20));
    assert!(status.is_some(), "an idle keep-alive connection held gale after SIGTERM");
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    assert!(idle.closed_by_peer(Duration::from_secs(5)));
}

#[test]
fn sigint_and_sigquit_also_shut_down_cleanly() {
    for signal in [SIGINT, SIGQUIT] {
        let (_t, mut gale) = pool(1, |c| c);
        gale.get("/whoami").expect_status(200);
        gale.signal(signal);
        let status = gale.wait();
        assert_eq!(status.code(), Some(0), "signal {signal}; stderr:\n{}", gale.stderr());
    }
}

#[test]
fn pid_file_holds_the_process_id_and_is_removed_on_exit() {
    let (_t, mut gale) = pool(1, |c| c.global("pid_file", "gale.pid"));
    let path = gale.dir().join("gale.pid");
    wait_until(Duration::from_secs(5), "the pid file", || path.exists());
    let text = std::fs::read_to_string(&path).expect("read pid file");
    assert_eq!(text.trim(), gale.pid().to_string());
    gale.signal(SIGTERM);
    assert_eq!(gale.wait().code(), Some(0), "stderr:\n{}", gale.stderr());
    assert!(!path.exists(), "the pid file outlived gale (docs/config.md says it is removed)");
}

#[test]
fn access_log_uses_nginx_combined_format() {
    let (_t, mut gale) = pool(1, |c| c.global("access_log", "access.log"));
    let response = gale.send(
        &Request::get("/whoami?x=1").header("User-Agent", "gale-e2e/1.0").header("Referer", "http://ref.example/page"),
    );
    response.expect_status(200);
    gale.signal(SIGTERM);
    assert_eq!(gale.wait().code(), Some(0));
    let log = std::fs::read_to_string(gale.dir().join("access.log")).expect("read access.log");
    let line = log
        .lines()
        .find(|l| l.contains("/whoami?x=1"))
        .unwrap_or_else(|| panic!("no access log line for the request:\n{log}"));
    // 127.0.0.1 - - [29/Nov/2026:19:42:02 +0000] "GET /whoami?x=1 HTTP/1.1" 200 359 "ref" "ua"
    let (left, rest) = line.split_once(" [").expect("a [time] field");
    assert_eq!(left, "127.0.0.1 - -", "{line}");
    let (time, rest) = rest.split_once("] ").expect("a closing ]");
    assert_eq!(time.len(), "29/Nov/2026:19:42:02 +0000".len(), "time field {time:?} in {line}");
    let expected = format!(
        "\"GET /whoami?x=1 HTTP/1.1\" 200 {} \"http://ref.example/page\" \"gale-e2e/1.0\"",
        response.body.len()
    );
    assert_eq!(rest, expected, "{line}");
}

#[test]
fn json_access_log_to_stdout_has_one_object_per_request() {
    let (_t, gale) = pool(1, |c| c.global("access_log", "stdout").global("access_log_format", "json"));
    gale.get("/whoami?json=1").expect_status(200);
    // Lines are flushed every second: poll (the bound only detects a hang).
    wait_until(Duration::from_secs(10), "the access log line on stdout", || gale.stdout().contains("json=1"));
    let stdout = gale.stdout();
    let line = stdout.lines().find(|l| l.contains("json=1")).expect("a line for the request");
    let entry: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
    let object = entry.as_object().expect("a JSON object");
    assert!(object.values().any(|v| v == 200), "no status 200 in {line}");
    assert!(object.contains_key("duration_ms"), "no duration_ms in {line}");
}

#[test]
fn error_log_can_go_to_a_file() {
    let (_t, mut gale) = pool(1, |c| c.global("error_log", "error.log"));
    let path = gale.dir().join("error.log");
    gale.get("/whoami").expect_status(200);
    gale.signal(SIGTERM);
    assert_eq!(gale.wait().code(), Some(0));
    let log = std::fs::read_to_string(&path).expect("read error.log");
    assert!(!log.trim().is_empty(), "error.log is empty");
    assert!(!gale.stderr().contains(log.lines().next().unwrap_or("-")), "logs went to stderr as well as error.log");
}
