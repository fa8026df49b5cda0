//! The field policy: which text fields pass, and which fields replace each stored file.
//!
//! A trait so the `upload-fields` WebAssembly plugin can implement it later; file bytes never reach
//! the policy, only names and the stored file's metadata. Decisions are async because plugin calls
//! are. [`NativeFieldPolicy`] is the built-in implementation of the reference configuration's configuration:
//!
//! * `set`: `<field>.name` = the sanitised filename, `.content_type`, `.path`;
//! * `aggregate`: `.md5`, `.size` (and `.sha256` when configured, D13);
//! * `pass_fields`: regexes, unanchored and case-sensitive (the PCRE1 semantics the module intends,
//!   D1); empty names never pass;
//! * D2: a client text field whose name ends in a generated suffix (`.name`, `.content_type`,
//!   `.path`, `.md5`, `.size`, `.sha256`) is dropped with a warning, unless explicitly allowed, so
//!   a client cannot forge `file.path=/etc/passwd`.

use std::fmt;

use bytes::Bytes;
use futures_util::future::BoxFuture;

/// A failed policy decision (a plugin trap, say); the upload fails with 500.
pub type PolicyError = Box<dyn std::error::Error + Send + Sync>;

/// What happens to a text (non-file) part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextDecision {
    /// Forward it with its raw value.
    Pass,
    /// Discard it.
    Drop,
}

/// One field of the rewritten form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormField {
    /// Field name (no `"`, CR, LF or NUL; checked when the form is written).
    pub name: Bytes,
    /// Field value, raw.
    pub value: Bytes,
}

impl FormField {
    /// A field from anything byte-like.
    pub fn new(name: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        FormField { name: name.into(), value: value.into() }
    }
}

/// A completed file in the store, as the policy and the pipeline see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// The part's `name` (may be empty, as in nginx-upload-module's V9).
    pub field_name: Bytes,
    /// The filename after [`sanitize_filename`]: what `.name` carries.
    pub filename: Bytes,
    /// The filename as the client sent it (decoded from `filename*` if present).
    pub raw_filename: Bytes,
    /// The part's Content-Type (leading spaces removed), empty when absent.
    pub content_type: Bytes,
    /// Absolute path of the stored file.
    pub path: std::path::PathBuf,
    /// Store file name (32 hex digits).
    pub store_name: String,
    /// Bytes stored.
    pub size: u64,
    /// Lower-case hex md5.
    pub md5: String,
    /// Lower-case hex sha256, if the policy asked for it.
    pub sha256: Option<String>,
}

/// Decides the rewritten form's fields. Implemented natively ([`NativeFieldPolicy`]) and by the
/// `upload-fields` plugin adapter.
pub trait FieldPolicy: Send + Sync {
    /// Whether sha256 must be computed for files (it costs CPU per byte).
    fn needs_sha256(&self) -> bool {
        false
    }

    /// Called when a text part's headers end, before its value is read, so dropped values are
    /// never buffered.
    fn text_field<'a>(&'a self, name: &'a [u8]) -> BoxFuture<'a, Result<TextDecision, PolicyError>>;

    /// Called when a file part completed; returns the fields that replace it, in order.
    fn file_fields<'a>(&'a self, file: &'a StoredFile) -> BoxFuture<'a, Result<Vec<FormField>, PolicyError>>;
}

/// A file attribute a generated field can carry; the field is named `<field>.<suffix>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAttr {
    /// `.name`: the sanitised filename.
    Name,
    /// `.content_type`: the part's Content-Type.
    ContentType,
    /// `.path`: the absolute stored path.
    Path,
    /// `.md5`: lower-case hex.
    Md5,
    /// `.size`: decimal bytes.
    Size,
    /// `.sha256`: lower-case hex (computed only when listed).
    Sha256,
}

impl FileAttr {
    /// All attributes; their suffixes are the names D2 protects.
    pub const ALL: [FileAttr; 6] =
        [FileAttr::Name, FileAttr::ContentType, FileAttr::Path, FileAttr::Md5, FileAttr::Size, FileAttr::Sha256];

    /// The field-name suffix, without the dot.
    pub fn suffix(self) -> &'static str {
        match self {
            FileAttr::Name => "name",
            FileAttr::ContentType => "content_type",
            FileAttr::Path => "path",
            FileAttr::Md5 => "md5",
            FileAttr::Size => "size",
            FileAttr::Sha256 => "sha256",
        }
    }

    fn value(self, file: &StoredFile) -> Bytes {
        match self {
            FileAttr::Name => file.filename.clone(),
            FileAttr::ContentType => file.content_type.clone(),
            FileAttr::Path => Bytes::copy_from_slice(file.path.as_os_str().as_encoded_bytes()),
            FileAttr::Md5 => Bytes::from(file.md5.clone()),
            FileAttr::Size => Bytes::from(file.size.to_string()),
            FileAttr::Sha256 => Bytes::from(file.sha256.clone().unwrap_or_default()),
        }
    }
}

/// Configuration of [`NativeFieldPolicy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPolicyConfig {
    /// Fields emitted per file, in order: nginx-upload-module's `upload_set_form_field` ones followed by
    /// the `upload_aggregate_form_field` ones. (nginx-upload-module emits the first group when the headers
    /// end and the second when the data ends; nothing can come between them, so one list gives
    /// the same bytes.)
    pub file_fields: Vec<FileAttr>,
    /// `pass_fields` regexes (Rust `regex` syntax, a PCRE subset; compiled at load).
    pub pass_fields: Vec<String>,
    /// Match the whole name instead of searching (D2's `anchored = true`).
    pub anchored: bool,
    /// Let text fields with generated-looking names pass (nginx-upload-module's behaviour; off by default).
    pub allow_generated_names: bool,
}

impl FieldPolicyConfig {
    /// The reference configuration's configuration.
    pub fn reference() -> Self {
        FieldPolicyConfig {
            file_fields: vec![FileAttr::Name, FileAttr::ContentType, FileAttr::Path, FileAttr::Md5, FileAttr::Size],
            pass_fields: vec!["somearg".into()],
            anchored: false,
            allow_generated_names: false,
        }
    }
}

/// The built-in policy (see the module doc).
pub struct NativeFieldPolicy {
    file_fields: Vec<FileAttr>,
    pass: Vec<regex::bytes::Regex>,
    allow_generated_names: bool,
}

impl fmt::Debug for NativeFieldPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeFieldPolicy")
            .field("file_fields", &self.file_fields)
            .field("pass", &self.pass.iter().map(|r| r.as_str()).collect::<Vec<_>>())
            .finish()
    }
}

impl NativeFieldPolicy {
    /// Compiles the regexes; an invalid one is a config error (D1).
    pub fn new(config: &FieldPolicyConfig) -> Result<Self, regex::Error> {
        let pass = config
            .pass_fields
            .iter()
            .map(|re| {
                let re = if config.anchored { format!("^(?:{re})$") } else { re.clone() };
                regex::bytes::Regex::new(&re)
            })
            .collect::<Result<_, _>>()?;
        Ok(NativeFieldPolicy {
            file_fields: config.file_fields.clone(),
            pass,
            allow_generated_names: config.allow_generated_names,
        })
    }

    /// The reference configuration's policy.
    pub fn reference() -> Self {
        NativeFieldPolicy {
            file_fields: FieldPolicyConfig::reference().file_fields,
            pass: vec![regex::bytes::Regex::new("somearg").expect("literal regex")],
            allow_generated_names: false,
        }
    }

    /// The synchronous decision behind [`FieldPolicy::text_field`].
    pub fn decide_text(&self, name: &[u8]) -> TextDecision {
        if name.is_empty() || !self.pass.iter().any(|re| re.is_match(name)) {
            return TextDecision::Drop;
        }
        if !self.allow_generated_names && is_generated_name(name) {
            tracing::warn!(
                field = %String::from_utf8_lossy(name),
                "dropped a client field named like a generated upload field (D2)"
            );
            return TextDecision::Drop;
        }
        TextDecision::Pass
    }

    /// The synchronous result behind [`FieldPolicy::file_fields`].
    pub fn fields_for(&self, file: &StoredFile) -> Vec<FormField> {
        self.file_fields
            .iter()
            .map(|attr| {
                let mut name = file.field_name.to_vec();
                name.push(b'.');
                name.extend_from_slice(attr.suffix().as_bytes());
                FormField::new(name, attr.value(file))
            })
            .collect()
    }
}

impl FieldPolicy for NativeFieldPolicy {
    fn needs_sha256(&self) -> bool {
        self.file_fields.contains(&FileAttr::Sha256)
    }

    fn text_field<'a>(&'a self, name: &'a [u8]) -> BoxFuture<'a, Result<TextDecision, PolicyError>> {
        let decision = self.decide_text(name);
        Box::pin(async move { Ok(decision) })
    }

    fn file_fields<'a>(&'a self, file: &'a StoredFile) -> BoxFuture<'a, Result<Vec<FormField>, PolicyError>> {
        let fields = self.fields_for(file);
        Box::pin(async move { Ok(fields) })
    }
}

/// Whether a client name ends in `.<suffix>` of a generated field (D2).
pub fn is_generated_name(name: &[u8]) -> bool {
    FileAttr::ALL.iter().any(|attr| {
        let suffix = attr.suffix().as_bytes();
        name.len() > suffix.len() && name.ends_with(suffix) && name[name.len() - suffix.len() - 1] == b'.'
    })
}

/// What `.name` carries (D4): everything through the last `/` or `\` is removed (as nginx-upload-module
/// does, V8), then a result of `.` or `..` becomes empty and every control character (C0 and
/// DEL) becomes `_`. Neutralised rather than rejected: the file is still stored and the backend
/// gets a name it can join to a directory safely. Other bytes (UTF-8 or not) pass raw (D15).
pub fn sanitize_filename(raw: &[u8]) -> Bytes {
    let start = raw.iter().rposition(|&b| b == b'/' || b == b'\\').map_or(0, |i| i + 1);
    let base = &raw[start..];
    if base == b"." || base == b".." {
        return Bytes::new();
    }
    base.iter().map(|&b| if b < 0x20 || b == 0x7f { b'_' } else { b }).collect::<Vec<u8>>().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitising() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"hello.txt", b"hello.txt"),
            (b"../../etc/passwd", b"passwd"),
            (br"C:\Users\me\My Docs\a b.txt", b"a b.txt"),
            (br"..\..//x/y\z.txt", b"z.txt"),
            (b"a/..", b""), // nginx-upload-module: ".." (D4)
            (b"..", b""),   // D4
            (b".", b""),    // D4
            (b"/", b""),    // nginx-upload-module: "/"
            (b"dir/", b""),
            (b"t\tab\x7f.txt", b"t_ab_.txt"), // nginx-upload-module: raw (D4)
            ("résumé 日本語.txt".as_bytes(), "résumé 日本語.txt".as_bytes()),
            (b"...", b"..."),
            (b"a..b", b"a..b"),
        ];
        for (raw, want) in cases {
            assert_eq!(&sanitize_filename(raw)[..], *want, "{raw:?}");
        }
    }

    #[test]
    fn regex_unanchored_case_sensitive_v4() {
        // V4 with D2: `somearg.name` no longer passes.
        let p = NativeFieldPolicy::reference();
        let pass: &[&[u8]] = &[b"somearg", b"somearg2", b"xsomeargx", b"somearg[]"];
        let drop: &[&[u8]] = &[b"SOMEARG", b"Somearg", b"some_arg", b"", b"somearg.name"];
        for n in pass {
            assert_eq!(p.decide_text(n), TextDecision::Pass, "{n:?}");
        }
        for n in drop {
            assert_eq!(p.decide_text(n), TextDecision::Drop, "{n:?}");
        }
    }

    #[test]
    fn generated_names_d2() {
        for n in [&b"file.path"[..], b"somearg.name", b".path", b"x.content_type", b"a.b.md5", b"f.size", b"f.sha256"] {
            assert!(is_generated_name(n), "{n:?}");
        }
        for n in [&b"path"[..], b"somearg", b"file_path", b"file.paths", b"md5"] {
            assert!(!is_generated_name(n), "{n:?}");
        }
        let mut cfg = FieldPolicyConfig::reference();
        cfg.pass_fields = vec![".*".into()];
        let strict = NativeFieldPolicy::new(&cfg).expect("valid");
        assert_eq!(strict.decide_text(b"file.path"), TextDecision::Drop);
        cfg.allow_generated_names = true;
        let lax = NativeFieldPolicy::new(&cfg).expect("valid");
        assert_eq!(lax.decide_text(b"file.path"), TextDecision::Pass);
    }

    #[test]
    fn anchored_and_bad_regexes() {
        let mut cfg = FieldPolicyConfig::reference();
        cfg.anchored = true;
        let p = NativeFieldPolicy::new(&cfg).expect("valid");
        assert_eq!(p.decide_text(b"somearg"), TextDecision::Pass);
        assert_eq!(p.decide_text(b"somearg2"), TextDecision::Drop);
        cfg.pass_fields = vec!["(unclosed".into()];
        assert!(NativeFieldPolicy::new(&cfg).is_err());
        cfg.pass_fields = vec!["a(?=b)".into()]; // PCRE lookahead: refused at load (D1)
        assert!(NativeFieldPolicy::new(&cfg).is_err());
    }

    #[test]
    fn file_fields_in_order() {
        let file = StoredFile {
            field_name: Bytes::from_static(b"file"),
            filename: Bytes::from_static(b"hello.txt"),
            raw_filename: Bytes::from_static(b"hello.txt"),
            content_type: Bytes::from_static(b"text/plain"),
            path: "/store/0123".into(),
            store_name: "0123".into(),
            size: 14,
            md5: "746308829575e17c3331bbcb00c0898b".into(),
            sha256: None,
        };
        let got: Vec<(Vec<u8>, Vec<u8>)> = NativeFieldPolicy::reference()
            .fields_for(&file)
            .into_iter()
            .map(|f| (f.name.to_vec(), f.value.to_vec()))
            .collect();
        let want: Vec<(Vec<u8>, Vec<u8>)> = [
            ("file.name", "hello.txt"),
            ("file.content_type", "text/plain"),
            ("file.path", "/store/0123"),
            ("file.md5", "746308829575e17c3331bbcb00c0898b"),
            ("file.size", "14"),
        ]
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
        assert_eq!(got, want);
    }
}
