//! The `header-policy` world in HTTP terms: load a policy, run its hooks.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode, Uri};

use super::bindings::types::RequestHead;
use super::bindings::{HeaderDeclared, HeaderPolicyBindings, WantedHooks};
use super::convert::{self, Decision};
use super::error::PluginError;
use super::headers::HeaderEdits;
use super::limits::Limits;
use super::memo::{self, Key, Memo};
use super::pool::{Instance, Pool};
use super::runtime::PluginRuntime;
use super::tenant::Tenant;

/// The request as a hook sees it. Borrowed, so building one per hook costs
/// nothing; the pipeline builds it from the request it owns.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request target (path and query are taken from it).
    pub uri: &'a Uri,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The client's address (`$remote_addr`, `$remote_port`).
    pub remote_addr: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The request's host without port (`$host`).
    pub host: &'a str,
}

/// A request converted once for every header-policy hook that sees it: the
/// conversion copies the whole head, so a request passing several hooks
/// (or both hooks of one policy) should build one and share it. Build it
/// again after applying request edits, for hooks that must see them.
pub struct HookRequest {
    head: RequestHead,
    /// Whether `head` carries the request headers.
    has_headers: bool,
}

impl HookRequest {
    /// Converts `req`, headers included.
    pub fn new(req: &RequestView<'_>) -> Self {
        Self::build(req, true)
    }

    /// Converts `req` for these policies: the headers are copied only when
    /// one of them reads them ([`HeaderPolicy::wants_request_headers`]).
    /// Hand it to these policies only.
    pub fn for_policies<'p>(req: &RequestView<'_>, policies: impl IntoIterator<Item = &'p HeaderPolicy>) -> Self {
        Self::build(req, policies.into_iter().any(HeaderPolicy::wants_request_headers))
    }

    fn build(req: &RequestView<'_>, has_headers: bool) -> Self {
        Self { head: convert::request_head(req, has_headers), has_headers }
    }
}

impl std::fmt::Debug for HookRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookRequest")
            .field("method", &self.head.method)
            .field("path", &self.head.path)
            .finish_non_exhaustive()
    }
}

/// What a header policy decided about a request.
#[derive(Debug)]
pub enum RequestAction {
    /// Go on to the handler after applying these edits to the request
    /// headers.
    Continue(HeaderEdits),
    /// Answer with this response instead of running the handler (response
    /// hooks still apply to it).
    Respond(Response<Bytes>),
}

/// A loaded header policy: one attachment of a `header-policy` plugin, with
/// its own config, limits and warm instances. Cheap to clone; `Send + Sync`.
///
/// Hooks must run inside a tokio runtime with timers enabled: a host timer
/// backs up the epoch deadline while a guest is parked in a host call.
#[derive(Clone)]
pub struct HeaderPolicy {
    pool: Arc<Pool<HeaderPolicyBindings>>,
    memo: Arc<Remembered>,
}

/// The answers of a policy's hooks that declared their inputs
/// (`hook-inputs`), keyed by what the hook was given.
struct Remembered {
    request: Memo<Arc<RequestAnswer>>,
    response: Memo<Arc<HeaderEdits>>,
}

/// A remembered `on-request` answer.
enum RequestAnswer {
    Continue(HeaderEdits),
    Respond(StatusCode, HeaderMap, Bytes),
}

impl RequestAnswer {
    fn new(decision: Decision) -> Self {
        match decision {
            Decision::Continue(edits) => Self::Continue(edits),
            Decision::Respond(response) => {
                let (parts, body) = response.into_parts();
                Self::Respond(parts.status, parts.headers, body)
            }
        }
    }

    fn action(&self) -> RequestAction {
        match self {
            Self::Continue(edits) => RequestAction::Continue(edits.clone()),
            Self::Respond(status, headers, body) => {
                let mut response = Response::new(body.clone());
                *response.status_mut() = *status;
                *response.headers_mut() = headers.clone();
                RequestAction::Respond(response)
            }
        }
    }
}

/// What an `on-response` call will be given of the request, taken before
/// the handler consumes the request ([`HeaderPolicy::response_input`]).
pub struct ResponseInput(Option<RequestHead>);

impl std::fmt::Debug for ResponseInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "ResponseInput(declared)" } else { "ResponseInput(whole)" })
    }
}

impl std::fmt::Debug for HeaderPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderPolicy").field("plugin", &self.name()).finish()
    }
}

impl PluginRuntime {
    /// Loads the header policy `name` from `dir`: resolves `<dir>/<name>.wasm`
    /// (`-` and `_` alike), merges the optional `<dir>/<name>.toml` defaults
    /// with `config`, compiles the component (or loads it from the cache),
    /// checks that it is a `header-policy` plugin and calls its `configure`,
    /// whose rejection comes back as [`PluginError::Config`].
    ///
    /// Compilation blocks the calling thread (tens of milliseconds per new
    /// plugin): call this at startup or reload, not per request.
    pub async fn load_header_policy(
        &self,
        dir: &Path,
        name: &str,
        config: &toml::Table,
        limits: Limits,
    ) -> Result<HeaderPolicy, PluginError> {
        let pool = self.load::<HeaderPolicyBindings>(dir, name, config, limits).await?;
        Ok(HeaderPolicy::new(pool))
    }

    /// Loads the header policy `name` for `tenant`: like
    /// [`Self::load_header_policy`], from the tenant's plugin directory
    /// only and under its limits; every call is admitted by the plugin's
    /// circuit breaker and the tenant's concurrency cap, and counted in the
    /// plugin metrics. Its warm instances are its own (never shared with
    /// another attachment or tenant).
    pub async fn load_header_policy_for(
        &self,
        tenant: &Tenant,
        name: &str,
        config: &toml::Table,
    ) -> Result<HeaderPolicy, PluginError> {
        let pool = self.load_for::<HeaderPolicyBindings>(tenant, name, config).await?;
        Ok(HeaderPolicy::new(pool))
    }
}

impl HeaderPolicy {
    pub(crate) fn new(pool: Arc<Pool<HeaderPolicyBindings>>) -> Self {
        Self { pool, memo: Arc::new(Remembered { request: Memo::new(), response: Memo::new() }) }
    }

    /// The plugin's name, as attached.
    pub fn name(&self) -> &str {
        self.pool.name()
    }

    /// The tenant it was loaded for (`None` when loaded without one).
    pub fn tenant(&self) -> Option<&str> {
        self.pool.tenant()
    }

    /// Runs `on-request`. On error the instance is discarded and the
    /// caller applies the attachment's failure policy.
    ///
    /// A policy that declared it does not want `on-request` is not called:
    /// the answer is `Continue` with no edits.
    ///
    /// A policy that declared its inputs (`hook-inputs`) is given only those
    /// and may be answered from memory ([`Self::on_request_remembered`]).
    pub async fn on_request(&self, req: &RequestView<'_>) -> Result<RequestAction, PluginError> {
        if !self.wants_request() {
            return Ok(RequestAction::Continue(HeaderEdits::default()));
        }
        if let Some(result) = self.on_request_remembered(req).await {
            return result;
        }
        self.on_request_with(&HookRequest::for_policies(req, [self])).await
    }

    /// [`Self::on_request`] for a request converted once already.
    pub async fn on_request_with(&self, req: &HookRequest) -> Result<RequestAction, PluginError> {
        if !self.wants_request() {
            return Ok(RequestAction::Continue(HeaderEdits::default()));
        }
        debug_assert!(req.has_headers || !self.wants_request_headers(), "{self:?} needs the request headers");
        match self.call_request(&req.head).await? {
            Decision::Continue(edits) => Ok(RequestAction::Continue(edits)),
            Decision::Respond(response) => Ok(RequestAction::Respond(response)),
        }
    }

    /// Runs `on-request` on its declared inputs (`hook-inputs`), or answers
    /// from memory when the same inputs were seen before. `None` when the
    /// policy declared none: then call [`Self::on_request_with`].
    pub async fn on_request_remembered(&self, req: &RequestView<'_>) -> Option<Result<RequestAction, PluginError>> {
        let inputs = self.declared().on_request.as_ref()?;
        if !self.wants_request() {
            return Some(Ok(RequestAction::Continue(HeaderEdits::default())));
        }
        let key = inputs.key(req).finish();
        if let Some(answer) = self.memo.request.get(&key) {
            self.pool.remembered("on-request");
            return Some(Ok(answer.action()));
        }
        let answer = match self.call_request(&inputs.head(req)).await {
            Ok(decision) => Arc::new(RequestAnswer::new(decision)),
            Err(e) => return Some(Err(e)),
        };
        self.memo.request.put(key, answer.clone());
        Some(Ok(answer.action()))
    }

    /// A call into the guest. Its future (wasmtime's call, the pool's
    /// admission) is kilobytes: boxed, so that the futures of the callers,
    /// which every request carries through the pipeline, stay small.
    async fn call_request(&self, head: &RequestHead) -> Result<Decision, PluginError> {
        const HOOK: &str = "on-request";
        Box::pin(async move {
            let call = |mut i: Instance<HeaderPolicyBindings>| async move {
                let result = i.bindings.hooks().call_on_request(&mut i.store, head).await;
                (i, result)
            };
            let decision = self.pool.call(HOOK, call).await?;
            convert::decision(decision).map_err(|message| self.invalid(HOOK, message))
        })
        .await
    }

    /// Whether `on-response` takes the whole converted request
    /// ([`HookRequest`]) rather than its declared inputs.
    pub fn response_needs_whole_request(&self) -> bool {
        self.wants_response() && self.declared().on_response.is_none()
    }

    /// What `on-response` will be given of `req`: its declared inputs, or
    /// (none declared) the [`HookRequest`] passed to
    /// [`Self::on_response_from`].
    pub fn response_input(&self, req: &RequestView<'_>) -> ResponseInput {
        ResponseInput(self.declared().on_response.as_ref().map(|(inputs, _)| inputs.head(req)))
    }

    /// Runs `on-response` like [`Self::on_response_with`], on what
    /// [`Self::response_input`] took (`whole` must be given when that is
    /// the whole request); a policy with declared inputs is answered from
    /// memory when the same request inputs, status and response headers
    /// were seen before.
    pub async fn on_response_from(
        &self,
        input: &ResponseInput,
        whole: Option<&HookRequest>,
        status: StatusCode,
        headers: &mut HeaderMap,
    ) -> Result<(), PluginError> {
        const HOOK: &str = "on-response";
        if !self.wants_response() {
            return Ok(());
        }
        let (Some(head), Some((_, names))) = (&input.0, &self.declared().on_response) else {
            let Some(whole) = whole else {
                tracing::error!(plugin = self.name(), "internal: on-response without its request");
                return Err(self.invalid(HOOK, "gale lost the request head".into()));
            };
            return self.on_response_with(whole, status, headers).await;
        };
        let response =
            super::bindings::types::ResponseHead { status: status.as_u16(), headers: memo::select(headers, names) };
        let key = Key::default().head(head).number(u64::from(response.status)).headers(&response.headers).finish();
        if let Some(edits) = self.memo.response.get(&key) {
            self.pool.remembered("on-response");
            edits.apply(headers);
            return Ok(());
        }
        let edits = Arc::new(self.call_response(head, &response).await?);
        edits.apply(headers);
        self.memo.response.put(key, edits);
        Ok(())
    }

    /// Runs `on-response` and applies its edits to `headers` (which the
    /// hook also sees, with `status`). On error `headers` is untouched.
    ///
    /// A policy that declared it does not want `on-response` is not called.
    pub async fn on_response(
        &self,
        req: &RequestView<'_>,
        status: StatusCode,
        headers: &mut HeaderMap,
    ) -> Result<(), PluginError> {
        if !self.wants_response() {
            return Ok(());
        }
        let input = self.response_input(req);
        let whole = self.response_needs_whole_request().then(|| HookRequest::for_policies(req, [self]));
        self.on_response_from(&input, whole.as_ref(), status, headers).await
    }

    /// [`Self::on_response`] for a request converted once already.
    pub async fn on_response_with(
        &self,
        req: &HookRequest,
        status: StatusCode,
        headers: &mut HeaderMap,
    ) -> Result<(), PluginError> {
        if !self.wants_response() {
            return Ok(());
        }
        debug_assert!(req.has_headers || !self.wants_request_headers(), "{self:?} needs the request headers");
        let response = convert::response_head(status, headers, self.wanted().response_headers);
        self.call_response(&req.head, &response).await?.apply(headers);
        Ok(())
    }

    async fn call_response(
        &self,
        head: &RequestHead,
        response: &super::bindings::types::ResponseHead,
    ) -> Result<HeaderEdits, PluginError> {
        const HOOK: &str = "on-response";
        // Boxed like `call_request`'s.
        Box::pin(async move {
            let call = |mut i: Instance<HeaderPolicyBindings>| async move {
                let result = i.bindings.hooks().call_on_response(&mut i.store, head, response).await;
                (i, result)
            };
            let ops = self.pool.call(HOOK, call).await?;
            convert::edits(ops).map_err(|message| self.invalid(HOOK, message))
        })
        .await
    }

    /// Whether `on-request` is called: false when the plugin exports
    /// `header-interest` and its configuration needs no request hook.
    pub fn wants_request(&self) -> bool {
        self.wanted().request
    }

    /// Whether `on-response` is called (see [`Self::wants_request`]).
    pub fn wants_response(&self) -> bool {
        self.wanted().response
    }

    /// Whether the hooks read the request headers: false when the plugin
    /// declared (`header-interest`) that they do not; then a
    /// [`HookRequest`] built for it alone carries none.
    pub fn wants_request_headers(&self) -> bool {
        self.wanted().request_headers
    }

    fn wanted(&self) -> WantedHooks {
        self.declared().wanted
    }

    pub(crate) fn declared(&self) -> &HeaderDeclared {
        self.pool.declared()
    }

    #[cfg(test)]
    pub(crate) fn remembered(&self) -> (usize, usize) {
        (self.memo.request.len(), self.memo.response.len())
    }

    /// The plugin's counters (from `host.counter-add`), sorted by name.
    pub fn counters(&self) -> Vec<(String, u64)> {
        self.pool.shared.counters()
    }

    fn invalid(&self, hook: &'static str, message: String) -> PluginError {
        PluginError::InvalidOutput { plugin: self.name().to_owned(), hook, message }
    }

    #[cfg(test)]
    pub(crate) fn idle_instances(&self) -> usize {
        self.pool.idle_count()
    }
}
