//! A memoizable header policy that gets its declaration wrong on purpose:
//! both hooks declare that they read no request header, yet `on-request`
//! answers 403 to a `user-agent` containing `bot` and `on-response` copies
//! the `user-agent` into `x-seen-agent`. Under gale the hooks never see the
//! header (gale passes only declared inputs), so the rules silently do
//! nothing; `gale plugins test --check-inputs` must catch it.
//!
//! Test fixture for gale, never for production. Config: none.

// The generated glue exports raw C-ABI functions, which needs `unsafe`.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "gale:plugin/memoizable-header-policy" });
    use super::Fixture;
    export!(Fixture with_types_in crate::bindings);
}

use bindings::exports::gale::plugin::header_hooks::{Guest, RequestDecision};
use bindings::exports::gale::plugin::header_interest::{self, Interest};
use bindings::exports::gale::plugin::hook_inputs::{self, Declaration, ResponseInputs};
use bindings::gale::plugin::types::{Header, HeaderOp, LocalResponse, RequestHead, RequestInputs, ResponseHead};

struct Fixture;

fn agent(head: &RequestHead) -> Option<&[u8]> {
    head.headers.iter().find(|h| h.name == "user-agent").map(|h| h.value.as_slice())
}

impl Guest for Fixture {
    fn configure(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn on_request(head: RequestHead) -> RequestDecision {
        if agent(&head).is_some_and(|a| a.windows(3).any(|w| w == b"bot")) {
            return RequestDecision::Respond(LocalResponse {
                status: 403,
                headers: Vec::new(),
                body: b"no bots\n".to_vec(),
            });
        }
        RequestDecision::Continue(Vec::new())
    }

    fn on_response(head: RequestHead, _response: ResponseHead) -> Vec<HeaderOp> {
        agent(&head)
            .map(|a| vec![HeaderOp::Set(Header { name: "x-seen-agent".into(), value: a.to_vec() })])
            .unwrap_or_default()
    }
}

impl header_interest::Guest for Fixture {
    fn declare() -> Interest {
        Interest::ON_REQUEST | Interest::ON_RESPONSE | Interest::REQUEST_HEADERS
    }
}

impl hook_inputs::Guest for Fixture {
    fn declare_inputs() -> Declaration {
        // Wrong on purpose: the hooks read `user-agent`.
        let nothing = || RequestInputs {
            method: false,
            path: true,
            query: false,
            remote_addr: false,
            remote_port: false,
            scheme: false,
            host: false,
            headers: Vec::new(),
        };
        Declaration {
            on_request: Some(nothing()),
            on_response: Some(ResponseInputs { request: nothing(), headers: Vec::new() }),
        }
    }
}
