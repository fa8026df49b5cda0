//! Backend supervision (what supervisord did in the reference deployment): gale starts the
//! children of every upstream with a `process` section, puts each in
//! rotation once its port accepts, restarts the ones that die (with
//! backoff, giving up after `start_retries` failed starts), replaces them
//! one at a time on a rolling restart, and stops them after the client
//! requests have drained.
//!
//! A leaf: it knows nothing about the load balancer. Whoever wires it up
//! hands it one [`Rotation`] per child, the hook that takes the backend in
//! and out of the pool and reports its requests in flight.
//!
//! - `child.rs`: one child's lifecycle task (the state machine)
//! - `restarts.rs`: failed-start counting and the backoff schedule (pure)
//! - `spawn.rs`: the command, process group, parent-death signal, stopping
//! - `logs.rs`: stdout/stderr to log files, reopened on SIGUSR1
//! - `roll.rs`: the rolling restart
//! - `inherited.rs`: children handed over by a binary upgrade (both sides)
//! - `control.rs`: the control socket `gale restart` / `gale status` use

mod child;
mod control;
mod inherited;
mod logs;
pub mod restarts;
mod roll;
mod spawn;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::{Config, Process};
use child::{ChildTask, Control, Shared};
use logs::Reopen;
use spawn::Spawner;

pub use control::{ControlError, ControlSocket, UpgradeHook, request, socket_path};
pub use inherited::{Handover, InheritedChild, Predecessor};
pub use roll::Replaced;

/// How the supervisor moves a child's backend in and out of the load
/// balancer without knowing the balancer.
pub trait Rotation: Send + Sync + 'static {
    /// `true`: the balancer may pick this backend; `false`: it may not.
    fn set_in_rotation(&self, on: bool);
    /// Requests this backend is serving right now (a rolling restart waits
    /// for them before stopping the child).
    fn in_flight(&self) -> usize;
}

/// Where a child is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildState {
    /// Spawned (or about to be); its port does not accept yet.
    Starting,
    /// Its port accepts: in rotation.
    Running,
    /// Waiting before the next start after a failed one.
    Backoff,
    /// Gave up after `start_retries + 1` failed starts in a row; a rolling
    /// restart tries again.
    Failed,
    /// Asked to stop; waiting for it to exit.
    Stopping,
    /// Stopped for good (gale is shutting down).
    Stopped,
    /// Run by the gale this one upgraded from, until replaced (`inherited.rs`).
    Inherited,
}

impl fmt::Display for ChildState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChildState::Starting => "starting",
            ChildState::Running => "running",
            ChildState::Backoff => "backoff",
            ChildState::Failed => "failed",
            ChildState::Stopping => "stopping",
            ChildState::Stopped => "stopped",
            ChildState::Inherited => "inherited",
        })
    }
}

/// One child as the status page and the error log show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildStatus {
    pub upstream: String,
    pub index: usize,
    pub port: u16,
    pub state: ChildState,
    /// The current process, if one is running.
    pub pid: Option<u32>,
    /// Starts after the first one (crash restarts and rolling restarts).
    pub restarts: u32,
    /// Why the last process ended or failed to start.
    pub last_exit: Option<String>,
}

impl fmt::Display for ChildStatus {
    /// `tornadoes[0] port 8000: running pid 1234, 0 restarts`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}] port {}: {}", self.upstream, self.index, self.port, self.state)?;
        if let Some(pid) = self.pid {
            write!(f, " pid {pid}")?;
        }
        write!(f, ", {} restarts", self.restarts)?;
        if let Some(why) = &self.last_exit
            && self.state != ChildState::Running
        {
            write!(f, ", last: {why}")?;
        }
        Ok(())
    }
}

/// Why the supervisor could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("cannot start the process spawner thread: {0}")]
    Spawner(#[source] std::io::Error),
    #[error("cannot watch SIGUSR1 (log reopening): {0}")]
    Signal(#[source] std::io::Error),
    #[error("upstream `{0}` has no `process` section: gale does not run its servers")]
    NotSupervised(String),
    #[error(
        "upstream `{upstream}`: the new `process` has {new} children, the running one {old}; a rolling restart keeps the count"
    )]
    CountChanged { upstream: String, old: usize, new: usize },
    #[error("{upstream}[{index}]: the new child did not start: {reason}; the children not yet replaced keep running")]
    StartFailed { upstream: String, index: usize, reason: String },
    #[error("gale is shutting down")]
    ShuttingDown,
    #[error("upstream `{upstream}` has no child {index}")]
    NoSuchChild { upstream: String, index: usize },
    #[error(
        "upstream `{upstream}`: {why}; a reload can replace supervised children but not add, remove or \
         move them: restart gale for that"
    )]
    ReloadNeedsRestart { upstream: String, why: String },
    #[error("cannot open the control socket {path}: {source}")]
    ControlSocket {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A child's place in the pool: whether its process accepts (`ready`),
/// whether a rolling restart holds it out (`held`), and the hook into the
/// balancer. It is in rotation when ready and not held.
pub(crate) struct Slot {
    rotation: Mutex<Arc<dyn Rotation>>,
    ready: AtomicBool,
    held: AtomicBool,
}

impl Slot {
    fn new(rotation: Arc<dyn Rotation>) -> Self {
        rotation.set_in_rotation(false);
        Self { rotation: Mutex::new(rotation), ready: AtomicBool::new(false), held: AtomicBool::new(false) }
    }

    fn rotation(&self) -> Arc<dyn Rotation> {
        self.rotation.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self) {
        let on = self.ready.load(Ordering::SeqCst) && !self.held.load(Ordering::SeqCst);
        self.rotation().set_in_rotation(on);
    }

    /// The process accepts (or no longer does).
    fn ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
        self.update();
    }

    /// A rolling restart takes the child out of rotation.
    fn hold(&self) {
        self.held.store(true, Ordering::SeqCst);
        self.update();
    }

    /// The replacement is starting: once ready, it goes back in rotation.
    fn release(&self) {
        self.held.store(false, Ordering::SeqCst);
        self.update();
    }

    fn in_flight(&self) -> usize {
        self.rotation().in_flight()
    }

    fn attach(&self, rotation: Arc<dyn Rotation>) {
        *self.rotation.lock().unwrap_or_else(|e| e.into_inner()) = rotation;
        self.update();
    }
}

struct ChildHandle {
    status: watch::Receiver<ChildStatus>,
    control: mpsc::Sender<Control>,
    slot: Arc<Slot>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// The children of one upstream.
struct Group {
    upstream: String,
    children: Vec<ChildHandle>,
    /// The spec the children run now (a rolling restart may change it).
    spec: Mutex<Arc<Process>>,
    /// One rolling restart at a time.
    rolling: tokio::sync::Mutex<()>,
    /// The upstream's health check, which a started child must pass to
    /// join rotation (a reload may change it).
    health: Arc<Mutex<Option<crate::config::HealthCheck>>>,
}

/// Every supervised child of a config.
pub struct Supervisor {
    groups: Vec<Group>,
    reopen: Reopen,
    /// Slots whose process the old gale of an upgrade still runs (`inherited.rs`).
    inherited: Arc<std::sync::atomic::AtomicUsize>,
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor").field("children", &self.status()).finish()
    }
}

impl Supervisor {
    /// Starts the children of every upstream that has a `process` section,
    /// and returns once each has either accepted on its port or failed its
    /// first start (so the listeners open with the pool in rotation).
    /// `rotation(upstream, index)` gives the hook for backend `index` of
    /// `config.upstreams[upstream]`; each starts out of rotation. Without
    /// any `process` section this does nothing. After an upgrade, the slots
    /// whose child the old gale runs (`handover`) start no process: they are
    /// inherited, in rotation if that child was, until [`Self::take_over`].
    pub async fn start(
        config: &Config,
        rotation: impl Fn(usize, usize) -> Arc<dyn Rotation>,
        handover: Option<&Handover>,
    ) -> Result<Arc<Self>, SupervisorError> {
        let reopen = Reopen::default();
        let mut groups = Vec::new();
        if !config.upstreams.iter().any(|u| u.process.is_some()) {
            return Ok(Arc::new(Self { groups, reopen, inherited: Arc::default() }));
        }
        watch_sigusr1(reopen.clone())?;
        let inherited = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let spawner = Spawner::new().map_err(SupervisorError::Spawner)?;
        for (u, upstream) in config.upstreams.iter().enumerate() {
            let Some(spec) = &upstream.process else { continue };
            let spec = Arc::new(spec.clone());
            let health = Arc::new(Mutex::new(upstream.health_check.clone()));
            let children = (0..spec.count)
                .map(|index| {
                    let (status_tx, status) = watch::channel(ChildStatus {
                        upstream: upstream.name.clone(),
                        index,
                        port: spec.port(index),
                        state: ChildState::Starting,
                        pid: None,
                        restarts: 0,
                        last_exit: None,
                    });
                    let (control, control_rx) = mpsc::channel(4);
                    let slot = Arc::new(Slot::new(rotation(u, index)));
                    let task = ChildTask::new(
                        upstream.name.clone(),
                        index,
                        spec.clone(),
                        status_tx,
                        slot.clone(),
                        Shared { spawner: spawner.clone(), reopen: reopen.clone() },
                        control_rx,
                    )
                    .with_health(health.clone())
                    .inherit(
                        handover.and_then(|h| {
                            let c = h.find(&upstream.name, index, spec.port(index))?;
                            Some((c.pid, h.predecessor.clone()))
                        }),
                        &inherited,
                    );
                    ChildHandle { status, control, slot, task: Mutex::new(Some(tokio::spawn(task.run()))) }
                })
                .collect();
            groups.push(Group {
                upstream: upstream.name.clone(),
                children,
                spec: Mutex::new(spec),
                rolling: tokio::sync::Mutex::new(()),
                health,
            });
        }
        let this = Arc::new(Self { groups, reopen, inherited });
        for child in this.children() {
            let mut status = child.status.clone();
            let _ = status.wait_for(|s| s.state != ChildState::Starting).await;
        }
        for s in this.status() {
            tracing::info!("child {s}");
        }
        Ok(this)
    }

    fn children(&self) -> impl Iterator<Item = &ChildHandle> {
        self.groups.iter().flat_map(|g| g.children.iter())
    }

    fn group(&self, upstream: &str) -> Result<&Group, SupervisorError> {
        self.groups
            .iter()
            .find(|g| g.upstream == upstream)
            .ok_or_else(|| SupervisorError::NotSupervised(upstream.to_owned()))
    }

    /// Reopens the children's log files before their next write (what
    /// SIGUSR1 does; for a caller that handles the signal itself).
    pub fn reopen_logs(&self) {
        self.reopen.bump();
    }

    /// Whether any upstream is supervised.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Every child's state, upstream by upstream, in index order (for
    /// `/status`, metrics and `gale status`).
    pub fn status(&self) -> Vec<ChildStatus> {
        self.children().map(|c| c.status.borrow().clone()).collect()
    }

    /// Points upstream `upstream`'s children at new balancer hooks (after
    /// a config reload rebuilt the pools); each is put in rotation if its
    /// child is running.
    pub fn attach(
        &self,
        upstream: &str,
        rotations: Vec<Arc<dyn Rotation>>,
        health: Option<crate::config::HealthCheck>,
    ) -> Result<(), SupervisorError> {
        let group = self.group(upstream)?;
        *group.health.lock().unwrap_or_else(|e| e.into_inner()) = health;
        if rotations.len() != group.children.len() {
            return Err(SupervisorError::CountChanged {
                upstream: upstream.to_owned(),
                old: group.children.len(),
                new: rotations.len(),
            });
        }
        for (child, rotation) in group.children.iter().zip(rotations) {
            child.slot.attach(rotation);
        }
        Ok(())
    }

    /// Checks a new config against the running children, before a reload
    /// changes anything: the supervised upstreams and their `count` and
    /// `base_port` must stay as they are. Returns the upstreams whose
    /// `process` changed otherwise, with the new spec, for [`Self::roll`].
    pub fn plan_reload(&self, config: &Config) -> Result<Vec<(String, Process)>, SupervisorError> {
        let wanted: Vec<(&str, &Process)> =
            config.upstreams.iter().filter_map(|u| u.process.as_ref().map(|p| (u.name.as_str(), p))).collect();
        let refuse =
            |upstream: &str, why: String| SupervisorError::ReloadNeedsRestart { upstream: upstream.to_owned(), why };
        if let Some(gone) = self.groups.iter().find(|g| !wanted.iter().any(|(n, _)| *n == g.upstream)) {
            return Err(refuse(&gone.upstream, "its `process` section is gone".into()));
        }
        let mut rolls = Vec::new();
        for (name, new) in wanted {
            let Ok(group) = self.group(name) else {
                return Err(refuse(name, "it has a new `process` section".into()));
            };
            let current = group.spec.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if (new.count, new.base_port) != (current.count, current.base_port) {
                return Err(refuse(
                    name,
                    format!(
                        "its children would change from {} on ports {}.. to {} on ports {}..",
                        current.count, current.base_port, new.count, new.base_port
                    ),
                ));
            }
            if *new != *current {
                rolls.push((name.to_owned(), new.clone()));
            }
        }
        Ok(rolls)
    }

    /// Stops every child at once: `stop_signal`, then SIGKILL after
    /// `stop_timeout`. Call it after the client requests have drained.
    pub async fn shutdown(&self) {
        let mut waits = Vec::new();
        for child in self.children() {
            let (done, wait) = oneshot::channel();
            if child.control.send(Control::Stop { done }).await.is_ok() {
                waits.push(wait);
            }
        }
        for wait in waits {
            let _ = wait.await;
        }
        for child in self.children() {
            let task = child.task.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(task) = task {
                let _ = task.await;
            }
        }
        if !self.is_empty() {
            tracing::info!("every child stopped");
        }
    }
}

/// SIGUSR1 reopens the children's log files (after logrotate moved them).
fn watch_sigusr1(reopen: Reopen) -> Result<(), SupervisorError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(SupervisorError::Signal)?;
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            tracing::info!("SIGUSR1: reopening child log files");
            reopen.bump();
        }
    });
    Ok(())
}

/// How long a rolling restart checks again for in-flight requests.
const DRAIN_POLL: Duration = Duration::from_millis(20);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[derive(Default)]
    struct Flag {
        on: AtomicBool,
        in_flight: AtomicUsize,
    }

    impl Rotation for Flag {
        fn set_in_rotation(&self, on: bool) {
            self.on.store(on, Ordering::SeqCst);
        }
        fn in_flight(&self) -> usize {
            self.in_flight.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn a_slot_is_in_rotation_when_ready_and_not_held() {
        let flag = Arc::new(Flag::default());
        flag.on.store(true, Ordering::SeqCst);
        let slot = Slot::new(flag.clone());
        assert!(!flag.on.load(Ordering::SeqCst), "starts out of rotation");
        slot.ready(true);
        assert!(flag.on.load(Ordering::SeqCst));
        slot.hold();
        assert!(!flag.on.load(Ordering::SeqCst));
        // A child that restarts on its own while held stays out.
        slot.ready(false);
        slot.ready(true);
        assert!(!flag.on.load(Ordering::SeqCst));
        slot.release();
        assert!(flag.on.load(Ordering::SeqCst));
        // A new hook (config reload) gets the current state.
        let other = Arc::new(Flag::default());
        slot.attach(other.clone());
        assert!(other.on.load(Ordering::SeqCst));
    }

    #[test]
    fn status_lines_read_well() {
        let mut s = ChildStatus {
            upstream: "app".into(),
            index: 1,
            port: 8001,
            state: ChildState::Running,
            pid: Some(42),
            restarts: 2,
            last_exit: Some("pid 41 exited (exit code 1) after 3.0s".into()),
        };
        assert_eq!(s.to_string(), "app[1] port 8001: running pid 42, 2 restarts");
        s.state = ChildState::Backoff;
        s.pid = None;
        assert_eq!(
            s.to_string(),
            "app[1] port 8001: backoff, 2 restarts, last: pid 41 exited (exit code 1) after 3.0s"
        );
    }
}
