//! The `header-policy` world: [`HeaderPolicy`] and [`header_policy!`](crate::header_policy).

use serde::de::DeserializeOwned;

use crate::types::{HeaderOp, LocalResponse, RequestHead, RequestInputs, ResponseHead};

/// What to do with a request: WIT's `request-decision`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go on to the handler after these edits of the request headers.
    Continue(Vec<HeaderOp>),
    /// Answer with this response; the handler never runs (response hooks do).
    Respond(LocalResponse),
}

impl Decision {
    /// Go on unchanged.
    pub fn next() -> Self {
        Decision::Continue(Vec::new())
    }

    /// Answer `status` with a `text/plain` `body`.
    pub fn respond(status: u16, body: &str) -> Self {
        Decision::Respond(LocalResponse::text(status, body))
    }
}

impl Default for Decision {
    fn default() -> Self {
        Self::next()
    }
}

/// Which hooks gale calls and which header lists it copies in (WIT's
/// `header-interest`); only exported by `header_policy!(T, selective)` and
/// `header_policy!(T, remember)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    /// Call `on_request`.
    pub on_request: bool,
    /// Call `on_response`.
    pub on_response: bool,
    /// The hooks read the request's headers.
    pub request_headers: bool,
    /// `on_response` reads the response's headers.
    pub response_headers: bool,
}

impl Interest {
    /// Everything: every hook, with every header.
    pub const ALL: Interest =
        Interest { on_request: true, on_response: true, request_headers: true, response_headers: true };
}

/// What `on_response` reads (WIT's `response-inputs`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResponseInputs {
    /// The parts of the request.
    pub request: RequestInputs,
    /// The lower-case names of the response headers (the status is always given).
    pub headers: Vec<String>,
}

/// The inputs of each hook (WIT's `hook-inputs.declaration`); `None` for a
/// hook called every time with everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Declaration {
    /// The inputs of `on_request`.
    pub on_request: Option<RequestInputs>,
    /// The inputs of `on_response`.
    pub on_response: Option<ResponseInputs>,
}

/// A header policy: built from its configuration once per instance, then
/// called for each request and response of the locations it is attached to.
///
/// Export it with [`header_policy!`](crate::header_policy).
pub trait HeaderPolicy: Sized + 'static {
    /// The attachment's TOML table (merged over `<plugin>.toml`); gale hands
    /// it over as JSON, parsed with serde. A parse error rejects the config.
    type Config: DeserializeOwned;

    /// Validates the configuration; `Err(message)` rejects it (`gale check`
    /// and startup fail and show the message).
    fn new(config: Self::Config) -> Result<Self, String>;

    /// Called for each request before its handler. Default: go on unchanged.
    fn on_request(&self, request: &RequestHead) -> Decision {
        let _ = request;
        Decision::next()
    }

    /// Called for each response before it is sent: edits of its headers.
    /// Default: none.
    fn on_response(&self, request: &RequestHead, response: &ResponseHead) -> Vec<HeaderOp> {
        let _ = (request, response);
        Vec::new()
    }

    /// What gale should call and copy in, asked once per attachment after
    /// `new` (`header_policy!(T, selective | remember)` only). Default: all.
    fn interest(&self) -> Interest {
        Interest::ALL
    }

    /// What each hook reads, so that gale may remember its answers, asked once
    /// per attachment (`header_policy!(T, remember)` only). A hook is given
    /// only what is declared here. Default: nothing declared, every call made.
    fn inputs(&self) -> Declaration {
        Declaration::default()
    }
}

/// Exports a [`HeaderPolicy`] as the component's world.
///
/// - `header_policy!(T)`: world `header-policy`, every hook with everything.
/// - `header_policy!(T, selective)`: world `selective-header-policy`, gale
///   calls only what [`HeaderPolicy::interest`] names.
/// - `header_policy!(T, remember)`: world `memoizable-header-policy`, also
///   [`HeaderPolicy::inputs`]: gale remembers the declared hooks' answers.
///
/// ```
/// use gale_plugin::{HeaderOp, HeaderPolicy, Interest, RequestHead, ResponseHead};
///
/// /// Security headers only: gale never calls `on_request`, copies no header list.
/// #[derive(serde::Deserialize)]
/// struct Secure {}
///
/// impl HeaderPolicy for Secure {
///     type Config = Self;
///     fn new(config: Self) -> Result<Self, String> { Ok(config) }
///     fn on_response(&self, _: &RequestHead, _: &ResponseHead) -> Vec<HeaderOp> {
///         vec![HeaderOp::set("x-content-type-options", "nosniff")]
///     }
///     fn interest(&self) -> Interest {
///         Interest { on_request: false, on_response: true, request_headers: false, response_headers: false }
///     }
/// }
///
/// gale_plugin::header_policy!(Secure, selective);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! header_policy {
    ($plugin:ty) => {
        $crate::__with_wit!(__private_header_glue "gale:plugin/header-policy" plain $plugin);
    };
    ($plugin:ty, selective) => {
        $crate::__with_wit!(__private_header_glue "gale:plugin/selective-header-policy" selective $plugin);
    };
    ($plugin:ty, remember) => {
        $crate::__with_wit!(__private_header_glue "gale:plugin/memoizable-header-policy" remember $plugin);
    };
}

/// The glue of a header policy (the callback of `__with_wit!`).
#[doc(hidden)]
#[macro_export]
macro_rules! __private_header_glue {
    ($wit:tt $world:tt $mode:ident $plugin:ty) => {
        /// The bindings and exports generated by `gale_plugin::header_policy!`.
        // The generated glue exports raw C-ABI functions, which needs `unsafe`.
        #[allow(unsafe_code)]
        #[doc(hidden)]
        mod __gale_plugin_glue {
            $crate::__private::wit_bindgen::generate!({
                inline: $wit,
                world: $world,
                with: {
                    "gale:plugin/types@0.1.0": ::gale_plugin::__private::types,
                    "gale:plugin/host@0.1.0": ::gale_plugin::__private::host,
                },
                runtime_path: "::gale_plugin::__private::wit_bindgen::rt",
            });

            #[allow(unused_imports)]
            use super::*;
            use exports::gale::plugin::header_hooks::{Guest, RequestDecision};

            type Plugin = $plugin;
            struct Glue;

            thread_local! {
                static PLUGIN: $crate::__private::Slot<Plugin> = const { $crate::__private::Slot::new() };
            }

            impl Guest for Glue {
                fn configure(config: String) -> Result<(), String> {
                    let plugin = $crate::__private::configure(&config, <Plugin as $crate::HeaderPolicy>::new)?;
                    PLUGIN.with(|p| p.set(plugin));
                    Ok(())
                }

                fn on_request(head: $crate::RequestHead) -> RequestDecision {
                    match PLUGIN.with(|p| p.with(|p| <Plugin as $crate::HeaderPolicy>::on_request(p, &head))) {
                        $crate::Decision::Continue(ops) => RequestDecision::Continue(ops),
                        $crate::Decision::Respond(response) => RequestDecision::Respond(response),
                    }
                }

                fn on_response(head: $crate::RequestHead, response: $crate::ResponseHead) -> Vec<$crate::HeaderOp> {
                    PLUGIN.with(|p| p.with(|p| <Plugin as $crate::HeaderPolicy>::on_response(p, &head, &response)))
                }
            }

            $crate::__private_header_extra!($mode);

            export!(Glue with_types_in self);
        }
    };
}

/// The optional exports of the selective and memoizable worlds.
#[doc(hidden)]
#[macro_export]
macro_rules! __private_header_extra {
    (plain) => {};
    (selective) => {
        impl exports::gale::plugin::header_interest::Guest for Glue {
            fn declare() -> exports::gale::plugin::header_interest::Interest {
                use exports::gale::plugin::header_interest::Interest as I;
                let want = PLUGIN.with(|p| p.with(<Plugin as $crate::HeaderPolicy>::interest));
                let pick = |on: bool, flag: I| if on { flag } else { I::empty() };
                pick(want.on_request, I::ON_REQUEST)
                    | pick(want.on_response, I::ON_RESPONSE)
                    | pick(want.request_headers, I::REQUEST_HEADERS)
                    | pick(want.response_headers, I::RESPONSE_HEADERS)
            }
        }
    };
    (remember) => {
        $crate::__private_header_extra!(selective);

        impl exports::gale::plugin::hook_inputs::Guest for Glue {
            fn declare_inputs() -> exports::gale::plugin::hook_inputs::Declaration {
                use exports::gale::plugin::hook_inputs::{Declaration, ResponseInputs};
                let inputs = PLUGIN.with(|p| p.with(<Plugin as $crate::HeaderPolicy>::inputs));
                Declaration {
                    on_request: inputs.on_request,
                    on_response: inputs.on_response.map(|r| ResponseInputs { request: r.request, headers: r.headers }),
                }
            }
        }
    };
}
