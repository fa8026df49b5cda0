//! Strict HTTP/1.1 request framing. hyper already rejects malformed heads,
//! bad chunked encoding, unequal duplicate `Content-Length` and obs-fold; it
//! quietly resolves the ambiguous rest (`Content-Length` with
//! `Transfer-Encoding`, equal duplicate lengths) the way RFC 9112 allows.
//! A proxy should not guess where a peer might guess differently (request
//! smuggling), so gale rejects those with 400: [`sniff`] watches the raw
//! bytes hyper reads, and [`check`] looks at each parsed head.

pub mod sniff;

use http::{Version, header};

/// Why a request's framing was refused (always 400, connection closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("both Content-Length and Transfer-Encoding")]
    ContentLengthWithTransferEncoding,
    #[error("more than one Content-Length")]
    DuplicateContentLength,
    #[error("HTTP/1.1 request without Host")]
    MissingHost,
    #[error("more than one Host")]
    DuplicateHost,
    #[error("Transfer-Encoding other than chunked")]
    BadTransferEncoding,
}

/// Checks a parsed request head; `raw` is the sniffer's verdict on the same
/// head's raw bytes, if it saw one.
pub fn check(parts: &http::request::Parts, raw: Option<FramingError>) -> Result<(), FramingError> {
    if let Some(e) = raw {
        return Err(e);
    }
    let h = &parts.headers;
    if h.get_all(header::CONTENT_LENGTH).iter().count() > 1 {
        return Err(FramingError::DuplicateContentLength);
    }
    if h.contains_key(header::TRANSFER_ENCODING) {
        if h.contains_key(header::CONTENT_LENGTH) {
            return Err(FramingError::ContentLengthWithTransferEncoding);
        }
        let te: Vec<_> = h.get_all(header::TRANSFER_ENCODING).iter().collect();
        if te.len() != 1 || !te[0].as_bytes().eq_ignore_ascii_case(b"chunked") {
            return Err(FramingError::BadTransferEncoding);
        }
    }
    match h.get_all(header::HOST).iter().count() {
        0 if parts.version == Version::HTTP_11 && parts.uri.authority().is_none() => Err(FramingError::MissingHost),
        0 | 1 => Ok(()),
        _ => Err(FramingError::DuplicateHost),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(version: Version, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().uri("/").version(version);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn host_rules() {
        assert_eq!(check(&parts(Version::HTTP_11, &[]), None), Err(FramingError::MissingHost));
        assert_eq!(check(&parts(Version::HTTP_10, &[]), None), Ok(()));
        assert_eq!(
            check(&parts(Version::HTTP_11, &[("host", "a"), ("host", "b")]), None),
            Err(FramingError::DuplicateHost)
        );
        assert_eq!(check(&parts(Version::HTTP_11, &[("host", "a")]), None), Ok(()));
    }

    #[test]
    fn length_rules() {
        let p = parts(Version::HTTP_11, &[("host", "a"), ("content-length", "1"), ("content-length", "1")]);
        assert_eq!(check(&p, None), Err(FramingError::DuplicateContentLength));
        let p = parts(Version::HTTP_11, &[("host", "a"), ("transfer-encoding", "gzip, chunked")]);
        assert_eq!(check(&p, None), Err(FramingError::BadTransferEncoding));
        let p = parts(Version::HTTP_11, &[("host", "a")]);
        assert_eq!(
            check(&p, Some(FramingError::ContentLengthWithTransferEncoding)),
            Err(FramingError::ContentLengthWithTransferEncoding)
        );
    }
}
