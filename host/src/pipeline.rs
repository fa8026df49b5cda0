//! The request pipeline: the one place that knows the order of phases, and
//! the one place that lists it (lib.rs and docs/architecture.md point here).
//! Before it, `server.rs` and `framing/sniff.rs` have answered what never
//! becomes a request (408 for a stalled head, 414 for a long target, hyper's
//! own 400/431).
//!
//! 1. framing: strict HTTP/1.1 checks on the head, with the raw-byte
//!    tracker's verdict (400)
//! 2. route: server block by Host on this listener (a `redirect_http` server
//!    answers 301), location by the path's normal form (`uri_path`: 400 when
//!    it has none; 404 when no location matches)
//!    - hooks: the location's header policies' `on-request`, in order, under
//!      their tenant's containment (a local answer ends the request here;
//!      a failure is `on_error`'s 503 or a skip)
//!    - headers (proxy and upload): the client's `Connection` options out,
//!      gale's forwarding headers in, then the plugins' edits
//! 3. limits: URI size (414), declared body size (413)
//! 4. handler, by location kind:
//!    - proxy: `proxy::forward` to an upstream pool (backend choice, retry
//!      per `next_upstream`: 502, 504; body limits while streaming: 413,
//!      408; a 101 becomes a tunnel)
//!    - static: `static_files::serve` (200/206/304/403/404/416), with the
//!      cache policy's headers
//!    - upload: `upload::receive` (stores the files, the field policy writes
//!      the form), then the form to the upstream pool
//!    - hooks: the header policies' `on-response`, in the same order
//! 5. finish: gzip (`compress`), the server's metrics, the access log line
//!    when the response body ends
//!
//! Any failure becomes a response in `error.rs`. Router, upstream and proxy
//! are leaves: they do not call each other; only this module calls them.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyDataStream, BodyExt};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use crate::access_log::{AccessLog, Entry};
use crate::body::{BoxError, ClientBody, ResponseBody, UpstreamRequestBody};
use crate::compress;
use crate::config::{Handler, Location, OnError, UploadRoute};
use crate::error::GaleError;
use crate::framing::{self, sniff::Verdicts};
use crate::plugin::{self, Consequence, HookRequest, PluginError, RequestAction, RequestView, ResponseInput};
use crate::proxy::ProxyError;
use crate::proxy::{self, ProxyRequest, Upgrade};
use crate::router;
use crate::site::{Hook, ListenerKey, Site};
use crate::static_files;
use crate::upload::{self, FieldPolicy, NativeFieldPolicy, RequestCheck};
use crate::uri_path;

/// What gale knows about the client connection a request came in on.
#[derive(Debug)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    /// The listener the connection came in on.
    pub listener: ListenerKey,
    pub scheme: &'static str,
    /// Raw-framing verdicts for this connection's requests, in order.
    pub verdicts: Verdicts,
}

/// Handles one request from start to finish; never fails: errors become
/// responses.
pub async fn handle(site: Arc<Site>, conn: Arc<ConnInfo>, req: Request<Incoming>) -> Response<ResponseBody> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let entry = site.access_log.enabled().then(|| Entry {
        remote: conn.remote,
        start: time::OffsetDateTime::now_utc(),
        method: parts.method.to_string(),
        target: parts.uri.path_and_query().map_or_else(|| parts.uri.to_string(), |pq| pq.to_string()),
        version: parts.version,
        status: 0,
        bytes_sent: 0,
        referer: header_text(&parts.headers, header::REFERER),
        user_agent: header_text(&parts.headers, header::USER_AGENT),
        duration: Default::default(),
    });

    // What gzip needs to know about the request, kept before `run` takes it.
    let gzip_request = site.config.http.gzip.as_ref().map(|_| {
        let mut h = http::HeaderMap::new();
        for name in [header::ACCEPT_ENCODING, header::VIA] {
            for v in parts.headers.get_all(&name) {
                h.append(name.clone(), v.clone());
            }
        }
        (parts.method.clone(), parts.version, h)
    });
    let mut server = None;
    let resp = match run(&site, &conn, parts, body, &mut server).await {
        Ok(resp) => resp,
        Err(e) => {
            let status = e.status();
            if let GaleError::Plugin(_) = e {
                // Logged where the attachment's failure policy was applied,
                // repeats rate-limited: a client that makes a plugin fail on
                // every request must not write a line per request.
                tracing::debug!(client = %conn.remote, status = status.as_u16(), error = %e, "request failed");
            } else if status.is_server_error() {
                tracing::error!(client = %conn.remote, status = status.as_u16(), error = %e, "request failed");
            } else {
                tracing::info!(client = %conn.remote, status = status.as_u16(), error = %e, "request refused");
            }
            e.to_response()
        }
    };

    // 5. finish: gzip, metrics, access log.
    let resp = match (&site.config.http.gzip, gzip_request) {
        (Some(cfg), Some((method, version, req_headers))) => {
            let decision = compress::decide(cfg, &method, version, &req_headers, resp.status(), resp.headers());
            compress::apply(cfg, decision, resp).map(|b| b.boxed_unsync())
        }
        _ => resp,
    };
    if let Some(i) = server {
        site.server_metrics[i].response(resp.status().as_u16());
    }
    match entry {
        Some(mut entry) => {
            entry.status = resp.status().as_u16();
            let (head, body) = resp.into_parts();
            let logged = Logged { inner: body, entry: Some(entry), started, log: site.access_log.clone() };
            Response::from_parts(head, logged.boxed_unsync())
        }
        None => resp,
    }
}

/// `redirect_http`: 301 to the same host and target over https.
fn redirect_to_https(host: &str, uri: &http::Uri, port: u16) -> Response<ResponseBody> {
    let name = router::host_for_matching(host);
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let location =
        if port == 443 { format!("https://{name}{target}") } else { format!("https://{name}:{port}{target}") };
    let mut resp = crate::error::error_page(http::StatusCode::MOVED_PERMANENTLY);
    if let Ok(v) = http::HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// An HTTP/1.1 request asking to switch protocols (`Connection: upgrade`
/// plus `Upgrade`), such as a WebSocket handshake.
fn wants_upgrade(parts: &http::request::Parts) -> bool {
    parts.version == http::Version::HTTP_11
        && parts.headers.contains_key(header::UPGRADE)
        && parts
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// The request target with its path in normal form (`uri_path`), or `None`
/// when the client already wrote it so (no allocation).
fn normal_form(uri: &http::Uri, merge_slashes: bool) -> Result<Option<http::Uri>, GaleError> {
    let std::borrow::Cow::Owned(path) = uri_path::normalise(uri.path(), merge_slashes)? else {
        return Ok(None);
    };
    let target = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    // A normal form holds only characters the client's path held (escapes
    // of unreserved characters are decoded to themselves), so it parses.
    let pq = http::uri::PathAndQuery::try_from(target).map_err(|_| uri_path::NormaliseError::BadEscape)?;
    Ok(Some(http::Uri::from(pq)))
}

/// What the plugin hooks (header and cache policies) see of the request as
/// it stands: the path in normal form when it differs from the client's.
fn hook_view<'a>(
    parts: &'a http::request::Parts,
    normal_uri: Option<&'a http::Uri>,
    conn: &ConnInfo,
    host: &'a str,
) -> RequestView<'a> {
    RequestView {
        method: &parts.method,
        uri: normal_uri.unwrap_or(&parts.uri),
        headers: &parts.headers,
        remote_addr: conn.remote,
        scheme: conn.scheme,
        host,
    }
}

fn header_text(h: &http::HeaderMap, name: header::HeaderName) -> Option<String> {
    h.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

async fn run(
    site: &Site,
    conn: &ConnInfo,
    mut parts: http::request::Parts,
    body: Incoming,
    server_out: &mut Option<usize>,
) -> Result<Response<ResponseBody>, GaleError> {
    let http = &site.config.http;
    let listener = site.listener_index(conn.listener).ok_or(GaleError::ListenerGone)?;

    // 1. framing
    framing::check(&mut parts, conn.verdicts.next())?;
    let target_len = parts.uri.path_and_query().map_or(0, |pq| pq.as_str().len()) as u64;
    if target_len > http.max_uri_size.bytes() {
        return Err(GaleError::UriTooLong { limit: http.max_uri_size.bytes() });
    }

    // 2. route
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| header_text(&parts.headers, header::HOST))
        .unwrap_or_default();
    let (server_index, server) = site.routes[listener].server(&site.config, &router::host_for_matching(&host));
    *server_out = Some(server_index);
    if host.is_empty() {
        // An HTTP/1.0 request without Host: the backend speaks HTTP/1.1,
        // which requires one; use the server's name (nginx's `$host`).
        let name = server.names.iter().find_map(|n| match n {
            crate::config::ServerName::Exact(name) => Some(name.clone()),
            crate::config::ServerName::Wildcard(_) => None,
        });
        let fallback = name.unwrap_or_else(|| site.config.listeners[listener].addr.to_string());
        if let Ok(v) = http::HeaderValue::from_str(&fallback) {
            parts.headers.insert(header::HOST, v);
        }
    }
    if server.redirect_http {
        return Ok(redirect_to_https(&host, &parts.uri, site.https_port()));
    }
    // The location, static files and plugins go by the normal form of the
    // path (`uri_path`); the upstream is still sent the client's bytes.
    // `None`: the path already is in normal form.
    let normal_uri = normal_form(&parts.uri, http.merge_slashes)?;
    let normal_uri = normal_uri.as_ref();
    let path = normal_uri.unwrap_or(&parts.uri).path();
    let (location_index, location) = router::location(server, path).ok_or(GaleError::NoLocation)?;

    // 2. request hooks (they see the host as nginx's `$host`: no port).
    // A hook that declared its inputs is given only those (and may be
    // answered from memory); the others share one conversion of the whole
    // request, made only when one of them runs. The response hooks take
    // what they need of the request now, after the request edits.
    let hooks = &site.locations[server_index][location_index].hooks;
    let host_name = router::host_for_matching(&host);
    let mut early: Option<Response<ResponseBody>> = None;
    let mut response_inputs: Vec<(&Hook, ResponseInput)> = Vec::new();
    let mut whole_request: Option<HookRequest> = None;
    let mut edits = Vec::new();
    let policies = || hooks.iter().map(|hook| &hook.policy);
    if !hooks.is_empty() {
        let view = hook_view(&parts, normal_uri, conn, &host_name);
        for hook in hooks.iter().filter(|hook| hook.policy.wants_request()) {
            let result = match hook.policy.on_request_remembered(&view).await {
                Some(result) => result,
                None => {
                    let whole = whole_request.get_or_insert_with(|| HookRequest::for_policies(&view, policies()));
                    hook.policy.on_request_with(whole).await
                }
            };
            match result {
                Ok(RequestAction::Continue(e)) if e.is_empty() => {}
                Ok(RequestAction::Continue(e)) => edits.push(e),
                Ok(RequestAction::Respond(resp)) => {
                    early = Some(resp.map(crate::body::full));
                    break;
                }
                Err(e) => plugin_failed(hook, e)?,
            }
        }
    }
    // The headers as they will cross (proxy/headers.rs): the client's
    // `Connection` options go first, gale's own headers come next and the
    // plugins' edits last, so a client cannot name away what gale or a
    // plugin adds.
    let forwards = matches!(location.handler, Handler::Proxy(_) | Handler::Upload(_));
    if forwards {
        proxy::headers::strip_connection_options(&mut parts.headers);
        proxy::headers::set_forwarding(&mut parts.headers, parts.uri.authority(), conn.remote.ip(), conn.scheme);
    }
    for e in &edits {
        e.apply(&mut parts.headers);
    }
    if !hooks.is_empty() {
        if forwards || !edits.is_empty() {
            whole_request = None;
        }
        let view = hook_view(&parts, normal_uri, conn, &host_name);
        response_inputs = hooks
            .iter()
            .filter(|hook| hook.policy.wants_response())
            .map(|hook| (hook, hook.policy.response_input(&view)))
            .collect();
        if hooks.iter().any(|hook| hook.policy.response_needs_whole_request()) {
            // What the response hooks see of the request: after the edits.
            whole_request = Some(match whole_request {
                Some(whole) => whole,
                None => HookRequest::for_policies(&view, policies()),
            });
        }
    }

    // 3. handler, unless a plugin answered already
    let mut resp = match early {
        Some(resp) => resp,
        None => {
            let at = (server_index, location_index);
            dispatch(site, conn, at, location, &host_name, normal_uri, parts, body).await?
        }
    };

    // 4. response hooks (also on a plugin's own answer)
    for (hook, input) in &response_inputs {
        let status = resp.status();
        if let Err(e) = hook.policy.on_response_from(input, whole_request.as_ref(), status, resp.headers_mut()).await {
            plugin_failed(hook, e)?;
        }
    }
    Ok(resp)
}

/// Applies an attachment's failure policy to this request only:
/// fail-closed answers 503, fail-open skips the plugin. Either way the error
/// log names the tenant, the plugin, the hook and what went wrong, once per
/// interval for repeats (see `plugin::log_failure`).
fn plugin_failed(hook: &Hook, e: PluginError) -> Result<(), GaleError> {
    let tenant = hook.policy.tenant();
    match hook.on_error {
        OnError::FailOpen => {
            plugin::log_failure(tenant, &e, Consequence::Skipped("skipped"));
            Ok(())
        }
        OnError::FailClosed => {
            plugin::log_failure(tenant, &e, Consequence::Refused);
            Err(GaleError::Plugin(e))
        }
    }
}

/// Phases 3 and 4 of one location: body limits, then its handler.
#[allow(clippy::too_many_arguments)]
async fn dispatch(
    site: &Site,
    conn: &ConnInfo,
    (server_index, location_index): (usize, usize),
    location: &Location,
    host: &str,
    normal_uri: Option<&http::Uri>,
    mut parts: http::request::Parts,
    body: Incoming,
) -> Result<Response<ResponseBody>, GaleError> {
    let http = &site.config.http;
    // limits
    let limit = http.client_max_body_size.bytes();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(declared) = declared
        && declared > limit
    {
        return Err(GaleError::BodyTooLarge { declared, limit });
    }
    let has_body = declared.is_some_and(|n| n > 0) || parts.headers.contains_key(header::TRANSFER_ENCODING);

    // handler
    match &location.handler {
        Handler::Proxy(route) => {
            // An upgrade to a protocol the route does not allow (`h2c`, say)
            // goes upstream as a plain request, without `Upgrade`.
            let protocol = wants_upgrade(&parts)
                .then(|| proxy::headers::allowed_upgrade(&parts.headers, &route.allow_upgrade))
                .flatten();
            let upgrade = match protocol {
                Some(protocol) => {
                    let slot = site.locations[server_index][location_index]
                        .tunnels
                        .try_take()
                        .ok_or(GaleError::TooManyTunnels)?;
                    parts.extensions.remove::<OnUpgrade>().map(|client| Upgrade {
                        protocol,
                        client,
                        slot,
                        idle_timeout: route.tunnel_idle_timeout,
                    })
                }
                None => None,
            };
            let fault = Arc::new(OnceLock::new());
            let body = if has_body {
                UpstreamRequestBody::Client(ClientBody::new(body, limit, http.client_body_timeout, fault.clone()))
            } else {
                UpstreamRequestBody::Empty
            };
            let req = ProxyRequest { parts, body, has_body, fault, upgrade };
            Ok(proxy::forward(&site.upstreams[route.upstream.0], req).await?)
        }
        Handler::Upload(route) => {
            let policy = site.locations[server_index][location_index].field_policy.clone();
            // Boxed: the upload's future (parser, store, writers) is several
            // times the proxy's, and would otherwise size every request's.
            Box::pin(upload(site, route, policy, parts, body)).await
        }
        Handler::Static(cfg) => {
            let path = normal_uri.unwrap_or(&parts.uri).path();
            let served = static_files::serve(cfg, location.matcher.path(), path, &parts).await?;
            let mut response = served.response;
            // The cache-policy plugin decides the caching headers.
            if let (Some(cache), Some(meta)) = (&site.locations[server_index][location_index].cache, &served.meta) {
                let status = response.status();
                cache.apply(&hook_view(&parts, normal_uri, conn, host), meta, status, response.headers_mut()).await?;
            }
            Ok(response.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync()))
        }
    }
}

/// Phase 4 for an upload location: take the multipart body, store its files,
/// send the upstream the rewritten form, then clean up by the final status
/// (nginx-upload-module's `upload_pass` + `upload_cleanup`).
async fn upload(
    site: &Site,
    route: &UploadRoute,
    policy: Option<Arc<dyn FieldPolicy>>,
    mut parts: http::request::Parts,
    body: Incoming,
) -> Result<Response<ResponseBody>, GaleError> {
    let request = match upload::check_request(&parts, &route.config.limits)? {
        RequestCheck::Options => {
            let mut resp = Response::new(crate::body::empty());
            resp.headers_mut().insert(header::CONTENT_LENGTH, http::HeaderValue::from_static("0"));
            return Ok(resp);
        }
        RequestCheck::Upload(r) => r,
    };
    let policy = policy.unwrap_or_else(|| Arc::new(NativeFieldPolicy::reference()));
    let http = &site.config.http;
    let fault = Arc::new(OnceLock::new());
    let stream = BodyDataStream::new(ClientBody::new(
        body,
        route.config.limits.max_body_bytes,
        http.client_body_timeout,
        fault.clone(),
    ));
    let received = match upload::receive(stream, &request, &route.config, policy.as_ref()).await {
        Ok(r) => r,
        // The body's own fault (too large, too slow, client gone) says more
        // than the parser's "body error".
        Err(e) => {
            if let Some(f) = fault.get() {
                return Err(GaleError::Proxy(ProxyError::ClientBody(*f)));
            }
            // A fail-closed upload-fields plugin failed: 503, like any plugin.
            return Err(match e {
                upload::UploadError::Policy(p) => match p.downcast::<PluginError>() {
                    Ok(plugin) => GaleError::Plugin(*plugin),
                    Err(p) => GaleError::Upload(upload::UploadError::Policy(p)),
                },
                e => GaleError::Upload(e),
            });
        }
    };
    // Declared first, so a client that leaves mid-exchange drops the
    // upstream exchange before the files (the 499 rule).
    let files = received.files;
    parts.headers.insert(header::CONTENT_TYPE, received.content_type);
    parts.headers.remove(header::EXPECT);
    let req = ProxyRequest {
        parts,
        body: UpstreamRequestBody::Full(Some(received.body)),
        has_body: true,
        fault: Arc::new(OnceLock::new()),
        upgrade: None,
    };
    let result = proxy::forward(&site.upstreams[route.upstream.0], req).await.map_err(GaleError::from);
    let status = match &result {
        Ok(resp) => resp.status().as_u16(),
        Err(e) => e.status().as_u16(),
    };
    // Like nginx-upload-module (its cleanup runs when the request is finalized), the files go
    // after the answer: unlinking a 1 GiB file takes about half a second, which the client
    // should not wait for.
    // The outcome at debug level: the only sign that files were kept on purpose.
    drop(tokio::spawn(async move {
        let outcome = files.finish(status).await;
        tracing::debug!("upload cleanup after {status}: {outcome:?}");
    }));
    result
}

/// Phase 5, finish: counts the bytes sent and writes the access log line
/// when the response body ends or is dropped (client gone).
struct Logged {
    inner: ResponseBody,
    entry: Option<Entry>,
    started: Instant,
    log: AccessLog,
}

impl Drop for Logged {
    fn drop(&mut self) {
        if let Some(mut e) = self.entry.take() {
            e.duration = self.started.elapsed();
            self.log.write(&e);
        }
    }
}

impl Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r
            && let Some(d) = f.data_ref()
            && let Some(e) = self.entry.as_mut()
        {
            e.bytes_sent += d.len() as u64;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
