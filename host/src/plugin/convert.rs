//! The only place that converts between HTTP types (`http`, `bytes`,
//! `std::net`) and the WIT types of `bindings`. Everything a guest returns
//! is validated here, so a bad answer becomes an error message, never a
//! malformed message on the wire.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

use super::RequestView;
use super::bindings::cache_hooks::{CacheDecision, Expiry, FileInfo};
use super::bindings::header_hooks::RequestDecision;
use super::bindings::types::{Header, HeaderOp, LocalResponse, RequestHead, ResponseHead};
use super::bindings::upload_hooks;
use super::headers::{FRAMING_HEADERS, HeaderEdit, HeaderEdits};
use crate::static_files::{CacheHeaders, EXPIRES_MAX_CACHE_CONTROL, EXPIRES_MAX_DATE, FileMeta};
use crate::upload::{FormField, StoredFile, TextDecision};

/// What a header-policy `on-request` decided, in HTTP terms.
pub(crate) enum Decision {
    Continue(HeaderEdits),
    Respond(Response<Bytes>),
}

/// The WIT request head for a request; its header list stays empty
/// unless `with_headers`.
pub(crate) fn request_head(req: &RequestView<'_>, with_headers: bool) -> RequestHead {
    RequestHead {
        method: req.method.as_str().to_owned(),
        path: req.uri.path().to_owned(),
        query: req.uri.query().map(str::to_owned),
        headers: if with_headers { headers(req.headers) } else { Vec::new() },
        // `::ffff:192.0.2.7` (a v4 client on a dual-stack listener) is
        // shown as `192.0.2.7`, as backends expect in X-Real-IP.
        remote_addr: req.remote_addr.ip().to_canonical().to_string(),
        remote_port: req.remote_addr.port(),
        scheme: req.scheme.to_owned(),
        host: req.host.to_owned(),
    }
}

/// The WIT response head for a status and headers; its header list stays
/// empty unless `with_headers`.
pub(crate) fn response_head(status: StatusCode, map: &HeaderMap, with_headers: bool) -> ResponseHead {
    ResponseHead { status: status.as_u16(), headers: if with_headers { headers(map) } else { Vec::new() } }
}

fn headers(map: &HeaderMap) -> Vec<Header> {
    // `len` counts values, as the list does: one allocation for the list.
    let mut list = Vec::with_capacity(map.len());
    list.extend(
        map.iter().map(|(name, value)| Header { name: name.as_str().to_owned(), value: value.as_bytes().to_vec() }),
    );
    list
}

/// Validates the guest's `request-decision`.
pub(crate) fn decision(decision: RequestDecision) -> Result<Decision, String> {
    Ok(match decision {
        RequestDecision::Continue(ops) => Decision::Continue(edits(ops)?),
        RequestDecision::Respond(response) => Decision::Respond(local_response(response)?),
    })
}

/// Validates a list of header ops.
pub(crate) fn edits(ops: Vec<HeaderOp>) -> Result<HeaderEdits, String> {
    ops.into_iter()
        .map(|op| {
            Ok(match op {
                HeaderOp::Set(h) => {
                    let (name, value) = header(h)?;
                    HeaderEdit::Set(name, value)
                }
                HeaderOp::Append(h) => {
                    let (name, value) = header(h)?;
                    HeaderEdit::Append(name, value)
                }
                HeaderOp::Remove(name) => HeaderEdit::Remove(header_name(&name)?),
            })
        })
        .collect::<Result<Vec<_>, String>>()
        .map(HeaderEdits::from)
}

/// Validates a local response; gale frames it (hyper adds `content-length`).
fn local_response(local: LocalResponse) -> Result<Response<Bytes>, String> {
    if !(200..=599).contains(&local.status) {
        return Err(format!("local response status {} is not between 200 and 599", local.status));
    }
    let status = StatusCode::from_u16(local.status).map_err(|e| e.to_string())?;
    let mut response = Response::new(Bytes::from(local.body));
    *response.status_mut() = status;
    let map = response.headers_mut();
    for h in local.headers {
        let (name, value) = header(h)?;
        map.append(name, value);
    }
    Ok(response)
}

fn header(h: Header) -> Result<(HeaderName, HeaderValue), String> {
    let name = header_name(&h.name)?;
    let value = HeaderValue::from_bytes(&h.value)
        .map_err(|_| format!("header `{name}` has an invalid value {:?}", String::from_utf8_lossy(&h.value)))?;
    Ok((name, value))
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    let parsed = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{name:?} is not a valid header name"))?;
    if FRAMING_HEADERS.contains(&parsed.as_str()) {
        return Err(format!("header `{parsed}` is managed by gale and cannot be edited"));
    }
    Ok(parsed)
}

// ---- cache-policy -------------------------------------------------------

/// The last second `httpdate` can write (31 Dec 9999 23:59:59 GMT); later
/// expiry times are clamped to it.
const LAST_HTTP_DATE: u64 = 253_402_300_799;

/// The WIT file info for a served file.
pub(crate) fn file_info(meta: &FileMeta) -> FileInfo {
    FileInfo {
        path: meta.path.clone(),
        query: meta.query.clone(),
        size: meta.size,
        mtime: file_info_mtime(meta),
        content_type: meta.content_type.clone(),
    }
}

/// `file-info.mtime` of a served file: whole seconds since the epoch (a
/// file dated before 1970 shows as 0).
pub(crate) fn file_info_mtime(meta: &FileMeta) -> u64 {
    meta.mtime.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Renders a cache decision as headers at time `now`: `Expires` from the
/// expiry; `Cache-Control` as given, or derived from the expiry like nginx's
/// `expires` (`max-age=315360000` for `max`).
pub(crate) fn cache_headers(decision: CacheDecision, now: SystemTime) -> Result<CacheHeaders, String> {
    let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (expires, max_age) = match decision.expires {
        None => (None, None),
        Some(Expiry::Max) => (
            Some(HeaderValue::from_static(EXPIRES_MAX_DATE)),
            Some(HeaderValue::from_static(EXPIRES_MAX_CACHE_CONTROL)),
        ),
        Some(Expiry::At(at)) => (Some(http_date(at)), Some(max_age_value(at.saturating_sub(now_secs)))),
        Some(Expiry::After(secs)) => (Some(http_date(now_secs.saturating_add(secs))), Some(max_age_value(secs))),
    };
    let cache_control = match decision.cache_control {
        Some(text) if text.trim().is_empty() => {
            return Err("cache-control is empty (return none for no Cache-Control header)".into());
        }
        Some(text) => Some(
            HeaderValue::from_str(&text).map_err(|_| format!("cache-control {text:?} is not a valid header value"))?,
        ),
        None => max_age,
    };
    Ok(CacheHeaders { cache_control, expires })
}

fn http_date(secs: u64) -> HeaderValue {
    let at = UNIX_EPOCH + Duration::from_secs(secs.min(LAST_HTTP_DATE));
    HeaderValue::from_str(&httpdate::fmt_http_date(at)).expect("an HTTP date is a valid header value")
}

fn max_age_value(secs: u64) -> HeaderValue {
    HeaderValue::try_from(format!("max-age={secs}")).expect("digits are a valid header value")
}

// ---- upload-fields --------------------------------------------------------

/// The WIT stored file for a stored upload part.
pub(crate) fn stored_file(file: &StoredFile) -> upload_hooks::StoredFile {
    upload_hooks::StoredFile {
        field_name: file.field_name.to_vec(),
        filename: file.filename.to_vec(),
        content_type: file.content_type.to_vec(),
        path: file.path.as_os_str().as_encoded_bytes().to_vec(),
        md5: file.md5.clone(),
        size: file.size,
        sha256: file.sha256.clone(),
    }
}

/// The upload module's decision for a WIT one.
pub(crate) fn text_decision(decision: upload_hooks::TextDecision) -> TextDecision {
    match decision {
        upload_hooks::TextDecision::Pass => TextDecision::Pass,
        upload_hooks::TextDecision::Drop => TextDecision::Drop,
    }
}

/// Validates the fields a plugin generated for a file: a name holding `"`,
/// CR, LF or NUL would break the rewritten form, and is the plugin's fault,
/// not the client's.
pub(crate) fn form_fields(fields: Vec<upload_hooks::FormField>) -> Result<Vec<FormField>, String> {
    fields
        .into_iter()
        .map(|f| {
            if f.name.iter().any(|&b| matches!(b, b'"' | b'\r' | b'\n' | 0)) {
                return Err(format!(
                    "form field name {:?} holds a quote, CR, LF or NUL",
                    String::from_utf8_lossy(&f.name)
                ));
            }
            Ok(FormField::new(f.name, f.value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use http::{Method, Uri};

    use super::*;

    fn hdr(name: &str, value: &[u8]) -> Header {
        Header { name: name.into(), value: value.to_vec() }
    }

    #[test]
    fn request_head_carries_every_part() {
        let mut map = HeaderMap::new();
        map.append("X-Forwarded-For", HeaderValue::from_static("10.0.0.1"));
        map.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
        map.append("x-bin", HeaderValue::from_bytes(b"caf\xe9").expect("obs-text is valid"));
        let uri: Uri = "/a%20b/c?x=1&y".parse().expect("uri");
        let addr: SocketAddr = "[2001:db8::1]:4321".parse().expect("addr");
        let view = RequestView {
            method: &Method::PATCH,
            uri: &uri,
            headers: &map,
            remote_addr: addr,
            scheme: "https",
            host: "example.org",
        };
        let head = request_head(&view, true);
        assert_eq!(head.method, "PATCH");
        assert_eq!(head.path, "/a%20b/c");
        assert_eq!(head.query.as_deref(), Some("x=1&y"));
        assert_eq!(head.remote_addr, "2001:db8::1");
        assert_eq!(head.remote_port, 4321);
        assert_eq!((head.scheme.as_str(), head.host.as_str()), ("https", "example.org"));
        let names: Vec<_> = head.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["x-forwarded-for", "x-forwarded-for", "x-bin"]);
        assert_eq!(head.headers[2].value, b"caf\xe9");
    }

    #[test]
    fn header_lists_are_left_empty_when_not_wanted() {
        let mut map = HeaderMap::new();
        map.append("x-a", HeaderValue::from_static("1"));
        let uri: Uri = "/p?q".parse().expect("uri");
        let view = RequestView {
            method: &Method::GET,
            uri: &uri,
            headers: &map,
            remote_addr: "192.0.2.1:80".parse().expect("addr"),
            scheme: "http",
            host: "h",
        };
        let bare = request_head(&view, false);
        assert!(bare.headers.is_empty());
        assert_eq!((bare.path.as_str(), bare.query.as_deref(), bare.host.as_str()), ("/p", Some("q"), "h"));
        assert_eq!(request_head(&view, true).headers.len(), 1);
        let response = response_head(StatusCode::OK, &map, false);
        assert_eq!((response.status, response.headers.len()), (200, 0));
    }

    #[test]
    fn query_absent_and_empty_differ() {
        let addr: SocketAddr = "192.0.2.1:80".parse().expect("addr");
        let map = HeaderMap::new();
        let query = |target: &str| {
            let uri: Uri = target.parse().expect("uri");
            let view = RequestView {
                method: &Method::GET,
                uri: &uri,
                headers: &map,
                remote_addr: addr,
                scheme: "http",
                host: "h",
            };
            request_head(&view, true).query
        };
        assert_eq!(query("/p"), None);
        assert_eq!(query("/p?"), Some(String::new()));
    }

    #[test]
    fn v4_mapped_clients_show_as_v4() {
        let map = HeaderMap::new();
        let uri: Uri = "/".parse().expect("uri");
        let addr: SocketAddr = "[::ffff:192.0.2.9]:80".parse().expect("addr");
        let view = RequestView {
            method: &Method::GET,
            uri: &uri,
            headers: &map,
            remote_addr: addr,
            scheme: "http",
            host: "h",
        };
        assert_eq!(request_head(&view, true).remote_addr, "192.0.2.9");
    }

    #[test]
    fn response_head_keeps_status_and_headers() {
        let mut map = HeaderMap::new();
        map.append("server", HeaderValue::from_static("TornadoServer/6.4"));
        let head = response_head(StatusCode::NOT_FOUND, &map, true);
        assert_eq!(head.status, 404);
        assert_eq!(head.headers, vec![hdr("server", b"TornadoServer/6.4")]);
    }

    #[test]
    fn ops_become_edits() {
        let edits = edits(vec![
            HeaderOp::Set(hdr("X-Real-IP", b"192.0.2.1")),
            HeaderOp::Append(hdr("vary", b"accept-encoding")),
            HeaderOp::Remove("server".into()),
        ])
        .expect("valid");
        let all: Vec<_> = edits.iter().cloned().collect();
        assert_eq!(
            all,
            vec![
                HeaderEdit::Set(HeaderName::from_static("x-real-ip"), HeaderValue::from_static("192.0.2.1")),
                HeaderEdit::Append(HeaderName::from_static("vary"), HeaderValue::from_static("accept-encoding")),
                HeaderEdit::Remove(HeaderName::from_static("server")),
            ]
        );
    }

    #[test]
    fn bad_ops_are_refused() {
        let err = |op| edits(vec![op]).expect_err("invalid");
        assert!(err(HeaderOp::Set(hdr("bad name", b"x"))).contains("not a valid header name"));
        assert!(err(HeaderOp::Set(hdr("x-a", b"a\r\nb: c"))).contains("invalid value"));
        assert!(err(HeaderOp::Set(hdr("Content-Length", b"5"))).contains("managed by gale"));
        assert!(err(HeaderOp::Remove("transfer-encoding".into())).contains("managed by gale"));
    }

    #[test]
    fn local_responses_are_validated() {
        let ok = local_response(LocalResponse {
            status: 403,
            headers: vec![hdr("content-type", b"text/plain")],
            body: b"no".to_vec(),
        })
        .expect("valid");
        assert_eq!(ok.status(), StatusCode::FORBIDDEN);
        assert_eq!(ok.headers()["content-type"], "text/plain");
        assert_eq!(ok.body().as_ref(), b"no");
        for status in [0, 101, 199, 600, 1000] {
            let bad = LocalResponse { status, headers: vec![], body: vec![] };
            assert!(local_response(bad).is_err(), "{status}");
        }
        let framed = LocalResponse { status: 200, headers: vec![hdr("transfer-encoding", b"chunked")], body: vec![] };
        assert!(local_response(framed).is_err());
    }

    fn decision(cache_control: Option<&str>, expires: Option<Expiry>) -> CacheDecision {
        CacheDecision { cache_control: cache_control.map(str::to_owned), expires }
    }

    fn rendered(h: &CacheHeaders) -> (Option<&str>, Option<&str>) {
        (
            h.cache_control.as_ref().map(|v| v.to_str().expect("ascii")),
            h.expires.as_ref().map(|v| v.to_str().expect("ascii")),
        )
    }

    #[test]
    fn expiry_renders_like_nginx_expires() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000); // Tue, 14 Nov 2023 22:13:20 GMT
        let h = cache_headers(decision(None, Some(Expiry::Max)), now).expect("valid");
        assert_eq!(rendered(&h), (Some("max-age=315360000"), Some("Thu, 31 Dec 2037 23:55:55 GMT")));
        let h = cache_headers(decision(None, Some(Expiry::After(3600))), now).expect("valid");
        assert_eq!(rendered(&h), (Some("max-age=3600"), Some("Tue, 14 Nov 2023 23:13:20 GMT")));
        let h = cache_headers(decision(None, Some(Expiry::At(1_700_000_060))), now).expect("valid");
        assert_eq!(rendered(&h), (Some("max-age=60"), Some("Tue, 14 Nov 2023 22:14:20 GMT")));
        let h = cache_headers(decision(None, Some(Expiry::At(0))), now).expect("valid");
        assert_eq!(rendered(&h), (Some("max-age=0"), Some("Thu, 01 Jan 1970 00:00:00 GMT")));
        let h = cache_headers(decision(None, Some(Expiry::After(u64::MAX))), now).expect("valid");
        assert_eq!(h.expires.as_ref().map(|v| v.as_bytes()), Some(&b"Fri, 31 Dec 9999 23:59:59 GMT"[..]));
        let h = cache_headers(decision(Some("no-cache"), None), now).expect("valid");
        assert_eq!(rendered(&h), (Some("no-cache"), None));
        let h = cache_headers(decision(Some("max-age=60, immutable"), Some(Expiry::After(60))), now).expect("valid");
        assert_eq!(rendered(&h), (Some("max-age=60, immutable"), Some("Tue, 14 Nov 2023 22:14:20 GMT")));
        assert!(cache_headers(decision(None, None), now).expect("valid").is_empty());
    }

    #[test]
    fn bad_cache_control_is_refused() {
        let now = SystemTime::now();
        assert!(cache_headers(decision(Some("a\r\nSet-Cookie: x"), None), now).is_err());
        assert!(cache_headers(decision(Some(" "), None), now).is_err());
    }

    #[test]
    fn file_info_carries_the_meta() {
        let meta = FileMeta {
            path: "/static/a b.css".into(),
            query: Some("v=1".into()),
            size: 42,
            mtime: UNIX_EPOCH + Duration::from_secs(1_600_000_000),
            content_type: "text/css".into(),
        };
        let info = file_info(&meta);
        assert_eq!(
            info,
            FileInfo {
                path: "/static/a b.css".into(),
                query: Some("v=1".into()),
                size: 42,
                mtime: 1_600_000_000,
                content_type: "text/css".into(),
            }
        );
    }

    #[test]
    fn generated_field_names_are_checked() {
        let field = |name: &[u8]| upload_hooks::FormField { name: name.to_vec(), value: b"v\r\n".to_vec() };
        let ok = form_fields(vec![field(b"file.name"), field(b"\xff")]).expect("valid");
        assert_eq!(
            ok,
            vec![FormField::new(&b"file.name"[..], &b"v\r\n"[..]), FormField::new(&b"\xff"[..], &b"v\r\n"[..])]
        );
        for bad in [&b"a\"b"[..], b"a\rb", b"a\nb", b"a\0b"] {
            assert!(form_fields(vec![field(bad)]).is_err(), "{bad:?}");
        }
    }
}
