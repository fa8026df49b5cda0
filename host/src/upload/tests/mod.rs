//! Body-in → forwarded-body-out tests of the whole upload leaf: the spec's vectors (V1-V17) and
//! the deviations (D2-D16) that live in this layer. Every body runs one-shot and trickled in
//! 1..=7-byte chunks; all runs must give identical results (D6).

mod deviations;
mod store;
mod vectors;

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use bytes::Bytes;
use futures_util::stream;

use super::*;

pub(super) const B: &str = "XbOuNdArY123";
pub(super) const TXT: &[u8] = b"Hello, world!\n";
pub(super) const TXT_MD5: &str = "746308829575e17c3331bbcb00c0898b";

/// A client part with CRLF framing: delimiter, headers, blank line, data, CRLF.
pub(super) fn part(headers: &[&str], data: &[u8]) -> Vec<u8> {
    let mut v = format!("--{B}\r\n").into_bytes();
    for h in headers {
        v.extend_from_slice(h.as_bytes());
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(b"\r\n");
    v.extend_from_slice(data);
    v.extend_from_slice(b"\r\n");
    v
}

pub(super) fn text(name: &str, value: &[u8]) -> Vec<u8> {
    part(&[&format!("Content-Disposition: form-data; name=\"{name}\"")], value)
}

pub(super) fn file(name: &str, filename: &str, content_type: &str, data: &[u8]) -> Vec<u8> {
    part(
        &[
            &format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\""),
            &format!("Content-Type: {content_type}"),
        ],
        data,
    )
}

pub(super) fn close() -> Vec<u8> {
    format!("--{B}--\r\n").into_bytes()
}

pub(super) fn body(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut v = parts.concat();
    v.extend_from_slice(&close());
    v
}

/// The expected forwarded body, written independently of `FormWriter` from the spec's grammar.
pub(super) fn forwarded(boundary: &str, fields: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
        );
        out.extend_from_slice(value);
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// A private store in a fresh temporary directory (tempfile creates it 0700).
pub(super) fn config() -> (tempfile::TempDir, UploadConfig) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = UploadConfig::from_settings(&UploadSettings::reference(dir.path())).expect("config");
    (dir, cfg)
}

pub(super) fn request(boundary: &str) -> UploadRequest {
    UploadRequest {
        boundary: Boundary::new(boundary.as_bytes()).expect("boundary"),
        content_type: http::HeaderValue::from_str(&format!("multipart/form-data; boundary={boundary}"))
            .expect("header"),
    }
}

pub(super) fn chunks(data: &[u8], size: usize) -> Vec<Result<Bytes, Infallible>> {
    if size == 0 {
        return vec![Ok(Bytes::copy_from_slice(data))];
    }
    data.chunks(size).map(|c| Ok(Bytes::copy_from_slice(c))).collect()
}

/// One-shot (0) then trickles of 1..=7 bytes.
pub(super) const CHUNKINGS: [usize; 8] = [0, 1, 2, 3, 4, 5, 6, 7];

/// What a successful run produced, with store paths replaced by `<F1>`, `<F2>`, ...
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Outcome {
    pub body: Vec<u8>,
    pub files: Vec<(StoredFile, Vec<u8>)>,
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = |b: &[u8]| {
            let s = String::from_utf8_lossy(&b[..b.len().min(600)]).into_owned();
            if b.len() > 600 { format!("{s}... ({} bytes)", b.len()) } else { s }
        };
        f.debug_struct("Outcome")
            .field("body", &short(&self.body))
            .field(
                "files",
                &self
                    .files
                    .iter()
                    .map(|(sf, c)| (sf.filename.clone(), sf.size, sf.md5.clone(), short(c)))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn normalise(upload: &ReceivedUpload, store: &Path) -> Outcome {
    let mut body = upload.body.to_vec();
    let mut files = Vec::new();
    for (i, f) in upload.files.files().iter().enumerate() {
        assert!(f.path.starts_with(store), "{f:?}");
        assert!(is_store_name(&f.store_name), "{f:?}");
        let meta = std::fs::symlink_metadata(&f.path).expect("stored file exists");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600, "D10 mode");
        let contents = std::fs::read(&f.path).expect("read stored file");
        assert_eq!(contents.len() as u64, f.size);
        assert_eq!(f.md5, super::store::hex(&md5_of(&contents)));
        let placeholder = format!("<F{}>", i + 1);
        let path = f.path.as_os_str().as_encoded_bytes();
        body = replace(&body, path, placeholder.as_bytes());
        let mut f = f.clone();
        f.path = placeholder.clone().into();
        f.store_name = placeholder;
        files.push((f, contents));
    }
    Outcome { body, files }
}

fn md5_of(data: &[u8]) -> Vec<u8> {
    use md5::Digest;
    md5::Md5::digest(data).to_vec()
}

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = haystack;
    while let Some(i) = memchr::memmem::find(rest, from) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(to);
        rest = &rest[i + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// Whether the store is empty now or becomes so within a few seconds: an aborted upload's files
/// are removed in the background, on the writer threads.
fn store_is_empty(dir: &Path) -> bool {
    eventually(|| std::fs::read_dir(dir).expect("read store").next().is_none())
}

/// Whether `done` holds now or within five seconds.
pub(super) fn eventually(done: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !done() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    true
}

/// Runs `data` through `receive` in every chunking with `policy`; all outcomes must agree.
/// Files are deleted (finish 200) after each run.
pub(super) async fn run_with(
    cfg: &UploadConfig,
    req: &UploadRequest,
    policy: &dyn FieldPolicy,
    data: &[u8],
) -> Result<Outcome, StatusAndMessage> {
    let mut first: Option<Result<Outcome, StatusAndMessage>> = None;
    for size in CHUNKINGS {
        let result = match receive(stream::iter(chunks(data, size)), req, cfg, policy).await {
            Ok(upload) => {
                let out = normalise(&upload, cfg.store.path());
                assert!(matches!(upload.files.finish(200).await, CleanupOutcome::Deleted(_)));
                Ok(out)
            }
            Err(e) => Err((e.status().as_u16(), e.to_string())),
        };
        assert!(
            store_is_empty(cfg.store.path()),
            "store not empty after run: {:?}",
            std::fs::read_dir(cfg.store.path()).expect("dir").map(|e| e.map(|e| e.file_name())).collect::<Vec<_>>()
        );
        match &first {
            None => first = Some(result),
            Some(f) => assert_eq!(f, &result, "chunking {size} differs from one-shot (D6)"),
        }
    }
    first.expect("at least one run")
}

pub(super) type StatusAndMessage = (u16, String);

/// `run_with` with the reference configuration's policy and boundary.
pub(super) async fn run(data: &[u8]) -> Result<Outcome, StatusAndMessage> {
    let (_dir, cfg) = config();
    run_with(&cfg, &request(B), &NativeFieldPolicy::reference(), data).await
}

/// Runs and expects success with exactly this forwarded body.
pub(super) async fn expect_form(data: &[u8], fields: &[(&str, &[u8])]) -> Outcome {
    let out = run(data).await.expect("upload succeeds");
    let want = forwarded(B, fields);
    assert_eq!(String::from_utf8_lossy(&out.body), String::from_utf8_lossy(&want));
    assert_eq!(out.body, want);
    out
}

/// Runs and expects this status in every chunking, with nothing left in the store.
pub(super) async fn expect_status(data: &[u8], status: u16) -> String {
    match run(data).await {
        Ok(out) => panic!("expected {status}, got a form: {}", String::from_utf8_lossy(&out.body)),
        Err((s, msg)) => {
            assert_eq!(s, status, "{msg}");
            msg
        }
    }
}
