//! Tenants and plugin containment through the real binary: one tenant's spinning plugin does
//! not starve another tenant; a plugin that spins to its deadline is quarantined and comes back
//! after the backoff; the capability probe is denied files, sockets and the environment; plugin
//! metrics carry tenant and plugin labels; `gale plugins explain`; and a tenant cannot load a
//! plugin that exists only in another tenant's (or the global) plugin directory.
//!
//! The fixtures (`test-loop`, `test-trap`, `test-probe`, `header-policy`) come from
//! `<repo>/target/plugins/` (`scripts/build-plugins.sh`); each test copies the ones a tenant
//! may use into that tenant's own directory.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use gale_tests::admin::{self, admin_addr};
use gale_tests::paths::repo_root;
use gale_tests::{Gale, Request, Response, Tornado, Whoami, run_gale, wait_until};
use tempfile::TempDir;

/// A built fixture, `<repo>/target/plugins/<name>.wasm` (`-` written as `_`).
#[track_caller]
fn built(name: &str) -> PathBuf {
    let file = repo_root().join("target/plugins").join(format!("{}.wasm", name.replace('-', "_")));
    assert!(file.is_file(), "{} is missing: run scripts/build-plugins.sh", file.display());
    file
}

/// Plugin directories for one test: `<tmp>/<tenant>/` holding copies of the plugins given.
struct Dirs(TempDir);

impl Dirs {
    fn new() -> Dirs {
        Dirs(tempfile::tempdir().expect("tempdir"))
    }

    /// Creates `<tmp>/<name>/` with `plugins` copied in; returns its path.
    fn with(&self, name: &str, plugins: &[&str]) -> PathBuf {
        let dir = self.0.path().join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        for p in plugins {
            let from = built(p);
            std::fs::copy(&from, dir.join(from.file_name().expect("file name"))).expect("copy plugin");
        }
        dir
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

/// A TOML string literal.
fn q(s: impl AsRef<str>) -> String {
    serde_json::to_string(s.as_ref()).expect("string")
}

/// GET `target` with a Host header.
#[track_caller]
fn get(gale: &Gale, host: &str, target: &str) -> Response {
    gale.send(&Request::get(target).header("Host", host))
}

/// Sends `n` sequential requests for `host` (each on a new connection): every one must be a 200
/// that tenant b's own plugin instance handled (it adds `x-fixture`; a quarantined or skipped
/// plugin would let the request through without it). The client's read timeout is the only
/// clock: it catches a request that hangs, and says nothing about speed.
#[track_caller]
fn b_answered(addr: SocketAddr, host: &str, n: usize) {
    for i in 0..n {
        let r = gale_tests::http::send(addr, &Request::get("/b/whoami").header("Host", host));
        assert_eq!(r.status, 200, "tenant b's request {i} was not answered:\n{r}");
        let seen: Whoami = r.json();
        assert_eq!(seen.header("x-fixture"), Some("test-loop"), "request {i}: tenant b's plugin ran");
    }
}

#[test]
fn a_spinning_plugin_of_one_tenant_leaves_the_other_tenant_answered() {
    let tornado = Tornado::spawn("app");
    let dirs = Dirs::new();
    let a = dirs.with("a", &["test-loop"]);
    let b = dirs.with("b", &["test-loop"]);
    // Tenant a's plugin spins on every request until its 5 ms deadline; at most one of its
    // calls runs at a time (max_concurrent = 1), so it can hold one of gale's two worker
    // threads, never both. The breaker is off so that the loop really runs all the time.
    // Tenant b attaches the same plugin, misbehaving only under /x.
    let config = format!(
        "[global]\nthreads = 2\naccess_log = \"off\"\n\n\
         [tenant.a]\nplugin_dir = {a}\nlimits = {{ hook_timeout = \"5ms\", max_concurrent = 1 }}\n\
         breaker = {{ failures = 0 }}\n\n\
         [tenant.b]\nplugin_dir = {b}\n\n\
         [upstream.app]\nservers = [\"{backend}\"]\n\n\
         [[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"a.test\"]\ntenant = \"a\"\n\
         [[server.location]]\npath = \"/\"\nproxy = {{ pass = \"app\" }}\nplugins = [\"test-loop\"]\n\n\
         [[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"b.test\"]\ntenant = \"b\"\n\
         [[server.location]]\npath = \"/\"\nproxy = {{ pass = \"app\" }}\n\
         plugins = [{{ name = \"test-loop\", config = {{ path_prefix = \"/x\" }} }}]\n",
        a = q(a.display().to_string()),
        b = q(b.display().to_string()),
        backend = tornado.addr(),
    );
    let gale = Gale::start(&config);
    let (a_addr, b_addr) = (gale.addrs()[0], gale.addrs()[1]);

    // Tenant a fails closed: its plugin never finishes and is cut at its 5 ms deadline. The
    // client's 5 s read timeout (a thousand times the deadline) only catches a call never cut.
    let mut a_conn = gale_tests::Conn::open(a_addr);
    a_conn.set_read_timeout(Duration::from_secs(5));
    let cut = a_conn
        .try_send(&Request::get("/a/whoami").header("Host", "a.test"))
        .unwrap_or_else(|e| panic!("tenant a's spinning call was not cut at its deadline: {e}"));
    assert_eq!(cut.status, 503, "{cut}");
    let b_seen: Whoami = get_at(b_addr, "b.test", "/b/whoami").json();
    assert_eq!(b_seen.header("x-fixture"), Some("test-loop"), "b's own instance of the plugin ran");

    // Four clients keep tenant a's plugin spinning.
    let stop = Arc::new(AtomicBool::new(false));
    let a_answers = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (stop, answers) = (stop.clone(), a_answers.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let r = gale_tests::http::send(a_addr, &Request::get("/a/whoami").header("Host", "a.test"));
                    assert_eq!(r.status, 503, "tenant a's requests fail closed:\n{r}");
                    answers.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    wait_until(Duration::from_secs(10), "tenant a under load", || a_answers.load(Ordering::SeqCst) >= 20);
    let a_before = a_answers.load(Ordering::SeqCst);
    // What isolation guarantees: every one of b's requests is answered by b's own plugin, none
    // refused for a's failures, while a's calls keep being cut at their deadline.
    b_answered(b_addr, "b.test", 30);
    let a_during = a_answers.load(Ordering::SeqCst) - a_before;
    stop.store(true, Ordering::SeqCst);
    for t in load {
        t.join().expect("load thread (its assertion failed: see above)");
    }
    assert!(a_during > 0, "tenant a was still spinning while b was asked (a answered {a_during} meanwhile)");
    wait_for_log(&gale, "exceeded its time limit of 5ms");
    // And b's plugin still runs once the load is gone (no quarantine leaked across tenants).
    b_answered(b_addr, "b.test", 1);
}

/// Waits (up to 10 s) for gale's error log to contain `text`.
#[track_caller]
fn wait_for_log(gale: &Gale, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gale.stderr().contains(text) {
        assert!(Instant::now() < deadline, "gale never logged {text:?}; stderr:\n{}", tail(&gale.stderr()));
        thread::sleep(Duration::from_millis(20));
    }
}

fn get_at(addr: SocketAddr, host: &str, target: &str) -> Response {
    let r = gale_tests::http::send(addr, &Request::get(target).header("Host", host));
    r.expect_status(200);
    r
}

/// The last lines of a long log.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// One tenant `t` with `plugin` attached to `location /`, the harness's generous hook time
/// limit, `breaker` (a `breaker = ...` line, or nothing), and the admin listener.
fn one_tenant(tornado: &Tornado, dir: &Path, attach: &str, breaker: &str) -> String {
    format!(
        "[global]\nthreads = 2\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [tenant.t]\nplugin_dir = {dir}\nlimits = {{ hook_timeout = \"{timeout}\" }}\n{breaker}\n\n\
         [upstream.app]\nservers = [\"{backend}\"]\n\n\
         [[server]]\nlisten = [\"127.0.0.1:0\"]\ntenant = \"t\"\n\
         [[server.location]]\npath = \"/\"\nproxy = {{ pass = \"app\" }}\nplugins = [{attach}]\n",
        dir = q(dir.display().to_string()),
        timeout = gale_tests::plugins::HOOK_TIMEOUT,
        backend = tornado.addr(),
    )
}

/// The only plugin of the only tenant, as `/status` shows it.
fn only_plugin(admin: SocketAddr) -> serde_json::Value {
    admin::status(admin)["plugins"]["tenants"][0]["plugins"][0].clone()
}

/// Its breaker's state (`closed`, `open`, `probing`).
fn breaker_state(admin: SocketAddr) -> String {
    only_plugin(admin)["breaker"].as_str().expect("a breaker state").to_owned()
}

/// Waits until the quarantine's backoff is over (`retry_in_ms` reaches 0), without a request;
/// the deadline only catches a backoff that never ends.
#[track_caller]
fn wait_backoff_over(admin: SocketAddr) {
    wait_until(Duration::from_secs(20), "the quarantine's backoff to end", || {
        let plugin = only_plugin(admin);
        assert_eq!(plugin["breaker"], "open", "{plugin}");
        plugin["retry_in_ms"].as_f64() == Some(0.0)
    });
}

/// Whether `test-loop` ran on this request (fail-open): it adds `x-fixture` when it continues;
/// a spin cut off at the deadline, or a quarantine, lets the request through without it.
#[track_caller]
fn loop_ran(gale: &Gale, target: &str) -> bool {
    let r = gale.get(target);
    r.expect_status(200);
    r.json::<Whoami>().header("x-fixture") == Some("test-loop")
}

// The breaker opens on calls that hit a limit (here: test-loop spinning to its deadline under
// /x), when they are `failures` and at least half of their hook's calls in the window; traps
// never open it (tests/tests/e2e/adversarial/breaker.rs).

#[test]
fn a_spinning_plugin_is_quarantined_then_retried_with_a_doubling_backoff() {
    let tornado = Tornado::spawn("app");
    let dirs = Dirs::new();
    let dir = dirs.with("t", &["test-loop"]);
    let attach = "{ name = \"test-loop\", on_error = \"fail-open\", config = { path_prefix = \"/x\" } }";
    let breaker = "breaker = { failures = 3, window = \"1m\", backoff = \"1s\", max_backoff = \"10s\" }";
    let gale = Gale::start(&one_tenant(&tornado, &dir, attach, breaker));
    let admin = admin_addr(&gale);

    assert!(loop_ran(&gale, "/ok/whoami"), "the plugin runs and continues outside /x");
    for _ in 0..3 {
        assert!(!loop_ran(&gale, "/x/whoami"), "a spin cut off at the deadline is skipped (fail-open)");
    }
    // Quarantined: not run even where it would not spin.
    assert!(!loop_ran(&gale, "/ok/whoami"));
    assert!(!loop_ran(&gale, "/ok/whoami"));
    // Three spins of four on-request calls (the share is per hook: fail-open, every request
    // also had its on-response call).
    wait_for_log(&gale, "plugin quarantined: 3 of its 4 on-request calls");
    let status = admin::status(admin);
    let plugin = &status["plugins"]["tenants"][0]["plugins"][0];
    assert_eq!(status["plugins"]["tenants"][0]["name"], "t", "{status:#}");
    assert_eq!(plugin["name"], "test-loop");
    assert_eq!(plugin["breaker"], "open", "{status:#}");

    // No traffic until /status says the backoff is over (a request meanwhile could end after it,
    // and its on-response call would be the probe); then one request probes. Under /x it spins,
    // so the quarantine doubles to 2 s: gale's log says so, no clock is read here.
    wait_backoff_over(admin);
    assert!(!loop_ran(&gale, "/x/whoami"), "the probe ran and spun");
    wait_for_log(
        &gale,
        "plugin still failing after quarantine (retry in on-request hit a limit); quarantined again, retry in 2s",
    );
    assert_eq!(breaker_state(admin), "open", "quarantined again after the failed probe");
    // After the doubled backoff a probe outside /x ends within its limits: back in service.
    wait_backoff_over(admin);
    assert!(loop_ran(&gale, "/ok/whoami"), "the plugin is back after the doubled backoff");
    assert!(loop_ran(&gale, "/ok/whoami"));
    wait_for_log(&gale, "plugin back in service");

    let m = admin::metrics(admin);
    let calls = |hook: &str, outcome: &str| {
        m.get(
            "gale_plugin_calls_total",
            &[("tenant", "t"), ("plugin", "test-loop"), ("hook", hook), ("outcome", outcome)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(calls("on-request", "timeout"), 4.0, "{}", m.text);
    assert!(calls("on-request", "quarantined") + calls("on-response", "quarantined") >= 3.0, "{}", m.text);
    let quarantines =
        m.value("gale_plugin_quarantines_total", &[("tenant", "t"), ("plugin", "test-loop"), ("hook", "on-request")]);
    assert_eq!(quarantines, 2.0, "opened, then reopened after the failed probe");
    assert_eq!(m.value("gale_plugin_quarantined", &[("tenant", "t"), ("plugin", "test-loop")]), 0.0);
}

#[test]
fn a_fail_closed_plugin_answers_503_while_quarantined() {
    let tornado = Tornado::spawn("app");
    let dirs = Dirs::new();
    let dir = dirs.with("t", &["test-loop"]);
    let attach = "{ name = \"test-loop\", config = { path_prefix = \"/x\" } }";
    let breaker = "breaker = { failures = 2, backoff = \"1m\", max_backoff = \"1m\" }";
    let gale = Gale::start(&one_tenant(&tornado, &dir, attach, breaker));
    gale.get("/ok/whoami").expect_status(200);
    // Two spins of three on-request calls: more than half, and `failures`.
    gale.get("/x/whoami").expect_status(503);
    gale.get("/x/whoami").expect_status(503);
    let before = tornado.hits("/ok/whoami");
    let r = gale.get("/ok/whoami");
    r.expect_status(503);
    assert_eq!(tornado.hits("/ok/whoami"), before, "a quarantined fail-closed plugin stops the request");
}

#[test]
fn a_reload_ends_a_quarantine() {
    let tornado = Tornado::spawn("app");
    let dirs = Dirs::new();
    let dir = dirs.with("t", &["test-loop"]);
    let attach = "{ name = \"test-loop\", on_error = \"fail-open\", config = { path_prefix = \"/x\" } }";
    let breaker = "breaker = { failures = 1, backoff = \"1h\", max_backoff = \"1h\" }";
    let config = one_tenant(&tornado, &dir, attach, breaker);
    let gale = Gale::start(&config);
    assert!(!loop_ran(&gale, "/x/whoami"));
    assert!(!loop_ran(&gale, "/ok/whoami"), "quarantined for an hour");
    // The operator replaces the plugin (here: the same file) and reloads: tenants are rebuilt,
    // so the breaker starts closed.
    gale_tests::reload::sighup(&gale, &config).expect_reloaded();
    assert!(loop_ran(&gale, "/ok/whoami"), "back in service after the reload");
}

#[test]
fn the_probe_plugin_is_denied_files_sockets_and_the_environment() {
    let tornado = Tornado::spawn("app");
    let dirs = Dirs::new();
    let dir = dirs.with("t", &["test-probe"]);
    let secret = dirs.path().join("secret.txt");
    std::fs::write(&secret, "not for plugins\n").expect("write secret");
    // A real listener the guest would reach if sockets were allowed.
    let bait = TcpListener::bind("127.0.0.1:0").expect("bind");
    bait.set_nonblocking(true).expect("nonblocking");
    let attach = format!(
        "{{ name = \"test-probe\", config = {{ file = {}, dir = {}, connect = \"{}\", env = \"PATH\" }} }}",
        q(secret.display().to_string()),
        q(dirs.path().display().to_string()),
        bait.local_addr().expect("addr")
    );
    assert!(std::env::var_os("PATH").is_some(), "gale inherits PATH from this test");
    let gale = Gale::start(&one_tenant(&tornado, &dir, &attach, ""));

    let r = gale.get("/whoami");
    r.expect_status(200);
    let header = |name: &str| r.header(name).unwrap_or_else(|| panic!("no {name} in\n{r}")).to_owned();
    for name in ["x-probe-file", "x-probe-dir", "x-probe-socket"] {
        assert!(header(name).starts_with("denied: "), "{name}: {}", header(name));
    }
    assert_eq!(header("x-probe-env"), "absent");
    assert_eq!(header("x-probe-env-count"), "0");
    assert_eq!(header("x-probe-args"), "0");
    assert!(
        matches!(bait.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the guest's connection must never reach the listener"
    );
    wait_for_log(&gale, "test-probe: x-probe-file=denied");
}

#[test]
fn two_tenants_attaching_one_plugin_get_separate_instances() {
    let tornado = Tornado::spawn("app");
    let dirs = Dirs::new();
    let (a, b) = (dirs.with("a", &["test-probe"]), dirs.with("b", &["test-probe"]));
    let port = gale_tests::free_port();
    let server = |name: &str| {
        format!(
            "[[server]]\nlisten = [\"127.0.0.1:{port}\"]\nserver_name = [\"{name}.test\"]\ntenant = \"{name}\"\n\
             [[server.location]]\npath = \"/\"\nproxy = {{ pass = \"app\" }}\nplugins = [\"test-probe\"]\n\n"
        )
    };
    let config = format!(
        "[global]\nthreads = 2\n\n[tenant.a]\nplugin_dir = {}\n\n[tenant.b]\nplugin_dir = {}\n\n\
         [upstream.app]\nservers = [\"{}\"]\n\n{}{}",
        q(a.display().to_string()),
        q(b.display().to_string()),
        tornado.addr(),
        server("a"),
        server("b"),
    );
    let gale = Gale::start(&config);
    let calls = |host: &str| get(&gale, host, "/whoami").header("x-probe-calls").expect("x-probe-calls").to_owned();
    // Sequential requests reuse the tenant's one warm instance: its call count goes up; the
    // other tenant's instance has its own count.
    assert_eq!(calls("a.test"), "1");
    assert_eq!(calls("a.test"), "2");
    assert_eq!(calls("a.test"), "3");
    assert_eq!(calls("b.test"), "1");
    assert_eq!(calls("a.test"), "4");
}

#[test]
fn metrics_carry_tenant_plugin_and_hook_labels() {
    let tornado = Tornado::spawn("app");
    let dirs = Dirs::new();
    let dir = dirs.with("acme", &["test-trap", "header-policy"]);
    let global_dir = dirs.with("global", &["header-policy"]);
    let port = gale_tests::free_port();
    let config = format!(
        "[global]\nthreads = 2\nplugin_dir = {global}\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [tenant.acme]\nplugin_dir = {dir}\nlimits = {{ hook_timeout = \"1s\", max_concurrent = 3 }}\n\n\
         [upstream.app]\nservers = [\"{backend}\"]\n\n\
         [[server]]\nlisten = [\"127.0.0.1:{port}\"]\nserver_name = [\"acme.test\"]\ntenant = \"acme\"\n\
         [[server.location]]\npath = \"/\"\nproxy = {{ pass = \"app\" }}\n\
         plugins = [{{ name = \"test-trap\", on_error = \"fail-open\", config = {{ path_prefix = \"/x\" }} }}, {edits}]\n\n\
         [[server]]\nlisten = [\"127.0.0.1:{port}\"]\nserver_name = [\"other.test\"]\n\
         [[server.location]]\npath = \"/\"\nproxy = {{ pass = \"app\" }}\nplugins = [{edits_global}]\n",
        // Request edits: header-policy asks for on-request only (it declares the hooks it uses).
        edits = "{ name = \"header-policy\", config = { request = { set = { x-seen = \"1\" } } } }",
        edits_global = "{ name = \"header_policy\", config = { request = { set = { x-seen = \"1\" } } } }",
        global = q(global_dir.display().to_string()),
        dir = q(dir.display().to_string()),
        backend = tornado.addr(),
    );
    let gale = Gale::start(&config);
    let admin = admin_addr(&gale);
    for _ in 0..3 {
        get(&gale, "acme.test", "/whoami").expect_status(200);
    }
    get(&gale, "acme.test", "/x/whoami").expect_status(200);
    get(&gale, "other.test", "/whoami").expect_status(200);

    let m = admin::metrics(admin);
    let calls = |tenant: &str, plugin: &str, hook: &str, outcome: &str| {
        m.value(
            "gale_plugin_calls_total",
            &[("tenant", tenant), ("plugin", plugin), ("hook", hook), ("outcome", outcome)],
        )
    };
    assert_eq!(calls("acme", "test-trap", "on-request", "ok"), 3.0);
    assert_eq!(calls("acme", "test-trap", "on-request", "trap"), 1.0);
    assert_eq!(calls("acme", "test-trap", "on-response", "ok"), 4.0);
    // header-policy declares what its hooks read (nothing, for this config):
    // one call, then its answer is remembered.
    assert_eq!(calls("acme", "header-policy", "on-request", "ok"), 1.0);
    assert_eq!(calls("acme", "header-policy", "on-request", "remembered"), 3.0);
    assert_eq!(calls("global", "header-policy", "on-request", "ok"), 1.0, "no tenant: the global one");
    let skipped = [("tenant", "acme"), ("plugin", "header-policy"), ("hook", "on-response"), ("outcome", "ok")];
    assert_eq!(m.get("gale_plugin_calls_total", &skipped), None, "a hook it did not ask for is not called");
    let labels = [("tenant", "acme"), ("plugin", "test-trap"), ("hook", "on-request")];
    assert_eq!(m.value("gale_plugin_call_seconds_count", &labels), 4.0);
    let with_le = [labels[0], labels[1], labels[2], ("le", "+Inf")];
    assert_eq!(m.value("gale_plugin_call_seconds_bucket", &with_le), 4.0);
    assert_eq!(m.value("gale_plugin_quarantines_total", &labels), 0.0);
    assert_eq!(m.value("gale_plugin_quarantined", &[("tenant", "acme"), ("plugin", "test-trap")]), 0.0);
    assert_eq!(m.value("gale_plugin_in_flight", &[("tenant", "acme")]), 0.0);
    assert!(m.value("gale_plugin_idle_instances", &[("tenant", "acme")]) >= 2.0);

    let status = admin::status(admin);
    let tenants = status["plugins"]["tenants"].as_array().expect("tenants");
    let acme = tenants.iter().find(|t| t["name"] == "acme").unwrap_or_else(|| panic!("{status:#}"));
    assert_eq!(acme["limits"]["max_concurrent"], 3);
    assert_eq!(acme["plugins"].as_array().map(Vec::len), Some(2));
    assert!(tenants.iter().any(|t| t["name"] == "global"));
}

/// A config with tenant `a` (test-trap and header-policy in its dir) on `a.test`; the global
/// directory and tenant `b`'s hold only header-policy. `b_plugin` is what b's server attaches.
fn explain_config(dirs: &Dirs, b_plugin: &str) -> String {
    let a = dirs.with("a", &["test-trap", "header-policy"]);
    let b = dirs.with("b", &["header-policy"]);
    let global = dirs.with("global", &["header-policy", "test-trap"]);
    format!(
        "[global]\nplugin_dir = {global}\n\n\
         [tenant.a]\nplugin_dir = {a}\nlimits = {{ hook_timeout = \"5ms\", max_concurrent = 8 }}\n\n\
         [tenant.b]\nplugin_dir = {b}\n\n\
         [upstream.app]\nservers = [\"127.0.0.1:9\"]\n\n\
         [[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"a.test\"]\ntenant = \"a\"\n\
         [[server.location]]\npath = \"/api/\"\nproxy = {{ pass = \"app\" }}\n\
         plugins = [{{ name = \"test-trap\", on_error = \"fail-open\", config = {{ path_prefix = \"/x\" }} }}, \"header-policy\"]\n\
         [[server.location]]\npath = \"/\"\nproxy = {{ pass = \"app\" }}\n\n\
         [[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"b.test\"]\ntenant = \"b\"\n\
         [[server.location]]\npath = \"/\"\nproxy = {{ pass = \"app\" }}\nplugins = [\"{b_plugin}\"]\n",
        global = q(global.display().to_string()),
        a = q(a.display().to_string()),
        b = q(b.display().to_string()),
    )
}

#[test]
fn plugins_explain_prints_the_resolved_chain() {
    let dirs = Dirs::new();
    let config = dirs.path().join("gale.toml");
    std::fs::write(&config, explain_config(&dirs, "header-policy")).expect("write config");
    let config = config.display().to_string();

    let out =
        run_gale(&["plugins", "explain", "--config", &config, "--host", "A.test:8080", "--path", "/api/v1?q=1"], None);
    assert_eq!(out.code(), Some(0), "stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    let a_dir = dirs.path().join("a");
    for want in [
        "server:   #1 a.test (chosen by name)".to_owned(),
        "tenant:   a".to_owned(),
        format!("plugin_dir:     {}", a_dir.display()),
        "hook_timeout 5ms, max_concurrent 8".to_owned(),
        "location: #1 \"/api/\" (proxy -> upstream `app`)".to_owned(),
        "1. test-trap".to_owned(),
        "on_error: fail-open".to_owned(),
        "config:   path_prefix = \"/x\"".to_owned(),
        format!("file:     {}", a_dir.join("test_trap.wasm").display()),
        "receives: {\"path_prefix\":\"/x\"}".to_owned(),
        "2. header-policy".to_owned(),
        format!("file:     {}", a_dir.join("header_policy.wasm").display()),
    ] {
        assert!(out.stdout.contains(&want), "missing {want:?} in\n{}", out.stdout);
    }

    let json = run_gale(
        &["plugins", "explain", "--config", &config, "--host", "b.test", "--path", "/anything", "--json"],
        None,
    );
    assert_eq!(json.code(), Some(0), "{}", json.stderr);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(v["tenant"]["name"], "b");
    assert_eq!(v["plugins"][0]["name"], "header-policy");
    assert_eq!(v["plugins"][0]["on_error"], "fail-closed");
    let file = dirs.path().join("b/header_policy.wasm").display().to_string();
    assert_eq!(v["plugins"][0]["file"], file.as_str());

    // No plugin at `/` of a.test.
    let none = run_gale(&["plugins", "explain", "--config", &config, "--host", "a.test", "--path", "/"], None);
    assert!(none.stdout.contains("plugins:  none"), "{}", none.stdout);
}

#[test]
fn a_tenant_cannot_load_a_plugin_from_another_tenants_directory() {
    let dirs = Dirs::new();
    // b attaches test-trap, which is in a's directory and in the global one, not in b's.
    let path = dirs.path().join("gale.toml");
    std::fs::write(&path, explain_config(&dirs, "test-trap")).expect("write config");
    let config = path.display().to_string();
    let b_dir = dirs.path().join("b");
    let text = std::fs::read_to_string(&path).expect("read config");
    let line = 1 + text.lines().position(|l| l.contains("plugins = [\"test-trap\"]")).expect("b's attachment");

    let check = run_gale(&["check", "--config", &config], None);
    assert_eq!(check.code(), Some(1), "stdout:\n{}\nstderr:\n{}", check.stdout, check.stderr);
    let want = format!("{config}:{line}:");
    let line = check.stderr_lines().into_iter().find(|l| l.starts_with(&want)).unwrap_or_else(|| {
        panic!("no error at {want} in:\n{}", check.stderr);
    });
    assert!(line.contains("plugin `test-trap`: no test-trap.wasm or test_trap.wasm in"), "{line}");
    assert!(line.contains(&b_dir.display().to_string()), "{line}");

    let run = run_gale(&["run", "--config", &config], None);
    assert_eq!(run.code(), Some(1), "gale must not start: {}", run.stderr);
    assert!(run.stderr.contains("plugin `test-trap`: no"), "{}", run.stderr);

    let explain = run_gale(&["plugins", "explain", "--config", &config, "--host", "b.test", "--path", "/"], None);
    assert_eq!(explain.code(), Some(1));
    assert!(explain.stdout.contains("error:    plugin `test-trap`: no"), "{}", explain.stdout);
}
