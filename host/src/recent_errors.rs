//! The last warning and error log lines, kept in memory for the status
//! page: a `tracing` layer beside the one that writes the error log. It
//! sees only what is logged at WARN or above (failed requests, failed
//! upstream attempts, children that exit, plugin failures), so the request
//! path pays nothing when all is well; and it keeps at most [`KEEP`] lines,
//! each cut at [`MAX_LINE`] bytes, so a flood of errors costs a fixed amount.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;

/// Lines kept.
pub const KEEP: usize = 50;
/// Longest line kept, in bytes (a longer one is cut, with `…`).
pub const MAX_LINE: usize = 1024;

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When it was logged, UTC to the second.
    pub at: String,
    /// `ERROR` or `WARN`.
    pub level: &'static str,
    /// The message and its fields, as the log has them.
    pub message: String,
}

fn ring() -> &'static Mutex<VecDeque<Entry>> {
    static R: OnceLock<Mutex<VecDeque<Entry>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// The lines kept, newest first.
pub fn recent() -> Vec<Entry> {
    ring().lock().unwrap_or_else(|e| e.into_inner()).iter().rev().cloned().collect()
}

/// Keeps one line.
pub fn push(level: &'static str, mut message: String) {
    if message.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    let at = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z"))
        .unwrap_or_default();
    let mut ring = ring().lock().unwrap_or_else(|e| e.into_inner());
    if ring.len() == KEEP {
        ring.pop_front();
    }
    ring.push_back(Entry { at, level, message });
}

/// The layer to add to the subscriber; it keeps WARN and ERROR events
/// whatever `log_level` says.
#[derive(Debug, Default)]
pub struct Layer;

impl<S: Subscriber> tracing_subscriber::Layer<S> for Layer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = match *event.metadata().level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARN",
            _ => return,
        };
        let mut line = Line(String::new());
        event.record(&mut line);
        push(level, line.0);
    }
}

/// The message first, then `key=value` for each other field (as the fmt
/// layer writes them).
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if self.0.len() > MAX_LINE {
            return;
        }
        if field.name() == "message" {
            let fields = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value:?}{fields}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn warnings_and_errors_are_kept_bounded_newest_first() {
        let subscriber = tracing_subscriber::registry().with(Layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("not kept");
            tracing::warn!(addr = %"127.0.0.1:1", "recent-errors-test attempt failed");
            tracing::error!("recent-errors-test {}", "x".repeat(3 * MAX_LINE));
        });
        let mine: Vec<Entry> = recent().into_iter().filter(|e| e.message.contains("recent-errors-test")).collect();
        assert_eq!(mine.len(), 2, "{mine:?}");
        assert_eq!(mine[0].level, "ERROR");
        assert!(mine[0].message.len() <= MAX_LINE + '…'.len_utf8(), "cut: {}", mine[0].message.len());
        assert_eq!(mine[1].level, "WARN");
        assert_eq!(mine[1].message, "recent-errors-test attempt failed addr=127.0.0.1:1");
        assert!(!recent().iter().any(|e| e.message.contains("not kept")));
        for i in 0..KEEP + 10 {
            push("WARN", format!("flood {i}"));
        }
        let all = recent();
        assert_eq!(all.len(), KEEP);
        assert_eq!(all[0].message, format!("flood {}", KEEP + 9));
    }
}
