//! WebAssembly header policies through the real binary: the bundled `header-policy` edits what
//! Tornado receives and what the client gets, answers deny rules itself, and the misbehaving
//! fixtures (`test-loop`, `test-trap`, `test-oom`) are cut off with 503 (fail-closed) or skipped
//! (fail-open) while gale keeps serving. `gale check` and reload see plugins too.
//!
//! Needs the components: `scripts/build-plugins.sh`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gale_tests::http::{self, Request};
use gale_tests::plugins::{self, HEADER_POLICY, TEST_TRAP};
use gale_tests::{ConfigBuilder, Gale, Tornado, Whoami, reload, run_gale, wait_until};

/// How long a request cut off by a 100 ms hook deadline may take before the test calls it a
/// hang: detects a guest that is never stopped, never measures the deadline.
const CUT_OFF_BOUND: Duration = Duration::from_secs(5);

/// How long gale may take to write a log line the test looks for.
const LOG_BOUND: Duration = Duration::from_secs(10);

/// One Tornado and the config text (plugins from `plugin_dir`, `location /` with `plugins`),
/// `configure` adjusting the rest.
fn site(plugin_dir: &Path, plugins: &str, configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> (Tornado, String) {
    let tornado = Tornado::spawn("tornado-0");
    let builder = configure(plugins::enable(ConfigBuilder::new([tornado.addr()]), plugin_dir));
    let text = plugins::on_root(&builder.render(), plugins);
    (tornado, text)
}

/// Starts gale on [`site`] with the built plugins.
fn start(plugins: &str, configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> (Tornado, Gale) {
    let (tornado, text) = site(&plugins::built_dir(), plugins, configure);
    let gale = Gale::start(&text);
    (tornado, gale)
}

/// Requests Tornado received in all (every path), asked directly.
fn total_hits(tornado: &Tornado) -> u64 {
    tornado.stats().hits.values().sum()
}

/// Waits until gale's stderr holds a log entry with every one of `needles`; returns it. An
/// entry is a line with its continuation lines (a guest's panic message spans lines).
#[track_caller]
fn log_entry(gale: &Gale, needles: &[&str]) -> String {
    let find = || entries(&gale.stderr()).into_iter().find(|e| needles.iter().all(|n| e.contains(n)));
    wait_until(LOG_BOUND, &format!("a log entry with {needles:?}"), || find().is_some());
    find().expect("found above")
}

/// gale's log entries: each starts with a timestamp (`2026-...`).
fn entries(log: &str) -> Vec<String> {
    let starts_entry =
        |l: &str| l.len() > 4 && l.as_bytes()[..4].iter().all(u8::is_ascii_digit) && l.as_bytes()[4] == b'-';
    let mut out: Vec<String> = Vec::new();
    for line in log.lines() {
        match out.last_mut() {
            Some(entry) if !starts_entry(line) => {
                entry.push('\n');
                entry.push_str(line);
            }
            _ => out.push(line.to_owned()),
        }
    }
    out
}

// 1. headers set and removed, seen by Tornado and by the client

const EDITS: &str = r#"[{ name = "header-policy", config = {
    request = {
        set = {
            "x-a" = "$remote_addr $scheme $host $http_user_agent $request_uri",
            "x-multi-seen" = "$http_x_multi",
            "x-replace" = "new",
            "x-empty" = "$http_x_absent",
        },
        remove = ["cookie"],
    },
    response = { set = { "x-frame-options" = "DENY" }, remove = ["server", "etag"] },
} }]"#;

#[test]
fn header_policy_sets_and_removes_headers_at_the_backend_and_the_client() {
    let (tornado, gale) = start(EDITS, |c| c);
    // What Tornado answers without gale: the response edits below must have work to do.
    let direct = http::get(tornado.addr(), "/whoami");
    assert!(direct.header("server").is_some() && direct.header("etag").is_some(), "{direct}");

    let request = Request::get("/whoami?a=1&b=%20x")
        .header("Host", "shop.example.test")
        .header("User-Agent", "gale-e2e/1.0 (plugins)")
        .header("Cookie", "session=secret")
        .header("X-Multi", "one")
        .header("X-Multi", "two")
        .header("X-Replace", "old")
        .header("X-Empty", "from the client")
        .header("X-Untouched", "kept");
    let response = gale.send(&request);
    response.expect_status(200);
    let who: Whoami = response.json();

    assert_eq!(
        who.header("x-a"),
        Some("127.0.0.1 http shop.example.test gale-e2e/1.0 (plugins) /whoami?a=1&b=%20x"),
        "{who:#?}"
    );
    assert_eq!(who.header("x-multi-seen"), Some("one, two"), "{who:#?}");
    assert_eq!(who.header("x-replace"), Some("new"), "set replaces the client's value: {who:#?}");
    assert_eq!(who.header("x-empty"), None, "a set that expands to nothing removes the header: {who:#?}");
    assert_eq!(who.header("cookie"), None, "{who:#?}");
    assert_eq!(who.header("x-untouched"), Some("kept"), "{who:#?}");
    assert_eq!(who.header_all("x-multi"), vec!["one", "two"], "{who:#?}");
    assert_eq!(who.uri, "/whoami?a=1&b=%20x", "{who:#?}");

    assert_eq!(response.header_all("x-frame-options"), vec!["DENY"], "{response}");
    assert_eq!(response.header("server"), None, "{response}");
    assert_eq!(response.header("etag"), None, "{response}");
    assert_eq!(response.header("content-type"), Some("application/json"), "{response}");
}

/// `$host` is the host without the port, as in nginx and as the WIT `request-head.host` says.
#[test]
fn host_variable_is_the_host_without_the_port() {
    let plugins = r#"[{ name = "header-policy", config = { request = { set = { "x-host" = "$host" } } } }]"#;
    let (_tornado, gale) = start(plugins, |c| c);
    for (host, expected) in
        [("shop.example.test", "shop.example.test"), ("shop.example.test:8080", "shop.example.test")]
    {
        let who: Whoami = gale.send(&Request::get("/whoami").header("Host", host)).expect_status(200).json();
        assert_eq!(who.header("x-host"), Some(expected), "Host: {host}");
        assert_eq!(who.host, host, "the Host header itself reaches the backend unchanged");
    }
    // gale's own Host when the request target is absolute-form.
    let who: Whoami = gale.send(&Request::get("http://abs.example.test:81/whoami")).expect_status(200).json();
    assert_eq!(who.header("x-host"), Some("abs.example.test"), "{who:#?}");
}

// 2. deny rules answered by gale, never reaching Tornado

const DENY: &str = r#"[{ name = "header-policy", config = {
    response = { set = { "x-frame-options" = "DENY" } },
    deny = [
        { path_prefix = "/admin", status = 403 },
        { method = "DELETE", status = 405 },
        { header = { name = "x-debug", value = "1" }, status = 451, body = "no debugging\n" },
    ],
} }]"#;

#[test]
fn deny_rules_answer_without_reaching_tornado() {
    let (tornado, gale) = start(DENY, |c| c);
    let denied = [
        (Request::get("/admin/whoami"), 403, "403 Forbidden\n"),
        (Request::get("/admin"), 403, "403 Forbidden\n"),
        // Percent-encoded, repeated slashes, dot segments: matched as nginx matches locations.
        (Request::get("/%61dmin/whoami"), 403, "403 Forbidden\n"),
        (Request::get("/%61%64%6D%69%6E/whoami"), 403, "403 Forbidden\n"),
        (Request::get("//admin/whoami"), 403, "403 Forbidden\n"),
        (Request::get("/public/../admin/whoami"), 403, "403 Forbidden\n"),
        (Request::new("DELETE", "/whoami"), 405, "405 Method Not Allowed\n"),
        (Request::get("/whoami").header("X-Debug", "1"), 451, "no debugging\n"),
    ];
    for (request, status, body) in &denied {
        let response = gale.send(request);
        assert_eq!(response.status, *status, "{request:?}:\n{response}");
        assert_eq!(response.text(), *body, "{request:?}:\n{response}");
        assert_eq!(total_hits(&tornado), 0, "{request:?} reached Tornado: {:?}", tornado.stats().hits);
    }

    // The same gale and backend serve what no rule matches.
    for request in [
        Request::get("/whoami"),
        Request::get("/public/admin/whoami"),
        Request::post("/whoami", "x"),
        Request::get("/whoami").header("X-Debug", "0"),
    ] {
        let response = gale.send(&request);
        assert_eq!(response.status, 200, "{request:?}:\n{response}");
    }
    assert_eq!(total_hits(&tornado), 4, "{:?}", tornado.stats().hits);
}

/// docs/plugins.md: a `respond` answer skips the handler, "response hooks still do" run.
#[test]
fn a_denied_answer_still_gets_the_response_edits() {
    let (tornado, gale) = start(DENY, |c| c);
    let response = gale.get("/admin/whoami");
    response.expect_status(403);
    assert_eq!(total_hits(&tornado), 0);
    assert_eq!(response.header("x-frame-options"), Some("DENY"), "the response hook did not run:\n{response}");
}

// 3. test-loop: cut off at its deadline while other routes keep answering

#[test]
fn a_looping_plugin_is_cut_off_with_503_while_other_routes_answer() {
    let loop_location = r#"path = "/loop"
proxy = { pass = "tornadoes" }
plugins = ["test-loop"]"#;
    let (tornado, gale) = start("[]", |c| c.global("plugin_hook_timeout", "100ms").location(loop_location));
    let addr = gale.addr();
    let stop = AtomicBool::new(false);

    let (looped, (control_ok, control_failures)) = std::thread::scope(|s| {
        // Another route on the same gale, asked continuously while guests spin.
        let control = s.spawn(|| {
            let (mut ok, mut failures) = (0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let response = http::get(addr, "/whoami");
                if response.status == 200 { ok += 1 } else { failures.push(response.to_string()) }
            }
            (ok, failures)
        });
        // Two looping requests at a time, several rounds. Nothing asserts in here: a panic
        // would leave the control thread running and the scope waiting for it.
        let mut looped = Vec::new();
        for round in 0..4 {
            let looping: Vec<_> = (0..2)
                .map(|i| {
                    s.spawn(move || {
                        let started = Instant::now();
                        let response = http::Conn::try_open(addr)
                            .and_then(|mut c| c.try_send(&Request::get(&format!("/loop/whoami?round={round}&i={i}"))));
                        (round, started.elapsed(), response.map_err(|e| e.to_string()))
                    })
                })
                .collect();
            looped.extend(looping.into_iter().map(|h| h.join().expect("looping request thread")));
        }
        stop.store(true, Ordering::Relaxed);
        (looped, control.join().expect("control thread"))
    });

    for (round, took, response) in looped {
        let response = response.unwrap_or_else(|e| panic!("round {round}: no answer: {e}"));
        assert_eq!(response.status, 503, "round {round}:\n{response}");
        assert!(took < CUT_OFF_BOUND, "round {round}: the 503 took {took:?}");
    }
    assert!(control_failures.is_empty(), "the other route failed while plugins spun: {control_failures:#?}");
    assert!(control_ok > 0, "the other route was never asked");
    assert_eq!(tornado.hits("/loop/whoami"), 0, "a cut-off request reached the backend");
    let line = log_entry(&gale, &["test-loop", "on-request", "time limit"]);
    assert!(line.contains("100ms"), "{line}");
    // The plugin recovers: gale is still whole, the next looping request is cut off again.
    gale.get("/loop/whoami").expect_status(503);
    gale.get("/whoami").expect_status(200);
}

// 4. test-trap: fails closed every time, the next request through the same plugin works

#[test]
fn a_trapping_plugin_fails_closed_every_time_and_the_next_request_works() {
    let trap = r#"[{ name = "test-trap", config = { path_prefix = "/trap" } }]"#;
    // Six traps with the default breaker (`failures = 5`): a trap is answered per request and
    // never quarantines the plugin (tests/tests/e2e/adversarial/breaker.rs has the attack).
    let (tornado, gale) = start(trap, |c| c);
    for round in 0..3 {
        let response = gale.get("/trap/whoami");
        assert_eq!(response.status, 503, "round {round}:\n{response}");
        // A fresh instance of the same attachment answers the next request.
        let response = gale.get("/whoami");
        response.expect_status(200);
        let who: Whoami = response.json();
        assert_eq!(who.header("x-fixture"), Some("test-trap"), "round {round}: {who:#?}");
    }
    // Several traps in a row on one keep-alive connection, then a good request on it.
    let mut conn = gale.conn();
    for _ in 0..3 {
        conn.send(&Request::get("/trap/x")).expect_status(503);
    }
    conn.send(&Request::get("/whoami")).expect_status(200);

    assert_eq!(tornado.hits("/trap/whoami"), 0);
    let line = log_entry(&gale, &["test-trap", "on-request", "trapped"]);
    assert!(line.contains("trapping on purpose"), "the guest's panic message is not in the log:\n{line}");
}

// 5. test-oom: stopped at the memory limit

#[test]
fn a_plugin_growing_past_its_memory_limit_is_stopped_and_gale_keeps_serving() {
    let oom = r#"[{ name = "test-oom", config = { path_prefix = "/oom" } }]"#;
    let (tornado, gale) = start(oom, |c| c);
    for round in 0..3 {
        let started = Instant::now();
        let response = gale.get("/oom/whoami");
        assert_eq!(response.status, 503, "round {round}:\n{response}");
        assert!(started.elapsed() < CUT_OFF_BOUND, "round {round}: took {:?}", started.elapsed());
        let who: Whoami = gale.get("/whoami").expect_status(200).json();
        assert_eq!(who.header("x-fixture"), Some("test-oom"), "{who:#?}");
    }
    assert_eq!(tornado.hits("/oom/whoami"), 0);
    log_entry(&gale, &["test-oom", "on-request", "memory limit", &(16u64 << 20).to_string()]);
}

// 6. fail-open: the failing plugin is skipped, the rest of the chain runs

#[test]
fn fail_open_skips_a_failing_plugin_and_the_backend_answers() {
    let chain = r#"[
  { name = "test-trap", config = { path_prefix = "/trap" }, on_error = "fail-open" },
  { name = "test-loop", config = { path_prefix = "/loop" }, on_error = "fail-open" },
  { name = "header-policy", config = { request = { set = { "x-after" = "ran" } }, response = { set = { "x-policy" = "ran" } } } },
]"#;
    let (tornado, gale) = start(chain, |c| c);
    for path in ["/trap/whoami", "/loop/whoami", "/trap/whoami"] {
        let response = gale.get(path);
        response.expect_status(200);
        let who: Whoami = response.json();
        assert_eq!(who.header("x-after"), Some("ran"), "{path}: the next plugin must still run: {who:#?}");
        assert_eq!(response.header("x-policy"), Some("ran"), "{path}:\n{response}");
    }
    assert_eq!(tornado.hits("/trap/whoami"), 2);
    assert_eq!(tornado.hits("/loop/whoami"), 1);
    // A request neither fixture fails on gets both fixtures' edits.
    let who: Whoami = gale.get("/whoami").expect_status(200).json();
    assert_eq!(who.header("x-fixture"), Some("test-loop"), "the last fixture's set wins: {who:#?}");
    log_entry(&gale, &["test-trap", "on-request", "fail-open"]);
    log_entry(&gale, &["test-loop", "on-request", "fail-open"]);
}

// 7. gale check

/// Writes `text` beside a fresh temporary folder and runs `gale check` on it.
fn check(text: &str) -> (gale_tests::Finished, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gale.toml");
    std::fs::write(&path, text).expect("write config");
    let path = path.to_str().expect("utf-8 path").to_owned();
    let out = run_gale(&["check", "--config", &path], Some(dir.path()));
    (out, path, dir)
}

/// The 1-based line and column of the first `needle` in `text`.
fn position(text: &str, needle: &str) -> (usize, usize) {
    text.lines()
        .enumerate()
        .find_map(|(i, line)| line.find(needle).map(|col| (i + 1, col + 1)))
        .unwrap_or_else(|| panic!("{needle:?} is not in:\n{text}"))
}

#[test]
fn gale_check_rejects_a_bad_plugin_config_at_its_position() {
    let plugins = r#"[
  "test-trap",
  { name = "header-policy", config = { request = { set = { "x-a" = "$nope" } } } },
]"#;
    let (_tornado, text) = site(&plugins::built_dir(), plugins, |c| c);
    // At the key the plugin names, not at the attachment.
    let (line, col) = position(&text, r#""x-a" = "$nope""#);
    let (out, path, _dir) = check(&text);
    assert_eq!(out.code(), Some(1), "{out:?}");
    let expected = format!("{path}:{line}:{col}: plugin `header-policy` rejected its config: `request.set.x-a`: ");
    let error = out.stderr.lines().find(|l| l.starts_with(&expected));
    let error = error.unwrap_or_else(|| panic!("no line starting with {expected:?} in:\n{}", out.stderr));
    assert!(error.contains("request.set.x-a") && error.contains("$nope"), "{error}");
    assert!(!out.stdout.contains("OK"), "{out:?}");
}

#[test]
fn gale_check_names_a_missing_plugin() {
    let (_tornado, text) = site(&plugins::built_dir(), r#"["header-policy", "no-such-policy"]"#, |c| c);
    let (line, col) = position(&text, r#""no-such-policy""#);
    let (out, path, _dir) = check(&text);
    assert_eq!(out.code(), Some(1), "{out:?}");
    let expected = format!("{path}:{line}:{col}: plugin `no-such-policy`");
    assert!(out.stderr.contains(&expected), "expected {expected:?} in:\n{}", out.stderr);
    assert!(out.stderr.contains("no-such-policy.wasm"), "the file looked for is not named:\n{}", out.stderr);
    assert_eq!(out.stderr_lines().len(), 1, "only the missing plugin is an error:\n{}", out.stderr);
}

#[test]
fn gale_check_refuses_a_file_that_is_not_a_component() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("junk.wasm"), b"\0asm but not really").expect("write junk.wasm");
    let (_tornado, text) = site(dir.path(), r#"["junk"]"#, |c| c);
    let (out, _path, _config_dir) = check(&text);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("plugin `junk`"), "{}", out.stderr);
    assert!(out.stderr.contains("not a valid WebAssembly component"), "{}", out.stderr);
}

#[test]
fn gale_check_accepts_a_valid_config_with_plugins() {
    let plugins = format!(
        "[\"header-policy\", {EDITS_ITEM}, {{ name = \"test_trap\", config = {{ path_prefix = \"/x\" }}, on_error = \"fail-open\" }}]",
        EDITS_ITEM = EDITS.trim().trim_start_matches('[').trim_end_matches(']')
    );
    let (_tornado, text) = site(&plugins::built_dir(), &plugins, |c| c);
    let (out, _path, _dir) = check(&text);
    assert_eq!(out.code(), Some(0), "{out:?}\nconfig:\n{text}");
    assert_eq!(out.stdout.trim(), "OK", "{out:?}");
}

#[test]
fn gale_run_refuses_to_start_with_a_bad_plugin_config() {
    let plugins = r#"[{ name = "header-policy", config = { deny = [{ status = 99 }] } }]"#;
    let (_tornado, text) = site(&plugins::built_dir(), plugins, |c| c);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gale.toml");
    std::fs::write(&path, &text).expect("write config");
    let out = run_gale(&["run", "--config", path.to_str().expect("utf-8")], Some(dir.path()));
    assert_ne!(out.code(), Some(0), "{out:?}");
    assert!(out.stderr.contains("plugin `header-policy` rejected its config: `deny[0]`: status 99"), "{}", out.stderr);
    assert!(!out.stdout.contains("listening"), "{out:?}");
}

// 8. reload

#[test]
fn reload_picks_up_a_changed_plugin_config() {
    let version = |v: &str| {
        format!(
            r#"[{{ name = "header-policy", config = {{ response = {{ set = {{ "x-policy-version" = "{v}" }} }} }} }}]"#
        )
    };
    let (tornado, v1) = site(&plugins::built_dir(), &version("1"), |c| c);
    let gale = Gale::start(&v1);
    assert_eq!(gale.get("/whoami").expect_status(200).header("x-policy-version"), Some("1"));

    let v2 = v1.replace(&version("1"), &version("2"));
    assert_ne!(v1, v2);
    reload::sighup(&gale, &v2).expect_reloaded();
    assert_eq!(gale.get("/whoami").expect_status(200).header("x-policy-version"), Some("2"));

    // A config the plugin rejects: the reload fails naming the plugin, version 2 stays.
    let broken = v1.replace(
        &version("1"),
        r#"[{ name = "header-policy", config = { response = { set = { "bad name" = "x" } } } }]"#,
    );
    let log = reload::sighup(&gale, &broken).expect_failed().to_owned();
    assert!(log.contains("plugin `header-policy` rejected its config"), "{log}");
    assert_eq!(gale.get("/whoami").expect_status(200).header("x-policy-version"), Some("2"));
    assert_eq!(total_hits(&tornado), 3);
}

/// Copies `from` over `to` atomically (a temporary file, then a rename), as a deploy would.
fn install(from: &Path, to: &Path) {
    let tmp = to.with_extension("wasm.tmp");
    std::fs::copy(from, &tmp).unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), tmp.display()));
    std::fs::rename(&tmp, to).expect("rename into place");
}

#[test]
fn reload_picks_up_a_changed_wasm_file() {
    let dir = tempfile::tempdir().expect("plugin dir");
    let deployed = dir.path().join("policy.wasm");
    install(&plugins::wasm(HEADER_POLICY), &deployed);
    // A config both components accept (the fixture ignores what it does not know).
    let plugins = r#"[{ name = "policy", config = { response = { set = { "x-policy" = "header-policy" } } } }]"#;
    let (tornado, text) = site(dir.path(), plugins, |c| c);
    let gale = Gale::start(&text);
    let response = gale.get("/whoami");
    response.expect_status(200);
    assert_eq!(response.header("x-policy"), Some("header-policy"), "{response}");

    // Same name, same config, another component: test-trap traps on every path.
    install(&plugins::wasm(TEST_TRAP), &deployed);
    reload::sighup(&gale, &text).expect_reloaded();
    gale.get("/whoami").expect_status(503);
    log_entry(&gale, &["`policy`", "trapped", "trapping on purpose"]);

    // And back.
    install(&plugins::wasm(HEADER_POLICY), &deployed);
    reload::sighup(&gale, &text).expect_reloaded();
    let response = gale.get("/whoami");
    response.expect_status(200);
    assert_eq!(response.header("x-policy"), Some("header-policy"), "{response}");
    assert_eq!(total_hits(&tornado), 2);
}
