//! Header rules for proxying: which client headers reach the backend, which
//! forwarding headers gale sets (and never lets the client forge), and which
//! backend headers reach the client. Pure functions.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

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

/// Removes hop-by-hop headers, including any named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names present instead of
    // seven lookups (a name listed in `Connection` needs `Connection`).
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Turns the client's headers into the headers sent upstream, in place.
///
/// `Host` stays as the client sent it (Tornado builds URLs and checks
/// WebSocket origins from it). `X-Real-IP` and `X-Scheme`, which Tornado's
/// `xheaders=True` reads first, are always overwritten with what gale saw,
/// so a client cannot forge its address or scheme. `X-Forwarded-For` gets
/// the client address appended (the last entry is the one gale vouches
/// for); `X-Forwarded-Proto` is overwritten. `Content-Length` is dropped:
/// the request is re-framed from the body gale actually forwards.
pub fn to_upstream(headers: &mut HeaderMap, client_ip: IpAddr, scheme: &'static str) {
    strip_hop_by_hop(headers);
    headers.remove(header::CONTENT_LENGTH);
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

/// All values of a header joined with ", ", if it is present and text.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let values: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
    if values.is_empty() { None } else { Some(values.join(", ")) }
}

/// Turns the backend's response headers into the client's, in place: only
/// hop-by-hop headers go. `Server` and `Location` pass unchanged (nginx's
/// `proxy_pass_header Server` and `proxy_redirect off`).
pub fn to_client(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
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

    #[test]
    fn forged_forwarding_headers_are_overwritten() {
        let mut h = map(&[
            ("host", "www.example.org"),
            ("x-real-ip", "6.6.6.6"),
            ("x-scheme", "https"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-for", "6.6.6.6"),
        ]);
        to_upstream(&mut h, "10.0.0.7".parse().unwrap(), "http");
        assert_eq!(h["x-real-ip"], "10.0.0.7");
        assert_eq!(h["x-scheme"], "http");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-for"], "6.6.6.6, 10.0.0.7");
        assert_eq!(h["host"], "www.example.org");
    }

    #[test]
    fn repeated_x_forwarded_for_lines_are_joined_before_appending() {
        let mut h = map(&[("x-forwarded-for", "1.1.1.1"), ("x-forwarded-for", "2.2.2.2")]);
        to_upstream(&mut h, "127.0.0.1".parse().unwrap(), "http");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 127.0.0.1");
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
        to_upstream(&mut h, "127.0.0.1".parse().unwrap(), "http");
        for gone in ["connection", "keep-alive", "x-secret", "te", "transfer-encoding", "content-length", "upgrade"] {
            assert!(!h.contains_key(gone), "{gone} was forwarded");
        }
        assert_eq!(h["accept"], "*/*");
    }

    #[test]
    fn backend_server_and_location_pass_to_client() {
        let mut h =
            map(&[("server", "TornadoServer/6.5"), ("location", "http://internal:8000/x"), ("connection", "close")]);
        to_client(&mut h);
        assert_eq!(h["server"], "TornadoServer/6.5");
        assert_eq!(h["location"], "http://internal:8000/x");
        assert!(!h.contains_key("connection"));
    }
}
