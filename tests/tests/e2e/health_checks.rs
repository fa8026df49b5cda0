//! Active health checks: real Tornado backends whose `/health` the test flips, a backend that
//! accepts and never answers, and one that answers too slowly; `/status` and `/metrics` show
//! the verdict, and the balancer follows it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gale_tests::admin::{self, admin_addr};
use gale_tests::config::Raw;
use gale_tests::{ConfigBuilder, Gale, Tornado, Whoami, wait_until};

/// Checks every 200 ms, 500 ms timeout, down after 2 failures, up after 2 passes.
fn checked(backends: impl IntoIterator<Item = SocketAddr>) -> ConfigBuilder {
    ConfigBuilder::new(backends)
        .upstream(
            "health_check",
            Raw(r#"{ path = "/health", interval = "200ms", timeout = "500ms", rise = 2, fall = 2, expect_status = "2xx" }"#.into()),
        )
        .admin()
}

/// The `/status` entry of backend `addr`.
fn backend(gale: &Gale, addr: SocketAddr) -> serde_json::Value {
    let status = admin::status(admin_addr(gale));
    status["upstreams"][0]["backends"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["address"] == addr.to_string()).cloned())
        .unwrap_or_else(|| panic!("no backend {addr} in /status: {status:#}"))
}

fn up_metric(gale: &Gale, addr: SocketAddr) -> f64 {
    admin::metrics(admin_addr(gale))
        .value("gale_upstream_backend_up", &[("upstream", "tornadoes"), ("backend", &addr.to_string())])
}

fn wait_state(gale: &Gale, addr: SocketAddr, state: &str) {
    wait_until(Duration::from_secs(15), &format!("{addr} to be {state} in /status"), || {
        backend(gale, addr)["health_check"]["state"] == state
    });
}

#[test]
fn a_failing_backend_leaves_rotation_and_rejoins_after_rise_passes() {
    let tornadoes = Tornado::spawn_pool(2);
    let (sick, well) = (&tornadoes[0], &tornadoes[1]);
    let gale = checked(tornadoes.iter().map(Tornado::addr)).start();
    wait_until(Duration::from_secs(15), "checks to pass", || {
        backend(&gale, sick.addr())["health_check"]["passed"].as_u64() >= Some(2)
    });
    assert_eq!(sick.stats().health_host.as_deref(), Some("tornadoes"), "checks send the upstream's name as Host");

    sick.set_health(503, Duration::ZERO);
    wait_state(&gale, sick.addr(), "down");
    let entry = backend(&gale, sick.addr());
    assert_eq!(entry["state"], "down", "{entry}");
    assert!(entry["health_check"]["last_error"].as_str().is_some_and(|e| e.contains("503")), "{entry}");
    assert_eq!(up_metric(&gale, sick.addr()), 0.0);
    assert_eq!(up_metric(&gale, well.addr()), 1.0);
    let before = sick.hits("/whoami");
    for _ in 0..10 {
        let who: Whoami = gale.get("/whoami").expect_status(200).json();
        assert_eq!(who.port, well.port(), "a backend failing its checks got a request");
    }
    assert_eq!(sick.hits("/whoami"), before);
    wait_until(Duration::from_secs(10), "the failure logged", || gale.stderr().contains("out of rotation"));

    sick.set_health(200, Duration::ZERO);
    wait_state(&gale, sick.addr(), "up");
    assert_eq!(up_metric(&gale, sick.addr()), 1.0);
    let ports: Vec<u16> = (0..4).map(|_| gale.get("/whoami").expect_status(200).json::<Whoami>().port).collect();
    assert!(ports.contains(&sick.port()), "back in rotation: {ports:?}");
    let metrics = admin::metrics(admin_addr(&gale));
    let failed = metrics.value(
        "gale_upstream_health_checks_total",
        &[("upstream", "tornadoes"), ("backend", &sick.addr().to_string()), ("result", "fail")],
    );
    assert!(failed >= 2.0, "failed checks counted: {failed}");
}

/// A backend that accepts connections and never answers; keeps them open.
struct Hung {
    addr: SocketAddr,
    accepted: Arc<Mutex<Vec<TcpStream>>>,
}

impl Hung {
    fn start() -> Hung {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let keep = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut kept = keep.lock().unwrap_or_else(|e| e.into_inner());
                if kept.len() > 200 {
                    return;
                }
                kept.push(stream);
            }
        });
        Hung { addr, accepted }
    }

    fn connections(&self) -> usize {
        self.accepted.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[test]
fn a_hung_backend_is_marked_down_after_fall_timeouts() {
    let tornado = Tornado::spawn("live");
    let hung = Hung::start();
    let gale = checked([hung.addr, tornado.addr()]).start();
    wait_state(&gale, hung.addr, "down");
    assert!(hung.connections() >= 2, "each check on a connection of its own");
    let entry = backend(&gale, hung.addr);
    assert!(entry["health_check"]["last_error"].as_str().is_some_and(|e| e.contains("no answer within")), "{entry}");
    assert_eq!(up_metric(&gale, hung.addr), 0.0);
    for _ in 0..6 {
        gale.get("/whoami").expect_status(200);
    }
}

#[test]
fn a_health_answer_slower_than_the_timeout_is_a_failure() {
    let tornadoes = Tornado::spawn_pool(2);
    let slow = &tornadoes[0];
    slow.set_health(200, Duration::from_secs(2));
    let gale = checked(tornadoes.iter().map(Tornado::addr)).start();
    wait_state(&gale, slow.addr(), "down");
    assert!(slow.hits("/health") >= 2, "the slow backend was asked");
    for _ in 0..6 {
        let who: Whoami = gale.get("/whoami").expect_status(200).json();
        assert_eq!(who.port, tornadoes[1].port());
    }
}

#[test]
fn the_only_backend_failing_its_checks_answers_502_until_it_passes() {
    let tornado = Tornado::spawn("only");
    tornado.set_health(500, Duration::ZERO);
    let gale = checked([tornado.addr()]).start();
    wait_state(&gale, tornado.addr(), "down");
    gale.get("/whoami").expect_status(502);
    tornado.set_health(200, Duration::ZERO);
    wait_state(&gale, tornado.addr(), "up");
    gale.get("/whoami").expect_status(200);
}

#[test]
fn supervised_children_join_rotation_by_the_same_check() {
    let base = crate::supervise::free_ports(1);
    let gale = crate::supervise::supervised_config(crate::supervise::tornado_process(1, base, ""))
        .upstream(
            "health_check",
            Raw(r#"{ path = "/health", interval = "200ms", timeout = "500ms", rise = 2, fall = 2 }"#.into()),
        )
        .admin()
        .start();
    let child: SocketAddr = ([127, 0, 0, 1], base).into();
    // gale listens once the child is in rotation: it passed a health check, not merely accepted.
    let stats: serde_json::Value = gale_tests::http::get(child, "/stats").expect_status(200).json();
    assert!(stats["hits"]["/health"].as_u64() >= Some(1), "the child was checked before joining: {stats}");
    wait_until(Duration::from_secs(10), "the child's start logged", || {
        gale.stderr().contains("passes its health check: in rotation")
    });
    gale.get("/whoami").expect_status(200);

    gale_tests::http::get(child, "/health-set?status=503").expect_status(200);
    wait_state(&gale, child, "down");
    gale.get("/whoami").expect_status(502);
    gale_tests::http::get(child, "/health-set?status=200").expect_status(200);
    wait_state(&gale, child, "up");
    gale.get("/whoami").expect_status(200);
}

#[test]
fn a_health_check_added_by_reload_gates_the_next_start_of_a_child() {
    let base = crate::supervise::free_ports(1);
    let config = crate::supervise::supervised_config(crate::supervise::tornado_process(1, base, "")).admin();
    let gale = config.start();
    wait_until(Duration::from_secs(10), "the child's start logged", || {
        gale.stderr().contains("accepts connections: in rotation")
    });
    let checked = config
        .upstream("health_check", Raw(r#"{ path = "/health", interval = "200ms", timeout = "500ms" }"#.into()))
        .render();
    gale_tests::reload::sighup(&gale, &checked).expect_reloaded();
    let path = gale.config_path().to_str().expect("utf-8 path").to_owned();
    let out = gale_tests::run_gale(&["restart", "tornadoes", "--config", &path], None);
    assert_eq!(out.code(), Some(0), "gale restart: {out:?}");
    wait_until(Duration::from_secs(10), "the restart logged", || {
        gale.stderr().contains("passes its health check: in rotation")
    });
    gale.get("/whoami").expect_status(200);
}
