//! The rolling restart: replace an upstream's children one at a time so the
//! pool never loses more than one backend and no request fails. For each
//! child: out of rotation, wait for its in-flight requests, stop it, start
//! the new one, wait until it accepts, back in rotation, next. Each step is
//! a progress line as it happens (`gale restart` prints them as they come).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::child::Control;
use super::{ChildState, ChildStatus, DRAIN_POLL, Group, Slot, Supervisor, SupervisorError};
use crate::config::Process;

/// One child a rolling restart replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaced {
    pub index: usize,
    /// The process that was stopped (none if the child was not running).
    pub old_pid: Option<u32>,
    /// The process that now accepts on the child's port.
    pub new_pid: u32,
}

impl Supervisor {
    /// Replaces the children of `upstream` one at a time, with processes
    /// from `spec` when given (a config reload; the count must not change)
    /// or from the current spec (`gale restart`). `progress` gets one line
    /// per step. A child whose replacement fails its first start stops the
    /// restart there: the children not yet replaced keep running, the
    /// failed one goes on with its usual retries. Failed children are
    /// started afresh.
    pub async fn roll(
        &self,
        upstream: &str,
        spec: Option<Process>,
        mut progress: impl FnMut(String) + Send,
    ) -> Result<Vec<Replaced>, SupervisorError> {
        let group = self.group(upstream)?;
        let _one_at_a_time = group.rolling.lock().await;
        let spec = spec.map(Arc::new);
        if let Some(new) = &spec
            && new.count != group.children.len()
        {
            return Err(SupervisorError::CountChanged {
                upstream: upstream.to_owned(),
                old: group.children.len(),
                new: new.count,
            });
        }
        let mut say = |line: String| {
            tracing::info!("rolling restart: {line}");
            progress(line);
        };
        say(format!("{upstream}: replacing {} one at a time", plural(group.children.len(), "child", "children")));

        let mut replaced = Vec::new();
        for index in 0..group.children.len() {
            let r = self.replace_one(group, index, spec.clone(), &mut say).await?;
            replaced.push(r);
        }
        if let Some(new) = spec {
            *group.spec.lock().unwrap_or_else(|e| e.into_inner()) = new;
        }
        say(format!("{upstream}: {} replaced", plural(replaced.len(), "child", "children")));
        Ok(replaced)
    }

    /// Replaces child `index` of `group`: out of rotation, its in-flight
    /// requests drained (at most `stop_timeout`), stopped (an inherited
    /// child by the gale that runs it), a new one started and ready, back in
    /// rotation.
    pub(super) async fn replace_one(
        &self,
        group: &Group,
        index: usize,
        spec: Option<Arc<Process>>,
        say: &mut (dyn FnMut(String) + Send),
    ) -> Result<Replaced, SupervisorError> {
        let upstream = &group.upstream;
        let child = &group.children[index];
        let drain_timeout = group.spec.lock().unwrap_or_else(|e| e.into_inner()).stop_timeout;
        let who = format!("{upstream}[{index}]");
        let old_pid = child.status.borrow().pid;
        child.slot.hold();
        // A request may have picked this backend just before it left
        // the rotation and not be counted yet: give it a moment to show up.
        tokio::time::sleep(DRAIN_POLL).await;
        match child.slot.in_flight() {
            0 => say(format!("{who}: out of rotation; no request in flight")),
            n => {
                let what = plural(n, "request", "requests");
                say(format!("{who}: out of rotation; waiting for {what} in flight (at most {drain_timeout:?})"));
                let drained = drain(&child.slot, n, drain_timeout).await;
                say(format!("{who}: {drained}"));
            }
        }
        let (done, wait) = oneshot::channel();
        let mut status = child.status.clone();
        status.borrow_and_update();
        if let Some(pid) = old_pid {
            say(format!("{who}: stopping pid {pid}"));
        }
        child.control.send(Control::Replace { spec, done }).await.map_err(|_| SupervisorError::ShuttingDown)?;
        // Each step of the child's replacement as it happens: the child
        // task reports its state, the restart narrates it. A watch keeps
        // only the latest state, so steps that came and went between two
        // looks are said when a later one shows they happened.
        tokio::pin!(wait);
        let mut steps = Steps::default();
        let outcome = loop {
            tokio::select! {
                r = &mut wait => break r,
                changed = status.changed() => {
                    if changed.is_err() {
                        break (&mut wait).await;
                    }
                    let now = status.borrow_and_update().clone();
                    for line in steps.seen(&now) {
                        say(format!("{who}: {line}"));
                    }
                }
            }
        };
        match outcome {
            Ok(Ok(new_pid)) => {
                let port = child.status.borrow().port;
                for line in steps.started(new_pid, port) {
                    say(format!("{who}: {line}"));
                }
                let old = old_pid.map_or_else(|| "not running".to_owned(), |p| format!("pid {p}"));
                say(format!("{who}: {old} replaced by pid {new_pid}, in rotation"));
                Ok(Replaced { index, old_pid, new_pid })
            }
            Ok(Err(reason)) => Err(SupervisorError::StartFailed { upstream: upstream.clone(), index, reason }),
            Err(_) => Err(SupervisorError::ShuttingDown),
        }
    }
}

/// The steps of one child's replacement said so far, so that each is said
/// once and in order, even when the state it shows was overwritten before
/// it was looked at.
#[derive(Debug, Default)]
struct Steps {
    starting: bool,
    started: Option<u32>,
}

impl Steps {
    /// The lines the child's state `now` adds.
    fn seen(&mut self, now: &ChildStatus) -> Vec<String> {
        match (now.state, now.pid) {
            (ChildState::Starting, Some(pid)) => self.started(pid, now.port),
            (ChildState::Starting, None) if !self.starting => {
                self.starting = true;
                vec!["starting a new process".to_owned()]
            }
            (ChildState::Backoff, _) => {
                // A new attempt says its own steps again.
                self.starting = false;
                self.started = None;
                vec![format!("start failed ({}); retrying", now.last_exit.as_deref().unwrap_or("no reason given"))]
            }
            _ => Vec::new(),
        }
    }

    /// The lines still unsaid once process `pid` is known to have started.
    fn started(&mut self, pid: u32, port: u16) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.starting {
            self.starting = true;
            lines.push("starting a new process".to_owned());
        }
        if self.started != Some(pid) {
            self.started = Some(pid);
            lines.push(format!("started pid {pid}; waiting until it is ready on port {port}"));
        }
        lines
    }
}

/// What draining a child's requests came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Drained {
    /// Requests in flight when it left the rotation.
    before: usize,
    /// Requests still in flight when the wait ended.
    left: usize,
    waited: Duration,
}

impl std::fmt::Display for Drained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.before, self.left) {
            (0, _) => f.write_str("no request in flight"),
            (n, 0) => write!(f, "waited {:.1?} for {} to finish", self.waited, plural(n, "request", "requests")),
            (_, n) => write!(
                f,
                "{} still in flight after {:.1?}: stopping it anyway",
                plural(n, "request", "requests"),
                self.waited
            ),
        }
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Waits until the child's backend has no request in flight (`before`
/// when the wait starts), at most `timeout`.
pub(super) async fn drain(slot: &Slot, before: usize, timeout: Duration) -> Drained {
    let start = tokio::time::Instant::now();
    let mut left = before;
    while left > 0 && start.elapsed() < timeout {
        tokio::time::sleep(DRAIN_POLL).await;
        left = slot.in_flight();
    }
    Drained { before, left, waited: start.elapsed() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_reports_read_well() {
        let d = |before, left, ms| Drained { before, left, waited: Duration::from_millis(ms) };
        assert_eq!(d(0, 0, 0).to_string(), "no request in flight");
        assert_eq!(d(1, 0, 1500).to_string(), "waited 1.5s for 1 request to finish");
        assert_eq!(d(3, 2, 10_000).to_string(), "2 requests still in flight after 10.0s: stopping it anyway");
    }
}
