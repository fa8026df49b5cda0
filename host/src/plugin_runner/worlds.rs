//! The runner's inputs and answers for the worlds other than header
//! policies: a cache policy asked about one file, an upload-fields policy
//! asked about text fields and stored files.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};

use super::Request;
use crate::plugin::{CachePolicy, PluginError, UploadFieldsPlugin};
use crate::static_files::FileMeta;
use crate::upload::{FormField, StoredFile, TextDecision};

/// The file a static location answers with, as a cache policy is told of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticFile {
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub mtime: u64,
    pub content_type: String,
}

impl Default for StaticFile {
    fn default() -> Self {
        Self { size: 1024, mtime: 0, content_type: "application/octet-stream".to_owned() }
    }
}

/// A cache policy's `decide` for `file`, at the path `request` names: the
/// caching headers gale would add to the file's 200.
pub async fn decide(policy: &CachePolicy, request: &Request, file: &StaticFile) -> Result<HeaderMap, PluginError> {
    let meta = FileMeta {
        path: request.uri.path().to_owned(),
        query: request.uri.query().map(str::to_owned),
        size: file.size,
        mtime: SystemTime::UNIX_EPOCH + Duration::from_secs(file.mtime),
        content_type: file.content_type.clone(),
    };
    let decided = policy.decide(&request.view(), &meta).await?;
    let mut headers = HeaderMap::new();
    decided.apply(StatusCode::OK, &mut headers);
    Ok(headers)
}

/// A cache policy's answer for a person.
pub fn render_cache_headers(headers: &HeaderMap) -> String {
    if headers.is_empty() {
        return "no caching headers\n".to_owned();
    }
    let mut out = "caching headers:\n".to_owned();
    super::render_headers(&mut out, headers);
    out
}

/// A file part of an upload, as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePart {
    /// The part's `name`.
    pub field: String,
    /// The client's filename (sanitised as gale does before the policy
    /// sees it).
    pub filename: String,
    pub content_type: String,
    pub size: u64,
}

/// Where the runner says files are stored: nothing is written.
const STORE: &str = "/var/lib/gale/uploads";

/// The stored file the upload handler would hand the policy for `part`, the
/// `seq`-th of the upload. The runner stores nothing: the file is taken to
/// be `size` zero bytes, at `/var/lib/gale/uploads/` plus a fixed store name
/// made from `seq`, so that a case's expected fields are the same on every
/// run; its md5 and sha256 are those of these bytes.
pub fn stored_file(part: &FilePart, seq: u32, sha256: bool) -> StoredFile {
    let zeros = [0u8; 8192];
    let mut md5 = gale_md5::Md5::new();
    let mut sha = sha256.then(Sha256::new);
    let mut left = part.size;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        md5.update(&zeros[..n]);
        if let Some(sha) = &mut sha {
            sha.update(&zeros[..n]);
        }
        left -= n as u64;
    }
    let store_name = format!("{seq:032}");
    StoredFile {
        field_name: Bytes::from(part.field.clone()),
        filename: crate::upload::sanitize_filename(part.filename.as_bytes()),
        raw_filename: Bytes::from(part.filename.clone()),
        content_type: Bytes::from(part.content_type.clone()),
        path: std::path::Path::new(STORE).join(&store_name),
        store_name,
        size: part.size,
        md5: hex(&md5.finalize()),
        sha256: sha.map(|s| hex(&s.finalize())),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What an upload-fields policy answered for the parts of one upload.
#[derive(Debug)]
pub struct UploadAnswers {
    /// Each text field's name and decision, in order.
    pub text: Vec<(String, Result<TextDecision, PluginError>)>,
    /// Each file part and the fields that replace it, in order.
    pub files: Vec<(FilePart, Result<Vec<FormField>, PluginError>)>,
}

impl UploadAnswers {
    /// The first failure, if a hook failed.
    pub fn error(&self) -> Option<&PluginError> {
        let text = self.text.iter().filter_map(|(_, r)| r.as_ref().err());
        text.chain(self.files.iter().filter_map(|(_, r)| r.as_ref().err())).next()
    }
}

/// Asks `policy` about each text field, then each file part, as the upload
/// handler would for one upload.
pub async fn upload(policy: &UploadFieldsPlugin, text: &[String], files: &[FilePart]) -> UploadAnswers {
    let mut answers = UploadAnswers { text: Vec::new(), files: Vec::new() };
    for name in text {
        answers.text.push((name.clone(), policy.text_decision(name.as_bytes()).await));
    }
    for (seq, part) in (1u32..).zip(files) {
        let file = stored_file(part, seq, policy.needs_sha256());
        answers.files.push((part.clone(), policy.fields_for(&file).await));
    }
    answers
}

/// A text decision as cases spell it.
pub fn text_word(d: TextDecision) -> &'static str {
    match d {
        TextDecision::Pass => "pass",
        TextDecision::Drop => "drop",
    }
}

/// One form field as `name = value`, bytes that are not UTF-8 escaped.
pub fn field_pair(f: &FormField) -> (String, String) {
    (String::from_utf8_lossy(&f.name).into_owned(), String::from_utf8_lossy(&f.value).into_owned())
}

/// The answers for a person; failures with what gale then does.
pub fn render_upload(answers: &UploadAnswers) -> String {
    let mut out = String::new();
    for (name, result) in &answers.text {
        match result {
            Ok(d) => {
                let _ = writeln!(out, "text-field {name:?}: {}", text_word(*d));
            }
            Err(e) => {
                let _ = writeln!(out, "text-field {name:?}: error: {}", super::one_line(&e.to_string()));
            }
        }
    }
    for (part, result) in &answers.files {
        let _ = write!(
            out,
            "file-fields for {:?} ({:?}, {}, {} bytes):",
            part.field, part.filename, part.content_type, part.size
        );
        match result {
            Ok(fields) if fields.is_empty() => out.push_str(" no fields (the file is left out of the form)\n"),
            Ok(fields) => {
                out.push('\n');
                for f in fields {
                    let (name, value) = field_pair(f);
                    let _ = writeln!(out, "  {name} = {value:?}");
                }
            }
            Err(e) => {
                let _ = writeln!(out, " error: {}", super::one_line(&e.to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_file_is_size_zero_bytes_at_a_fixed_store_name() {
        let part = FilePart {
            field: "avatar".into(),
            filename: "../../me.png".into(),
            content_type: "image/png".into(),
            size: 0,
        };
        let f = stored_file(&part, 1, true);
        assert_eq!(f.filename.as_ref(), b"me.png", "sanitised as the handler does");
        assert_eq!(f.path, std::path::Path::new("/var/lib/gale/uploads/00000000000000000000000000000001"));
        assert_eq!(f.md5, "d41d8cd98f00b204e9800998ecf8427e", "md5 of nothing");
        assert_eq!(
            f.sha256.as_deref(),
            Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            "sha256 of nothing"
        );
        let three = stored_file(&FilePart { size: 3, ..part }, 2, false);
        // md5 of three zero bytes, from Python's hashlib.
        assert_eq!(three.md5, "693e9af84d3dfcc71e640e005bdc5e2e");
        assert_eq!(three.sha256, None);
    }
}
