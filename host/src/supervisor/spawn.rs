//! Starting and stopping one child process.
//!
//! Every child gets its own process group (so a terminal's Ctrl-C reaches
//! gale alone, which drains before it stops the children, and so a stop
//! reaches the child's own children too) and the parent-death signal
//! SIGKILL (so no child outlives gale, even a gale killed with SIGKILL).
//!
//! The parent-death signal fires when the *thread* that forked the child
//! ends, not the process. Runtime threads come and go, so children are
//! forked by one dedicated thread ([`Spawner`]) that lives until every child
//! task is gone.

use rustix::process::Signal;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use crate::config::{ChildLog, ChildVars, Process, StopSignal};

/// Everything needed to start one child, with the templates rendered and
/// the paths made absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub log: LogPlan,
}

/// Where one child's output goes, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LogPlan {
    Off,
    Stderr,
    Stdout,
    File(PathBuf),
}

/// Renders `spec` for child `index` of `upstream`. Relative paths: `cwd`
/// against `gale_cwd`; a program with a `/` in it against the child's cwd
/// (as a shell would after `cd`); a bare program name is looked up in
/// `PATH`; the log file against the config file's directory.
pub(super) fn plan(spec: &Process, upstream: &str, index: usize, gale_cwd: &Path) -> Plan {
    let vars = ChildVars { port: spec.port(index), index, name: upstream };
    let cwd = absolute(gale_cwd, &spec.cwd);
    let mut words = spec.command.iter().map(|t| t.render(vars));
    let program = words.next().unwrap_or_default();
    let program = if program.contains('/') { absolute(&cwd, Path::new(&program)) } else { PathBuf::from(program) };
    let log = match &spec.log {
        ChildLog::Off => LogPlan::Off,
        ChildLog::Stderr => LogPlan::Stderr,
        ChildLog::Stdout => LogPlan::Stdout,
        ChildLog::File(t) => LogPlan::File(absolute(&absolute(gale_cwd, &spec.config_dir), Path::new(&t.render(vars)))),
    };
    Plan {
        program,
        args: words.collect(),
        cwd,
        env: spec.env.iter().map(|(k, v)| (k.clone(), v.render(vars))).collect(),
        log,
    }
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() { p.to_path_buf() } else { base.join(p) }
}

/// The command for a plan: own process group, SIGKILL on gale's death,
/// stdin closed, output piped to gale (or discarded).
pub(super) fn command(plan: &Plan) -> Command {
    let mut cmd = Command::new(&plan.program);
    cmd.args(&plan.args)
        .current_dir(&plan.cwd)
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .process_group(0);
    if plan.log == LogPlan::Off {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    die_with_parent(&mut cmd);
    cmd
}

/// Asks the kernel to SIGKILL the child when the thread that forks it
/// ends, and closes the race where gale died before the request was made.
/// Also gives the child the machine's huge-page setting back (`heap.rs`).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed: it calls prctl(2) (here and in
    // heap::restore_in_child) and getppid(2),
    // which are, and builds io::Errors from raw codes, which does not
    // allocate. It touches no lock and no memory shared with the parent.
    unsafe {
        cmd.pre_exec(move || {
            crate::heap::restore_in_child();
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            // gale died between fork and prctl: the signal will never come.
            if rustix::process::getppid() != Some(parent) {
                return Err(io::Error::from_raw_os_error(rustix::io::Errno::SRCH.raw_os_error()));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

type Job = (Command, oneshot::Sender<io::Result<Child>>);

/// The one thread that forks children (see the module docs). It ends when
/// the last `Spawner` clone is dropped, that is when every child task has
/// ended.
#[derive(Debug, Clone)]
pub(super) struct Spawner {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl Spawner {
    /// Starts the thread, attached to the current tokio runtime (children
    /// are reaped by it).
    pub fn new() -> io::Result<Self> {
        let runtime = tokio::runtime::Handle::current();
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new().name("gale-spawner".into()).spawn(move || {
            let _entered = runtime.enter();
            while let Ok((mut cmd, reply)) = rx.recv() {
                let _ = reply.send(cmd.spawn());
            }
        })?;
        Ok(Self { jobs })
    }

    /// Forks and execs `cmd` on the spawner thread.
    pub async fn spawn(&self, cmd: Command) -> io::Result<Child> {
        let (tx, rx) = oneshot::channel();
        let gone = || io::Error::other("the spawner thread is gone");
        self.jobs.send((cmd, tx)).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

/// A running child.
#[derive(Debug)]
pub(super) struct Proc {
    pub child: Child,
    /// Also its process group id.
    pub pid: u32,
}

impl Proc {
    /// Sends `signal` to the child's group, waits up to `timeout` for it to
    /// exit, then SIGKILLs the group. Returns how it ended.
    pub async fn stop(&mut self, signal: StopSignal, timeout: Duration) -> io::Result<ExitStatus> {
        // Already exited (and not yet reaped): nothing to signal.
        if let Some(status) = self.child.try_wait()? {
            self.sweep();
            return Ok(status);
        }
        let _ = signal_group(self.pid, signo(signal));
        let status = match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                tracing::warn!(pid = self.pid, "still running {timeout:?} after SIG{}: sending SIGKILL", signal.name());
                let _ = signal_group(self.pid, Signal::KILL);
                self.child.wait().await?
            }
        };
        self.sweep();
        Ok(status)
    }

    /// Kills whatever the child left behind in its process group.
    pub fn sweep(&self) {
        let _ = signal_group(self.pid, Signal::KILL);
    }
}

fn signo(s: StopSignal) -> Signal {
    match s {
        StopSignal::Term => Signal::TERM,
        StopSignal::Int => Signal::INT,
        StopSignal::Quit => Signal::QUIT,
        StopSignal::Hup => Signal::HUP,
        StopSignal::Kill => Signal::KILL,
        StopSignal::Usr1 => Signal::USR1,
        StopSignal::Usr2 => Signal::USR2,
    }
}

/// Sends `sig` to process group `pgid`: one gale created for a child (pgid =
/// the child's pid, > 1, so never "every process"); while any member lives
/// the id cannot be reused.
fn signal_group(pgid: u32, sig: Signal) -> io::Result<()> {
    let pgid = i32::try_from(pgid).ok().filter(|p| *p > 1).and_then(rustix::process::Pid::from_raw);
    let Some(pgid) = pgid else { return Err(io::Error::from_raw_os_error(rustix::io::Errno::INVAL.raw_os_error())) };
    rustix::process::kill_process_group(pgid, sig).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Template;

    fn spec() -> Process {
        let t = |s: &str| Template::parse(s).expect("template");
        Process {
            command: vec![t("../venv/bin/python"), t("app.py"), t("--port={port}"), t("--name={name}-{index}")],
            count: 4,
            base_port: 8000,
            cwd: PathBuf::from("srv"),
            env: vec![("PORT".into(), t("{port}"))],
            stop_signal: StopSignal::Term,
            stop_timeout: Duration::from_secs(10),
            start_timeout: Duration::from_secs(10),
            start_retries: 3,
            log: ChildLog::File(t("logs/{name}-{index}.log")),
            config_dir: PathBuf::from("etc"),
        }
    }

    #[test]
    fn plan_renders_templates_and_paths() {
        let p = plan(&spec(), "app", 2, Path::new("/home/me"));
        assert_eq!(p.program, Path::new("/home/me/srv/../venv/bin/python"));
        assert_eq!(p.args, ["app.py", "--port=8002", "--name=app-2"]);
        assert_eq!(p.cwd, Path::new("/home/me/srv"));
        assert_eq!(p.env, [("PORT".to_owned(), "8002".to_owned())]);
        assert_eq!(p.log, LogPlan::File("/home/me/etc/logs/app-2.log".into()));
    }

    #[test]
    fn bare_program_names_are_left_to_path_and_absolute_paths_kept() {
        let mut s = spec();
        s.command[0] = Template::parse("python3").expect("template");
        s.cwd = PathBuf::from("/srv/app");
        s.log = ChildLog::File(Template::parse("/var/log/{name}.log").expect("template"));
        let p = plan(&s, "app", 0, Path::new("/home/me"));
        assert_eq!(p.program, Path::new("python3"));
        assert_eq!(p.cwd, Path::new("/srv/app"));
        assert_eq!(p.log, LogPlan::File("/var/log/app.log".into()));
    }

    #[test]
    fn signal_group_refuses_dangerous_ids() {
        assert!(signal_group(0, Signal::KILL).is_err());
        assert!(signal_group(1, Signal::KILL).is_err());
    }
}
