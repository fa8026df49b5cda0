//! The access log: one line per finished request, in nginx's `combined`
//! format or as JSON. Lines are buffered and flushed by a background task
//! (and at shutdown), so logging costs a formatted write into memory on the
//! request path, not a system call.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use time::macros::format_description;

use crate::config::{AccessLogFormat, LogTarget};

/// A buffered writer shared by every connection.
type Sink = Arc<Mutex<BufWriter<Box<dyn Write + Send>>>>;

/// Where finished requests are written.
#[derive(Clone)]
pub struct AccessLog {
    sink: Option<Sink>,
    format: AccessLogFormat,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").field("on", &self.sink.is_some()).field("format", &self.format).finish()
    }
}

/// What one log line says about a request.
#[derive(Debug, Clone)]
pub struct Entry {
    pub remote: SocketAddr,
    pub start: OffsetDateTime,
    pub method: String,
    pub target: String,
    pub version: http::Version,
    pub status: u16,
    pub bytes_sent: u64,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
    pub duration: Duration,
}

impl AccessLog {
    /// Opens the log target (creating parent directories of a file).
    pub fn open(target: &LogTarget, format: AccessLogFormat) -> std::io::Result<Self> {
        let writer: Option<Box<dyn Write + Send>> = match target {
            LogTarget::Off => None,
            LogTarget::Stdout => Some(Box::new(std::io::stdout())),
            LogTarget::Stderr => Some(Box::new(std::io::stderr())),
            LogTarget::File(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                Some(Box::new(OpenOptions::new().create(true).append(true).open(path)?))
            }
        };
        Ok(Self { sink: writer.map(|w| Arc::new(Mutex::new(BufWriter::with_capacity(64 * 1024, w)))), format })
    }

    /// Whether lines are written at all.
    pub fn enabled(&self) -> bool {
        self.sink.is_some()
    }

    /// Writes one line.
    pub fn write(&self, e: &Entry) {
        let Some(sink) = &self.sink else { return };
        let line = match self.format {
            AccessLogFormat::Combined => combined(e),
            AccessLogFormat::Json => json(e),
        };
        let mut w = sink.lock().unwrap_or_else(|p| p.into_inner());
        let _ = w.write_all(line.as_bytes());
    }

    /// Writes the line for an answer gale wrote before a request could be
    /// read in full (hyper's 400 and 431, the 408 and 414 of
    /// `framing::sniff`): what arrived of the head's first line, `-` for
    /// each part that could not be read (all three `-`: the request is
    /// logged as `"-"`, as nginx logs an empty one).
    pub fn write_refused(&self, remote: SocketAddr, status: u16, first_line: Option<&[u8]>) {
        let Some(sink) = &self.sink else { return };
        let (method, target, protocol) = first_line.map_or(("-", "-", "-"), split_request_line);
        let e = Entry {
            remote,
            start: OffsetDateTime::now_utc(),
            method: method.to_owned(),
            target: target.to_owned(),
            version: http::Version::HTTP_11,
            status,
            bytes_sent: 0,
            referer: None,
            user_agent: None,
            duration: Duration::ZERO,
        };
        let line = match self.format {
            AccessLogFormat::Combined => combined_with(&e, protocol),
            AccessLogFormat::Json => json_with(&e, protocol),
        };
        let mut w = sink.lock().unwrap_or_else(|p| p.into_inner());
        let _ = w.write_all(line.as_bytes());
    }

    /// Flushes buffered lines.
    pub fn flush(&self) {
        if let Some(sink) = &self.sink {
            let _ = sink.lock().unwrap_or_else(|p| p.into_inner()).flush();
        }
    }

    /// Flushes every `every` while this log is in use (the task ends once
    /// every clone is dropped, e.g. after a reload opened another log).
    pub fn spawn_flusher(&self, every: Duration) {
        let Some(sink) = &self.sink else { return };
        let weak = Arc::downgrade(sink);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(sink) = weak.upgrade() else { return };
                let _ = sink.lock().unwrap_or_else(|p| p.into_inner()).flush();
            }
        });
    }
}

fn version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    }
}

/// Method, target and protocol of a request line as far as it arrived (with
/// its LF if it ended): a part is known once the space after it has (the
/// protocol once the line ended); `-` otherwise, and for a line that is not
/// UTF-8.
fn split_request_line(line: &[u8]) -> (&str, &str, &str) {
    let text = std::str::from_utf8(line).unwrap_or_default();
    let ended = text.ends_with('\n');
    let mut parts = text.trim_end_matches(['\r', '\n']).split(' ');
    let method = parts.next().filter(|_| !text.is_empty());
    let target = parts.next();
    let after_target = parts.next();
    let protocol = after_target.filter(|p| p.starts_with("HTTP/") && ended && parts.next().is_none());
    (known(method, target.is_some()), known(target, after_target.is_some()), known(protocol, true))
}

/// `part` if it arrived whole (`followed` by what comes after it), else `-`.
fn known(part: Option<&str>, followed: bool) -> &str {
    part.filter(|p| followed && !p.is_empty()).unwrap_or("-")
}

/// nginx `combined`: `$remote_addr - $remote_user [$time_local] "$request"
/// $status $body_bytes_sent "$http_referer" "$http_user_agent"`.
fn combined(e: &Entry) -> String {
    combined_with(e, version(e.version))
}

fn combined_with(e: &Entry, protocol: &str) -> String {
    let fmt = format_description!("[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000");
    let time = e.start.format(&fmt).unwrap_or_default();
    let request = if e.method == "-" && e.target == "-" && protocol == "-" {
        "-".to_owned()
    } else {
        format!("{} {} {}", escape(&e.method), escape(&e.target), protocol)
    };
    format!(
        "{} - - [{}] \"{}\" {} {} \"{}\" \"{}\"\n",
        e.remote.ip(),
        time,
        request,
        e.status,
        e.bytes_sent,
        escape(e.referer.as_deref().unwrap_or("-")),
        escape(e.user_agent.as_deref().unwrap_or("-")),
    )
}

/// nginx escapes `"`, `\` and non-printable bytes in logged strings.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' | '\\' => out.push_str(&format!("\\x{:02X}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn json(e: &Entry) -> String {
    json_with(e, version(e.version))
}

fn json_with(e: &Entry, protocol: &str) -> String {
    let q = |s: &str| {
        let mut o = String::from('"');
        for c in s.chars() {
            match c {
                '"' => o.push_str("\\\""),
                '\\' => o.push_str("\\\\"),
                c if c.is_control() => o.push_str(&format!("\\u{:04x}", c as u32)),
                c => o.push(c),
            }
        }
        o.push('"');
        o
    };
    let time = e.start.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    format!(
        "{{\"time\":{},\"remote_addr\":{},\"method\":{},\"uri\":{},\"protocol\":{},\"status\":{},\"bytes_sent\":{},\"referer\":{},\"user_agent\":{},\"duration_ms\":{:.3}}}\n",
        q(&time),
        q(&e.remote.ip().to_string()),
        q(&e.method),
        q(&e.target),
        q(protocol),
        e.status,
        e.bytes_sent,
        e.referer.as_deref().map_or("null".to_owned(), q),
        e.user_agent.as_deref().map_or("null".to_owned(), q),
        e.duration.as_secs_f64() * 1000.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            remote: "10.1.2.3:5555".parse().unwrap(),
            start: time::macros::datetime!(2026-11-29 19:35:04 UTC),
            method: "GET".into(),
            target: "/a?b=\"c\"".into(),
            version: http::Version::HTTP_11,
            status: 200,
            bytes_sent: 612,
            referer: None,
            user_agent: Some("curl/8.0".into()),
            duration: Duration::from_millis(3),
        }
    }

    #[test]
    fn combined_matches_nginx() {
        assert_eq!(
            combined(&entry()),
            "10.1.2.3 - - [29/Nov/2026:19:35:04 +0000] \"GET /a?b=\\x22c\\x22 HTTP/1.1\" 200 612 \"-\" \"curl/8.0\"\n"
        );
    }

    #[test]
    fn refused_requests_log_what_arrived_of_the_line() {
        assert_eq!(split_request_line(b"GET /x HTTP/1.1\r\n"), ("GET", "/x", "HTTP/1.1"));
        assert_eq!(split_request_line(b"GET /very-long-cut"), ("GET", "-", "-"));
        assert_eq!(split_request_line(b"GET /x HTTP/1."), ("GET", "/x", "-"));
        assert_eq!(split_request_line(b"\x16\x03\x01\xff"), ("-", "-", "-"));
        assert_eq!(split_request_line(b""), ("-", "-", "-"));
        let mut e = entry();
        e.method = "-".into();
        e.target = "-".into();
        e.status = 400;
        assert!(combined_with(&e, "-").contains("] \"-\" 400 "), "{}", combined_with(&e, "-"));
        assert!(json_with(&e, "-").contains("\"method\":\"-\",\"uri\":\"-\",\"protocol\":\"-\""));
    }

    #[test]
    fn json_is_one_object_per_line() {
        let line = json(&entry());
        assert!(line.starts_with("{\"time\":\"2026-11-29T19:35:04Z\""), "{line}");
        assert!(line.contains("\"uri\":\"/a?b=\\\"c\\\"\""), "{line}");
        assert!(line.contains("\"referer\":null"));
        assert!(line.ends_with("}\n"));
    }
}
