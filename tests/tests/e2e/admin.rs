//! The admin listener: `/metrics` after real traffic, `/status` with backend health and
//! in-flight counts, and the loopback-only rule.

use std::time::Duration;

use gale_tests::admin::{self, admin_addr};
use gale_tests::{Conn, Gale, Tornado, dead_addr, run_gale, wait_until};

/// `tornadoes` behind `server_name = ["metrics.test"]`, a pool `dead` on an address where
/// nothing listens at `location /dead/`, and the admin listener on an OS-assigned port.
fn admin_config(tornado: &Tornado, dead: std::net::SocketAddr) -> String {
    format!(
        "[global]\nthreads = 2\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [upstream.tornadoes]\nservers = [\"{}\"]\n\n\
         [upstream.dead]\nservers = [\"{dead}\"]\nmax_fails = 1\nfail_timeout = \"1h\"\n\n\
         [[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"metrics.test\"]\n\
         [[server.location]]\npath = \"/dead/\"\nproxy = {{ pass = \"dead\" }}\n\
         [[server.location]]\npath = \"/\"\nproxy = {{ pass = \"tornadoes\" }}\n",
        tornado.addr()
    )
}

#[test]
fn metrics_count_responses_by_server_and_status_and_attempts_by_outcome() {
    let tornado = Tornado::spawn("app");
    let dead = dead_addr();
    let gale = Gale::start(&admin_config(&tornado, dead));
    let admin = admin_addr(&gale);
    assert!(admin.ip().is_loopback());
    assert_ne!(admin, gale.addr(), "the admin listener is not a public one");

    for _ in 0..5 {
        gale.get("/whoami").expect_status(200);
    }
    gale.get("/no-such-handler").expect_status(404); // Tornado's 404, proxied
    gale.get("/dead/x").expect_status(502);

    let m = admin::metrics(admin);
    let backend = tornado.addr().to_string();
    let dead_backend = dead.to_string();
    let server = [("server", "metrics.test")];
    let requests = |status: &str| m.value("gale_requests_total", &[server[0], ("status", status)]);
    assert_eq!(requests("200"), 5.0);
    assert_eq!(requests("404"), 1.0);
    assert_eq!(requests("502"), 1.0);

    let attempts = |up: &str, be: &str, outcome: &str| {
        m.value("gale_upstream_attempts_total", &[("upstream", up), ("backend", be), ("outcome", outcome)])
    };
    assert_eq!(attempts("tornadoes", &backend, "response"), 6.0);
    assert_eq!(attempts("tornadoes", &backend, "connect_error"), 0.0);
    assert_eq!(attempts("dead", &dead_backend, "connect_error"), 1.0);
    assert_eq!(attempts("dead", &dead_backend, "response"), 0.0);

    // The latency histogram: every response counted in +Inf, buckets cumulative.
    let hist = |le: &str| {
        m.value(
            "gale_upstream_response_seconds_bucket",
            &[("upstream", "tornadoes"), ("backend", &backend), ("le", le)],
        )
    };
    assert_eq!(hist("+Inf"), 6.0);
    assert!(hist("0.001") <= hist("0.1") && hist("0.1") <= hist("+Inf"), "buckets must be cumulative:\n{}", m.text);
    assert_eq!(
        m.value("gale_upstream_response_seconds_count", &[("upstream", "tornadoes"), ("backend", &backend)]),
        6.0
    );

    // Admin requests are not counted as traffic, and /metrics is not served publicly.
    let again = admin::metrics(admin);
    assert_eq!(again.value("gale_requests_total", &[server[0], ("status", "200")]), 5.0);
    let public = gale.get("/metrics");
    assert!(!public.text().contains("gale_requests_total"), "the public listener served metrics:\n{public}");
    gale_tests::http::get(admin, "/nothing-here").expect_status(404);
}

#[test]
fn status_shows_a_dead_backend_down_and_in_flight_requests() {
    let tornado = Tornado::spawn("app");
    let dead = dead_addr();
    let gale = Gale::start(&admin_config(&tornado, dead));
    let admin = admin_addr(&gale);

    let backend_state = |pool: &str| {
        let status = admin::status(admin);
        let upstream = status["upstreams"]
            .as_array()
            .and_then(|ups| ups.iter().find(|u| u["name"] == pool).cloned())
            .unwrap_or_else(|| panic!("no upstream {pool} in /status: {status:#}"));
        upstream["backends"][0].clone()
    };

    let status = admin::status(admin);
    assert_eq!(status["listening"], serde_json::json!([gale.addr().to_string()]), "{status:#}");
    let before = backend_state("dead");
    assert_eq!(before["address"], dead.to_string());
    assert_eq!(before["state"], "up", "no attempt failed yet: {before}");

    gale.get("/dead/x").expect_status(502);
    assert_eq!(backend_state("dead")["state"], "down", "a failed connect with max_fails = 1 marks it down");
    assert_eq!(backend_state("tornadoes")["state"], "up");

    // A request whose body is still coming is in flight on its backend.
    assert_eq!(backend_state("tornadoes")["in_flight"], 0);
    let mut conn = Conn::open(gale.addr());
    let host = gale.addr().to_string();
    conn.write_raw(format!("POST /echo HTTP/1.1\r\nHost: {host}\r\nContent-Length: 10\r\n\r\nhello").as_bytes())
        .expect("send half a request");
    wait_until(Duration::from_secs(20), "/status to show the request in flight", || {
        backend_state("tornadoes")["in_flight"] == 1
    });
    conn.write_raw(b"world").expect("send the rest");
    conn.read_response(false).expect("the echo").expect_status(200);
    wait_until(Duration::from_secs(20), "/status to show nothing in flight", || {
        backend_state("tornadoes")["in_flight"] == 0
    });
}

#[test]
fn a_non_loopback_admin_listen_is_refused_by_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gale.toml");
    let base = "[upstream.app]\nservers = [\"127.0.0.1:9\"]\n\n[[server]]\nlisten = [\"127.0.0.1:0\"]\n\
                [[server.location]]\npath = \"/\"\nproxy = { pass = \"app\" }\n";
    let check = |admin: &str| {
        std::fs::write(&path, format!("[admin]\n{admin}\n\n{base}")).expect("write config");
        run_gale(&["check", "--config", path.to_str().expect("UTF-8")], None)
    };

    let out = check("listen = \"0.0.0.0:9901\"");
    assert_ne!(out.code(), Some(0), "a public admin listener must be refused: {out:?}");
    assert!(out.stderr.contains("gale.toml:2:") && out.stderr.contains("loopback"), "{out:?}");
    assert!(out.stderr.contains("allow_remote"), "the error must say how to allow it: {out:?}");

    assert_eq!(check("listen = \"0.0.0.0:9901\"\nallow_remote = true").code(), Some(0));
    assert_eq!(check("listen = \"127.0.0.1:9901\"").code(), Some(0));
    assert_eq!(check("listen = \"[::1]:9901\"").code(), Some(0));
}
