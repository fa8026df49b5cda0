//! Validating an upstream's `process = { ... }` section: the children gale
//! starts and supervises (what supervisord's `[program:x]` did in the reference deployment).

use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::diagnostics::{Collector, closest};
use super::raw::RawProcess;
use super::runtime::{ChildLog, Process, StopSignal, Template};
use super::validate::{duration, int_in, path_from};

/// Most children one upstream may have.
const MAX_COUNT: i64 = 1024;

/// Checks a `process` section; `None` after recording every error found.
pub(super) fn process(p: Spanned<RawProcess>, base: &Path, c: &mut Collector<'_>) -> Option<Process> {
    let p = p.into_inner();
    let mut ok = true;

    let mut command = Vec::new();
    if p.command.get_ref().is_empty() {
        c.error(
            Some(p.command.span()),
            "`command` is empty: give the program and its arguments, like [\"python3\", \"app.py\", \"--port={port}\"]",
        );
        ok = false;
    }
    for arg in p.command.get_ref() {
        match template(arg, c) {
            Some(t) => command.push(t),
            None => ok = false,
        }
    }
    if let Some(program) = p.command.get_ref().first()
        && program.get_ref().trim().is_empty()
    {
        c.error(Some(program.span()), "the program (`command[0]`) is empty");
        ok = false;
    }

    let count = int_in(p.count, 1, 1, MAX_COUNT, "count", c);
    let base_port = {
        let n = *p.base_port.get_ref();
        if !(1..=i64::from(u16::MAX)).contains(&n) {
            c.error(Some(p.base_port.span()), format!("base_port must be between 1 and 65535, not {n}"));
            None
        } else {
            Some(n)
        }
    };
    if let (Some(count), Some(base_port)) = (count, base_port)
        && base_port + count - 1 > i64::from(u16::MAX)
    {
        c.error(
            Some(p.base_port.span()),
            format!(
                "{count} children from base_port {base_port} would need ports up to {}; the last port is 65535",
                base_port + count - 1
            ),
        );
        ok = false;
    }

    let cwd = p.cwd.as_ref().map_or_else(|| base.to_path_buf(), |d| path_from(base, d.get_ref()));

    let mut env = Vec::new();
    for (key, value) in &p.env {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            c.error(Some(value.span()), format!("`{key}` is not a valid environment variable name"));
            ok = false;
            continue;
        }
        match template(value, c) {
            Some(t) => env.push((key.clone(), t)),
            None => ok = false,
        }
    }

    let stop_signal = match &p.stop_signal {
        None => Some(StopSignal::Term),
        Some(s) => stop_signal(s, c),
    };
    let stop_timeout = duration(p.stop_timeout, Duration::from_secs(10), c);
    let start_timeout = duration(p.start_timeout, Duration::from_secs(10), c);
    let start_retries = int_in(p.start_retries, 3, 0, 1000, "start_retries", c);
    let log = match p.log.as_ref().map(|l| (l, l.get_ref().as_str())) {
        None | Some((_, "stderr")) => Some(ChildLog::Stderr),
        Some((_, "stdout")) => Some(ChildLog::Stdout),
        Some((_, "off")) => Some(ChildLog::Off),
        Some((l, _)) => template(l, c).map(ChildLog::File),
    };

    if !ok {
        return None;
    }
    Some(Process {
        command,
        count: count? as usize,
        base_port: u16::try_from(base_port?).ok()?,
        cwd,
        env,
        stop_signal: stop_signal?,
        stop_timeout: stop_timeout?,
        start_timeout: start_timeout?,
        start_retries: start_retries? as u32,
        log: log?,
        config_dir: base.to_path_buf(),
    })
}

fn template(text: &Spanned<String>, c: &mut Collector<'_>) -> Option<Template> {
    match Template::parse(text.get_ref()) {
        Ok(t) => Some(t),
        Err(e) => {
            c.error(Some(text.span()), e);
            None
        }
    }
}

fn stop_signal(s: &Spanned<String>, c: &mut Collector<'_>) -> Option<StopSignal> {
    let text = s.get_ref().trim().to_ascii_uppercase();
    let bare = text.strip_prefix("SIG").unwrap_or(&text);
    if let Some((_, sig)) = StopSignal::ALL.iter().find(|(n, _)| *n == bare) {
        return Some(*sig);
    }
    let names: Vec<String> = StopSignal::ALL.iter().map(|(n, _)| (*n).to_owned()).collect();
    let hint = match closest(bare, &names) {
        Some(best) => format!("; did you mean `{best}`?"),
        None => format!("; use one of {}", names.join(", ")),
    };
    c.error(Some(s.span()), format!("unknown stop_signal `{}`{hint}", s.get_ref()));
    None
}
