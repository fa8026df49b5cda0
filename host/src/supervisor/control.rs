//! The control socket: how `gale restart UPSTREAM` and `gale status` reach
//! the running gale. A unix socket next to the pid file (`gale.pid` ->
//! `gale.sock`, mode 0600), one command per connection:
//!
//! ```text
//! -> restart NAME          <- progress lines ... then `ok` or `error: MESSAGE`
//! -> status                <- one line per child ...  then `ok`
//! -> upgrade               <- `upgraded: ...` then `ok`, or `error: MESSAGE`
//! ```
//!
//! `upgrade` runs the hook `main.rs` hands in (the supervisor knows nothing
//! of upgrades); the socket is open whenever there is a pid file.
//!
//! A socket rather than a signal: the caller learns when the rolling restart
//! has finished and whether it worked, and two callers cannot overwrite
//! each other's command.

use std::io::{self, BufRead, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Supervisor, SupervisorError};

/// Why a control command failed, on the caller's side.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No pid file: no gale is running with this config.
    #[error("gale is not running: no pid file {0}")]
    NotRunning(PathBuf),
    #[error("cannot reach the running gale at {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("control connection: {0}")]
    Io(#[from] io::Error),
    /// The running gale answered with an error.
    #[error("{0}")]
    Remote(String),
}

/// The control socket for a pid file: `run/gale.pid` -> `run/gale.sock`.
pub fn socket_path(pid_file: &Path) -> PathBuf {
    let path = pid_file.with_extension("sock");
    if path == pid_file {
        let mut s = pid_file.as_os_str().to_owned();
        s.push(".sock");
        PathBuf::from(s)
    } else {
        path
    }
}

/// What `upgrade` on the control socket runs: the new gale's pid, or why
/// there is none.
pub type UpgradeHook = Arc<dyn Fn() -> BoxFuture<'static, Result<u32, String>> + Send + Sync>;

/// The listening control socket; removed when dropped, unless another gale
/// (an upgrade's new one) has put its own at the path meanwhile
/// ([`ControlSocket::replaced`]).
#[derive(Debug)]
pub struct ControlSocket {
    path: PathBuf,
    task: JoinHandle<()>,
    /// Whether the file at `path` is still this socket.
    ours: bool,
}

impl ControlSocket {
    /// Where it listens.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Another gale has put its socket at the path (an upgrade's new one):
    /// leave the file when this one is dropped.
    pub fn replaced(&mut self) {
        self.ours = false;
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.task.abort();
        if self.ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Supervisor {
    /// Opens the control socket next to `pid_file` and serves commands on it.
    pub fn listen_control(
        self: &Arc<Self>,
        pid_file: &Path,
        upgrade: Option<UpgradeHook>,
    ) -> Result<ControlSocket, SupervisorError> {
        let path = socket_path(pid_file);
        let fail = |source| SupervisorError::ControlSocket { path: path.clone(), source };
        // Left behind by a gale that was killed.
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(fail)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
        let this = self.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, this.clone(), upgrade.clone()));
            }
        });
        Ok(ControlSocket { path, task, ours: true })
    }
}

async fn serve(stream: UnixStream, supervisor: Arc<Supervisor>, upgrade: Option<UpgradeHook>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    if BufReader::new(read.take(4096)).read_line(&mut line).await.is_err() {
        return;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let answer = match words.as_slice() {
        ["status"] => {
            for s in supervisor.status() {
                let _ = write.write_all(format!("{s}\n").as_bytes()).await;
            }
            Ok(())
        }
        ["restart", upstream] => {
            let (tx, mut rx) = mpsc::unbounded_channel::<String>();
            let roll = supervisor.roll(upstream, None, move |l| {
                let _ = tx.send(l);
            });
            tokio::pin!(roll);
            // The restart goes on even if the caller goes away.
            let result = loop {
                tokio::select! {
                    Some(l) = rx.recv() => {
                        let _ = write.write_all(format!("{l}\n").as_bytes()).await;
                    }
                    r = &mut roll => break r,
                }
            };
            while let Ok(l) = rx.try_recv() {
                let _ = write.write_all(format!("{l}\n").as_bytes()).await;
            }
            result.map(|_| ()).map_err(|e| e.to_string())
        }
        ["upgrade"] => match upgrade {
            Some(hook) => match hook().await {
                Ok(pid) => {
                    let me = std::process::id();
                    let line = if supervisor.is_empty() {
                        format!("upgraded: gale pid {pid} serves now; pid {me} drains and exits\n")
                    } else {
                        format!(
                            "upgraded: gale pid {pid} serves now; pid {me} drains, keeps its children until \
                             pid {pid} has replaced them one at a time, and exits\n"
                        )
                    };
                    let _ = write.write_all(line.as_bytes()).await;
                    Ok(())
                }
                Err(e) => Err(e),
            },
            None => Err("this gale cannot upgrade".to_owned()),
        },
        _ => Err(format!("unknown command `{}`: use `restart UPSTREAM`, `status` or `upgrade`", line.trim())),
    };
    let last = match answer {
        Ok(()) => "ok\n".to_owned(),
        Err(e) => format!("error: {e}\n"),
    };
    let _ = write.write_all(last.as_bytes()).await;
}

/// Sends `command` to the gale whose pid file is `pid_file` and hands each
/// line of the answer to `on_line` as it arrives; blocks until the answer
/// is complete.
pub fn request(pid_file: &Path, command: &str, mut on_line: impl FnMut(&str)) -> Result<(), ControlError> {
    if !pid_file.exists() {
        return Err(ControlError::NotRunning(pid_file.to_path_buf()));
    }
    let path = socket_path(pid_file);
    let mut stream = std::os::unix::net::UnixStream::connect(&path)
        .map_err(|source| ControlError::Connect { path: path.clone(), source })?;
    stream.write_all(format!("{command}\n").as_bytes())?;
    for line in io::BufReader::new(stream).lines() {
        let line = line?;
        if line == "ok" {
            return Ok(());
        }
        if let Some(message) = line.strip_prefix("error: ") {
            return Err(ControlError::Remote(message.to_owned()));
        }
        on_line(&line);
    }
    Err(ControlError::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "gale closed the control connection without an answer",
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_replaced_by_another_gale_is_left_at_exit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gale.sock");
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let socket = || ControlSocket { path: path.clone(), task: rt.spawn(async {}), ours: true };
        std::fs::write(&path, "").expect("create");
        let mut replaced = socket();
        replaced.replaced();
        drop(replaced);
        assert!(path.exists(), "the new gale's control socket was removed");
        drop(socket());
        assert!(!path.exists());
    }

    #[test]
    fn the_socket_sits_next_to_the_pid_file() {
        assert_eq!(socket_path(Path::new("run/gale.pid")), Path::new("run/gale.sock"));
        assert_eq!(socket_path(Path::new("/run/gale")), Path::new("/run/gale.sock"));
        assert_eq!(socket_path(Path::new("/run/gale.sock")), Path::new("/run/gale.sock.sock"));
    }
}
