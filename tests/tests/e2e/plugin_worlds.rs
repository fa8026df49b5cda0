//! The `cache-policy` and `upload-fields` plugin worlds through the real binary, with the
//! bundled guests from `<repo>/target/plugins` (`scripts/build-plugins.sh`): the reference configuration's
//! `expires max` from `static-cache` on a static location with real Tornado behind `location /`,
//! the same forwarded upload form with and without the `upload-fields` plugin (byte for byte
//! through a capture backend, and read by a real Tornado handler), and `gale check` refusing a
//! plugin attached to a location of the wrong kind.

use std::path::PathBuf;
use std::time::Duration;

use gale_tests::multipart::{self, B, TXT, TXT_MD5, body, file, text};
use gale_tests::paths::repo_root;
use gale_tests::{Capture, Captured, ConfigBuilder, Gale, Request, Response, Tornado, dead_addr, run_gale, wait_until};
use serde_json::Value;
use tempfile::TempDir;

use crate::uploads::{UPLOAD, private_store, toml_str, upload_location};

/// nginx's `expires max`.
const EXPIRES_MAX: &str = "Thu, 31 Dec 2037 23:55:55 GMT";
const MAX_AGE_MAX: &str = "max-age=315360000";

/// `<repo>/target/plugins`, which must hold the bundled guests.
fn plugin_dir() -> String {
    let dir = repo_root().join("target").join("plugins");
    for wasm in ["static_cache", "upload_fields"] {
        let file = dir.join(format!("{wasm}.wasm"));
        assert!(file.is_file(), "{} is missing: run scripts/build-plugins.sh first", file.display());
    }
    dir.to_str().expect("UTF-8 plugin dir").to_owned()
}

/// A static tree (`<base>/www/static/app.css`, `logo.png`), real Tornado behind `location /`,
/// and gale serving `/static/` with `plugins` attached.
struct StaticSite {
    gale: Gale,
    _tornado: Tornado,
    _dir: TempDir,
}

impl StaticSite {
    fn new(plugins: &str) -> StaticSite {
        let dir = tempfile::tempdir().expect("tempdir");
        let www = dir.path().canonicalize().expect("canonical").join("www");
        std::fs::create_dir_all(www.join("static")).expect("mkdir");
        std::fs::write(www.join("static/app.css"), "body { color: #333 }\n".repeat(50)).expect("app.css");
        std::fs::write(www.join("static/logo.png"), [0x89, b'P', b'N', b'G'].repeat(100)).expect("logo.png");
        let tornado = Tornado::spawn("plugin-worlds");
        let root = toml_str(www.to_str().expect("UTF-8"));
        let gale = ConfigBuilder::new([tornado.addr()])
            .global("plugin_dir", plugin_dir())
            .location(&format!("path = \"/static/\"\nstatic = {{ root = {root} }}\nplugins = {plugins}"))
            .start();
        StaticSite { gale, _tornado: tornado, _dir: dir }
    }

    fn get(&self, target: &str, headers: &[(&str, &str)]) -> Response {
        let mut request = Request::get(target);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        self.gale.send(&request)
    }
}

/// The caching headers of a response: every `Expires` and `Cache-Control` value.
fn caching(response: &Response) -> (Vec<&str>, Vec<&str>) {
    (response.header_all("expires"), response.header_all("cache-control"))
}

#[test]
fn static_cache_by_default_is_the_seeds_expires_max_for_a_query_string() {
    let site = StaticSite::new("[\"static-cache\"]");
    let versioned = site.get("/static/app.css?v=1", &[]);
    assert_eq!(versioned.status, 200, "{versioned}\ngale stderr:\n{}", site.gale.stderr());
    assert_eq!(caching(&versioned), (vec![EXPIRES_MAX], vec![MAX_AGE_MAX]), "{versioned}");
    assert_eq!(versioned.body, "body { color: #333 }\n".repeat(50).into_bytes());

    for target in ["/static/app.css", "/static/app.css?"] {
        let plain = site.get(target, &[]);
        assert_eq!(plain.status, 200, "{plain}");
        assert_eq!(caching(&plain), (vec![], vec![]), "{target}: no caching headers without a query string");
    }

    // 304 and 206 answers about the file get them too; a 404 or a 416 does not.
    let etag = versioned.header("etag").expect("an ETag").to_owned();
    let not_modified = site.get("/static/app.css?v=1", &[("If-None-Match", &etag)]);
    assert_eq!(not_modified.status, 304, "{not_modified}");
    assert_eq!(caching(&not_modified), (vec![EXPIRES_MAX], vec![MAX_AGE_MAX]), "{not_modified}");
    let partial = site.get("/static/app.css?v=1", &[("Range", "bytes=0-9")]);
    assert_eq!(partial.status, 206, "{partial}");
    assert_eq!(caching(&partial), (vec![EXPIRES_MAX], vec![MAX_AGE_MAX]), "{partial}");
    let unsatisfiable = site.get("/static/app.css?v=1", &[("Range", "bytes=99999-")]);
    assert_eq!(unsatisfiable.status, 416, "{unsatisfiable}");
    assert_eq!(caching(&unsatisfiable), (vec![], vec![]));
    let missing = site.get("/static/missing.css?v=1", &[]);
    assert_eq!(missing.status, 404, "{missing}");
    assert_eq!(caching(&missing), (vec![], vec![]));

    // Tornado behind `location /` is untouched by the static location's policy.
    let proxied = site.get("/?v=1", &[]);
    assert_eq!(proxied.status, 200, "{proxied}");
    assert!(proxied.header("expires").is_none(), "{proxied}");
}

#[test]
fn static_cache_rules_from_the_attachment_config() {
    let plugins = "[{ name = \"static-cache\", config = { rules = [\
        { extension = \"css\", max_age = 600, immutable = true }, \
        { content_type = \"image/*\", no_cache = true, private = true } ] } }]";
    let site = StaticSite::new(plugins);
    let css = site.get("/static/app.css", &[]);
    assert_eq!(css.status, 200, "{css}\ngale stderr:\n{}", site.gale.stderr());
    assert_eq!(css.header_all("cache-control"), vec!["max-age=600, immutable"], "{css}");
    let expires = css.header("expires").expect("an Expires date");
    let date = css.header("date").expect("a Date");
    let secs = |d: &str| httpdate::parse_http_date(d).expect("an HTTP date");
    let ahead = secs(expires).duration_since(secs(date)).expect("Expires after Date").as_secs();
    assert!((599..=601).contains(&ahead), "Expires is Date + 600 s, got {ahead} s ({expires} vs {date})");
    let png = site.get("/static/logo.png?v=1", &[]);
    assert_eq!(caching(&png), (vec![], vec!["private, no-cache"]), "{png}");
}

/// gale with an upload location at `path` in front of `backend`, with `plugins` (TOML) attached.
fn upload_gale(backend: std::net::SocketAddr, path: &str, plugins: Option<&str>) -> (Gale, PathBuf, TempDir) {
    let (dir, store) = private_store();
    let mut location = upload_location(path, &store, "");
    if let Some(plugins) = plugins {
        location.push_str(&format!("\nplugins = {plugins}"));
    }
    let gale = ConfigBuilder::new([backend])
        .global("plugin_dir", plugin_dir())
        .http("client_max_body_size", "100M")
        .location(&location)
        .start();
    (gale, store, dir)
}

/// Client bodies covering the reference configuration's rules: passed and dropped text fields, D2 forgeries, an
/// empty field name, several files, a file without Content-Type, an unsafe filename.
fn bodies() -> Vec<Vec<u8>> {
    vec![
        body(&[text("somearg", b"s"), file("file", "hello.txt", "text/plain", TXT), text("other", b"dropped")]),
        body(&[
            text("file.path", b"/etc/passwd"),
            text("somearg.path", b"/etc/shadow"),
            text("somearg2", b"passes"),
            text("SOMEARG", b"dropped"),
            file("a", "../../x.bin", "application/octet-stream", &[0u8, 1, 2, 255]),
            file("b", "empty.txt", "text/plain", b""),
            text("", b"nameless"),
        ]),
        body(&[multipart::part(&["Content-Disposition: form-data; name=\"f\"; filename=\"raw\""], TXT)]),
        body(&[text("other", b"x")]),
    ]
}

/// One upload through gale to a capture backend.
fn forwarded(gale: &Gale, capture: &Capture, data: &[u8]) -> Captured {
    let response = gale.send(&Request::post(UPLOAD, data.to_vec()).header("Content-Type", &multipart::content_type()));
    assert_eq!(response.status, 200, "{response}\ngale stderr:\n{}", gale.stderr());
    let got = capture.only();
    capture.clear();
    got
}

/// Stands for a stored file's path in [`expected_fields`] (random per run; checked apart).
const STORED: &[u8] = b"<a path in the store>";

/// The fields the reference configuration's policy forwards for each of [`bodies`], written by hand from
/// docs/uploads.md (pass `somearg` unanchored and case-sensitive, drop forged generated names
/// and empty names, a file becomes name/content_type/path/md5/size, the basename of the
/// filename, the dummy field when nothing is left); the md5s are the bodies' md5s, computed
/// outside gale. Not computed by gale, so a policy that drifted on both sides still fails.
fn expected_fields() -> Vec<Vec<(&'static str, &'static [u8])>> {
    vec![
        vec![
            ("somearg", b"s"),
            ("file.name", b"hello.txt"),
            ("file.content_type", b"text/plain"),
            ("file.path", STORED),
            ("file.md5", b"746308829575e17c3331bbcb00c0898b"),
            ("file.size", b"14"),
        ],
        vec![
            ("somearg2", b"passes"),
            ("a.name", b"x.bin"),
            ("a.content_type", b"application/octet-stream"),
            ("a.path", STORED),
            ("a.md5", b"0416dab819887333af831f8c765ac2ae"),
            ("a.size", b"4"),
            ("b.name", b"empty.txt"),
            ("b.content_type", b"text/plain"),
            ("b.path", STORED),
            ("b.md5", b"d41d8cd98f00b204e9800998ecf8427e"),
            ("b.size", b"0"),
        ],
        vec![
            ("f.name", b"raw"),
            ("f.content_type", b""),
            ("f.path", STORED),
            ("f.md5", b"746308829575e17c3331bbcb00c0898b"),
            ("f.size", b"14"),
        ],
        vec![("<ngx_upload_module_dummy>", b"")],
    ]
}

#[test]
fn upload_fields_plugin_forwards_the_fields_written_by_hand() {
    let capture = Capture::start(200);
    let (gale, store, _dir) = upload_gale(capture.addr(), UPLOAD, Some("[\"upload-fields\"]"));
    let bodies = bodies();
    let expected = expected_fields();
    assert_eq!(bodies.len(), expected.len(), "one hand-written row per body");
    for (i, (data, want)) in bodies.iter().zip(&expected).enumerate() {
        let got = forwarded(&gale, &capture, data);
        let form = got.form();
        let fields: Vec<(String, Vec<u8>)> = form
            .iter()
            .map(|(name, value)| {
                let name = String::from_utf8_lossy(name).into_owned();
                let value = if name.ends_with(".path") {
                    let path = std::path::PathBuf::from(String::from_utf8_lossy(value).into_owned());
                    assert!(multipart::is_store_path(&path, &store), "body {i}: {name} = {path:?}");
                    STORED.to_vec()
                } else {
                    value.clone()
                };
                (name, value)
            })
            .collect();
        let want: Vec<(String, Vec<u8>)> = want.iter().map(|(n, v)| ((*n).to_owned(), v.to_vec())).collect();
        assert_eq!(fields, want, "body {i}: the plugin's fields differ from the table");
    }
}

#[test]
fn upload_fields_plugin_forwards_the_same_form_as_the_built_in_policy() {
    let native_capture = Capture::start(200);
    let plugin_capture = Capture::start(200);
    let (native, _, _native_dir) = upload_gale(native_capture.addr(), UPLOAD, None);
    let (plugin, plugin_store, _plugin_dir) = upload_gale(plugin_capture.addr(), UPLOAD, Some("[\"upload-fields\"]"));
    for (i, data) in bodies().iter().enumerate() {
        let want = forwarded(&native, &native_capture, data);
        let got = forwarded(&plugin, &plugin_capture, data);
        // Identical but for the stored files' paths (each gale has its own store, random names):
        // the plugin's form must be the native form with the plugin's own paths in it.
        let got_form = got.form();
        let mut paths = got_form.iter().filter(|(n, _)| n.ends_with(b".path")).map(|(_, v)| v.clone());
        let fields: Vec<(String, Vec<u8>)> = want
            .form()
            .into_iter()
            .map(|(name, value)| {
                let value = if name.ends_with(b".path") { paths.next().expect("as many files") } else { value };
                (String::from_utf8(name).expect("UTF-8 name"), value)
            })
            .collect();
        let fields: Vec<(&str, &[u8])> = fields.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
        let expected = multipart::forwarded(B, &fields);
        assert!(
            got.body == expected,
            "body {i}: the plugin's form differs\n got: {}\nwant: {}",
            multipart::preview(&got.body),
            multipart::preview(&expected)
        );
        assert_eq!(got.header("content-type"), want.header("content-type"), "body {i}");
        for snapshot in &got.files {
            assert!(snapshot.exists, "body {i}: `.path` names a stored file");
            assert!(multipart::is_store_path(&snapshot.path, &plugin_store), "body {i}: {:?}", snapshot.path);
        }
    }
}

#[test]
fn upload_fields_plugin_with_a_real_tornado_handler() {
    const ANSWER: &str = "/upload-answer";
    let tornado = Tornado::spawn("plugin-worlds-upload");
    let (gale, store, _dir) = upload_gale(tornado.addr(), ANSWER, Some("[\"upload-fields\"]"));
    let form = body(&[
        text("somearg", b"s"),
        text("file.md5", b"forged"),
        file("file", "hello.txt", "text/plain", TXT),
        text("other", b"dropped"),
    ]);
    let response = gale
        .send(&Request::post(&format!("{ANSWER}?status=200"), form).header("Content-Type", &multipart::content_type()));
    assert_eq!(response.status, 200, "{response}\ngale stderr:\n{}", gale.stderr());
    let report: Value = response.json();
    let f = &report["files"][0];
    assert_eq!(f["exists"], true, "Tornado opened `.path`: {report}");
    assert_eq!(f["ok"], true, "md5/size match the file: {report}");
    assert_eq!(f["md5"], TXT_MD5, "{report}");
    assert_eq!(f["name"], "hello.txt", "{report}");
    let fields = report["fields"].as_object().expect("fields");
    let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["file.content_type", "file.md5", "file.name", "file.path", "file.size", "somearg"],
        "the forged `file.md5` and `other` are dropped: {report}"
    );
    assert_eq!(fields["file.md5"], serde_json::json!([TXT_MD5]), "{report}");
    // Removed right after the answer (like nginx-upload-module), not before it.
    wait_until(Duration::from_secs(5), "the file to be deleted after 200", || multipart::list_dir(&store).is_empty());
}

#[test]
fn check_refuses_a_plugin_attached_to_the_wrong_kind_of_location_or_of_two_worlds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store_dir, store) = private_store();
    let cases = [
        // A cache policy on the proxied `location /`.
        (
            ConfigBuilder::new([dead_addr()])
                .global("plugin_dir", plugin_dir())
                .render()
                .replace("pass = \"tornadoes\" }", "pass = \"tornadoes\" }\nplugins = [\"static-cache\"]"),
            "plugin `static-cache`: not a `header-policy` plugin: its world is `cache-policy`, \
             which only `static` locations can use (this location is `proxy`)",
        ),
        // An upload-fields policy on a static location.
        (
            ConfigBuilder::new([dead_addr()])
                .global("plugin_dir", plugin_dir())
                .location(&format!(
                    "path = \"/static/\"\nstatic = {{ root = {} }}\nplugins = [\"upload-fields\"]",
                    toml_str(dir.path().to_str().expect("UTF-8"))
                ))
                .render(),
            "its world is `upload-fields`, which only `upload` locations can use (this location is `static`)",
        ),
        // Two upload-fields policies on one upload location.
        (
            ConfigBuilder::new([dead_addr()])
                .global("plugin_dir", plugin_dir())
                .location(&format!(
                    "{}\nplugins = [\"upload-fields\", \"upload_fields\"]",
                    upload_location(UPLOAD, &store, "")
                ))
                .render(),
            "a location takes one `upload-fields` plugin, and `upload-fields` is already attached here",
        ),
        // A component exporting the hooks of two worlds: its world is read from its exports,
        // so it is refused rather than taken as the first world that fits.
        (
            ConfigBuilder::new([dead_addr()])
                .global("plugin_dir", plugin_dir())
                .render()
                .replace("pass = \"tornadoes\" }", "pass = \"tornadoes\" }\nplugins = [\"test-two-worlds\"]"),
            "plugin `test-two-worlds`: not a `header-policy`, `cache-policy` or `upload-fields` plugin: it \
             exports the hooks of several worlds: header-policy (header-hooks), cache-policy (cache-hooks)",
        ),
    ];
    for (i, (config, message)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("gale-{i}.toml"));
        std::fs::write(&path, config).expect("write config");
        let path = path.to_str().expect("UTF-8").to_owned();
        let out = run_gale(&["check", "--config", &path], Some(dir.path()));
        assert_eq!(out.code(), Some(1), "case {i}: {out:?}\n{config}");
        let line = config.lines().position(|l| l.starts_with("plugins")).expect("plugins line") + 1;
        assert!(out.stderr.contains(&format!("{path}:{line}:")), "case {i}: FILE:LINE in {}", out.stderr);
        assert!(out.stderr.contains(message), "case {i}: expected {message:?} in:\n{}", out.stderr);
    }
}
