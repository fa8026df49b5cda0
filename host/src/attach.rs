//! Where a location's plugins plug in, by world, and what their failures do.
//!
//! A location lists plugins by name (`plugins = ["static-cache"]`); each is
//! loaded as the world its component exports ([`PluginRuntime::load_any`]),
//! then placed by that world:
//!
//! | world | locations | role |
//! |---|---|---|
//! | `header-policy` | every kind, any number, in order | request and response hooks (the pipeline) |
//! | `cache-policy` | `static`, at most one | caching headers of 200/206/304 file answers |
//! | `upload-fields` | `upload`, at most one | the rewritten form's fields, instead of the built-in reference policy |
//!
//! Anything else is a load error naming the plugin, so `gale check` catches
//! a plugin attached where it cannot work. Every world is loaded for the
//! server's tenant (`site::load_plugins`), so its calls get the tenant's
//! containment (breaker, concurrency and instance caps, metrics) in the
//! plugin runtime itself; what remains here is the failure policy per call, like
//! header policies: fail-closed answers 503; fail-open sends no caching
//! headers (cache-policy) or decides that one field with the built-in reference
//! policy (upload-fields); both are logged.
//!
//! [`PluginRuntime::load_any`]: crate::plugin::PluginRuntime::load_any

use std::sync::Arc;

use futures_util::future::BoxFuture;
use http::{HeaderMap, StatusCode};

use crate::config::{Handler, OnError};
use crate::plugin::{
    CachePolicy, Consequence, LoadedPlugin, PluginError, RequestView, UploadFieldsPlugin, log_failure,
};
use crate::site::Hook;
use crate::static_files::FileMeta;
use crate::upload::{FieldPolicy, FormField, NativeFieldPolicy, PolicyError, StoredFile, TextDecision};

/// A location's plugins, placed by world.
#[derive(Default)]
pub struct LocationPlugins {
    /// Header policies, in attachment order.
    pub hooks: Vec<Hook>,
    /// The cache policy of a static location.
    pub cache: Option<CacheHook>,
    /// The field policy of an upload location.
    pub fields: Option<Arc<dyn FieldPolicy>>,
    /// The name of the plugin in `fields`.
    fields_plugin: Option<String>,
}

impl LocationPlugins {
    /// Places a cache-policy or upload-fields plugin (header policies go to
    /// [`Self::hooks`], built by the caller). Refuses a plugin whose world
    /// does not fit `handler`, or a second one of a world that takes one.
    pub fn place(&mut self, plugin: LoadedPlugin, on_error: OnError, handler: &Handler) -> Result<(), PluginError> {
        let (fits, kind) = match handler {
            Handler::Proxy(_) => ("header-policy", "proxy"),
            Handler::Static(_) => ("header-policy` or `cache-policy", "static"),
            Handler::Upload(_) => ("header-policy` or `upload-fields", "upload"),
        };
        let refuse = |plugin: &LoadedPlugin, world: &'static str, message: String| PluginError::WrongWorld {
            plugin: plugin.name().to_owned(),
            world,
            message,
        };
        let taken = |plugin: &LoadedPlugin, other: &str| {
            let message =
                format!("a location takes one `{}` plugin, and `{other}` is already attached here", plugin.world());
            refuse(plugin, "header-policy", message)
        };
        match (plugin, handler) {
            (LoadedPlugin::Cache(policy), Handler::Static(_)) => {
                if let Some(other) = &self.cache {
                    return Err(taken(&LoadedPlugin::Cache(policy), other.policy.name()));
                }
                self.cache = Some(CacheHook { policy, on_error });
            }
            (LoadedPlugin::UploadFields(plugin), Handler::Upload(_)) => {
                if let Some(other) = &self.fields_plugin {
                    return Err(taken(&LoadedPlugin::UploadFields(plugin), other));
                }
                self.fields_plugin = Some(plugin.name().to_owned());
                self.fields =
                    Some(Arc::new(PluginFields { plugin, on_error, fallback: NativeFieldPolicy::reference() }));
            }
            (LoadedPlugin::Header(policy), _) => self.hooks.push(Hook { policy, on_error }),
            (plugin, _) => {
                let needs = if matches!(plugin, LoadedPlugin::Cache(_)) { "static" } else { "upload" };
                let message = format!(
                    "its world is `{}`, which only `{needs}` locations can use (this location is `{kind}`)",
                    plugin.world()
                );
                return Err(refuse(&plugin, fits, message));
            }
        }
        Ok(())
    }
}

/// A cache-policy attachment of a static location.
#[derive(Clone, Debug)]
pub struct CacheHook {
    /// The loaded policy.
    pub policy: CachePolicy,
    /// What a failed call does.
    pub on_error: OnError,
}

impl CacheHook {
    /// Adds the policy's caching headers to a static answer about `meta`:
    /// only 200, 206 and 304 ask the plugin (a 416 or an error gets none,
    /// as with nginx's `expires`). A failed call is an error when
    /// fail-closed, and adds nothing (logged) when fail-open.
    pub async fn apply(
        &self,
        req: &RequestView<'_>,
        meta: &FileMeta,
        status: StatusCode,
        headers: &mut HeaderMap,
    ) -> Result<(), PluginError> {
        if !matches!(status, StatusCode::OK | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED) {
            return Ok(());
        }
        match self.policy.decide(req, meta).await {
            Ok(cache) => {
                cache.apply(status, headers);
                Ok(())
            }
            Err(e) if self.on_error == OnError::FailOpen => {
                log_failure(self.policy.tenant(), &e, Consequence::Skipped("no caching headers sent"));
                Ok(())
            }
            Err(e) => {
                log_failure(self.policy.tenant(), &e, Consequence::Refused);
                Err(e)
            }
        }
    }
}

/// An upload-fields attachment as the upload module's [`FieldPolicy`], with
/// its failure policy: fail-open decides a failed call with the built-in
/// reference policy instead.
struct PluginFields {
    plugin: UploadFieldsPlugin,
    on_error: OnError,
    fallback: NativeFieldPolicy,
}

impl PluginFields {
    /// Fail-closed: the error, boxed (the pipeline answers 503 for it).
    /// Fail-open: `Ok` after logging, and the caller falls back.
    fn failed(&self, e: PluginError) -> Result<(), PolicyError> {
        if self.on_error == OnError::FailOpen {
            let instead = "the built-in field policy decided instead";
            log_failure(self.plugin.tenant(), &e, Consequence::Skipped(instead));
            Ok(())
        } else {
            log_failure(self.plugin.tenant(), &e, Consequence::Refused);
            Err(Box::new(e))
        }
    }
}

impl FieldPolicy for PluginFields {
    fn needs_sha256(&self) -> bool {
        self.plugin.needs_sha256()
    }

    fn text_field<'a>(&'a self, name: &'a [u8]) -> BoxFuture<'a, Result<TextDecision, PolicyError>> {
        Box::pin(async move {
            match self.plugin.text_decision(name).await {
                Ok(decision) => Ok(decision),
                Err(e) => self.failed(e).map(|()| self.fallback.decide_text(name)),
            }
        })
    }

    fn file_fields<'a>(&'a self, file: &'a StoredFile) -> BoxFuture<'a, Result<Vec<FormField>, PolicyError>> {
        Box::pin(async move {
            match self.plugin.fields_for(file).await {
                Ok(fields) => Ok(fields),
                Err(e) => self.failed(e).map(|()| self.fallback.fields_for(file)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    //! The failure policies, against the real bundled guests (built by
    //! `scripts/build-plugins.sh`): a name or path larger than the plugin's
    //! memory limit makes the call fail deterministically.

    use std::path::PathBuf;
    use std::time::{Duration, SystemTime};

    use bytes::Bytes;
    use http::{HeaderValue, Method, Uri};

    use super::*;
    use crate::plugin::{Limits, PluginRuntime, RuntimeOptions};

    const MEMORY: usize = 4 << 20;

    fn plugins_dir() -> PathBuf {
        crate::plugin::test_support::plugins_dir(&["static_cache", "upload_fields"])
    }

    fn limits() -> Limits {
        Limits { memory: MEMORY, timeout: Duration::from_secs(2), ..Limits::default() }
    }

    async fn fields(on_error: OnError) -> PluginFields {
        let rt = PluginRuntime::new(RuntimeOptions::default()).expect("runtime");
        let plugin =
            rt.load_upload_fields(&plugins_dir(), "upload-fields", &toml::Table::new(), limits()).await.expect("loads");
        PluginFields { plugin, on_error, fallback: NativeFieldPolicy::reference() }
    }

    fn file(field_name: Bytes) -> StoredFile {
        StoredFile {
            field_name,
            filename: Bytes::from_static(b"a.txt"),
            raw_filename: Bytes::from_static(b"a.txt"),
            content_type: Bytes::from_static(b"text/plain"),
            path: "/store/0123".into(),
            store_name: "0123".into(),
            size: 1,
            md5: "0cc175b9c0f1b6a831c399e269772661".into(),
            sha256: None,
        }
    }

    #[tokio::test]
    async fn upload_fields_fail_open_falls_back_to_the_reference_policy() {
        let policy = fields(OnError::FailOpen).await;
        let huge = vec![b'x'; 2 * MEMORY];
        // The plugin cannot even receive the name; the reference configuration policy drops it.
        assert_eq!(policy.text_field(&huge).await.expect("fell back"), TextDecision::Drop);
        let mut passing = huge.clone();
        passing.extend_from_slice(b"somearg");
        assert_eq!(policy.text_field(&passing).await.expect("fell back"), TextDecision::Pass);
        let big = file(Bytes::from(huge));
        let got = policy.file_fields(&big).await.expect("fell back");
        assert_eq!(got, NativeFieldPolicy::reference().fields_for(&big));
        // And the plugin itself still works afterwards.
        assert_eq!(policy.text_field(b"somearg").await.expect("works"), TextDecision::Pass);
    }

    #[tokio::test]
    async fn upload_fields_fail_closed_is_a_plugin_error() {
        let policy = fields(OnError::FailClosed).await;
        let huge = vec![b'x'; 2 * MEMORY];
        let err = policy.text_field(&huge).await.expect_err("fails");
        let err = err.downcast::<PluginError>().expect("a plugin error");
        assert!(matches!(*err, PluginError::MemoryLimit { hook: "text-field", .. }), "{err:?}");
        let err = policy.file_fields(&file(Bytes::from(huge))).await.expect_err("fails");
        assert!(err.downcast_ref::<PluginError>().is_some(), "{err:?}");
    }

    #[tokio::test]
    async fn cache_policy_failure_policies() {
        let rt = PluginRuntime::new(RuntimeOptions::default()).expect("runtime");
        let policy =
            rt.load_cache_policy(&plugins_dir(), "static-cache", &toml::Table::new(), limits()).await.expect("loads");
        let uri: Uri = "/static/app.css?v=1".parse().expect("uri");
        let headers = HeaderMap::new();
        let view = RequestView {
            method: &Method::GET,
            uri: &uri,
            headers: &headers,
            remote_addr: ([127, 0, 0, 1], 1).into(),
            scheme: "http",
            host: "h",
        };
        let meta = |path: String| FileMeta {
            path,
            query: Some("v=1".into()),
            size: 1,
            mtime: SystemTime::UNIX_EPOCH,
            content_type: "text/css".into(),
        };
        let ok = meta("/static/app.css".into());
        let huge = meta(format!("/{}", "x".repeat(2 * MEMORY)));
        let open = CacheHook { policy: policy.clone(), on_error: OnError::FailOpen };
        let closed = CacheHook { policy, on_error: OnError::FailClosed };

        let mut sent = HeaderMap::new();
        closed.apply(&view, &ok, StatusCode::OK, &mut sent).await.expect("decides");
        assert_eq!(sent.get("expires"), Some(&HeaderValue::from_static("Thu, 31 Dec 2037 23:55:55 GMT")));
        assert_eq!(sent.get("cache-control"), Some(&HeaderValue::from_static("max-age=315360000")));
        // Not asked for a 416: no headers, no call (a failing call would show).
        let mut none = HeaderMap::new();
        closed.apply(&view, &huge, StatusCode::RANGE_NOT_SATISFIABLE, &mut none).await.expect("not asked");
        assert!(none.is_empty());

        let mut failed = HeaderMap::new();
        open.apply(&view, &huge, StatusCode::OK, &mut failed).await.expect("fail-open");
        assert!(failed.is_empty(), "fail-open sends no caching headers: {failed:?}");
        let err = closed.apply(&view, &huge, StatusCode::OK, &mut failed).await.expect_err("fail-closed");
        assert!(matches!(err, PluginError::MemoryLimit { hook: "decide", .. }), "{err:?}");
        assert!(failed.is_empty());
    }
}
