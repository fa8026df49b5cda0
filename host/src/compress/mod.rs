//! gzip for proxied and static responses, with nginx's `gzip` module meanings.
//!
//! Two steps, so the pipeline can decide from the response head alone and then wrap the body:
//! [`decide`] (or [`should_compress`]) looks at the request and the response head; [`apply`]
//! (or [`compress`]) rewrites the head and wraps the body in a streaming [`GzipBody`].
//!
//! The rules and where they differ from nginx are in `docs/static-and-gzip.md`.

mod accept;
mod body;
mod config;

#[cfg(test)]
mod tests;

use std::time::SystemTime;

use http::header::{
    ACCEPT_RANGES, AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, DATE, ETAG, EXPIRES, LAST_MODIFIED,
    VARY, VIA,
};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Version};

pub use body::{BoxError, GzipBody};
pub use config::{GzipConfig, GzipConfigError, GzipOptions, GzipProxied, GzipTypes, OneOrMany};

/// What the gzip stage does with one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GzipDecision {
    /// Compress it (and add `Vary: Accept-Encoding`).
    Compress,
    /// A HEAD request whose GET would be compressed: the head a compressed
    /// response has (RFC 9110 9.3.2: the same header fields as GET), no body.
    CompressedHead,
    /// The response could have been compressed for another client: send it as it is, but add
    /// `Vary: Accept-Encoding` so caches keep the variants apart (nginx's `gzip_vary on`).
    VaryOnly,
    /// Not a candidate at all: leave it untouched.
    Skip,
}

/// Decides, in nginx's order, whether a response is compressed.
///
/// The response is a candidate when: the status is 200, 403 or 404 (the statuses nginx
/// compresses, so never 204, 206 or 304); it has no `Content-Encoding`; its `Content-Length`,
/// when known, is at least `min_length` (an unknown length is compressed); its media type
/// (without parameters) is listed; and it has no `Cache-Control: no-transform`.
/// A candidate is compressed when the request is HTTP/1.1 or later, accepts gzip with q > 0,
/// and, if it came through another proxy (has `Via`), `proxied` allows it; otherwise it only
/// gets `Vary`. A HEAD request is decided as its GET would be, and gets the head only
/// ([`GzipDecision::CompressedHead`]); nginx leaves HEAD alone, which gives it other headers
/// than GET.
pub fn decide(
    cfg: &GzipConfig,
    method: &Method,
    version: Version,
    req_headers: &HeaderMap,
    status: StatusCode,
    resp_headers: &HeaderMap,
) -> GzipDecision {
    if !matches!(status.as_u16(), 200 | 403 | 404) {
        return GzipDecision::Skip;
    }
    if resp_headers.get(CONTENT_ENCODING).is_some_and(|v| !v.is_empty()) {
        return GzipDecision::Skip;
    }
    let length =
        resp_headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    if length.is_some_and(|len| len < cfg.min_length) {
        return GzipDecision::Skip;
    }
    let content_type = resp_headers.get(CONTENT_TYPE).map_or(&[][..], |v| v.as_bytes());
    if !cfg.types.matches(content_type) {
        return GzipDecision::Skip;
    }
    if accept::has_cache_directive(resp_headers, "no-transform") {
        return GzipDecision::Skip;
    }
    if version < Version::HTTP_11 || !accept::accepts_gzip(req_headers) {
        return GzipDecision::VaryOnly;
    }
    if req_headers.contains_key(VIA) && !proxied_allows(&cfg.proxied, req_headers, resp_headers, SystemTime::now()) {
        return GzipDecision::VaryOnly;
    }
    if *method == Method::HEAD {
        return GzipDecision::CompressedHead;
    }
    GzipDecision::Compress
}

/// `decide(..) == Compress`.
pub fn should_compress(
    cfg: &GzipConfig,
    method: &Method,
    version: Version,
    req_headers: &HeaderMap,
    status: StatusCode,
    resp_headers: &HeaderMap,
) -> bool {
    decide(cfg, method, version, req_headers, status, resp_headers) == GzipDecision::Compress
}

/// nginx's `gzip_proxied` test for a request with `Via`, in nginx's order: `any`; `auth` with
/// an `Authorization` header; then, if the response has `Expires`, only `expired` with a date
/// already past decides; else, if it has `Cache-Control`, only a listed `no-cache`/`no-store`/
/// `private` directive decides; else `no_last_modified`/`no_etag` refuse when that header exists.
/// An empty set (`off`) refuses.
fn proxied_allows(p: &GzipProxied, req_headers: &HeaderMap, resp_headers: &HeaderMap, now: SystemTime) -> bool {
    if *p == GzipProxied::default() {
        return false;
    }
    if p.any || (p.auth && req_headers.contains_key(AUTHORIZATION)) {
        return true;
    }
    let date = |v: &HeaderValue| v.to_str().ok().and_then(|s| httpdate::parse_http_date(s).ok());
    if let Some(expires) = resp_headers.get(EXPIRES) {
        if !p.expired {
            return false;
        }
        let Some(expires) = date(expires) else {
            return false;
        };
        let now = match resp_headers.get(DATE) {
            Some(d) => match date(d) {
                Some(d) => d,
                None => return false,
            },
            None => now,
        };
        return expires < now;
    }
    if resp_headers.contains_key(http::header::CACHE_CONTROL) {
        return (p.no_cache && accept::has_cache_directive(resp_headers, "no-cache"))
            || (p.no_store && accept::has_cache_directive(resp_headers, "no-store"))
            || (p.private && accept::has_cache_directive(resp_headers, "private"));
    }
    if p.no_last_modified && resp_headers.contains_key(LAST_MODIFIED) {
        return false;
    }
    if p.no_etag && resp_headers.contains_key(ETAG) {
        return false;
    }
    true
}

/// Carries out a decision: compresses, adds only `Vary`, or leaves the response as it is. The
/// body type is the same in all three cases, so the pipeline has one response type.
pub fn apply<B>(cfg: &GzipConfig, decision: GzipDecision, resp: Response<B>) -> Response<GzipBody<B>> {
    match decision {
        GzipDecision::Compress => compress(cfg, resp),
        GzipDecision::CompressedHead => {
            let mut resp = resp.map(GzipBody::identity);
            gzip_head(resp.headers_mut());
            resp
        }
        GzipDecision::VaryOnly => {
            let mut resp = resp.map(GzipBody::identity);
            add_vary(resp.headers_mut());
            resp
        }
        GzipDecision::Skip => resp.map(GzipBody::identity),
    }
}

/// Compresses a response unconditionally: drops `Content-Length` and `Accept-Ranges` (the
/// encoded length is unknown and ranges would address the encoding), sets
/// `Content-Encoding: gzip`, adds `Vary: Accept-Encoding`, and makes a strong `ETag` weak (the
/// bytes differ from the identity encoding; nginx does the same and drops a malformed ETag).
pub fn compress<B>(cfg: &GzipConfig, resp: Response<B>) -> Response<GzipBody<B>> {
    let (mut head, body) = resp.into_parts();
    gzip_head(&mut head.headers);
    Response::from_parts(head, GzipBody::gzip(body, cfg.level))
}

/// The header changes of [`compress`].
fn gzip_head(h: &mut HeaderMap) {
    h.remove(CONTENT_LENGTH);
    h.remove(ACCEPT_RANGES);
    h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    add_vary(h);
    if let Some(etag) = h.get(ETAG) {
        match weak_etag(etag) {
            Some(weak) => {
                h.insert(ETAG, weak);
            }
            None => {
                h.remove(ETAG);
            }
        }
    }
}

/// `"x"` → `W/"x"`; a weak tag stays; anything else is not an entity tag (`None`).
fn weak_etag(etag: &HeaderValue) -> Option<HeaderValue> {
    let b = etag.as_bytes();
    if b.starts_with(b"W/\"") {
        return Some(etag.clone());
    }
    if b.len() >= 2 && b[0] == b'"' && b[b.len() - 1] == b'"' {
        let mut weak = Vec::with_capacity(b.len() + 2);
        weak.extend_from_slice(b"W/");
        weak.extend_from_slice(b);
        return HeaderValue::from_bytes(&weak).ok();
    }
    None
}

/// Adds `Vary: Accept-Encoding` unless a `Vary` already names it (or is `*`).
fn add_vary(headers: &mut HeaderMap) {
    let present = headers
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.eq_ignore_ascii_case("accept-encoding"));
    if !present {
        headers.append(VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}
