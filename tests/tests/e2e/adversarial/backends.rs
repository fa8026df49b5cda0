//! Hung and failing backends: timeouts count towards max_fails, the backend leaves rotation.
//!
//! A backend that accepts connections and never answers (a SIGSTOPped Tornado: the kernel
//! completes the handshake) costs each request it gets a `read_timeout` and a 504. Like nginx
//! with `proxy_next_upstream timeout`, gale counts those timeouts towards `max_fails`, so the
//! backend leaves rotation for `fail_timeout` (nginx also retries them elsewhere; gale never
//! retries a timeout, which may be running on the backend).

use std::time::Duration;

use gale_tests::admin::{self, admin_addr};
use gale_tests::{ConfigBuilder, Gale, SIGCONT, SIGSTOP, Tornado, Whoami, wait_until};

/// `max_fails` in these tests.
const MAX_FAILS: u32 = 2;

/// Two Tornado backends, gale with the admin listener, `read_timeout = 1s`, `max_fails = 2` and
/// `fail_timeout`.
fn site(fail_timeout: &str) -> (Vec<Tornado>, Gale) {
    let tornadoes = Tornado::spawn_pool(2);
    let text = ConfigBuilder::new(tornadoes.iter().map(Tornado::addr))
        .upstream("read_timeout", "1s")
        .upstream("max_fails", MAX_FAILS)
        .upstream("fail_timeout", fail_timeout)
        .render();
    let gale = Gale::start(&format!("[admin]\nlisten = \"127.0.0.1:0\"\n\n{text}"));
    (tornadoes, gale)
}

/// The `/status` state (`up`, `down`) of `backend`.
#[track_caller]
fn state(gale: &Gale, backend: &Tornado) -> String {
    let status = admin::status(admin_addr(gale));
    let backends = status["upstreams"][0]["backends"].as_array().expect("backends in /status").clone();
    let entry = backends
        .iter()
        .find(|b| b["address"] == backend.addr().to_string())
        .unwrap_or_else(|| panic!("{} not in /status: {status}", backend.addr()));
    entry["state"].as_str().expect("state").to_owned()
}

#[test]
fn a_hung_backend_leaves_rotation_after_max_fails_timeouts_and_rejoins_after_fail_timeout() {
    let (tornadoes, gale) = site("10s");
    let (live, hung) = (&tornadoes[0], &tornadoes[1]);
    hung.signal(SIGSTOP);

    // Round robin gives the hung backend every other request, each a 504 after read_timeout,
    // until it has timed out max_fails times.
    let mut timeouts = 0;
    for _ in 0..4 * MAX_FAILS {
        if state(&gale, hung) == "down" {
            break;
        }
        let response = gale.get("/whoami");
        match response.status {
            200 => assert_eq!(response.json::<Whoami>().port, live.port(), "{response}"),
            504 => timeouts += 1,
            _ => panic!("neither the live backend's 200 nor a timeout:\n{response}"),
        }
    }
    assert_eq!(state(&gale, hung), "down", "{timeouts} timeouts and the hung backend is still in rotation");
    assert_eq!(timeouts, MAX_FAILS, "the backend left rotation after max_fails timeouts");
    assert_eq!(state(&gale, live), "up");

    // Within fail_timeout every request goes to the live backend.
    for _ in 0..6 {
        let response = gale.get("/whoami");
        response.expect_status(200);
        assert_eq!(response.json::<Whoami>().port, live.port(), "{response}");
    }
    assert_eq!(state(&gale, hung), "down", "fail_timeout (10s) ended during six quick requests");

    // Back from SIGSTOP: after fail_timeout it is in rotation and serves again.
    hung.signal(SIGCONT);
    wait_until(Duration::from_secs(30), "the backend back in /status after fail_timeout", || {
        state(&gale, hung) == "up"
    });
    let mut served_by_it = false;
    for _ in 0..4 {
        let response = gale.get("/whoami");
        response.expect_status(200);
        served_by_it |= response.json::<Whoami>().port == hung.port();
    }
    assert!(served_by_it, "the backend did not rejoin the rotation");
}

/// Only timeouts count, and a response in between starts the count again: one slow answer
/// (a 504) does not eject a backend when max_fails > 1.
#[test]
fn one_slow_answer_does_not_eject_a_backend_when_max_fails_is_above_one() {
    let (tornadoes, gale) = site("1h");
    for round in 0..2 {
        gale.get("/slow?s=3").expect_status(504);
        let mut ports = Vec::new();
        for _ in 0..4 {
            let response = gale.get("/whoami");
            response.expect_status(200);
            ports.push(response.json::<Whoami>().port);
        }
        for t in &tornadoes {
            assert_eq!(state(&gale, t), "up", "round {round}");
            assert!(ports.contains(&t.port()), "round {round}: {} got no request: {ports:?}", t.port());
        }
    }
}
