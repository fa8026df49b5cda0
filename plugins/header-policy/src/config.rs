//! The policy's configuration: the JSON shape gale hands to `configure`,
//! validated into a [`Policy`] that cannot hold bad values.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::policy::{DenyRule, HeaderMatch, Policy, SideEdits};
use crate::template::Template;

/// `{ request = {..}, response = {..}, deny = [..] }`, exactly as in gale's TOML.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    request: RawSide,
    #[serde(default)]
    response: RawSide,
    #[serde(default)]
    deny: Vec<RawDeny>,
    memoize: Option<bool>,
}

/// `{ set = { name = "value" }, remove = ["name"] }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSide {
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    remove: Vec<String>,
}

/// `{ path_prefix = "/admin", method = "POST", header = { name, value }, status = 403, body = ".." }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeny {
    path_prefix: Option<String>,
    method: Option<String>,
    header: Option<RawHeaderMatch>,
    status: Option<u16>,
    body: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeaderMatch {
    name: String,
    value: Option<String>,
}

/// Headers gale frames itself; a policy may not touch them.
const FRAMING_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Validates the configuration. Errors say which key is wrong.
pub fn validate(raw: RawConfig) -> Result<Policy, String> {
    Ok(Policy {
        request: side(raw.request, "request")?,
        response: side(raw.response, "response")?,
        deny: raw
            .deny
            .into_iter()
            .enumerate()
            .map(|(i, rule)| deny_rule(rule).map_err(|e| format!("deny[{i}]: {e}")))
            .collect::<Result<_, _>>()?,
        memoize: raw.memoize.unwrap_or(true),
    })
}

fn side(raw: RawSide, which: &str) -> Result<SideEdits, String> {
    let remove = raw
        .remove
        .iter()
        .map(|name| header_name(name).map_err(|e| format!("{which}.remove: {e}")))
        .collect::<Result<_, _>>()?;
    let set = raw
        .set
        .iter()
        .map(|(name, value)| {
            let name = header_name(name).map_err(|e| format!("{which}.set: {e}"))?;
            let value = Template::parse(value).map_err(|e| format!("{which}.set.{name}: {e}"))?;
            Ok((name, value))
        })
        .collect::<Result<_, String>>()?;
    Ok(SideEdits { remove, set })
}

fn deny_rule(raw: RawDeny) -> Result<DenyRule, String> {
    let status = raw.status.unwrap_or(403);
    if !(200..=599).contains(&status) {
        return Err(format!("status {status} is not between 200 and 599"));
    }
    if let Some(prefix) = &raw.path_prefix
        && !prefix.starts_with('/')
    {
        return Err(format!("path_prefix {prefix:?} must start with `/`"));
    }
    let method = match raw.method {
        Some(m) if m.is_empty() || !m.bytes().all(is_token_byte) => {
            return Err(format!("method {m:?} is not a valid HTTP method"));
        }
        Some(m) => Some(m.to_ascii_uppercase()),
        None => None,
    };
    let header = match raw.header {
        Some(h) => Some(HeaderMatch {
            name: header_name(&h.name).map_err(|e| format!("header: {e}"))?,
            value: h.value.map(String::into_bytes),
        }),
        None => None,
    };
    let body = raw.body.unwrap_or_else(|| default_body(status));
    Ok(DenyRule { path_prefix: raw.path_prefix, method, header, status, body })
}

/// A valid, lower-cased header name that is not a framing header.
fn header_name(name: &str) -> Result<String, String> {
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return Err(format!("{name:?} is not a valid header name"));
    }
    let lower = name.to_ascii_lowercase();
    if FRAMING_HEADERS.contains(&lower.as_str()) {
        return Err(format!("header `{lower}` is managed by gale and cannot be changed"));
    }
    Ok(lower)
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn default_body(status: u16) -> String {
    let reason = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        410 => "Gone",
        429 => "Too Many Requests",
        451 => "Unavailable For Legal Reasons",
        503 => "Service Unavailable",
        _ => "Denied",
    };
    format!("{status} {reason}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Policy, String> {
        gale_plugin::testing::configure(json)
    }

    #[test]
    fn empty_config_is_a_no_op_policy() {
        let policy = parse("{}").expect("valid");
        assert!(policy.request.set.is_empty() && policy.request.remove.is_empty());
        assert!(policy.response.set.is_empty() && policy.response.remove.is_empty());
        assert!(policy.deny.is_empty());
    }

    #[test]
    fn the_issue_shape_parses() {
        let policy = parse(
            r#"{"request": {"set": {"X-Real-IP": "$remote_addr"}, "remove": ["x-debug"]},
                "response": {"set": {"x-frame-options": "DENY"}, "remove": ["server"]},
                "deny": [{"path_prefix": "/admin", "status": 403}]}"#,
        )
        .expect("valid");
        assert_eq!(policy.request.set[0].0, "x-real-ip");
        assert_eq!(policy.request.remove, vec!["x-debug".to_string()]);
        assert_eq!(policy.response.remove, vec!["server".to_string()]);
        assert_eq!(policy.deny[0].status, 403);
        assert_eq!(policy.deny[0].body, "403 Forbidden\n");
    }

    #[test]
    fn mistakes_are_named() {
        let err = |json: &str| parse(json).expect_err("invalid");
        assert!(err(r#"{"requets": {}}"#).contains("unknown field `requets`"));
        assert!(err(r#"{"request": {"set": {"bad name": "x"}}}"#).contains("request.set"));
        assert!(err(r#"{"request": {"set": {"x-a": "$nope"}}}"#).contains("request.set.x-a"));
        assert!(err(r#"{"response": {"remove": ["content-length"]}}"#).contains("managed by gale"));
        assert!(err(r#"{"deny": [{"status": 99}]}"#).contains("deny[0]"));
        assert!(err(r#"{"deny": [{"path_prefix": "admin"}]}"#).contains("start with `/`"));
        assert!(err(r#"{"deny": [{"method": "G T"}]}"#).contains("method"));
        assert!(err(r#"{"deny": [{"stauts": 403}]}"#).contains("unknown field"));
        assert!(err("[").contains("invalid config"));
    }
}
