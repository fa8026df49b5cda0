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

use std::cell::RefCell;

/// The guest side of the WIT package (the one `generate!` of this crate).
// The generated glue exports raw C-ABI functions, which needs `unsafe`.
#[allow(unsafe_code)]
pub(crate) mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        // `header-policy` plus `header-interest` (gale calls only the hooks
        // the configured rules use) and `hook-inputs` (gale gives each hook
        // only what it reads and remembers the answers).
        world: "gale:plugin/memoizable-header-policy",
        // Header ops are compared in tests.
        additional_derives: [PartialEq, Eq],
    });
    use super::HeaderPolicy;
    export!(HeaderPolicy with_types_in crate::bindings);
}

use bindings::exports::gale::plugin::header_hooks::{Guest, RequestDecision};
use bindings::exports::gale::plugin::header_interest::{self, Interest};
use bindings::exports::gale::plugin::hook_inputs::{self, Declaration, ResponseInputs};
use bindings::gale::plugin::host::{self, LogLevel};
use bindings::gale::plugin::types::{HeaderOp, RequestHead, ResponseHead};
use policy::Policy;

thread_local! {
    /// Set by `configure`; a wasm instance is single-threaded.
    static POLICY: RefCell<Policy> = RefCell::new(Policy::default());
}

struct HeaderPolicy;

impl Guest for HeaderPolicy {
    fn configure(config: String) -> Result<(), String> {
        let policy = config::parse(&config)?;
        POLICY.with(|p| *p.borrow_mut() = policy);
        Ok(())
    }

    fn on_request(head: RequestHead) -> RequestDecision {
        let decision = POLICY.with(|p| p.borrow().on_request(&head));
        if let RequestDecision::Respond(response) = &decision {
            // Shown in gale's metrics: how many requests the policy denied.
            host::counter_add("denied", 1);
            host::log(LogLevel::Debug, &format!("denied {} {} with {}", head.method, head.path, response.status));
        }
        decision
    }

    fn on_response(head: RequestHead, response: ResponseHead) -> Vec<HeaderOp> {
        POLICY.with(|p| p.borrow().on_response(&head, &response))
    }
}

impl header_interest::Guest for HeaderPolicy {
    /// Only what the configured rules use: a response-only policy costs gale
    /// no `on-request` call, and no rule reads the response headers.
    fn declare() -> Interest {
        POLICY.with(|p| {
            let p = p.borrow();
            let pick = |used: bool, flag: Interest| if used { flag } else { Interest::empty() };
            pick(p.uses_request(), Interest::ON_REQUEST)
                | pick(p.uses_response(), Interest::ON_RESPONSE)
                | pick(p.reads_request_headers(), Interest::REQUEST_HEADERS)
        })
    }
}

impl hook_inputs::Guest for HeaderPolicy {
    /// Every rule is a function of a few request parts (the variables its
    /// templates use, the conditions of deny rules) and never of the
    /// response: gale may remember the answers, unless `memoize = false`.
    fn declare_inputs() -> Declaration {
        POLICY.with(|p| {
            let p = p.borrow();
            if !p.memoize {
                return Declaration { on_request: None, on_response: None };
            }
            Declaration {
                on_request: Some(p.request_inputs()),
                on_response: Some(ResponseInputs { request: p.response_inputs(), headers: Vec::new() }),
            }
        })
    }
}
