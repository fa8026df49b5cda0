//! Feedback where people wait, from the real binary: `gale restart` prints each child's step
//! as it happens (while the restart is still under way), `gale check -v` prints what it loaded,
//! `gale plugins list` lists a plugin directory.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use gale_tests::admin::{self, admin_addr};
use gale_tests::config::{Raw, TomlValue};
use gale_tests::http::Conn;
use gale_tests::{gale_command, paths, plugins, run_gale, wait_until};

use crate::supervise::{free_ports, supervised_config};

/// Long enough to notice a hang, never a pass/fail timing.
const PATIENCE: Duration = Duration::from_secs(60);

/// One Tornado child on `port` that gale waits up to a minute for before stopping it anyway.
fn patient_child(port: u16) -> Raw {
    let python = paths::python();
    let app = paths::tornado_app();
    Raw(format!(
        "{{ command = [{}, {}, \"--port={{port}}\", \"--name=child-{{index}}\"], count = 1, \
         base_port = {port}, stop_timeout = \"60s\", start_timeout = \"20s\" }}",
        python.to_str().expect("utf-8 path").toml(),
        app.to_str().expect("utf-8 path").toml(),
    ))
}

/// The next line `gale restart` printed, within [`PATIENCE`].
fn next_line(lines: &mpsc::Receiver<String>, seen: &[String]) -> String {
    lines.recv_timeout(PATIENCE).unwrap_or_else(|e| panic!("no next progress line ({e}); so far: {seen:#?}"))
}

#[test]
fn restart_prints_each_step_while_the_restart_is_under_way() {
    let port = free_ports(1);
    let gale = supervised_config(patient_child(port)).admin().start();
    let admin = admin_addr(&gale);
    let old_pid = admin::status(admin)["children"][0]["pid"].as_u64().expect("child pid");

    // A request in flight on the child that only this test can finish: half of its body.
    let mut conn = Conn::open(gale.addr());
    let head = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n12345";
    conn.write_raw(head.as_bytes()).expect("send half a request");
    wait_until(PATIENCE, "the request in flight on the child", || {
        admin::status(admin)["upstreams"][0]["backends"][0]["in_flight"].as_u64() == Some(1)
    });

    let config = gale.config_path().to_str().expect("utf-8 path").to_owned();
    let mut command = gale_command();
    command
        .args(["restart", "tornadoes", "--config", &config])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut restart = gale_tests::process::spawn(command).expect("spawn gale restart");
    let (tx, lines) = mpsc::channel();
    let stdout = restart.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    // The first steps arrive while the restart waits for our request, which it has counted:
    // it cannot have ended.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let line = next_line(&lines, &seen);
        seen.push(line);
    }
    assert_eq!(seen[0], "tornadoes: replacing 1 child one at a time", "{seen:#?}");
    assert_eq!(seen[1], "tornadoes[0]: out of rotation; waiting for 1 request in flight (at most 60s)", "{seen:#?}");
    assert!(restart.try_wait().expect("try_wait").is_none(), "gale restart ended with a request in flight");
    // Meanwhile the status page shows the child's backend draining.
    let page = gale_tests::http::get(admin, "/?refresh=0").text();
    assert!(page.contains("<td class=\"draining\">draining</td>"), "{page}");

    // Our request finishes on the old child; then the replacement goes on, step by step.
    conn.write_raw(b"67890").expect("send the rest");
    let response = conn.read_response(false).expect("the response");
    assert_eq!(response.status, 200, "{response}");
    let status = restart.wait().expect("wait gale restart");
    seen.extend(lines.iter());
    assert!(status.success(), "gale restart failed: {seen:#?}");
    let new_pid = admin::status(admin)["children"][0]["pid"].as_u64().expect("new child pid");
    assert_ne!(new_pid, old_pid);
    let want = [
        "tornadoes[0]: waited".to_owned(),
        format!("tornadoes[0]: stopping pid {old_pid}"),
        "tornadoes[0]: starting a new process".to_owned(),
        format!("tornadoes[0]: started pid {new_pid}; waiting until it is ready on port {port}"),
        format!("tornadoes[0]: pid {old_pid} replaced by pid {new_pid}, in rotation"),
        "tornadoes: 1 child replaced".to_owned(),
    ];
    let rest = &seen[2..];
    assert_eq!(rest.len(), want.len(), "{seen:#?}");
    for (line, want) in rest.iter().zip(&want) {
        assert!(line.starts_with(want.as_str()), "expected {want:?}, got {line:?}; all:\n{seen:#?}");
    }
    assert!(rest[0].ends_with("for 1 request to finish"), "{seen:#?}");
}

/// A config with a Tornado pool, a supervised upstream, a static location and a plugin.
fn loaded_config(dir: &std::path::Path) -> String {
    let plugin_dir = plugins::built_dir();
    let static_root = dir.join("www");
    std::fs::create_dir_all(&static_root).expect("www");
    format!(
        r#"[global]
plugin_dir = {plugin_dir}
plugin_cache_dir = "cache"

[upstream.app]
servers = ["127.0.0.1:8000", "127.0.0.1:8001"]
balance = "least_conn"

[upstream.kids]
process = {{ command = ["python3", "app.py", "--port={{port}}"], count = 2, base_port = 9100 }}

[[server]]
listen = ["127.0.0.1:8080", "127.0.0.1:8081"]
server_name = ["www.example.test", "*.example.test"]

[[server.location]]
path = "= /exact"
proxy = {{ pass = "kids" }}

[[server.location]]
path = "/static/"
static = {{ root = {root} }}

[[server.location]]
path = "/"
proxy = {{ pass = "app" }}
plugins = [{{ name = "header-policy", on_error = "fail-open" }}, "test-trap"]
"#,
        plugin_dir = plugin_dir.to_str().expect("utf-8").toml(),
        root = static_root.to_str().expect("utf-8").toml(),
    )
}

#[test]
fn check_verbose_prints_servers_locations_plugins_and_upstreams() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gale.toml");
    std::fs::write(&path, loaded_config(dir.path())).expect("write config");
    let path = path.to_str().expect("utf-8");

    let quiet = run_gale(&["check", "--config", path], Some(dir.path()));
    assert_eq!((quiet.code(), quiet.stdout.as_str()), (Some(0), "OK\n"), "{quiet:?}");

    let out = run_gale(&["check", "-v", "--config", path], Some(dir.path()));
    assert_eq!(out.code(), Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "server www.example.test, *.example.test: listen 127.0.0.1:8080, 127.0.0.1:8081; tenant global",
            "  location = /exact: proxy -> upstream `kids`",
            "  location /static/: static files",
            "  location /: proxy -> upstream `app`",
            "    plugin header-policy: world memoizable-header-policy; on_error fail-open",
            "    plugin test-trap: world header-policy; on_error fail-closed",
            "upstream app: servers 127.0.0.1:8000, 127.0.0.1:8001; balance least_conn",
            "upstream kids: 2 supervised children on ports 9100-9101; balance round_robin",
            "OK",
        ],
        "{out:?}"
    );

    // A config that fails prints its error, not a report.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, loaded_config(dir.path()).replace("\"test-trap\"", "\"no-such-plugin\"")).expect("write");
    let out = run_gale(&["check", "-v", "--config", bad.to_str().expect("utf-8")], Some(dir.path()));
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "a failed check printed a report: {out:?}");
    assert!(out.stderr.contains("no-such-plugin"), "{out:?}");
}

#[test]
fn plugins_list_shows_each_component_world_size_and_declarations() {
    let dir = tempfile::tempdir().expect("tempdir");
    for file in [plugins::HEADER_POLICY, plugins::TEST_TRAP, plugins::TEST_UNDECLARED] {
        std::fs::copy(plugins::wasm(file), dir.path().join(file)).expect("copy plugin");
    }
    std::fs::write(dir.path().join("test_trap.toml"), "").expect("default config");
    std::fs::write(dir.path().join("README"), "not a plugin").expect("other file");
    let plugin_dir = dir.path().to_str().expect("utf-8");

    let out = run_gale(&["plugins", "list", "--plugin-dir", plugin_dir], None);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let size = |file: &str| std::fs::metadata(dir.path().join(file)).expect("size").len();
    let kib = |file: &str| format!("{:.0} KiB", size(file) as f64 / 1024.0);
    let want = [
        format!("{plugin_dir}: 3 plugins"),
        format!("header-policy: header_policy.wasm, {}, world memoizable-header-policy", kib("header_policy.wasm")),
        "  on-request: not called (header-interest)".to_owned(),
        "  on-response: not called (header-interest)".to_owned(),
        "  default config: none".to_owned(),
        format!("test-trap: test_trap.wasm, {}, world header-policy", kib("test_trap.wasm")),
        "  on-request: given the whole request; answers not remembered".to_owned(),
        "  on-response: given the whole request; answers not remembered".to_owned(),
        format!("  default config: {}", dir.path().join("test_trap.toml").display()),
        format!(
            "test-undeclared: test_undeclared.wasm, {}, world memoizable-header-policy",
            kib("test_undeclared.wasm")
        ),
        "  on-request: reads path; answers remembered".to_owned(),
        "  on-response: reads path and no response header; answers remembered".to_owned(),
        "  default config: none".to_owned(),
    ];
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), want, "{out:?}");

    // A file that is not a component is listed with the reason, and the exit status says so.
    std::fs::write(dir.path().join("broken.wasm"), "not wasm").expect("broken");
    let out = run_gale(&["plugins", "list", "--plugin-dir", plugin_dir], None);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.stdout.lines().any(|l| l.starts_with("broken: broken.wasm, 8 bytes, refused: ")
            && l.contains("not a valid WebAssembly component")),
        "{out:?}"
    );
    assert!(out.stdout.contains("test-trap: test_trap.wasm"), "the others are still listed: {out:?}");

    // No such directory: a one-line error, exit 2.
    let missing = dir.path().join("nope");
    let out = run_gale(&["plugins", "list", "--plugin-dir", missing.to_str().expect("utf-8")], None);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert_eq!(out.stderr_lines().len(), 1, "{out:?}");
    assert!(out.stderr.contains("cannot read the plugin directory"), "{out:?}");
}
