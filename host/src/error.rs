//! The one place where a failure becomes an HTTP response. Every module
//! reports failures as its own error type; [`GaleError`] records where a
//! failure came from (the client, an upstream, gale itself), and
//! [`GaleError::status`] decides the status from that.

use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{BodyFault, ResponseBody, full};
use crate::framing::FramingError;
use crate::proxy::ProxyError;
use crate::static_files::path::PathError;
use crate::static_files::{ALLOWED_METHODS, StaticError};

/// Any failure while handling a request.
#[derive(Debug, thiserror::Error)]
pub enum GaleError {
    /// The request head breaks HTTP/1.1 framing rules.
    #[error(transparent)]
    Framing(#[from] FramingError),
    /// The request target is longer than `max_uri_size`.
    #[error("request URI longer than {limit} bytes")]
    UriTooLong { limit: u64 },
    /// The declared body is larger than `client_max_body_size`.
    #[error("request body of {declared} bytes exceeds client_max_body_size ({limit})")]
    BodyTooLarge { declared: u64, limit: u64 },
    /// The request path has no normal form (bad escape, `%2F`, `\`, NUL,
    /// `..` above `/`): 400.
    #[error(transparent)]
    Path(#[from] crate::uri_path::NormaliseError),
    /// No location of the server matches the path.
    #[error("no location matches")]
    NoLocation,
    /// A keep-alive connection outlived its listener across a reload: 503,
    /// and the client reconnects.
    #[error("the listener of this connection was removed by a reload")]
    ListenerGone,
    /// The route already has `max_tunnels` upgraded connections open: 503.
    #[error("too many open tunnels on this route")]
    TooManyTunnels,
    /// Serving a static file failed.
    #[error(transparent)]
    Static(#[from] StaticError),
    /// An upload was refused or could not be stored.
    #[error(transparent)]
    Upload(#[from] crate::upload::UploadError),
    /// A fail-closed plugin trapped, timed out or hit its memory cap: 503.
    #[error(transparent)]
    Plugin(#[from] crate::plugin::PluginError),
    /// Forwarding to an upstream failed.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
}

impl GaleError {
    /// The status this failure answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            GaleError::Framing(_) | GaleError::Path(_) => StatusCode::BAD_REQUEST,
            GaleError::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            GaleError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GaleError::NoLocation => StatusCode::NOT_FOUND,
            // The upload leaf classifies its own failures (multipart syntax,
            // limits, store I/O) in `UploadError::status`; see docs/uploads.md.
            GaleError::Upload(e) => e.status(),
            GaleError::Static(e) => match e {
                StaticError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
                StaticError::Path(PathError::Refused(_)) | StaticError::NotFound => StatusCode::NOT_FOUND,
                StaticError::Path(_) => StatusCode::BAD_REQUEST,
                StaticError::DirectoryIndex | StaticError::Forbidden => StatusCode::FORBIDDEN,
                StaticError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            GaleError::TooManyTunnels | GaleError::ListenerGone | GaleError::Plugin(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            GaleError::Proxy(p) => match p {
                ProxyError::NoLiveUpstream { .. }
                | ProxyError::Connect { .. }
                | ProxyError::Closed { .. }
                | ProxyError::UnexpectedUpgrade { .. } => StatusCode::BAD_GATEWAY,
                ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
                ProxyError::ClientBody(BodyFault::TooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
                ProxyError::ClientBody(BodyFault::Timeout) => StatusCode::REQUEST_TIMEOUT,
                // Broken chunked framing is the client's error, and it is
                // still connected to read the answer (nginx: 400).
                ProxyError::ClientBody(BodyFault::Malformed) => StatusCode::BAD_REQUEST,
                // nginx's 499: the client closed the connection. Nobody reads
                // this response; it is what the access log records.
                ProxyError::ClientBody(BodyFault::Aborted) => client_closed(),
            },
        }
    }

    /// Whether the client connection must be closed after the answer
    /// (its framing can no longer be trusted, or its body was not read).
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            GaleError::Framing(_)
                | GaleError::BodyTooLarge { .. }
                | GaleError::ListenerGone
                | GaleError::Upload(_)
                | GaleError::Proxy(ProxyError::ClientBody(_))
        )
    }

    /// The response for this failure.
    pub fn to_response(&self) -> Response<ResponseBody> {
        let mut resp = error_page(self.status());
        if self.closes_connection() {
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let GaleError::Static(StaticError::MethodNotAllowed) = self {
            resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
        }
        resp
    }
}

/// nginx's non-standard "client closed request".
pub fn client_closed() -> StatusCode {
    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
}

/// A small HTML error page, like nginx's built-in ones.
pub fn error_page(status: StatusCode) -> Response<ResponseBody> {
    let reason = status.canonical_reason().unwrap_or("Error");
    let code = status.as_u16();
    let body = format!(
        "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1></center>\r\n<hr><center>gale</center>\r\n</body>\r\n</html>\r\n"
    );
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_origin_of_the_failure() {
        assert_eq!(GaleError::NoLocation.status(), 404);
        assert_eq!(GaleError::UriTooLong { limit: 1 }.status(), 414);
        assert_eq!(GaleError::BodyTooLarge { declared: 2, limit: 1 }.status(), 413);
        assert_eq!(GaleError::Framing(FramingError::MissingHost).status(), 400);
        assert_eq!(GaleError::Path(crate::uri_path::NormaliseError::AboveRoot).status(), 400);
        let timeout = ProxyError::Timeout {
            upstream: "u".into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            timeout: std::time::Duration::from_secs(1),
        };
        assert_eq!(GaleError::Proxy(timeout).status(), 504);
        assert_eq!(GaleError::Proxy(ProxyError::NoLiveUpstream { upstream: "u".into() }).status(), 502);
        assert_eq!(GaleError::Proxy(ProxyError::ClientBody(BodyFault::TooLarge)).status(), 413);
        assert_eq!(GaleError::Proxy(ProxyError::ClientBody(BodyFault::Timeout)).status(), 408);
        assert_eq!(GaleError::Proxy(ProxyError::ClientBody(BodyFault::Malformed)).status(), 400);
        assert!(GaleError::Proxy(ProxyError::ClientBody(BodyFault::Malformed)).closes_connection());
    }

    #[test]
    fn framing_errors_close_the_connection() {
        let r = GaleError::Framing(FramingError::MissingHost).to_response();
        assert_eq!(r.headers()["connection"], "close");
        assert!(GaleError::NoLocation.to_response().headers().get("connection").is_none());
    }
}
