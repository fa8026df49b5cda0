//! The validated runtime configuration of an upload location.
//!
//! The lead's TOML layer mirrors `upload = { store = "...", pass = "UPSTREAM", cleanup = [...],
//! access = "0600", ... }` and fills an [`UploadSettings`]; [`UploadConfig::from_settings`] turns it
//! into a value that cannot hold a bad store, mode, status or limit. Opening the store here makes a
//! missing or unsafe directory a config-load error (D11), not a 503 on the first upload.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use super::store::{Store, StoreConfigError, StoreOptions};

/// Everything the TOML can say about an upload location, before validation.
///
/// `pass` (the upstream pool) is not here: routing the rewritten form is the pipeline's job.
#[derive(Debug, Clone)]
pub struct UploadSettings {
    /// The store directory (`store`). Must be absolute; it must exist unless `create_store`.
    pub store: PathBuf,
    /// Create the store (mode 0700) when it is missing (`create = true`). Never chmods or chowns an
    /// existing directory (D11).
    pub create_store: bool,
    /// File mode of stored files (`access = "0600"`, parsed with [`parse_mode`]).
    pub mode: u32,
    /// Final statuses after which the request's files are deleted (`cleanup`).
    pub cleanup: Vec<RangeInclusive<u16>>,
    /// Request limits (`client_max_body_size` and the D14 caps).
    pub limits: UploadLimits,
    /// Orphans older than this are swept (D12); `None` disables the sweeper.
    pub sweep_ttl: Option<Duration>,
}

impl UploadSettings {
    /// The reference configuration's location with the given store: cleanup after 200/400/404/499, mode 0600 (D10),
    /// default limits and a one-hour sweeper.
    pub fn reference(store: impl Into<PathBuf>) -> Self {
        UploadSettings {
            store: store.into(),
            create_store: false,
            mode: 0o600,
            cleanup: CleanupPolicy::REFERENCE.iter().map(|s| *s..=*s).collect(),
            limits: UploadLimits::default(),
            sweep_ttl: Some(DEFAULT_SWEEP_TTL),
        }
    }
}

/// Default age after which an unreferenced store file counts as an orphan. Long enough for any
/// backend that answers within `read_timeout`; backends must move files they keep (nginx-upload-module's
/// "200 deletes" contract already requires it).
pub const DEFAULT_SWEEP_TTL: Duration = Duration::from_secs(3600);

/// The validated configuration of one upload location.
#[derive(Debug, Clone)]
pub struct UploadConfig {
    /// The opened, checked store directory.
    pub store: Store,
    /// Caps enforced while the body streams.
    pub limits: UploadLimits,
    /// Which final statuses delete the request's files.
    pub cleanup: CleanupPolicy,
    /// Orphan age for the sweeper; `None` = no sweeper.
    pub sweep_ttl: Option<Duration>,
}

impl UploadConfig {
    /// Validates settings and opens the store; every failure names the offending key.
    pub fn from_settings(settings: &UploadSettings) -> Result<Self, UploadConfigError> {
        settings.limits.validate()?;
        let cleanup = CleanupPolicy::new(settings.cleanup.iter().cloned())?;
        if settings.sweep_ttl == Some(Duration::ZERO) {
            return Err(UploadConfigError::Invalid {
                key: "sweep_ttl",
                reason: "must be positive (omit it to disable the sweeper)".into(),
            });
        }
        let store = Store::open(&settings.store, &StoreOptions { mode: settings.mode, create: settings.create_store })?;
        Ok(UploadConfig { store, limits: settings.limits.clone(), cleanup, sweep_ttl: settings.sweep_ttl })
    }
}

/// Caps on one upload request. Defaults: the reference configuration's 100M body, nginx-upload-module's 511-byte header line
/// and 100k form, plus the D14 caps nginx-upload-module lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadLimits {
    /// Decoded body bytes (declared or streamed, either framing, D8); over it → 413.
    pub max_body_bytes: u64,
    /// Parts per request (D14); over it → 413.
    pub max_parts: usize,
    /// Stored files per request (D14); over it → 413.
    pub max_files: usize,
    /// Bytes in one part-header line, terminator excluded (nginx-upload-module: 511); over it → 400.
    pub max_header_line: usize,
    /// Bytes of one part's whole header block (D14); over it → 400.
    pub max_part_header_bytes: usize,
    /// Bytes of the rewritten form sent upstream (nginx-upload-module: `upload_max_output_body_len` 100k);
    /// a passed text field that would cross it → 413 (D5, where nginx-upload-module silently dropped it).
    pub max_form_bytes: usize,
}

impl Default for UploadLimits {
    fn default() -> Self {
        UploadLimits {
            max_body_bytes: 100 * 1024 * 1024,
            max_parts: 1024,
            max_files: 256,
            max_header_line: 511,
            max_part_header_bytes: 8 * 1024,
            max_form_bytes: 100 * 1024,
        }
    }
}

impl UploadLimits {
    /// The smallest form cap accepted: room for the dummy field with a 70-byte boundary.
    pub const MIN_FORM_BYTES: usize = 1024;

    fn validate(&self) -> Result<(), UploadConfigError> {
        let bad = |key: &'static str, reason: &str| Err(UploadConfigError::Invalid { key, reason: reason.into() });
        if self.max_parts == 0 {
            return bad("max_parts", "must be at least 1");
        }
        if self.max_header_line < 64 {
            return bad("max_header_line", "must be at least 64 bytes");
        }
        if self.max_part_header_bytes < self.max_header_line {
            return bad("max_part_header_bytes", "must be at least max_header_line bytes");
        }
        if self.max_form_bytes < Self::MIN_FORM_BYTES {
            return bad("max_form_bytes", "must be at least 1024 bytes");
        }
        Ok(())
    }
}

/// Which final statuses delete a request's completed files (nginx-upload-module's `upload_cleanup`).
///
/// 499 means "the client left": it applies when the upload is dropped without a final status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanupPolicy {
    ranges: Vec<RangeInclusive<u16>>,
}

impl CleanupPolicy {
    /// The reference configuration's list: `upload_cleanup 200 400 404 499`.
    pub const REFERENCE: [u16; 4] = [200, 400, 404, 499];

    /// Validates each status or range against 200..=599, as nginx-upload-module does.
    pub fn new(ranges: impl IntoIterator<Item = RangeInclusive<u16>>) -> Result<Self, UploadConfigError> {
        let ranges: Vec<_> = ranges.into_iter().collect();
        for r in &ranges {
            if r.start() > r.end() || *r.start() < 200 || *r.end() > 599 {
                return Err(UploadConfigError::Invalid {
                    key: "cleanup",
                    reason: format!("{}-{} is not a status or range within 200-599", r.start(), r.end()),
                });
            }
        }
        Ok(CleanupPolicy { ranges })
    }

    /// The reference configuration's policy (200, 400, 404, 499).
    pub fn reference() -> Self {
        CleanupPolicy { ranges: Self::REFERENCE.iter().map(|s| *s..=*s).collect() }
    }

    /// Whether files are deleted after a request that ended with `status`.
    pub fn deletes(&self, status: u16) -> bool {
        self.ranges.iter().any(|r| r.contains(&status))
    }
}

/// Parses `access` as an octal file mode (`"0600"`, `"640"`); only read/write bits are allowed.
pub fn parse_mode(text: &str) -> Result<u32, UploadConfigError> {
    let invalid = || UploadConfigError::Invalid {
        key: "access",
        reason: format!("{text:?} is not an octal mode such as \"0600\" (rw bits only)"),
    };
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || digits.len() > 4 {
        return Err(invalid());
    }
    let mode = u32::from_str_radix(digits, 8).map_err(|_| invalid())?;
    if mode & !0o666 != 0 {
        return Err(invalid());
    }
    Ok(mode)
}

/// Why an upload location's configuration was rejected at load.
#[derive(Debug, thiserror::Error)]
pub enum UploadConfigError {
    /// A key has a value gale refuses; `reason` says how to fix it.
    #[error("upload.{key}: {reason}")]
    Invalid {
        /// The TOML key inside `upload = { ... }`.
        key: &'static str,
        /// What is wrong and what would be accepted.
        reason: String,
    },
    /// The store directory is missing, unsafe or unusable.
    #[error("upload.store: {0}")]
    Store(#[from] StoreConfigError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanup_ranges_and_bounds() {
        let reference = CleanupPolicy::reference();
        for s in [200, 400, 404, 499] {
            assert!(reference.deletes(s), "{s}");
        }
        for s in [201, 204, 302, 500, 502, 503, 413, 507] {
            assert!(!reference.deletes(s), "{s}");
        }
        let ranged = CleanupPolicy::new([500..=505]).expect("valid");
        assert!(ranged.deletes(503) && !ranged.deletes(506));
        assert!(CleanupPolicy::new([199..=199]).is_err());
        assert!(CleanupPolicy::new([600..=600]).is_err());
        assert!(CleanupPolicy::new([RangeInclusive::new(505, 500)]).is_err());
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0600").ok(), Some(0o600));
        assert_eq!(parse_mode("640").ok(), Some(0o640));
        assert_eq!(parse_mode("0o666").ok(), Some(0o666));
        for bad in ["", "0700", "4600", "0999", "rw", "00600"] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_are_checked() {
        let mut settings = UploadSettings::reference("/nonexistent-gale-store");
        settings.limits.max_form_bytes = 10;
        let err = UploadConfig::from_settings(&settings).expect_err("tiny form cap");
        assert!(err.to_string().contains("max_form_bytes"), "{err}");
        settings.limits = UploadLimits::default();
        let err = UploadConfig::from_settings(&settings).expect_err("missing store");
        assert!(err.to_string().starts_with("upload.store"), "{err}");
    }
}
