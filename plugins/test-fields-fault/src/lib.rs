//! An upload-fields policy that misbehaves on purpose in `text-field` and
//! `file-fields`, for the field names under a prefix: it spins
//! (`mode = "spin"`, the epoch deadline must cut it off) or panics
//! (`mode = "trap"`).
//!
//! Test fixture for gale's plugin runtime, never for production. Config:
//! `{ mode = "spin" | "trap", name_prefix = "bad" }` (defaults: `spin`, every
//! field). Other text fields pass; another file is replaced by one field
//! `<field>_fixture` = `test-fields-fault`, so a test can see the plugin
//! answer.

use gale_plugin::{FormField, StoredFile, TextDecision, UploadFields};

#[derive(serde::Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Mode {
    #[default]
    Spin,
    Trap,
}

#[derive(serde::Deserialize)]
struct Fixture {
    #[serde(default)]
    name_prefix: String,
    #[serde(default)]
    mode: Mode,
}

impl Fixture {
    /// Misbehaves when `name` starts with the configured prefix.
    fn check(&self, name: &[u8]) {
        if name.starts_with(self.name_prefix.as_bytes()) {
            misbehave(self.mode);
        }
    }
}

impl UploadFields for Fixture {
    type Config = Self;
    fn new(config: Self) -> Result<Self, String> {
        Ok(config)
    }

    fn text_field(&self, name: &[u8]) -> TextDecision {
        self.check(name);
        TextDecision::Pass
    }

    fn file_fields(&self, file: &StoredFile) -> Vec<FormField> {
        self.check(&file.field_name);
        let mut name = file.field_name.clone();
        name.extend_from_slice(b"_fixture");
        vec![FormField::new(name, "test-fields-fault")]
    }
}

gale_plugin::upload_fields!(Fixture);

/// Panics, or spins without end: only the host's deadline stops it.
fn misbehave(mode: Mode) {
    if let Mode::Trap = mode {
        panic!("test-fields-fault: trapping on purpose");
    }
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
