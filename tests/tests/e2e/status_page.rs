//! The status page (`GET /` on the admin listener) loaded in a real browser: headless Chromium
//! (Debian's `chromium`, installed by `scripts/setup.sh`) against a running gale with Tornado
//! backends, a supervised child, plugins, and traffic that includes errors. The DOM Chromium
//! built is checked (backends and their states, counts equal to `/metrics`, the child's pid,
//! the plugin rows, recent errors, hostile names shown as text), and a screenshot is saved as
//! `target/test-artifacts/status-page.png`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use gale_tests::admin::{self, admin_addr};
use gale_tests::config::TomlValue;
use gale_tests::{Gale, Tornado, dead_addr, http, paths, plugins, wait_until};

use crate::supervise::{free_ports, tornado_process};

/// Long enough to notice a hang, never a pass/fail timing.
const PATIENCE: Duration = Duration::from_secs(60);

/// An upstream name a config may hold and a page must never run.
const EVIL: &str = "<script>alert('up')</script>";

/// The browser: `$CHROMIUM`, else `chromium` on PATH. Panics, saying how to install it.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "chromium is not installed: the status page test needs a real browser. Run \
             scripts/setup.sh as root (it installs Debian's `chromium`), or set CHROMIUM"
        )
    })
}

/// Runs headless Chromium on `url` with `extra` arguments; returns its stdout. Fails the
/// test if it does not finish within [`PATIENCE`] or exits with an error.
fn run_chromium(url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let out_path = profile.path().join("stdout");
    let err_path = profile.path().join("stderr");
    let mut command = Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().join("profile").display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"));
    let mut child = gale_tests::process::spawn(command).expect("start chromium");
    let mut status = None;
    let deadline = std::time::Instant::now() + PATIENCE;
    while status.is_none() && std::time::Instant::now() < deadline {
        status = child.try_wait().expect("wait chromium");
        if status.is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let stderr = || std::fs::read_to_string(&err_path).unwrap_or_default();
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("chromium {extra:?} {url} did not finish within {PATIENCE:?}; stderr:\n{}", stderr());
    };
    assert!(status.success(), "chromium {extra:?} {url} failed ({status}); stderr:\n{}", stderr());
    std::fs::read_to_string(&out_path).expect("chromium stdout")
}

/// Where test artifacts go: `<target>/test-artifacts/`.
fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"));
    let dir = paths::repo_root().join(target).join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create test-artifacts");
    dir
}

/// The `<tr ...>` rows of the DOM whose opening tag has `class="{class}"`, each as its cells'
/// text (tags stripped, entities kept as Chromium serialised them).
fn rows(dom: &str, class: &str) -> Vec<Vec<String>> {
    let open = format!("<tr class=\"{class}\">");
    dom.split(&open)
        .skip(1)
        .map(|rest| {
            let row = rest.split("</tr>").next().unwrap_or("");
            row.split("<td")
                .skip(1)
                .map(|cell| {
                    let inner = cell.split_once('>').map_or("", |(_, c)| c);
                    let inner = inner.split("</td>").next().unwrap_or("");
                    strip_tags(inner)
                })
                .collect()
        })
        .collect()
}

fn strip_tags(s: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// The config: a Tornado pool with header-policy on `/`, test-trap on `/trap/`, a supervised
/// child on `/children/`, and an upstream with a hostile name and a dead backend on `/dead/`.
fn config(tornadoes: &[Tornado], dead: SocketAddr, plugin_dir: &Path) -> String {
    let base = free_ports(1);
    let servers: Vec<String> = tornadoes.iter().map(|t| format!("\"{}\"", t.addr())).collect();
    format!(
        r#"[global]
threads = 2
pid_file = "gale.pid"
plugin_dir = {plugin_dir}
plugin_cache_dir = "plugin-cache"
plugin_memory = "16M"
plugin_hook_timeout = "{timeout}"

[admin]
listen = "127.0.0.1:0"

[upstream.tornadoes]
servers = [{servers}]

[upstream.children]
process = {process}

[upstream.{evil}]
servers = ["{dead}"]

[[server]]
listen = ["127.0.0.1:0"]
server_name = ["status.test"]

[[server.location]]
path = "/dead/"
proxy = {{ pass = {evil} }}

[[server.location]]
path = "/trap/"
proxy = {{ pass = "tornadoes" }}
plugins = [{{ name = "test-trap", config = {{ path_prefix = "/trap" }} }}]

[[server.location]]
path = "/children/"
proxy = {{ pass = "children" }}

[[server.location]]
path = "/"
proxy = {{ pass = "tornadoes" }}
plugins = [{{ name = "header-policy", config = {{ request = {{ set = {{ "x-from" = "$remote_addr" }} }}, response = {{ set = {{ "x-frame-options" = "DENY" }} }} }} }}]
"#,
        plugin_dir = plugin_dir.to_str().expect("utf-8 plugin dir").toml(),
        timeout = plugins::HOOK_TIMEOUT,
        servers = servers.join(", "),
        process = tornado_process(1, base, "").0,
        evil = EVIL.toml(),
    )
}

#[test]
fn the_status_page_shows_backends_children_plugins_and_errors_in_chromium() {
    // Fail first, and clearly, without a browser.
    chromium();
    let tornadoes = Tornado::spawn_pool(2);
    let dead_backend = dead_addr();
    let gale = Gale::start(&config(&tornadoes, dead_backend, &plugins::built_dir()));
    let admin = admin_addr(&gale);

    // Traffic: successes through header-policy, traps, failed upstream attempts, the child.
    for _ in 0..6 {
        gale.get("/whoami").expect_status(200);
    }
    for _ in 0..3 {
        gale.get("/trap/whoami").expect_status(503);
    }
    for _ in 0..2 {
        assert_eq!(gale.get("/dead/x").status, 502);
    }
    for _ in 0..4 {
        gale.get("/children/whoami").expect_status(200);
    }
    // Every response above is counted once its body has ended: wait for all 15.
    wait_until(PATIENCE, "15 responses in /metrics", || {
        let m = admin::metrics(admin);
        m.samples.iter().filter(|s| s.name == "gale_requests_total").map(|s| s.value).sum::<f64>() >= 15.0
    });
    let metrics = admin::metrics(admin);
    let status = admin::status(admin);
    let child_pid = status["children"][0]["pid"].as_u64().expect("the child's pid in /status");

    // A plain GET: HTML, the refresh, and a bad refresh refused.
    let page = http::get(admin, "/");
    page.expect_status(200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(page.text().contains("<meta http-equiv=\"refresh\" content=\"5\">"));
    assert!(http::get(admin, "/?refresh=2").text().contains("content=\"2\""));
    assert!(!http::get(admin, "/?refresh=0").text().contains("http-equiv"));
    for bad in ["/?refresh=abc", "/?refresh=-1", "/?refresh=100000"] {
        let response = http::get(admin, bad);
        assert_eq!(response.status, 400, "{bad}: {response}");
        assert!(response.text().contains("refresh must be a whole number"), "{bad}: {response}");
    }

    let url = format!("http://{admin}/");
    let dom = run_chromium(&url, &["--dump-dom"]);
    assert!(dom.contains("gale ") && dom.contains(" status</h1>"), "not the status page:\n{dom}");

    // The hostile upstream name is text, never markup: no script element anywhere.
    assert!(!dom.to_lowercase().contains("<script"), "a <script> element reached the DOM:\n{dom}");
    assert!(dom.contains("&lt;script&gt;alert('up')&lt;/script&gt;"), "the hostile name, escaped:\n{dom}");

    // The server row: its counts by class equal /metrics.
    let servers = rows(&dom, "server");
    assert_eq!(servers.len(), 1, "{servers:?}");
    let row = &servers[0];
    assert_eq!(row[0], "status.test");
    let class = |c: &str| -> String {
        let n: f64 = metrics
            .samples
            .iter()
            .filter(|s| s.name == "gale_requests_total" && s.labels.get("status").is_some_and(|st| st.starts_with(c)))
            .map(|s| s.value)
            .sum();
        format!("{n}")
    };
    assert_eq!(row[6], class("2"), "2xx: {row:?}");
    assert_eq!(row[9], class("5"), "5xx: {row:?}");
    assert_eq!(row[6], "10");
    assert_eq!(row[9], "5", "3 traps (503) and 2 dead backends (502): {row:?}");

    // Backends: the two Tornado processes up with their responses; the dead one down with
    // its connect errors; the child running with the pid /status gives.
    let backends = rows(&dom, "backend");
    for t in &tornadoes {
        let addr = t.addr().to_string();
        let row = backends.iter().find(|r| r[1] == addr).unwrap_or_else(|| panic!("no row for {addr}: {backends:?}"));
        assert_eq!(row[3], "up", "{row:?}");
        let responses = metrics.value(
            "gale_upstream_attempts_total",
            &[("upstream", "tornadoes"), ("backend", &addr), ("outcome", "response")],
        );
        assert_eq!(row[8], format!("{responses}"), "{row:?}");
    }
    let dead_addr = dead_backend.to_string();
    let dead = backends.iter().find(|r| r[1] == dead_addr).unwrap_or_else(|| panic!("no {dead_addr}: {backends:?}"));
    assert_eq!(dead[3], "down", "{dead:?}");
    assert!(dead[9].parse::<f64>().is_ok_and(|n| n >= 1.0), "connect errors: {dead:?}");
    let child =
        backends.iter().find(|r| r[7].contains("running")).unwrap_or_else(|| panic!("no running child: {backends:?}"));
    assert!(child[7].contains(&format!("pid {child_pid}")), "{child:?}");
    assert!(child[7].contains("0 restarts"), "{child:?}");
    assert_eq!(child[8], "4", "the child answered the 4 requests: {child:?}");

    // Plugins: header-policy ran (ok) on the 6 requests of `/`, test-trap trapped 3 times.
    let plugin_rows = rows(&dom, "plugin");
    let plugin = |name: &str| {
        plugin_rows
            .iter()
            .find(|r| r[1] == name && r[2] == "on-request")
            .unwrap_or_else(|| panic!("no {name} on-request row: {plugin_rows:?}"))
    };
    let header_policy = plugin("header-policy");
    assert_eq!((header_policy[0].as_str(), header_policy[3].as_str()), ("global", "closed"), "{header_policy:?}");
    let ran_or_remembered = |r: &[String]| r[4].parse::<u64>().unwrap_or(0) + r[10].parse::<u64>().unwrap_or(0);
    assert_eq!(ran_or_remembered(header_policy), 6, "calls: {header_policy:?}");
    let trap = plugin("test-trap");
    assert_eq!(trap[5], "3", "traps: {trap:?}");
    assert!(!rows(&dom, "tenant").is_empty(), "the tenant table");

    // Recent errors: the failed upstream attempts and the guest's panic message.
    let errors = rows(&dom, "error");
    assert!(errors.iter().any(|r| r[2].contains("upstream attempt failed")), "{errors:?}");
    assert!(errors.iter().any(|r| r[2].contains("trapping on purpose")), "{errors:?}");

    // The screenshot, for a person to look at.
    let png = artifacts().join("status-page.png");
    let _ = std::fs::remove_file(&png);
    run_chromium(&url, &[&format!("--screenshot={}", png.display()), "--window-size=1280,1600"]);
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
        "not a PNG of a page: {} bytes",
        bytes.len()
    );
}
