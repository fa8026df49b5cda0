//! Uploads: nginx-upload-module parity, done safely (docs/uploads.md).
//!
//! Comments here cite docs/uploads.md's two numbered tables: `V1`-`V17`, what nginx-upload-module
//! does with a request and whether gale matches it, and `D1`-`D16`, where gale deliberately
//! differs.
//!
//! Tornado blocks while it receives a large body, so gale takes the upload instead: it parses the
//! multipart body as it streams, writes file parts to a private store while computing md5 and
//! size, and sends the backend a small form that says where the files are.
//!
//! This module is a leaf that works on plain types; the pipeline wires it in:
//!
//! 1. [`check_request`] on the request head → [`RequestCheck::Options`] (answer 200 empty) or an
//!    [`UploadRequest`], or an [`UploadError`] (405/400/413/415) before any body byte is read;
//! 2. [`receive`] with the body stream, the location's [`UploadConfig`] and a [`FieldPolicy`]
//!    → a [`ReceivedUpload`] (the rewritten body, its Content-Type, the stored files);
//! 3. the pipeline sends the body upstream (original URI and query, computed Content-Length);
//! 4. [`UploadedFiles::finish`] with the final status applies the cleanup table; dropping it
//!    unfinished counts as 499 (the client left).
//!
//! Plus [`spawn_sweeper`] per store for orphans older than the TTL (D12).
//!
//! Submodules: `request` (head checks, boundary), `multipart` + `headers` (the streaming parser),
//! `store` (files, hashing, sweeper), `fields` (the policy), `form` (the rewritten body),
//! `cleanup` (abort guard and cleanup table), `receive` (the driver), `config`.

mod cleanup;
mod config;
mod fields;
mod form;
mod headers;
pub mod multipart;
mod receive;
mod request;
mod store;
mod writers;

#[cfg(test)]
mod tests;

use http::StatusCode;

pub use cleanup::{CleanupOutcome, UploadedFiles};
pub use config::{
    CleanupPolicy, DEFAULT_SWEEP_TTL, UploadConfig, UploadConfigError, UploadLimits, UploadSettings, parse_mode,
};
pub use fields::{
    FieldPolicy, FieldPolicyConfig, FileAttr, FormField, NativeFieldPolicy, PolicyError, StoredFile, TextDecision,
    is_generated_name, sanitize_filename,
};
pub use form::{DUMMY_FIELD, FormError};
pub use headers::PartHead;
pub use multipart::MultipartError;
pub use receive::{ReceivedUpload, receive};
pub use request::{Boundary, ParsedContentType, RequestCheck, UploadRequest, check_request, parse_content_type};
pub use store::{
    Store, StoreConfigError, StoreError, StoreOptions, SweepReport, is_store_name, spawn_sweeper, sweep_interval,
};

/// A boxed error from the body stream (hyper's, or a test's).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why an upload request failed. Each variant documents the status it maps to; [`Self::status`]
/// returns it for `error.rs`. Every error is raised after any files of the request were unlinked
/// (or will be, as the failing future is dropped).
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// 405: a method other than POST or OPTIONS.
    #[error("method not allowed on an upload location")]
    MethodNotAllowed,
    /// 400: no Content-Type header.
    #[error("missing Content-Type")]
    MissingContentType,
    /// 415: the media type is not exactly `multipart/form-data` (D16).
    #[error("Content-Type is not multipart/form-data")]
    UnsupportedMediaType,
    /// 400: missing, duplicate, invalid or unparsable boundary (nginx-upload-module did not answer, D7).
    #[error("bad multipart boundary: {0}")]
    BadBoundary(&'static str),
    /// 400: an unparsable Content-Length (hyper normally refuses it first).
    #[error("bad Content-Length")]
    BadContentLength,
    /// 413: the declared or streamed body is over `max_body_bytes` (either framing, D8).
    #[error("upload body too large")]
    BodyTooLarge,
    /// 400 (413 for too many parts): malformed or truncated multipart (D5, D6, D14, D15).
    #[error("malformed multipart body: {0}")]
    Multipart(#[from] MultipartError),
    /// 413: more file parts than `max_files` (D14).
    #[error("more than {0} files in one upload")]
    TooManyFiles(usize),
    /// 413 when the form would exceed `max_form_bytes` (D5/D13), 400 for a field that would break
    /// the form's framing.
    #[error("rewritten form: {0}")]
    Form(#[from] FormError),
    /// 400: reading the client body failed (client abort, bad chunked framing). Usually nobody is
    /// left to answer; nginx-upload-module logged 400.
    #[error("reading the upload body failed: {0}")]
    ClientBody(#[source] BoxError),
    /// 507 when the disk or quota is full, 503 for other store I/O errors (D5).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// 500: the field policy (plugin) failed.
    #[error("upload field policy failed: {0}")]
    Policy(#[source] PolicyError),
}

impl UploadError {
    /// The status the client should get.
    pub fn status(&self) -> StatusCode {
        match self {
            UploadError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            UploadError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            UploadError::BodyTooLarge
            | UploadError::TooManyFiles(_)
            | UploadError::Multipart(MultipartError::TooManyParts(_))
            | UploadError::Form(FormError::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
            UploadError::MissingContentType
            | UploadError::BadBoundary(_)
            | UploadError::BadContentLength
            | UploadError::Multipart(_)
            | UploadError::Form(FormError::Unsafe(_))
            | UploadError::ClientBody(_) => StatusCode::BAD_REQUEST,
            UploadError::Store(e) if e.is_no_space() => StatusCode::INSUFFICIENT_STORAGE,
            UploadError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            UploadError::Policy(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}
