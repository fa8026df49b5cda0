//! Config errors that point at the input: `FILE:LINE:COL: message`, with a
//! hint when a key or value looks like a typo of a known one.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// What is wrong and, when we can tell, how to fix it.
    pub message: String,
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{path}: cannot read config: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but holds errors; every one found is listed.
    #[error("{}", render(file, diagnostics))]
    Invalid { file: String, diagnostics: Vec<Diagnostic> },
}

fn render(file: &str, diagnostics: &[Diagnostic]) -> String {
    diagnostics.iter().map(|d| format!("{file}:{}:{}: {}", d.line, d.col, d.message)).collect::<Vec<_>>().join("\n")
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.message)
    }
}

/// Collects diagnostics against one source text.
pub(crate) struct Collector<'a> {
    text: &'a str,
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl<'a> Collector<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self { text, diagnostics: Vec::new() }
    }

    /// The source text.
    pub(crate) fn text(&self) -> &'a str {
        self.text
    }

    /// The 1-based line and column of a span's start.
    pub(crate) fn position(&self, span: Range<usize>) -> (usize, usize) {
        line_col(self.text, span.start)
    }

    /// Records `message` at the start of `span` (the whole file when unknown).
    pub(crate) fn error(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        let (line, col) = line_col(self.text, span.map_or(0, |s| s.start));
        self.diagnostics.push(Diagnostic { line, col, message: message.into() });
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Rewrites a serde/toml message so it reads well on one line and, for an
/// unknown key or value, adds "did you mean `x`?" from the expected list.
pub(crate) fn explain_serde_message(message: &str) -> String {
    let message = message.trim().replace('\n', " ");
    for (marker, what) in [("unknown field `", "key"), ("unknown variant `", "value")] {
        if let Some(rest) = message.strip_prefix(marker) {
            let Some(end) = rest.find('`') else { break };
            let got = &rest[..end];
            let expected = expected_names(&rest[end + 1..]);
            let mut out = format!("unknown {what} `{got}`");
            match closest(got, &expected) {
                Some(best) => out.push_str(&format!("; did you mean `{best}`?")),
                None if !expected.is_empty() => {
                    out.push_str(&format!("; expected one of {}", quote_list(&expected)));
                }
                None => out.push_str("; this table takes no keys"),
            }
            return out;
        }
    }
    message
}

fn expected_names(rest: &str) -> Vec<String> {
    rest.split('`').enumerate().filter(|(i, _)| i % 2 == 1).map(|(_, s)| s.to_owned()).collect()
}

fn quote_list(names: &[String]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// The known name closest to `got`, if it is close enough to be a typo.
pub(crate) fn closest(got: &str, known: &[String]) -> Option<String> {
    known
        .iter()
        .map(|k| (strsim::normalized_damerau_levenshtein(got, k), k))
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let text = "a = 1\nbb = 2\n  c = 3";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, 16), (3, 4));
        assert_eq!(line_col(text, 999), (3, 8));
    }

    #[test]
    fn unknown_key_gets_a_hint() {
        let m = explain_serde_message(
            "unknown field `client_max_body_siz`, expected one of `keepalive_timeout`, `client_max_body_size`",
        );
        assert_eq!(m, "unknown key `client_max_body_siz`; did you mean `client_max_body_size`?");
    }

    #[test]
    fn unknown_value_without_near_match_lists_choices() {
        let m = explain_serde_message("unknown variant `fastest`, expected `round_robin` or `least_conn`");
        assert_eq!(m, "unknown value `fastest`; expected one of `round_robin`, `least_conn`");
        let m = explain_serde_message("unknown variant `round_robbin`, expected `round_robin` or `least_conn`");
        assert!(m.ends_with("did you mean `round_robin`?"), "{m}");
    }
}
