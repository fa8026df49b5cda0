//! Uploads through the real binary (issue 5, item 5): an `upload` location in front of a capture
//! backend that records the exact forwarded bytes (the vectors V1-V17 and the deviations D1-D16
//! of docs/uploads.md), and in front of a real
//! Tornado handler that opens the stored files (the cleanup table, 499, modes).
//!
//! Submodules: `vectors` (V1-V17), `requests` (request-level checks and D-items), `lifecycle`
//! (cleanup with Tornado, aborts, the 100 MB cap).

mod lifecycle;
mod requests;
mod vectors;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gale_tests::multipart::{self, B};
use gale_tests::{Capture, Captured, ConfigBuilder, Gale, Request, Response, Snapshot};
use tempfile::TempDir;

/// The upload location's path in every test config.
pub const UPLOAD: &str = "/upload";

/// A private store (mode 0700, owned by us: what gale requires, D11) and its canonical path.
pub fn private_store() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod store");
    let path = dir.path().canonicalize().expect("canonical store path");
    (dir, path)
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("string to JSON")
}

/// The body of a `[[server.location]]` at `path` that uploads into `store` and passes the form
/// to the builder's pool; `extra` is appended inside the inline table (`, access = "0640"`).
pub fn upload_location(path: &str, store: &Path, extra: &str) -> String {
    let store = toml_str(store.to_str().expect("UTF-8 store path"));
    format!("path = {}\nupload = {{ store = {store}, pass = \"tornadoes\"{extra} }}", toml_str(path))
}

/// gale with an upload location in front of a capture backend, `client_max_body_size = "100M"`
/// (the reference configuration's server).
pub struct Site {
    /// The running gale.
    pub gale: Gale,
    /// The backend every request goes to (`/upload` via the upload location, the rest proxied).
    pub capture: Capture,
    /// The store's canonical path.
    pub store: PathBuf,
    _store_dir: TempDir,
}

impl Site {
    /// A capture backend answering 200.
    #[track_caller]
    pub fn new() -> Site {
        Self::with(Capture::start(200), "")
    }

    /// This backend; `extra` inside the `upload = { ... }` table.
    #[track_caller]
    pub fn with(capture: Capture, extra: &str) -> Site {
        let (dir, store) = private_store();
        let gale = ConfigBuilder::new([capture.addr()])
            .http("client_max_body_size", "100M")
            .location(&upload_location(UPLOAD, &store, extra))
            .start();
        Site { gale, capture, store, _store_dir: dir }
    }

    /// POSTs `body` to `target` with this Content-Type on a new connection.
    #[track_caller]
    pub fn post(&self, target: &str, content_type: &str, body: &[u8]) -> Response {
        self.gale.send(&Request::post(target, body.to_vec()).header("Content-Type", content_type))
    }

    /// The names in the store now.
    pub fn stored(&self) -> Vec<String> {
        multipart::list_dir(&self.store)
    }

    /// Asserts the store is empty, or becomes so within a few seconds: a completed upload's files
    /// are removed right after its answer, not before.
    #[track_caller]
    pub fn assert_store_empty(&self, what: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut left = self.stored();
        while !left.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            left = self.stored();
        }
        assert!(left.is_empty(), "{what}: files left in the store: {left:?}\ngale stderr:\n{}", self.gale.stderr());
    }

    /// Asserts the backend was never called.
    #[track_caller]
    pub fn assert_backend_untouched(&self, what: &str) {
        let seen: Vec<String> = self.capture.requests().iter().map(|r| r.request_line.clone()).collect();
        assert!(seen.is_empty(), "{what}: the backend was called: {seen:?}");
    }

    /// Posts a spec vector (boundary [`B`]) to `/upload`, expects 200, checks the single forwarded
    /// request byte for byte against `fields` (see [`expect_forwarded`]) and that the 200 deleted
    /// every stored file. Clears the capture for the next vector.
    #[track_caller]
    pub fn vector(&self, data: &[u8], fields: &[(&str, &[u8])]) -> (Captured, Vec<Snapshot>) {
        let response = self.post(UPLOAD, &multipart::content_type(), data);
        assert_eq!(response.status, 200, "upload refused:\n{response}\ngale stderr:\n{}", self.gale.stderr());
        assert_eq!(response.body, b"captured\n", "the backend's answer reaches the client");
        let got = self.capture.only();
        let snapshots = expect_forwarded(self, &got, B, fields);
        self.assert_store_empty("after the backend answered 200 (cleanup list)");
        self.capture.clear();
        (got, snapshots)
    }
}

/// Checks one forwarded upload against the spec's form:
/// - `fields` in order, where a value `<F1>`, `<F2>`, ... stands for the n-th stored file's
///   absolute path (read from the forwarded `.path` fields, which must be store names, D10);
/// - the body is exactly the spec grammar with that boundary, and Content-Length matches both
///   the body and the spec's formula;
/// - each stored file existed while the backend handled the request, with mode 0600 (D10) and
///   the md5 and size the form claims.
///
/// Returns the snapshots of the stored files in order.
#[track_caller]
pub fn expect_forwarded(site: &Site, got: &Captured, boundary: &str, fields: &[(&str, &[u8])]) -> Vec<Snapshot> {
    let form = got.form();
    let paths: Vec<Vec<u8>> =
        form.iter().filter(|(name, _)| name.ends_with(b".path")).map(|(_, value)| value.clone()).collect();
    for path in &paths {
        let path = Path::new(std::str::from_utf8(path).expect("UTF-8 path"));
        assert!(
            multipart::is_store_path(path, &site.store),
            "`.path` {} is not a random name in the store {} (D10)",
            path.display(),
            site.store.display()
        );
    }
    let want_fields: Vec<(&str, &[u8])> = fields
        .iter()
        .map(|(name, value)| {
            let placeholder = std::str::from_utf8(value).ok().and_then(|v| v.strip_prefix("<F")?.strip_suffix('>'));
            match placeholder.and_then(|n| n.parse::<usize>().ok()) {
                Some(n) => {
                    let path = paths.get(n - 1).unwrap_or_else(|| panic!("no stored file <F{n}>: {form:?}"));
                    (*name, path.as_slice())
                }
                None => (*name, *value),
            }
        })
        .collect();
    let want = multipart::forwarded(boundary, &want_fields);
    assert!(
        got.body == want,
        "forwarded body differs\n got: {}\nwant: {}",
        multipart::preview(&got.body),
        multipart::preview(&want)
    );
    assert_eq!(got.body.len(), multipart::forwarded_len(boundary, &want_fields), "the spec's length formula");
    assert_eq!(got.header("content-length"), Some(got.body.len().to_string().as_str()), "{}", got.request_line);
    assert!(!got.chunked, "the form goes upstream with a computed Content-Length (D8)");

    let claimed = |suffix: &str| -> Vec<Vec<u8>> {
        form.iter().filter(|(n, _)| n.ends_with(suffix.as_bytes())).map(|(_, v)| v.clone()).collect()
    };
    let (claimed_md5, claimed_size) = (claimed(".md5"), claimed(".size"));
    assert_eq!(got.files.len(), paths.len());
    for (i, snapshot) in got.files.iter().enumerate() {
        assert!(snapshot.exists, "stored file {} was missing while the backend handled the request", i + 1);
        assert_eq!(snapshot.mode, 0o600, "stored file mode (D10 default)");
        assert_eq!(snapshot.md5.as_bytes(), claimed_md5[i].as_slice(), "`.md5` of file {}", i + 1);
        assert_eq!(snapshot.size.to_string().as_bytes(), claimed_size[i].as_slice(), "`.size` of file {}", i + 1);
    }
    got.files.clone()
}

/// The hang detector for waits on the store or the backend.
pub const HANG: Duration = Duration::from_secs(30);
