//! `/ready` and `/live` on the admin listener, and `shutdown_delay`: on SIGTERM `/ready` turns
//! 503 at once while gale goes on serving, then gale drains and exits.

use std::time::Duration;

use gale_tests::admin::admin_addr;
use gale_tests::http::{self, Conn, Request};
use gale_tests::{ConfigBuilder, SIGTERM, Tornado, dead_addr, run_gale, wait_until};

fn with_admin(config: ConfigBuilder) -> String {
    format!("{}\n[admin]\nlisten = \"127.0.0.1:0\"\n", config.render())
}

#[test]
fn ready_is_503_while_a_pool_has_no_live_backend_and_live_stays_200() {
    let dead = dead_addr();
    let config = ConfigBuilder::new([dead]).upstream("max_fails", 1u32).upstream("fail_timeout", "1h");
    let gale = gale_tests::Gale::start(&with_admin(config));
    let admin = admin_addr(&gale);
    // Passive health knows nothing yet: the backend counts as live.
    http::get(admin, "/ready").expect_status(200);
    // One failed attempt marks the only backend down for an hour.
    gale.get("/").expect_status(502);
    let ready = http::get(admin, "/ready");
    ready.expect_status(503);
    assert!(ready.text().contains("upstream `tornadoes` has no live backend"), "{ready}");
    http::get(admin, "/live").expect_status(200);
}

#[test]
fn sigterm_turns_ready_503_before_the_listeners_close_and_serving_goes_on_for_shutdown_delay() {
    let tornado = Tornado::spawn("app");
    let config = ConfigBuilder::new([tornado.addr()]).global("shutdown_delay", "4s");
    let mut gale = gale_tests::Gale::start(&with_admin(config));
    let admin = admin_addr(&gale);
    let addr = gale.addr();
    http::get(admin, "/ready").expect_status(200);
    let mut kept = gale.conn();
    kept.send(&Request::get("/whoami")).expect_status(200);

    gale.signal(SIGTERM);
    wait_until(Duration::from_secs(10), "/ready to answer 503", || http::get(admin, "/ready").status == 503);
    let ready = http::get(admin, "/ready");
    assert!(ready.text().contains("stopping"), "{ready}");
    // Within shutdown_delay: new connections are accepted and served, the kept-alive one too,
    // and gale is alive.
    let fresh = Conn::try_open(addr).map(|mut c| c.send(&Request::get("/whoami")));
    assert!(fresh.is_ok(), "the listener closed as soon as /ready turned 503");
    fresh.expect("connected").expect_status(200);
    let again = kept.send(&Request::get("/whoami"));
    again.expect_status(200);
    http::get(admin, "/live").expect_status(200);

    // Then the drain: the listener closes and gale exits 0.
    wait_until(Duration::from_secs(30), "the listener to close after shutdown_delay", || Conn::try_open(addr).is_err());
    let status = gale.wait();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", gale.stderr());
    assert!(gale.stderr().contains("shutdown_delay"), "the delay is logged:\n{}", gale.stderr());
}

#[test]
fn a_bad_shutdown_delay_is_a_one_line_config_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gale.toml");
    let config = ConfigBuilder::new([dead_addr()]).global("shutdown_delay", "soon").render();
    std::fs::write(&path, config).expect("write config");
    let out = run_gale(&["check", "--config", path.to_str().expect("utf-8 path")], None);
    assert_eq!(out.code(), Some(1), "{out:?}");
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    assert!(lines[0].contains("gale.toml:3:"), "FILE:LINE:COL expected: {}", lines[0]);
}

#[test]
fn a_second_sigterm_during_shutdown_delay_exits_at_once() {
    let tornado = Tornado::spawn("app");
    let config = ConfigBuilder::new([tornado.addr()]).global("shutdown_delay", "1h");
    let mut gale = gale_tests::Gale::start(&with_admin(config));
    let admin = admin_addr(&gale);
    gale.signal(SIGTERM);
    wait_until(Duration::from_secs(10), "/ready to answer 503", || http::get(admin, "/ready").status == 503);
    gale.get("/whoami").expect_status(200);
    gale.signal(SIGTERM);
    // An hour of delay is not waited out: the wait only detects a hang.
    let status = gale.wait_timeout(Duration::from_secs(20));
    assert_eq!(status.and_then(|s| s.code()), Some(1), "stderr:\n{}", gale.stderr());
}
