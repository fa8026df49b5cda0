//! Supervised children across an upgrade, on the handover connection that
//! stays open after `go`: the old gale keeps its children and stops each one
//! when the new gale asks (`serve_successor`); the new gale reaches it
//! through [`OldGale`], the supervisor's [`Predecessor`].

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};

use super::handover::{self, Request};
use crate::config::Config;
use crate::supervisor::{Handover, InheritedChild, Predecessor, Supervisor};

/// The old side, once drained: says so, then answers the new gale's
/// requests until it says `done` or goes away; then this gale stops
/// whatever child is left and exits.
pub(super) async fn serve_successor(
    children: Arc<Supervisor>,
    mut lines: Lines<BufReader<OwnedReadHalf>>,
    mut write: OwnedWriteHalf,
    pid: u32,
) {
    if write.write_all(handover::DRAINED.as_bytes()).await.is_err() {
        tracing::error!("upgrade: the handover connection to gale pid {pid} broke; stopping the children");
        return;
    }
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) | Err(_) => {
                tracing::error!(
                    "upgrade: the new gale (pid {pid}) closed the handover connection before it replaced every \
                     child; stopping the ones left"
                );
                return;
            }
        };
        let answer = match Request::parse(&line) {
            Some(Request::Done) => {
                tracing::info!("upgrade: gale pid {pid} has replaced every child; exiting");
                return;
            }
            Some(Request::Stop { index, upstream }) => match children.stop_child(&upstream, index).await {
                Ok(stopped) => {
                    let what = stopped.map_or_else(|| "(not running)".to_owned(), |p| format!("pid {p}"));
                    tracing::info!("upgrade: {upstream}[{index}]: {what} stopped; gale pid {pid} replaces it");
                    format!("stopped {index} {upstream}\n")
                }
                Err(e) => format!("error {e}\n"),
            },
            None => {
                tracing::warn!("upgrade: unexpected request {line:?} from gale pid {pid}");
                format!("error unknown request {:?}\n", line.chars().take(80).collect::<String>())
            }
        };
        if write.write_all(answer.as_bytes()).await.is_err() {
            tracing::error!("upgrade: the handover connection to gale pid {pid} broke; stopping the children left");
            return;
        }
    }
}

/// The new side's view of the old gale while it still runs children this
/// gale has inherited.
#[derive(Clone)]
pub struct OldGale(Arc<Inner>);

struct Inner {
    pid: u32,
    /// The handover connection once `go` came: the writing half, and the
    /// old gale's answers as the reader task hands them on. One request at a time.
    conn: tokio::sync::Mutex<Option<(OwnedWriteHalf, mpsc::Receiver<String>)>>,
    gone: watch::Sender<bool>,
    /// The old gale has no client request left: its children serve only this gale.
    drained: watch::Sender<bool>,
    /// The slots still held by the old gale's children.
    remaining: Mutex<BTreeSet<(String, usize)>>,
    done: AtomicBool,
}

impl OldGale {
    pub(super) fn new(pid: u32) -> Self {
        Self(Arc::new(Inner {
            pid,
            conn: tokio::sync::Mutex::new(None),
            gone: watch::Sender::new(false),
            drained: watch::Sender::new(false),
            remaining: Mutex::new(BTreeSet::new()),
            done: AtomicBool::new(false),
        }))
    }

    /// What the supervisor starts from: the old gale's children that match
    /// `config` (same upstream, index and port). The others are "retired":
    /// the old gale stops them once this gale serves ([`Self::connect`]).
    pub(super) fn handover(&self, children: &[InheritedChild], config: &Config) -> Handover {
        let kept: Vec<InheritedChild> = children.iter().filter(|c| wanted(c, config)).cloned().collect();
        *self.0.remaining.lock().unwrap_or_else(|e| e.into_inner()) =
            kept.iter().map(|c| (c.upstream.clone(), c.index)).collect();
        Handover { children: kept, predecessor: Arc::new(self.clone()) }
    }

    /// The handover is over (`go` came, or not: `stream` is `None` when the
    /// old gale did not answer). With `go`, requests go over `stream` from now on.
    pub(super) async fn connect(&self, stream: Option<tokio::net::UnixStream>) {
        let Some(stream) = stream else {
            let _ = self.0.gone.send_replace(true);
            return;
        };
        let (read, write) = stream.into_split();
        let (tx, rx) = mpsc::channel(4);
        *self.0.conn.lock().await = Some((write, rx));
        let inner = self.0.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line == handover::DRAINED.trim_end() {
                    let _ = inner.drained.send_replace(true);
                } else if tx.send(line).await.is_err() {
                    break;
                }
            }
            let left = inner.remaining.lock().unwrap_or_else(|e| e.into_inner()).len();
            if left > 0 {
                tracing::error!(
                    "upgrade: the old gale (pid {}) is gone with {left} children not yet replaced; they died with it",
                    inner.pid
                );
            }
            let _ = inner.gone.send_replace(true);
        });
    }

    /// Once the old gale has drained its client requests (or is gone), the
    /// children of `retired` are stopped and the inherited ones replaced,
    /// one at a time.
    pub async fn roll(self, retired: Vec<InheritedChild>, children: Arc<Supervisor>) {
        let (mut drained, mut gone) = (self.0.drained.subscribe(), self.0.gone.subscribe());
        tracing::info!("upgrade: the old gale's children serve until it has drained; then each is replaced");
        tokio::select! {
            _ = drained.wait_for(|d| *d) => {}
            _ = gone.wait_for(|g| *g) => {}
        }
        for c in retired {
            tracing::info!("upgrade: {}[{}] is not in this config: the old gale stops it", c.upstream, c.index);
            if let Err(e) = request(&self.0, &Request::Stop { index: c.index, upstream: c.upstream.clone() }).await {
                tracing::error!("upgrade: the old gale could not stop {}[{}]: {e}", c.upstream, c.index);
            }
        }
        finish_if_done(&self.0).await;
        match children.take_over().await {
            Ok(()) => tracing::info!("upgrade: every supervised child is this gale's own"),
            Err(e) => tracing::error!(
                "upgrade: replacing the old gale's children stopped: {e}; the old gale keeps running the ones not \
                 yet replaced (`gale restart UPSTREAM` replaces them)"
            ),
        }
    }
}

/// Whether the new config runs a child in `c`'s slot, on the same port.
pub(super) fn wanted(c: &InheritedChild, config: &Config) -> bool {
    config
        .upstreams
        .iter()
        .find(|u| u.name == c.upstream)
        .and_then(|u| u.process.as_ref())
        .is_some_and(|p| c.index < p.count && p.port(c.index) == c.port)
}

/// One request and its answer.
async fn request(inner: &Inner, request: &Request) -> Result<(), String> {
    let mut conn = inner.conn.lock().await;
    let Some((write, answers)) = conn.as_mut() else {
        return Err("the old gale is not connected".to_owned());
    };
    let gone = || format!("the old gale (pid {}) is gone", inner.pid);
    write.write_all(request.line().as_bytes()).await.map_err(|_| gone())?;
    if *request == Request::Done {
        return Ok(());
    }
    let answer = answers.recv().await.ok_or_else(gone)?;
    handover::parse_answer(&answer)
}

/// Says `done` once no slot depends on the old gale's children.
async fn finish_if_done(inner: &Inner) {
    if !inner.remaining.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
        return;
    }
    if *inner.gone.borrow() || inner.conn.lock().await.is_none() || inner.done.swap(true, Ordering::SeqCst) {
        return;
    }
    tracing::info!("upgrade: every child replaced; the old gale (pid {}) exits", inner.pid);
    let _ = request(inner, &Request::Done).await;
}

impl Predecessor for OldGale {
    fn stop(&self, upstream: &str, index: usize) -> BoxFuture<'static, Result<(), String>> {
        let inner = self.0.clone();
        let r = Request::Stop { index, upstream: upstream.to_owned() };
        Box::pin(async move { request(&inner, &r).await })
    }

    fn gone(&self) -> BoxFuture<'static, ()> {
        let mut gone = self.0.gone.subscribe();
        Box::pin(async move {
            let _ = gone.wait_for(|g| *g).await;
        })
    }

    fn released(&self, upstream: &str, index: usize) {
        let empty = {
            let mut remaining = self.0.remaining.lock().unwrap_or_else(|e| e.into_inner());
            remaining.remove(&(upstream.to_owned(), index));
            remaining.is_empty()
        };
        if empty {
            let inner = self.0.clone();
            tokio::spawn(async move { finish_if_done(&inner).await });
        }
    }
}
