//! Draining a child's pipes in the background.
//!
//! A child whose pipe nobody reads blocks once the pipe buffer fills, so every pipe gets a
//! reader thread. The text is kept (for panic messages and assertions) and, for stdout, also
//! sent line by line so a caller can wait for a readiness line.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread;

/// Everything a pipe produced so far, filled by a background thread.
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<String>>);

impl Captured {
    /// A snapshot of the text so far.
    pub(crate) fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn push(&self, line: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push_str(line);
    }
}

/// Starts a thread that reads `pipe` to its end, keeps the text, and sends each line (without
/// its newline) on the returned channel.
pub(crate) fn drain(pipe: impl Read + Send + 'static) -> (Captured, Receiver<String>) {
    let captured = Captured::default();
    let (tx, rx): (Sender<String>, Receiver<String>) = channel();
    let keep = captured.clone();
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    keep.push(&line);
                    // The receiver may be gone (nobody waits for lines any more): keep draining.
                    let _ = tx.send(line.trim_end_matches(['\r', '\n']).to_owned());
                }
            }
        }
    });
    (captured, rx)
}
