//! The `[http] gzip = { ... }` table: the TOML shape and the validated form.

use serde::Deserialize;

/// `gzip = { min_length, proxied, types, level }` exactly as written in the TOML.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GzipOptions {
    /// nginx `gzip_min_length`: responses with a known `Content-Length` below this are sent as
    /// they are. Default 20, like nginx.
    pub min_length: Option<u64>,
    /// nginx `gzip_proxied`: one value or a list. Default `"off"`.
    pub proxied: Option<OneOrMany>,
    /// nginx `gzip_types`: media types to compress (`text/html` is always included; `"*"` means
    /// every type).
    pub types: Option<Vec<String>>,
    /// nginx `gzip_comp_level`, 1-9. Default 1.
    pub level: Option<u32>,
}

/// A TOML value that may be a single string or an array of strings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// `proxied = "any"`
    One(String),
    /// `proxied = ["expired", "no-cache"]`
    Many(Vec<String>),
}

/// When a response to a request that came through another proxy (it has a `Via` header) may be
/// compressed: nginx's `gzip_proxied`. The flags are alternatives: any one that holds allows it.
/// All false is `off`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GzipProxied {
    /// `any`: always.
    pub any: bool,
    /// `expired`: the response has an `Expires` that disables caching.
    pub expired: bool,
    /// `no-cache`: the response's `Cache-Control` has `no-cache`.
    pub no_cache: bool,
    /// `no-store`: the response's `Cache-Control` has `no-store`.
    pub no_store: bool,
    /// `private`: the response's `Cache-Control` has `private`.
    pub private: bool,
    /// `no_last_modified`: the response has no `Last-Modified`.
    pub no_last_modified: bool,
    /// `no_etag`: the response has no `ETag`.
    pub no_etag: bool,
    /// `auth`: the request has an `Authorization` header.
    pub auth: bool,
}

impl GzipProxied {
    /// Parses nginx's parameter words; `off` must stand alone.
    pub fn parse<'a>(words: impl IntoIterator<Item = &'a str>) -> Result<Self, GzipConfigError> {
        let words: Vec<&str> = words.into_iter().collect();
        let mut p = Self::default();
        if words == ["off"] {
            return Ok(p);
        }
        if words.is_empty() {
            return Err(GzipConfigError::Proxied(String::new()));
        }
        for word in words {
            let flag = match word {
                "any" => &mut p.any,
                "expired" => &mut p.expired,
                "no-cache" => &mut p.no_cache,
                "no-store" => &mut p.no_store,
                "private" => &mut p.private,
                "no_last_modified" => &mut p.no_last_modified,
                "no_etag" => &mut p.no_etag,
                "auth" => &mut p.auth,
                other => return Err(GzipConfigError::Proxied(other.to_owned())),
            };
            *flag = true;
        }
        Ok(p)
    }
}

/// Which media types are compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GzipTypes {
    /// `types = ["*"]`: every response with a `Content-Type`.
    Any,
    /// These media types (lowercase, no parameters); always contains `text/html`.
    List(Vec<String>),
}

impl GzipTypes {
    /// Whether a `Content-Type` value is listed: its media type without parameters, compared
    /// case-insensitively (nginx's `gzip_types` matching).
    pub fn matches(&self, content_type: &[u8]) -> bool {
        let Ok(ct) = std::str::from_utf8(content_type) else {
            return false;
        };
        let media = ct.split(';').next().unwrap_or("").trim();
        if media.is_empty() {
            return false;
        }
        match self {
            GzipTypes::Any => true,
            GzipTypes::List(list) => list.iter().any(|t| t.eq_ignore_ascii_case(media)),
        }
    }
}

/// A validated gzip configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GzipConfig {
    /// Minimum known `Content-Length` to compress.
    pub min_length: u64,
    /// Policy for requests that came through another proxy.
    pub proxied: GzipProxied,
    /// Media types to compress.
    pub types: GzipTypes,
    /// Compression level, 1 (fastest, nginx's default) to 9.
    pub level: u32,
}

impl Default for GzipConfig {
    /// nginx's defaults with `gzip on`: min length 20, `proxied off`, `text/html` only, level 1.
    fn default() -> Self {
        Self {
            min_length: 20,
            proxied: GzipProxied::default(),
            types: GzipTypes::List(vec!["text/html".to_owned()]),
            level: 1,
        }
    }
}

/// A gzip configuration that cannot be used, with what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GzipConfigError {
    /// `level` outside 1-9.
    #[error("`level` must be between 1 and 9 (nginx's gzip_comp_level), got {0}")]
    Level(u32),
    /// An unknown `proxied` word.
    #[error(
        "`proxied` must be \"off\" or any of \"any\", \"expired\", \"no-cache\", \"no-store\", \
         \"private\", \"no_last_modified\", \"no_etag\", \"auth\"; got {0:?}"
    )]
    Proxied(String),
    /// A type that is not `type/subtype` or `*`.
    #[error("`types` entries must be media types like \"text/css\" (or \"*\"), got {0:?}")]
    Type(String),
}

impl GzipConfig {
    /// Validates the TOML shape; absent keys take nginx's defaults.
    pub fn from_options(options: GzipOptions) -> Result<Self, GzipConfigError> {
        let defaults = Self::default();
        let level = options.level.unwrap_or(defaults.level);
        if !(1..=9).contains(&level) {
            return Err(GzipConfigError::Level(level));
        }
        let proxied = match &options.proxied {
            None => defaults.proxied,
            Some(OneOrMany::One(word)) => GzipProxied::parse([word.as_str()])?,
            Some(OneOrMany::Many(words)) => GzipProxied::parse(words.iter().map(String::as_str))?,
        };
        let types = match options.types {
            None => defaults.types,
            Some(list) if list.iter().any(|t| t == "*") => GzipTypes::Any,
            Some(list) => {
                let mut types = vec!["text/html".to_owned()];
                for t in list {
                    let valid = matches!(t.split_once('/'), Some((a, b)) if !a.is_empty() && !b.is_empty())
                        && !t.contains([';', ' ', ',']);
                    if !valid {
                        return Err(GzipConfigError::Type(t));
                    }
                    let t = t.to_ascii_lowercase();
                    if !types.contains(&t) {
                        types.push(t);
                    }
                }
                GzipTypes::List(types)
            }
        };
        Ok(Self { min_length: options.min_length.unwrap_or(defaults.min_length), proxied, types, level })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<GzipConfig, GzipConfigError> {
        GzipConfig::from_options(toml::from_str(text).expect("TOML shape"))
    }

    #[test]
    fn nginx_defaults() {
        let cfg = parse("").expect("valid");
        assert_eq!(cfg, GzipConfig::default());
        assert_eq!(cfg.min_length, 20);
        assert_eq!(cfg.level, 1);
        assert_eq!(cfg.proxied, GzipProxied::default());
        assert!(cfg.types.matches(b"text/html"));
        assert!(!cfg.types.matches(b"text/css"));
    }

    #[test]
    fn the_reference_configuration() {
        let cfg = parse(
            r#"min_length = 1000
               proxied = "any"
               types = ["text/plain", "text/html", "text/css", "text/xml",
                        "application/x-javascript", "application/xml",
                        "application/atom+xml", "text/javascript"]"#,
        )
        .expect("valid");
        assert_eq!(cfg.min_length, 1000);
        assert!(cfg.proxied.any);
        let GzipTypes::List(list) = &cfg.types else { panic!("a list") };
        assert_eq!(list.len(), 8, "text/html is not duplicated");
        assert!(cfg.types.matches(b"text/css; charset=utf-8"));
        assert!(cfg.types.matches(b"Text/HTML"));
        assert!(!cfg.types.matches(b"image/png"));
        assert!(!cfg.types.matches(b""));
    }

    #[test]
    fn proxied_words() {
        let cfg =
            parse(r#"proxied = ["expired", "no-cache", "no-store", "private", "no_last_modified", "no_etag", "auth"]"#)
                .expect("valid");
        let p = cfg.proxied;
        assert!(!p.any && p.expired && p.no_cache && p.no_store && p.private);
        assert!(p.no_last_modified && p.no_etag && p.auth);
        assert_eq!(parse(r#"proxied = "off""#).expect("valid").proxied, GzipProxied::default());
    }

    #[test]
    fn refusals() {
        assert_eq!(parse("level = 0").err(), Some(GzipConfigError::Level(0)));
        assert_eq!(parse("level = 10").err(), Some(GzipConfigError::Level(10)));
        assert_eq!(parse(r#"proxied = "some""#).err(), Some(GzipConfigError::Proxied("some".into())));
        assert_eq!(parse(r#"proxied = ["off", "any"]"#).err(), Some(GzipConfigError::Proxied("off".into())));
        assert_eq!(parse("proxied = []").err(), Some(GzipConfigError::Proxied(String::new())));
        assert_eq!(parse(r#"types = ["css"]"#).err(), Some(GzipConfigError::Type("css".into())));
        assert_eq!(
            parse(r#"types = ["text/css; charset=utf-8"]"#).err(),
            Some(GzipConfigError::Type("text/css; charset=utf-8".into()))
        );
        assert!(toml::from_str::<GzipOptions>("vary = true").is_err());
    }

    #[test]
    fn star_means_every_type() {
        let cfg = parse(r#"types = ["*"]"#).expect("valid");
        assert_eq!(cfg.types, GzipTypes::Any);
        assert!(cfg.types.matches(b"image/png"));
        assert!(!cfg.types.matches(b""));
    }
}
