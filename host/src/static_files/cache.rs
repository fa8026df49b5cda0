//! What the cache policy sees about a served file, and the headers it decides.
//!
//! A cache-policy plugin (the WIT world `cache-policy`, attached to a static location) receives a
//! [`FileMeta`] and returns a decision the host renders as [`CacheHeaders`]
//! (`plugin/cache_policy.rs`, `attach.rs`). [`query_string_expires_max`] is the reference nginx
//! configuration's rule in native code, which tests use as the expected answer of the bundled
//! `static-cache` plugin's default.

use std::time::SystemTime;

use http::{HeaderMap, HeaderValue, StatusCode, header};

/// The facts about a served file that a caching rule may depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// The decoded, normalized request path (`/static/app.css`), not the file-system path.
    pub path: String,
    /// The raw query string without `?`; `None` when the URI has no `?`.
    pub query: Option<String>,
    /// File size in bytes.
    pub size: u64,
    /// Modification time (second precision, like `Last-Modified`).
    pub mtime: SystemTime,
    /// The `Content-Type` sent (from the extension table or `default_type`).
    pub content_type: String,
}

/// Caching headers to add to a static response; `None` fields are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheHeaders {
    /// `Cache-Control` value.
    pub cache_control: Option<HeaderValue>,
    /// `Expires` value (an HTTP date).
    pub expires: Option<HeaderValue>,
}

/// nginx's `expires max`: this exact date and ten years in seconds.
pub const EXPIRES_MAX_DATE: &str = "Thu, 31 Dec 2037 23:55:55 GMT";
/// The `Cache-Control` value that goes with [`EXPIRES_MAX_DATE`].
pub const EXPIRES_MAX_CACHE_CONTROL: &str = "max-age=315360000";

impl CacheHeaders {
    /// nginx's `expires max`.
    pub fn expires_max() -> Self {
        Self {
            cache_control: Some(HeaderValue::from_static(EXPIRES_MAX_CACHE_CONTROL)),
            expires: Some(HeaderValue::from_static(EXPIRES_MAX_DATE)),
        }
    }

    /// Whether there is nothing to add.
    pub fn is_empty(&self) -> bool {
        self.cache_control.is_none() && self.expires.is_none()
    }

    /// Adds the headers to a response with this status, replacing earlier values. Like nginx's
    /// `expires`, only successful, redirect and not-modified answers get them (200, 201, 204,
    /// 206, 301, 302, 303, 304, 307, 308), never a 416 or an error page.
    pub fn apply(&self, status: StatusCode, headers: &mut HeaderMap) {
        let eligible = matches!(status.as_u16(), 200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308);
        if !eligible {
            return;
        }
        if let Some(v) = &self.cache_control {
            headers.insert(header::CACHE_CONTROL, v.clone());
        }
        if let Some(v) = &self.expires {
            headers.insert(header::EXPIRES, v.clone());
        }
    }
}

/// The reference nginx configuration's rule, `location /static/ { if ($query_string) { expires
/// max; } }`: a request with a
/// non-empty query string (a versioned URL like `app.css?v=3`) may be cached forever; without one
/// (or with a bare `?`, which nginx's `$query_string` also sees as empty) nothing is added.
pub fn query_string_expires_max(meta: &FileMeta) -> CacheHeaders {
    match meta.query.as_deref() {
        Some(q) if !q.is_empty() => CacheHeaders::expires_max(),
        _ => CacheHeaders::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(query: Option<&str>) -> FileMeta {
        FileMeta {
            path: "/static/app.css".into(),
            query: query.map(str::to_owned),
            size: 10,
            mtime: SystemTime::UNIX_EPOCH,
            content_type: "text/css".into(),
        }
    }

    #[test]
    fn reference_rule_with_a_query_string_is_expires_max() {
        let h = query_string_expires_max(&meta(Some("v=3")));
        assert_eq!(h.expires.as_ref().map(|v| v.as_bytes()), Some(&b"Thu, 31 Dec 2037 23:55:55 GMT"[..]));
        assert_eq!(h.cache_control.as_ref().map(|v| v.as_bytes()), Some(&b"max-age=315360000"[..]));
    }

    #[test]
    fn reference_rule_without_a_query_string_adds_nothing() {
        assert!(query_string_expires_max(&meta(None)).is_empty());
        assert!(query_string_expires_max(&meta(Some(""))).is_empty());
    }

    #[test]
    fn applied_only_where_nginx_applies_expires() {
        let h = CacheHeaders::expires_max();
        for (status, expected) in
            [(200, true), (206, true), (304, true), (301, true), (416, false), (404, false), (500, false)]
        {
            let mut headers = HeaderMap::new();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.apply(StatusCode::from_u16(status).expect("status"), &mut headers);
            assert_eq!(headers.contains_key(header::EXPIRES), expected, "{status}");
            let cc = headers.get(header::CACHE_CONTROL).expect("cache-control");
            assert_eq!(cc == EXPIRES_MAX_CACHE_CONTROL, expected, "{status}");
        }
    }
}
