//! Zero-downtime binary upgrade: `gale upgrade` (and SIGUSR2) start the binary on disk, hand it
//! the listening sockets, and the old gale drains and exits. The gale under test is a copy of
//! the built binary in a temporary directory, so "the binary on disk" is a file the test owns
//! and can replace.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use gale_tests::admin::admin_addr;
use gale_tests::http::{self, Conn, Request};
use gale_tests::{ConfigBuilder, Gale, Launch, SIGTERM, Tornado, paths, run_gale, wait_until};

/// A copy of the gale binary at `dir/gale`.
fn copy_of_gale(dir: &Path) -> PathBuf {
    let bin = dir.join("gale");
    std::fs::copy(paths::gale_bin(), &bin).expect("copy the gale binary");
    bin
}

/// Replaces the file at `bin` (as an install does: a new file renamed over it).
fn replace(bin: &Path, contents: &[u8], mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = bin.with_extension("new");
    std::fs::write(&tmp, contents).expect("write the replacement");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).expect("chmod");
    std::fs::rename(&tmp, bin).expect("rename over the binary");
}

fn config(tornadoes: &[Tornado], upgrade_timeout: &str) -> String {
    let config = ConfigBuilder::new(tornadoes.iter().map(Tornado::addr))
        .global("pid_file", "gale.pid")
        .global("upgrade_timeout", upgrade_timeout);
    format!("{}\n[admin]\nlisten = \"127.0.0.1:0\"\n", config.render())
}

fn pid_in(file: &Path) -> u32 {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.trim().parse().unwrap_or(0)
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

fn signal(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// Stops the upgraded gale (not the test's child any more) when the test ends.
struct Stop(u32);

impl Drop for Stop {
    fn drop(&mut self) {
        if self.0 > 1 && alive(self.0) {
            signal(self.0, libc::SIGKILL);
        }
    }
}

/// Client load: `keep_alive` threads reuse one connection, `fresh` threads open one per request.
/// A request on a reused connection that the server closed before answering (the race every
/// keep-alive client has with a server closing an idle connection) is sent again on a new
/// connection, as HTTP clients do for a GET; anything else that is not a 200 is a failure, and a
/// refused connect is counted apart.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    /// Requests sent again after a reused connection was closed before answering.
    retried: Arc<AtomicUsize>,
    threads: Vec<thread::JoinHandle<Vec<String>>>,
}

fn stale(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe)
        || (e.kind() == io::ErrorKind::UnexpectedEof && e.to_string().contains("before a response"))
}

impl Load {
    fn start(addr: SocketAddr, keep_alive: usize, fresh: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let retried = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        for i in 0..keep_alive + fresh {
            let (stop, done, retries) = (stop.clone(), done.clone(), retried.clone());
            let reuse = i < keep_alive;
            threads.push(thread::spawn(move || {
                let mut failures = Vec::new();
                let mut conn: Option<Conn> = None;
                while !stop.load(Ordering::SeqCst) {
                    let request = Request::get("/whoami");
                    let reused = conn.is_some();
                    let mut c = match conn.take() {
                        Some(c) => c,
                        None => match Conn::try_open(addr) {
                            Ok(c) => c,
                            Err(e) => {
                                failures.push(format!("connect refused: {e}"));
                                continue;
                            }
                        },
                    };
                    let mut result = c.try_send(&request);
                    if reused && result.as_ref().is_err_and(stale) {
                        retries.fetch_add(1, Ordering::SeqCst);
                        result = Conn::try_open(addr).and_then(|mut again| {
                            let r = again.try_send(&request);
                            c = again;
                            r
                        });
                    }
                    match result {
                        Ok(r) if r.status == 200 => {
                            done.fetch_add(1, Ordering::SeqCst);
                            if reuse && !r.closes() {
                                conn = Some(c);
                            }
                        }
                        Ok(r) => failures.push(format!("status {}: {r}", r.status)),
                        Err(e) => failures.push(format!("error: {e}")),
                    }
                }
                failures
            }));
        }
        Load { stop, done, retried, threads }
    }

    fn done(&self) -> usize {
        self.done.load(Ordering::SeqCst)
    }

    /// Waits until `n` more requests have succeeded.
    fn wait_for(&self, n: usize, what: &str) {
        let target = self.done() + n;
        wait_until(Duration::from_secs(30), what, || self.done() >= target);
    }

    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.threads.into_iter().flat_map(|t| t.join().expect("load thread")).collect()
    }
}

#[test]
fn gale_upgrade_under_load_refuses_no_connection_and_fails_no_request() {
    let tornadoes = Tornado::spawn_pool(2);
    let bin_dir = tempfile::tempdir().expect("tempdir");
    let bin = copy_of_gale(bin_dir.path());
    let mut gale = Gale::start_with(&config(&tornadoes, "30s"), &Launch { bin: Some(bin), ..Launch::default() });
    let pid_file = gale.dir().join("gale.pid");
    let old = gale.pid();
    assert_eq!(pid_in(&pid_file), old);
    let admin = admin_addr(&gale);

    let load = Load::start(gale.addr(), 3, 3);
    let retried = load.retried.clone();
    load.wait_for(50, "client load to get going");
    let out = run_gale(&["upgrade", "--config", gale.config_path().to_str().expect("utf-8")], None);
    let new = pid_in(&pid_file);
    let _stop = Stop(new);
    assert_eq!(out.code(), Some(0), "{out:?}\ngale stderr:\n{}", gale.stderr());
    assert!(out.stdout.contains(&format!("upgraded: gale pid {new} serves now")), "{out:?}");
    assert_ne!(new, old, "the pid file still names the old gale");
    assert!(alive(new), "the new gale (pid {new}) is not running");

    // The old gale drains and exits 0; the clients go on against the new one.
    assert_eq!(gale.wait().code(), Some(0), "stderr:\n{}", gale.stderr());
    load.wait_for(100, "requests served by the new gale");
    let served = load.done();
    let failures = load.finish();
    eprintln!("{served} requests, {} resent after a keep-alive connection closed", retried.load(Ordering::SeqCst));
    assert!(failures.is_empty(), "{} failed requests: {:#?}\nstderr:\n{}", failures.len(), failures, gale.stderr());

    // The control socket is the new gale's (the old one left it in place), the handover socket
    // is gone, and the new gale answers on the same admin address, ready.
    let status = run_gale(&["status", "--config", gale.config_path().to_str().expect("utf-8")], None);
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(!gale.dir().join("gale.upgrade").exists(), "the handover socket was left behind");
    http::get(admin, "/ready").expect_status(200);
    let status = gale_tests::admin::status(admin);
    assert!(status["listening"].as_array().is_some_and(|l| !l.is_empty()), "{status}");
    // And it can be stopped as usual: it removes its pid file.
    signal(new, SIGTERM);
    wait_until(Duration::from_secs(30), "the new gale to exit", || !alive(new));
    assert!(!pid_file.exists(), "the new gale left its pid file");
}

#[test]
fn sigusr2_upgrades_too() {
    let tornadoes = Tornado::spawn_pool(1);
    let bin_dir = tempfile::tempdir().expect("tempdir");
    let bin = copy_of_gale(bin_dir.path());
    let mut gale = Gale::start_with(&config(&tornadoes, "30s"), &Launch { bin: Some(bin), ..Launch::default() });
    let pid_file = gale.dir().join("gale.pid");
    let old = gale.pid();
    gale.signal(libc::SIGUSR2);
    wait_until(Duration::from_secs(30), "the pid file to name a new gale", || {
        let pid = pid_in(&pid_file);
        pid != 0 && pid != old
    });
    let _stop = Stop(pid_in(&pid_file));
    assert_eq!(gale.wait().code(), Some(0), "stderr:\n{}", gale.stderr());
    http::get(gale.addr(), "/whoami").expect_status(200);
}

/// The binary on disk is replaced by something that cannot become a gale: the upgrade fails,
/// `gale upgrade` exits 1 saying why, and the running gale serves on with its pid file.
#[track_caller]
fn a_broken_binary_leaves_the_old_gale_serving(contents: &[u8], mode: u32, timeout: &str, expect: &str) {
    let tornadoes = Tornado::spawn_pool(1);
    let bin_dir = tempfile::tempdir().expect("tempdir");
    let bin = copy_of_gale(bin_dir.path());
    let gale = Gale::start_with(&config(&tornadoes, timeout), &Launch { bin: Some(bin.clone()), ..Launch::default() });
    let pid_file = gale.dir().join("gale.pid");
    let admin = admin_addr(&gale);
    replace(&bin, contents, mode);

    let out = run_gale(&["upgrade", "--config", gale.config_path().to_str().expect("utf-8")], None);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("upgrade failed, the running gale serves on"), "{out:?}");
    assert!(out.stderr.contains(expect), "expected {expect:?} in:\n{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{out:?}");
    assert_eq!(pid_in(&pid_file), gale.pid(), "the pid file changed");
    gale.get("/whoami").expect_status(200);
    http::get(admin, "/ready").expect_status(200);
    assert!(gale.stderr().contains("upgrade failed, serving on"), "not logged:\n{}", gale.stderr());
    // The handover socket is gone, and a later upgrade can still be tried.
    assert!(!gale.dir().join("gale.upgrade").exists());
}

#[test]
fn a_new_binary_that_exits_at_once_leaves_the_old_gale_serving() {
    a_broken_binary_leaves_the_old_gale_serving(b"#!/bin/sh\nexit 1\n", 0o755, "30s", "exited before it was ready");
}

#[test]
fn a_new_binary_that_is_not_executable_leaves_the_old_gale_serving() {
    a_broken_binary_leaves_the_old_gale_serving(b"not a program\n", 0o644, "30s", "cannot start the new binary");
}

#[test]
fn a_new_binary_that_never_gets_ready_is_stopped_after_upgrade_timeout() {
    a_broken_binary_leaves_the_old_gale_serving(b"#!/bin/sh\nexec sleep 600\n", 0o755, "1s", "upgrade_timeout");
}

/// A config with `children` supervised Tornado children, an admin listener and a pid file.
fn supervised_config(children: u16) -> String {
    let base = crate::supervise::free_ports(children);
    let config = crate::supervise::supervised_config(crate::supervise::tornado_process(children, base, ""))
        .global("upgrade_timeout", "30s");
    format!("{}\n[admin]\nlisten = \"127.0.0.1:0\"\n", config.render())
}

/// The supervised children in `/status`: (state, pid).
fn children(admin: SocketAddr) -> Vec<(String, Option<u32>)> {
    let status = gale_tests::admin::status(admin);
    status["children"]
        .as_array()
        .expect("children in /status")
        .iter()
        .map(|c| (c["state"].as_str().unwrap_or_default().to_owned(), c["pid"].as_u64().map(|p| p as u32)))
        .collect()
}

/// The parent of process `pid`, from /proc.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok()
}

/// Waits until every child runs, each a child process of `gale`, none of them in `old`.
#[track_caller]
fn wait_for_own_children(admin: SocketAddr, gale: u32, count: usize, old: &[u32]) -> Vec<u32> {
    let mut pids = Vec::new();
    wait_until(Duration::from_secs(60), "every child running under the new gale", || {
        let now = children(admin);
        pids = now.iter().filter_map(|(state, pid)| pid.filter(|_| state == "running")).collect();
        pids.len() == count && pids.iter().all(|p| !old.contains(p) && parent_of(*p) == Some(gale))
    });
    pids
}

#[test]
fn gale_upgrade_rolls_supervised_children_under_load_with_no_failed_request() {
    let bin_dir = tempfile::tempdir().expect("tempdir");
    let bin = copy_of_gale(bin_dir.path());
    let mut gale = Gale::start_with(&supervised_config(2), &Launch { bin: Some(bin), ..Launch::default() });
    let pid_file = gale.dir().join("gale.pid");
    let old = gale.pid();
    let admin = admin_addr(&gale);
    let before: Vec<u32> = children(admin).iter().filter_map(|(_, pid)| *pid).collect();
    assert_eq!(before.len(), 2, "{:?}", children(admin));
    assert!(before.iter().all(|p| parent_of(*p) == Some(old)), "{before:?} are not the old gale's");

    let load = Load::start(gale.addr(), 3, 3);
    let retried = load.retried.clone();
    load.wait_for(50, "client load to get going");
    let out = run_gale(&["upgrade", "--config", gale.config_path().to_str().expect("utf-8")], None);
    let new = pid_in(&pid_file);
    let _stop = Stop(new);
    assert_eq!(out.code(), Some(0), "{out:?}\ngale stderr:\n{}", gale.stderr());
    assert!(out.stdout.contains(&format!("upgraded: gale pid {new} serves now")), "{out:?}");
    assert!(out.stdout.contains("keeps its children until"), "{out:?}");
    assert_ne!(new, old);

    // The old gale keeps its children until the new one has replaced them, then exits 0.
    assert_eq!(gale.wait().code(), Some(0), "stderr:\n{}", gale.stderr());
    let after = wait_for_own_children(admin, new, 2, &before);
    load.wait_for(100, "requests served by the new gale's children");
    let served = load.done();
    let failures = load.finish();
    eprintln!("{served} requests, {} resent after a keep-alive connection closed", retried.load(Ordering::SeqCst));
    assert!(failures.is_empty(), "{} failed requests: {:#?}\nstderr:\n{}", failures.len(), failures, gale.stderr());
    for pid in &before {
        assert!(!alive(*pid), "the old gale's child {pid} still runs");
    }
    let stderr = gale.stderr();
    assert!(stderr.contains("has replaced every child; exiting"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // `gale status` talks to the new gale, whose children they are; it upgrades again.
    let status = run_gale(&["status", "--config", gale.config_path().to_str().expect("utf-8")], None);
    assert_eq!(status.code(), Some(0), "{status:?}");
    for pid in &after {
        assert!(status.stdout.contains(&format!("running pid {pid}")), "{status:?}");
    }
    signal(new, SIGTERM);
    wait_until(Duration::from_secs(30), "the new gale to exit", || !alive(new));
    wait_until(Duration::from_secs(30), "its children to stop", || after.iter().all(|p| !alive(*p)));
}

/// The old gale dies (SIGKILL) while the new one still inherits its children: they die with it,
/// and the new gale starts those slots at once, saying so.
#[test]
fn an_old_gale_that_dies_before_the_roll_is_over_leaves_the_new_one_starting_its_children() {
    let bin_dir = tempfile::tempdir().expect("tempdir");
    let bin = copy_of_gale(bin_dir.path());
    let mut gale = Gale::start_with(&supervised_config(2), &Launch { bin: Some(bin), ..Launch::default() });
    let pid_file = gale.dir().join("gale.pid");
    let old = gale.pid();
    let admin = admin_addr(&gale);
    let before: Vec<u32> = children(admin).iter().filter_map(|(_, pid)| *pid).collect();
    assert!(before.len() == 2 && before.iter().all(|p| parent_of(*p) == Some(old)), "{before:?}");
    // Slow requests in flight on the old gale's children: the roll waits for the old gale to
    // drain them, and the old gale is killed meanwhile.
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let addr = gale.addr();
            thread::spawn(move || Conn::try_open(addr).and_then(|mut c| c.try_send(&Request::get("/slow?s=5"))))
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let out = run_gale(&["upgrade", "--config", gale.config_path().to_str().expect("utf-8")], None);
    assert_eq!(out.code(), Some(0), "{out:?}\nstderr:\n{}", gale.stderr());
    let new = pid_in(&pid_file);
    let _stop = Stop(new);
    wait_until(Duration::from_secs(30), "the new gale to inherit the children", || {
        children(admin).iter().any(|(state, _)| state == "inherited")
    });
    // The new gale does not own those processes yet: it cannot hand them on.
    let again = run_gale(&["upgrade", "--config", gale.config_path().to_str().expect("utf-8")], None);
    assert_eq!(again.code(), Some(1), "{again:?}");
    assert!(again.stderr.contains("still being replaced"), "{again:?}");
    assert_eq!(pid_in(&pid_file), new);
    gale.signal(libc::SIGKILL);
    let _ = gale.wait();
    for s in slow {
        let _ = s.join();
    }
    let after = wait_for_own_children(admin, new, 2, &before);
    assert_eq!(after.len(), 2);
    for _ in 0..4 {
        gale.get("/whoami").expect_status(200);
    }
    // The new gale logs to the same stderr as the old one did.
    let stderr = gale.stderr();
    assert!(stderr.contains("the old gale exited before handing this child over"), "{stderr}");
    assert!(!stderr.contains("panicked at"), "{stderr}");
}

#[test]
fn another_process_on_the_handover_socket_gets_nothing() {
    let tornadoes = Tornado::spawn_pool(1);
    let bin_dir = tempfile::tempdir().expect("tempdir");
    let bin = copy_of_gale(bin_dir.path());
    let gale = Gale::start_with(&config(&tornadoes, "5s"), &Launch { bin: Some(bin.clone()), ..Launch::default() });
    // The new binary never connects: the handover socket waits for it until upgrade_timeout.
    replace(&bin, b"#!/bin/sh\nexec sleep 600\n", 0o755);
    let config_path = gale.config_path().to_str().expect("utf-8").to_owned();
    let upgrade = thread::spawn(move || run_gale(&["upgrade", "--config", &config_path], None));
    let socket = gale.dir().join("gale.upgrade");
    wait_until(Duration::from_secs(10), "the handover socket", || socket.exists());
    let mut intruder = std::os::unix::net::UnixStream::connect(&socket).expect("connect to the handover socket");
    intruder.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut got = Vec::new();
    let read = io::Read::read_to_end(&mut intruder, &mut got);
    assert!(read.is_ok() && got.is_empty(), "the handover socket answered another process: {read:?} {got:?}");
    let out = upgrade.join().expect("upgrade thread");
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(gale.stderr().contains("from another process"), "{}", gale.stderr());
    gale.get("/whoami").expect_status(200);
}

#[test]
fn a_gale_told_to_fetch_sockets_from_nowhere_is_a_one_line_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gale.toml");
    std::fs::write(&path, ConfigBuilder::new([gale_tests::dead_addr()]).render()).expect("write config");
    let missing = dir.path().join("no-such.upgrade");
    let out = gale_tests::gale_command()
        .args(["run", "--config", path.to_str().expect("utf-8")])
        .env("GALE_UPGRADE_SOCKET", &missing)
        .output()
        .expect("run gale");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("cannot reach the old gale") && lines[0].contains("no-such.upgrade"), "{stderr}");
}

/// The new gale's children cannot start (its config names a program that is not there): the roll
/// stops at the first slot once that child gives up, the old gale keeps the children not yet
/// replaced and clients are served by them; a reload with a working config finishes the roll and
/// the old gale exits 0.
#[test]
fn a_new_child_that_cannot_start_leaves_the_old_children_serving_until_fixed() {
    let bin_dir = tempfile::tempdir().expect("tempdir");
    let bin = copy_of_gale(bin_dir.path());
    let base = crate::supervise::free_ports(2);
    let config = |app: &str| {
        use gale_tests::config::TomlValue as _;
        let real = paths::tornado_app();
        let process = crate::supervise::tornado_process(2, base, ", start_retries = 1")
            .0
            .replace(&real.to_str().expect("utf-8").toml(), &app.toml());
        let builder = crate::supervise::supervised_config(gale_tests::config::Raw(process));
        format!("{}\n[admin]\nlisten = \"127.0.0.1:0\"\n", builder.render())
    };
    let good = config(paths::tornado_app().to_str().expect("utf-8"));
    let mut gale = Gale::start_with(&good, &Launch { bin: Some(bin), ..Launch::default() });
    let pid_file = gale.dir().join("gale.pid");
    let admin = admin_addr(&gale);
    let before: Vec<u32> = children(admin).iter().filter_map(|(_, pid)| *pid).collect();
    assert_eq!(before.len(), 2);
    let broken = config("/nonexistent/app.py");
    assert_ne!(broken, good, "the app path was not replaced");
    std::fs::write(gale.config_path(), &broken).expect("write the broken config");

    let out = run_gale(&["upgrade", "--config", gale.config_path().to_str().expect("utf-8")], None);
    assert_eq!(out.code(), Some(0), "{out:?}\nstderr:\n{}", gale.stderr());
    let new = pid_in(&pid_file);
    let _stop = Stop(new);
    let gave_up = || {
        let now = children(admin);
        now[0].0 == "failed" && now[1] == ("inherited".to_owned(), Some(before[1]))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !gave_up() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first new child did not give up: {:?}\nstderr:\n{}",
            children(admin),
            gale.stderr()
        );
        thread::sleep(Duration::from_millis(20));
    }
    let stderr = gale.stderr();
    assert!(stderr.contains("replacing the old gale's children stopped"), "{stderr}");
    // The old gale still runs the second child, which serves every request.
    assert!(gale.wait_timeout(Duration::from_millis(100)).is_none(), "the old gale exited");
    assert!(alive(before[1]));
    for _ in 0..4 {
        let who: gale_tests::Whoami = gale.get("/whoami").expect_status(200).json();
        assert_eq!(who.pid, before[1], "{who:?}");
    }

    // Fixed config, reloaded: the roll finishes and the old gale exits.
    std::fs::write(gale.config_path(), &good).expect("write the good config");
    signal(new, libc::SIGHUP);
    assert_eq!(gale.wait().code(), Some(0), "stderr:\n{}", gale.stderr());
    wait_for_own_children(admin, new, 2, &before);
    gale.get("/whoami").expect_status(200);
}
