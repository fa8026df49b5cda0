//! Config tests: the default config and a good one load; every file in
//! `testdata/*.toml` fails with exactly the errors in its `.err` golden file
//! (regenerated only on purpose, by `scripts/bless.sh`: the run that blesses fails when it
//! changed a file, so a reviewer sees the diff).

use std::path::Path;

use super::*;

#[test]
fn default_config_is_the_reference_location() {
    let cfg = parse("default.toml", DEFAULT_CONFIG, Path::new(".")).expect("default config is valid");
    assert_eq!(cfg.listeners.len(), 1);
    assert_eq!(cfg.listeners[0].addr.to_string(), "127.0.0.1:8080");
    let up = &cfg.upstreams[0];
    assert_eq!(up.servers.len(), 4);
    assert_eq!(up.servers[3].addr.to_string(), "127.0.0.1:8003");
    assert_eq!(up.next_upstream, NextUpstream::Connect);
    assert_eq!(up.read_timeout, std::time::Duration::from_secs(200));
    assert_eq!(cfg.http.client_max_body_size, ByteSize(100 << 20));
}

#[test]
fn full_config_validates() {
    let text = r#"
[global]
threads = 2
pid_file = "run/gale.pid"
access_log = "logs/access.log"
[http]
client_max_body_size = "10m"
[upstream.app]
servers = ["127.0.0.1:8000", { address = "127.0.0.1:8001", weight = 3 }]
balance = "least_conn"
next_upstream = "error"
[[server]]
listen = ["127.0.0.1:8080"]
server_name = ["www.example.org", "*.Example.org"]
[[server.location]]
path = "= /exact"
proxy = { pass = "app" }
[[server]]
listen = ["127.0.0.1:8080"]
default_server = true
[[server.location]]
path = "/"
proxy = { pass = "app" }
"#;
    let cfg = parse("t.toml", text, Path::new("/etc/gale")).expect("valid");
    assert_eq!(cfg.global.pid_file.as_deref(), Some(Path::new("/etc/gale/run/gale.pid")));
    assert_eq!(cfg.global.access_log, LogTarget::File("/etc/gale/logs/access.log".into()));
    assert_eq!(cfg.upstreams[0].servers[1].weight, 3);
    assert_eq!(cfg.upstreams[0].balance, Balance::LeastConn);
    assert_eq!(cfg.servers[0].names[1], ServerName::Wildcard(".example.org".into()));
    assert_eq!(cfg.servers[0].locations[0].matcher, PathMatch::Exact("/exact".into()));
    // One listener shared by both servers; the default_server one comes first.
    assert_eq!(cfg.listeners.len(), 1);
    assert_eq!(cfg.listeners[0].servers, vec![1, 0]);
}

#[test]
fn golden_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config/testdata");
    let bless = std::env::var_os("GALE_BLESS").is_some();
    let mut cases = 0;
    let mut blessed = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir).expect("testdata").flatten().collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        cases += 1;
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).expect("read");
        let got = match parse(&name, &text, Path::new("/base")) {
            Ok(_) => panic!("{name}: expected errors, but it loaded"),
            Err(e) => format!("{e}\n"),
        };
        let golden = path.with_extension("err");
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        if bless && got != want {
            std::fs::write(&golden, &got).expect("write golden");
            blessed.push(golden.display().to_string());
            continue;
        }
        assert_eq!(got, want, "{name}: errors differ from {}", golden.display());
    }
    assert!(cases >= 5, "golden cases missing");
    assert!(blessed.is_empty(), "blessed (rewrote) {}: review `git diff` and commit", blessed.join(", "));
}

#[test]
fn process_section_makes_the_servers() {
    let text = r#"
[upstream.app]
servers = ["127.0.0.1:9000"]
process = { command = ["bin/app", "--port={port}"], count = 3, base_port = 8000, cwd = "srv", env = { PORT = "{port}" }, stop_signal = "SIGINT", start_timeout = "5s", start_retries = 2, log = "logs/{name}-{index}.log" }
[upstream.plain]
process = { command = ["app"], base_port = 7000 }
[[server]]
listen = ["127.0.0.1:8080"]
[[server.location]]
path = "/"
proxy = { pass = "app" }
"#;
    let cfg = parse("t.toml", text, Path::new("/etc/gale")).expect("valid");
    let up = &cfg.upstreams[0];
    let addrs: Vec<String> = up.servers.iter().map(|b| b.addr.to_string()).collect();
    assert_eq!(addrs, ["127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:9000"]);
    let p = up.process.as_ref().expect("process");
    assert_eq!(p.count, 3);
    assert_eq!(p.port(2), 8002);
    assert_eq!(p.cwd, Path::new("/etc/gale/srv"));
    assert_eq!(p.stop_signal, StopSignal::Int);
    assert_eq!(p.stop_timeout, std::time::Duration::from_secs(10));
    assert_eq!(p.start_timeout, std::time::Duration::from_secs(5));
    assert_eq!(p.start_retries, 2);
    let vars = ChildVars { port: 8001, index: 1, name: "app" };
    assert_eq!(p.command[1].render(vars), "--port=8001");
    assert_eq!(p.env[0].0, "PORT");
    assert_eq!(p.env[0].1.render(vars), "8001");
    match &p.log {
        ChildLog::File(t) => assert_eq!(t.render(vars), "logs/app-1.log"),
        other => panic!("log: {other:?}"),
    }
    // Defaults: one child, TERM, 10s, 3 retries, output to gale's stderr.
    let plain = cfg.upstreams[1].process.as_ref().expect("process");
    assert_eq!(cfg.upstreams[1].servers.len(), 1);
    assert_eq!((plain.count, plain.start_retries), (1, 3));
    assert_eq!(plain.stop_signal, StopSignal::Term);
    assert_eq!(plain.log, ChildLog::Stderr);
    assert_eq!(plain.cwd, Path::new("/etc/gale"));
}

#[test]
fn names_resolvers_and_health_checks() {
    let text = r#"
[global]
resolvers = ["10.0.0.2", "[::1]:5353"]
[upstream.app]
servers = ["127.0.0.1:8000", { address = "Tornado.App.svc.cluster.local:8001", weight = 3 }]
resolve_interval = "10s"
health_check = { path = "/health", interval = "2s", timeout = "500ms", rise = 1, fall = 2, expect_status = "2xx" }
[upstream.other]
servers = ["other.internal:9000"]
resolvers = ["127.0.0.1:5353"]
health_check = {}
[[server]]
listen = ["127.0.0.1:8080"]
[[server.location]]
path = "/"
proxy = { pass = "app" }
"#;
    let cfg = parse("t.toml", text, Path::new(".")).expect("valid");
    let app = &cfg.upstreams[0];
    assert_eq!(app.servers.len(), 1, "literal addresses stay as they are");
    assert_eq!(app.named, vec![NamedBackend { host: "tornado.app.svc.cluster.local".into(), port: 8001, weight: 3 }]);
    assert_eq!(app.resolvers, vec!["10.0.0.2:53".parse().expect("addr"), "[::1]:5353".parse().expect("addr")]);
    assert_eq!(app.resolve_interval, std::time::Duration::from_secs(10));
    let hc = app.health_check.as_ref().expect("health_check");
    assert_eq!(
        (hc.path.as_str(), hc.host.as_str(), hc.rise, hc.fall, hc.expect_status),
        ("/health", "app", 1, 2, (200, 299))
    );
    let other = &cfg.upstreams[1];
    assert_eq!(other.resolvers, vec!["127.0.0.1:5353".parse().expect("addr")], "its own resolvers win");
    assert_eq!(other.resolve_interval, std::time::Duration::from_secs(30));
    let hc = other.health_check.as_ref().expect("health_check");
    assert_eq!(
        (hc.path.as_str(), hc.interval, hc.timeout, hc.rise, hc.fall, hc.expect_status),
        ("/", std::time::Duration::from_secs(5), std::time::Duration::from_secs(1), 2, 3, (200, 399)),
        "the defaults"
    );
}
