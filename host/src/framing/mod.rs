//! Strict request framing. hyper already rejects malformed heads,
//! bad chunked encoding, unequal duplicate `Content-Length` and obs-fold; it
//! quietly resolves the ambiguous rest (`Content-Length` with
//! `Transfer-Encoding`, equal duplicate lengths) the way RFC 9112 allows.
//! A proxy should not guess where a peer might guess differently (request
//! smuggling), so gale rejects those with 400: [`sniff`] watches the raw
//! bytes hyper reads, and [`check`] looks at each parsed head (HTTP/1.x and
//! HTTP/2 alike: the Host rules apply to both).

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
    #[error("empty Host")]
    EmptyHost,
    /// A Host that is not `host[:port]` (a `/`, `@`, space, ...): a backend
    /// building URLs from it could be pointed elsewhere (nginx refuses it too).
    #[error("malformed Host")]
    BadHost,
    /// An HTTP/2 `:authority` and a `host` header that name different
    /// hosts (RFC 9113 8.3.1): routing would follow one and the backend the
    /// other.
    #[error("host differs from :authority")]
    HostMismatch,
    #[error("Transfer-Encoding other than chunked")]
    BadTransferEncoding,
}

/// Checks a parsed request head; `raw` is the sniffer's verdict on the same
/// head's raw bytes, if it saw one. An HTTP/1.x absolute-form target's
/// authority replaces `Host` (RFC 9112 3.2.2: gale routes by the target, so
/// the backend must be told the same host).
pub fn check(parts: &mut http::request::Parts, raw: Option<FramingError>) -> Result<(), FramingError> {
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
    let mut hosts = h.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err(FramingError::DuplicateHost),
        // Even with an absolute-form target: RFC 9112 3.2 requires Host of
        // every HTTP/1.1 request, and nginx refuses one without it.
        (None, _) if parts.version == Version::HTTP_11 => Err(FramingError::MissingHost),
        (None, _) => Ok(()),
        (Some(host), None) if host.is_empty() => Err(FramingError::EmptyHost),
        (Some(host), None) if !is_host_and_port(host.as_bytes()) => Err(FramingError::BadHost),
        (Some(host), None) => match parts.uri.authority() {
            Some(authority) if !authority.as_str().as_bytes().eq_ignore_ascii_case(host.as_bytes()) => {
                if parts.version == Version::HTTP_2 {
                    // RFC 9113 8.3.1: malformed.
                    return Err(FramingError::HostMismatch);
                }
                let target = http::HeaderValue::from_str(authority.as_str()).map_err(|_| FramingError::BadHost)?;
                parts.headers.insert(header::HOST, target);
                Ok(())
            }
            _ => Ok(()),
        },
    }
}

/// Whether `v` is `host[:port]` (RFC 9110 7.2): an authority without userinfo.
fn is_host_and_port(v: &[u8]) -> bool {
    if v.contains(&b'@') {
        return false;
    }
    let Ok(authority) = http::uri::Authority::try_from(v) else {
        return false;
    };
    // `Authority` accepts any port text; a port must be digits.
    let after_host = authority.as_str().rsplit_once(']').map_or(authority.as_str(), |(_, rest)| rest);
    !after_host.contains(':') || authority.port_u16().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(version: Version, headers: &[(&str, &str)]) -> http::request::Parts {
        parts_for("/", version, headers)
    }

    fn parts_for(uri: &str, version: Version, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().uri(uri).version(version);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn check_head(mut p: http::request::Parts, raw: Option<FramingError>) -> Result<(), FramingError> {
        check(&mut p, raw)
    }

    #[test]
    fn host_rules() {
        assert_eq!(check_head(parts(Version::HTTP_11, &[]), None), Err(FramingError::MissingHost));
        assert_eq!(check_head(parts(Version::HTTP_10, &[]), None), Ok(()));
        assert_eq!(
            check_head(parts(Version::HTTP_11, &[("host", "a"), ("host", "b")]), None),
            Err(FramingError::DuplicateHost)
        );
        assert_eq!(check_head(parts(Version::HTTP_11, &[("host", "a")]), None), Ok(()));
        assert_eq!(check_head(parts(Version::HTTP_11, &[("host", "")]), None), Err(FramingError::EmptyHost));
        for bad in ["a/b", "a b", "u@a", "a:x"] {
            assert_eq!(
                check_head(parts(Version::HTTP_11, &[("host", bad)]), None),
                Err(FramingError::BadHost),
                "{bad}"
            );
        }
        for good in ["a.test", "a.test:8080", "127.0.0.1:1", "[::1]:80"] {
            assert_eq!(check_head(parts(Version::HTTP_11, &[("host", good)]), None), Ok(()), "{good}");
        }
    }

    #[test]
    fn the_target_authority_wins_over_host_and_must_agree_in_http2() {
        let mut p = parts_for("http://a.test/x", Version::HTTP_11, &[("host", "b.test")]);
        assert_eq!(check(&mut p, None), Ok(()));
        assert_eq!(p.headers["host"], "a.test", "the backend is told the host gale routed by");
        let absolute = |host: &[(&str, &str)]| check_head(parts_for("http://a.test/x", Version::HTTP_11, host), None);
        assert_eq!(absolute(&[("host", "A.test")]), Ok(()));
        assert_eq!(absolute(&[]), Err(FramingError::MissingHost));
        let h2 = |host: &[(&str, &str)]| check_head(parts_for("https://a.test:8443/x", Version::HTTP_2, host), None);
        assert_eq!(h2(&[]), Ok(()));
        assert_eq!(h2(&[("host", "a.test:8443")]), Ok(()));
        assert_eq!(h2(&[("host", "b.test")]), Err(FramingError::HostMismatch));
        assert_eq!(h2(&[("host", "a.test")]), Err(FramingError::HostMismatch));
    }

    #[test]
    fn length_rules() {
        let p = parts(Version::HTTP_11, &[("host", "a"), ("content-length", "1"), ("content-length", "1")]);
        assert_eq!(check_head(p, None), Err(FramingError::DuplicateContentLength));
        let p = parts(Version::HTTP_11, &[("host", "a"), ("transfer-encoding", "gzip, chunked")]);
        assert_eq!(check_head(p, None), Err(FramingError::BadTransferEncoding));
        let p = parts(Version::HTTP_11, &[("host", "a")]);
        assert_eq!(
            check_head(p, Some(FramingError::ContentLengthWithTransferEncoding)),
            Err(FramingError::ContentLengthWithTransferEncoding)
        );
    }
}
