//! systemd's notify protocol, driven through a datagram socket the test creates: READY=1 once
//! gale serves, RELOADING=1 with MONOTONIC_USEC then READY=1 around a reload, STOPPING=1 at a stop.

use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::time::Duration;

use gale_tests::{ConfigBuilder, Gale, Launch, SIGTERM, Tornado};

/// The next datagram, as text; panics after `timeout` (a missing notification must fail).
#[track_caller]
fn next(socket: &UnixDatagram, timeout: Duration, what: &str, gale: &Gale) -> String {
    socket.set_read_timeout(Some(timeout)).expect("read timeout");
    let mut buf = [0u8; 4096];
    match socket.recv(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(e) => panic!("no {what} from gale within {timeout:?} ({e}); stderr:\n{}", gale.stderr()),
    }
}

/// CLOCK_MONOTONIC in microseconds, as systemd reads it.
fn monotonic_usec() -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the one we pass.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    i128::from(ts.tv_sec) * 1_000_000 + i128::from(ts.tv_nsec) / 1000
}

fn drive(socket: &UnixDatagram, notify_socket: String) {
    let tornado = Tornado::spawn("app");
    let config = ConfigBuilder::new([tornado.addr()]);
    let launch = Launch { env: vec![("NOTIFY_SOCKET".into(), notify_socket)], ..Launch::default() };
    let mut gale = Gale::start_with(&config.render(), &launch);
    let wait = Duration::from_secs(10);

    let ready = next(socket, wait, "READY=1", &gale);
    assert_eq!(ready.lines().collect::<Vec<_>>(), ["READY=1"], "{ready:?}");
    gale.get("/whoami").expect_status(200);

    let before = monotonic_usec();
    gale_tests::reload::sighup(&gale, &config.render()).expect_reloaded();
    let reloading = next(socket, wait, "RELOADING=1", &gale);
    let lines: Vec<&str> = reloading.lines().collect();
    assert_eq!(lines.first(), Some(&"RELOADING=1"), "{reloading:?}");
    let usec: i128 = lines
        .iter()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC with RELOADING=1: {reloading:?}"))
        .parse()
        .expect("MONOTONIC_USEC is a number");
    assert!(before <= usec && usec <= monotonic_usec(), "MONOTONIC_USEC={usec} is not CLOCK_MONOTONIC now");
    let after = next(socket, wait, "READY=1 after the reload", &gale);
    assert_eq!(after.trim(), "READY=1");

    gale.signal(SIGTERM);
    let stopping = next(socket, wait, "STOPPING=1", &gale);
    assert_eq!(stopping.trim(), "STOPPING=1");
    assert_eq!(gale.wait().code(), Some(0), "stderr:\n{}", gale.stderr());
}

#[test]
fn notify_ready_reloading_and_stopping_on_a_socket_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    drive(&socket, path.to_str().expect("utf-8 path").to_owned());
}

#[test]
fn notify_on_an_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("gale-test-notify-{}", std::process::id());
    let addr = UnixAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
    let socket = UnixDatagram::bind_addr(&addr).expect("bind the abstract notify socket");
    drive(&socket, format!("@{name}"));
}

/// `systemd-analyze verify` on `deploy/systemd/gale.service`, pointed at the gale under test (the
/// unit names the installed path). Skipped, saying so, where systemd-analyze is not installed.
#[test]
fn the_unit_file_verifies() {
    let unit = gale_tests::paths::repo_root().join("deploy/systemd/gale.service");
    let text = std::fs::read_to_string(&unit).expect("read deploy/systemd/gale.service");
    assert!(text.contains("Type=notify") && text.contains("ExecReload="), "{text}");
    let bin = gale_tests::paths::gale_bin();
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("gale.service");
    std::fs::write(&copy, text.replace("/usr/local/bin/gale", bin.to_str().expect("utf-8 path"))).expect("write");
    let mut command = std::process::Command::new("systemd-analyze");
    command.arg("verify").arg(&copy);
    // A missing tool fails the test (scripts/setup.sh installs it), never skips it.
    let out = gale_tests::process::output(command, "systemd-analyze verify", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("cannot run systemd-analyze ({e}): run scripts/setup.sh, which installs it"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify: {:?}\n{stderr}", out.status);
}
