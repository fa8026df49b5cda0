//! The upstream keep-alive pool's idle timeout (`keepalive_timeout` in the upstream block, as
//! nginx's): connections left idle after a burst are closed by gale, seen from the real Tornado
//! backend's side (`/stats` counts its open client connections).

use std::time::Duration;

use gale_tests::{ConfigBuilder, Tornado, Whoami, wait_until};

/// Concurrent slow requests, so gale has to open this many upstream connections.
const BURST: usize = 4;

#[test]
fn idle_upstream_connections_are_closed_after_keepalive_timeout() {
    let tornado = Tornado::spawn("keepalive");
    let gale = ConfigBuilder::new([tornado.addr()]).upstream("keepalive_timeout", "1s").start();
    let addr = gale.addr();
    let clients: Vec<_> =
        (0..BURST).map(|_| std::thread::spawn(move || gale_tests::http::get(addr, "/slow?s=0.5"))).collect();
    for client in clients {
        client.join().expect("client thread").expect_status(200);
    }
    // gale kept at least two of the burst's connections for reuse (the one asking is counted too).
    let open = tornado.stats().open_connections;
    assert!(open >= 3, "gale kept its idle connections after the burst: {open} open\n{}", gale.stderr());
    // Then closes every one of them once idle for 1 s; the deadline only catches a gale that never does.
    wait_until(Duration::from_secs(20), "gale to close its idle upstream connections", || {
        tornado.stats().open_connections == 1
    });
    // And opens a new one when the next request comes.
    let who: Whoami = gale.get("/whoami").expect_status(200).json();
    assert_eq!(who.name, "keepalive");
}

#[test]
fn a_zero_keepalive_timeout_is_a_config_error_with_its_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gale.toml");
    let text = ConfigBuilder::new(["127.0.0.1:9".parse().expect("addr")]).upstream("keepalive_timeout", "0s").render();
    std::fs::write(&path, &text).expect("write config");
    let run = gale_tests::run_gale(&["check", "--config", path.to_str().expect("UTF-8 path")], None);
    assert_eq!(run.code(), Some(1), "{run:?}");
    let line = text.lines().position(|l| l.starts_with("keepalive_timeout")).expect("the key") + 1;
    let want = format!("gale.toml:{line}:21: keepalive_timeout must be more than 0s");
    assert!(run.stderr.contains(&want), "want {want:?} in:\n{}", run.stderr);
}
