//! The policy: the JSON config gale hands to `configure`, validated into a [`Policy`], and its
//! two decisions. The rules are those of gale's built-in `NativeFieldPolicy` (host/src/upload/
//! fields.rs), byte for byte: gale's tests run both over the same inputs.

use regex::bytes::Regex;
use serde::Deserialize;

use gale_plugin::{FormField, StoredFile};

/// `{ set, aggregate, pass_fields, anchored, allow_generated_names }`, each optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    set: Option<Vec<String>>,
    aggregate: Option<Vec<String>>,
    pass_fields: Option<Vec<String>>,
    #[serde(default)]
    anchored: bool,
    #[serde(default)]
    allow_generated_names: bool,
}

/// A file attribute a generated field carries, as `<field>.<suffix>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attr {
    Name,
    ContentType,
    Path,
    Md5,
    Size,
    Sha256,
}

impl Attr {
    /// Every attribute: their suffixes are the names a client may not forge (D2).
    const ALL: [Attr; 6] = [Attr::Name, Attr::ContentType, Attr::Path, Attr::Md5, Attr::Size, Attr::Sha256];
    /// What `set` may list (the module's `$upload_file_name`, `$upload_content_type`,
    /// `$upload_tmp_path`).
    const SET: [Attr; 3] = [Attr::Name, Attr::ContentType, Attr::Path];
    /// What `aggregate` may list (`$upload_file_md5`, `$upload_file_size`, and sha256).
    const AGGREGATE: [Attr; 3] = [Attr::Md5, Attr::Size, Attr::Sha256];

    fn suffix(self) -> &'static str {
        match self {
            Attr::Name => "name",
            Attr::ContentType => "content_type",
            Attr::Path => "path",
            Attr::Md5 => "md5",
            Attr::Size => "size",
            Attr::Sha256 => "sha256",
        }
    }

    fn value(self, file: &StoredFile) -> Vec<u8> {
        match self {
            Attr::Name => file.filename.clone(),
            Attr::ContentType => file.content_type.clone(),
            Attr::Path => file.path.clone(),
            Attr::Md5 => file.md5.clone().into_bytes(),
            Attr::Size => file.size.to_string().into_bytes(),
            Attr::Sha256 => file.sha256.clone().unwrap_or_default().into_bytes(),
        }
    }
}

/// The decision about a text field, with the reason for a drop worth logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Text {
    Pass,
    Drop,
    /// Matched `pass_fields` but is named like a generated field (D2): dropped, and logged.
    Forged,
}

/// The validated configuration.
#[derive(Debug)]
pub struct Policy {
    /// The generated fields per file, `set` ones then `aggregate` ones.
    pub file_fields: Vec<Attr>,
    pass: Vec<Regex>,
    allow_generated_names: bool,
}

impl Policy {
    /// The reference configuration's configuration: name, content_type, path, md5, size; `somearg` passes.
    pub fn reference() -> Self {
        Policy {
            file_fields: vec![Attr::Name, Attr::ContentType, Attr::Path, Attr::Md5, Attr::Size],
            pass: vec![Regex::new("somearg").expect("a literal is a valid regex")],
            allow_generated_names: false,
        }
    }

    /// Whether a client text field passes: an unanchored (unless configured), case-sensitive
    /// search with any `pass_fields` regex; empty names never pass; a forged generated name
    /// never passes unless `allow_generated_names`.
    pub fn text(&self, name: &[u8]) -> Text {
        if name.is_empty() || !self.pass.iter().any(|re| re.is_match(name)) {
            return Text::Drop;
        }
        if !self.allow_generated_names && is_generated_name(name) {
            return Text::Forged;
        }
        Text::Pass
    }

    /// The fields that replace a stored file: `set` ones then `aggregate` ones, in order.
    pub fn fields_for(&self, file: &StoredFile) -> Vec<FormField> {
        self.file_fields
            .iter()
            .map(|attr| {
                let mut name = file.field_name.clone();
                name.push(b'.');
                name.extend_from_slice(attr.suffix().as_bytes());
                FormField { name, value: attr.value(file) }
            })
            .collect()
    }
}

/// Whether a name ends in `.<suffix>` of a generated field (D2).
fn is_generated_name(name: &[u8]) -> bool {
    Attr::ALL.iter().any(|attr| {
        let suffix = attr.suffix().as_bytes();
        name.len() > suffix.len() && name.ends_with(suffix) && name[name.len() - suffix.len() - 1] == b'.'
    })
}

/// Validates the configuration. Errors name the key.
pub fn validate(raw: RawConfig) -> Result<Policy, String> {
    let reference = Policy::reference();
    let set = match raw.set {
        Some(names) => attrs(&names, &Attr::SET, "set")?,
        None => reference.file_fields.iter().copied().filter(|a| Attr::SET.contains(a)).collect(),
    };
    let aggregate = match raw.aggregate {
        Some(names) => attrs(&names, &Attr::AGGREGATE, "aggregate")?,
        None => reference.file_fields.iter().copied().filter(|a| Attr::AGGREGATE.contains(a)).collect(),
    };
    let pass = match raw.pass_fields {
        Some(patterns) => patterns
            .iter()
            .enumerate()
            .map(|(i, re)| {
                let re = if raw.anchored { format!("^(?:{re})$") } else { re.clone() };
                Regex::new(&re).map_err(|e| format!("pass_fields[{i}]: {e}"))
            })
            .collect::<Result<_, _>>()?,
        None if raw.anchored => vec![Regex::new("^(?:somearg)$").expect("a literal is a valid regex")],
        None => reference.pass,
    };
    Ok(Policy {
        file_fields: set.into_iter().chain(aggregate).collect(),
        pass,
        allow_generated_names: raw.allow_generated_names,
    })
}

fn attrs(names: &[String], allowed: &[Attr], key: &str) -> Result<Vec<Attr>, String> {
    let mut out: Vec<Attr> = Vec::new();
    for name in names {
        let attr = allowed.iter().copied().find(|a| a.suffix() == name).ok_or_else(|| {
            let list: Vec<_> = allowed.iter().map(|a| format!("\"{}\"", a.suffix())).collect();
            format!("{key}: {name:?} is not one of {}", list.join(", "))
        })?;
        if out.contains(&attr) {
            return Err(format!("{key}: {name:?} is listed twice"));
        }
        out.push(attr);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gale_plugin::UploadFields;

    fn parse(json: &str) -> Result<Policy, String> {
        gale_plugin::testing::configure_upload(json)
    }

    fn file() -> StoredFile {
        let md5 = "746308829575e17c3331bbcb00c0898b".into();
        let (field_name, filename, content_type, path) =
            (b"file".into(), b"hello.txt".into(), b"text/plain".into(), b"/store/0123".into());
        StoredFile { field_name, filename, content_type, path, md5, size: 14, sha256: Some("ab".repeat(32)) }
    }

    fn pairs(fields: Vec<FormField>) -> Vec<(String, String)> {
        fields
            .into_iter()
            .map(|f| (String::from_utf8_lossy(&f.name).into_owned(), String::from_utf8_lossy(&f.value).into_owned()))
            .collect()
    }

    #[test]
    fn default_is_the_reference_configuration() {
        let p = parse("{}").expect("valid");
        assert!(!p.needs_sha256());
        assert_eq!(
            pairs(p.fields_for(&file())),
            [
                ("file.name", "hello.txt"),
                ("file.content_type", "text/plain"),
                ("file.path", "/store/0123"),
                ("file.md5", "746308829575e17c3331bbcb00c0898b"),
                ("file.size", "14"),
            ]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
        for (name, want) in [
            (&b"somearg"[..], Text::Pass),
            (b"xsomeargx", Text::Pass),
            (b"SOMEARG", Text::Drop),
            (b"", Text::Drop),
            (b"other", Text::Drop),
            (b"somearg.path", Text::Forged),
        ] {
            assert_eq!(p.text(name), want, "{name:?}");
        }
    }

    #[test]
    fn sha256_and_custom_lists() {
        let p = parse(r#"{"set": ["path"], "aggregate": ["size", "sha256"]}"#).expect("valid");
        assert!(p.needs_sha256());
        let got = pairs(p.fields_for(&file()));
        let names: Vec<_> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["file.path", "file.size", "file.sha256"]);
        assert_eq!(got[2].1, "ab".repeat(32));
        let none = parse(r#"{"set": [], "aggregate": []}"#).expect("valid");
        assert!(none.fields_for(&file()).is_empty());
    }

    #[test]
    fn anchored_and_allowed_generated_names() {
        let p = parse(r#"{"anchored": true}"#).expect("valid");
        assert_eq!(p.text(b"somearg"), Text::Pass);
        assert_eq!(p.text(b"somearg2"), Text::Drop);
        let lax = parse(r#"{"pass_fields": [".*"], "allow_generated_names": true}"#).expect("valid");
        assert_eq!(lax.text(b"file.path"), Text::Pass);
        let strict = parse(r#"{"pass_fields": [".*"]}"#).expect("valid");
        assert_eq!(strict.text(b"file.path"), Text::Forged);
        assert_eq!(strict.text(b"\xff\xfe"), Text::Pass);
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let err = |json: &str| parse(json).expect_err(json);
        assert!(err(r#"{"set": ["md5"]}"#).contains("set: \"md5\" is not one of"));
        assert!(err(r#"{"aggregate": ["size", "size"]}"#).contains("listed twice"));
        assert!(err(r#"{"pass_fields": ["ok", "(unclosed"]}"#).contains("pass_fields[1]"));
        assert!(err(r#"{"pass_fields": ["a(?=b)"]}"#).contains("pass_fields[0]"));
        assert!(err(r#"{"pass": []}"#).contains("unknown field"));
    }
}
