//! gale's bundled upload field policy: nginx-upload-module's `upload_set_form_field`,
//! `upload_aggregate_form_field` and `upload_pass_form_field`, with the reference configuration's configuration as
//! the default, and client fields forged to look generated (`file.path`) refused (D2).
//!
//! Config: `{ set = ["name", "content_type", "path"], aggregate = ["md5", "size"],
//! pass_fields = ["somearg"], anchored = false, allow_generated_names = false }` (the default).
//! See `docs/uploads.md`.

mod policy;

use gale_plugin::{FormField, LogLevel, StoredFile, TextDecision, UploadFields};
use policy::{Policy, Text};

impl UploadFields for Policy {
    type Config = policy::RawConfig;

    fn new(config: policy::RawConfig) -> Result<Self, String> {
        policy::validate(config)
    }

    fn needs_sha256(&self) -> bool {
        self.file_fields.contains(&policy::Attr::Sha256)
    }

    fn text_field(&self, name: &[u8]) -> TextDecision {
        match self.text(name) {
            Text::Pass => TextDecision::Pass,
            Text::Drop => TextDecision::Drop,
            Text::Forged => {
                gale_plugin::counter_add("forged_names_dropped", 1);
                let name = String::from_utf8_lossy(name);
                let message = format!("dropped a client field named like a generated upload field (D2): {name}");
                gale_plugin::log(LogLevel::Warn, &message);
                TextDecision::Drop
            }
        }
    }

    fn file_fields(&self, file: &StoredFile) -> Vec<FormField> {
        self.fields_for(file)
    }
}

gale_plugin::upload_fields!(Policy);
