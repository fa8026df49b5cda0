//! Backends that are down, slow, or killed by the request: next_upstream, 502 and 504.

use std::time::Duration;

use gale_tests::http::Request;
use gale_tests::{ConfigBuilder, Tornado, Whoami, dead_addr};

use crate::pool;

#[test]
fn a_dead_backend_is_skipped_without_a_client_visible_error_for_get_and_post() {
    let live = Tornado::spawn_pool(2);
    // The dead one first: round robin's first pick.
    let mut backends = vec![dead_addr()];
    backends.extend(live.iter().map(Tornado::addr));
    let gale = ConfigBuilder::new(backends).start();
    for i in 0..6 {
        let who: Whoami = gale.get("/whoami").expect_status(200).json();
        assert!(live.iter().any(|t| t.port() == who.port), "GET {i}: {who:?}");
        let body = format!("post number {i}");
        let echo: serde_json::Value = gale.send(&Request::post("/echo", body.clone())).expect_status(200).json();
        assert_eq!(echo["length"], body.len(), "POST {i}: {echo}");
    }
}

#[test]
fn every_backend_down_is_502() {
    let gale = ConfigBuilder::new([dead_addr(), dead_addr()]).start();
    for _ in 0..3 {
        gale.get("/whoami").expect_status(502);
        gale.send(&Request::post("/echo", "x")).expect_status(502);
    }
}

#[test]
fn next_upstream_off_does_not_skip_a_dead_backend() {
    let live = Tornado::spawn("live");
    let gale = ConfigBuilder::new([dead_addr(), live.addr()]).upstream("next_upstream", "off").start();
    // Round robin sends one of the first two requests to the dead backend.
    let statuses: Vec<u16> = (0..2).map(|_| gale.get("/whoami").status).collect();
    assert!(statuses.contains(&502), "statuses: {statuses:?}");
}

#[test]
fn a_slow_backend_is_504_and_never_retried_elsewhere() {
    for mode in ["connect", "error"] {
        let (tornadoes, gale) = pool(2, |c| c.upstream("next_upstream", mode).upstream("read_timeout", "1s"));
        let response = gale.get("/slow?s=4");
        assert_eq!(response.status, 504, "next_upstream = {mode}:\n{response}");
        let hits: Vec<u64> = tornadoes.iter().map(|t| t.hits("/slow")).collect();
        assert_eq!(
            hits.iter().sum::<u64>(),
            1,
            "next_upstream = {mode}: a timed-out request was sent again: /slow hits {hits:?}"
        );
        // Both backends still serve.
        for _ in 0..2 {
            gale.get("/whoami").expect_status(200);
        }
    }
}

/// How many of `tornadoes` died of a `/die` request, checking that every survivor never
/// received one (so none is merely slow to die).
fn dead_after_query_of_death(tornadoes: &[Tornado]) -> usize {
    let mut dead = 0;
    for t in tornadoes {
        match t.try_stats() {
            Some(stats) => {
                let hits = stats.hits.get("/die").copied().unwrap_or(0);
                assert_eq!(hits, 0, "{} received /die but is alive", t.name());
            }
            None => {
                assert!(
                    t.wait_exit(Duration::from_secs(10)),
                    "{} does not answer but is alive:\n{}",
                    t.name(),
                    t.stderr()
                );
                dead += 1;
            }
        }
    }
    dead
}

#[test]
fn a_query_of_death_kills_only_one_backend_in_connect_mode() {
    let (tornadoes, gale) = pool(4, |c| c.upstream("next_upstream", "connect"));
    let response = gale.get("/die");
    assert_eq!(response.status, 502, "{response}");
    assert_eq!(dead_after_query_of_death(&tornadoes), 1, "connect mode retried the query");
    // The pool keeps serving from the three survivors.
    for _ in 0..8 {
        gale.get("/whoami").expect_status(200);
    }
}

/// A query of death sent on a kept-alive connection looks, from gale, like a connection the
/// backend had closed: gale resends it once on a fresh connection to the same backend, which
/// is refused since the request killed it. That refusal must not send it to the next backend.
#[test]
fn a_query_of_death_on_a_kept_alive_connection_kills_only_one_backend() {
    for _ in 0..10 {
        let (tornadoes, gale) = pool(4, |c| c.upstream("next_upstream", "connect"));
        // An idle kept-alive connection to every backend.
        for _ in 0..8 {
            gale.get("/whoami").expect_status(200);
        }
        let response = gale.get("/die");
        assert_eq!(response.status, 502, "{response}");
        assert_eq!(dead_after_query_of_death(&tornadoes), 1, "the query of death was sent to another backend");
    }
}

#[test]
fn a_query_of_death_is_retried_and_kills_more_backends_in_error_mode() {
    // nginx's `proxy_next_upstream error`: a connection closed before the response header is
    // retried on the next backend, which the same query kills too. This is what the reference configuration's
    // config did, and why "connect" is gale's default.
    let (tornadoes, gale) = pool(4, |c| c.upstream("next_upstream", "error"));
    let response = gale.get("/die");
    assert_eq!(response.status, 502, "{response}");
    let dead = dead_after_query_of_death(&tornadoes);
    assert!(dead >= 2, "error mode should have retried the GET: {dead} died");
}

#[test]
fn a_post_query_of_death_is_not_retried_even_in_error_mode() {
    let (tornadoes, gale) = pool(4, |c| c.upstream("next_upstream", "error"));
    let response = gale.send(&Request::post("/die", "payload"));
    assert_eq!(response.status, 502, "{response}");
    assert_eq!(dead_after_query_of_death(&tornadoes), 1, "a POST is not idempotent: it must not be retried");
}

#[test]
fn a_backend_that_comes_back_gets_traffic_again_after_fail_timeout() {
    let steady = Tornado::spawn("steady");
    let flaky = Tornado::spawn("flaky");
    let port = flaky.port();
    let gale = ConfigBuilder::new([steady.addr(), flaky.addr()])
        .upstream("max_fails", 1u32)
        .upstream("fail_timeout", "1s")
        .start();
    drop(flaky);
    for _ in 0..4 {
        let who: Whoami = gale.get("/whoami").expect_status(200).json();
        assert_eq!(who.port, steady.port(), "a request reached the dead backend's port");
    }
    let back = Tornado::spawn_at("flaky-again", port);
    // Once fail_timeout has passed, the backend is tried again and serves.
    let mut seen = Vec::new();
    gale_tests::wait_until(Duration::from_secs(15), "the backend to get traffic again", || {
        let who: Whoami = gale.get("/whoami").expect_status(200).json();
        seen.push(who.port);
        who.port == back.port()
    });
}

#[test]
fn a_restarted_backend_is_served_despite_stale_pooled_connections() {
    // supervisord restarts a crashed Tornado on the same port: gale's idle keep-alive
    // connections to the old process are dead, and must not turn into client errors.
    let first = Tornado::spawn("first");
    let port = first.port();
    let gale = ConfigBuilder::new([first.addr()]).start();
    for _ in 0..3 {
        gale.get("/whoami").expect_status(200);
    }
    drop(first);
    let second = Tornado::spawn_at("second", port);
    for i in 0..3 {
        let response = gale.get("/whoami");
        assert_eq!(response.status, 200, "request {i} after the restart:\n{response}");
        assert_eq!(response.json::<Whoami>().name, "second");
    }
    drop(second);
}
