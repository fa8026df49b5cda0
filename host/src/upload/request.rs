//! Request-level checks, run on the head before any body byte is read.
//!
//! Order as in nginx-upload-module: declared size (413), method (OPTIONS → 200, non-POST → 405), then the
//! Content-Type: missing → 400, not exactly `multipart/form-data` → 415 (D16: exact media type,
//! not a prefix), bad or missing boundary → 400 (nginx-upload-module sent no response at all, D7). The
//! boundary parameter is parsed per RFC 2045/2046: case-insensitive name, token or quoted-string
//! value, 1..=70 `bchars` (D3).

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method};

use super::UploadError;
use super::config::UploadLimits;

/// A validated multipart boundary (RFC 2046: 1..=70 bchars, not ending in a space).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boundary(Bytes);

impl Boundary {
    /// Checks the RFC 2046 grammar; `None` when `raw` is not a usable boundary.
    pub fn new(raw: &[u8]) -> Option<Self> {
        let ok = (1..=70).contains(&raw.len()) && raw.iter().all(|&b| is_bchar(b)) && raw.last() != Some(&b' ');
        ok.then(|| Boundary(Bytes::copy_from_slice(raw)))
    }

    /// The boundary bytes, without the leading `--`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

fn is_bchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&b)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What the pipeline should do with a request routed to an upload location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestCheck {
    /// OPTIONS: answer 200 with `Content-Length: 0` and no body (nginx-upload-module's behaviour).
    Options,
    /// A POST to receive with [`super::receive`].
    Upload(UploadRequest),
}

/// A multipart POST that passed the head checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRequest {
    /// The boundary, unquoted; the rewritten form reuses it.
    pub boundary: Boundary,
    /// The Content-Type to forward upstream: the client's verbatim when it was canonical
    /// (`multipart/form-data` lower case, lower-case unquoted `boundary=`, as nginx-upload-module forwards
    /// it), otherwise `multipart/form-data; boundary=<B>` so the backend parses what gale parsed
    /// (D3).
    pub content_type: HeaderValue,
}

/// Runs the head checks in nginx-upload-module's order; the error says which status to answer.
pub fn check_request(parts: &http::request::Parts, limits: &UploadLimits) -> Result<RequestCheck, UploadError> {
    if let Some(len) = parts.headers.get(CONTENT_LENGTH) {
        let declared = len.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok());
        match declared {
            Some(n) if n > limits.max_body_bytes => return Err(UploadError::BodyTooLarge),
            Some(_) => {}
            None => return Err(UploadError::BadContentLength),
        }
    }
    if parts.method == Method::OPTIONS {
        return Ok(RequestCheck::Options);
    }
    if parts.method != Method::POST {
        return Err(UploadError::MethodNotAllowed);
    }
    let value = parts.headers.get(CONTENT_TYPE).ok_or(UploadError::MissingContentType)?;
    let parsed = parse_content_type(value.as_bytes())?;
    let content_type = if parsed.canonical { value.clone() } else { rewritten_content_type(&parsed.boundary) };
    Ok(RequestCheck::Upload(UploadRequest { boundary: parsed.boundary, content_type }))
}

/// A parsed multipart/form-data Content-Type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedContentType {
    /// The boundary parameter, unquoted and validated.
    pub boundary: Boundary,
    /// Whether the header can be forwarded verbatim (see [`UploadRequest::content_type`]).
    pub canonical: bool,
}

/// Parses a Content-Type header value: 415 unless the media type is exactly
/// `multipart/form-data` (any case), 400 for malformed parameters or a bad/missing/duplicate
/// boundary.
pub fn parse_content_type(value: &[u8]) -> Result<ParsedContentType, UploadError> {
    let (media, mut rest) = match value.iter().position(|&b| b == b';') {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, &value[value.len()..]),
    };
    let media = media.trim_ascii();
    if !media.eq_ignore_ascii_case(b"multipart/form-data") {
        return Err(UploadError::UnsupportedMediaType);
    }
    let mut canonical = media == b"multipart/form-data";
    let mut boundary = None;
    let bad = UploadError::BadBoundary;
    loop {
        rest = rest.trim_ascii_start();
        let Some(after) = rest.strip_prefix(b";") else {
            if rest.is_empty() {
                break;
            }
            return Err(bad("malformed Content-Type parameters"));
        };
        rest = after.trim_ascii_start();
        if rest.is_empty() || rest[0] == b';' {
            continue; // empty parameter (`;;` or a trailing `;`)
        }
        let name_len = rest.iter().take_while(|&&b| is_tchar(b)).count();
        let name = &rest[..name_len];
        rest = rest[name_len..].trim_ascii_start();
        let Some(after) = rest.strip_prefix(b"=").filter(|_| !name.is_empty()) else {
            return Err(bad("malformed Content-Type parameter"));
        };
        rest = after.trim_ascii_start();
        let (value, quoted, after) = param_value(rest).ok_or(bad("malformed parameter value"))?;
        rest = after;
        if name.eq_ignore_ascii_case(b"boundary") {
            if boundary.is_some() {
                return Err(bad("duplicate boundary parameter"));
            }
            canonical &= name == b"boundary" && !quoted;
            boundary = Some(Boundary::new(&value).ok_or(bad("invalid boundary"))?);
        }
    }
    let boundary = boundary.ok_or(bad("missing boundary parameter"))?;
    Ok(ParsedContentType { boundary, canonical })
}

/// A token or quoted-string (RFC 7230 quoted-pair escapes); returns (value, quoted, rest).
fn param_value(input: &[u8]) -> Option<(Vec<u8>, bool, &[u8])> {
    if let Some(mut rest) = input.strip_prefix(b"\"") {
        let mut out = Vec::new();
        loop {
            match *rest.first()? {
                b'"' => return Some((out, true, &rest[1..])),
                b'\\' => {
                    out.push(*rest.get(1)?);
                    rest = &rest[2..];
                }
                b => {
                    out.push(b);
                    rest = &rest[1..];
                }
            }
        }
    }
    // Unquoted: a run of bchar-ish bytes; `=`, `:` and friends are accepted for leniency.
    let len = input.iter().take_while(|&&b| b != b';' && b != b'"' && !b.is_ascii_whitespace() && b > 0x20).count();
    (len > 0).then(|| (input[..len].to_vec(), false, &input[len..]))
}

/// `multipart/form-data; boundary=<B>`, quoting B only when it is not a token.
fn rewritten_content_type(boundary: &Boundary) -> HeaderValue {
    let b = boundary.as_bytes();
    let mut v = b"multipart/form-data; boundary=".to_vec();
    if b.iter().all(|&c| is_tchar(c)) {
        v.extend_from_slice(b);
    } else {
        v.push(b'"');
        v.extend_from_slice(b);
        v.push(b'"');
    }
    // bchars are visible ASCII or space, so this cannot fail; fall back defensively.
    HeaderValue::from_bytes(&v).unwrap_or_else(|_| HeaderValue::from_static("multipart/form-data"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().method(method).uri("/upload?id=5");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request").into_parts().0
    }

    fn check(method: &str, headers: &[(&str, &str)]) -> Result<RequestCheck, UploadError> {
        check_request(&head(method, headers), &UploadLimits::default())
    }

    fn upload(ct: &str) -> UploadRequest {
        match check("POST", &[("content-type", ct)]) {
            Ok(RequestCheck::Upload(u)) => u,
            other => panic!("{ct}: {other:?}"),
        }
    }

    fn status(r: Result<RequestCheck, UploadError>) -> u16 {
        r.expect_err("error").status().as_u16()
    }

    #[test]
    fn methods() {
        assert_eq!(check("OPTIONS", &[]).ok(), Some(RequestCheck::Options));
        for m in ["GET", "HEAD", "PUT", "DELETE", "PATCH"] {
            assert_eq!(status(check(m, &[])), 405, "{m}");
        }
    }

    #[test]
    fn declared_size_is_checked_first() {
        let big = (100u64 * 1024 * 1024 + 1).to_string();
        assert_eq!(status(check("POST", &[("content-length", &big)])), 413);
        assert_eq!(status(check("GET", &[("content-length", &big)])), 413);
        let exact = (100u64 * 1024 * 1024).to_string();
        let ct = ("content-type", "multipart/form-data; boundary=x");
        assert!(check("POST", &[("content-length", &exact), ct]).is_ok());
    }

    #[test]
    fn content_type_statuses() {
        assert_eq!(status(check("POST", &[])), 400);
        for ct in [
            "multipart/mixed; boundary=x",
            "application/x-www-form-urlencoded",
            "multipart/form-data-foo; boundary=x", // D16: exact media type
            "text/plain",
        ] {
            assert_eq!(status(check("POST", &[("content-type", ct)])), 415, "{ct}");
        }
        for ct in [
            "multipart/form-data",
            "multipart/form-data;",
            "multipart/form-data; boundary=",
            "multipart/form-data; boundary=\"\"",
            "multipart/form-data; charset=utf-8",
            "multipart/form-data; boundary=a; boundary=b",
            "multipart/form-data; boundary=\"unterminated",
            "multipart/form-data; boundary=a b",
            "multipart/form-data; boundary",
        ] {
            assert_eq!(status(check("POST", &[("content-type", ct)])), 400, "{ct}");
        }
        let long = format!("multipart/form-data; boundary={}", "a".repeat(71));
        assert_eq!(status(check("POST", &[("content-type", &long)])), 400);
        let max = format!("multipart/form-data; boundary={}", "a".repeat(70));
        assert_eq!(upload(&max).boundary.as_bytes().len(), 70);
    }

    #[test]
    fn canonical_content_type_is_forwarded_verbatim() {
        let ct = "multipart/form-data; boundary=XbOuNdArY123; charset=utf-8";
        let u = upload(ct);
        assert_eq!(u.boundary.as_bytes(), b"XbOuNdArY123");
        assert_eq!(u.content_type, ct);
    }

    #[test]
    fn quoted_or_odd_boundaries_are_rewritten() {
        // D3 (V11 in nginx-upload-module lost the whole body): quotes are stripped and the forwarded
        // Content-Type is rewritten.
        for ct in [
            "multipart/form-data; boundary=\"XbOuNdArY123\"",
            "multipart/form-data; BOUNDARY=XbOuNdArY123",
            "MULTIPART/FORM-DATA; boundary=XbOuNdArY123",
            "multipart/form-data ; charset=utf-8 ; Boundary = \"XbOuNdArY123\" ",
        ] {
            let u = upload(ct);
            assert_eq!(u.boundary.as_bytes(), b"XbOuNdArY123", "{ct}");
            assert_eq!(u.content_type, "multipart/form-data; boundary=XbOuNdArY123", "{ct}");
        }
        let u = upload("multipart/form-data; boundary=\"a b:c\"");
        assert_eq!(u.boundary.as_bytes(), b"a b:c");
        assert_eq!(u.content_type, "multipart/form-data; boundary=\"a b:c\"");
    }

    #[test]
    fn curl_and_browser_boundaries() {
        let curl = "multipart/form-data; boundary=------------------------d74496d66958873e";
        assert_eq!(upload(curl).content_type, curl);
        let webkit = "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW";
        assert_eq!(upload(webkit).content_type, webkit);
    }
}
