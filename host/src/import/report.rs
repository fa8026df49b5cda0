//! The report: every directive of the nginx configuration with its fate.

use std::fmt::Write as _;

use super::parse::Directive;

/// What became of one directive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Written into the gale config with the same meaning; the note says where.
    Translated(String),
    /// Written into the gale config, but gale behaves differently; the note says how.
    Changed(String),
    /// Nothing written: gale does this by default (or has no such knob); the note says what it does.
    Default(String),
    /// Nothing written: gale has no equivalent; the note names the nearest gale feature.
    Unsupported(String),
}

impl Fate {
    /// The fate's name in the report: `translated`, `changed`, `default`, `unsupported`.
    pub fn kind(&self) -> &'static str {
        match self {
            Fate::Translated(_) => "translated",
            Fate::Changed(_) => "changed",
            Fate::Default(_) => "default",
            Fate::Unsupported(_) => "unsupported",
        }
    }

    pub fn note(&self) -> &str {
        match self {
            Fate::Translated(n) | Fate::Changed(n) | Fate::Default(n) | Fate::Unsupported(n) => n,
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug)]
pub struct Entry {
    pub file: String,
    pub line: usize,
    pub col: usize,
    /// The directive as written, without its block (`listen 80`).
    pub directive: String,
    pub name: String,
    pub fate: Fate,
    seq: usize,
}

/// Every directive, in the order of the configuration.
#[derive(Debug, Default)]
pub struct Report {
    pub entries: Vec<Entry>,
}

impl Report {
    /// Records `d` with `fate`; returns its index (a later step may refine the fate).
    pub fn add(&mut self, d: &Directive, fate: Fate) -> usize {
        self.entries.push(Entry {
            file: d.file.to_string(),
            line: d.at.line,
            col: d.at.col,
            directive: d.text(),
            name: d.name.clone(),
            fate,
            seq: d.seq,
        });
        self.entries.len() - 1
    }

    /// Replaces the fate of entry `i` (a directive found to change behaviour
    /// only once its uses are known).
    pub fn refine(&mut self, i: usize, fate: Fate) {
        if let Some(e) = self.entries.get_mut(i) {
            e.fate = fate;
        }
    }

    /// Puts the entries in the order of the configuration (the translation
    /// visits some directives before the ones written above them).
    pub fn sort(&mut self) {
        self.entries.sort_by_key(|e| e.seq);
    }

    /// How many entries have each fate: translated, changed, default, unsupported.
    pub fn counts(&self) -> [usize; 4] {
        let mut c = [0; 4];
        for e in &self.entries {
            let i = match e.fate {
                Fate::Translated(_) => 0,
                Fate::Changed(_) => 1,
                Fate::Default(_) => 2,
                Fate::Unsupported(_) => 3,
            };
            c[i] += 1;
        }
        c
    }

    /// The text for stderr: one line per directive, then the totals.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            let label = match e.fate {
                Fate::Translated(_) => "translated",
                Fate::Changed(_) => "CHANGED",
                Fate::Default(_) => "default",
                Fate::Unsupported(_) => "UNSUPPORTED",
            };
            let _ = writeln!(out, "{}:{}: {label}: `{}`: {}", e.file, e.line, e.directive, e.fate.note());
        }
        let [t, c, d, u] = self.counts();
        let _ = writeln!(
            out,
            "gale import: {} directives: {t} translated, {c} translated with a change in behaviour, \
             {d} left to gale's defaults, {u} not supported",
            self.entries.len()
        );
        out
    }

    /// The JSON report (`--report FILE`).
    pub fn to_json(&self) -> serde_json::Value {
        let [t, c, d, u] = self.counts();
        let directives: Vec<serde_json::Value> = self
            .entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "file": e.file,
                    "line": e.line,
                    "column": e.col,
                    "name": e.name,
                    "directive": e.directive,
                    "fate": e.fate.kind(),
                    "note": e.fate.note(),
                })
            })
            .collect();
        serde_json::json!({
            "directives": directives,
            "summary": { "translated": t, "changed": c, "default": d, "unsupported": u },
        })
    }
}
