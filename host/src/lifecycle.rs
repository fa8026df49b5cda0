//! The process's life as a service manager, a load balancer or Kubernetes
//! sees it: readiness and liveness (`/ready`, `/live` on the admin
//! listener) and the stop sequence: on the first stop signal `/ready`
//! answers 503 at once, gale keeps serving for `shutdown_delay` (the time an
//! endpoint list or a balancer's health check needs to stop sending), then
//! drains as `Running::wait` does. And the pid file, which an upgrade's new
//! gale takes over.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use tokio::sync::watch;

use crate::server::Running;
use crate::systemd;

/// Whether gale should be sent new traffic: `Err` says why not. Ready once
/// the listeners are bound and the config loaded (a `Running` exists), every
/// upstream pool has a live backend, and no stop has begun.
pub fn readiness(running: &Running) -> Result<(), String> {
    if running.is_stopping() {
        return Err("stopping".to_owned());
    }
    let site = running.current();
    let now = Instant::now();
    match site.upstreams.iter().find(|pool| !pool.has_live_backend(now)) {
        Some(pool) => Err(format!("upstream `{}` has no live backend", pool.config.name)),
        None => Ok(()),
    }
}

/// Waits for the first stop signal (`stop` turning true), then runs the
/// stop sequence: not ready, `STOPPING=1`, `shutdown_delay` of normal
/// service, then `drain` turns true and `Running::wait` drains.
pub async fn stop_sequence(mut stop: watch::Receiver<bool>, running: Arc<Running>, drain: watch::Sender<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        return;
    }
    running.mark_stopping();
    systemd::stopping();
    let delay = running.current().config.global.shutdown_delay;
    if !delay.is_zero() {
        tracing::info!("/ready answers 503; serving for shutdown_delay ({delay:?}) before draining");
        tokio::time::sleep(delay).await;
    }
    let _ = drain.send(true);
}

/// Writes this process's pid to `path`.
pub fn write_pid(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, format!("{}\n", std::process::id()))
        .with_context(|| format!("cannot write pid_file {}", path.display()))
}

/// Removes the pid file at exit, unless it names another process (the new
/// gale of an upgrade has written its own).
pub fn remove_pid(path: &Path) {
    let ours = std::fs::read_to_string(path).is_ok_and(|text| text.trim() == std::process::id().to_string());
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pid_file_is_removed_only_while_it_names_this_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run/gale.pid");
        write_pid(&path).expect("write");
        assert_eq!(std::fs::read_to_string(&path).expect("read").trim(), std::process::id().to_string());
        remove_pid(&path);
        assert!(!path.exists());
        // An upgrade's new gale wrote its pid: the old one leaves the file.
        std::fs::write(&path, "4242\n").expect("write");
        remove_pid(&path);
        assert!(path.exists());
    }
}
