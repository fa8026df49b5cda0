//! `scripts/demo.sh`, run as a user runs it, on examples/tornado-site.toml adapted to this
//! machine (an OS-assigned listen port, free ports for its four Tornado children, its store and
//! pid file in a temporary folder; see `import::adapted_example`). `GALE_BIN` makes the script
//! run the debug binary without setting up or building (the suite has done both), and
//! `GALE_DEMO_CONFIG` points it at the adapted copy. Each part of the deployment the page links
//! to is checked through real HTTP: balancing over the four processes, a static file with the
//! cache rule, gzip, an upload through the form, the header-policy plugin.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gale_tests::{Request, Response, Whoami, http, multipart, paths};
use serde_json::Value;

/// gale starts four Tornado processes (each may take seconds on a busy machine) before it
/// prints its listening line.
const START: Duration = Duration::from_secs(60);

/// A running `scripts/demo.sh` (after its `exec`, the gale process itself); stopped with
/// SIGTERM, as Ctrl-C would, when dropped.
struct Demo {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    lines: Receiver<String>,
}

impl Demo {
    fn spawn(config: &Path) -> Demo {
        let mut command = Command::new("bash");
        command
            .arg(paths::repo_root().join("scripts/demo.sh"))
            .env("GALE_BIN", paths::gale_bin())
            .env("GALE_DEMO_CONFIG", config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = gale_tests::process::spawn(command).expect("spawn scripts/demo.sh");
        let (stdout, lines) = keep(child.stdout.take().expect("stdout"));
        let (stderr, _) = keep(child.stderr.take().expect("stderr"));
        Demo { child, stdout, stderr, lines }
    }

    /// Waits for the first line that starts with `prefix`; panics with the output when the
    /// script exits or `START` passes first.
    fn line_starting(&self, prefix: &str) -> String {
        let deadline = Instant::now() + START;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!("no `{prefix}...` line within {START:?}\n{}", self.output()),
                Err(RecvTimeoutError::Disconnected) => panic!("demo.sh ended before `{prefix}...`\n{}", self.output()),
            }
        }
    }

    fn output(&self) -> String {
        let text = |m: &Arc<Mutex<String>>| m.lock().unwrap_or_else(|e| e.into_inner()).clone();
        format!("stdout:\n{}\nstderr:\n{}", text(&self.stdout), text(&self.stderr))
    }

    /// Waits up to `timeout` for the script to exit.
    fn exit_within(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
            // SAFETY: kill(2) has no memory-safety preconditions; the pid is our unreaped child.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(pid, libc::SIGTERM)
            };
            if self.exit_within(Duration::from_secs(30)).is_none() {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

/// Reads `pipe` to its end in a thread, keeping the text and sending each line.
fn keep(pipe: impl Read + Send + 'static) -> (Arc<Mutex<String>>, Receiver<String>) {
    let text = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = channel();
    let kept = Arc::clone(&text);
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let mut t = kept.lock().unwrap_or_else(|e| e.into_inner());
            t.push_str(&line);
            t.push('\n');
            let _ = tx.send(line);
        }
    });
    (text, rx)
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body).read_to_end(&mut out).expect("a gzip body");
    out
}

/// The `base_port` of the adapted config: its children listen on base..base+4.
fn base_port(config: &str) -> u16 {
    let at = config.find("base_port = ").expect("base_port in the example") + "base_port = ".len();
    config[at..].split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse().ok()).expect("a port")
}

/// `<th>NAME</th><td>VALUE</td>`: one row of the upload handler's table.
fn row(name: &str, value: &str) -> String {
    format!("<th>{name}</th><td>{value}</td>")
}

#[test]
fn the_demo_serves_each_part_of_the_deployment_its_page_links_to() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = crate::import::adapted_example(dir.path());
    let config = dir.path().join("tornado-site.toml");
    std::fs::write(&config, &text).expect("write the config");
    let base = base_port(&text);
    let demo = Demo::spawn(&config);

    // The script prints where to go, and a link for each part.
    let open = demo.line_starting("Open http://");
    let url = open["Open ".len()..].split_whitespace().next().expect("a URL").trim_end_matches('/').to_owned();
    let addr: SocketAddr = url["http://".len()..].parse().unwrap_or_else(|e| panic!("{url}: {e}"));
    demo.line_starting("Rolling restart from another shell:");
    let printed = demo.output();
    for target in ["/static/app.css?v=1", "/html?n=5000", "/form", "/robots.txt"] {
        assert!(printed.contains(&format!("{url}{target} ")), "demo.sh does not print {target}\n{printed}");
    }
    let get = |target: &str| http::get(addr, target);

    // The page links to each part.
    let index = get("/");
    assert_eq!(index.status, 200, "{index}");
    let page = index.text();
    for link in ["\"/\"", "\"/static/app.css?v=1\"", "\"/html?n=5000\"", "\"/form\"", "\"/robots.txt\""] {
        assert!(page.contains(&format!("href={link}")), "the page does not link to {link}:\n{page}");
    }

    // Balancing: the four processes gale started on base..base+4 answer in turn.
    let mut seen = BTreeSet::new();
    for _ in 0..40 {
        let who: Whoami = get("/whoami").json();
        seen.insert(who.port);
        if seen.len() == 4 {
            break;
        }
    }
    assert_eq!(seen, (base..base + 4).collect(), "not balanced over the four children\n{}", demo.output());

    // Static files: gale serves them; a versioned URL is cached forever, a bare one is not.
    let css = std::fs::read(paths::repo_root().join("examples/site/static/app.css")).expect("app.css");
    let versioned = get("/static/app.css?v=1");
    assert_eq!((versioned.status, &versioned.body), (200, &css), "{versioned}");
    assert_eq!(versioned.header("cache-control"), Some("max-age=315360000"), "{versioned}");
    let expires = versioned.header("expires").expect("Expires on a versioned URL");
    let expires = httpdate::parse_http_date(expires).expect("an HTTP date");
    assert!(expires > std::time::SystemTime::now() + Duration::from_secs(300 * 24 * 3600 * 10), "{versioned}");
    let bare = get("/static/app.css");
    assert_eq!(bare.status, 200, "{bare}");
    assert_eq!((bare.header("cache-control"), bare.header("expires")), (None, None), "{bare}");

    // gzip: the page itself and the longer text the page links to, for a client that accepts it.
    for target in ["/", "/html?n=5000"] {
        let r = http::send(addr, &Request::get(target).header("Accept-Encoding", "gzip"));
        assert_eq!((r.status, r.header("content-encoding")), (200, Some("gzip")), "{target}: {r}");
        let plain = String::from_utf8(gunzip(&r.body)).expect("UTF-8");
        assert!(plain.contains("</html>"), "{target}: {plain}");
        assert_eq!(get(target).header("content-encoding"), None, "{target} gzipped without Accept-Encoding");
    }

    // The upload form, then an upload through it: gale stores the file and the handler shows
    // the fields gale passed, with the md5 of the bytes sent.
    let form = get("/form").text();
    for part in ["action=\"/upload\"", "enctype=\"multipart/form-data\"", "name=\"file\"", "name=\"description\""] {
        assert!(form.contains(part), "the form lacks {part}:\n{form}");
    }
    let data: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let md5 = multipart::md5_hex(&data);
    let body = multipart::body(&[
        multipart::file("file", "report.bin", "application/octet-stream", &data),
        multipart::text("description", b"quarterly numbers"),
        multipart::text("submit", b"Upload"),
    ]);
    let up = http::send(addr, &Request::post("/upload", body).header("Content-Type", &multipart::content_type()));
    assert_eq!(up.status, 200, "{up}\n{}", demo.output());
    let shown = up.text();
    let store = std::fs::canonicalize(dir.path().join("uploads")).expect("the store gale created");
    for want in [
        row("file.name", "report.bin"),
        row("file.content_type", "application/octet-stream"),
        format!("<th>file.path</th><td>{}/", store.display()),
        row("file.md5", &md5),
        row("file.size", &data.len().to_string()),
        row("description", "quarterly numbers"),
        "md5 matches".to_owned(),
    ] {
        assert!(shown.contains(&want), "the upload page lacks {want}:\n{shown}");
    }
    assert!(!shown.contains("DOES NOT match"), "{shown}");
    // The upload location takes only uploads: a GET never reaches Tornado's handler.
    let refused = get("/upload");
    assert!(refused.status >= 400 && !refused.text().contains("What gale passed"), "{refused}");

    // The header-policy plugin: a header on proxied answers, and /robots.txt denied before
    // Tornado sees it.
    assert_eq!(index.header("x-frame-options"), Some("SAMEORIGIN"), "{index}");
    let robots: Response = get("/robots.txt");
    assert_eq!(robots.status, 404, "{robots}");
    for port in base..base + 4 {
        let stats: Value = http::get(SocketAddr::from(([127, 0, 0, 1], port)), "/stats").json();
        assert!(stats["hits"].get("/robots.txt").is_none(), "tornado on {port} saw /robots.txt: {stats}");
    }
}

#[test]
fn a_broken_config_stops_the_demo_with_gale_s_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = crate::import::adapted_example(dir.path())
        .replace("keepalive_timeout = \"65s\"", "keepalive_timeout = \"sixty-five\"");
    let config = dir.path().join("tornado-site.toml");
    std::fs::write(&config, text).expect("write the config");
    let mut demo = Demo::spawn(&config);
    let status =
        demo.exit_within(Duration::from_secs(30)).unwrap_or_else(|| panic!("demo.sh hangs\n{}", demo.output()));
    assert!(!status.success(), "{}", demo.output());
    let out = demo.output();
    // gale's one line: FILE:LINE:COL: message.
    let prefix = format!("{}:", config.display());
    let line = out.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no FILE: error\n{out}"));
    let mut parts = line.splitn(3, ':');
    let numbers = [parts.next(), parts.next()].map(|n| n.and_then(|n| n.parse::<u32>().ok()));
    assert!(numbers.iter().all(Option::is_some), "not FILE:LINE:COL: {line}");
    assert!(line.contains("`sixty-five` is not a duration"), "{line}");
    assert!(!out.contains("Open http://"), "{out}");
}
