//! Signals that stop gale: SIGTERM, SIGINT and SIGQUIT all drain gracefully
//! (nginx treats SIGTERM/SIGINT as "fast" and SIGQUIT as "graceful"; a
//! supervisor's stop is usually SIGTERM, and dropping its in-flight
//! requests helps nobody, so gale drains on every one of them).

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Spawns the signal watcher; the receiver turns `true` on the first stop
/// signal. A second signal exits at once.
pub fn watch_signals() -> std::io::Result<watch::Receiver<bool>> {
    let (tx, rx) = watch::channel(false);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    tokio::spawn(async move {
        let mut count = 0;
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                _ = quit.recv() => "SIGQUIT",
            };
            count += 1;
            if count > 1 {
                tracing::warn!("{name} again: exiting now");
                std::process::exit(1);
            }
            tracing::info!("{name}: graceful shutdown");
            let _ = tx.send(true);
        }
    });
    Ok(rx)
}
