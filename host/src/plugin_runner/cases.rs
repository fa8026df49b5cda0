//! The cases file of `gale plugins test`: requests (and optional backend
//! responses) with what the plugin should decide. The format is documented
//! in docs/plugins.md, "Running a plugin locally".

use std::collections::BTreeMap;
use std::ops::Range;

use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use toml::Spanned;

use super::request::{self, parse_request};
use super::worlds::{self, FilePart, StaticFile, UploadAnswers};
use super::{Decision, Outcome, Request, ResponseHead, render_decision, render_response};
use crate::plugin::{PluginError, WorldKind};

/// The whole file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    /// The plugin's config for every case (an attachment's `config`).
    #[serde(default)]
    config: toml::Table,
    #[serde(default)]
    case: Vec<Spanned<RawCase>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    request: Option<Spanned<String>>,
    headers: Option<Spanned<BTreeMap<String, Values>>>,
    remote: Option<Spanned<String>>,
    config: Option<toml::Table>,
    response: Option<RawResponse>,
    /// A cache policy's file.
    file: Option<RawStaticFile>,
    /// An upload-fields policy's parts.
    #[serde(default)]
    text_fields: Vec<String>,
    #[serde(default)]
    files: Vec<RawFilePart>,
    #[serde(default)]
    expect: RawExpect,
    expect_response: Option<RawExpectResponse>,
}

/// One value, or several for a repeated header.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Values {
    One(String),
    Many(Vec<String>),
}

impl Values {
    fn list(&self) -> Vec<&str> {
        match self {
            Self::One(v) => vec![v.as_str()],
            Self::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStaticFile {
    size: Option<u64>,
    mtime: Option<u64>,
    content_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilePart {
    field: String,
    filename: String,
    #[serde(default)]
    content_type: String,
    #[serde(default)]
    size: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResponse {
    status: Spanned<u16>,
    headers: Option<Spanned<BTreeMap<String, Values>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    decision: Option<Spanned<String>>,
    status: Option<u16>,
    #[serde(default)]
    headers: BTreeMap<String, Values>,
    #[serde(default)]
    absent: Vec<String>,
    body: Option<String>,
    error: Option<Spanned<String>>,
    /// An upload-fields policy's decision per text field.
    #[serde(default)]
    text: BTreeMap<String, Spanned<String>>,
    /// The rewritten form's fields for all the files, in order.
    fields: Option<Vec<(String, String)>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpectResponse {
    status: Option<u16>,
    #[serde(default)]
    headers: BTreeMap<String, Values>,
    #[serde(default)]
    absent: Vec<String>,
}

/// A cases file, checked: every request, header and status is valid.
#[derive(Debug)]
pub struct Cases {
    pub cases: Vec<Case>,
}

/// One case.
#[derive(Debug)]
pub struct Case {
    pub name: String,
    /// `FILE:LINE` of its `[[case]]`.
    pub at: String,
    pub config: toml::Table,
    /// For a header or cache policy.
    pub request: Option<Request>,
    pub response: Option<ResponseHead>,
    /// For a cache policy (default: [`StaticFile::default`]).
    pub file: Option<StaticFile>,
    /// For an upload-fields policy.
    pub text_fields: Vec<String>,
    pub files: Vec<FilePart>,
    expect: RawExpect,
    expect_response: Option<RawExpectResponse>,
}

/// The error kinds a case may expect (`PluginError::kind` of call errors).
const ERROR_KINDS: &[&str] = &["trap", "timeout", "memory_limit", "invalid_output", "busy", "quarantined"];

impl Cases {
    /// Parses the cases file `file` (its name is used in errors only).
    /// Errors are `FILE:LINE:COL: message`, like `gale check`'s.
    pub fn parse(file: &str, text: &str) -> Result<Self, String> {
        let at = |span: Option<Range<usize>>, message: &str| {
            let (line, col) = line_col(text, span.map_or(0, |s| s.start));
            format!("{file}:{line}:{col}: {}", message.trim_end())
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| at(e.span(), e.message()))?;
        if raw.case.is_empty() {
            return Err(at(None, "no cases: add at least one [[case]] with a name and a request"));
        }
        let mut cases = Vec::with_capacity(raw.case.len());
        for spanned in raw.case {
            let span = spanned.span();
            let c = spanned.into_inner();
            let headers = header_map(c.headers.as_ref()).map_err(|(span, e)| at(span, &e))?;
            let remote = match &c.remote {
                Some(r) => r.get_ref().parse().map_err(|_| {
                    at(
                        Some(r.span()),
                        &format!("remote {:?}: write it as IP:PORT, e.g. \"192.0.2.7:4000\"", r.get_ref()),
                    )
                })?,
                None => std::net::SocketAddr::from(([127, 0, 0, 1], 40000)),
            };
            let request = match &c.request {
                Some(r) => Some(parse_request(r.get_ref(), headers, remote).map_err(|e| at(Some(r.span()), &e))?),
                None => None,
            };
            let response = match &c.response {
                Some(r) => Some(ResponseHead {
                    status: StatusCode::from_u16(*r.status.get_ref())
                        .map_err(|_| at(Some(r.status.span()), "status: give a number from 100 to 999"))?,
                    headers: header_map(r.headers.as_ref()).map_err(|(span, e)| at(span, &e))?,
                }),
                None => None,
            };
            if let Some(d) = &c.expect.decision
                && !matches!(d.get_ref().as_str(), "continue" | "respond")
            {
                return Err(at(
                    Some(d.span()),
                    &format!("decision {:?}: expected \"continue\" or \"respond\"", d.get_ref()),
                ));
            }
            if let Some(e) = &c.expect.error
                && !ERROR_KINDS.contains(&e.get_ref().as_str())
            {
                let message = format!("error {:?}: expected one of {}", e.get_ref(), ERROR_KINDS.join(", "));
                return Err(at(Some(e.span()), &message));
            }
            for (field, d) in &c.expect.text {
                if !matches!(d.get_ref().as_str(), "pass" | "drop") {
                    let message = format!("text {field:?} = {:?}: expected \"pass\" or \"drop\"", d.get_ref());
                    return Err(at(Some(d.span()), &message));
                }
            }
            let (line, _) = line_col(text, span.start);
            let defaults = StaticFile::default();
            cases.push(Case {
                name: c.name,
                at: format!("{file}:{line}"),
                config: c.config.unwrap_or_else(|| raw.config.clone()),
                request,
                response,
                file: c.file.map(|f| StaticFile {
                    size: f.size.unwrap_or(defaults.size),
                    mtime: f.mtime.unwrap_or(defaults.mtime),
                    content_type: f.content_type.unwrap_or(defaults.content_type),
                }),
                text_fields: c.text_fields,
                files: c
                    .files
                    .into_iter()
                    .map(|f| FilePart {
                        field: f.field,
                        filename: f.filename,
                        content_type: f.content_type,
                        size: f.size,
                    })
                    .collect(),
                expect: c.expect,
                expect_response: c.expect_response,
            });
        }
        Ok(Self { cases })
    }
}

/// A `headers` table as a map; an error carries the table's span.
fn header_map(
    headers: Option<&Spanned<BTreeMap<String, Values>>>,
) -> Result<HeaderMap, (Option<Range<usize>>, String)> {
    let mut map = HeaderMap::new();
    let Some(headers) = headers else { return Ok(map) };
    for (name, values) in headers.get_ref() {
        for value in values.list() {
            let (n, v) =
                request::header(name, value).map_err(|e| (Some(headers.span()), format!("header {name:?}: {e}")))?;
            map.append(n, v);
        }
    }
    Ok(map)
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
}

/// How a case went: the differences from what it expected (none: it passed).
#[derive(Debug)]
pub struct CaseOutcome {
    pub differences: Vec<String>,
}

impl Case {
    /// Whether the case is written for a plugin of world `kind`: an error
    /// (for `FILE:LINE: ...`) names what is missing or out of place.
    pub fn fits(&self, kind: WorldKind) -> Result<(), String> {
        let world = kind.name();
        let upload = !self.text_fields.is_empty() || !self.files.is_empty();
        let e = &self.expect;
        let upload_expect = !e.text.is_empty() || e.fields.is_some();
        let header_only = self.response.is_some()
            || self.expect_response.is_some()
            || e.decision.is_some()
            || e.status.is_some()
            || e.body.is_some();
        let misplaced = match kind {
            WorldKind::Header if self.request.is_none() => Some("needs `request`"),
            WorldKind::Header if self.file.is_some() => Some("`file` is for cache-policy plugins"),
            WorldKind::Cache if self.request.is_none() => Some("needs `request` (the file's URL path)"),
            WorldKind::Cache if header_only => {
                Some("`response`, `expect_response` and expect's `decision`, `status`, `body` are for header policies")
            }
            WorldKind::UploadFields if !upload => Some("needs `text_fields` or `files` (the parts of an upload)"),
            WorldKind::UploadFields if self.request.is_some() || self.file.is_some() || header_only => {
                Some("an upload-fields case gives `text_fields`, `files` and expects `text`, `fields` or `error`")
            }
            WorldKind::Header | WorldKind::Cache if upload || upload_expect => {
                Some("`text_fields`, `files` and expect's `text`, `fields` are for upload-fields plugins")
            }
            _ => None,
        };
        match misplaced {
            Some(what) => Err(format!("{}: case {:?}: the plugin's world is {world}: {what}", self.at, self.name)),
            None => Ok(()),
        }
    }

    /// Compares a cache policy's caching headers with what the case expects.
    pub fn check_cache(&self, result: &Result<HeaderMap, PluginError>) -> CaseOutcome {
        let mut diff = Vec::new();
        match (result, &self.expect.error) {
            (Err(err), Some(kind)) if err.kind() == kind.get_ref() => {}
            (Err(err), _) => diff.push(format!("decide failed: {}", super::one_line(&err.to_string()))),
            (Ok(got), Some(kind)) => diff.push(format!(
                "expected decide to fail with {}, got:\n{}",
                kind.get_ref(),
                indent(&worlds::render_cache_headers(got))
            )),
            (Ok(got), None) => {
                compare_headers("caching header", &self.expect.headers, &self.expect.absent, got, &mut diff);
                if !diff.is_empty() {
                    diff.push(format!("decide answered:\n{}", indent(&worlds::render_cache_headers(got))));
                }
            }
        }
        CaseOutcome { differences: diff }
    }

    /// Compares an upload-fields policy's answers with what the case expects.
    pub fn check_upload(&self, answers: &UploadAnswers) -> CaseOutcome {
        let mut diff = Vec::new();
        let e = &self.expect;
        match (answers.error(), &e.error) {
            (Some(err), Some(kind)) if err.kind() == kind.get_ref() => return CaseOutcome { differences: diff },
            (Some(err), _) => diff.push(format!("a hook failed: {}", super::one_line(&err.to_string()))),
            (None, Some(kind)) => diff.push(format!("expected a hook to fail with {}, none did", kind.get_ref())),
            (None, None) => {}
        }
        for (name, want) in &e.text {
            let got = answers.text.iter().find(|(n, _)| n == name);
            match got {
                Some((_, Ok(d))) if worlds::text_word(*d) == want.get_ref() => {}
                Some((_, Ok(d))) => {
                    diff.push(format!("text {name:?}: expected {}, got {}", want.get_ref(), worlds::text_word(*d)));
                }
                Some((_, Err(_))) => {}
                None => diff.push(format!("text {name:?}: not among the case's text_fields")),
            }
        }
        if let Some(want) = &e.fields {
            let got: Vec<(String, String)> =
                answers.files.iter().filter_map(|(_, r)| r.as_ref().ok()).flatten().map(worlds::field_pair).collect();
            if &got != want {
                diff.push(format!("fields: expected {want:?}, got {got:?}"));
            }
        }
        if !diff.is_empty() {
            diff.push(format!("the policy answered:\n{}", indent(&worlds::render_upload(answers))));
        }
        CaseOutcome { differences: diff }
    }

    /// Compares what a header policy's run produced with what the case expects.
    pub fn check(&self, outcome: &Outcome) -> CaseOutcome {
        let mut diff = Vec::new();
        let e = &self.expect;
        match (&outcome.request, &e.error) {
            (Err(err), Some(kind)) if err.kind() == kind.get_ref() => {}
            (Err(err), _) => diff.push(format!("on-request failed: {}", super::one_line(&err.to_string()))),
            (Ok(d), Some(kind)) => {
                diff.push(format!(
                    "expected on-request to fail with {}, got:\n{}",
                    kind.get_ref(),
                    indent(&render_decision(d))
                ));
            }
            (Ok(d), None) => self.check_decision(d, &mut diff),
        }
        if let Some(want) = &self.expect_response {
            match &outcome.response {
                None => diff.push(
                    "expect_response: no response reached on-response (give `response` or a local answer)".into(),
                ),
                Some(Err(err)) => diff.push(format!("on-response failed: {}", super::one_line(&err.to_string()))),
                Some(Ok(got)) => {
                    if let Some(status) = want.status
                        && status != got.status.as_u16()
                    {
                        diff.push(format!("response status: expected {status}, got {}", got.status.as_u16()));
                    }
                    compare_headers("response header", &want.headers, &want.absent, &got.headers, &mut diff);
                    if !diff.is_empty() {
                        diff.push(format!("the response after on-response was:\n{}", indent(&render_response(got))));
                    }
                }
            }
        } else if let Some(Err(err)) = &outcome.response {
            diff.push(format!("on-response failed: {}", super::one_line(&err.to_string())));
        }
        diff.extend(outcome.undeclared.iter().map(ToString::to_string));
        CaseOutcome { differences: diff }
    }

    fn check_decision(&self, d: &Decision, diff: &mut Vec<String>) {
        let e = &self.expect;
        let before = diff.len();
        let (kind, headers) = match d {
            Decision::Continue { headers, .. } => ("continue", headers),
            Decision::Respond { headers, .. } => ("respond", headers),
        };
        let wanted_kind = e.decision.as_ref().map(|d| d.get_ref().as_str()).or(e.status.map(|_| "respond"));
        if let Some(want) = wanted_kind
            && want != kind
        {
            diff.push(format!("decision: expected {want}, got {kind}"));
        }
        if let Decision::Respond { status, body, .. } = d {
            if let Some(want) = e.status
                && want != status.as_u16()
            {
                diff.push(format!("status: expected {want}, got {}", status.as_u16()));
            }
            if let Some(want) = &e.body
                && want.as_bytes() != body.as_ref()
            {
                diff.push(format!("body: expected {want:?}, got {:?}", String::from_utf8_lossy(body)));
            }
        }
        let what = if kind == "continue" { "request header" } else { "local response header" };
        compare_headers(what, &e.headers, &e.absent, headers, diff);
        if diff.len() > before {
            diff.push(format!("on-request answered:\n{}", indent(&render_decision(d))));
        }
    }
}

fn compare_headers(
    what: &str,
    want: &BTreeMap<String, Values>,
    absent: &[String],
    got: &HeaderMap,
    diff: &mut Vec<String>,
) {
    let values = |name: &str| -> Vec<String> {
        got.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect()
    };
    for (name, want) in want {
        let have = values(name);
        let want = want.list();
        if have != want {
            let shown = if have.is_empty() { "(absent)".to_owned() } else { format!("{have:?}") };
            diff.push(format!("{what} {name}: expected {want:?}, got {shown}"));
        }
    }
    for name in absent {
        let have = values(name);
        if !have.is_empty() {
            diff.push(format!("{what} {name}: expected absent, got {have:?}"));
        }
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_file_parses() {
        let cases = Cases::parse(
            "c.toml",
            r#"
config = { a = 1 }
[[case]]
name = "one"
request = "GET /x"
headers = { user-agent = "bot", accept = ["a", "b"] }
[case.expect]
status = 403
[[case]]
name = "two"
request = "POST /"
config = {}
response = { status = 200, headers = { server = "t" } }
expect_response = { absent = ["server"] }
"#,
        )
        .expect("valid");
        assert_eq!(cases.cases.len(), 2);
        assert_eq!(cases.cases[0].at, "c.toml:3");
        assert_eq!(cases.cases[0].request.as_ref().expect("a request").headers.get_all("accept").iter().count(), 2);
        assert_eq!(cases.cases[0].config.get("a"), Some(&toml::Value::Integer(1)));
        assert!(cases.cases[1].config.is_empty());
    }

    #[test]
    fn errors_point_at_the_input() {
        let bad = [
            ("[[case]]\nname = \"x\"\nrequest = \"GET\"\n", "c.toml:3:11: request \"GET\": write it as METHOD /path"),
            ("[[case]]\nname = \"x\"\nreqest = \"GET /\"\n", "c.toml:3:1: unknown field `reqest`"),
            (
                "[[case]]\nname = \"x\"\nrequest = \"GET /\"\nheaders = { \"a b\" = \"1\" }\n",
                "c.toml:4:11: header \"a b\"",
            ),
            (
                "[[case]]\nname = \"x\"\nrequest = \"GET /\"\nexpect = { decision = \"deny\" }\n",
                "c.toml:4:23: decision \"deny\"",
            ),
            (
                "[[case]]\nname = \"x\"\nrequest = \"GET /\"\nexpect = { error = \"boom\" }\n",
                "c.toml:4:20: error \"boom\"",
            ),
            ("[[case]]\nname = \"x\"\nrequest = \"GET /\"\nremote = \"x\"\n", "c.toml:4:10: remote \"x\""),
            ("config = 1\n", "c.toml:1:10: invalid type"),
            ("", "c.toml:1:1: no cases"),
            ("[[case]\n", "c.toml:1:"),
        ];
        for (text, want) in bad {
            let err = Cases::parse("c.toml", text).expect_err(text);
            assert!(err.starts_with(want), "{text:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }
}
