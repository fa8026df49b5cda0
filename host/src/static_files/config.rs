//! The static handler's configuration: the TOML shape, and the validated form `serve` uses.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::HeaderValue;
use serde::Deserialize;

use super::entry::FileEntry;
use super::open_cache::{OpenCache, OpenFileCacheSettings};
use crate::config::raw::Scalar;

/// The `static = { ... }` table of a location, exactly as written in the TOML.
///
/// The config module can embed this struct in its raw tree (it rejects unknown keys) and call
/// [`StaticConfig::from_options`] during validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticOptions {
    /// nginx `root`: the full request path is appended to this directory.
    pub root: Option<PathBuf>,
    /// nginx `alias`: the location prefix is replaced by this directory.
    pub alias: Option<PathBuf>,
    /// nginx `index`: names tried, in order, for a request that ends in `/`.
    pub index: Option<Vec<String>>,
    /// `"inside_root"` (default), `"always"` or `"never"`: see [`FollowSymlinks`].
    pub follow_symlinks: Option<String>,
    /// nginx `default_type`: the type of a file whose extension is not in the table.
    pub default_type: Option<String>,
    /// nginx `open_file_cache` / `open_file_cache_valid`: see [`OpenFileCacheOptions`].
    pub open_file_cache: Option<OpenFileCacheOptions>,
}

/// `open_file_cache = { max = 1000, valid = "1s", max_content_size = "64k" }`, as written; any
/// key left out keeps its default ([`OpenFileCacheSettings::DEFAULT`]), `max = 0` turns it off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenFileCacheOptions {
    /// Most files remembered.
    pub max: Option<u64>,
    /// How long what was found is used before the path is opened and checked again.
    pub valid: Option<Scalar>,
    /// Files up to this size are kept in memory.
    pub max_content_size: Option<Scalar>,
}

/// When a symbolic link inside the served directory may be followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FollowSymlinks {
    /// Follow links whose final target is still inside the base directory (the default: links
    /// within a deployment keep working, a link to `/etc` never serves anything).
    #[default]
    InsideRoot,
    /// Follow every link, like nginx's default `disable_symlinks off`. For trusted trees only.
    Always,
    /// Never follow a link, in any component (nginx's `disable_symlinks on`).
    Never,
}

impl FollowSymlinks {
    /// Parses the TOML spelling.
    pub fn parse(s: &str) -> Result<Self, StaticConfigError> {
        match s {
            "inside_root" => Ok(Self::InsideRoot),
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            other => Err(StaticConfigError::FollowSymlinks(other.to_owned())),
        }
    }
}

/// Where the served files live, with nginx's two ways of mapping a request path onto it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `root`: `/static/a.css` under `root = "/var/www"` is `/var/www/static/a.css`.
    Root(PathBuf),
    /// `alias`: `/static/a.css` in `location /static/` with `alias = "/srv/files"` is
    /// `/srv/files/a.css`.
    Alias(PathBuf),
}

impl Base {
    /// The directory nothing may be served from outside of.
    pub fn dir(&self) -> &Path {
        match self {
            Base::Root(p) | Base::Alias(p) => p,
        }
    }
}

/// A validated static-file configuration. It cannot hold a bad value, so `serve` never fails
/// because of its configuration.
///
/// Cheap to clone (reference counts): `serve` hands the settings to the blocking pool per
/// request. Clones share one open file cache; a configuration built anew (a reload) starts
/// with an empty one.
#[derive(Debug, Clone)]
pub struct StaticConfig {
    settings: Arc<Settings>,
    cache: Arc<OpenCache<FileEntry>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) base: Base,
    pub(crate) index: Vec<String>,
    pub(crate) follow_symlinks: FollowSymlinks,
    pub(crate) default_type: HeaderValue,
}

/// A static configuration that cannot be used, with what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StaticConfigError {
    /// Neither or both of `root` and `alias`.
    #[error("set exactly one of `root` (request path appended) or `alias` (location prefix replaced)")]
    RootXorAlias,
    /// An empty or relative directory.
    #[error("`{key}` must be an absolute directory path, got {value:?}")]
    NotAbsolute {
        /// `root` or `alias`.
        key: &'static str,
        /// The value given.
        value: PathBuf,
    },
    /// An index name that is not a single plain file name.
    #[error("`index` entries must be plain file names (no '/', not '.' or '..'), got {0:?}")]
    Index(String),
    /// An unknown `follow_symlinks` value.
    #[error("`follow_symlinks` must be \"inside_root\", \"always\" or \"never\", got {0:?}")]
    FollowSymlinks(String),
    /// A `default_type` that is not `type/subtype`.
    #[error("`default_type` must be a media type like \"application/octet-stream\", got {0:?}")]
    DefaultType(String),
    /// A bad `open_file_cache` value.
    #[error("`open_file_cache.{key}`: {message}")]
    OpenFileCache {
        /// `max`, `valid` or `max_content_size`.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl StaticConfig {
    /// A configuration serving `dir` with nginx's `root` meaning and every other setting at its
    /// default.
    pub fn root(dir: impl Into<PathBuf>) -> Result<Self, StaticConfigError> {
        Self::from_options(StaticOptions { root: Some(dir.into()), ..StaticOptions::default() })
    }

    /// A configuration serving `dir` with nginx's `alias` meaning and every other setting at its
    /// default.
    pub fn alias(dir: impl Into<PathBuf>) -> Result<Self, StaticConfigError> {
        Self::from_options(StaticOptions { alias: Some(dir.into()), ..StaticOptions::default() })
    }

    /// Validates the TOML shape. The directory is not required to exist yet (like nginx, it is
    /// looked up per request, so a deploy can swap it).
    pub fn from_options(options: StaticOptions) -> Result<Self, StaticConfigError> {
        let base = match (options.root, options.alias) {
            (Some(root), None) => Base::Root(absolute("root", root)?),
            (None, Some(alias)) => Base::Alias(absolute("alias", alias)?),
            _ => return Err(StaticConfigError::RootXorAlias),
        };
        let index = options.index.unwrap_or_else(|| vec!["index.html".to_owned()]);
        check_index(&index)?;
        let follow_symlinks = match options.follow_symlinks {
            Some(s) => FollowSymlinks::parse(&s)?,
            None => FollowSymlinks::default(),
        };
        let default_type = options.default_type.unwrap_or_else(|| "application/octet-stream".to_owned());
        let valid_type = match default_type.split_once('/') {
            Some((ty, sub)) => is_token(ty) && !sub.is_empty(),
            None => false,
        };
        let default_type = HeaderValue::from_str(&default_type)
            .ok()
            .filter(|_| valid_type)
            .ok_or(StaticConfigError::DefaultType(default_type))?;
        let cache = open_file_cache(options.open_file_cache.unwrap_or_default())?;
        Ok(Self {
            settings: Arc::new(Settings { base, index, follow_symlinks, default_type }),
            cache: Arc::new(OpenCache::new(cache)),
        })
    }

    /// Replaces the open file cache's settings, with an empty cache (builder style, for code
    /// and tests).
    pub fn with_open_file_cache(mut self, settings: OpenFileCacheSettings) -> Self {
        self.cache = Arc::new(OpenCache::new(settings));
        self
    }

    /// The open file cache's settings.
    pub fn open_file_cache(&self) -> &OpenFileCacheSettings {
        self.cache.settings()
    }

    pub(crate) fn cache(&self) -> &OpenCache<FileEntry> {
        &self.cache
    }

    /// Replaces the index names (builder style, for code and tests).
    pub fn with_index<I, S>(mut self, names: I) -> Result<Self, StaticConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        check_index(&names)?;
        Arc::make_mut(&mut self.settings).index = names;
        Ok(self)
    }

    /// Replaces the symlink policy (builder style, for code and tests).
    pub fn with_follow_symlinks(mut self, policy: FollowSymlinks) -> Self {
        Arc::make_mut(&mut self.settings).follow_symlinks = policy;
        self
    }

    /// Where files are served from, and how request paths map onto it.
    pub fn base(&self) -> &Base {
        &self.settings.base
    }

    /// The symlink policy in force.
    pub fn follow_symlinks(&self) -> FollowSymlinks {
        self.settings.follow_symlinks
    }

    pub(crate) fn settings(&self) -> &Arc<Settings> {
        &self.settings
    }
}

fn open_file_cache(options: OpenFileCacheOptions) -> Result<OpenFileCacheSettings, StaticConfigError> {
    let mut settings = OpenFileCacheSettings::DEFAULT;
    if let Some(max) = options.max {
        settings.max = usize::try_from(max)
            .map_err(|_| StaticConfigError::OpenFileCache { key: "max", message: format!("{max} is too large") })?;
    }
    if let Some(valid) = options.valid {
        let valid = crate::config::parse_duration(&valid.0)
            .map_err(|message| StaticConfigError::OpenFileCache { key: "valid", message })?;
        if valid.is_zero() {
            return Err(StaticConfigError::OpenFileCache {
                key: "valid",
                message: "must be longer than 0 (to turn the cache off, set `max = 0`)".to_owned(),
            });
        }
        settings.valid = valid;
    }
    if let Some(size) = options.max_content_size {
        settings.max_content_size = crate::config::ByteSize::parse(&size.0)
            .map_err(|message| StaticConfigError::OpenFileCache { key: "max_content_size", message })?
            .bytes();
    }
    Ok(settings)
}

fn absolute(key: &'static str, value: PathBuf) -> Result<PathBuf, StaticConfigError> {
    if value.is_absolute() { Ok(value) } else { Err(StaticConfigError::NotAbsolute { key, value }) }
}

fn check_index(names: &[String]) -> Result<(), StaticConfigError> {
    for name in names {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
            return Err(StaticConfigError::Index(name.clone()));
        }
    }
    Ok(())
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<StaticConfig, StaticConfigError> {
        let options: StaticOptions = toml::from_str(toml_text).expect("valid TOML shape");
        StaticConfig::from_options(options)
    }

    #[test]
    fn defaults() {
        let cfg = parse(r#"root = "/var/www/static""#).expect("valid");
        assert_eq!(cfg.settings.base, Base::Root("/var/www/static".into()));
        assert_eq!(cfg.settings.index, ["index.html"]);
        assert_eq!(cfg.settings.follow_symlinks, FollowSymlinks::InsideRoot);
        assert_eq!(cfg.settings.default_type, "application/octet-stream");
    }

    #[test]
    fn every_key() {
        let cfg = parse(
            r#"alias = "/srv/files"
               index = ["index.htm", "default.html"]
               follow_symlinks = "never"
               default_type = "text/plain""#,
        )
        .expect("valid");
        assert_eq!(cfg.settings.base, Base::Alias("/srv/files".into()));
        assert_eq!(cfg.settings.index, ["index.htm", "default.html"]);
        assert_eq!(cfg.settings.follow_symlinks, FollowSymlinks::Never);
        assert_eq!(cfg.settings.default_type, "text/plain");
    }

    #[test]
    fn refusals() {
        use StaticConfigError::*;
        assert_eq!(parse("").err(), Some(RootXorAlias));
        assert_eq!(parse("root = \"/a\"\nalias = \"/b\"").err(), Some(RootXorAlias));
        assert!(matches!(parse(r#"root = "relative/dir""#), Err(NotAbsolute { key: "root", .. })));
        assert!(matches!(parse(r#"alias = """#), Err(NotAbsolute { key: "alias", .. })));
        assert_eq!(parse("root = \"/a\"\nindex = [\"../x\"]").err(), Some(Index("../x".into())));
        assert_eq!(parse("root = \"/a\"\nindex = [\"\"]").err(), Some(Index("".into())));
        assert_eq!(parse("root = \"/a\"\nfollow_symlinks = \"yes\"").err(), Some(FollowSymlinks("yes".into())));
        assert_eq!(parse("root = \"/a\"\ndefault_type = \"octet\"").err(), Some(DefaultType("octet".into())));
        assert_eq!(
            parse("root = \"/a\"\ndefault_type = \"text/plain\\n\"").err(),
            Some(DefaultType("text/plain\n".into()))
        );
        assert!(toml::from_str::<StaticOptions>("root = \"/a\"\nautoindex = true").is_err());
    }

    #[test]
    fn open_file_cache_keys() {
        let cfg = parse(r#"root = "/a""#).expect("valid");
        assert_eq!(*cfg.open_file_cache(), OpenFileCacheSettings::DEFAULT);
        let cfg = parse(
            r#"root = "/a"
               open_file_cache = { max = 10, valid = "250ms", max_content_size = "1M" }"#,
        )
        .expect("valid");
        let want =
            OpenFileCacheSettings { max: 10, valid: std::time::Duration::from_millis(250), max_content_size: 1 << 20 };
        assert_eq!(*cfg.open_file_cache(), want);
        let cfg = parse("root = \"/a\"\nopen_file_cache = { max = 0 }").expect("valid");
        assert!(!cfg.open_file_cache().enabled());
        let cfg = parse("root = \"/a\"\nopen_file_cache = { valid = 5, max_content_size = 0 }").expect("valid");
        assert_eq!(cfg.open_file_cache().valid, std::time::Duration::from_secs(5));
        assert_eq!(cfg.open_file_cache().max_content_size, 0);
        for (text, key) in [
            ("valid = \"soon\"", "valid"),
            ("valid = \"0s\"", "valid"),
            ("max_content_size = \"1T\"", "max_content_size"),
        ] {
            let err = parse(&format!("root = \"/a\"\nopen_file_cache = {{ {text} }}")).expect_err(text);
            assert!(matches!(err, StaticConfigError::OpenFileCache { key: k, .. } if k == key), "{text}: {err}");
        }
        assert!(toml::from_str::<StaticOptions>("root = \"/a\"\nopen_file_cache = { inactive = \"20s\" }").is_err());
    }

    #[test]
    fn builders_keep_other_settings() {
        let cfg = StaticConfig::alias("/srv")
            .expect("valid")
            .with_follow_symlinks(FollowSymlinks::Always)
            .with_index(["home.html"])
            .expect("valid");
        assert_eq!(cfg.settings.base, Base::Alias("/srv".into()));
        assert_eq!(cfg.settings.index, ["home.html"]);
        assert_eq!(cfg.settings.follow_symlinks, FollowSymlinks::Always);
    }
}
