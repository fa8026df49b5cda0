//! The cache rules: the JSON config gale hands to `configure`, validated into a [`Policy`], and
//! the first-match decision for a file.

use serde::Deserialize;

use gale_plugin::{CacheDecision, Expiry, FileInfo};

/// nginx's `expires max` in seconds (ten years), for a `Cache-Control` that carries more than
/// `max-age` (gale derives the bare `max-age` itself).
const MAX_SECONDS: u64 = 315_360_000;

/// `{ rules = [..] }`; without `rules`, the reference configuration's single rule.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    rules: Option<Vec<RawRule>>,
    memoize: Option<bool>,
}

/// One rule as written in gale's TOML.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    path_prefix: Option<OneOrMany>,
    extension: Option<OneOrMany>,
    content_type: Option<OneOrMany>,
    query: Option<bool>,
    max_age: Option<RawMaxAge>,
    #[serde(default)]
    immutable: bool,
    #[serde(default)]
    no_cache: bool,
    #[serde(default)]
    private: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawMaxAge {
    Seconds(u64),
    Text(String),
}

/// How long a response stays fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MaxAge {
    /// nginx's `expires max`.
    Max,
    Seconds(u64),
}

/// A content-type condition: `text/css` exactly, or `image/*` for a whole top-level type.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TypeMatch {
    Exact(String),
    /// The top-level type with its `/`, e.g. `image/`.
    Top(String),
}

/// A validated rule: conditions (all must hold) and what to send.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    path_prefixes: Vec<String>,
    /// Lower-case, without the dot.
    extensions: Vec<String>,
    content_types: Vec<TypeMatch>,
    /// `true`: only with a non-empty query string; `false`: only without one.
    query: Option<bool>,
    max_age: Option<MaxAge>,
    immutable: bool,
    no_cache: bool,
    private: bool,
}

/// The configured rules, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    rules: Vec<Rule>,
    /// Whether gale may remember the decisions (config `memoize`, default true).
    pub memoize: bool,
}

impl Policy {
    /// The reference configuration: `if ($query_string) { expires max; }`.
    pub fn reference() -> Self {
        Policy {
            rules: vec![Rule {
                path_prefixes: Vec::new(),
                extensions: Vec::new(),
                content_types: Vec::new(),
                query: Some(true),
                max_age: Some(MaxAge::Max),
                immutable: false,
                no_cache: false,
                private: false,
            }],
            memoize: true,
        }
    }

    /// Whether a rule reads the query string (`query = true | false`); the rest of a decision
    /// depends only on the file's path and content type.
    pub fn reads_query(&self) -> bool {
        self.rules.iter().any(|r| r.query.is_some())
    }

    /// The decision of the first rule that matches `file`; no headers when none does.
    pub fn decision(&self, file: &FileInfo) -> CacheDecision {
        self.rules
            .iter()
            .find(|r| r.matches(file))
            .map_or(CacheDecision { cache_control: None, expires: None }, Rule::decision)
    }
}

impl Rule {
    fn matches(&self, file: &FileInfo) -> bool {
        let prefix_ok =
            self.path_prefixes.is_empty() || self.path_prefixes.iter().any(|p| file.path.starts_with(p.as_str()));
        let ext_ok = self.extensions.is_empty() || {
            let ext = extension(&file.path);
            ext.is_some_and(|e| self.extensions.iter().any(|x| x.eq_ignore_ascii_case(e)))
        };
        let type_ok = self.content_types.is_empty() || {
            let media = media_type(&file.content_type);
            self.content_types.iter().any(|t| match t {
                TypeMatch::Exact(want) => media == *want,
                TypeMatch::Top(top) => media.starts_with(top.as_str()),
            })
        };
        // nginx's `$query_string` is empty both without `?` and with a bare `?`.
        let has_query = file.query.as_deref().is_some_and(|q| !q.is_empty());
        let query_ok = self.query.is_none_or(|want| want == has_query);
        prefix_ok && ext_ok && type_ok && query_ok
    }

    fn decision(&self) -> CacheDecision {
        let expires = match self.max_age {
            Some(MaxAge::Max) => Some(Expiry::Max),
            Some(MaxAge::Seconds(n)) => Some(Expiry::After(n)),
            None => None,
        };
        let mut directives: Vec<String> = Vec::new();
        if self.private {
            directives.push("private".into());
        }
        if self.no_cache {
            directives.push("no-cache".into());
        }
        let plain_max_age = !self.private && !self.immutable && !self.no_cache;
        let cache_control = if self.max_age.is_some() && plain_max_age {
            // Just `max-age`: gale derives it from the expiry, as nginx's `expires` does.
            None
        } else {
            match self.max_age {
                Some(MaxAge::Max) => directives.push(format!("max-age={MAX_SECONDS}")),
                Some(MaxAge::Seconds(n)) => directives.push(format!("max-age={n}")),
                None => {}
            }
            if self.immutable {
                directives.push("immutable".into());
            }
            (!directives.is_empty()).then(|| directives.join(", "))
        };
        CacheDecision { cache_control, expires }
    }
}

/// The extension of the last path segment, without the dot (`None` for `a`, `.hidden`, `a.`).
fn extension(path: &str) -> Option<&str> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let dot = name.rfind('.')?;
    (dot > 0 && dot + 1 < name.len()).then(|| &name[dot + 1..])
}

/// `type/subtype`, lower-case, without parameters.
fn media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// Validates the configuration. Errors name the rule and key.
pub fn validate(raw: RawConfig) -> Result<Policy, String> {
    let memoize = raw.memoize.unwrap_or(true);
    let Some(rules) = raw.rules else {
        return Ok(Policy { memoize, ..Policy::reference() });
    };
    let rules = rules
        .into_iter()
        .enumerate()
        .map(|(i, r)| rule(r).map_err(|e| format!("rules[{i}]: {e}")))
        .collect::<Result<_, _>>()?;
    Ok(Policy { rules, memoize })
}

fn rule(raw: RawRule) -> Result<Rule, String> {
    let path_prefixes = raw.path_prefix.map(OneOrMany::into_vec).unwrap_or_default();
    if let Some(p) = path_prefixes.iter().find(|p| !p.starts_with('/')) {
        return Err(format!("path_prefix {p:?} must start with `/`"));
    }
    let extensions = raw
        .extension
        .map(OneOrMany::into_vec)
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let e = e.strip_prefix('.').unwrap_or(&e).to_ascii_lowercase();
            if e.is_empty() || e.contains(['/', '.']) {
                return Err(format!("extension {e:?} must be a name like \"css\""));
            }
            Ok(e)
        })
        .collect::<Result<_, String>>()?;
    let content_types = raw
        .content_type
        .map(OneOrMany::into_vec)
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let lower = t.trim().to_ascii_lowercase();
            let (top, sub) = lower.split_once('/').ok_or_else(|| bad_type(&t))?;
            if top.is_empty() || sub.is_empty() || top == "*" || lower.contains([';', ' ']) {
                return Err(bad_type(&t));
            }
            Ok(if sub == "*" { TypeMatch::Top(format!("{top}/")) } else { TypeMatch::Exact(lower) })
        })
        .collect::<Result<_, String>>()?;
    let max_age = raw.max_age.map(max_age).transpose()?;
    if raw.immutable && max_age.is_none() {
        return Err("immutable needs a max_age".into());
    }
    if raw.no_cache && (max_age.is_some() || raw.immutable) {
        return Err("no_cache cannot be combined with max_age or immutable".into());
    }
    Ok(Rule {
        path_prefixes,
        extensions,
        content_types,
        query: raw.query,
        max_age,
        immutable: raw.immutable,
        no_cache: raw.no_cache,
        private: raw.private,
    })
}

fn bad_type(t: &str) -> String {
    format!("content_type {t:?} must be a media type like \"text/css\" or \"image/*\"")
}

/// Seconds, `"max"`, or nginx's time syntax: a number with a unit `s`, `m`, `h`, `d`, `w`, `M`
/// (30 days) or `y` (365 days), e.g. `"30d"`.
fn max_age(raw: RawMaxAge) -> Result<MaxAge, String> {
    let text = match raw {
        RawMaxAge::Seconds(n) => return Ok(MaxAge::Seconds(n)),
        RawMaxAge::Text(t) => t,
    };
    if text == "max" {
        return Ok(MaxAge::Max);
    }
    let bad = || format!("max_age {text:?} must be seconds, \"max\", or a time like \"30d\" (s, m, h, d, w, M, y)");
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "M" => 30 * 86_400,
        "y" => 365 * 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(scale).map(MaxAge::Seconds).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Policy, String> {
        gale_plugin::testing::configure_cache(json)
    }

    fn file(path: &str, query: Option<&str>, content_type: &str) -> FileInfo {
        let (path, query, content_type) = (path.into(), query.map(str::to_owned), content_type.into());
        FileInfo { path, query, size: 10, mtime: 1_700_000_000, content_type }
    }

    fn none() -> CacheDecision {
        CacheDecision { cache_control: None, expires: None }
    }

    fn cc(value: &str, expires: Option<Expiry>) -> CacheDecision {
        CacheDecision { cache_control: Some(value.into()), expires }
    }

    #[test]
    fn default_is_the_reference_rule() {
        for json in ["{}", r#"{"rules": null}"#] {
            let p = parse(json).expect("valid");
            assert_eq!(p, Policy::reference());
            let max = CacheDecision { cache_control: None, expires: Some(Expiry::Max) };
            assert_eq!(p.decision(&file("/static/app.css", Some("v=1"), "text/css")), max);
            assert_eq!(p.decision(&file("/static/app.css", None, "text/css")), none());
            assert_eq!(p.decision(&file("/static/app.css", Some(""), "text/css")), none());
        }
    }

    #[test]
    fn the_query_is_read_only_when_a_rule_tests_it() {
        assert!(Policy::reference().reads_query() && Policy::reference().memoize);
        let p = parse(r#"{"rules": [{"extension": "css", "max_age": 60}], "memoize": false}"#).expect("valid");
        assert!(!p.reads_query() && !p.memoize);
        let p = parse(r#"{"memoize": false}"#).expect("valid");
        assert!(p.reads_query() && !p.memoize);
    }

    #[test]
    fn empty_rules_send_nothing() {
        let p = parse(r#"{"rules": []}"#).expect("valid");
        assert_eq!(p.decision(&file("/a.css", Some("v=1"), "text/css")), none());
    }

    #[test]
    fn first_match_wins_by_prefix_extension_and_type() {
        let p = parse(
            r#"{"rules": [
                {"path_prefix": "/static/nocache/", "no_cache": true},
                {"extension": ["CSS", ".js"], "max_age": "1y", "immutable": true},
                {"content_type": "image/*", "max_age": 600, "private": true},
                {"content_type": "text/html", "private": true},
                {"path_prefix": ["/static/"], "max_age": "1h"}
            ]}"#,
        )
        .expect("valid");
        assert_eq!(p.decision(&file("/static/nocache/a.css", None, "text/css")), cc("no-cache", None));
        assert_eq!(
            p.decision(&file("/static/app.CSS", None, "text/css")),
            cc("max-age=31536000, immutable", Some(Expiry::After(31_536_000)))
        );
        assert_eq!(
            p.decision(&file("/static/x/logo.png", None, "image/png")),
            cc("private, max-age=600", Some(Expiry::After(600)))
        );
        assert_eq!(p.decision(&file("/static/i.html", None, "text/html; charset=utf-8")), cc("private", None));
        assert_eq!(
            p.decision(&file("/static/data.json", None, "application/json")),
            CacheDecision { cache_control: None, expires: Some(Expiry::After(3600)) }
        );
        assert_eq!(p.decision(&file("/other/data.json", None, "application/json")), none());
    }

    #[test]
    fn all_conditions_of_a_rule_must_hold() {
        let p = parse(r#"{"rules": [{"path_prefix": "/s/", "extension": "css", "query": false, "max_age": "max"}]}"#)
            .expect("valid");
        let max = CacheDecision { cache_control: None, expires: Some(Expiry::Max) };
        assert_eq!(p.decision(&file("/s/a.css", None, "text/css")), max);
        assert_eq!(p.decision(&file("/s/a.css", Some("v=2"), "text/css")), none());
        assert_eq!(p.decision(&file("/s/a.js", None, "text/css")), none());
        assert_eq!(p.decision(&file("/t/a.css", None, "text/css")), none());
    }

    #[test]
    fn max_with_more_directives_spells_out_max_age() {
        let p = parse(r#"{"rules": [{"max_age": "max", "immutable": true}]}"#).expect("valid");
        assert_eq!(p.decision(&file("/a", None, "x/y")), cc("max-age=315360000, immutable", Some(Expiry::Max)));
    }

    #[test]
    fn extensions_of_odd_names() {
        assert_eq!(extension("/a/b.tar.gz"), Some("gz"));
        assert_eq!(extension("/a/.hidden"), None);
        assert_eq!(extension("/a/b."), None);
        assert_eq!(extension("/a.d/b"), None);
        assert_eq!(extension("/"), None);
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let err = |json: &str| parse(json).expect_err(json);
        assert!(err(r#"{"rule": []}"#).contains("unknown field"));
        assert!(err(r#"{"rules": [{"max_age": "10x"}]}"#).contains("rules[0]: max_age"));
        assert!(err(r#"{"rules": [{"max_age": -1}]}"#).contains("invalid config"));
        assert!(err(r#"{"rules": [{"immutable": true}]}"#).contains("immutable needs a max_age"));
        assert!(err(r#"{"rules": [{"no_cache": true, "max_age": 5}]}"#).contains("no_cache"));
        assert!(err(r#"{"rules": [{}, {"path_prefix": "static/"}]}"#).contains("rules[1]: path_prefix"));
        assert!(err(r#"{"rules": [{"content_type": "css"}]}"#).contains("content_type"));
        assert!(err(r#"{"rules": [{"content_type": "*/*"}]}"#).contains("content_type"));
        assert!(err(r#"{"rules": [{"extension": "a/b"}]}"#).contains("extension"));
        assert!(err(r#"{"rules": [{"max_age": "99999999999999999y"}]}"#).contains("max_age"));
    }

    #[test]
    fn time_units() {
        let secs = |s: &str| max_age(RawMaxAge::Text(s.into())).expect(s);
        assert_eq!(secs("30"), MaxAge::Seconds(30));
        assert_eq!(secs("30s"), MaxAge::Seconds(30));
        assert_eq!(secs("2m"), MaxAge::Seconds(120));
        assert_eq!(secs("1h"), MaxAge::Seconds(3600));
        assert_eq!(secs("30d"), MaxAge::Seconds(2_592_000));
        assert_eq!(secs("1w"), MaxAge::Seconds(604_800));
        assert_eq!(secs("1M"), MaxAge::Seconds(2_592_000));
        assert_eq!(secs("1y"), MaxAge::Seconds(31_536_000));
        assert_eq!(secs("max"), MaxAge::Max);
    }
}
