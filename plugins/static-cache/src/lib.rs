//! gale's bundled cache policy for static files.
//!
//! The default config is the reference configuration's `location /static/ { if ($query_string) { expires max; } }`:
//! a request with a non-empty query string (a versioned URL such as `app.css?v=3`) gets nginx's
//! `expires max`, any other gets no caching headers. A config replaces it with its own `rules`,
//! matched by path prefix, extension, content type and query string; the first matching rule
//! decides (`max_age`, `immutable`, `no_cache`, `private`). See `docs/static-and-gzip.md`.

mod rules;

use gale_plugin::{CacheDecision, CachePolicy, DecisionInputs, FileInfo, FileInputs, RequestHead, RequestInputs};
use rules::Policy;

impl CachePolicy for Policy {
    type Config = rules::RawConfig;

    fn new(config: rules::RawConfig) -> Result<Self, String> {
        rules::validate(config)
    }

    fn decide(&self, _request: &RequestHead, file: &FileInfo) -> CacheDecision {
        self.decision(file)
    }

    /// A decision depends on the file's path and content type, and on the
    /// query string when a rule tests it; never on the request head.
    fn inputs(&self) -> Option<DecisionInputs> {
        let file = FileInputs { query: self.reads_query(), size: false, mtime: false };
        self.memoize.then(|| DecisionInputs { request: RequestInputs::none(), file })
    }
}

gale_plugin::cache_policy!(Policy, remember);
