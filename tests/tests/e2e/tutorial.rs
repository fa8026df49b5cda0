//! docs/plugin-authoring.md, executed: the tutorial's blocks run in order in a temporary folder
//! outside the repository, with the `gale` under test first on `PATH`, so the page cannot drift
//! from what gale does. The page's last section says how its comments drive this:
//!
//! - `<!-- file: PATH -->` then a block: the block is written to `PATH`;
//! - `<!-- replace in PATH: LINE -->` then a block: the line `LINE` of `PATH` becomes the block;
//! - a `sh` block runs in `bash -e` from the folder, and must exit 0, or N after `<!-- exit: N -->`;
//! - `<!-- output -->` then a block: each of its lines must be a line of the last `sh` block's
//!   output (stdout and stderr), both trimmed.
//!
//! `127.0.0.1:8080` becomes a port the system just assigned. Each `sh` block is its own process
//! group, killed when the block ends (a `gale run &` the block forgot to stop cannot outlive it),
//! and has ten minutes (the tutorial builds the SDK from cold: about a minute here).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gale_tests::paths::{gale_bin, repo_root};

const BLOCK_TIMEOUT: Duration = Duration::from_secs(600);

/// What the comment before a block asked for.
#[derive(Debug)]
enum Directive {
    File(String),
    Replace { path: String, line: String },
    Exit(i32),
    Output,
}

fn directive(line: &str) -> Option<Directive> {
    let inner = line.strip_prefix("<!-- ")?.strip_suffix(" -->")?;
    if inner == "output" {
        return Some(Directive::Output);
    }
    if let Some(path) = inner.strip_prefix("file: ") {
        return Some(Directive::File(path.to_owned()));
    }
    if let Some(code) = inner.strip_prefix("exit: ") {
        return Some(Directive::Exit(code.parse().expect("<!-- exit: N --> takes a number")));
    }
    let rest = inner.strip_prefix("replace in ")?;
    let (path, line) = rest.split_once(": ")?;
    Some(Directive::Replace { path: path.to_owned(), line: line.to_owned() })
}

/// The page as (directive, language, body) per fenced block, in order.
fn blocks(page: &str) -> Vec<(Option<Directive>, String, String)> {
    let mut out = Vec::new();
    let mut lines = page.lines();
    let mut pending = None;
    while let Some(line) = lines.next() {
        if let Some(d) = directive(line) {
            pending = Some(d);
            continue;
        }
        let Some(lang) = line.strip_prefix("```").filter(|l| !l.is_empty()) else { continue };
        let mut body = String::new();
        for l in lines.by_ref() {
            if l == "```" {
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        out.push((pending.take(), lang.to_owned(), body));
    }
    out
}

/// Runs `script` in `bash -e` in `dir`, its own process group, killed at the end; exit code and
/// output.
fn run_block(script: &str, dir: &Path, path_var: &str) -> (Option<i32>, String) {
    let log = dir.join(".block-output");
    let file = std::fs::File::create(&log).expect("output file");
    let mut command = Command::new("bash");
    command
        .args(["-e", "-c", script])
        .current_dir(dir)
        .env("PATH", path_var)
        .env_remove("CARGO_TARGET_DIR")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("dup"))
        .stderr(file)
        .process_group(0);
    let mut child = gale_tests::process::spawn(command).expect("bash runs");
    let pgid = child.id() as i32;
    let deadline = Instant::now() + BLOCK_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // SAFETY: kill(2) on the block's own process group: whatever it left running.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    let _ = child.wait();
    let mut output = String::new();
    std::fs::File::open(&log).expect("output").read_to_string(&mut output).expect("utf-8 output");
    let Some(status) = status else {
        panic!("this block ran past {BLOCK_TIMEOUT:?}:\n{script}\noutput:\n{output}");
    };
    (status.code(), output)
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[test]
fn the_plugin_authoring_tutorial_runs_as_written() {
    let page = std::fs::read_to_string(repo_root().join("docs").join("plugin-authoring.md")).expect("the tutorial");
    let outside = tempfile::tempdir().expect("tempdir");
    assert!(!outside.path().starts_with(repo_root()), "the tutorial must run outside the repository");
    let dir = outside.path();
    let bin_dir = gale_bin().parent().expect("gale's folder").to_owned();
    let path_var = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let address = format!("127.0.0.1:{}", free_port());

    let mut last_output = String::new();
    let (mut commands, mut outputs) = (0, 0);
    for (directive, lang, body) in blocks(&page) {
        let body = body.replace("127.0.0.1:8080", &address);
        match directive {
            Some(Directive::File(path)) => {
                let target = dir.join(&path);
                std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
                std::fs::write(&target, body).expect("write the file");
            }
            Some(Directive::Replace { path, line }) => {
                let target = dir.join(&path);
                let text = std::fs::read_to_string(&target).expect("the file to edit");
                let old = format!("{line}\n");
                assert_eq!(text.matches(&old).count(), 1, "{path}: the line {line:?} is not there once:\n{text}");
                std::fs::write(&target, text.replacen(&old, &body, 1)).expect("write the file");
            }
            Some(Directive::Output) => {
                outputs += 1;
                let seen: Vec<&str> = last_output.lines().map(str::trim).collect();
                for want in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    assert!(
                        seen.contains(&want),
                        "the page shows {want:?}, which the command did not print:\n{last_output}"
                    );
                }
            }
            exit if lang == "sh" => {
                let want = match exit {
                    Some(Directive::Exit(code)) => code,
                    _ => 0,
                };
                commands += 1;
                let (code, output) = run_block(&body, dir, &path_var);
                assert_eq!(code, Some(want), "this block exited {code:?}, the page expects {want}:\n{body}\n{output}");
                last_output = output;
            }
            Some(Directive::Exit(_)) => panic!("<!-- exit --> before a {lang} block, not sh"),
            None => {}
        }
    }
    // The page must not lose its commands or its shown output and still pass.
    assert!(commands >= 10 && outputs >= 8, "only {commands} commands and {outputs} outputs were checked");
}
