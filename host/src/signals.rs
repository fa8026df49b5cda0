//! Process signals: SIGTERM, SIGINT and SIGQUIT stop gale gracefully;
//! SIGHUP reloads the config; SIGUSR2 upgrades to the binary on disk
//! (nginx's signal; see `upgrade`). (nginx treats SIGTERM/SIGINT as "fast" and
//! SIGQUIT as "graceful"; a supervisor's stop is usually SIGTERM, and
//! dropping in-flight requests helps nobody, so gale drains on all three.
//! A second stop signal exits at once.)

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

/// What the signal watcher reports.
#[derive(Debug)]
pub struct Signals {
    /// Turns `true` on the first stop signal.
    pub shutdown: watch::Receiver<bool>,
    /// One message per SIGHUP.
    pub reload: mpsc::UnboundedReceiver<()>,
    /// Asks for a reload as SIGHUP does (`config_watch`).
    pub reload_sender: mpsc::UnboundedSender<()>,
    /// One message per SIGUSR2.
    pub upgrade: mpsc::UnboundedReceiver<()>,
}

/// Installs the handlers and spawns the watcher.
pub fn watch() -> std::io::Result<Signals> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (reload_tx, reload_rx) = mpsc::unbounded_channel();
    let reload_sender = reload_tx.clone();
    let (upgrade_tx, upgrade_rx) = mpsc::unbounded_channel();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    tokio::spawn(async move {
        let mut stops = 0;
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                _ = quit.recv() => "SIGQUIT",
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading the config");
                    let _ = reload_tx.send(());
                    continue;
                }
                _ = usr2.recv() => {
                    tracing::info!("SIGUSR2: upgrading to the binary on disk");
                    let _ = upgrade_tx.send(());
                    continue;
                }
            };
            stops += 1;
            if stops > 1 {
                tracing::warn!("{name} again: exiting now");
                std::process::exit(1);
            }
            tracing::info!("{name}: graceful shutdown");
            let _ = stop_tx.send(true);
        }
    });
    Ok(Signals { shutdown: stop_rx, reload: reload_rx, reload_sender, upgrade: upgrade_rx })
}

/// Sends SIGHUP to the gale whose pid is in `pid_file` (`gale reload`).
pub fn send_reload(pid_file: &std::path::Path) -> Result<i32, String> {
    let text =
        std::fs::read_to_string(pid_file).map_err(|e| format!("cannot read pid_file {}: {e}", pid_file.display()))?;
    let pid: i32 = text.trim().parse().map_err(|_| format!("{} does not hold a pid", pid_file.display()))?;
    if pid <= 1 {
        return Err(format!("{} holds an invalid pid {pid}", pid_file.display()));
    }
    let target = rustix::process::Pid::from_raw(pid).ok_or_else(|| format!("invalid pid {pid}"))?;
    rustix::process::kill_process(target, rustix::process::Signal::HUP)
        .map_err(|e| format!("cannot signal pid {pid}: {}", std::io::Error::from(e)))?;
    Ok(pid)
}
