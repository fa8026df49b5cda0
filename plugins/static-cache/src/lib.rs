//! gale's bundled cache policy for static files.
//!
//! The default config is the seed's `location /static/ { if ($query_string) { expires max; } }`:
//! a request with a non-empty query string (a versioned URL such as `app.css?v=3`) gets nginx's
//! `expires max`, any other gets no caching headers. A config replaces it with its own `rules`,
//! matched by path prefix, extension, content type and query string; the first matching rule
//! decides (`max_age`, `immutable`, `no_cache`, `private`). See `docs/static-and-gzip.md`.

mod rules;

use std::cell::RefCell;

/// The guest side of the WIT package (the one `generate!` of this crate).
// The generated glue exports raw C-ABI functions, which needs `unsafe`.
#[allow(unsafe_code)]
pub(crate) mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        // `cache-policy` plus `cache-inputs`: gale remembers the decisions.
        world: "gale:plugin/memoizable-cache-policy",
        // Decisions are compared in tests.
        additional_derives: [PartialEq, Eq],
    });
    use super::StaticCache;
    export!(StaticCache with_types_in crate::bindings);
}

use bindings::exports::gale::plugin::cache_hooks::{CacheDecision, FileInfo, Guest};
use bindings::exports::gale::plugin::cache_inputs::{self, DecisionInputs, FileInputs};
use bindings::gale::plugin::types::{RequestHead, RequestInputs};
use rules::Policy;

thread_local! {
    /// Set by `configure`; a wasm instance is single-threaded.
    static POLICY: RefCell<Policy> = RefCell::new(Policy::seed());
}

struct StaticCache;

impl Guest for StaticCache {
    fn configure(config: String) -> Result<(), String> {
        let policy = rules::parse(&config)?;
        POLICY.with(|p| *p.borrow_mut() = policy);
        Ok(())
    }

    fn decide(_request: RequestHead, file: FileInfo) -> CacheDecision {
        POLICY.with(|p| p.borrow().decide(&file))
    }
}

impl cache_inputs::Guest for StaticCache {
    /// A decision depends on the file's path and content type, and on the
    /// query string when a rule tests it; never on the request head.
    fn declare_inputs() -> Option<DecisionInputs> {
        POLICY.with(|p| {
            let p = p.borrow();
            p.memoize.then(|| DecisionInputs {
                request: RequestInputs {
                    method: false,
                    path: false,
                    query: false,
                    remote_addr: false,
                    remote_port: false,
                    scheme: false,
                    host: false,
                    headers: Vec::new(),
                },
                file: FileInputs { query: p.reads_query(), size: false, mtime: false },
            })
        })
    }
}
