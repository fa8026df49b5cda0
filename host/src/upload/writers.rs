//! The threads that hash and write uploaded file data.
//!
//! Hashing a large upload (md5 runs at a few hundred MiB/s) is the heaviest work gale does, and
//! it is background work: nobody waits on it byte by byte. It therefore runs on a small pool of
//! its own whose threads put themselves in Linux's `SCHED_IDLE` class, instead of on tokio's
//! blocking pool at the event loop's priority. Such a thread runs whenever a CPU has nothing else
//! to do, and the moment an event loop thread wakes up it is preempted (the scheduler always
//! prefers a normal thread that wakes over an idle-class one). So an upload gets every free cycle,
//! and requests never wait behind hashing; when the CPU is saturated with requests, uploads slow
//! to a trickle, which TCP backpressure carries back to their clients (at most two batches per
//! upload are in memory, see `store.rs`). Measured with four 100 MB uploads streaming on the
//! event loop's core: on tokio's blocking pool `GET /` p99 grew 19x; at nice 10 it grew 3.9x
//! (a niced thread still runs out its time slice before the loop gets the CPU back); in
//! `SCHED_IDLE` 1.2x, with the uploads streaming at the same rate.
//!
//! Creating and unlinking stored files runs here too (`cleanup.rs`, `store.rs`): an idle-class
//! thread can be preempted while it holds the store directory's lock, and an event loop that
//! then touched the directory would wait for it (a priority inversion). If the class cannot be set, the threads
//! fall back to nice 19; if the threads cannot be started, jobs go to tokio's blocking pool.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// Nice value of the writer threads where `SCHED_IDLE` is refused.
const FALLBACK_NICE: i32 = 19;

/// The pool, started on first use; `None` when no thread could be started.
static POOL: OnceLock<Option<Mutex<Sender<Job>>>> = OnceLock::new();

fn pool() -> Option<&'static Mutex<Sender<Job>>> {
    POOL.get_or_init(|| {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        let mut started = 0;
        for i in 0..threads {
            let rx = rx.clone();
            let spawned =
                std::thread::Builder::new().name(format!("gale-upload-{i}")).spawn(move || worker(&rx)).is_ok();
            started += usize::from(spawned);
        }
        (started > 0).then(|| Mutex::new(tx))
    })
    .as_ref()
}

fn worker(rx: &Mutex<Receiver<Job>>) {
    if !enter_idle_class()
        && let Err(e) = rustix::process::setpriority_process(None, FALLBACK_NICE)
    {
        tracing::debug!("upload writer thread keeps its priority: {e}");
    }
    loop {
        let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else { return };
        // A panicking job drops its result sender (the caller sees an error); the thread lives on.
        let _ = catch_unwind(AssertUnwindSafe(job));
    }
}

/// Whether gale may run on more than one CPU, so that two writer threads can work on one upload
/// at the same time (one hashing a batch while the other writes it). On one CPU the two would
/// only take turns and read the batch from memory twice.
pub(crate) fn parallel() -> bool {
    static PARALLEL: OnceLock<bool> = OnceLock::new();
    *PARALLEL.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
}

/// Runs `f` on a writer thread, without waiting for it.
pub(crate) fn spawn(f: impl FnOnce() + Send + 'static) {
    let job: Job = Box::new(f);
    let unsent = match pool() {
        Some(sender) => sender.lock().unwrap_or_else(PoisonError::into_inner).send(job).err().map(|e| e.0),
        None => Some(job),
    };
    if let Some(job) = unsent {
        drop(tokio::task::spawn_blocking(job));
    }
}

/// Starts `f` on a writer thread; its result arrives on the returned channel (closed without a
/// value if `f` panicked).
pub(crate) fn start<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> oneshot::Receiver<T> {
    let (tx, rx) = oneshot::channel();
    spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

/// Puts the calling thread in the `SCHED_IDLE` class; false when refused.
#[allow(unsafe_code)]
fn enter_idle_class() -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 names the calling thread; `param` is a valid, initialised sched_param that
    // outlives the call (SCHED_IDLE requires priority 0).
    unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_off_the_event_loop_and_survives_a_panic() {
        let here = std::thread::current().id();
        let there = start(|| std::thread::current().id()).await.expect("result");
        assert_ne!(here, there);
        let failed = start(|| -> u32 { panic!("boom") }).await;
        assert!(failed.is_err());
        assert_eq!(start(|| 7).await.expect("pool still works"), 7);
    }

    #[tokio::test]
    async fn writer_threads_run_in_the_idle_class() {
        // Field 41 of /proc/thread-self/stat is the scheduling policy; SCHED_IDLE is 5.
        fn policy() -> String {
            let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("stat");
            let after_name = &stat[stat.rfind(')').expect("comm") + 1..];
            after_name.split_whitespace().nth(38).expect("policy field").to_owned()
        }
        assert_eq!(start(policy).await.expect("result"), "5");
        // Only the writer threads: the caller keeps its class.
        assert_eq!(policy(), "0");
    }
}
