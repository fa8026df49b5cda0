//! Starting child processes so that none outlives the test run.
//!
//! Every process the harness starts (gale, Tornado, the Python clients, curl) gets
//! `PR_SET_PDEATHSIG = SIGKILL`: when the test binary dies — a panic that left a client thread
//! holding a `Gale`, a killed `cargo test`, a test that hangs and is interrupted — the kernel
//! kills the children too. The signal fires when the *thread* that forked the child exits, not
//! the process, and test threads end all the time; so every child is forked by one spawner
//! thread that lives as long as the test binary.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

type Job = (Command, Sender<io::Result<Child>>);

/// Starts `command` (as [`Command::spawn`]) with the parent-death signal set.
pub fn spawn(command: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("gale-tests-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(spawn_here(&mut command));
                }
            })
            .expect("start the spawner thread");
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    spawner.lock().unwrap_or_else(|e| e.into_inner()).send((command, reply)).expect("the spawner thread runs");
    answer.recv().expect("the spawner thread answers")
}

fn spawn_here(command: &mut Command) -> io::Result<Child> {
    // SAFETY: the closure runs in the forked child before exec and calls only prctl(2) and
    // getppid(2), which are async-signal-safe; it touches no memory of the parent.
    #[allow(unsafe_code)]
    unsafe {
        let parent = libc::getpid();
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent died between fork and prctl: the signal will never come.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    command.spawn()
}

/// Runs `command` to completion (as [`Command::output`], stdin closed) through [`spawn`];
/// panics naming `what` if it is still running after `timeout` (the child is killed: a hang
/// is a failure, never a pass).
#[track_caller]
pub fn output(mut command: Command, what: &str, timeout: Duration) -> io::Result<Output> {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = spawn(command)?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out,
        Err(_) => {
            kill(pid);
            // Reaped by the waiting thread once the pipes close.
            panic!("{what} still running after {timeout:?}: killed");
        }
    }
}

/// Sends `SIGKILL` to `pid` (a child started here that has not been reaped).
fn kill(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return };
    // SAFETY: kill(2) has no memory-safety preconditions.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}
