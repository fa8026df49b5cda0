//! A small header policy written with gale-plugin: tags every response with
//! the configured `name` (`x-served-by`) and answers 403 to banned user agents.
//!
//! Config: `{ name = "edge-1", banned_agents = ["BadBot"] }`. Built as
//! `target/plugins/tagger.wasm` by scripts/build-plugins.sh.

use gale_plugin::{Decision, HeaderOp, HeaderPolicy, RequestHead, ResponseHead};

#[derive(serde::Deserialize)]
struct Tagger {
    name: String,
    #[serde(default)]
    banned_agents: Vec<String>,
}

impl HeaderPolicy for Tagger {
    type Config = Self;
    fn new(config: Self) -> Result<Self, String> {
        Ok(config)
    }

    fn on_request(&self, request: &RequestHead) -> Decision {
        let agent = request.header_str("user-agent").unwrap_or_default();
        if self.banned_agents.iter().any(|banned| agent.contains(banned.as_str())) {
            return Decision::respond(403, "banned\n");
        }
        Decision::next()
    }

    fn on_response(&self, _: &RequestHead, _: &ResponseHead) -> Vec<HeaderOp> {
        vec![HeaderOp::set("x-served-by", &self.name)]
    }
}

gale_plugin::header_policy!(Tagger);

#[cfg(test)]
mod tests {
    use super::*;
    use gale_plugin::LocalResponse;
    use gale_plugin::testing::{configure, request, response};

    fn tagger() -> Tagger {
        configure(r#"{"name": "edge-1", "banned_agents": ["BadBot"]}"#).expect("valid config")
    }

    #[test]
    fn banned_agents_get_403_whatever_the_header_case() {
        let head = request("GET /").with_header("User-Agent", "Mozilla BadBot/2");
        let want = LocalResponse::new(403, "banned\n").with_header("content-type", "text/plain; charset=utf-8");
        assert_eq!(tagger().on_request(&head), Decision::Respond(want));
    }

    #[test]
    fn others_go_on_and_every_response_is_tagged() {
        let t = tagger();
        assert_eq!(t.on_request(&request("GET /").with_header("user-agent", "curl/8")), Decision::next());
        assert_eq!(t.on_request(&request("GET /")), Decision::next());
        assert_eq!(t.on_response(&request("GET /"), &response(200)), vec![HeaderOp::set("X-Served-By", "edge-1")]);
    }

    #[test]
    fn a_config_without_name_is_rejected() {
        let err = configure::<Tagger>(r#"{"banned_agents": []}"#).err().expect("rejected");
        assert!(err.contains("missing field `name`"), "{err}");
    }
}
