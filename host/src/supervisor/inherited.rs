//! Children handed over by a binary upgrade. The old gale keeps running its
//! children after the new one took the listeners; the new gale's supervisor
//! holds those slots as *inherited* (in rotation on the old child's port, no
//! process of its own yet) and replaces them one at a time, as a rolling
//! restart does, asking the old gale to stop each child just before it
//! starts its own on the port.
//!
//! The supervisor stays a leaf: the old gale is reached through the
//! [`Predecessor`] hook that `upgrade/` implements over the handover
//! connection.
//!
//! - old side: [`Supervisor::stop_child`] (drain its own requests, stop, answer)
//! - new side: [`Supervisor::take_over`] (replace the inherited slots in turn)

use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

use super::child::Control;
use super::roll::drain;
use super::{ChildState, DRAIN_POLL, Supervisor, SupervisorError};

/// One child the old gale runs, as the handover names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InheritedChild {
    pub upstream: String,
    pub index: usize,
    pub port: u16,
    /// Its process, when it was running (in rotation) at the handover.
    pub pid: Option<u32>,
}

/// The gale that still runs the inherited children.
pub trait Predecessor: Send + Sync + 'static {
    /// Asks it to stop child `index` of `upstream` (after its own requests to
    /// it drained); resolves once the process has exited, or with why not.
    fn stop(&self, upstream: &str, index: usize) -> BoxFuture<'static, Result<(), String>>;
    /// Resolves when the predecessor is gone: its remaining children died
    /// with it (parent-death signal).
    fn gone(&self) -> BoxFuture<'static, ()>;
    /// The slot no longer depends on the predecessor's child (replaced,
    /// started afresh, or stopped).
    fn released(&self, upstream: &str, index: usize);
}

/// What the new gale's supervisor starts from after an upgrade.
pub struct Handover {
    pub children: Vec<InheritedChild>,
    pub predecessor: std::sync::Arc<dyn Predecessor>,
}

impl Handover {
    /// The old gale's child for `upstream`[`index`], if it runs on `port`
    /// (a config that moved the port starts a fresh child).
    pub(super) fn find(&self, upstream: &str, index: usize, port: u16) -> Option<&InheritedChild> {
        self.children.iter().find(|c| c.upstream == upstream && c.index == index && c.port == port)
    }
}

impl Supervisor {
    /// Whether any slot still depends on a predecessor's child (inherited,
    /// or being stopped by the predecessor for its replacement).
    pub fn has_inherited(&self) -> bool {
        self.inherited.load(std::sync::atomic::Ordering::SeqCst) > 0
    }

    /// The old side of an upgrade: takes child `index` of `upstream` out of
    /// this gale's rotation, waits for this gale's requests to it (at most
    /// `stop_timeout`), then stops it for good (no restart). Returns the pid
    /// that was stopped.
    pub async fn stop_child(&self, upstream: &str, index: usize) -> Result<Option<u32>, SupervisorError> {
        let group = self.group(upstream)?;
        let child = group
            .children
            .get(index)
            .ok_or_else(|| SupervisorError::NoSuchChild { upstream: upstream.to_owned(), index })?;
        let timeout = group.spec.lock().unwrap_or_else(|e| e.into_inner()).stop_timeout;
        let pid = child.status.borrow().pid;
        child.slot.hold();
        tokio::time::sleep(DRAIN_POLL).await;
        let drained = drain(&child.slot, child.slot.in_flight(), timeout).await;
        tracing::info!("upgrade: {upstream}[{index}]: {drained}; stopping it for the new gale");
        let (done, wait) = oneshot::channel();
        if child.control.send(Control::Stop { done }).await.is_ok() {
            let _ = wait.await;
        }
        Ok(pid)
    }

    /// The new side of an upgrade: replaces every inherited child of every
    /// upstream, one at a time, as [`Supervisor::roll`] does. A replacement
    /// that fails its first start goes on with its usual retries; the
    /// take-over waits for it, and stops if it gives up (the old gale keeps
    /// the children not yet replaced; `gale restart UPSTREAM` finishes).
    pub async fn take_over(&self) -> Result<(), SupervisorError> {
        for group in &self.groups {
            let _one_at_a_time = group.rolling.lock().await;
            for (index, child) in group.children.iter().enumerate() {
                if child.status.borrow().state != ChildState::Inherited {
                    continue;
                }
                let upstream = &group.upstream;
                let mut say = |line: String| tracing::info!("upgrade: {line}");
                match self.replace_one(group, index, None, &mut say).await {
                    Ok(_) => {}
                    Err(SupervisorError::StartFailed { reason, .. }) => {
                        tracing::error!(
                            "upgrade: {upstream}[{index}]: the new child did not start ({reason}); retrying with \
                             the restart policy, the old gale keeps the children not yet replaced"
                        );
                        let mut status = child.status.clone();
                        let now = status
                            .wait_for(|s| matches!(s.state, ChildState::Running | ChildState::Failed))
                            .await
                            .map(|s| s.state)
                            .map_err(|_| SupervisorError::ShuttingDown)?;
                        if now == ChildState::Failed {
                            return Err(SupervisorError::StartFailed { upstream: upstream.clone(), index, reason });
                        }
                        say(format!("{upstream}[{index}]: the new child runs after retrying, in rotation"));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

/// How long the new gale waits for the old one to stop a child: its own
/// drain and stop (each at most `stop_timeout`), and some slack.
pub(super) fn stop_patience(stop_timeout: Duration) -> Duration {
    stop_timeout * 2 + Duration::from_secs(10)
}
