//! A memoizable header policy that gets its declaration wrong on purpose:
//! both hooks declare that they read the path only, yet `on-request`
//! answers 403 to a `user-agent` containing `bot` and `on-response` copies
//! the `user-agent` into `x-seen-agent`. Under gale the hooks never see the
//! header (gale passes only declared inputs), so the rules silently do
//! nothing; `gale plugins test --check-inputs` must catch it.
//!
//! Test fixture for gale, never for production. Config: none.

use gale_plugin::{
    Decision, Declaration, HeaderOp, HeaderPolicy, RequestHead, RequestInputs, ResponseHead, ResponseInputs,
};

#[derive(serde::Deserialize)]
struct Fixture {}

impl HeaderPolicy for Fixture {
    type Config = Self;
    fn new(config: Self) -> Result<Self, String> {
        Ok(config)
    }

    fn on_request(&self, request: &RequestHead) -> Decision {
        if request.header_str("user-agent").is_some_and(|a| a.contains("bot")) {
            return Decision::respond(403, "no bots\n");
        }
        Decision::next()
    }

    fn on_response(&self, request: &RequestHead, _: &ResponseHead) -> Vec<HeaderOp> {
        request.header("user-agent").map(|a| vec![HeaderOp::set("x-seen-agent", a)]).unwrap_or_default()
    }

    fn inputs(&self) -> Declaration {
        // Wrong on purpose: the hooks read `user-agent`.
        let path_only = || RequestInputs { path: true, ..RequestInputs::none() };
        Declaration {
            on_request: Some(path_only()),
            on_response: Some(ResponseInputs { request: path_only(), headers: Vec::new() }),
        }
    }
}

gale_plugin::header_policy!(Fixture, remember);
