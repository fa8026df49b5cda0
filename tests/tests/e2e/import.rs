//! `gale import`: docs/nginx-reference.conf becomes a config that passes `gale check` and, in
//! front of real Tornado processes, answers a table of requests as examples/tornado-site.toml
//! (its translation by hand) does; malformed nginx input gets one `FILE:LINE:COL` line and exit
//! 1, never a panic or a hang.
//!
//! The nginx text is adapted before the import (the Tornado ports, `listen`, the folders under
//! /var and /run moved into a temporary folder); the imported config is used as written.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gale_tests::multipart;
use gale_tests::{Finished, Gale, Request, Response, Tornado, paths, plugins, run_gale, wait_until};
use serde_json::Value;
use tempfile::TempDir;

/// The reference configuration, adapted to run here: `ports` for 8000-8003, `listen 80` on an
/// OS-assigned loopback port, /var and /run inside `dir`.
fn adapted_reference(dir: &Path, ports: &[u16]) -> PathBuf {
    let mut text =
        std::fs::read_to_string(paths::repo_root().join("docs/nginx-reference.conf")).expect("read reference");
    for (i, port) in ports.iter().enumerate() {
        text = text.replace(&format!("127.0.0.1:800{i};"), &format!("127.0.0.1:{port};"));
    }
    let base = dir.to_str().expect("UTF-8 temp dir");
    text = text
        .replace("listen 80;", "listen 127.0.0.1:0;")
        .replace(" /var/", &format!(" {base}/var/"))
        .replace(" /run/", &format!(" {base}/run/"));
    // nginx creates the upload store itself, not its parent folders; neither does gale.
    std::fs::create_dir_all(dir.join("var/spool")).expect("mkdir var/spool");
    let path = dir.join("nginx.conf");
    std::fs::write(&path, text).expect("write nginx.conf");
    path
}

/// `gale import NGINX -o DIR/gale.toml --report DIR/report.json --plugin-dir <built plugins>`.
fn import(dir: &Path, nginx: &Path, extra: &[&str]) -> (Finished, String, Value) {
    let out = dir.join("gale.toml");
    let report = dir.join("report.json");
    let plugin_dir = plugins::built_dir();
    let mut args = vec![
        "import",
        nginx.to_str().expect("utf-8"),
        "-o",
        out.to_str().expect("utf-8"),
        "--report",
        report.to_str().expect("utf-8"),
        "--plugin-dir",
        plugin_dir.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    let finished = run_gale(&args, Some(dir));
    assert_eq!(finished.code(), Some(0), "gale import failed: {finished:?}");
    let toml = std::fs::read_to_string(&out).expect("the imported config");
    let json = serde_json::from_str(&std::fs::read_to_string(&report).expect("the JSON report")).expect("JSON");
    (finished, toml, json)
}

/// The fate the JSON report gives the first directive written as `text`.
fn fate<'a>(report: &'a Value, text: &str) -> &'a str {
    report["directives"]
        .as_array()
        .expect("directives")
        .iter()
        .find(|d| d["directive"] == text)
        .unwrap_or_else(|| panic!("`{text}` is not in the report: {report:#}"))["fate"]
        .as_str()
        .expect("fate")
}

#[test]
fn the_reference_imports_with_a_fate_for_every_directive_and_passes_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nginx = adapted_reference(dir.path(), &[8000, 8001, 8002, 8003]);
    let (finished, toml, report) = import(dir.path(), &nginx, &[]);

    // Every directive of the file (comments and blank lines aside, one per `;` or `{`) is in
    // the report, in order, each with one of the four fates.
    let text = std::fs::read_to_string(&nginx).expect("read");
    let written =
        text.lines().map(|l| l.split('#').next().unwrap_or("").trim()).filter(|l| l.ends_with(';') || l.ends_with('{'));
    let directives = report["directives"].as_array().expect("directives");
    assert_eq!(directives.len(), written.count(), "{report:#}");
    let lines: Vec<u64> = directives.iter().map(|d| d["line"].as_u64().expect("line")).collect();
    assert!(lines.windows(2).all(|w| w[0] < w[1]), "not in file order: {lines:?}");
    for d in directives {
        let f = d["fate"].as_str().expect("fate");
        assert!(["translated", "changed", "default", "unsupported"].contains(&f), "{d}");
        assert!(!d["note"].as_str().expect("note").is_empty(), "a fate without a note: {d}");
    }
    assert_eq!(fate(&report, "proxy_next_upstream error"), "changed");
    assert_eq!(fate(&report, "user www-data"), "unsupported");
    assert_eq!(fate(&report, "sendfile on"), "default");
    assert_eq!(fate(&report, "include mime.types"), "default");
    assert_eq!(fate(&report, "upload_pass @after_upload"), "translated");
    assert_eq!(fate(&report, "expires max"), "translated");
    // The stderr report has a line per directive, then the totals.
    assert_eq!(finished.stderr_lines().len(), directives.len() + 1, "{}", finished.stderr);
    assert!(finished.stderr.contains("CHANGED: `proxy_next_upstream error`"), "{}", finished.stderr);

    // A comment per block naming its source line.
    assert!(toml.contains(&format!("# nginx: `location /static/ {{ ... }}` at {}:", nginx.display())), "{toml}");
    assert!(toml.contains("next_upstream = \"connect\""), "{toml}");

    let out = dir.path().join("gale.toml");
    let check = run_gale(&["check", "--config", out.to_str().expect("utf-8")], Some(dir.path()));
    assert_eq!(check.code(), Some(0), "gale check refused the imported config:\n{toml}\n{check:?}");
    assert_eq!(check.stdout.trim(), "OK");
}

#[test]
fn keep_semantics_keeps_nginx_retry_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nginx = adapted_reference(dir.path(), &[8000, 8001, 8002, 8003]);
    let (_, toml, report) = import(dir.path(), &nginx, &["--keep-semantics"]);
    assert!(toml.contains("next_upstream = \"error\""), "{toml}");
    assert_eq!(fate(&report, "proxy_next_upstream error"), "translated");
}

/// `count` consecutive ports nobody listens on, below the ephemeral range.
pub(crate) fn free_ports(count: u16) -> u16 {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ (u64::from(std::process::id()) << 32) ^ CALLS.fetch_add(1, Ordering::SeqCst) as u64;
    loop {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let base = 20_000 + ((x >> 33) % 12_000) as u16;
        if (base..base + count).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
}

/// examples/tornado-site.toml with what must differ on this machine: an OS-assigned listen
/// port, free ports for its children, the repository's paths, its store and pid file in `dir`.
pub(crate) fn adapted_example(dir: &Path) -> String {
    let repo = paths::repo_root();
    let text = std::fs::read_to_string(repo.join("examples/tornado-site.toml")).expect("read example");
    let q = |p: &Path| serde_json::to_string(p.to_str().expect("utf-8")).expect("json string");
    let replaced = text
        .replace("\"127.0.0.1:8080\"", "\"127.0.0.1:0\"")
        .replace("base_port = 8000", &format!("base_port = {}", free_ports(4)))
        .replace("\"../run/gale.pid\"", &q(&dir.join("gale.pid")))
        .replace("\"../run/plugin-cache\"", "\"plugin-cache\"")
        .replace("\"../target/plugins\"", &q(&plugins::built_dir()))
        .replace("\"../.venv/bin/python\"", &q(&paths::python()))
        .replace("\"../tests/tornado/app.py\"", &q(&paths::tornado_app()))
        .replace("root = \"site\"", &format!("root = {}", q(&repo.join("examples/site"))))
        .replace("store = \"uploads\"", &format!("store = {}", q(&dir.join("uploads"))));
    assert!(!replaced.contains("\"../"), "a relative path is left in the example:\n{replaced}");
    replaced
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body).read_to_end(&mut out).expect("a gzip body");
    out
}

/// What a table row compares: the status, the headers that matter, and the body (decoded)
/// or, for JSON from Tornado, the fields that do not name a process.
fn answer(r: &Response) -> String {
    let mut out = format!("{}", r.status);
    // Lengths are not compared: Tornado's JSON names its process; the bodies are.
    for h in ["content-type", "content-encoding", "vary", "expires", "cache-control"] {
        if let Some(v) = r.header(h) {
            out.push_str(&format!("\n{h}: {v}"));
        }
    }
    let body = if r.header("content-encoding") == Some("gzip") { gunzip(&r.body) } else { r.body.clone() };
    match serde_json::from_slice::<Value>(&body) {
        Ok(mut v) => {
            for k in ["port", "pid", "name", "peer_port"] {
                v.as_object_mut().map(|o| o.remove(k));
            }
            if let Some(files) = v.get_mut("files").and_then(Value::as_array_mut) {
                for f in files {
                    f.as_object_mut().map(|o| o.remove("path"));
                }
            }
            if let Some(fields) = v.get_mut("fields").and_then(Value::as_object_mut)
                && let Some(paths) = fields.get_mut("file.path")
            {
                *paths = Value::from("<store path>");
            }
            if let Some(h) = v.get_mut("headers").and_then(Value::as_object_mut) {
                // The Host gale's client sends names the listener's port.
                h.remove("Host");
            }
            v.as_object_mut().map(|o| o.remove("host"));
            out.push_str(&format!("\n{v}"));
        }
        // Long bodies by length and md5, so a difference stays readable.
        Err(_) if body.len() > 200 => {
            out.push_str(&format!("\n{} bytes, md5 {}", body.len(), multipart::md5_hex(&body)))
        }
        Err(_) => out.push_str(&format!("\n{}", String::from_utf8_lossy(&body))),
    }
    out
}

#[test]
fn the_imported_config_answers_as_the_hand_written_example() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tornadoes = Tornado::spawn_pool(4);
    let ports: Vec<u16> = tornadoes.iter().map(Tornado::port).collect();
    let nginx = adapted_reference(dir.path(), &ports);
    let (_, toml, _) = import(dir.path(), &nginx, &[]);
    // The static files the nginx root names: the example's.
    let root = dir.path().join("var/www/tornado-site/static");
    std::fs::create_dir_all(&root).expect("mkdir root");
    let css = std::fs::read(paths::repo_root().join("examples/site/static/app.css")).expect("app.css");
    std::fs::write(root.join("app.css"), &css).expect("copy app.css");
    let imported = Gale::start(&toml);
    let example_dir = tempfile::tempdir().expect("tempdir");
    let example = Gale::start(&adapted_example(example_dir.path()));

    let upload = multipart::body(&[
        multipart::file("file", "notes.txt", "text/plain", b"twelve bytes"),
        multipart::text("description", b"kept: upload_pass_form_field"),
        multipart::text("other", b"dropped"),
    ]);
    let gz = |target: &str| Request::get(target).header("Accept-Encoding", "gzip");
    let table: Vec<(&str, Request)> = vec![
        ("proxied, with gale's forwarding headers", Request::get("/whoami?x=1").header("X-Real-IP", "6.6.6.6")),
        ("a static file, no query: no caching headers", Request::get("/static/app.css")),
        ("a versioned static file: expires max", Request::get("/static/app.css?v=3")),
        ("a static file, gzipped", gz("/static/app.css?v=3")),
        ("a proxied page, gzipped (gzip_proxied any)", gz("/html?n=5000")),
        ("a short proxied page, not gzipped (gzip_min_length)", gz("/html?n=500")),
        ("a missing static file", Request::get("/static/missing.css")),
        ("return 404", Request::get("/robots.txt")),
        (
            "an upload: stored, fields set and passed",
            Request::post("/upload-answer?status=200", upload.clone())
                .header("Content-Type", &multipart::content_type()),
        ),
        ("an upload location refuses GET", Request::get("/upload-answer")),
    ];
    for (what, request) in &table {
        let a = imported.send(request);
        let b = example.send(request);
        assert_eq!(answer(&a), answer(&b), "{what}: imported (left) and example (right) differ");
    }
    // The rows check something: the answers are the ones the deployment is for.
    let r = imported.send(&gz("/static/app.css?v=3"));
    assert_eq!((r.status, r.header("content-encoding")), (200, Some("gzip")));
    assert_eq!(gunzip(&r.body), css);
    assert_eq!(r.header("cache-control"), Some("max-age=315360000"));
    assert_eq!(imported.get("/robots.txt").status, 404);
    let up = imported.send(&table[8].1);
    let v: Value = up.json();
    assert_eq!(v["files"][0]["ok"], true, "{v}");
    assert_eq!(v["fields"]["description"][0], "kept: upload_pass_form_field", "{v}");
    assert!(v["fields"].get("other").is_none(), "{v}");
    let who: Value = imported.get("/whoami").json();
    assert_eq!(who["headers"]["X-Real-Ip"][0], "127.0.0.1", "{who}");

    // next_upstream: a request that kills its backend is not resent to another (502), and
    // once the process is gone the next requests go to the live ones.
    let patience = Duration::from_secs(30);
    assert_eq!(imported.get("/die").status, 502, "imported: a query of death is answered 502, not resent");
    wait_until(patience, "the Tornado process that got /die to exit", || tornadoes.iter().any(Tornado::has_exited));
    assert_eq!(example.get("/die").status, 502, "example: a query of death is answered 502, not resent");
    let config = example.config_path().to_str().expect("utf-8").to_owned();
    wait_until(patience, "gale to see its child exit", || {
        let out = run_gale(&["status", "--config", &config], None);
        out.stdout.lines().any(|l| !l.contains(": running ") || !l.ends_with(", 0 restarts"))
    });
    for (name, gale) in [("imported", &imported), ("example", &example)] {
        for _ in 0..8 {
            assert_eq!(gale.get("/whoami").status, 200, "{name}: the pool serves on");
        }
    }
    for t in &tornadoes {
        let died = t.has_exited();
        let got_die = !died && t.hits("/die") > 0;
        assert!(!got_die, "{} received /die but is alive", t.name());
    }
    assert_eq!(tornadoes.iter().filter(|t| t.has_exited()).count(), 1, "the query of death was resent");
}

/// Runs `gale import FILE` and checks the refusal: exit 1, one line on stderr that starts with
/// `FILE:` (and `want` in it), nothing on stdout, no panic.
#[track_caller]
fn refused(file: &Path, want: &str) -> String {
    refused_in(file, file, want)
}

/// [`refused`] where the error is in `at`, a file `file` includes.
#[track_caller]
fn refused_in(file: &Path, at: &Path, want: &str) -> String {
    let out = run_gale(&["import", file.to_str().expect("utf-8")], None);
    assert_eq!(out.code(), Some(1), "{out:?}");
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "not one line: {out:?}");
    assert!(lines[0].starts_with(&format!("{}:", at.display())), "{}", lines[0]);
    assert!(lines[0].contains(want), "expected `{want}` in: {}", lines[0]);
    assert!(out.stdout.is_empty(), "{out:?}");
    lines[0].to_owned()
}

fn write(dir: &TempDir, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn malformed_nginx_input_is_one_line_and_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(&dir, "quote.conf", "http {\n    server_name \"www.example.org;\n}\n");
    refused(&f, "quote.conf:2:17: unterminated string");
    let f = write(&dir, "semicolon.conf", "http {\n    keepalive_timeout 65\n}\n");
    refused(&f, "semicolon.conf:3:1: unexpected \"}\"");
    let f = write(&dir, "open.conf", "http {\n    server {\n        listen 80;\n    }\n");
    refused(&f, "expecting \"}\" to close `http` (line 1)");

    // An include loop, an include of a missing file.
    write(&dir, "a.conf", "include b.conf;\n");
    write(&dir, "b.conf", "events { }\ninclude a.conf;\n");
    let line = refused_in(&dir.path().join("a.conf"), &dir.path().join("b.conf"), "b.conf:2:1: include loop");
    assert!(line.ends_with("a.conf"), "{line}");
    let f = write(&dir, "missing.conf", "http {\n    include sites/*.conf;\n    include nowhere.conf;\n}\n");
    refused(&f, "missing.conf:3:5: include `nowhere.conf`");

    // A device that never ends, and a folder, are not configuration files.
    refused(Path::new("/dev/zero"), "not a regular file");
    refused(dir.path(), "not a regular file");

    // Blocks nested a hundred thousand deep.
    let f = write(&dir, "deep.conf", "a {".repeat(100_000));
    refused(&f, "nested more than");
}

#[test]
fn ten_megabytes_of_garbage_is_refused_in_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // Random bytes (not UTF-8), random printable ASCII, and words without a `;`.
    let bytes: Vec<u8> = (0..10 << 20).map(|_| next() as u8).collect();
    let ascii: Vec<u8> = (0..10 << 20).map(|_| b' ' + (next() % 95) as u8).collect();
    let words = "word ".repeat(2 << 20);
    for (name, text) in [("bytes.conf", bytes), ("ascii.conf", ascii), ("words.conf", words.into_bytes())] {
        let f = write(&dir, name, text);
        refused(&f, ":");
    }
}
