//! `{{name}}`: a gale cache policy (world `cache-policy`), attached to a
//! `static` location: decides the caching headers of the files it serves.
//!
//! Files whose path ends with one of `immutable_suffixes` are cached for
//! `max_age` seconds as immutable; others must be revalidated. Its
//! configuration (the attachment's `config`, merged over `{{name}}.toml`):
//!
//! ```toml
//! max_age = 86400
//! immutable_suffixes = [".css", ".js"]
//! ```

use gale_plugin::{CacheDecision, CachePolicy, FileInfo, RequestHead};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    max_age: u64,
    #[serde(default)]
    immutable_suffixes: Vec<String>,
}

struct Policy {
    immutable: String,
    suffixes: Vec<String>,
}

impl CachePolicy for Policy {
    type Config = Config;

    /// Runs once per wasm instance; an `Err` rejects the configuration.
    fn new(config: Config) -> Result<Self, String> {
        if config.max_age == 0 {
            return Err("`max_age` must be at least 1".into());
        }
        let immutable = format!("public, max-age={}, immutable", config.max_age);
        Ok(Policy {
            immutable,
            suffixes: config.immutable_suffixes,
        })
    }

    fn decide(&self, _: &RequestHead, file: &FileInfo) -> CacheDecision {
        let cache_control = if self
            .suffixes
            .iter()
            .any(|s| file.path.ends_with(s.as_str()))
        {
            self.immutable.clone()
        } else {
            "no-cache".to_string()
        };
        CacheDecision {
            cache_control: Some(cache_control),
            expires: None,
        }
    }
}

gale_plugin::cache_policy!(Policy);

#[cfg(test)]
mod tests {
    use super::*;
    use gale_plugin::testing::{configure_cache, request};

    fn policy() -> Policy {
        configure_cache(r#"{"max_age": 600, "immutable_suffixes": [".css"]}"#)
            .expect("a valid config")
    }

    fn file(path: &str) -> FileInfo {
        FileInfo {
            path: path.into(),
            content_type: "text/css".into(),
            ..FileInfo::default()
        }
    }

    #[test]
    fn matching_files_are_immutable_others_revalidated() {
        let p = policy();
        let css = p.decide(&request("GET /app.css"), &file("/app.css"));
        assert_eq!(
            css.cache_control.as_deref(),
            Some("public, max-age=600, immutable")
        );
        let html = p.decide(&request("GET /index.html"), &file("/index.html"));
        assert_eq!(
            html,
            CacheDecision {
                cache_control: Some("no-cache".into()),
                expires: None
            }
        );
    }

    #[test]
    fn bad_configs_are_rejected() {
        let zero = configure_cache::<Policy>(r#"{"max_age": 0}"#)
            .err()
            .expect("rejected");
        assert_eq!(zero, "`max_age` must be at least 1");
        let wrong = configure_cache::<Policy>(r#"{"max_age": "1h"}"#)
            .err()
            .expect("rejected");
        assert!(wrong.starts_with("invalid config:"), "{wrong}");
    }
}
