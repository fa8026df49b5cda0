//! Hot reload: SIGHUP under load with no failed request, a broken config keeping the old one,
//! `gale reload --config` through the pid file, and listeners added, removed and kept.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use gale_tests::reload::{self, RELOAD_FAILED};
use gale_tests::{Conn, Gale, Request, Tornado, Whoami, free_port, run_gale, wait_until};

/// A config over two backends: `location /` goes to `tornadoes[0]`; with `new_route`, a second
/// pool `other` (`tornadoes[1]`) serves `location /new/`. `listen` lists the server's ports
/// (`0` = OS-assigned); `global` is extra `[global]` lines.
fn config(tornadoes: &[Tornado], new_route: bool, listen: &[u16], global: &str) -> String {
    let listen: Vec<String> = listen.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let mut out =
        format!("[global]\nthreads = 2\n{global}\n\n[upstream.main]\nservers = [\"{}\"]\n\n", tornadoes[0].addr());
    if new_route {
        out += &format!("[upstream.other]\nservers = [\"{}\"]\n\n", tornadoes[1].addr());
    }
    out += &format!("[[server]]\nlisten = [{}]\n\n", listen.join(", "));
    if new_route {
        out += "[[server.location]]\npath = \"/new/\"\nproxy = { pass = \"other\" }\n\n";
    }
    out += "[[server.location]]\npath = \"/\"\nproxy = { pass = \"main\" }\n";
    out
}

/// Which backend port answered `target` on `addr`.
#[track_caller]
fn port_for(addr: SocketAddr, target: &str) -> u16 {
    let response = gale_tests::http::get(addr, target);
    response.expect_status(200);
    response.json::<Whoami>().port
}

/// Clients sending `GET /whoami` in a loop until stopped, each failure recorded.
struct Load {
    stop: Arc<AtomicBool>,
    /// Requests answered 200 so far, by all clients.
    answered: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<(usize, Vec<String>)>>,
}

impl Load {
    /// `fresh` clients open a new connection per request; `kept` clients reuse one.
    fn start(addr: SocketAddr, fresh: usize, kept: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let threads = (0..fresh + kept)
            .map(|i| {
                let (stop, answered) = (stop.clone(), answered.clone());
                let keep_alive = i >= fresh;
                thread::spawn(move || client_loop(addr, keep_alive, &stop, &answered))
            })
            .collect();
        Load { stop, answered, threads }
    }

    /// Waits until the clients got `n` more answers: the load really ran across what the test
    /// did meanwhile (a reload). The deadline only catches clients that stopped getting answers.
    #[track_caller]
    fn wait_answers(&self, n: usize) {
        let from = self.answered.load(Ordering::SeqCst);
        wait_until(Duration::from_secs(20), &format!("{n} more answers to the client loop"), || {
            self.answered.load(Ordering::SeqCst) >= from + n
        });
    }

    /// Stops the clients; returns how many requests succeeded and every failure.
    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let mut ok = 0;
        let mut failures = Vec::new();
        for t in self.threads {
            let (n, f) = t.join().expect("client thread");
            ok += n;
            failures.extend(f);
        }
        (ok, failures)
    }
}

fn client_loop(addr: SocketAddr, keep_alive: bool, stop: &AtomicBool, answered: &AtomicUsize) -> (usize, Vec<String>) {
    let mut ok = 0;
    let mut failures = Vec::new();
    let mut conn: Option<Conn> = None;
    while !stop.load(Ordering::SeqCst) {
        let result = match conn.take() {
            Some(c) => Ok(c),
            None => Conn::try_open(addr),
        }
        .and_then(|mut c| c.try_send(&Request::get("/whoami")).map(|r| (c, r)));
        match result {
            Ok((c, r)) if r.status == 200 => {
                ok += 1;
                answered.fetch_add(1, Ordering::SeqCst);
                if keep_alive && !r.closes() {
                    conn = Some(c);
                }
            }
            Ok((_, r)) => failures.push(format!("request {ok}: {} {}", r.status, r.text())),
            Err(e) => failures.push(format!("request {ok} (keep-alive: {keep_alive}): {e}")),
        }
    }
    (ok, failures)
}

#[test]
fn sighup_under_a_continuous_client_loop_drops_nothing() {
    let tornadoes = Tornado::spawn_pool(2);
    let v1 = config(&tornadoes, false, &[0], "");
    let v2 = config(&tornadoes, true, &[0], "");
    let gale = Gale::start(&v1);
    let addr = gale.addr();
    assert_eq!(port_for(addr, "/new/whoami"), tornadoes[0].port(), "v1 has no /new/ route");

    // A request in flight across every reload finishes on the config it started on.
    let slow = thread::spawn(move || gale_tests::http::get(addr, "/slow?s=1.5"));
    let load = Load::start(addr, 3, 2);
    let mut reloads = 0;
    // Reloads until the slow request has finished (so they span it), at least six.
    while reloads < 6 || !slow.is_finished() {
        let next = if reloads % 2 == 0 { &v2 } else { &v1 };
        reload::sighup(&gale, next).expect_reloaded();
        reloads += 1;
        load.wait_answers(5);
    }
    reload::sighup(&gale, &v2).expect_reloaded();
    load.wait_answers(20);
    let (ok, failures) = load.finish();
    slow.join().expect("slow request").expect_status(200);
    assert!(
        failures.is_empty(),
        "{} of {} requests failed across {reloads} reloads:\n{}",
        failures.len(),
        ok + failures.len(),
        failures.join("\n")
    );
    assert!(ok > reloads, "the client loop barely ran ({ok} requests)");

    // The new config is live: /new/ goes to the other pool.
    assert_eq!(port_for(addr, "/new/whoami"), tornadoes[1].port());
    assert_eq!(port_for(addr, "/whoami"), tornadoes[0].port());
}

#[test]
fn a_broken_config_on_reload_keeps_the_old_one_serving() {
    let tornadoes = Tornado::spawn_pool(2);
    let v1 = config(&tornadoes, false, &[0], "");
    let gale = Gale::start(&v1);
    let addr = gale.addr();
    let path = gale.config_path().display().to_string();

    // Each broken config would send /new/ to the other pool if it were applied.
    let syntax = config(&tornadoes, true, &[0], "") + "\n[[server\n";
    let unknown_pool = config(&tornadoes, true, &[0], "").replace("pass = \"other\"", "pass = \"nope\"");
    let busy = TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let busy_port = busy.local_addr().expect("local_addr").port();
    let unbindable = config(&tornadoes, true, &[0, busy_port], "");

    for (what, broken, expect) in [
        ("a syntax error", &syntax, path.clone()),
        ("an unknown upstream", &unknown_pool, "nope".to_owned()),
        ("a listener that cannot bind", &unbindable, format!("127.0.0.1:{busy_port}")),
    ] {
        let log = reload::sighup(&gale, broken).expect_failed().to_owned();
        assert!(log.contains(&expect), "the reload error for {what} must mention {expect:?}:\n{log}");
        assert_eq!(port_for(addr, "/new/whoami"), tornadoes[0].port(), "after {what}, the old config must serve");
        assert_eq!(port_for(addr, "/whoami"), tornadoes[0].port());
    }
    assert_eq!(gale.addrs().len(), 1);
    drop(busy);

    // A good config afterwards is applied.
    reload::sighup(&gale, &config(&tornadoes, true, &[0], "")).expect_reloaded();
    assert_eq!(port_for(addr, "/new/whoami"), tornadoes[1].port());
}

#[test]
fn gale_reload_signals_the_process_in_the_pid_file() {
    let tornadoes = Tornado::spawn_pool(2);
    let global = "pid_file = \"gale.pid\"";
    let gale = Gale::start(&config(&tornadoes, false, &[0], global));
    let addr = gale.addr();
    let config_path = gale.config_path().to_str().expect("UTF-8 path").to_owned();
    let pid_file = gale.dir().join("gale.pid");
    let written = std::fs::read_to_string(&pid_file).expect("gale wrote its pid file");
    assert_eq!(written.trim(), gale.pid().to_string());

    std::fs::write(&config_path, config(&tornadoes, true, &[0], global)).expect("write v2");
    let mark = reload::mark(&gale);
    let out = run_gale(&["reload", "--config", &config_path], None);
    assert_eq!(out.code(), Some(0), "gale reload failed: {out:?}");
    assert!(out.stdout.contains(&format!("pid {}", gale.pid())), "{out:?}");
    reload::wait(&gale, mark).expect_reloaded();
    assert_eq!(port_for(addr, "/new/whoami"), tornadoes[1].port());

    // A broken file is refused by the command itself; the running gale is not signalled.
    std::fs::write(&config_path, "[global]\nthreads = \"many\"\n").expect("write a broken config");
    let mark = reload::mark(&gale);
    let out = run_gale(&["reload", "--config", &config_path], None);
    assert_ne!(out.code(), Some(0), "gale reload accepted a broken config: {out:?}");
    assert!(out.stderr.contains(&config_path), "the error must name the file: {out:?}");
    std::fs::write(&config_path, config(&tornadoes, false, &[0], global)).expect("write v1");
    let out = run_gale(&["reload", "--config", &config_path], None);
    assert_eq!(out.code(), Some(0), "{out:?}");
    reload::wait(&gale, mark).expect_reloaded();
    assert!(!gale.stderr().contains(RELOAD_FAILED), "the broken file reached the running gale:\n{}", gale.stderr());
    assert_eq!(port_for(addr, "/new/whoami"), tornadoes[0].port(), "v1 is live again");

    // Without a pid_file, `gale reload` cannot know whom to signal.
    let other = tempfile::tempdir().expect("tempdir");
    let no_pid = other.path().join("gale.toml");
    std::fs::write(&no_pid, config(&tornadoes, false, &[0], "")).expect("write");
    let out = run_gale(&["reload", "--config", no_pid.to_str().expect("UTF-8")], None);
    assert_ne!(out.code(), Some(0));
    assert!(out.stderr.contains("pid_file"), "{out:?}");
}

/// Whether a TCP connection to `port` is refused.
fn refused(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    matches!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

#[test]
fn reload_adds_and_removes_listeners_and_a_kept_one_never_refuses() {
    let tornadoes = Tornado::spawn_pool(2);
    let (kept, removed, added) = (free_port(), free_port(), free_port());
    let v1 = config(&tornadoes, false, &[kept, removed], "");
    let v2 = config(&tornadoes, false, &[kept, added], "");
    let gale = Gale::start(&v1);
    let kept_addr = SocketAddr::from(([127, 0, 0, 1], kept));
    let removed_addr = SocketAddr::from(([127, 0, 0, 1], removed));
    let added_addr = SocketAddr::from(([127, 0, 0, 1], added));
    assert!(refused(added), "port {added} is not gale's yet");

    // A keep-alive connection accepted on the listener about to be removed.
    let mut old_conn = Conn::open(removed_addr);
    old_conn.send(&Request::get("/whoami")).expect_status(200);

    let load = Load::start(kept_addr, 4, 0);
    load.wait_answers(20);
    let logged = match reload::sighup(&gale, &v2) {
        reload::Outcome::Reloaded(addrs) => addrs,
        reload::Outcome::Failed(log) => panic!("reload failed:\n{log}"),
    };
    load.wait_answers(20);
    let (ok, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "the kept listener failed {} of {} requests:\n{}",
        failures.len(),
        ok + failures.len(),
        failures.join("\n")
    );

    assert!(logged.contains(&kept_addr.to_string()) && logged.contains(&added_addr.to_string()), "{logged}");
    assert!(!logged.contains(&removed_addr.to_string()), "{logged}");
    assert_eq!(port_for(added_addr, "/whoami"), tornadoes[0].port(), "the added listener serves");
    wait_until(Duration::from_secs(20), "the removed listener to stop accepting", || refused(removed));
    // A connection accepted before the reload finishes on the config it was accepted under.
    old_conn.send(&Request::get("/whoami")).expect_status(200);

    // And back: the removed port returns, the added one goes.
    reload::sighup(&gale, &v1).expect_reloaded();
    assert_eq!(port_for(removed_addr, "/whoami"), tornadoes[0].port());
    wait_until(Duration::from_secs(20), "the added listener to stop accepting", || refused(added));
    assert_eq!(port_for(kept_addr, "/whoami"), tornadoes[0].port());
}

/// Points `link` at `target` atomically, as kubelet does: a new symlink renamed over the old.
fn swap_symlink(dir: &std::path::Path, link: &str, target: &str) {
    let tmp = dir.join(format!("{link}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join(link)).expect("rename the symlink into place");
}

/// A static server of `root` whose answers say which config is in force.
fn watched(root: &std::path::Path) -> String {
    format!(
        "[global]\nthreads = 2\nwatch_config = true\nwatch_config_interval = \"100ms\"\n\n\
         [[server]]\nlisten = [\"127.0.0.1:0\"]\n\n\
         [[server.location]]\npath = \"/\"\nstatic = {{ root = {:?} }}\n",
        root.display().to_string()
    )
}

#[test]
fn watch_config_reloads_a_configmap_style_symlink_swap_without_a_signal() {
    let sites = tempfile::tempdir().expect("tempdir");
    for (name, text) in [("one", "config one\n"), ("two", "config two\n"), ("three", "config three\n")] {
        std::fs::create_dir(sites.path().join(name)).expect("site dir");
        std::fs::write(sites.path().join(name).join("index.html"), text).expect("index");
    }
    let gale = Gale::start(&watched(&sites.path().join("one")));
    let addr = gale.addr();
    let body = || gale_tests::http::get(addr, "/").text();
    assert_eq!(body(), "config one\n");

    // Kubernetes mounts a ConfigMap as `gale.toml -> ..data/gale.toml`, `..data -> ..<stamp>/`,
    // and updates it by pointing `..data` at a new folder: the file never changes in place.
    let dir = gale.dir().to_owned();
    let version = |stamp: &str, config: &str| {
        std::fs::create_dir(dir.join(stamp)).expect("version dir");
        std::fs::write(dir.join(stamp).join("gale.toml"), config).expect("config");
    };
    let until = |want: &str| wait_until(Duration::from_secs(20), want, || body() == want);
    version("..v2", &watched(&sites.path().join("two")));
    swap_symlink(&dir, "..data", "..v2");
    let mark = reload::mark(&gale);
    swap_symlink(&dir, "gale.toml", "..data/gale.toml");
    reload::wait(&gale, mark).expect_reloaded();
    until("config two\n");
    assert!(gale.stderr().contains("config file changed: reloading"), "{}", gale.stderr());

    // A broken version is refused (the old config serves on), and the next good one applies.
    version("..v3", "[[server]\n");
    let mark = reload::mark(&gale);
    swap_symlink(&dir, "..data", "..v3");
    let log = reload::wait(&gale, mark).expect_failed().to_owned();
    assert!(log.contains("gale.toml"), "the error names the file:\n{log}");
    assert_eq!(body(), "config two\n");
    version("..v4", &watched(&sites.path().join("three")));
    let mark = reload::mark(&gale);
    swap_symlink(&dir, "..data", "..v4");
    reload::wait(&gale, mark).expect_reloaded();
    until("config three\n");

    // Without a change nothing is reloaded (one outcome line per change above, no more).
    let lines = gale.stderr().lines().filter(|l| l.contains("config file changed")).count();
    assert_eq!(lines, 3, "{}", gale.stderr());
}
