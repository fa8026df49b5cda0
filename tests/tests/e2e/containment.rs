//! Containment for every plugin world through the real binary: a `cache-policy` or
//! `upload-fields` plugin that spins to its deadline is quarantined in its own tenant only
//! (the other tenant's static files keep their caching headers, its uploads keep their
//! plugin-written fields), with the tenant's label in `/metrics`; one that traps is answered
//! per call by `on_error` and never quarantined.
//!
//! The fixtures `test-cache-fault` and `test-fields-fault` come from `<repo>/target/plugins/`
//! (`scripts/build-plugins.sh`); each tenant gets a copy in its own plugin directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use gale_tests::admin::{self, Metrics, admin_addr};
use gale_tests::multipart::{self, TXT, body, file, text};
use gale_tests::paths::repo_root;
use gale_tests::{Capture, Gale, Request, Response};
use tempfile::TempDir;

use crate::uploads::{private_store, toml_str};

/// The caching header test-cache-fault answers for the files it does not misbehave on.
const FIXTURE_CACHE_CONTROL: &str = "max-age=60, test-cache-fault";

/// `<tmp>/<tenant>/` holding a copy of the built `plugin`; returns its path.
#[track_caller]
fn plugin_dir(tmp: &Path, tenant: &str, plugin: &str) -> PathBuf {
    let wasm = format!("{}.wasm", plugin.replace('-', "_"));
    let built = repo_root().join("target/plugins").join(&wasm);
    assert!(built.is_file(), "{} is missing: run scripts/build-plugins.sh", built.display());
    let dir = tmp.join(tenant);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::copy(&built, dir.join(&wasm)).expect("copy plugin");
    dir
}

/// A `[tenant.NAME]` table: its plugin directory, the harness's generous hook time limit (a
/// spinning fixture always reaches it), and a breaker that opens on `failures` limit hits and
/// stays open for the whole test.
fn tenant_table(name: &str, dir: &Path, failures: u32) -> String {
    format!(
        "[tenant.{name}]\nplugin_dir = {dir}\nlimits = {{ hook_timeout = \"{timeout}\" }}\n\
         breaker = {{ failures = {failures}, backoff = \"1h\", max_backoff = \"1h\" }}\n\n",
        dir = toml_str(dir.to_str().expect("UTF-8 dir")),
        timeout = gale_tests::plugins::HOOK_TIMEOUT,
    )
}

/// A `[[server]]` of `tenant` on its own listener with one location.
fn server(tenant: &str, location: &str) -> String {
    format!("[[server]]\nlisten = [\"127.0.0.1:0\"]\ntenant = \"{tenant}\"\n[[server.location]]\n{location}\n\n")
}

/// A config: two gale threads, the admin listener, then `rest`.
fn config(rest: &str) -> String {
    format!("[global]\nthreads = 2\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n{rest}")
}

/// GET `target` from the listener `addr`.
fn get(addr: SocketAddr, target: &str) -> Response {
    gale_tests::http::send(addr, &Request::get(target))
}

/// Waits (up to 10 s) for gale's log to contain `text`.
#[track_caller]
fn wait_for_log(gale: &Gale, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gale.stderr().contains(text) {
        assert!(Instant::now() < deadline, "gale never logged {text:?}; stderr:\n{}", gale.stderr());
        thread::sleep(Duration::from_millis(20));
    }
}

/// `gale_plugin_calls_total` of `plugin`'s `hook` in `tenant` with `outcome` (0 when absent).
fn calls(m: &Metrics, tenant: &str, plugin: &str, hook: &str, outcome: &str) -> f64 {
    let labels = [("tenant", tenant), ("plugin", plugin), ("hook", hook), ("outcome", outcome)];
    m.get("gale_plugin_calls_total", &labels).unwrap_or(0.0)
}

/// Whether `plugin` is quarantined in `tenant`, per `/metrics`.
fn quarantined(m: &Metrics, tenant: &str, plugin: &str) -> bool {
    m.value("gale_plugin_quarantined", &[("tenant", tenant), ("plugin", plugin)]) == 1.0
}

/// The breaker state of `plugin` in `tenant`, per `/status`.
fn breaker(admin: SocketAddr, tenant: &str, plugin: &str) -> String {
    let status = admin::status(admin);
    let tenants = status["plugins"]["tenants"].as_array().expect("tenants");
    let t = tenants.iter().find(|t| t["name"] == tenant).unwrap_or_else(|| panic!("no {tenant} in {status:#}"));
    let plugins = t["plugins"].as_array().expect("plugins");
    let p = plugins.iter().find(|p| p["name"] == plugin).unwrap_or_else(|| panic!("no {plugin} in {status:#}"));
    p["breaker"].as_str().expect("state").to_owned()
}

/// A static tree: `<tmp>/www/static/app.css` and `<tmp>/www/static/x/spin.css` (under the
/// prefix where the fixture misbehaves).
fn static_root(tmp: &Path) -> PathBuf {
    let www = tmp.canonicalize().expect("canonical").join("www");
    std::fs::create_dir_all(www.join("static/x")).expect("mkdir");
    std::fs::write(www.join("static/app.css"), "body { color: #333 }\n").expect("app.css");
    std::fs::write(www.join("static/x/spin.css"), "p { margin: 0 }\n").expect("spin.css");
    www
}

/// A static location at `/static/` with test-cache-fault attached (`mode`, `on_error`),
/// misbehaving under `/static/x/` only.
fn static_location(root: &Path, mode: &str, on_error: &str) -> String {
    format!(
        "path = \"/static/\"\nstatic = {{ root = {root} }}\n\
         plugins = [{{ name = \"test-cache-fault\", on_error = \"{on_error}\", \
         config = {{ mode = \"{mode}\", path_prefix = \"/static/x/\" }} }}]",
        root = toml_str(root.to_str().expect("UTF-8 root")),
    )
}

#[test]
fn a_spinning_cache_policy_is_quarantined_in_its_tenant_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = static_root(tmp.path());
    let (a, b) = (plugin_dir(tmp.path(), "a", "test-cache-fault"), plugin_dir(tmp.path(), "b", "test-cache-fault"));
    // Both tenants attach the same plugin with the same config; only tenant a is sent the
    // files it spins on.
    let gale = Gale::start(&config(&format!(
        "{}{}{}{}",
        tenant_table("a", &a, 2),
        tenant_table("b", &b, 2),
        server("a", &static_location(&root, "spin", "fail-closed")),
        server("b", &static_location(&root, "spin", "fail-closed")),
    )));
    let (in_a, in_b) = (gale.addrs()[0], gale.addrs()[1]);
    let admin = admin_addr(&gale);

    let fine = get(in_a, "/static/app.css");
    assert_eq!(fine.status, 200, "{fine}\ngale stderr:\n{}", gale.stderr());
    assert_eq!(fine.header_all("cache-control"), vec![FIXTURE_CACHE_CONTROL], "{fine}");
    for _ in 0..2 {
        let spun = get(in_a, "/static/x/spin.css");
        assert_eq!(spun.status, 503, "a spin cut off at the deadline, fail-closed:\n{spun}");
    }
    wait_for_log(&gale, "plugin quarantined: 2 of its 3 decide calls");
    // Quarantined in tenant a: not run even for the file it answers.
    let refused = get(in_a, "/static/app.css");
    assert_eq!(refused.status, 503, "{refused}");
    // Tenant b's static files keep their headers: its breaker is its own.
    for _ in 0..3 {
        let served = get(in_b, "/static/app.css");
        assert_eq!(served.status, 200, "{served}");
        assert_eq!(served.header_all("cache-control"), vec![FIXTURE_CACHE_CONTROL], "{served}");
    }
    assert_eq!(breaker(admin, "a", "test-cache-fault"), "open");
    assert_eq!(breaker(admin, "b", "test-cache-fault"), "closed");

    let m = admin::metrics(admin);
    assert_eq!(calls(&m, "a", "test-cache-fault", "decide", "timeout"), 2.0, "{}", m.text);
    assert_eq!(calls(&m, "a", "test-cache-fault", "decide", "ok"), 1.0, "{}", m.text);
    assert_eq!(calls(&m, "a", "test-cache-fault", "decide", "quarantined"), 1.0, "{}", m.text);
    let a_labels = [("tenant", "a"), ("plugin", "test-cache-fault"), ("hook", "decide")];
    assert_eq!(m.value("gale_plugin_quarantines_total", &a_labels), 1.0, "{}", m.text);
    assert!(quarantined(&m, "a", "test-cache-fault"), "{}", m.text);
    assert_eq!(calls(&m, "b", "test-cache-fault", "decide", "ok"), 3.0, "{}", m.text);
    assert_eq!(calls(&m, "b", "test-cache-fault", "decide", "timeout"), 0.0, "{}", m.text);
    assert!(!quarantined(&m, "b", "test-cache-fault"), "{}", m.text);
}

#[test]
fn a_trapping_cache_policy_is_answered_per_call_and_never_quarantined() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = static_root(tmp.path());
    let dir = plugin_dir(tmp.path(), "t", "test-cache-fault");
    // `failures = 1`: a single limit hit would open the breaker; traps must not.
    let gale = Gale::start(&config(&format!(
        "{}{}",
        tenant_table("t", &dir, 1),
        server("t", &static_location(&root, "trap", "fail-open"))
    )));
    let (addr, admin) = (gale.addrs()[0], admin_addr(&gale));
    for round in 0..5 {
        let trapped = get(addr, "/static/x/spin.css");
        assert_eq!(trapped.status, 200, "fail-open: the file is sent\n{trapped}");
        assert_eq!(trapped.body, b"p { margin: 0 }\n", "{trapped}");
        assert!(trapped.header("cache-control").is_none(), "without caching headers: {trapped}");
        let fine = get(addr, "/static/app.css");
        assert_eq!(fine.header_all("cache-control"), vec![FIXTURE_CACHE_CONTROL], "round {round}: {fine}");
    }
    wait_for_log(&gale, "plugin failed; no caching headers sent (fail-open)");
    assert!(gale.stderr().contains("test-cache-fault: trapping on purpose"), "{}", gale.stderr());
    assert_eq!(breaker(admin, "t", "test-cache-fault"), "closed");
    let m = admin::metrics(admin);
    assert_eq!(calls(&m, "t", "test-cache-fault", "decide", "trap"), 5.0, "{}", m.text);
    assert_eq!(calls(&m, "t", "test-cache-fault", "decide", "ok"), 5.0, "{}", m.text);
    assert_eq!(calls(&m, "t", "test-cache-fault", "decide", "quarantined"), 0.0, "{}", m.text);
    assert!(!quarantined(&m, "t", "test-cache-fault"), "{}", m.text);
}

/// An upload location at `/upload` storing into `store`, passing the form to the upstream
/// `app`, with test-fields-fault attached (`mode`, `on_error`), misbehaving on field names that
/// start with `bad`.
fn upload_location(store: &Path, mode: &str, on_error: &str) -> String {
    format!(
        "path = \"/upload\"\nupload = {{ store = {store}, pass = \"app\" }}\n\
         plugins = [{{ name = \"test-fields-fault\", on_error = \"{on_error}\", \
         config = {{ mode = \"{mode}\", name_prefix = \"bad\" }} }}]",
        store = toml_str(store.to_str().expect("UTF-8 store")),
    )
}

/// POSTs `form` to `/upload` on the listener `addr`.
fn upload(addr: SocketAddr, form: Vec<u8>) -> Response {
    gale_tests::http::send(addr, &Request::post("/upload", form).header("Content-Type", &multipart::content_type()))
}

/// A form the fixture answers: a text field and a file.
fn clean_form() -> Vec<u8> {
    body(&[text("note", b"hello"), file("doc", "hello.txt", "text/plain", TXT)])
}

/// Two tenants' upload locations in front of one capture backend; each tenant its own store.
struct Uploads {
    gale: Gale,
    capture: Capture,
    _tmp: TempDir,
    _stores: [TempDir; 2],
}

impl Uploads {
    fn start(tenants: &[(&str, u32, &str, &str)]) -> Uploads {
        let tmp = tempfile::tempdir().expect("tempdir");
        let capture = Capture::start(200);
        let stores = [private_store(), private_store()];
        let mut rest = String::new();
        for (name, failures, _, _) in tenants {
            rest.push_str(&tenant_table(name, &plugin_dir(tmp.path(), name, "test-fields-fault"), *failures));
        }
        rest.push_str(&format!("[upstream.app]\nservers = [\"{}\"]\n\n", capture.addr()));
        for ((name, _, mode, on_error), (_, store)) in tenants.iter().zip(&stores) {
            rest.push_str(&server(name, &upload_location(store, mode, on_error)));
        }
        let gale = Gale::start(&config(&rest));
        Uploads { gale, capture, _tmp: tmp, _stores: stores.map(|(dir, _)| dir) }
    }
}

#[test]
fn a_spinning_upload_fields_plugin_is_quarantined_in_its_tenant_only() {
    let site = Uploads::start(&[("a", 2, "spin", "fail-closed"), ("b", 2, "spin", "fail-closed")]);
    let (in_a, in_b) = (site.gale.addrs()[0], site.gale.addrs()[1]);
    let admin = admin_addr(&site.gale);

    let first = upload(in_a, clean_form());
    assert_eq!(first.status, 200, "{first}\ngale stderr:\n{}", site.gale.stderr());
    site.capture.clear();
    for _ in 0..2 {
        let spun = upload(in_a, body(&[text("bad_note", b"x"), file("doc", "a.txt", "text/plain", TXT)]));
        assert_eq!(spun.status, 503, "a spin cut off at the deadline, fail-closed:\n{spun}");
    }
    // text-field: one answered call (the first form) and two spins.
    wait_for_log(&site.gale, "plugin quarantined: 2 of its 3 text-field calls");
    let refused = upload(in_a, clean_form());
    assert_eq!(refused.status, 503, "quarantined in tenant a:\n{refused}");
    assert!(site.capture.requests().is_empty(), "tenant a's refused uploads never reached the backend");

    // Tenant b's uploads keep working, with the plugin's fields.
    for _ in 0..2 {
        let served = upload(in_b, clean_form());
        assert_eq!(served.status, 200, "{served}");
        let form = site.capture.only().form();
        site.capture.clear();
        let names: Vec<&[u8]> = form.iter().map(|(n, _)| n.as_slice()).collect();
        assert_eq!(names, [&b"note"[..], b"doc_fixture"], "the fixture's fields");
        assert_eq!(form[1].1, b"test-fields-fault");
    }
    assert_eq!(breaker(admin, "a", "test-fields-fault"), "open");
    assert_eq!(breaker(admin, "b", "test-fields-fault"), "closed");

    let m = admin::metrics(admin);
    let plugin = "test-fields-fault";
    assert_eq!(calls(&m, "a", plugin, "text-field", "timeout"), 2.0, "{}", m.text);
    assert_eq!(calls(&m, "a", plugin, "text-field", "ok"), 1.0, "{}", m.text);
    assert_eq!(calls(&m, "a", plugin, "text-field", "quarantined"), 1.0, "{}", m.text);
    let a_labels = [("tenant", "a"), ("plugin", plugin), ("hook", "text-field")];
    assert_eq!(m.value("gale_plugin_quarantines_total", &a_labels), 1.0, "{}", m.text);
    assert!(quarantined(&m, "a", plugin), "{}", m.text);
    assert_eq!(calls(&m, "b", plugin, "text-field", "ok"), 2.0, "{}", m.text);
    assert_eq!(calls(&m, "b", plugin, "file-fields", "ok"), 2.0, "{}", m.text);
    assert_eq!(calls(&m, "b", plugin, "needs-sha256", "ok"), 1.0, "asked once, at load: {}", m.text);
    assert!(!quarantined(&m, "b", plugin), "{}", m.text);
}

#[test]
fn a_trapping_upload_fields_plugin_is_answered_per_call_and_never_quarantined() {
    // `failures = 1`: a single limit hit would open the breaker; traps must not.
    let site = Uploads::start(&[("t", 1, "trap", "fail-open")]);
    let (addr, admin) = (site.gale.addrs()[0], admin_addr(&site.gale));
    for round in 0..5 {
        let form = body(&[text("somearg", b"s"), file("bad_doc", "hello.txt", "text/plain", TXT)]);
        let response = upload(addr, form);
        assert_eq!(response.status, 200, "round {round}: fail-open\n{response}\ngale stderr:\n{}", site.gale.stderr());
        let form = site.capture.only().form();
        site.capture.clear();
        let names: Vec<String> = form.iter().map(|(n, _)| String::from_utf8_lossy(n).into_owned()).collect();
        // The text field was the plugin's to pass; the trapped file's fields are the built-in field policy's.
        assert_eq!(names[0], "somearg", "round {round}: {names:?}");
        assert!(
            names.contains(&"bad_doc.md5".to_owned()),
            "round {round}: the built-in field policy's fields: {names:?}"
        );
        assert!(!names.iter().any(|n| n.ends_with("_fixture")), "round {round}: {names:?}");
    }
    wait_for_log(&site.gale, "plugin failed; the built-in field policy decided instead (fail-open)");
    assert_eq!(breaker(admin, "t", "test-fields-fault"), "closed");
    let m = admin::metrics(admin);
    assert_eq!(calls(&m, "t", "test-fields-fault", "file-fields", "trap"), 5.0, "{}", m.text);
    assert_eq!(calls(&m, "t", "test-fields-fault", "text-field", "ok"), 5.0, "{}", m.text);
    assert_eq!(calls(&m, "t", "test-fields-fault", "file-fields", "quarantined"), 0.0, "{}", m.text);
    assert!(!quarantined(&m, "t", "test-fields-fault"), "{}", m.text);
}
