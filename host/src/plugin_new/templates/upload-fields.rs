//! `{{name}}`: a gale upload-fields policy (world `upload-fields`), attached
//! to an `upload` location: decides the form fields gale sends the backend.
//!
//! Passes the client's text fields named in `pass` (and drops the others),
//! and replaces each stored file by `<field>_name`, `<field>_size` and
//! `<field>_md5`. Its configuration (the attachment's `config`, merged over
//! `{{name}}.toml`):
//!
//! ```toml
//! pass = ["title"]
//! ```

use gale_plugin::{FormField, StoredFile, TextDecision, UploadFields};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    pass: Vec<String>,
}

struct Policy {
    pass: Vec<Vec<u8>>,
}

impl UploadFields for Policy {
    type Config = Config;

    /// Runs once per wasm instance; an `Err` rejects the configuration.
    fn new(config: Config) -> Result<Self, String> {
        if let Some(bad) = config
            .pass
            .iter()
            .find(|n| n.is_empty() || n.contains(['"', '\r', '\n', '\0']))
        {
            return Err(format!("`pass`: {bad:?} is not a field name"));
        }
        Ok(Policy {
            pass: config.pass.into_iter().map(String::into_bytes).collect(),
        })
    }

    fn text_field(&self, name: &[u8]) -> TextDecision {
        if self.pass.iter().any(|p| p.as_slice() == name) {
            TextDecision::Pass
        } else {
            TextDecision::Drop
        }
    }

    fn file_fields(&self, file: &StoredFile) -> Vec<FormField> {
        let field = |suffix: &str| [file.field_name.as_slice(), suffix.as_bytes()].concat();
        vec![
            FormField::new(field("_name"), &file.filename),
            FormField::new(field("_size"), file.size.to_string()),
            FormField::new(field("_md5"), &file.md5),
        ]
    }
}

gale_plugin::upload_fields!(Policy);

#[cfg(test)]
mod tests {
    use super::*;
    use gale_plugin::testing::configure_upload;

    fn policy() -> Policy {
        configure_upload(r#"{"pass": ["title"]}"#).expect("a valid config")
    }

    #[test]
    fn only_listed_text_fields_pass() {
        let p = policy();
        assert_eq!(p.text_field(b"title"), TextDecision::Pass);
        assert_eq!(p.text_field(b"Title"), TextDecision::Drop);
        assert_eq!(p.text_field(b"other"), TextDecision::Drop);
    }

    #[test]
    fn a_file_becomes_three_fields() {
        let file = StoredFile {
            field_name: b"doc".to_vec(),
            filename: b"a.txt".to_vec(),
            md5: "0cc175b9c0f1b6a831c399e269772661".into(),
            size: 1,
            ..StoredFile::default()
        };
        let want = vec![
            FormField::new("doc_name", "a.txt"),
            FormField::new("doc_size", "1"),
            FormField::new("doc_md5", "0cc175b9c0f1b6a831c399e269772661"),
        ];
        assert_eq!(policy().file_fields(&file), want);
    }

    #[test]
    fn bad_configs_are_rejected() {
        let empty = configure_upload::<Policy>(r#"{"pass": [""]}"#)
            .err()
            .expect("rejected");
        assert_eq!(empty, "`pass`: \"\" is not a field name");
        let unknown = configure_upload::<Policy>(r#"{"passes": []}"#)
            .err()
            .expect("rejected");
        assert!(unknown.contains("unknown field `passes`"), "{unknown}");
    }
}
