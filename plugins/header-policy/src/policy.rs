//! The validated policy and what it does to one request or response.

use gale_plugin::{Decision, HeaderOp, LocalResponse, RequestHead, RequestInputs};

use crate::template::Template;

/// Edits for one side (request or response): removals first, then sets, so
/// that removing and setting the same header leaves the set value.
#[derive(Debug, Default)]
pub struct SideEdits {
    /// Lower-case names to remove.
    pub remove: Vec<String>,
    /// Lower-case names and their value templates; an empty expansion
    /// removes the header, as nginx's `proxy_set_header` does.
    pub set: Vec<(String, Template)>,
}

/// A header condition of a deny rule.
#[derive(Debug)]
pub struct HeaderMatch {
    /// Lower-case header name.
    pub name: String,
    /// The exact value to match; `None` matches any value (presence).
    pub value: Option<Vec<u8>>,
}

/// Answer `status` without the backend when every given condition holds.
#[derive(Debug)]
pub struct DenyRule {
    /// Prefix of the decoded, normalised path.
    pub path_prefix: Option<String>,
    /// Upper-case method.
    pub method: Option<String>,
    /// Header that must be present (with that value, if given).
    pub header: Option<HeaderMatch>,
    /// Status of the answer.
    pub status: u16,
    /// Body of the answer (text/plain).
    pub body: String,
}

/// The whole policy; the default (empty config) changes nothing.
#[derive(Debug, Default)]
pub struct Policy {
    /// Request header edits.
    pub request: SideEdits,
    /// Response header edits.
    pub response: SideEdits,
    /// Deny rules, first match wins.
    pub deny: Vec<DenyRule>,
    /// Whether gale may remember the hooks' answers (config `memoize`,
    /// default true): off, every request is a call and counts in `denied`.
    pub memoize: bool,
}

impl Policy {
    /// The decision for a request: a deny answer, or the request edits.
    pub fn request_decision(&self, head: &RequestHead) -> Decision {
        if !self.deny.is_empty() {
            let path = normalize_path(&head.path);
            if let Some(rule) = self.deny.iter().find(|rule| rule.matches(head, &path)) {
                return Decision::Respond(LocalResponse::text(rule.status, &rule.body));
            }
        }
        Decision::Continue(self.request.ops(head))
    }

    /// The response edits.
    pub fn response_edits(&self, head: &RequestHead) -> Vec<HeaderOp> {
        self.response.ops(head)
    }

    /// What `on_request` reads: the request templates' variables, and for
    /// deny rules their conditions (plus the method and path its log line
    /// shows).
    pub fn request_inputs(&self) -> RequestInputs {
        let mut inputs = RequestInputs::none();
        for (_, template) in &self.request.set {
            template.add_inputs(&mut inputs);
        }
        for rule in &self.deny {
            inputs.method = true;
            inputs.path = true;
            if let Some(header) = &rule.header {
                inputs.add_header(&header.name);
            }
        }
        inputs
    }

    /// What `on_response` reads: its templates' variables (never the
    /// response itself).
    pub fn response_inputs(&self) -> RequestInputs {
        let mut inputs = RequestInputs::none();
        for (_, template) in &self.response.set {
            template.add_inputs(&mut inputs);
        }
        inputs
    }

    /// Whether `on_request` can do anything: request edits or deny rules.
    pub fn uses_request(&self) -> bool {
        !self.request.is_empty() || !self.deny.is_empty()
    }

    /// Whether `on_response` can do anything: response edits.
    pub fn uses_response(&self) -> bool {
        !self.response.is_empty()
    }

    /// Whether a hook reads the request headers: a `$http_<name>` value on
    /// either side, or a deny rule on a header. (No rule reads the
    /// response headers.)
    pub fn reads_request_headers(&self) -> bool {
        let templates = self.request.set.iter().chain(&self.response.set);
        templates.map(|(_, t)| t).any(Template::reads_headers) || self.deny.iter().any(|rule| rule.header.is_some())
    }
}

impl SideEdits {
    /// No edits at all.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty()
    }

    fn ops(&self, head: &RequestHead) -> Vec<HeaderOp> {
        let mut ops = Vec::with_capacity(self.remove.len() + self.set.len());
        ops.extend(self.remove.iter().map(|name| HeaderOp::Remove(name.clone())));
        for (name, template) in &self.set {
            let value = template.expand(head);
            ops.push(if value.is_empty() { HeaderOp::Remove(name.clone()) } else { HeaderOp::set(name, value) });
        }
        ops
    }
}

impl DenyRule {
    fn matches(&self, head: &RequestHead, path: &[u8]) -> bool {
        if let Some(prefix) = &self.path_prefix
            && !path.starts_with(prefix.as_bytes())
        {
            return false;
        }
        if let Some(method) = &self.method
            && head.method != *method
        {
            return false;
        }
        if let Some(want) = &self.header {
            let mut values = head.headers.iter().filter(|h| h.name == want.name);
            let found = match &want.value {
                None => values.next().is_some(),
                Some(value) => values.any(|h| h.value == *value),
            };
            if !found {
                return false;
            }
        }
        true
    }
}

/// Percent-decodes the path and resolves `.`, `..` and repeated `/`, the way
/// nginx matches locations, so that `/%61dmin` or `/x/../admin` cannot slip
/// past a `/admin` rule.
fn normalize_path(raw: &str) -> Vec<u8> {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|b| (*b as char).to_digit(16)),
                bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16)),
            )
        {
            decoded.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        decoded.push(bytes[i]);
        i += 1;
    }
    let mut segments: Vec<&[u8]> = Vec::new();
    for segment in decoded.split(|b| *b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = Vec::with_capacity(decoded.len() + 1);
    for segment in &segments {
        out.push(b'/');
        out.extend_from_slice(segment);
    }
    let trailing =
        decoded.ends_with(b"/") || decoded.ends_with(b"/.") || decoded.ends_with(b"/..") || segments.is_empty();
    if trailing {
        out.push(b'/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gale_plugin::Header;
    use gale_plugin::testing::assert_inputs_declared;
    use gale_plugin::testing::{configure, no_inputs, request, response};

    fn head(method: &str, path: &str) -> RequestHead {
        request(&format!("{method} {path}")).with_header("x-debug", "1").with_remote_addr("192.0.2.7")
    }

    fn policy(json: &str) -> Policy {
        configure(json).expect("valid config")
    }

    fn status(decision: &Decision) -> Option<u16> {
        match decision {
            Decision::Respond(r) => Some(r.status),
            Decision::Continue(_) => None,
        }
    }

    #[test]
    fn default_policy_changes_nothing() {
        let p = policy("{}");
        match p.request_decision(&head("GET", "/")) {
            Decision::Continue(ops) => assert!(ops.is_empty()),
            Decision::Respond(_) => panic!("must continue"),
        }
        assert!(p.response_edits(&head("GET", "/")).is_empty());
    }

    #[test]
    fn inputs_follow_the_rules() {
        let p = policy(r#"{"response": {"set": {"x-frame-options": "DENY"}}, "request": {"remove": ["x-a"]}}"#);
        assert_eq!(p.request_inputs(), no_inputs());
        assert_eq!(p.response_inputs(), no_inputs());
        assert!(p.memoize);
        let p = policy(
            r#"{"request": {"set": {"x-h": "$host", "x-u": "$request_uri", "x-c": "$http_cookie$http_Cookie"}},
                "response": {"set": {"x-ip": "$remote_addr:$remote_port", "x-m": "$request_method $scheme $args"}},
                "memoize": false}"#,
        );
        let r = p.request_inputs();
        assert!(r.host && r.path && r.query && !r.method && !r.remote_addr && !r.scheme);
        assert_eq!(r.headers, ["cookie"]);
        let r = p.response_inputs();
        assert!(r.remote_addr && r.remote_port && r.method && r.scheme && r.query);
        assert!(!r.host && !r.path && r.headers.is_empty());
        assert!(!p.memoize);
        let p = policy(r#"{"deny": [{"header": {"name": "X-Debug"}, "status": 404}]}"#);
        let r = p.request_inputs();
        assert!(r.method && r.path && !r.query && !r.host);
        assert_eq!(r.headers, ["x-debug"]);
    }

    #[test]
    fn every_hook_reads_only_what_it_declares() {
        let p = policy(
            r#"{"request": {"set": {"x-ip": "$remote_addr", "x-ua": "$http_user_agent"}, "remove": ["x-a"]},
                "response": {"set": {"x-loc": "$scheme://$host$request_uri"}},
                "deny": [{"path_prefix": "/admin", "method": "POST"}, {"header": {"name": "x-debug", "value": "1"}}]}"#,
        );
        let full = head("GET", "/a?b=1").with_header("User-Agent", "curl").with_header("cookie", "c=1");
        for request in [full.clone(), head("POST", "/admin/x"), full.with_header("x-debug", "1")] {
            assert_inputs_declared(&p, &request, &response(200).with_header("server", "x"));
        }
    }

    #[test]
    fn interest_follows_the_rules() {
        let p = policy("{}");
        assert!(!p.uses_request() && !p.uses_response());
        let p = policy(r#"{"response": {"set": {"x-frame-options": "DENY"}}}"#);
        assert!(!p.uses_request() && p.uses_response());
        let p = policy(r#"{"request": {"remove": ["x-debug"]}}"#);
        assert!(p.uses_request() && !p.uses_response());
        let p = policy(r#"{"deny": [{"path_prefix": "/admin", "status": 403}]}"#);
        assert!(p.uses_request() && !p.uses_response());
        assert!(!p.reads_request_headers());
        let p = policy(r#"{"response": {"set": {"x-host": "$scheme://$host"}}}"#);
        assert!(!p.reads_request_headers());
        let p = policy(r#"{"response": {"set": {"x-ua": "$http_user_agent"}}}"#);
        assert!(p.reads_request_headers());
        let p = policy(r#"{"deny": [{"header": {"name": "x-debug"}, "status": 404}]}"#);
        assert!(p.reads_request_headers());
    }

    #[test]
    fn request_edits_remove_then_set_with_variables() {
        let p = policy(
            r#"{"request": {"set": {"x-real-ip": "$remote_addr", "x-scheme": "$scheme",
                                    "x-empty": "$http_missing"},
                            "remove": ["x-debug"]}}"#,
        );
        let Decision::Continue(ops) = p.request_decision(&head("GET", "/")) else {
            panic!("must continue");
        };
        assert_eq!(
            ops,
            vec![
                HeaderOp::remove("x-debug"),
                HeaderOp::remove("x-empty"),
                HeaderOp::set("x-real-ip", "192.0.2.7"),
                HeaderOp::set("x-scheme", "http"),
            ]
        );
    }

    #[test]
    fn response_edits() {
        let p = policy(r#"{"response": {"set": {"x-frame-options": "DENY"}, "remove": ["server"]}}"#);
        assert_eq!(
            p.response_edits(&head("GET", "/")),
            vec![HeaderOp::remove("server"), HeaderOp::set("x-frame-options", "DENY"),]
        );
    }

    #[test]
    fn deny_by_prefix_cannot_be_bypassed_by_encoding() {
        let p = policy(r#"{"deny": [{"path_prefix": "/admin", "status": 403}]}"#);
        for path in ["/admin", "/admin/x", "/%61dmin", "//admin", "/x/../admin", "/./admin"] {
            assert_eq!(status(&p.request_decision(&head("GET", path))), Some(403), "{path}");
        }
        for path in ["/", "/adm", "/public/admin"] {
            assert_eq!(status(&p.request_decision(&head("GET", path))), None, "{path}");
        }
        let Decision::Respond(resp) = p.request_decision(&head("GET", "/admin")) else {
            panic!("must respond");
        };
        assert_eq!(resp.body, b"403 Forbidden\n");
    }

    #[test]
    fn deny_conditions_all_apply() {
        let p = policy(
            r#"{"deny": [{"path_prefix": "/api", "method": "delete", "status": 405},
                         {"header": {"name": "X-Debug", "value": "1"}, "status": 400, "body": "no"},
                         {"header": {"name": "x-probe"}, "status": 404}]}"#,
        );
        assert_eq!(status(&p.request_decision(&head("DELETE", "/api/1"))), Some(405));
        let mut h = head("GET", "/api/1");
        assert_eq!(status(&p.request_decision(&h)), Some(400));
        h.headers[0].value = b"0".to_vec();
        assert_eq!(status(&p.request_decision(&h)), None);
        h.headers.push(Header { name: "x-probe".into(), value: vec![] });
        assert_eq!(status(&p.request_decision(&h)), Some(404));
    }

    #[test]
    fn paths_normalize_like_nginx() {
        let n = |p: &str| String::from_utf8(normalize_path(p)).expect("utf-8");
        assert_eq!(n("/"), "/");
        assert_eq!(n(""), "/");
        assert_eq!(n("/a//b/./c/../d/"), "/a/b/d/");
        assert_eq!(n("/a/.."), "/");
        assert_eq!(n("/../../etc"), "/etc");
        assert_eq!(n("/%2e%2e/x%2Fy"), "/x/y");
        assert_eq!(n("/100%"), "/100%");
    }
}
