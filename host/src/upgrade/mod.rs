//! Zero-downtime binary upgrade (nginx's SIGUSR2, or `gale upgrade` over the
//! control socket): the running gale starts the binary on disk with the same
//! arguments, hands it its listening sockets (the public ones and the admin
//! one) over a unix socket beside the pid file, and waits until the new gale
//! accepts on them. Then it stops accepting, drains as on a stop, and exits;
//! the new gale takes the pid file and the control socket. Both accept on
//! the same sockets for a moment, so no connection is refused. If the new
//! binary cannot start, exits, or is not ready within `upgrade_timeout`, it
//! is killed and the running gale keeps serving as before.
//!
//! Supervised children (`process`) listen on fixed ports, which two gales
//! cannot hold at once, and die with the gale that started them: they are
//! rolled. The old gale names them in the handover and keeps them running
//! after it drained; the new gale starts with those slots inherited (in
//! rotation on the old children's ports) and replaces them one at a time,
//! asking the old gale to stop each just before it starts its own; then the
//! old gale exits.
//!
//! - `handover.rs`: the messages and the descriptor passing (SCM_RIGHTS)
//! - `children.rs`: the supervised children across the upgrade, both sides

mod children;
pub mod handover;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::process::Child;
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

use crate::server::Running;
use crate::supervisor::{ChildState, Handover, InheritedChild, Supervisor};
use crate::systemd;
use children::OldGale;
use handover::{Role, Socket};

/// The variable that tells a gale it was started by an upgrade, and where
/// to fetch its sockets.
pub const SOCKET_ENV: &str = "GALE_UPGRADE_SOCKET";

/// Why an upgrade did not happen; the running gale serves on in every case.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("an upgrade needs [global] pid_file: the handover socket sits beside it")]
    NoPidFile,
    #[error(
        "the children handed over by the previous upgrade are still being replaced (`gale status` shows \
         them `inherited`): upgrade again once they are"
    )]
    Inheriting,
    #[error("an upgrade is already under way")]
    Busy,
    #[error("this gale has already handed over to pid {0}")]
    HandedOver(u32),
    #[error("gale is stopping")]
    Stopping,
    #[error("cannot open the handover socket {path}: {source}")]
    Socket {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start the new binary {path}: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the new gale (pid {pid}) exited before it was ready ({status})")]
    Exited { pid: u32, status: String },
    #[error("the new gale (pid {pid}) was not ready within upgrade_timeout ({timeout:?}); stopped it")]
    Timeout { pid: u32, timeout: Duration },
    #[error("handover to the new gale (pid {pid}): {source}")]
    Handover {
        pid: u32,
        #[source]
        source: io::Error,
    },
}

/// The handover socket for a pid file: `run/gale.pid` -> `run/gale.upgrade`.
pub fn socket_path(pid_file: &Path) -> PathBuf {
    let path = pid_file.with_extension("upgrade");
    if path == pid_file {
        let mut s = pid_file.as_os_str().to_owned();
        s.push(".upgrade");
        PathBuf::from(s)
    } else {
        path
    }
}

/// The running gale's side of upgrades.
pub struct Upgrader {
    running: Arc<Running>,
    pid_file: Option<PathBuf>,
    /// Turns true to drain (`Running::wait`).
    drain: watch::Sender<bool>,
    /// The admin listener's configured address and socket, handed over too.
    admin: Option<(SocketAddr, OwnedFd)>,
    /// Turns true to stop the admin listener once handed over.
    admin_stop: watch::Sender<bool>,
    /// Held while an upgrade runs; `Some(pid)` once handed over to `pid`.
    state: Mutex<Option<u32>>,
    /// The supervised children, handed over by name and rolled.
    children: Arc<Supervisor>,
    /// After a handover with children: the connection to the new gale (and
    /// its pid), kept for its requests once this gale has drained.
    successor: std::sync::Mutex<Option<(Successor, u32)>>,
}

impl Upgrader {
    pub fn new(
        running: Arc<Running>,
        pid_file: Option<PathBuf>,
        drain: watch::Sender<bool>,
        admin: Option<(SocketAddr, OwnedFd)>,
        admin_stop: watch::Sender<bool>,
        children: Arc<Supervisor>,
    ) -> Self {
        Self {
            running,
            pid_file,
            drain,
            admin,
            admin_stop,
            state: Mutex::new(None),
            children,
            successor: std::sync::Mutex::new(None),
        }
    }

    /// After a handover with supervised children, once this gale has
    /// drained: tells the new gale, which only then starts replacing them
    /// (this gale's last requests still need them), and answers its requests
    /// until it has replaced them all (or went away), so that this gale exits then.
    pub async fn finish(&self) {
        let successor = self.successor.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(((lines, write), pid)) = successor {
            tracing::info!("upgrade: drained; keeping the supervised children until the new gale replaces them");
            children::serve_successor(self.children.clone(), lines, write, pid).await;
        }
    }

    /// Whether this gale has handed over to a new one (which owns the pid
    /// file and the control socket from then on).
    pub fn handed_over(&self) -> bool {
        self.state.try_lock().is_ok_and(|s| s.is_some())
    }

    /// Starts the binary on disk and hands over to it; returns its pid. On
    /// success this gale has stopped accepting and drains.
    pub async fn upgrade(&self) -> Result<u32, UpgradeError> {
        let result = self.attempt().await;
        if let Err(e) = &result {
            tracing::error!("upgrade failed, serving on: {e}");
        }
        result
    }

    async fn attempt(&self) -> Result<u32, UpgradeError> {
        let Ok(mut state) = self.state.try_lock() else { return Err(UpgradeError::Busy) };
        if let Some(pid) = *state {
            return Err(UpgradeError::HandedOver(pid));
        }
        if self.running.is_stopping() {
            return Err(UpgradeError::Stopping);
        }
        let site = self.running.current();
        // This gale does not own those processes yet: it cannot hand them on.
        if self.children.has_inherited() {
            return Err(UpgradeError::Inheriting);
        }
        let pid_file = self.pid_file.as_ref().ok_or(UpgradeError::NoPidFile)?;
        let socket = HandoverSocket::open(socket_path(pid_file))?;
        let exe = binary_on_disk().map_err(|source| UpgradeError::Spawn { path: "/proc/self/exe".into(), source })?;
        tracing::info!("upgrade: starting {}", exe.display());
        let mut child = tokio::process::Command::new(&exe)
            .args(std::env::args_os().skip(1))
            .env(SOCKET_ENV, &socket.path)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|source| UpgradeError::Spawn { path: exe.clone(), source })?;
        let pid = child.id().unwrap_or(0);
        let timeout = site.config.global.upgrade_timeout;
        match self.hand_over(&socket.listener, &mut child, pid, Instant::now() + timeout, timeout).await {
            Ok(successor) => {
                *state = Some(pid);
                if let Some(successor) = successor {
                    *self.successor.lock().unwrap_or_else(|e| e.into_inner()) = Some((successor, pid));
                }
                self.running.mark_stopping();
                let _ = self.admin_stop.send(true);
                let _ = self.drain.send(true);
                tracing::info!("upgrade: gale pid {pid} serves now; this one drains and exits");
                Ok(pid)
            }
            Err(e) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                Err(e)
            }
        }
    }

    async fn hand_over(
        &self,
        listener: &UnixListener,
        child: &mut Child,
        pid: u32,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Option<Successor>, UpgradeError> {
        let broken = |source| UpgradeError::Handover { pid, source };
        // Every supervised slot; a child not running now is named without a pid.
        let children: Vec<InheritedChild> = self
            .children
            .status()
            .into_iter()
            .map(|c| InheritedChild {
                pid: c.pid.filter(|_| c.state == ChildState::Running),
                upstream: c.upstream,
                index: c.index,
                port: c.port,
            })
            .collect();
        // Only the child we started gets the sockets.
        let stream = loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, _) = accepted.map_err(broken)?;
                    match rustix::net::sockopt::socket_peercred(&stream) {
                        Ok(cred) if u32::try_from(cred.pid.as_raw_pid()).ok() == Some(pid) => break stream,
                        _ => tracing::warn!("upgrade: a connection to the handover socket from another process, closed"),
                    }
                }
                status = child.wait() => return Err(exited(pid, status)),
                () = tokio::time::sleep_until(deadline) => return Err(UpgradeError::Timeout { pid, timeout }),
            }
        };
        self.running
            .with_listener_sockets(|public| {
                let mut sockets: Vec<Socket<_>> =
                    public.iter().map(|(addr, fd)| Socket { role: Role::Listen, addr: *addr, fd: *fd }).collect();
                if let Some((addr, fd)) = &self.admin {
                    sockets.push(Socket { role: Role::Admin, addr: *addr, fd: fd.as_fd() });
                }
                handover::send(&stream, &sockets, &children)
            })
            .map_err(broken)?;
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        tokio::select! {
            line = lines.next_line() => match line.map_err(broken)? {
                Some(l) if l.starts_with("ready ") => {}
                // Closed: it is exiting; its status says why.
                None => return Err(match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
                    Ok(status) => exited(pid, status),
                    Err(_) => broken(io::Error::other("it closed the handover socket")),
                }),
                Some(other) => return Err(broken(io::Error::other(format!("unexpected answer {other:?}")))),
            },
            status = child.wait() => return Err(exited(pid, status)),
            () = tokio::time::sleep_until(deadline) => return Err(UpgradeError::Timeout { pid, timeout }),
        }
        // A stop that came meanwhile wins: the new gale is not left serving.
        if self.running.is_stopping() {
            return Err(UpgradeError::Stopping);
        }
        // systemd learns the new main pid before the new gale says READY=1.
        systemd::main_pid(pid);
        write.write_all(b"go\n").await.map_err(broken)?;
        Ok((!children.is_empty()).then_some((lines, write)))
    }
}

/// The handover connection kept open for the children.
type Successor = (tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>, tokio::net::unix::OwnedWriteHalf);

fn exited(pid: u32, status: io::Result<ExitStatus>) -> UpgradeError {
    let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
    UpgradeError::Exited { pid, status }
}

/// The binary at the path this gale was started from: Linux names a
/// replaced binary `PATH (deleted)`, and the file now at PATH is the new one.
fn binary_on_disk() -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(path) => PathBuf::from(path),
        None => exe,
    })
}

/// The handover socket, mode 0600, removed when dropped.
struct HandoverSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl HandoverSocket {
    fn open(path: PathBuf) -> Result<Self, UpgradeError> {
        let fail = |source| UpgradeError::Socket { path: path.clone(), source };
        // Left behind by a gale that was killed mid-upgrade.
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(fail)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
        Ok(Self { path, listener })
    }
}

impl Drop for HandoverSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What a gale started by an upgrade received: its listening sockets, by
/// the address the config names, the old gale's supervised children, and
/// the connection to the old gale.
pub struct Inherited {
    stream: std::os::unix::net::UnixStream,
    /// The public listeners.
    pub listeners: Vec<(SocketAddr, std::net::TcpListener)>,
    /// The admin listener.
    pub admin: Option<(SocketAddr, std::net::TcpListener)>,
    /// The old gale's supervised children.
    children: Vec<InheritedChild>,
    old: OldGale,
}

impl std::fmt::Debug for Inherited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inherited")
            .field("listeners", &self.listeners)
            .field("admin", &self.admin)
            .field("children", &self.children)
            .finish_non_exhaustive()
    }
}

/// When this gale was started by an upgrade (`GALE_UPGRADE_SOCKET` set),
/// fetches the sockets from the old gale.
pub fn inherit() -> anyhow::Result<Option<Inherited>> {
    use anyhow::Context as _;
    let Some(path) = std::env::var_os(SOCKET_ENV) else { return Ok(None) };
    let path = PathBuf::from(path);
    let stream = std::os::unix::net::UnixStream::connect(&path)
        .with_context(|| format!("upgrade: cannot reach the old gale at {}", path.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let (sockets, children) = handover::receive(&stream).context("upgrade: cannot receive the listening sockets")?;
    let old_pid = rustix::net::sockopt::socket_peercred(&stream)
        .ok()
        .and_then(|c| u32::try_from(c.pid.as_raw_pid()).ok())
        .unwrap_or(0);
    let mut inherited = Inherited { stream, listeners: Vec::new(), admin: None, children, old: OldGale::new(old_pid) };
    for s in sockets {
        let listener = std::net::TcpListener::from(s.fd);
        match s.role {
            Role::Listen => inherited.listeners.push((s.addr, listener)),
            Role::Admin => inherited.admin = Some((s.addr, listener)),
        }
    }
    tracing::info!(
        "upgrade: received {} listening sockets and {} supervised children",
        inherited.listeners.len(),
        inherited.children.len()
    );
    Ok(Some(inherited))
}

impl Inherited {
    /// The slots the supervisor inherits: the old gale's children that
    /// `config` still runs on the same port (`None` without children).
    pub fn handover(&self, config: &crate::config::Config) -> Option<Handover> {
        (!self.children.is_empty()).then(|| self.old.handover(&self.children, config))
    }

    /// Tells the old gale this one accepts, and waits for it to stop
    /// accepting (a bounded wait: if it does not answer, it is gone). With
    /// children, the connection then carries the requests to stop them, and
    /// the returned roll replaces them (spawn it once this gale serves).
    pub async fn ready(
        self,
        config: &crate::config::Config,
        supervisor: &Arc<Supervisor>,
    ) -> Option<futures_util::future::BoxFuture<'static, ()>> {
        let Self { stream, children, old, .. } = self;
        let done = tokio::task::spawn_blocking(move || handover::ready(&stream).map(|go| (go, stream))).await;
        let stream = match done {
            Ok(Ok((true, stream))) => {
                tracing::info!("upgrade: the old gale drains; serving");
                Some(stream)
            }
            Ok(Ok((false, _))) => {
                tracing::warn!("upgrade: the old gale closed the handover; serving");
                None
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "upgrade: no answer from the old gale; serving");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "upgrade: the handover task failed; serving");
                None
            }
        };
        if children.is_empty() {
            return None;
        }
        let stream = stream.and_then(|s| {
            s.set_read_timeout(None).ok()?;
            s.set_nonblocking(true).ok()?;
            tokio::net::UnixStream::from_std(s).ok()
        });
        let retired = children.iter().filter(|c| !children::wanted(c, config)).cloned().collect();
        old.connect(stream).await;
        Some(Box::pin(old.roll(retired, supervisor.clone())))
    }
}
