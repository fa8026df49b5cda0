//! `{{name}}`: a gale header policy (world `header-policy`).
//!
//! Tags every response with `x-{{name}}: <tag>`, and answers 403 to requests
//! whose `User-Agent` contains one of `blocked_agents`. Its configuration (the
//! attachment's `config`, merged over `{{name}}.toml`):
//!
//! ```toml
//! tag = "edge-1"
//! blocked_agents = ["BadBot"]
//! ```

use gale_plugin::{Decision, HeaderOp, HeaderPolicy, RequestHead, ResponseHead};

/// The response header this plugin sets.
const TAG_HEADER: &str = "x-{{name}}";

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    tag: String,
    #[serde(default)]
    blocked_agents: Vec<String>,
}

struct Policy {
    tag: String,
    blocked_agents: Vec<String>,
}

impl HeaderPolicy for Policy {
    type Config = Config;

    /// Runs once per wasm instance; an `Err` rejects the configuration, and
    /// gale reports it at the attachment.
    fn new(config: Config) -> Result<Self, String> {
        if config.tag.is_empty() {
            return Err("`tag` must not be empty".into());
        }
        Ok(Policy {
            tag: config.tag,
            blocked_agents: config.blocked_agents,
        })
    }

    fn on_request(&self, request: &RequestHead) -> Decision {
        // Header names are compared without case.
        let agent = request.header_str("user-agent").unwrap_or_default();
        if self
            .blocked_agents
            .iter()
            .any(|blocked| agent.contains(blocked.as_str()))
        {
            return Decision::respond(403, "blocked\n");
        }
        Decision::next()
    }

    /// Runs on every response: the backend's, and this plugin's own 403s.
    fn on_response(&self, _: &RequestHead, _: &ResponseHead) -> Vec<HeaderOp> {
        vec![HeaderOp::set(TAG_HEADER, &self.tag)]
    }
}

gale_plugin::header_policy!(Policy);

#[cfg(test)]
mod tests {
    use super::*;
    use gale_plugin::LocalResponse;
    use gale_plugin::testing::{configure, request, response};

    fn policy() -> Policy {
        configure(r#"{"tag": "edge-1", "blocked_agents": ["BadBot"]}"#).expect("a valid config")
    }

    #[test]
    fn blocked_agents_get_403_whatever_the_header_case() {
        let head = request("GET /").with_header("USER-AGENT", "Mozilla BadBot/2");
        let want = LocalResponse::new(403, "blocked\n")
            .with_header("content-type", "text/plain; charset=utf-8");
        assert_eq!(policy().on_request(&head), Decision::Respond(want));
    }

    #[test]
    fn other_requests_go_on_and_every_response_is_tagged() {
        let p = policy();
        assert_eq!(
            p.on_request(&request("GET /").with_header("User-Agent", "curl/8")),
            Decision::next()
        );
        assert_eq!(p.on_request(&request("GET /")), Decision::next());
        assert_eq!(
            p.on_response(&request("GET /"), &response(200)),
            vec![HeaderOp::set(TAG_HEADER, "edge-1")]
        );
    }

    #[test]
    fn bad_configs_are_rejected() {
        let missing = configure::<Policy>(r#"{"blocked_agents": []}"#)
            .err()
            .expect("rejected");
        assert!(missing.contains("missing field `tag`"), "{missing}");
        let empty = configure::<Policy>(r#"{"tag": ""}"#)
            .err()
            .expect("rejected");
        assert_eq!(empty, "`tag` must not be empty");
    }
}
