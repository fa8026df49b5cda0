//! A plugin's circuit breaker cannot be tripped for every client by one client's input.
//!
//! The attacker knows an input that makes a plugin fail. A trap is answered per request by the
//! attachment's `on_error` (503 fail-closed, skipped fail-open) and never quarantines the
//! plugin, so every other client keeps getting the policy; the repeated error is logged a bounded
//! number of times with a count, and the metrics count every failure. Calls that run past their
//! deadline do cost the machine: they open the breaker once they are `failures` calls and at least
//! `failure_percent` of their hook's calls in the window (`docs/plugins.md`, "The circuit
//! breaker").
//!
//! Fixtures: `test-trap` (panics on paths under `path_prefix`), `test-loop` (spins there); both
//! add `x-fixture: <name>` to the requests they let through.

use std::net::SocketAddr;
use std::time::Duration;

use gale_tests::admin::{self, admin_addr};
use gale_tests::plugins::{self, HOOK_TIMEOUT};
use gale_tests::{Gale, Tornado, Whoami, wait_until};

/// Requests with the trapping input, more than ten times the breaker's default `failures` (5),
/// which used to quarantine the plugin for everyone.
const ATTACKS: usize = 50;

/// The fixtures' message in every log line about their trap.
const TRAP_TEXT: &str = "trapping on purpose";

/// One Tornado and gale with `plugins` on `location /` (the global tenant, plugins from the
/// built folder), `breaker` (a `plugin_breaker = ...` line, or nothing for the defaults) and
/// an admin listener.
fn start(plugins: &str, breaker: &str) -> (Tornado, Gale, SocketAddr) {
    let tornado = Tornado::spawn("app");
    let dir = plugins::built_dir();
    let config = format!(
        "[global]\nthreads = 2\nplugin_dir = {dir}\nplugin_cache_dir = \"plugin-cache\"\n\
         plugin_hook_timeout = \"{HOOK_TIMEOUT}\"\n{breaker}\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [upstream.app]\nservers = [\"{backend}\"]\n\n\
         [[server]]\nlisten = [\"127.0.0.1:0\"]\n\
         [[server.location]]\npath = \"/\"\nproxy = {{ pass = \"app\" }}\nplugins = [{plugins}]\n",
        dir = serde_json::to_string(&dir.display().to_string()).expect("string"),
        backend = tornado.addr(),
    );
    let gale = Gale::start(&config);
    let admin = admin_addr(&gale);
    (tornado, gale, admin)
}

/// A normal client's request: 200, and the policy ran on it (`x-fixture` reached the backend).
#[track_caller]
fn normal_request_gets_the_policy(gale: &Gale, fixture: &str, round: usize) {
    let response = gale.get("/whoami");
    assert_eq!(response.status, 200, "round {round}: a normal client was refused:\n{response}");
    let who: Whoami = response.json();
    assert_eq!(who.header("x-fixture"), Some(fixture), "round {round}: the policy did not run for a normal client");
}

/// `gale_plugin_calls_total` of the global tenant's `plugin` in on-request, by `outcome`.
fn calls(admin: SocketAddr, plugin: &str, outcome: &str) -> f64 {
    let labels = [("tenant", "global"), ("plugin", plugin), ("hook", "on-request"), ("outcome", outcome)];
    admin::metrics(admin).get("gale_plugin_calls_total", &labels).unwrap_or(0.0)
}

/// The global tenant's `plugin` in `/status`.
#[track_caller]
fn breaker_status(admin: SocketAddr, plugin: &str) -> serde_json::Value {
    let status = admin::status(admin);
    let tenants = status["plugins"]["tenants"].as_array().unwrap_or_else(|| panic!("no tenants in {status:#}"));
    let global = tenants.iter().find(|t| t["name"] == "global").unwrap_or_else(|| panic!("{status:#}"));
    let plugins = global["plugins"].as_array().unwrap_or_else(|| panic!("{status:#}"));
    plugins.iter().find(|p| p["name"] == plugin).unwrap_or_else(|| panic!("no {plugin} in {status:#}")).clone()
}

/// The counts in gale's "(N more like this suppressed ...)" notes about the trap.
fn suppressed_counts(log: &str) -> Vec<u64> {
    let note = "more like this suppressed";
    log.split(note)
        .take(log.matches(note).count())
        .filter_map(|before| before.rsplit('(').next()?.trim().parse().ok())
        .collect()
}

/// After the attack, the log has a bounded number of lines about the trap; waits (sending one
/// more trapping request at a time, bounded by the hang guard) until its lines and their
/// suppressed counts account for every trap of the attack, and checks them against the traps the
/// metrics counted.
#[track_caller]
fn log_is_bounded_and_counts_the_repeats(gale: &Gale, admin: SocketAddr, attack: &str) {
    let lines = gale.stderr().matches(TRAP_TEXT).count();
    assert!(lines >= 1, "the trap was never logged:\n{}", gale.stderr());
    // One line per request (the old behaviour) is ATTACKS lines; one per 5 s is a handful.
    assert!(lines < ATTACKS / 5, "{lines} log lines for {ATTACKS} identical traps:\n{}", gale.stderr());
    let mut extra = 0;
    let reported = |log: &str| suppressed_counts(log).iter().sum::<u64>() + log.matches(TRAP_TEXT).count() as u64;
    wait_until(Duration::from_secs(30), "log lines accounting for every trap of the attack", || {
        if reported(&gale.stderr()) >= ATTACKS as u64 {
            return true;
        }
        gale.get(attack).expect_status(503);
        extra += 1;
        false
    });
    let log = gale.stderr();
    assert!(suppressed_counts(&log).iter().any(|n| *n > 0), "no line reported suppressed repeats:\n{log}");
    let traps = calls(admin, "test-trap", "trap") as u64;
    assert_eq!(traps, (ATTACKS + extra) as u64, "the metrics count every trap");
    // Every trap is logged or counted in a later line, except those after the last line.
    assert!(reported(&log) <= traps, "{} reported of {traps} traps:\n{log}", reported(&log));
}

#[test]
fn one_client_trapping_a_fail_closed_plugin_gets_503_and_every_other_client_keeps_the_policy() {
    let attach = r#"{ name = "test-trap", config = { path_prefix = "/attack" } }"#;
    let (tornado, gale, admin) = start(attach, "");
    for round in 0..ATTACKS {
        let response = gale.get("/attack/whoami");
        assert_eq!(response.status, 503, "round {round}: the trapping request must get on_error's answer:\n{response}");
        normal_request_gets_the_policy(&gale, "test-trap", round);
    }
    assert_eq!(tornado.hits("/attack/whoami"), 0, "a refused request reached the backend");
    assert_eq!(calls(admin, "test-trap", "trap"), ATTACKS as f64);
    assert_eq!(calls(admin, "test-trap", "ok"), ATTACKS as f64);
    assert_eq!(calls(admin, "test-trap", "quarantined"), 0.0);
    let plugin = breaker_status(admin, "test-trap");
    assert_eq!(plugin["breaker"], "closed", "{plugin:#}");
    assert_eq!(plugin["recent_failures"], 0, "traps are not failures the breaker counts: {plugin:#}");
    log_is_bounded_and_counts_the_repeats(&gale, admin, "/attack/whoami");
    let labels = [("tenant", "global"), ("plugin", "test-trap"), ("hook", "on-request")];
    assert_eq!(admin::metrics(admin).value("gale_plugin_quarantines_total", &labels), 0.0);
}

#[test]
fn one_client_trapping_a_fail_open_plugin_does_not_switch_the_policy_off_for_others() {
    let attach = r#"{ name = "test-trap", on_error = "fail-open", config = { path_prefix = "/attack" } }"#;
    let (tornado, gale, admin) = start(attach, "");
    for round in 0..ATTACKS {
        let response = gale.get("/attack/whoami");
        assert_eq!(response.status, 200, "round {round}: fail-open lets the request through:\n{response}");
        let who: Whoami = response.json();
        assert_eq!(who.header("x-fixture"), None, "round {round}: the trapped call cannot have edited it");
        normal_request_gets_the_policy(&gale, "test-trap", round);
    }
    assert_eq!(tornado.hits("/attack/whoami"), ATTACKS as u64);
    assert_eq!(calls(admin, "test-trap", "trap"), ATTACKS as f64);
    assert_eq!(calls(admin, "test-trap", "quarantined"), 0.0);
    assert_eq!(breaker_status(admin, "test-trap")["breaker"], "closed");
    let lines = gale.stderr().matches(TRAP_TEXT).count();
    assert!((1..ATTACKS / 5).contains(&lines), "{lines} log lines for {ATTACKS} identical traps:\n{}", gale.stderr());
}

#[test]
fn a_plugin_that_spins_on_one_clients_input_among_good_calls_stays_in_service_until_the_attack_dominates() {
    let attach = r#"{ name = "test-loop", config = { path_prefix = "/attack" } }"#;
    // A minute's window holds the whole test, so the counts below are exact.
    let (_tornado, gale, admin) = start(attach, r#"plugin_breaker = { window = "1m" }"#);
    // One spinning request in three: more than `failures` (5) timeouts, but a third of the
    // on-request calls (the share is per hook; a normal request also makes an on-response call).
    let rounds = 8;
    for round in 0..rounds {
        gale.get("/attack/whoami").expect_status(503);
        for _ in 0..2 {
            normal_request_gets_the_policy(&gale, "test-loop", round);
        }
    }
    assert_eq!(calls(admin, "test-loop", "timeout"), rounds as f64);
    let plugin = breaker_status(admin, "test-loop");
    assert_eq!(plugin["breaker"], "closed", "{plugin:#}");
    assert_eq!((plugin["recent_failures"].as_u64(), plugin["recent_calls"].as_u64()), (Some(8), Some(40)));

    // An attacker whose spinning calls are half of the hook's calls costs the machine a worker
    // per call until the deadline: that opens the breaker (fail-closed: 503 for everyone, the
    // plugin is not run until a retry ends within its limits).
    let mut attacks = 0;
    wait_until(Duration::from_secs(60), "the breaker to open", || {
        if breaker_status(admin, "test-loop")["breaker"] == "open" {
            return true;
        }
        assert!(attacks < 40, "the breaker stayed closed after {attacks} spinning calls in a row");
        gale.get("/attack/whoami").expect_status(503);
        attacks += 1;
        false
    });
    // (8 + 8) timeouts of (24 + 8) on-request calls: half.
    assert_eq!(attacks, 8);
    assert!(gale.stderr().contains("plugin quarantined: 16 of its 32 on-request calls"), "{}", gale.stderr());
    assert_eq!(calls(admin, "test-loop", "timeout"), 16.0, "the metrics count every timeout");
    gale.get("/whoami").expect_status(503);
    assert_eq!(calls(admin, "test-loop", "quarantined"), 1.0);
}

#[test]
fn a_plugin_that_runs_past_its_deadline_on_every_call_is_quarantined_after_the_minimum_volume() {
    let attach = r#"{ name = "test-loop" }"#;
    let breaker = r#"plugin_breaker = { failures = 5, backoff = "1m", max_backoff = "1m" }"#;
    let (tornado, gale, admin) = start(attach, breaker);
    for call in 1..5 {
        gale.get("/whoami").expect_status(503);
        let plugin = breaker_status(admin, "test-loop");
        assert_eq!(plugin["breaker"], "closed", "below the minimum volume after {call} calls: {plugin:#}");
        assert_eq!((plugin["recent_failures"].as_u64(), plugin["recent_calls"].as_u64()), (Some(call), Some(call)));
    }
    gale.get("/whoami").expect_status(503);
    let plugin = breaker_status(admin, "test-loop");
    assert_eq!(plugin["breaker"], "open", "{plugin:#}");
    let m = admin::metrics(admin);
    assert_eq!(m.value("gale_plugin_quarantined", &[("tenant", "global"), ("plugin", "test-loop")]), 1.0);
    let labels = [("tenant", "global"), ("plugin", "test-loop"), ("hook", "on-request")];
    assert_eq!(m.value("gale_plugin_quarantines_total", &labels), 1.0);
    // Quarantined: refused without running (no deadline spent), for every client.
    for _ in 0..3 {
        gale.get("/whoami").expect_status(503);
    }
    assert_eq!(calls(admin, "test-loop", "timeout"), 5.0);
    assert_eq!(calls(admin, "test-loop", "quarantined"), 3.0);
    assert_eq!(tornado.hits("/whoami"), 0);
    let log = gale.stderr();
    assert!(log.contains("plugin quarantined: 5 of its 5 on-request calls"), "{log}");
    assert_eq!(log.matches("plugin quarantined").count(), 1, "{log}");
}
