//! Helpers for a plugin's native unit tests (`cargo test`, no wasm, no gale):
//! request and response heads in one line, what the plugin logged and
//! counted, and a check that a remembering hook declared what it reads.
//!
//! ```
//! use gale_plugin::testing::{request, response};
//! let head = request("GET /admin?x=1").with_header("User-Agent", "curl").with_remote_addr("192.0.2.9");
//! assert_eq!(head.path, "/admin");
//! assert_eq!(head.header_str("user-agent"), Some("curl"));
//! assert_eq!(response(404).with_header("Server", "x").status, 404);
//! ```

use std::cell::RefCell;

use crate::types::{Header, RequestHead, RequestInputs, ResponseHead};
use crate::{CachePolicy, Decision, HeaderOp, HeaderPolicy, LogLevel, UploadFields};

/// A request head from `"METHOD /path?query"`, from `192.0.2.1:40000` over
/// `http` for host `example.org`, without headers; change it with the
/// builder methods below.
pub fn request(line: &str) -> RequestHead {
    let (method, target) = line.split_once(' ').unwrap_or(("GET", line));
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query.to_owned())),
        None => (target, None),
    };
    RequestHead {
        method: method.to_owned(),
        path: path.to_owned(),
        query,
        headers: Vec::new(),
        remote_addr: "192.0.2.1".into(),
        remote_port: 40000,
        scheme: "http".into(),
        host: "example.org".into(),
    }
}

/// A response head with `status` and no headers.
pub fn response(status: u16) -> ResponseHead {
    ResponseHead { status, headers: Vec::new() }
}

impl RequestHead {
    /// Adds a header (the name lower-cased, as gale gives it).
    pub fn with_header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }

    /// Sets the client address.
    pub fn with_remote_addr(mut self, addr: &str) -> Self {
        self.remote_addr = addr.into();
        self
    }

    /// Sets the client port.
    pub fn with_remote_port(mut self, port: u16) -> Self {
        self.remote_port = port;
        self
    }

    /// Sets the host.
    pub fn with_host(mut self, host: &str) -> Self {
        self.host = host.into();
        self
    }

    /// Sets the scheme.
    pub fn with_scheme(mut self, scheme: &str) -> Self {
        self.scheme = scheme.into();
        self
    }
}

impl ResponseHead {
    /// Adds a header (the name lower-cased).
    pub fn with_header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }
}

thread_local! {
    static LOGS: RefCell<Vec<(LogLevel, String)>> = const { RefCell::new(Vec::new()) };
    static COUNTERS: RefCell<Vec<(String, u64)>> = const { RefCell::new(Vec::new()) };
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn record_log(level: LogLevel, message: &str) {
    LOGS.with(|l| l.borrow_mut().push((level, message.to_owned())));
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn record_counter(name: &str, delta: u64) {
    COUNTERS.with(|c| c.borrow_mut().push((name.to_owned(), delta)));
}

/// The messages logged on this thread since the last call.
pub fn take_logs() -> Vec<(LogLevel, String)> {
    LOGS.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

/// The counter additions on this thread since the last call, in order.
pub fn take_counters() -> Vec<(String, u64)> {
    COUNTERS.with(|c| std::mem::take(&mut *c.borrow_mut()))
}

/// Builds a header policy from a JSON configuration, as gale's `configure`
/// does (the same errors).
pub fn configure<P: HeaderPolicy>(json: &str) -> Result<P, String> {
    crate::__private::configure(json, P::new)
}

/// [`configure`] for a cache policy.
pub fn configure_cache<P: CachePolicy>(json: &str) -> Result<P, String> {
    crate::__private::configure(json, P::new)
}

/// [`configure`] for an upload-fields policy.
pub fn configure_upload<P: UploadFields>(json: &str) -> Result<P, String> {
    crate::__private::configure(json, P::new)
}

/// Asserts that the hooks of `policy` whose inputs are declared
/// ([`HeaderPolicy::inputs`]) answer `request` (and `response`) the same
/// whether given the whole head or only the declared parts, as gale gives
/// them: a difference is an input read but not declared, which gale would
/// silently hide from the hook.
pub fn assert_inputs_declared<P: HeaderPolicy>(policy: &P, request: &RequestHead, response: &ResponseHead) {
    let declared = policy.inputs();
    if let Some(inputs) = &declared.on_request {
        let full: Decision = policy.on_request(request);
        let masked = policy.on_request(&inputs.mask(request));
        assert_eq!(full, masked, "on_request reads more than its declared inputs {inputs:?}");
    }
    if let Some(inputs) = &declared.on_response {
        let given = ResponseHead {
            status: response.status,
            headers: response.headers.iter().filter(|h| inputs.headers.contains(&h.name)).cloned().collect(),
        };
        let full: Vec<HeaderOp> = policy.on_response(request, response);
        let masked = policy.on_response(&inputs.request.mask(request), &given);
        assert_eq!(full, masked, "on_response reads more than its declared inputs {inputs:?}");
    }
}

/// Reads nothing: a shorthand for tests that compare declarations.
pub fn no_inputs() -> RequestInputs {
    RequestInputs::none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Declaration, LocalResponse};

    /// Denies `x-bad` requests; declares `on_request`'s inputs as `declared`.
    struct Denier {
        declared: RequestInputs,
    }

    impl HeaderPolicy for Denier {
        type Config = ();
        fn new(_: ()) -> Result<Self, String> {
            Ok(Denier { declared: RequestInputs::none() })
        }
        fn on_request(&self, request: &RequestHead) -> Decision {
            crate::counter_add("seen", 1);
            match request.header("X-Bad") {
                Some(_) => Decision::respond(403, "no\n"),
                None => Decision::next(),
            }
        }
        fn inputs(&self) -> Declaration {
            Declaration { on_request: Some(self.declared.clone()), on_response: None }
        }
    }

    #[test]
    fn heads_and_helpers() {
        let head = request("POST /a/b?x=1&y").with_header("X-Multi", "1").with_header("x-multi", "2");
        assert_eq!((head.method.as_str(), head.path.as_str(), head.query.as_deref()), ("POST", "/a/b", Some("x=1&y")));
        assert_eq!(request("/").query, None);
        assert_eq!(head.header("x-MULTI"), Some(&b"1"[..]));
        assert_eq!(head.header_values("X-Multi").count(), 2);
        assert_eq!(head.header_joined("x-multi"), Some(b"1, 2".to_vec()));
        assert_eq!(head.header_str("absent"), None);
        assert_eq!(HeaderOp::set("X-A", "v"), HeaderOp::Set(Header { name: "x-a".into(), value: b"v".to_vec() }));
        assert_eq!(HeaderOp::remove("X-A"), HeaderOp::Remove("x-a".into()));
        let answer = LocalResponse::text(403, "no\n");
        assert_eq!(answer.header("Content-Type"), Some(&b"text/plain; charset=utf-8"[..]));
        assert_eq!(response(204).with_header("ETag", "x").header_str("etag"), Some("x"));
    }

    #[test]
    fn mask_keeps_only_the_declared_parts() {
        let head = request("GET /p?q").with_header("a", "1").with_header("b", "2").with_remote_port(9);
        let masked = RequestInputs { path: true, ..RequestInputs::none() }.with_header("B").mask(&head);
        assert_eq!(masked.path, "/p");
        assert_eq!((masked.method.as_str(), masked.query.as_deref(), masked.remote_port), ("", None, 0));
        assert_eq!((masked.remote_addr.as_str(), masked.scheme.as_str(), masked.host.as_str()), ("", "", ""));
        assert_eq!(masked.headers, vec![Header::new("b", "2")]);
    }

    #[test]
    fn host_calls_are_recorded_natively() {
        take_counters();
        let denier: Denier = configure("null").expect("valid");
        denier.on_request(&request("GET /"));
        crate::log(LogLevel::Warn, "hello");
        assert_eq!(take_counters(), vec![("seen".to_owned(), 1)]);
        assert!(matches!(take_logs().as_slice(), [(LogLevel::Warn, m)] if m == "hello"));
        assert!(take_counters().is_empty());
    }

    #[test]
    fn a_config_of_the_wrong_shape_is_rejected_without_a_panic() {
        let err = configure::<Denier>("{\"x\": 1}").err().expect("rejected");
        assert!(err.starts_with("invalid config: "), "{err}");
    }

    #[test]
    fn declared_inputs_pass_the_check() {
        let denier = Denier { declared: RequestInputs::none().with_header("x-bad") };
        assert_inputs_declared(&denier, &request("GET /").with_header("X-Bad", "1"), &response(200));
    }

    #[test]
    #[should_panic(expected = "on_request reads more than its declared inputs")]
    fn an_input_read_but_not_declared_fails_the_check() {
        let denier = Denier { declared: RequestInputs::none() };
        assert_inputs_declared(&denier, &request("GET /").with_header("X-Bad", "1"), &response(200));
    }
}
