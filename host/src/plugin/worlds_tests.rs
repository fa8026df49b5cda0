//! Tests of the `cache-policy` and `upload-fields` worlds against the real
//! bundled guests (`static-cache`, `upload-fields`) built by
//! `scripts/build-plugins.sh` into `<repo>/target/plugins/`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};

use super::test_support::{relaxed, runtime, table};
use super::*;
use crate::static_files::{CacheHeaders, FileMeta, query_string_expires_max};
use crate::upload::{FieldPolicy, FieldPolicyConfig, FileAttr, NativeFieldPolicy, StoredFile};

fn plugins_dir() -> PathBuf {
    test_support::plugins_dir(&["header_policy", "static_cache", "upload_fields"])
}

/// The bundled static-cache policy with `config` (TOML text), relaxed limits.
async fn static_cache(rt: &PluginRuntime, config: &str) -> Result<CachePolicy, PluginError> {
    rt.load_cache_policy(&plugins_dir(), "static-cache", &table(config), relaxed()).await
}

/// A GET for `target` and the meta of the file it names.
struct StaticReq {
    uri: Uri,
    headers: HeaderMap,
    meta: FileMeta,
}

impl StaticReq {
    fn new(target: &str, content_type: &str) -> Self {
        let uri: Uri = target.parse().expect("uri");
        let meta = FileMeta {
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            size: 1234,
            mtime: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            content_type: content_type.to_owned(),
        };
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("www.example.org"));
        Self { uri, headers, meta }
    }

    fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &Method::GET,
            uri: &self.uri,
            headers: &self.headers,
            remote_addr: SocketAddr::from(([192, 0, 2, 7], 51234)),
            scheme: "http",
            host: "www.example.org",
        }
    }
}

fn text(h: &CacheHeaders) -> (Option<&str>, Option<&str>) {
    (
        h.cache_control.as_ref().map(|v| v.to_str().expect("ascii")),
        h.expires.as_ref().map(|v| v.to_str().expect("ascii")),
    )
}

#[tokio::test]
async fn static_cache_default_is_the_reference_rule_exactly() {
    let cache = tempfile::tempdir().expect("tempdir");
    let policy = static_cache(&runtime(cache.path()), "").await.expect("loads");
    let cases = [
        ("/static/app.css?v=1", "text/css", true),
        ("/static/app.css", "text/css", false),
        ("/static/app.css?", "text/css", false),
        ("/static/img/logo.png?20240101", "image/png", true),
        ("/static/a/b/index.html?x", "text/html", true),
        ("/static/a/b/index.html", "text/html", false),
    ];
    for (target, content_type, max) in cases {
        let req = StaticReq::new(target, content_type);
        let got = policy.decide(&req.view(), &req.meta).await.expect("decides");
        assert_eq!(got, query_string_expires_max(&req.meta), "{target}");
        if max {
            assert_eq!(text(&got), (Some("max-age=315360000"), Some("Thu, 31 Dec 2037 23:55:55 GMT")), "{target}");
        } else {
            assert!(got.is_empty(), "{target}: {got:?}");
        }
    }
}

#[tokio::test]
async fn static_cache_decisions_are_remembered_per_declared_input() {
    let cache = tempfile::tempdir().expect("tempdir");
    let rt = runtime(cache.path());
    let remembered = static_cache(&rt, "").await.expect("loads");
    let every_time = static_cache(&rt, "memoize = false").await.expect("loads");
    let targets = ["/static/app.css?v=1", "/static/app.css?v=1", "/static/app.css", "/static/app.css?v=2"];
    for target in targets {
        let req = StaticReq::new(target, "text/css");
        let a = remembered.decide(&req.view(), &req.meta).await.expect("decides");
        let b = every_time.decide(&req.view(), &req.meta).await.expect("decides");
        assert_eq!(a, b, "{target}: a remembered decision is the decision");
        assert_eq!(a, query_string_expires_max(&req.meta), "{target}");
    }
    // The reference rule reads the path, the content type and the query: three
    // distinct inputs among the four answers; the other policy remembers none.
    assert_eq!(remembered.remembered(), 3);
    assert_eq!(every_time.remembered(), 0);
    // The same path with another size or mtime is the same input (the
    // reference rule does not read them).
    let mut req = StaticReq::new("/static/app.css?v=1", "text/css");
    req.meta.size += 1;
    req.meta.mtime += Duration::from_secs(60);
    remembered.decide(&req.view(), &req.meta).await.expect("decides");
    assert_eq!(remembered.remembered(), 3);
    let png = StaticReq::new("/static/app.css?v=1", "image/png");
    remembered.decide(&png.view(), &png.meta).await.expect("decides");
    assert_eq!(remembered.remembered(), 4, "the content type is an input");
}

#[tokio::test]
async fn a_remembered_relative_expiry_counts_from_each_answer() {
    let cache = tempfile::tempdir().expect("tempdir");
    let policy = static_cache(&runtime(cache.path()), "rules = [{ max_age = \"1h\" }]").await.expect("loads");
    let req = StaticReq::new("/static/app.css", "text/css");
    let first = policy.decide(&req.view(), &req.meta).await.expect("decides");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = policy.decide(&req.view(), &req.meta).await.expect("decides");
    assert_eq!(policy.remembered(), 1, "the second answer came from memory");
    assert_eq!(text(&first).0, Some("max-age=3600"));
    assert_eq!(text(&second).0, Some("max-age=3600"));
    let date = |h: &CacheHeaders| httpdate::parse_http_date(text(h).1.expect("expires")).expect("a date");
    assert!(date(&second) > date(&first), "{first:?} then {second:?}");
}

#[tokio::test]
async fn static_cache_rules_by_prefix_extension_and_type() {
    let cache = tempfile::tempdir().expect("tempdir");
    let config = r#"
        rules = [
            { path_prefix = "/static/fresh/", no_cache = true },
            { extension = ["css", "js"], max_age = "365d", immutable = true },
            { content_type = "image/*", max_age = 600, private = true },
            { path_prefix = "/static/", query = true, max_age = "max" },
        ]
    "#;
    let policy = runtime(cache.path())
        .load_cache_policy(&plugins_dir(), "static_cache", &table(config), relaxed())
        .await
        .expect("loads");
    let decide = |target: &'static str, content_type: &'static str| {
        let policy = policy.clone();
        async move {
            let req = StaticReq::new(target, content_type);
            policy.decide(&req.view(), &req.meta).await.expect("decides")
        }
    };
    let fresh = decide("/static/fresh/app.css?v=1", "text/css").await;
    assert_eq!(text(&fresh), (Some("no-cache"), None));
    let css = decide("/static/app.css", "text/css").await;
    assert_eq!(css.cache_control.as_ref().map(|v| v.as_bytes()), Some(&b"max-age=31536000, immutable"[..]));
    let expires = css.expires.as_ref().and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok());
    let in_a_year = SystemTime::now() + Duration::from_secs(31_536_000);
    let off = expires.expect("an HTTP date").duration_since(in_a_year).unwrap_or_else(|e| e.duration());
    assert!(off < Duration::from_secs(60), "Expires is now + 1 year, off by {off:?}");
    let png = decide("/static/logo.png", "image/png").await;
    assert_eq!(png.cache_control.as_ref().map(|v| v.as_bytes()), Some(&b"private, max-age=600"[..]));
    let versioned = decide("/static/data.json?v=2", "application/json").await;
    assert_eq!(text(&versioned), (Some("max-age=315360000"), Some("Thu, 31 Dec 2037 23:55:55 GMT")));
    assert!(decide("/static/data.json", "application/json").await.is_empty(), "no rule matches");
}

#[tokio::test]
async fn static_cache_rejects_a_bad_config_with_its_message() {
    let cache = tempfile::tempdir().expect("tempdir");
    let err = static_cache(&runtime(cache.path()), "rules = [{ max_age = \"soon\" }]").await.expect_err("rejected");
    let PluginError::Config { ref plugin, ref message } = err else {
        panic!("expected a config error, got {err:?}");
    };
    assert_eq!(plugin, "static-cache");
    assert!(message.contains("rules[0]: max_age \"soon\""), "{message}");
}

fn stored(field: &[u8], filename: &[u8], content_type: &[u8], sha256: Option<&str>) -> StoredFile {
    StoredFile {
        field_name: Bytes::copy_from_slice(field),
        filename: Bytes::copy_from_slice(filename),
        raw_filename: Bytes::copy_from_slice(filename),
        content_type: Bytes::copy_from_slice(content_type),
        path: "/var/gale/uploads/0123456789abcdef0123456789abcdef".into(),
        store_name: "0123456789abcdef0123456789abcdef".into(),
        size: 14,
        md5: "746308829575e17c3331bbcb00c0898b".into(),
        sha256: sha256.map(str::to_owned),
    }
}

/// Text field names: the reference configuration's `somearg`, near misses, D2 forgeries, empty
/// and non-UTF-8 names.
const NAMES: &[&[u8]] = &[
    b"somearg",
    b"somearg2",
    b"xsomeargx",
    b"somearg[]",
    b"SOMEARG",
    b"Somearg",
    b"some_arg",
    b"",
    b"other",
    b"file",
    b"somearg.name",
    b"somearg.path",
    b"somearg.content_type",
    b"somearg.md5",
    b"somearg.size",
    b"somearg.sha256",
    b"somearg.paths",
    b"somearg.",
    b"file.path",
    b".path",
    b"somearg\xff\xfe",
    "sömearg".as_bytes(),
    b"a\"b somearg",
];

fn files() -> Vec<StoredFile> {
    vec![
        stored(b"file", b"hello.txt", b"text/plain", None),
        stored(b"", b"", b"", None),
        stored(b"f[]", "résumé 日本語.txt".as_bytes(), b"application/octet-stream", None),
        stored(b"file\xff", b"a\xfe.bin", b"image/png", Some(&"ab".repeat(32))),
        stored(b"doc", b"", b"", Some(&"cd".repeat(32))),
    ]
}

/// Runs the plugin and the native policy over the same names and files.
async fn assert_same(plugin: &UploadFieldsPlugin, native: &NativeFieldPolicy, what: &str) {
    assert_eq!(plugin.needs_sha256(), native.needs_sha256(), "{what}: needs_sha256");
    for name in NAMES {
        let got = FieldPolicy::text_field(plugin, name).await.expect("text-field");
        assert_eq!(got, native.decide_text(name), "{what}: text field {:?}", String::from_utf8_lossy(name));
    }
    for file in files() {
        let got = FieldPolicy::file_fields(plugin, &file).await.expect("file-fields");
        assert_eq!(got, native.fields_for(&file), "{what}: file {file:?}");
    }
}

#[tokio::test]
async fn upload_fields_default_is_byte_identical_to_the_native_reference_policy() {
    let cache = tempfile::tempdir().expect("tempdir");
    let plugin = runtime(cache.path())
        .load_upload_fields(&plugins_dir(), "upload-fields", &toml::Table::new(), relaxed())
        .await
        .expect("loads");
    assert_same(&plugin, &NativeFieldPolicy::reference(), "reference").await;
    // D2 drops are counted by the plugin.
    let forged = NAMES.iter().filter(|n| n.starts_with(b"somearg.") && crate::upload::is_generated_name(n)).count();
    assert_eq!(plugin.counters(), vec![("forged_names_dropped".to_string(), forged as u64)]);
}

#[tokio::test]
async fn upload_fields_configs_match_the_native_policy() {
    let cache = tempfile::tempdir().expect("tempdir");
    let rt = runtime(cache.path());
    let reference = FieldPolicyConfig::reference();
    let cases = [
        (
            r#"pass_fields = ["^some", "[0-9]$", "\\.path$"]"#,
            FieldPolicyConfig {
                pass_fields: vec!["^some".into(), "[0-9]$".into(), r"\.path$".into()],
                ..reference.clone()
            },
        ),
        (
            r#"pass_fields = [".*"]
               allow_generated_names = true"#,
            FieldPolicyConfig { pass_fields: vec![".*".into()], allow_generated_names: true, ..reference.clone() },
        ),
        ("anchored = true", FieldPolicyConfig { anchored: true, ..reference.clone() }),
        (
            r#"pass_fields = ["(?i)SOMEARG", "\\xff"]
               set = ["path"]
               aggregate = ["md5", "size", "sha256"]"#,
            FieldPolicyConfig {
                file_fields: vec![FileAttr::Path, FileAttr::Md5, FileAttr::Size, FileAttr::Sha256],
                pass_fields: vec!["(?i)SOMEARG".into(), r"\xff".into()],
                ..reference.clone()
            },
        ),
        (
            "set = []\naggregate = []\npass_fields = []",
            FieldPolicyConfig { file_fields: vec![], pass_fields: vec![], ..reference.clone() },
        ),
    ];
    for (config, native) in cases {
        let plugin =
            rt.load_upload_fields(&plugins_dir(), "upload-fields", &table(config), relaxed()).await.expect(config);
        let native = NativeFieldPolicy::new(&native).expect("valid native config");
        assert_same(&plugin, &native, config).await;
    }
}

#[tokio::test]
async fn upload_fields_rejects_a_bad_regex_like_the_native_policy() {
    let cache = tempfile::tempdir().expect("tempdir");
    let err = runtime(cache.path())
        .load_upload_fields(&plugins_dir(), "upload-fields", &table(r#"pass_fields = ["a(?=b)"]"#), relaxed())
        .await
        .expect_err("rejected");
    assert!(matches!(err, PluginError::Config { ref message, .. } if message.contains("pass_fields[0]")), "{err:?}");
}

#[tokio::test]
async fn each_world_refuses_the_others_plugins_clearly() {
    let cache = tempfile::tempdir().expect("tempdir");
    let rt = runtime(cache.path());
    let dir = plugins_dir();
    let none = toml::Table::new();
    let err = rt.load_cache_policy(&dir, "header-policy", &none, relaxed()).await.expect_err("not a cache policy");
    assert!(matches!(err, PluginError::WrongWorld { world: "cache-policy", .. }), "{err:?}");
    assert!(err.to_string().starts_with("plugin `header-policy`: not a `cache-policy` plugin: "), "{err}");
    assert!(err.to_string().contains("cache-hooks"), "{err}");
    let err = rt.load_upload_fields(&dir, "static-cache", &none, relaxed()).await.expect_err("not upload-fields");
    assert!(matches!(err, PluginError::WrongWorld { world: "upload-fields", .. }), "{err:?}");
    assert!(err.to_string().contains("upload-hooks"), "{err}");
    let err = rt.load_header_policy(&dir, "upload-fields", &none, relaxed()).await.expect_err("not a header policy");
    assert!(matches!(err, PluginError::WrongWorld { world: "header-policy", .. }), "{err:?}");
    assert!(err.to_string().contains("header-hooks"), "{err}");
}

#[tokio::test]
async fn load_any_takes_the_world_the_component_exports() {
    let cache = tempfile::tempdir().expect("tempdir");
    let rt = runtime(cache.path());
    let dir = plugins_dir();
    let none = toml::Table::new();
    for (name, world) in
        [("header-policy", "header-policy"), ("static-cache", "cache-policy"), ("upload-fields", "upload-fields")]
    {
        let loaded = rt.load_any(&dir, name, &none, relaxed()).await.expect(name);
        assert_eq!((loaded.name(), loaded.world()), (name, world));
    }
    // The chosen world's configure runs, and its errors come through.
    let err = rt.load_any(&dir, "static-cache", &table("rules = 3"), relaxed()).await.expect_err("bad config");
    assert!(matches!(err, PluginError::Config { .. }), "{err:?}");
    let err = rt.load_any(&dir, "no-such-plugin", &none, relaxed()).await.expect_err("missing");
    assert!(matches!(err, PluginError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn a_component_of_no_gale_world_is_refused_naming_the_plugin() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("empty.wasm"), b"\0asm\x0d\0\x01\0").expect("write");
    let rt = runtime(&dir.path().join("cache"));
    let err = rt.load_any(dir.path(), "empty", &toml::Table::new(), relaxed()).await.expect_err("no world");
    assert!(matches!(err, PluginError::WrongWorld { ref plugin, .. } if plugin == "empty"), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with("plugin `empty`: not a `header-policy`, `cache-policy` or `upload-fields` plugin: "),
        "{text}"
    );
    for export in ["header-hooks", "cache-hooks", "upload-hooks"] {
        assert!(text.contains(export), "{text}");
    }
}

#[tokio::test]
async fn cache_headers_are_only_for_eligible_statuses() {
    // The policy's answer goes through `CacheHeaders::apply`, which keeps
    // nginx's `expires` statuses.
    let cache = tempfile::tempdir().expect("tempdir");
    let policy = static_cache(&runtime(cache.path()), "").await.expect("loads");
    let req = StaticReq::new("/static/app.css?v=1", "text/css");
    let decided = policy.decide(&req.view(), &req.meta).await.expect("decides");
    for (status, sent) in [(StatusCode::OK, true), (StatusCode::NOT_MODIFIED, true), (StatusCode::NOT_FOUND, false)] {
        let mut headers = HeaderMap::new();
        decided.apply(status, &mut headers);
        assert_eq!(headers.contains_key("expires"), sent, "{status}");
    }
}
