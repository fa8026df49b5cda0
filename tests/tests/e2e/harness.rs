//! The harness's own promises on failure: a failing test prints gale's log, and no process it
//! started outlives the test binary, even one a stuck client thread still holds.

use std::process::Command;
use std::time::Duration;

use gale_tests::{ConfigBuilder, Tornado, wait_until};

/// Set for the child run of [`failing_child`].
const CHILD_ENV: &str = "GALE_TESTS_FAILING_CHILD";

/// Run only as a child by the test below (it fails on purpose).
#[test]
#[ignore = "fails on purpose; run as a child by harness::a_failing_test_prints_gale_log_and_leaves_no_process"]
fn failing_child() {
    assert!(std::env::var_os(CHILD_ENV).is_some(), "run only by a_failing_test_prints_gale_log_and_leaves_no_process");
    let tornado = Tornado::spawn("orphan");
    let gale = ConfigBuilder::new([tornado.addr()]).start();
    gale.get("/whoami").expect_status(200);
    // What a client thread stuck on a dead assertion does: it keeps these alive.
    let leaked = ConfigBuilder::new([tornado.addr()]).start();
    println!("PIDS {} {} {}", gale.pid(), leaked.pid(), tornado_pid(&tornado));
    std::mem::forget(leaked);
    std::mem::forget(tornado);
    panic!("failing on purpose");
}

fn tornado_pid(tornado: &Tornado) -> u32 {
    let who: gale_tests::Whoami = gale_tests::http::get(tornado.addr(), "/whoami").json();
    who.pid
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn a_failing_test_prints_gale_log_and_leaves_no_process() {
    let exe = std::env::current_exe().expect("the test binary");
    let mut command = Command::new(exe);
    command.args(["--exact", "harness::failing_child", "--ignored", "--test-threads", "1"]).env(CHILD_ENV, "1");
    let out = gale_tests::process::output(command, "the failing child test", Duration::from_secs(120))
        .expect("run the test binary");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "the child test failed on purpose:\n{text}");
    assert!(text.contains("failing on purpose"), "{text}");
    // gale's log tail, with a line gale itself wrote at start-up.
    let tail = text.split("---- gale (pid ").nth(1).unwrap_or_else(|| panic!("no gale log tail printed:\n{text}"));
    let tail = tail.split("---- end of gale stderr ----").next().expect("split");
    assert!(
        tail.contains("INFO gale") && tail.contains("listening on"),
        "gale's own log lines are in the tail:\n{text}"
    );
    let pids: Vec<u32> = text
        .lines()
        .find_map(|l| l.strip_prefix("PIDS "))
        .unwrap_or_else(|| panic!("the child printed no pids:\n{text}"))
        .split_whitespace()
        .map(|p| p.parse().expect("a pid"))
        .collect();
    assert_eq!(pids.len(), 3, "{text}");
    // The deadline only catches processes that were left behind.
    for pid in pids {
        wait_until(Duration::from_secs(10), &format!("process {pid} to end with the test binary"), || !alive(pid));
    }
}
