//! The only place that runs `bindgen!`: Rust types for the WIT package in
//! `wit/`, one module per world. Nothing outside `plugin/` sees them.
//!
//! Every world has its own module here; the later ones (cache-policy,
//! upload-fields) reuse `types` and `host` of the first through bindgen's
//! `with`, so that every world shares one `Host` implementation and one set
//! of request types.

use std::future::Future;

use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker};

use http::header::HeaderName;

use super::host::Ctx;
use super::memo::{self, Inputs};

/// Bindings of the `header-policy` world, generated from its superset
/// `memoizable-header-policy` so that the optional `header-interest` and
/// `hook-inputs` exports have types too; [`HeaderPolicyBindings`] requires
/// only `header-hooks`.
mod header_policy {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "gale:plugin/memoizable-header-policy",
        // Exports are async (they run on a fiber): WASI is linked in its
        // async flavour, so a guest parked in a host call (sleep, poll)
        // yields its tokio worker instead of blocking it. Imports (log,
        // counters) are plain functions.
        exports: { default: async },
        // Conversion tests compare WIT values.
        additional_derives: [PartialEq, Eq],
    });
}

/// Bindings of the `cache-policy` world, generated from its superset
/// `memoizable-cache-policy` (the optional `cache-inputs` export).
mod cache_policy {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "gale:plugin/memoizable-cache-policy",
        exports: { default: async },
        additional_derives: [PartialEq, Eq],
        with: {
            "gale:plugin/types": crate::plugin::bindings::header_policy::gale::plugin::types,
            "gale:plugin/host": crate::plugin::bindings::header_policy::gale::plugin::host,
        },
    });
}

/// Bindings of the `upload-fields` world.
mod upload_fields {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "gale:plugin/upload-fields",
        exports: { default: async },
        additional_derives: [PartialEq, Eq],
        with: {
            "gale:plugin/host": crate::plugin::bindings::header_policy::gale::plugin::host,
        },
    });
}

pub(crate) use cache_policy::exports::gale::plugin::{cache_hooks, cache_inputs};
pub(crate) use header_policy::exports::gale::plugin::{header_hooks, header_interest, hook_inputs};
pub(crate) use header_policy::gale::plugin::{host, types};
pub(crate) use upload_fields::UploadFields as UploadFieldsBindings;
pub(crate) use upload_fields::exports::gale::plugin::upload_hooks;

/// Adds gale's imports (the `host` and `types` interfaces) to `linker`.
/// Every world imports the same ones, so one linker serves all worlds.
pub(crate) fn add_imports(linker: &mut Linker<Ctx>) -> wasmtime::Result<()> {
    header_policy::MemoizableHeaderPolicy::add_to_linker::<Ctx, HasSelf<Ctx>>(linker, |ctx| ctx)
}

/// One instance of a `header-policy` plugin: its hooks, and its
/// `header-interest` and `hook-inputs` when it exports them (older policies
/// do not).
pub(crate) struct HeaderPolicyBindings {
    hooks: header_hooks::Guest,
    interest: Option<header_interest::Guest>,
    inputs: Option<hook_inputs::Guest>,
}

impl HeaderPolicyBindings {
    /// The `header-hooks` exports.
    pub(crate) fn hooks(&self) -> &header_hooks::Guest {
        &self.hooks
    }
}

/// A pre-instantiated `header-policy` component and where its exports are.
#[derive(Clone)]
pub(crate) struct HeaderPolicyPre {
    pre: InstancePre<Ctx>,
    hooks: header_hooks::GuestIndices,
    interest: Option<header_interest::GuestIndices>,
    inputs: Option<hook_inputs::GuestIndices>,
}

/// What the runtime needs to know about a world: how to prepare, instantiate
/// and configure it. Implemented once per world, here, next to its bindings.
pub(crate) trait World: Sized + Send + Sync + 'static {
    /// The pre-instantiated component of this world (`Clone + Send + Sync`).
    type Pre: Clone + Send + Sync + 'static;

    /// The world's name, as in `wit/`, for error messages.
    const NAME: &'static str;

    /// Checks that `pre` exports what this world needs.
    fn pre(pre: InstancePre<Ctx>) -> wasmtime::Result<Self::Pre>;

    /// A fresh instance.
    fn instantiate(pre: &Self::Pre, store: &mut Store<Ctx>) -> impl Future<Output = wasmtime::Result<Self>> + Send;

    /// Calls the world's `configure` export.
    fn configure(
        &self,
        store: &mut Store<Ctx>,
        config: &str,
    ) -> impl Future<Output = wasmtime::Result<Result<(), String>>> + Send;

    /// What a configured plugin declares about itself, asked once per
    /// attachment right after the first `configure` (see `Pool::declared`).
    type Declared: Default + Send + Sync + 'static;

    /// Asks a configured instance for its declaration.
    fn declared(&self, store: &mut Store<Ctx>) -> impl Future<Output = wasmtime::Result<Self::Declared>> + Send;
}

/// What a header policy declared it needs (`header-interest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WantedHooks {
    /// Call `on-request`.
    pub(crate) request: bool,
    /// Call `on-response`.
    pub(crate) response: bool,
    /// Pass the request headers.
    pub(crate) request_headers: bool,
    /// Pass the response headers to `on-response`.
    pub(crate) response_headers: bool,
}

impl Default for WantedHooks {
    /// Everything: what a policy without `header-interest` gets.
    fn default() -> Self {
        Self { request: true, response: true, request_headers: true, response_headers: true }
    }
}

/// What a header policy declared about itself: the hooks it wants
/// (`header-interest`) and what they read (`hook-inputs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HeaderDeclared {
    pub(crate) wanted: WantedHooks,
    /// The inputs of `on-request`, when its answers may be remembered.
    pub(crate) on_request: Option<Inputs>,
    /// The request inputs and response header names of `on-response`.
    pub(crate) on_response: Option<(Inputs, Vec<HeaderName>)>,
}

/// What a cache policy's `decide` reads (`cache-inputs`), when its
/// decisions may be remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CacheInputs {
    pub(crate) request: Inputs,
    pub(crate) query: bool,
    pub(crate) size: bool,
    pub(crate) mtime: bool,
}

impl World for HeaderPolicyBindings {
    type Pre = HeaderPolicyPre;
    type Declared = HeaderDeclared;

    const NAME: &'static str = "header-policy";

    fn pre(pre: InstancePre<Ctx>) -> wasmtime::Result<Self::Pre> {
        let hooks = header_hooks::GuestIndices::new(&pre)?;
        // Optional: a policy built against `header-policy` alone lacks it.
        let interest = header_interest::GuestIndices::new(&pre).ok();
        let inputs = hook_inputs::GuestIndices::new(&pre).ok();
        Ok(HeaderPolicyPre { pre, hooks, interest, inputs })
    }

    async fn instantiate(pre: &Self::Pre, store: &mut Store<Ctx>) -> wasmtime::Result<Self> {
        let instance = pre.pre.instantiate_async(&mut *store).await?;
        let hooks = pre.hooks.load(&mut *store, &instance)?;
        let interest = match &pre.interest {
            Some(indices) => Some(indices.load(&mut *store, &instance)?),
            None => None,
        };
        let inputs = match &pre.inputs {
            Some(indices) => Some(indices.load(&mut *store, &instance)?),
            None => None,
        };
        Ok(Self { hooks, interest, inputs })
    }

    async fn configure(&self, store: &mut Store<Ctx>, config: &str) -> wasmtime::Result<Result<(), String>> {
        self.hooks.call_configure(store, config).await
    }

    async fn declared(&self, store: &mut Store<Ctx>) -> wasmtime::Result<HeaderDeclared> {
        let mut declared = HeaderDeclared::default();
        if let Some(interest) = &self.interest {
            let flags = interest.call_declare(&mut *store).await?;
            use header_interest::Interest;
            declared.wanted = WantedHooks {
                request: flags.contains(Interest::ON_REQUEST),
                response: flags.contains(Interest::ON_RESPONSE),
                request_headers: flags.contains(Interest::REQUEST_HEADERS),
                response_headers: flags.contains(Interest::RESPONSE_HEADERS),
            };
        }
        if let Some(inputs) = &self.inputs {
            let d = inputs.call_declare_inputs(&mut *store).await?;
            declared.on_request = d.on_request.map(Inputs::from);
            declared.on_response = d.on_response.map(|r| (Inputs::from(r.request), memo::names(r.headers)));
        }
        Ok(declared)
    }
}

/// One instance of a `cache-policy` plugin: `decide`, and `cache-inputs`
/// when it exports it.
pub(crate) struct CachePolicyBindings {
    hooks: cache_hooks::Guest,
    inputs: Option<cache_inputs::Guest>,
}

impl CachePolicyBindings {
    /// The `cache-hooks` exports.
    pub(crate) fn hooks(&self) -> &cache_hooks::Guest {
        &self.hooks
    }
}

/// A pre-instantiated `cache-policy` component and where its exports are.
#[derive(Clone)]
pub(crate) struct CachePolicyPre {
    pre: InstancePre<Ctx>,
    hooks: cache_hooks::GuestIndices,
    inputs: Option<cache_inputs::GuestIndices>,
}

impl World for CachePolicyBindings {
    type Pre = CachePolicyPre;

    const NAME: &'static str = "cache-policy";

    fn pre(pre: InstancePre<Ctx>) -> wasmtime::Result<Self::Pre> {
        let hooks = cache_hooks::GuestIndices::new(&pre)?;
        let inputs = cache_inputs::GuestIndices::new(&pre).ok();
        Ok(CachePolicyPre { pre, hooks, inputs })
    }

    async fn instantiate(pre: &Self::Pre, store: &mut Store<Ctx>) -> wasmtime::Result<Self> {
        let instance = pre.pre.instantiate_async(&mut *store).await?;
        let hooks = pre.hooks.load(&mut *store, &instance)?;
        let inputs = match &pre.inputs {
            Some(indices) => Some(indices.load(&mut *store, &instance)?),
            None => None,
        };
        Ok(Self { hooks, inputs })
    }

    async fn configure(&self, store: &mut Store<Ctx>, config: &str) -> wasmtime::Result<Result<(), String>> {
        self.hooks.call_configure(store, config).await
    }

    type Declared = Option<CacheInputs>;

    async fn declared(&self, store: &mut Store<Ctx>) -> wasmtime::Result<Option<CacheInputs>> {
        let Some(inputs) = &self.inputs else {
            return Ok(None);
        };
        let declared = inputs.call_declare_inputs(store).await?;
        Ok(declared.map(|d| CacheInputs {
            request: Inputs::from(d.request),
            query: d.file.query,
            size: d.file.size,
            mtime: d.file.mtime,
        }))
    }
}

impl World for UploadFieldsBindings {
    type Pre = upload_fields::UploadFieldsPre<Ctx>;

    const NAME: &'static str = "upload-fields";

    fn pre(pre: InstancePre<Ctx>) -> wasmtime::Result<Self::Pre> {
        upload_fields::UploadFieldsPre::new(pre)
    }

    async fn instantiate(pre: &Self::Pre, store: &mut Store<Ctx>) -> wasmtime::Result<Self> {
        pre.instantiate_async(store).await
    }

    async fn configure(&self, store: &mut Store<Ctx>, config: &str) -> wasmtime::Result<Result<(), String>> {
        self.gale_plugin_upload_hooks().call_configure(store, config).await
    }

    type Declared = ();

    async fn declared(&self, _store: &mut Store<Ctx>) -> wasmtime::Result<()> {
        Ok(())
    }
}
