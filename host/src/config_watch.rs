//! `[global] watch_config`: reload when the config file's content changes,
//! without a signal. Made for Kubernetes, where a ConfigMap mounted as a
//! volume is updated by swapping a symlink (`..data`) to a new folder: the
//! path stays, its target changes, and no process is told.
//!
//! The file is read and hashed every interval (it is small; following the
//! path each time sees a swapped symlink, an editor's rename-over and an
//! in-place write alike, where inotify on one inode would miss the first
//! two). A change is reloaded once the content has been the same for two
//! reads in a row, so a file caught half-written is not loaded. A file that
//! cannot be read (gone during a swap) is skipped until it can. The reload
//! is the one SIGHUP starts: on an invalid config the old one stays, and the
//! next change is tried again.

use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// Watches `path` every `interval` and sends one message on `reload` per
/// settled change; stops when the receiver is gone.
pub fn spawn(path: PathBuf, interval: Duration, reload: mpsc::UnboundedSender<()>) {
    tokio::spawn(async move {
        let mut watch = Watch::new(digest(&path).await);
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if watch.saw(digest(&path).await) {
                tracing::info!(file = %path.display(), "config file changed: reloading");
                if reload.send(()).is_err() {
                    return;
                }
            }
        }
    });
}

type Digest32 = [u8; 32];

async fn digest(path: &PathBuf) -> Option<Digest32> {
    let bytes = tokio::fs::read(path).await.ok()?;
    Some(Sha256::digest(&bytes).into())
}

/// The change detector, apart from the clock and the file system.
#[derive(Debug)]
struct Watch {
    /// The content last loaded (or seen at start).
    loaded: Option<Digest32>,
    /// The content of the previous read.
    last: Option<Digest32>,
}

impl Watch {
    fn new(initial: Option<Digest32>) -> Self {
        Self { loaded: initial, last: initial }
    }

    /// Takes one read; `true` when a reload is due: the content differs
    /// from what was loaded and is the same as the previous read.
    fn saw(&mut self, now: Option<Digest32>) -> bool {
        let Some(now) = now else { return false };
        let settled = self.last == Some(now);
        self.last = Some(now);
        if settled && self.loaded != Some(now) {
            self.loaded = Some(now);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Digest32 = [1; 32];
    const B: Digest32 = [2; 32];
    const HALF: Digest32 = [3; 32];

    #[test]
    fn a_change_is_reloaded_once_it_has_settled() {
        let mut w = Watch::new(Some(A));
        assert!(!w.saw(Some(A)), "unchanged");
        assert!(!w.saw(Some(HALF)), "first sight of new content: wait a read");
        assert!(!w.saw(Some(B)), "still moving");
        assert!(w.saw(Some(B)), "settled: reload");
        assert!(!w.saw(Some(B)), "once");
    }

    #[test]
    fn an_unreadable_file_is_skipped_and_a_revert_is_not_a_change() {
        let mut w = Watch::new(Some(A));
        assert!(!w.saw(None), "gone during a swap");
        assert!(!w.saw(Some(A)));
        assert!(!w.saw(Some(A)), "back to what is loaded: nothing to do");
        let mut missing_at_start = Watch::new(None);
        assert!(!missing_at_start.saw(Some(B)));
        assert!(missing_at_start.saw(Some(B)), "appeared and settled");
    }
}
