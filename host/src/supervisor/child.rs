//! One child's life, as a task: start it, wait until its port accepts, put
//! it in rotation, watch it, restart it with backoff when it dies, give up
//! after too many failed starts, and obey the supervisor's commands (stop,
//! replace) at any point.
//!
//! ```text
//!   Start --accepts--> Running --exits--> Start (ran long) | Backoff | Failed
//!     |--exits / no accept / cannot spawn--> Backoff --delay--> Start
//!     |                                  \-> Failed (start_retries used up)
//!   any phase --Replace--> (stop) Start      any phase --Stop--> (stop) Done
//!   Inherited (the old gale's child, after an upgrade) --Replace--> (the old gale stops it) Start
//!             --the old gale is gone (its child with it)--> Start
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

use super::logs::{self, LogFile, Reopen, Sink};
use super::restarts::{Next, Restarts};
use super::spawn::{self, LogPlan, Plan, Proc, Spawner};
use super::{ChildState, ChildStatus, Predecessor, Slot};
use crate::config::{HealthCheck, Process};

/// What the supervisor asks of a child task.
pub(super) enum Control {
    /// Stop the current process (if any) and start a new one, from `spec`
    /// when given; `done` gets the new pid once it accepts, or why it failed
    /// its first start.
    Replace { spec: Option<Arc<Process>>, done: oneshot::Sender<Result<u32, String>> },
    /// Stop the process and end the task.
    Stop { done: oneshot::Sender<()> },
}

enum Phase {
    /// The old gale of an upgrade runs this slot's process (`inherited.rs`).
    Inherited {
        pid: Option<u32>,
    },
    Start,
    Running {
        proc: Proc,
        started: Instant,
    },
    Backoff(Duration),
    Failed,
    Done,
}

/// What every child task of a supervisor shares.
#[derive(Debug, Clone)]
pub(super) struct Shared {
    pub spawner: Spawner,
    pub reopen: Reopen,
}

/// The task's state.
pub(super) struct ChildTask {
    pub upstream: String,
    pub index: usize,
    pub spec: Arc<Process>,
    pub status: watch::Sender<ChildStatus>,
    pub slot: Arc<Slot>,
    pub spawner: Spawner,
    pub reopen: Reopen,
    pub control: mpsc::Receiver<Control>,
    restarts: Restarts,
    /// The upstream's active health check: a started child joins rotation
    /// once it passes one (not merely accepts).
    health: Arc<std::sync::Mutex<Option<HealthCheck>>>,
    /// A rolling restart waiting for this child's next start to succeed.
    waiter: Option<oneshot::Sender<Result<u32, String>>>,
    log_file: Option<Arc<LogFile>>,
    spawned: bool,
    /// After an upgrade: the old gale's process in this slot, and the old gale.
    inherited: Option<(Option<u32>, Arc<dyn Predecessor>)>,
    /// How many slots of the supervisor are inherited.
    inherited_count: Arc<AtomicUsize>,
}

impl ChildTask {
    /// A task for child `index`; `run` starts it.
    pub fn new(
        upstream: String,
        index: usize,
        spec: Arc<Process>,
        status: watch::Sender<ChildStatus>,
        slot: Arc<Slot>,
        shared: Shared,
        control: mpsc::Receiver<Control>,
    ) -> Self {
        let restarts = Restarts::new(spec.start_retries, spec.start_timeout);
        Self {
            upstream,
            index,
            spec,
            status,
            slot,
            spawner: shared.spawner,
            reopen: shared.reopen,
            control,
            restarts,
            waiter: None,
            log_file: None,
            spawned: false,
            health: Arc::default(),
            inherited: None,
            inherited_count: Arc::default(),
        }
    }

    /// Starts as the slot of the old gale's process `pid` (`None`: it was
    /// not running at the handover) rather than with a process of its own.
    /// `count`: the supervisor's inherited slots, this one among them until released.
    pub fn inherit(mut self, from: Option<(Option<u32>, Arc<dyn Predecessor>)>, count: &Arc<AtomicUsize>) -> Self {
        if from.is_some() {
            count.fetch_add(1, Ordering::SeqCst);
        }
        self.inherited = from;
        self.inherited_count = count.clone();
        self
    }

    /// Readiness by `check` (a passed health check) rather than an accepted connection.
    pub fn with_health(mut self, check: Arc<std::sync::Mutex<Option<HealthCheck>>>) -> Self {
        self.health = check;
        self
    }

    /// Runs until stopped.
    pub async fn run(mut self) {
        let mut phase = match &self.inherited {
            Some((pid, _)) => Phase::Inherited { pid: *pid },
            None => Phase::Start,
        };
        loop {
            phase = match phase {
                Phase::Inherited { pid } => self.inherited(pid).await,
                Phase::Start => self.start().await,
                Phase::Running { proc, started } => self.running(proc, started).await,
                Phase::Backoff(delay) => self.backoff(delay).await,
                Phase::Failed => self.failed().await,
                Phase::Done => return,
            };
        }
    }

    fn who(&self) -> String {
        format!("{}[{}] (port {})", self.upstream, self.index, self.port())
    }

    fn port(&self) -> u16 {
        self.spec.port(self.index)
    }

    fn set(&self, state: ChildState, pid: Option<u32>) {
        self.status.send_modify(|s| {
            s.state = state;
            s.pid = pid;
        });
    }

    async fn start(&mut self) -> Phase {
        let port = self.port();
        let gale_cwd = std::env::current_dir().unwrap_or_default();
        let plan = spawn::plan(&self.spec, &self.upstream, self.index, &gale_cwd);
        if self.spawned {
            self.status.send_modify(|s| s.restarts += 1);
        }
        self.spawned = true;
        self.set(ChildState::Starting, None);

        if port_accepts(port).await {
            return self.failed_start(format!("port {port} already accepts connections: another process is using it"));
        }
        let sink = match self.sink(&plan) {
            Ok(s) => s,
            Err(e) => return self.failed_start(e),
        };
        let started = Instant::now();
        let mut child = match self.spawner.spawn(spawn::command(&plan)).await {
            Ok(c) => c,
            Err(e) => return self.failed_start(format!("cannot start {}: {e}", plan.program.display())),
        };
        let Some(pid) = child.id() else {
            return self.failed_start("exited at once".into());
        };
        if let Some(sink) = sink {
            if let Some(out) = child.stdout.take() {
                logs::copy(out, sink.clone());
            }
            if let Some(err) = child.stderr.take() {
                logs::copy(err, sink);
            }
        }
        let mut proc = Proc { child, pid };
        self.set(ChildState::Starting, Some(pid));
        tracing::info!("{}: started pid {pid}: {}", self.who(), command_line(&plan));

        let deadline = tokio::time::Instant::from_std(started + self.spec.start_timeout);
        let health = self.health.lock().unwrap_or_else(|e| e.into_inner()).clone();
        tokio::select! {
            ready = wait_until_ready(port, health.as_ref(), deadline) => {
                if ready {
                    self.slot.ready(true);
                    self.set(ChildState::Running, Some(pid));
                    let how = if health.is_some() { "passes its health check" } else { "accepts connections" };
                    tracing::info!("{}: pid {pid} {how}: in rotation", self.who());
                    if let Some(w) = self.waiter.take() {
                        let _ = w.send(Ok(pid));
                    }
                    Phase::Running { proc, started }
                } else {
                    let what = if health.is_some() { "pass its health check" } else { "accept connections" };
                    let reason = format!(
                        "pid {pid} did not {what} within start_timeout ({:?})",
                        self.spec.start_timeout
                    );
                    let _ = proc.stop(self.spec.stop_signal, self.spec.stop_timeout).await;
                    self.failed_start(reason)
                }
            }
            status = proc.child.wait() => {
                proc.sweep();
                self.failed_start(format!("pid {pid} exited ({}) before accepting connections", describe(status)))
            }
            cmd = self.control.recv() => self.command(cmd, Some(proc)).await,
        }
    }

    async fn running(&mut self, mut proc: Proc, started: Instant) -> Phase {
        tokio::select! {
            status = proc.child.wait() => {
                self.slot.ready(false);
                proc.sweep();
                let ran = started.elapsed();
                let reason = format!("pid {} exited ({}) after {:.1?}", proc.pid, describe(status), ran);
                let next = self.restarts.exited(ran);
                self.after(reason, next)
            }
            cmd = self.control.recv() => self.command(cmd, Some(proc)).await,
        }
    }

    /// The old gale's process serves the slot until a rolling replacement
    /// (or a stop) asks the old gale to stop it, or until the old gale is
    /// gone and took its children with it: then the slot starts at once.
    async fn inherited(&mut self, pid: Option<u32>) -> Phase {
        let Some((_, old)) = self.inherited.clone() else { return Phase::Start };
        self.set(ChildState::Inherited, pid);
        self.slot.ready(pid.is_some());
        let who = self.who();
        let cmd = tokio::select! {
            () = old.gone() => {
                self.slot.ready(false);
                tracing::error!(
                    "{who}: the old gale exited before handing this child over; its process{} died with it: \
                     starting a new one now",
                    pid.map_or_else(String::new, |p| format!(" (pid {p})"))
                );
                self.release_inherited(&*old);
                // The old process may need a moment to let go of the port.
                let deadline = tokio::time::Instant::now() + self.spec.start_timeout;
                while port_accepts(self.port()).await && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                return Phase::Start;
            }
            cmd = self.control.recv() => cmd,
        };
        self.slot.ready(false);
        self.set(ChildState::Stopping, pid);
        let patience = super::inherited::stop_patience(self.spec.stop_timeout);
        match tokio::time::timeout(patience, old.stop(&self.upstream, self.index)).await {
            Ok(Ok(())) => tracing::info!("{who}: the old gale stopped its process{}", pid_suffix(pid)),
            Ok(Err(e)) => tracing::error!("{who}: the old gale could not stop its process{}: {e}", pid_suffix(pid)),
            Err(_) => tracing::error!("{who}: no answer from the old gale within {patience:?} to stopping its process"),
        }
        self.release_inherited(&*old);
        self.command(cmd, None).await
    }

    fn release_inherited(&mut self, old: &dyn Predecessor) {
        self.inherited = None;
        self.inherited_count.fetch_sub(1, Ordering::SeqCst);
        old.released(&self.upstream, self.index);
    }

    async fn backoff(&mut self, delay: Duration) -> Phase {
        self.set(ChildState::Backoff, None);
        tokio::select! {
            () = tokio::time::sleep(delay) => Phase::Start,
            cmd = self.control.recv() => self.command(cmd, None).await,
        }
    }

    async fn failed(&mut self) -> Phase {
        self.set(ChildState::Failed, None);
        let cmd = self.control.recv().await;
        self.command(cmd, None).await
    }

    fn failed_start(&mut self, reason: String) -> Phase {
        let next = self.restarts.failed_start();
        self.after(reason, next)
    }

    /// Out of rotation, then on to what the restart policy says.
    fn after(&mut self, reason: String, next: Next) -> Phase {
        self.slot.ready(false);
        self.status.send_modify(|s| {
            s.pid = None;
            s.last_exit = Some(reason.clone());
        });
        if let Some(w) = self.waiter.take() {
            let _ = w.send(Err(reason.clone()));
        }
        let who = self.who();
        let failures = self.restarts.failed_in_a_row();
        let tries = self.spec.start_retries + 1;
        match next {
            Next::Restart { delay } if delay.is_zero() => {
                tracing::warn!("{who}: {reason}: restarting");
                Phase::Start
            }
            Next::Restart { delay } => {
                tracing::warn!("{who}: {reason}: failed start {failures} of {tries}, retrying in {delay:.1?}");
                Phase::Backoff(delay)
            }
            Next::GiveUp => {
                tracing::error!(
                    "{who}: {reason}: failed start {failures} of {tries}, giving up: child FAILED, out of rotation \
                     (`gale restart {}` tries again)",
                    self.upstream
                );
                Phase::Failed
            }
        }
    }

    async fn command(&mut self, cmd: Option<Control>, proc: Option<Proc>) -> Phase {
        self.slot.ready(false);
        match cmd {
            None | Some(Control::Stop { .. }) => {
                if let Some(proc) = proc {
                    self.stop(proc, "stopping").await;
                }
                self.set(ChildState::Stopped, None);
                if let Some(w) = self.waiter.take() {
                    let _ = w.send(Err("gale is shutting down".into()));
                }
                if let Some(Control::Stop { done }) = cmd {
                    let _ = done.send(());
                }
                Phase::Done
            }
            Some(Control::Replace { spec, done }) => {
                if let Some(proc) = proc {
                    self.stop(proc, "replacing").await;
                }
                if let Some(spec) = spec {
                    self.spec = spec;
                    self.restarts = Restarts::new(self.spec.start_retries, self.spec.start_timeout);
                }
                self.restarts.reset();
                self.slot.release();
                if let Some(old) = self.waiter.replace(done) {
                    let _ = old.send(Err("superseded by a newer restart".into()));
                }
                Phase::Start
            }
        }
    }

    async fn stop(&mut self, mut proc: Proc, why: &str) {
        let pid = proc.pid;
        self.set(ChildState::Stopping, Some(pid));
        tracing::info!(
            "{}: {why} pid {pid} (SIG{}, SIGKILL after {:?})",
            self.who(),
            self.spec.stop_signal.name(),
            self.spec.stop_timeout
        );
        match proc.stop(self.spec.stop_signal, self.spec.stop_timeout).await {
            Ok(status) => tracing::info!("{}: pid {pid} stopped ({})", self.who(), describe(Ok(status))),
            Err(e) => tracing::error!("{}: cannot stop pid {pid}: {e}", self.who()),
        }
    }

    /// Where this start's output goes; a log file is kept open across
    /// restarts while its path stays the same.
    fn sink(&mut self, plan: &Plan) -> Result<Option<Sink>, String> {
        let prefix = format!("{}[{}] | ", self.upstream, self.index);
        Ok(match &plan.log {
            LogPlan::Off => None,
            LogPlan::Stderr => Some(Sink::Stderr { prefix }),
            LogPlan::Stdout => Some(Sink::Stdout { prefix }),
            LogPlan::File(path) => {
                let file = match &self.log_file {
                    Some(f) if f.path() == path => f.clone(),
                    _ => LogFile::open(path, self.reopen.clone())
                        .map_err(|e| format!("cannot open log {}: {e}", path.display()))?,
                };
                self.log_file = Some(file.clone());
                Some(Sink::File(file))
            }
        })
    }
}

fn pid_suffix(pid: Option<u32>) -> String {
    pid.map_or_else(String::new, |p| format!(" pid {p}"))
}

/// The command as a shell would need it, for the log.
fn command_line(plan: &Plan) -> String {
    std::iter::once(plan.program.display().to_string())
        .chain(plan.args.iter().cloned())
        .map(|w| {
            if w.is_empty() || w.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
                format!("{w:?}")
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => s.to_string(),
        },
        Err(e) => format!("wait failed: {e}"),
    }
}

/// Whether something accepts TCP connections on `127.0.0.1:port`.
async fn port_accepts(port: u16) -> bool {
    let connect = TcpStream::connect(("127.0.0.1", port));
    matches!(tokio::time::timeout(Duration::from_secs(1), connect).await, Ok(Ok(_)))
}

/// Polls until the port accepts and, with a health check, until one
/// passes; false once `deadline` passes.
async fn wait_until_ready(port: u16, health: Option<&HealthCheck>, deadline: tokio::time::Instant) -> bool {
    if !wait_until_accepts(port, deadline).await {
        return false;
    }
    let Some(hc) = health else { return true };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut pause = Duration::from_millis(20);
    loop {
        if crate::upstream::active::check(addr, hc).await.is_ok() {
            return true;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return false;
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(hc.interval);
    }
}

/// Polls until the port accepts; false once `deadline` passes.
async fn wait_until_accepts(port: u16, deadline: tokio::time::Instant) -> bool {
    let mut pause = Duration::from_millis(20);
    loop {
        if port_accepts(port).await {
            return true;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return false;
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}
