//! Path spellings: locations, static files and plugins see one normalised path.
//!
//! A client can write one path many ways. Issue 19, finding 2: gale chose the location on the raw
//! bytes, so `/%6coop/x`, `//loop/x`, `/./loop/x` and `/x/../loop/x` went to `location /` and
//! past the `/loop/` location's deny policy, to a backend that may well decode and resolve them.
//! nginx routes all four to `/loop/`. Each table below gives a spelling and the one answer it must
//! get (docs/config.md, "Path normalisation"): the `/loop/` location's 403, a 400 for a path with
//! no normal form, or, for a spelling that really names another path, `location /` with the
//! client's bytes reaching the backend unchanged.

use std::path::PathBuf;

use gale_tests::http::Request;
use gale_tests::plugins;
use gale_tests::{ConfigBuilder, Gale, Tornado, Whoami};
use tempfile::TempDir;

/// A header policy that answers every request of its location 403.
const DENY_ALL: &str = r#"[{ name = "header-policy", config = { deny = [{ path_prefix = "/", status = 403 }] } }]"#;

/// The policy on `location /`: shows the backend the path the plugin was given.
const SHOW_URI: &str = r#"[{ name = "header-policy", config = { request = { set = { "x-plugin-uri" = "$uri", "x-plugin-request-uri" = "$request_uri" } } } }]"#;

/// What a spelling must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// The `/loop/` location's deny policy: 403, nothing reaches the backend.
    Denied,
    /// No normal form: 400, nothing reaches the backend.
    BadRequest,
    /// Another path: `location /`, which proxies the client's bytes to Tornado's `/whoami`.
    Backend,
}

/// Tornado behind `location /` (with [`SHOW_URI`]) and a `/loop/` location with [`DENY_ALL`].
fn loop_site(configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> (Tornado, Gale) {
    let tornado = Tornado::spawn("paths");
    let builder = plugins::enable(ConfigBuilder::new([tornado.addr()]), &plugins::built_dir()).location(&format!(
        "path = \"/loop/\"\nproxy = {{ pass = \"{}\" }}\nplugins = {DENY_ALL}",
        gale_tests::config::POOL
    ));
    let text = plugins::on_root(&configure(builder).render(), SHOW_URI);
    (tornado, Gale::start(&text))
}

fn total_hits(tornado: &Tornado) -> u64 {
    tornado.stats().hits.values().sum()
}

#[track_caller]
fn check_table(tornado: &Tornado, gale: &Gale, table: &[(&str, Answer)]) {
    for &(target, answer) in table {
        let before = total_hits(tornado);
        let response = gale.send(&Request::get(target));
        let hits = total_hits(tornado) - before;
        match answer {
            Answer::Denied | Answer::BadRequest => {
                let status = if answer == Answer::Denied { 403 } else { 400 };
                assert_eq!(response.status, status, "{target}: expected {answer:?}:\n{response}");
                assert_eq!(hits, 0, "{target} reached the backend: {:?}", tornado.stats().hits);
            }
            Answer::Backend => {
                assert_eq!(response.status, 200, "{target}: expected {answer:?}:\n{response}");
                let who: Whoami = response.json();
                assert_eq!(who.uri, target, "the backend must receive the client's bytes");
                assert_eq!(hits, 1, "{target}");
            }
        }
    }
}

/// The spellings of issue 19 and their relatives, with merge_slashes on (the default).
#[test]
fn every_spelling_of_a_denied_location_is_denied_or_refused() {
    use Answer::*;
    let (tornado, gale) = loop_site(|c| c);
    let table = [
        // Controls.
        ("/loop/whoami", Denied),
        ("/whoami", Backend),
        // The four of the issue.
        ("/%6coop/whoami", Denied),
        ("//loop/whoami", Denied),
        ("/./loop/whoami", Denied),
        ("/x/../loop/whoami", Denied),
        // Their relatives: case of the hex digits, several escapes, dot segments written as
        // escapes, repeated slashes anywhere, a trailing `/.`.
        ("/%6Coop/whoami", Denied),
        ("/%6C%6F%6F%70/%77hoami", Denied),
        ("///loop///whoami", Denied),
        ("/loop//whoami", Denied),
        ("/%2e/loop/whoami", Denied),
        ("/x/%2e%2e/loop/whoami", Denied),
        ("/x/%2E%2E/loop/whoami", Denied),
        ("/x/.%2e/loop/whoami", Denied),
        ("/x/y/../../loop/whoami", Denied),
        ("/loop/x/%2e%2e/whoami", Denied),
        ("/loop/.", Denied),
        ("/loop/", Denied),
        ("/loop/%2e", Denied),
        ("/loop//", Denied),
        // No normal form: climbing above `/`, an encoded `/` or `\`, NUL, a broken escape.
        ("/../loop/whoami", BadRequest),
        ("/%2e%2e/loop/whoami", BadRequest),
        ("/loop/../../whoami", BadRequest),
        ("/loop/%2e%2e/%2e%2e/whoami", BadRequest),
        ("/loop%2Fwhoami", BadRequest),
        ("/loop%2fwhoami", BadRequest),
        ("/%6coop%2Fwhoami", BadRequest),
        ("/x/..%2Floop/whoami", BadRequest),
        ("/loop%5Cwhoami", BadRequest),
        ("/loop%5cwhoami", BadRequest),
        ("/loop\\whoami", BadRequest),
        ("/loop%00/whoami", BadRequest),
        ("/%00/loop/whoami", BadRequest),
        ("/loop/%zz/whoami", BadRequest),
        ("/%6/loop/whoami", BadRequest),
        ("/loop/whoami%4", BadRequest),
        ("/loop/whoami%", BadRequest),
        // Other paths, as nginx has them: `..` really leaves /loop/; locations are
        // case-sensitive (`%4C` is `L`); `/loop` is not under the prefix `/loop/`.
        ("/loop/%2e%2e/whoami", Backend),
        ("/loop/../whoami", Backend),
        ("/LOOP/whoami", Backend),
        ("/%4Coop/whoami", Backend),
        ("/loopy/whoami", Backend),
    ];
    check_table(&tornado, &gale, &table);

    // `/loop` (no slash) is `location /` too: Tornado has no handler for it and answers its own
    // 404 page, not gale's 403.
    let response = gale.get("/loop");
    assert_eq!(response.status, 404, "{response}");
    assert!(response.text().contains("404: Not Found"), "Tornado's 404 page expected:\n{response}");
}

/// `merge_slashes = false` (nginx's `merge_slashes off`): `//loop/` is a path of its own, which
/// no location but `/` matches; everything else still normalises.
#[test]
fn without_merge_slashes_a_double_slash_is_another_path() {
    use Answer::*;
    let (tornado, gale) = loop_site(|c| c.http("merge_slashes", false));
    let table = [
        ("/loop/whoami", Denied),
        ("/%6coop/whoami", Denied),
        ("/./loop/whoami", Denied),
        ("/x/../loop/whoami", Denied),
        ("/loop//whoami", Denied),
        ("//loop/whoami", Backend),
        ("/../loop/whoami", BadRequest),
    ];
    check_table(&tornado, &gale, &table);
}

/// The backend gets the client's bytes; the plugins get the normal form (`$uri`), and so does
/// `$request_uri`, with the query as sent.
#[test]
fn backend_gets_the_clients_bytes_and_plugins_the_normal_form() {
    let (_tornado, gale) = loop_site(|c| c);
    let target = "//%61//./b/../whoami?q=%2F..%2F&r";
    let who: Whoami = gale.get(target).expect_status(200).json();
    assert_eq!(who.uri, target, "the backend must receive the client's bytes");
    assert_eq!(who.header("x-plugin-uri"), Some("/a/whoami"), "{who:#?}");
    assert_eq!(who.header("x-plugin-request-uri"), Some("/a/whoami?q=%2F..%2F&r"), "{who:#?}");
    // A path already in normal form is handed over as it is.
    let who: Whoami = gale.get("/a/whoami?x=%41").expect_status(200).json();
    assert_eq!(who.header("x-plugin-uri"), Some("/a/whoami"), "{who:#?}");
    assert_eq!(who.uri, "/a/whoami?x=%41");
}

/// The secret outside the static root.
const SECRET: &[u8] = b"SECRET-9b2e: outside the static root\n";
/// A file of the `/private/` location, which a deny policy guards.
const PRIVATE: &[u8] = b"PRIVATE-41c7: only through /private/\n";

/// ```text
/// <base>/secret.txt                    SECRET
/// <base>/www/static/app.css            served by location /static/ (root = <base>/www)
/// <base>/www/private/key.txt           PRIVATE; location /private/ (root = <base>/www) denies all
/// ```
struct StaticSite {
    gale: Gale,
    tornado: Tornado,
    css: Vec<u8>,
    _dir: TempDir,
}

impl StaticSite {
    fn new() -> StaticSite {
        let dir = tempfile::tempdir().expect("tempdir");
        let base: PathBuf = dir.path().canonicalize().expect("canonical base");
        let www = base.join("www");
        std::fs::create_dir_all(www.join("static/sub")).expect("mkdir static");
        std::fs::create_dir_all(www.join("private")).expect("mkdir private");
        let css = b"body { color: #123456 }\n".to_vec();
        std::fs::write(www.join("static/app.css"), &css).expect("app.css");
        std::fs::write(www.join("private/key.txt"), PRIVATE).expect("key.txt");
        std::fs::write(base.join("secret.txt"), SECRET).expect("secret");
        let root = serde_json::to_string(www.to_str().expect("UTF-8")).expect("json");
        let tornado = Tornado::spawn("paths-static");
        let gale = plugins::enable(ConfigBuilder::new([tornado.addr()]), &plugins::built_dir())
            .location(&format!("path = \"/static/\"\nstatic = {{ root = {root} }}"))
            .location(&format!("path = \"/private/\"\nstatic = {{ root = {root} }}\nplugins = {DENY_ALL}"))
            .start();
        StaticSite { gale, tornado, css, _dir: dir }
    }
}

#[test]
fn static_files_are_served_by_the_normal_form_of_their_path() {
    let site = StaticSite::new();
    let served = [
        "/static/app.css",
        "/static/%61pp.css",
        "/static/%61%70%70%2E%63%73%73",
        "/%73tatic/app.css",
        "/%73%74%61%74%69%63/app.css",
        "//static/app.css",
        "/static//app.css",
        "/./static/app.css",
        "/static/./app.css",
        "/x/../static/app.css",
        "/static/sub/../app.css",
        "/static/sub/%2e%2e/app.css",
        "/private/../static/app.css",
    ];
    for target in served {
        let response = site.gale.send(&Request::get(target));
        assert_eq!(response.status, 200, "{target}:\n{response}");
        assert_eq!(response.body, site.css, "{target}");
    }
    // A directory without its slash is redirected by its normal form, as nginx does with `$uri`.
    let response = site.gale.get("/%73tatic/./sub");
    assert_eq!(response.status, 301, "{response}");
    assert_eq!(response.header("location"), Some("/static/sub/"), "{response}");

    // Out of the root: no normal form, 400. Into another location: that location's answer.
    let refused = [
        ("/static/../../secret.txt", 400),
        ("/static/%2e%2e/%2e%2e/secret.txt", 400),
        ("/static/.%2e/.%2E/secret.txt", 400),
        ("/static/sub/../../../secret.txt", 400),
        ("/static/..%2f..%2fsecret.txt", 400),
        ("/static/..%2F..%2Fsecret.txt", 400),
        ("/static/..%5c..%5csecret.txt", 400),
        ("/static/app.css%00", 400),
        ("/static/%00/../app.css", 400),
        ("/static/%zz", 400),
        ("/static/../private/key.txt", 403),
        ("/static/%2e%2e/private/key.txt", 403),
        ("//private/key.txt", 403),
        ("/%70rivate/key.txt", 403),
        ("/static/sub/../../private/./key.txt", 403),
    ];
    for (target, status) in refused {
        let response = site.gale.send(&Request::get(target));
        assert_eq!(response.status, status, "{target}:\n{response}");
        let leaked = |needle: &[u8]| response.body.windows(needle.len()).any(|w| w == needle);
        assert!(!leaked(SECRET) && !leaked(PRIVATE), "{target} leaked a file:\n{response}");
    }
    assert_eq!(total_hits(&site.tornado), 0, "no static request reached the backend");
}
