//! The runner's request and response parts as a person writes them:
//! `GET /path?query`, `Name: value`, `200`.

use http::header::{HOST, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode, Uri};

use super::Request;

/// `METHOD /path[?query]`, headers, and the client's address into a
/// [`Request`]; the path is put in the normal form gale routes by (a path
/// gale would answer 400 is an error).
pub fn parse_request(line: &str, headers: HeaderMap, remote: std::net::SocketAddr) -> Result<Request, String> {
    let mut words = line.split_whitespace();
    let (Some(method), Some(target), None) = (words.next(), words.next(), words.next()) else {
        return Err(format!("request {line:?}: write it as METHOD /path, e.g. \"GET /admin?x=1\""));
    };
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("request {line:?}: {method:?} is not an HTTP method"))?;
    if !target.starts_with('/') {
        return Err(format!("request {line:?}: the target must start with `/` (give the host as -H 'Host: ...')"));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let normal = crate::uri_path::normalise(path, true)
        .map_err(|e| format!("request {line:?}: gale answers this path 400: {e}"))?;
    let uri: Uri = match query {
        Some(q) => format!("{normal}?{q}"),
        None => normal.into_owned(),
    }
    .parse()
    .map_err(|e| format!("request {line:?}: invalid target: {e}"))?;
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map_or_else(|| "localhost".to_owned(), crate::router::host_for_matching);
    Ok(Request { method, uri, headers, host, remote_addr: remote, scheme: "http".to_owned() })
}

/// `Name: value`.
pub fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let Some((name, value)) = text.split_once(':') else {
        return Err(format!("header {text:?}: write it as \"Name: value\""));
    };
    header(name.trim(), value.trim()).map_err(|e| format!("header {text:?}: {e}"))
}

/// A header name and value, checked as HTTP checks them.
pub(super) fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{name:?} is not a valid header name"))?;
    let value = HeaderValue::from_str(value).map_err(|_| format!("{value:?} is not a valid header value"))?;
    Ok((name, value))
}

/// A status code, 100-999.
pub fn parse_status(text: &str) -> Result<StatusCode, String> {
    text.trim()
        .parse::<u16>()
        .ok()
        .and_then(|n| StatusCode::from_u16(n).ok())
        .ok_or_else(|| format!("status {text:?}: give a number from 100 to 999"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote() -> std::net::SocketAddr {
        "127.0.0.1:4000".parse().expect("addr")
    }

    #[test]
    fn requests_are_normalised_like_the_pipeline() {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("Example.TEST:8080"));
        let r = parse_request("GET //a/./%62?x=1", h, remote()).expect("valid");
        assert_eq!(
            (r.method.as_str(), r.uri.to_string().as_str(), r.host.as_str()),
            ("GET", "/a/b?x=1", "example.test")
        );
        assert_eq!(parse_request("POST /", HeaderMap::new(), remote()).expect("valid").host, "localhost");
    }

    #[test]
    fn bad_parts_say_how_to_write_them() {
        for bad in ["GET", "GET /a b", "GET a", "G\u{1}T /", "GET /../x"] {
            assert!(parse_request(bad, HeaderMap::new(), remote()).is_err(), "{bad}");
        }
        assert!(parse_header("no-colon").expect_err("bad").contains("Name: value"));
        assert!(parse_header("bad name: x").is_err());
        assert_eq!(parse_header("X-A:  1 ").expect("ok").1, "1");
        assert!(parse_status("99").is_err());
        assert_eq!(parse_status("404").expect("ok"), StatusCode::NOT_FOUND);
    }
}
