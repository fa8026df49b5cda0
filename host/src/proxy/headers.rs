//! Header rules for proxying: which client headers reach the backend, which
//! forwarding headers gale sets (and never lets the client forge), and which
//! backend headers reach the client. Pure functions.
//!
//! A request's headers cross in three steps, in this order (the pipeline
//! runs them, the plugins' edits being the last): [`strip_connection_options`]
//! removes what the client declared hop-by-hop, [`set_forwarding`] adds
//! gale's own headers, then the plugins edit. [`to_upstream`] finally drops
//! the fixed hop-by-hop and framing headers, which plugins cannot edit. A
//! client therefore cannot name away a header gale or a plugin added.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;

/// Hop-by-hop headers (RFC 9110 7.6.1), never forwarded in either direction.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static X_SCHEME: HeaderName = HeaderName::from_static("x-scheme");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Headers a client's `Connection` cannot name away: `Host` (Tornado answers
/// 400 without it), gale's forwarding headers (set whatever the client says),
/// and the framing headers, which gale reads and then removes itself.
fn protected(name: &HeaderName) -> bool {
    *name == header::HOST
        || *name == header::CONTENT_LENGTH
        || *name == X_REAL_IP
        || *name == X_SCHEME
        || *name == X_FORWARDED_FOR
        || *name == X_FORWARDED_PROTO
        || HOP_BY_HOP.contains(name)
}

/// The header names listed in `Connection` (every line, any case, spaces
/// around the commas allowed); elements that are not header names are
/// skipped.
fn connection_options(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|name| HeaderName::from_bytes(name.trim_ascii()).ok())
        .collect()
}

/// Step 1 of a request's headers: removes the headers the client's
/// `Connection` names (RFC 9110 7.6.1: they were meant for gale), except the
/// [`protected`] ones. `Connection` itself stays until [`to_upstream`]: the
/// proxy still reads the upgrade request from it.
pub fn strip_connection_options(headers: &mut HeaderMap) {
    if !headers.contains_key(header::CONNECTION) {
        return;
    }
    for name in connection_options(headers) {
        if !protected(&name) {
            headers.remove(&name);
        }
    }
}

/// Removes hop-by-hop headers from a response, including any named in
/// `Connection`.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names present instead of
    // seven lookups (a name listed in `Connection` needs `Connection`).
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    for name in connection_options(headers).iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Step 2 of a request's headers: gale's own.
///
/// `Host` stays as the client sent it (Tornado builds URLs and checks
/// WebSocket origins from it); an HTTP/2 request, which carries
/// `:authority` instead, gets it from there. `X-Real-IP` and `X-Scheme`,
/// which Tornado's `xheaders=True` reads first, are overwritten with what
/// gale saw, so a client cannot forge its address or scheme.
/// `X-Forwarded-For` gets the client address appended (the last entry is the
/// one gale vouches for); `X-Forwarded-Proto` is overwritten.
pub fn set_forwarding(headers: &mut HeaderMap, authority: Option<&Authority>, client_ip: IpAddr, scheme: &'static str) {
    if !headers.contains_key(header::HOST)
        && let Some(host) = authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        headers.insert(header::HOST, host);
    }
    let ip = HeaderValue::from_str(&client_ip.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    let xff = match joined(headers, &X_FORWARDED_FOR) {
        Some(prev) => HeaderValue::from_str(&format!("{prev}, {client_ip}")).unwrap_or_else(|_| ip.clone()),
        None => ip.clone(),
    };
    headers.insert(X_FORWARDED_FOR.clone(), xff);
    headers.insert(X_REAL_IP.clone(), ip);
    headers.insert(X_SCHEME.clone(), HeaderValue::from_static(scheme));
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(scheme));
}

/// The last step, as the request leaves: the fixed hop-by-hop headers go
/// (plugins cannot edit them, so they are still the client's), and
/// `Content-Length`: the request is re-framed from the body gale actually
/// forwards. `Connection`'s list is not read again: the client's options
/// went in step 1, and what is present now gale or a plugin put there.
pub fn to_upstream(headers: &mut HeaderMap) {
    // Most requests carry none: one pass over the names present instead of
    // seven lookups.
    if headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        for name in HOP_BY_HOP.iter() {
            headers.remove(name);
        }
    }
    headers.remove(header::CONTENT_LENGTH);
}

/// All values of a header joined with ", ", if it is present and text.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let values: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
    if values.is_empty() { None } else { Some(values.join(", ")) }
}

/// Turns the backend's response headers into the client's, in place: only
/// hop-by-hop headers go (with those the backend's `Connection` names; the
/// plugins' response edits come after, so a backend cannot remove them
/// either). `Server` and `Location` pass unchanged (nginx's
/// `proxy_pass_header Server` and `proxy_redirect off`).
pub fn to_client(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
}

/// The protocols of a client's upgrade request that may be forwarded: the
/// `Upgrade` tokens whose name (before any `/version`) is in `allowed`
/// (case-insensitive), as one value; `None` when none is, and the request
/// then goes upstream as a plain one.
pub fn allowed_upgrade(headers: &HeaderMap, allowed: &[String]) -> Option<HeaderValue> {
    let tokens: Vec<&[u8]> = headers
        .get_all(header::UPGRADE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|token| {
            let name = token.split(|&b| b == b'/').next().unwrap_or_default();
            allowed.iter().any(|a| a.as_bytes().eq_ignore_ascii_case(name))
        })
        .collect();
    if tokens.is_empty() {
        return None;
    }
    HeaderValue::from_bytes(&tokens.join(&b", "[..])).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    /// The three steps as the pipeline runs them, with `edit` as the plugins' edits.
    fn cross(h: &mut HeaderMap, edit: impl FnOnce(&mut HeaderMap)) {
        strip_connection_options(h);
        set_forwarding(h, None, "10.0.0.7".parse().unwrap(), "http");
        edit(h);
        to_upstream(h);
    }

    #[test]
    fn forged_forwarding_headers_are_overwritten() {
        let mut h = map(&[
            ("host", "www.example.org"),
            ("x-real-ip", "6.6.6.6"),
            ("x-scheme", "https"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-for", "6.6.6.6"),
        ]);
        cross(&mut h, |_| {});
        assert_eq!(h["x-real-ip"], "10.0.0.7");
        assert_eq!(h["x-scheme"], "http");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-for"], "6.6.6.6, 10.0.0.7");
        assert_eq!(h["host"], "www.example.org");
    }

    #[test]
    fn repeated_x_forwarded_for_lines_are_joined_before_appending() {
        let mut h = map(&[("x-forwarded-for", "1.1.1.1"), ("x-forwarded-for", "2.2.2.2")]);
        cross(&mut h, |_| {});
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.0.0.7");
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_are_dropped() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("content-length", "5"),
            ("upgrade", "h2c"),
            ("accept", "*/*"),
        ]);
        cross(&mut h, |_| {});
        for gone in ["connection", "keep-alive", "x-secret", "te", "transfer-encoding", "content-length", "upgrade"] {
            assert!(!h.contains_key(gone), "{gone} was forwarded");
        }
        assert_eq!(h["accept"], "*/*");
    }

    #[test]
    fn connection_cannot_name_away_host_forwarding_or_plugin_headers() {
        let mut h = map(&[
            ("host", "www.example.org"),
            ("connection", "Host, X-Forwarded-For ,x-real-ip,\tX-SCHEME, x-forwarded-proto, x-plugin, x-client"),
            ("connection", "content-length"),
            ("x-forwarded-for", "1.1.1.1"),
            ("content-length", "3"),
            ("x-client", "gone"),
        ]);
        strip_connection_options(&mut h);
        assert_eq!(h["content-length"], "3", "the handler still needs the framing");
        cross(&mut h, |h| {
            h.insert("x-plugin", HeaderValue::from_static("set by a plugin"));
        });
        assert_eq!(h["host"], "www.example.org");
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 10.0.0.7");
        assert_eq!(h["x-real-ip"], "10.0.0.7");
        assert_eq!(h["x-scheme"], "http");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-plugin"], "set by a plugin");
        assert!(!h.contains_key("x-client"), "a client's own hop-by-hop header is removed");
        assert!(!h.contains_key("connection"));
    }

    #[test]
    fn plugin_edits_come_after_gale_headers() {
        let mut h = map(&[("x-real-ip", "6.6.6.6")]);
        cross(&mut h, |h| {
            h.insert("x-real-ip", HeaderValue::from_static("1.2.3.4"));
        });
        assert_eq!(h["x-real-ip"], "1.2.3.4", "a plugin's set is the last word (nginx's proxy_set_header)");
    }

    #[test]
    fn http2_authority_becomes_host() {
        let mut h = HeaderMap::new();
        let authority: Authority = "h2.example.org:8443".parse().unwrap();
        set_forwarding(&mut h, Some(&authority), "127.0.0.1".parse().unwrap(), "https");
        assert_eq!(h["host"], "h2.example.org:8443");
    }

    #[test]
    fn backend_server_and_location_pass_to_client() {
        let mut h = map(&[
            ("server", "TornadoServer/6.5"),
            ("location", "http://internal:8000/x"),
            ("connection", "close, x-internal"),
            ("x-internal", "1"),
        ]);
        to_client(&mut h);
        assert_eq!(h["server"], "TornadoServer/6.5");
        assert_eq!(h["location"], "http://internal:8000/x");
        assert!(!h.contains_key("connection"));
        assert!(!h.contains_key("x-internal"));
    }

    #[test]
    fn only_allowed_upgrade_protocols_are_forwarded() {
        let ws = ["websocket".to_owned()];
        let up = |v: &str| map(&[("upgrade", v)]);
        assert_eq!(allowed_upgrade(&up("websocket"), &ws).unwrap(), "websocket");
        assert_eq!(allowed_upgrade(&up("WebSocket"), &ws).unwrap(), "WebSocket");
        assert_eq!(allowed_upgrade(&up("h2c"), &ws), None);
        assert_eq!(allowed_upgrade(&up("foo/1, h2c"), &ws), None);
        assert_eq!(allowed_upgrade(&up("h2c, websocket"), &ws).unwrap(), "websocket");
        assert_eq!(allowed_upgrade(&HeaderMap::new(), &ws), None);
        let both = ["websocket".to_owned(), "foo".to_owned()];
        assert_eq!(allowed_upgrade(&up("foo/2, websocket, h2c"), &both).unwrap(), "foo/2, websocket");
        assert_eq!(allowed_upgrade(&up("websocket"), &[]), None);
    }
}
