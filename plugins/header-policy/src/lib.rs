//! gale's bundled header policy: set and remove request and response
//! headers (with nginx-style variables), and deny requests by path, method
//! or header without reaching the backend.
//!
//! Config (the attachment's TOML table):
//! `{ request = { set = {..}, remove = [..] }, response = { set = {..}, remove = [..] },
//!    deny = [{ path_prefix = "/admin", method = "POST", header = { name = "x", value = "y" }, status = 403 }] }`.
//! The empty config changes nothing. See `docs/plugins.md`.

mod config;
mod policy;
mod template;

use gale_plugin::{
    Decision, Declaration, HeaderOp, HeaderPolicy, Interest, LogLevel, RequestHead, ResponseHead, ResponseInputs,
};
use policy::Policy;

impl HeaderPolicy for Policy {
    type Config = config::RawConfig;

    fn new(config: config::RawConfig) -> Result<Self, String> {
        config::validate(config)
    }

    fn on_request(&self, head: &RequestHead) -> Decision {
        let decision = self.request_decision(head);
        if let Decision::Respond(response) = &decision {
            // Shown in gale's metrics: how many requests the policy denied.
            gale_plugin::counter_add("denied", 1);
            gale_plugin::log(
                LogLevel::Debug,
                &format!("denied {} {} with {}", head.method, head.path, response.status),
            );
        }
        decision
    }

    fn on_response(&self, head: &RequestHead, _response: &ResponseHead) -> Vec<HeaderOp> {
        self.response_edits(head)
    }

    /// Only what the configured rules use: a response-only policy costs gale
    /// no `on-request` call, and no rule reads the response headers.
    fn interest(&self) -> Interest {
        Interest {
            on_request: self.uses_request(),
            on_response: self.uses_response(),
            request_headers: self.reads_request_headers(),
            response_headers: false,
        }
    }

    /// Every rule is a function of a few request parts (the variables its
    /// templates use, the conditions of deny rules) and never of the
    /// response: gale may remember the answers, unless `memoize = false`.
    fn inputs(&self) -> Declaration {
        if !self.memoize {
            return Declaration::default();
        }
        let on_response = ResponseInputs { request: self.response_inputs(), headers: Vec::new() };
        Declaration { on_request: Some(self.request_inputs()), on_response: Some(on_response) }
    }
}

gale_plugin::header_policy!(Policy, remember);
