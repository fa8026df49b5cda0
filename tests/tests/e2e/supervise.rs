//! Supervised backends (`process = { ... }`): gale starts the Tornado processes itself, keeps
//! them running, replaces them one at a time, and takes them down with it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use gale_tests::config::{Raw, TomlValue};
use gale_tests::http::{Conn, Request};
use gale_tests::{ConfigBuilder, Gale, SIGKILL, SIGTERM, Whoami, paths, run_gale, wait_until};

/// Long enough to notice a hang, never a pass/fail timing.
const PATIENCE: Duration = Duration::from_secs(30);

/// `count` consecutive ports nobody listens on, below the ephemeral range (so no outgoing
/// connection of a parallel test holds one of them).
pub(crate) fn free_ports(count: u16) -> u16 {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ (u64::from(std::process::id()) << 32) ^ CALLS.fetch_add(1, Ordering::SeqCst) as u64;
    loop {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let base = 20_000 + ((x >> 33) % 12_000) as u16;
        let free = (base..base + count).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            return base;
        }
    }
}

/// The `process` table running `count` Tornado children from `base_port`; `extra` is appended
/// inside the table (`, start_retries = 1`).
pub(crate) fn tornado_process(count: u16, base_port: u16, extra: &str) -> Raw {
    named_tornado_process("child", count, base_port, extra)
}

/// Like [`tornado_process`], the children named `PREFIX-INDEX`.
fn named_tornado_process(prefix: &str, count: u16, base_port: u16, extra: &str) -> Raw {
    let python = paths::python();
    let app = paths::tornado_app();
    Raw(format!(
        "{{ command = [{}, {}, \"--port={{port}}\", \"--name={prefix}-{{index}}\"], count = {count}, \
         base_port = {base_port}, stop_timeout = \"5s\", start_timeout = \"20s\"{extra} }}",
        python.to_str().expect("utf-8 path").toml(),
        app.to_str().expect("utf-8 path").toml(),
    ))
}

/// A config with one supervised upstream (and a pid file, for `gale restart` / `gale status`).
pub(crate) fn supervised_config(process: Raw) -> ConfigBuilder {
    ConfigBuilder::new(std::iter::empty::<SocketAddr>()).global("pid_file", "gale.pid").upstream("process", process)
}

/// gale with one supervised upstream.
#[track_caller]
fn supervised(process: Raw) -> Gale {
    supervised_config(process).start()
}

/// One child as `gale status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Child {
    state: String,
    pid: Option<u32>,
}

/// `gale status`, by child index.
#[track_caller]
fn status(gale: &Gale) -> Vec<Child> {
    let config = gale.config_path().to_str().expect("utf-8 path");
    let out = run_gale(&["status", "--config", config], None);
    assert_eq!(out.code(), Some(0), "gale status: {out:?}");
    out.stdout
        .lines()
        .map(|line| {
            // tornadoes[0] port 8000: running pid 1234, 0 restarts
            let (_, rest) = line.split_once(": ").expect("status line");
            let words: Vec<&str> = rest.split([' ', ',']).collect();
            let pid = (words.get(1) == Some(&"pid")).then(|| words[2].parse().expect("pid"));
            Child { state: words[0].to_owned(), pid }
        })
        .collect()
}

#[track_caller]
fn running_pids(gale: &Gale, count: usize) -> Vec<u32> {
    let mut pids = Vec::new();
    wait_until(PATIENCE, "every child running", || {
        let s = status(gale);
        pids = s.iter().filter_map(|c| c.pid.filter(|_| c.state == "running")).collect();
        pids.len() == count
    });
    pids
}

#[allow(unsafe_code)]
fn kill(pid: u32, signal: libc::c_int) -> bool {
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is a positive process id.
    unsafe { libc::kill(libc::pid_t::try_from(pid).expect("pid"), signal) == 0 }
}

/// Whether a process exists and is not a zombie (an orphan's zombie waits for init to reap it).
fn alive(pid: u32) -> bool {
    if !kill(pid, 0) {
        return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
    !matches!(state, Some(Some('Z' | 'X')) | None)
}

#[test]
fn four_children_on_their_ports_with_round_robin() {
    let base = free_ports(4);
    let gale = supervised(tornado_process(4, base, ""));
    let pids = running_pids(&gale, 4);
    let who: Vec<Whoami> = (0..8).map(|_| gale.get("/whoami").expect_status(200).json()).collect();
    let ports: Vec<u16> = who.iter().map(|w| w.port).collect();
    let want: Vec<u16> = (0..8).map(|i| base + i % 4).collect();
    assert_eq!(ports, want, "round robin over the children's ports");
    for w in &who {
        let index = usize::from(w.port - base);
        assert_eq!(w.pid, pids[index], "port {} answered by another process", w.port);
        assert_eq!(w.name, format!("child-{index}"));
    }
    assert!(gale.stderr().contains("accepts connections: in rotation"), "{}", gale.stderr());
}

#[test]
fn a_killed_child_is_restarted_and_no_client_sees_an_error() {
    let base = free_ports(4);
    let gale = supervised(tornado_process(4, base, ""));
    let old = running_pids(&gale, 4);
    // Keep-alive connections to every child sit in gale's pool.
    for _ in 0..8 {
        gale.get("/whoami").expect_status(200);
    }
    assert!(kill(old[1], SIGKILL));
    // A request racing the kill on a pooled keep-alive connection counts as sent and is not
    // retried in `connect` mode (nginx's `proxy_next_upstream error` would): that is the
    // proxy's policy, not supervision. From the moment gale sees the exit, no client may fail.
    wait_until(PATIENCE, "gale to see the child die", || gale.stderr().contains("killed by signal 9"));
    for i in 0..40 {
        let response = gale.get("/whoami");
        assert_eq!(response.status, 200, "request {i} after the kill:\n{response}\n{}", gale.stderr());
    }
    let mut new = Vec::new();
    wait_until(PATIENCE, "child 1 restarted", || {
        new = running_pids(&gale, 4);
        new[1] != old[1]
    });
    assert_eq!((new[0], new[2], new[3]), (old[0], old[2], old[3]), "only the killed child changed");
    // Back in rotation: a round of requests reaches all four again.
    let mut seen = BTreeSet::new();
    wait_until(PATIENCE, "the restarted child in rotation", || {
        let w: Whoami = gale.get("/whoami").expect_status(200).json();
        seen.insert(w.pid);
        seen.contains(&new[1])
    });
}

#[test]
fn a_command_that_exits_at_once_backs_off_then_fails_and_the_others_keep_serving() {
    let base = free_ports(3);
    let python = paths::python();
    let python = python.to_str().expect("utf-8 path").toml();
    let app = paths::tornado_app();
    let app = app.to_str().expect("utf-8 path").toml();
    // Child 1 exits at once; the others exec the real app.
    let wrapper = "import os, sys; sys.exit(3) if '{index}' == '1' else os.execv(sys.argv[1], sys.argv[1:])";
    let process = Raw(format!(
        "{{ command = [{python}, \"-c\", {}, {python}, {app}, \"--port={{port}}\"], count = 3, \
         base_port = {base}, start_retries = 2, start_timeout = \"20s\" }}",
        wrapper.toml()
    ));
    let gale = supervised(process);
    wait_until(PATIENCE, "child 1 failed", || status(&gale)[1].state == "failed");
    let s = status(&gale);
    assert_eq!((s[0].state.as_str(), s[2].state.as_str()), ("running", "running"), "{s:?}");
    let log = gale.stderr();
    assert!(log.contains("failed start 1 of 3, retrying in 500.0ms"), "{log}");
    assert!(log.contains("failed start 2 of 3, retrying in 1.0s"), "{log}");
    assert!(log.contains("giving up: child FAILED"), "{log}");
    for i in 0..12 {
        let w: Whoami = gale.get("/whoami").expect_status(200).json();
        assert_ne!(w.port, base + 1, "request {i} reached the failed child's port");
    }
}

#[test]
fn sigterm_stops_every_child() {
    let base = free_ports(4);
    let mut gale = supervised(tornado_process(4, base, ""));
    let pids = running_pids(&gale, 4);
    gale.signal(SIGTERM);
    let status = gale.wait();
    assert!(status.success(), "gale exited with {status}; stderr:\n{}", gale.stderr());
    for pid in pids {
        assert!(!alive(pid), "child {pid} outlived gale");
    }
    assert!(gale.stderr().contains("every child stopped"), "{}", gale.stderr());
    assert!(!gale.dir().join("gale.sock").exists(), "control socket left behind");
}

#[test]
fn no_child_outlives_a_gale_killed_with_sigkill() {
    // A child that does not watch its parent (the demo app does): only the kernel's
    // parent-death signal can take it down.
    let base = free_ports(2);
    let python = paths::python();
    let server = "import socket, time; s = socket.socket(); \
                  s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); \
                  s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(3600)";
    let process = Raw(format!(
        "{{ command = [{}, \"-c\", {}], count = 2, base_port = {base} }}",
        python.to_str().expect("utf-8 path").toml(),
        server.toml()
    ));
    let mut gale = supervised(process);
    let pids = running_pids(&gale, 2);
    gale.signal(SIGKILL);
    gale.wait();
    wait_until(PATIENCE, "children gone after gale's SIGKILL", || pids.iter().all(|p| !alive(*p)));
}

#[test]
fn a_rolling_restart_under_load_fails_no_request_and_replaces_every_child() {
    let base = free_ports(4);
    let gale = Arc::new(supervised(tornado_process(4, base, "")));
    let old = running_pids(&gale, 4);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    // Keep-alive clients, a new-connection client and a slow-request client, all the time.
    for kind in ["keep-alive", "keep-alive", "new-connection", "slow"] {
        let (gale, stop, done) = (gale.clone(), stop.clone(), done.clone());
        clients.push(thread::spawn(move || {
            let mut failures = Vec::new();
            let mut conn: Option<Conn> = None;
            while !stop.load(Ordering::SeqCst) {
                let result = match kind {
                    "keep-alive" => match conn.take().map_or_else(|| Conn::try_open(gale.addr()), Ok) {
                        Ok(mut c) => {
                            let r = c.try_send(&Request::get("/whoami"));
                            conn = Some(c);
                            r
                        }
                        Err(e) => Err(e),
                    },
                    "slow" => Conn::try_open(gale.addr()).and_then(|mut c| c.try_send(&Request::get("/slow?s=0.3"))),
                    _ => Conn::try_open(gale.addr()).and_then(|mut c| c.try_send(&Request::get("/whoami"))),
                };
                match result {
                    Ok(r) if r.status == 200 => {
                        done.fetch_add(1, Ordering::SeqCst);
                        if r.closes() {
                            conn = None;
                        }
                    }
                    Ok(r) => failures.push(format!("{kind}: {} {}", r.status, r.text())),
                    Err(e) => {
                        failures.push(format!("{kind}: {e}"));
                        conn = None;
                    }
                }
            }
            failures
        }));
    }
    wait_until(PATIENCE, "the clients under way", || done.load(Ordering::SeqCst) > 50);
    let config = gale.config_path().to_str().expect("utf-8 path").to_owned();
    let out = run_gale(&["restart", "tornadoes", "--config", &config], None);
    let before_stop = done.load(Ordering::SeqCst);
    wait_until(PATIENCE, "requests after the restart", || done.load(Ordering::SeqCst) > before_stop + 50);
    stop.store(true, Ordering::SeqCst);
    let failures: Vec<String> = clients.into_iter().flat_map(|c| c.join().expect("client thread")).collect();

    assert_eq!(out.code(), Some(0), "gale restart: {out:?}\ngale stderr:\n{}", gale.stderr());
    assert!(out.stdout.contains("tornadoes: 4 children replaced"), "{}", out.stdout);
    assert!(failures.is_empty(), "{} failed requests during the rolling restart: {failures:#?}", failures.len());
    let new = running_pids(&gale, 4);
    for (i, (o, n)) in old.iter().zip(&new).enumerate() {
        assert_ne!(o, n, "child {i} was not replaced");
        assert!(!alive(*o), "old child {i} (pid {o}) still runs");
    }
    // Each new child answers on its own port.
    let mut by_port = BTreeMap::new();
    for _ in 0..4 {
        let w: Whoami = gale.get("/whoami").expect_status(200).json();
        by_port.insert(w.port, w.pid);
    }
    let want: BTreeMap<u16, u32> = (0..4).map(|i| (base + i, new[usize::from(i)])).collect();
    assert_eq!(by_port, want);
}

#[test]
fn child_output_goes_to_its_log_file_which_sigusr1_reopens() {
    let base = free_ports(1);
    let gale = supervised(tornado_process(1, base, ", log = \"logs/{name}-{index}.log\""));
    let log = gale.dir().join("logs/tornadoes-0.log");
    gale.get("/whoami?first").expect_status(200);
    wait_until(PATIENCE, "the child's access line in its log", || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("/whoami?first")
    });
    let rotated = gale.dir().join("logs/tornadoes-0.log.1");
    std::fs::rename(&log, &rotated).expect("rotate the log");
    gale.signal(libc::SIGUSR1);
    wait_until(PATIENCE, "gale saw SIGUSR1", || gale.stderr().contains("SIGUSR1"));
    gale.get("/whoami?second").expect_status(200);
    wait_until(PATIENCE, "a new log file", || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("/whoami?second")
    });
    let old = std::fs::read_to_string(&rotated).expect("rotated log");
    assert!(!old.contains("/whoami?second"), "written to the rotated file:\n{old}");
}

#[test]
fn restart_without_a_running_gale_is_a_one_line_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ConfigBuilder::new(std::iter::empty::<SocketAddr>())
        .global("pid_file", "gale.pid")
        .upstream("process", tornado_process(1, 20_000, ""))
        .render();
    let path = dir.path().join("gale.toml");
    std::fs::write(&path, config).expect("write config");
    let path = path.to_str().expect("utf-8 path");
    for args in [vec!["restart", "tornadoes", "--config", path], vec!["restart", "nope", "--config", path]] {
        let out = run_gale(&args, None);
        assert_eq!(out.code(), Some(1), "{args:?}: {out:?}");
        assert_eq!(out.stderr_lines().len(), 1, "{args:?}: {}", out.stderr);
    }
    let out = run_gale(&["restart", "tornadoes", "--config", path], None);
    assert!(out.stderr.contains("not running"), "{}", out.stderr);
}

#[test]
fn a_reload_with_a_changed_process_rolls_the_children_and_a_resize_is_refused() {
    let base = free_ports(2);
    let gale = supervised(named_tornado_process("old", 2, base, ""));
    let old = running_pids(&gale, 2);
    let config = gale.config_path().to_str().expect("utf-8 path").to_owned();
    std::fs::write(&config, supervised_config(named_tornado_process("new", 2, base, "")).render()).expect("write");
    let out = run_gale(&["reload", "--config", &config], None);
    assert_eq!(out.code(), Some(0), "gale reload: {out:?}");
    wait_until(PATIENCE, "both children replaced by the new command", || {
        let names: BTreeSet<String> =
            (0..4).map(|_| gale.get("/whoami").expect_status(200).json::<Whoami>().name).collect();
        names == BTreeSet::from(["new-0".to_owned(), "new-1".to_owned()])
    });
    let new = running_pids(&gale, 2);
    assert!(old.iter().all(|p| !new.contains(p)), "old {old:?}, new {new:?}");

    // Changing the number of children takes a restart: the reload is refused whole.
    std::fs::write(&config, supervised_config(named_tornado_process("new", 3, base, "")).render()).expect("write");
    let out = run_gale(&["reload", "--config", &config], None);
    assert_eq!(out.code(), Some(0), "gale reload: {out:?}");
    wait_until(PATIENCE, "the refused reload in the log", || {
        gale.stderr().contains("a reload can replace supervised children but not add, remove or move them")
    });
    assert_eq!(running_pids(&gale, 2), new);
}

#[test]
fn status_and_metrics_show_the_children() {
    let base = free_ports(2);
    let config = supervised_config(tornado_process(2, base, "")).render() + "\n[admin]\nlisten = \"127.0.0.1:0\"\n";
    let gale = Gale::start(&config);
    let admin: SocketAddr = gale
        .stdout()
        .lines()
        .find_map(|l| l.strip_prefix("gale: admin on "))
        .expect("admin line")
        .trim()
        .parse()
        .expect("admin address");
    let pids = running_pids(&gale, 2);
    let status: serde_json::Value = gale_tests::http::get(admin, "/status").expect_status(200).json();
    let children = status["children"].as_array().expect("children in /status");
    assert_eq!(children.len(), 2, "{status:#}");
    for (i, c) in children.iter().enumerate() {
        assert_eq!(c["state"], "running", "{c}");
        assert_eq!(c["pid"], pids[i], "{c}");
        assert_eq!(c["port"], base + i as u16, "{c}");
    }
    let metrics = gale_tests::http::get(admin, "/metrics").expect_status(200).text();
    assert!(metrics.contains("gale_child_state{upstream=\"tornadoes\",index=\"1\",state=\"running\"} 1"), "{metrics}");
    assert!(metrics.contains("gale_child_restarts_total{upstream=\"tornadoes\",index=\"0\"} 0"), "{metrics}");
}

/// The `THP_enabled` line of a process's status: 0 once it opted out of transparent huge pages.
fn thp_enabled(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status.lines().find(|l| l.starts_with("THP_enabled:")).expect("THP_enabled line");
    line["THP_enabled:".len()..].trim().to_owned()
}

#[test]
fn gale_keeps_its_heap_in_small_pages_and_its_children_get_the_machines_setting() {
    let base = free_ports(1);
    let gale = supervised(tornado_process(1, base, ""));
    let pids = running_pids(&gale, 1);
    assert_eq!(thp_enabled(gale.pid()), "0", "gale opts out of huge pages (heap.rs)");
    // The opt-out is inherited across fork and exec unless the child undoes it.
    assert_eq!(thp_enabled(pids[0]), thp_enabled(std::process::id()), "the child runs with the machine's setting");
}
