//! `serve` against real temporary directories: mapping, safety, validators, ranges, methods.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use http::{Method, Request, StatusCode, header, request};
use http_body_util::BodyExt;

use super::*;

const SECRET: &str = "TOP-SECRET-CONTENT";

/// tmp/www (the root) and tmp/secret.txt (outside it), plus links from inside to outside.
struct Site {
    _tmp: tempfile::TempDir,
    www: PathBuf,
}

fn site() -> Site {
    let tmp = tempfile::tempdir().expect("tempdir");
    let www = tmp.path().join("www");
    let files = [
        ("static/app.css", "body { color: red }\n".to_owned()),
        ("static/app.js", "console.log(1)\n".to_owned()),
        ("static/logo.png", "\u{89}PNG fake".to_owned()),
        ("static/data.unknownext", "?".to_owned()),
        ("static/sub/index.html", "<h1>index</h1>".to_owned()),
        ("static/noindex/file.txt", "x".to_owned()),
        ("static/digits.txt", "0123456789".to_owned()),
        ("static/empty.txt", String::new()),
        ("static/%2e%2e", "literal percent name".to_owned()),
        ("index.html", "<h1>home</h1>".to_owned()),
    ];
    for (rel, content) in files {
        let path = www.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }
    std::fs::write(tmp.path().join("secret.txt"), SECRET).expect("write secret");
    std::fs::create_dir_all(tmp.path().join("outside_dir")).expect("mkdir");
    std::fs::write(tmp.path().join("outside_dir/secret.txt"), SECRET).expect("write secret");
    let s = www.join("static");
    symlink("../../secret.txt", s.join("escape_rel")).expect("symlink");
    symlink(tmp.path().join("secret.txt"), s.join("escape_abs")).expect("symlink");
    symlink(tmp.path().join("outside_dir"), s.join("escape_dir")).expect("symlink");
    symlink("../../missing.txt", s.join("escape_dangling")).expect("symlink");
    symlink("app.css", s.join("inside_link.css")).expect("symlink");
    Site { _tmp: tmp, www }
}

fn parts(method: Method, uri: &str, headers: &[(&str, &str)]) -> request::Parts {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).expect("request").into_parts().0
}

/// Status, headers and the whole body of one request (or the error's status).
struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Vec<u8>,
    meta: Option<FileMeta>,
}

impl Answer {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers.get(&name).map_or("", |v| v.to_str().expect("ascii"))
    }
}

async fn ask(cfg: &StaticConfig, prefix: &str, req: &request::Parts) -> Answer {
    match serve(cfg, prefix, req.uri.path(), req).await {
        Ok(served) => {
            let (head, body) = served.response.into_parts();
            let body = body.collect().await.expect("body").to_bytes().to_vec();
            Answer { status: head.status, headers: head.headers, body, meta: served.meta }
        }
        Err(e) => Answer { status: e.status(), headers: http::HeaderMap::new(), body: Vec::new(), meta: None },
    }
}

async fn get(cfg: &StaticConfig, uri: &str) -> Answer {
    ask(cfg, "/static/", &parts(Method::GET, uri, &[])).await
}

fn root(site: &Site) -> StaticConfig {
    StaticConfig::root(&site.www).expect("config")
}

#[tokio::test]
async fn root_appends_the_whole_path() {
    let site = site();
    let a = get(&root(&site), "/static/app.css").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, b"body { color: red }\n");
    assert_eq!(a.header(header::CONTENT_TYPE), "text/css");
    assert_eq!(a.header(header::CONTENT_LENGTH), "20");
    assert_eq!(a.header(header::ACCEPT_RANGES), "bytes");
    assert!(a.header(header::ETAG).starts_with('"'));
    assert!(a.header(header::LAST_MODIFIED).ends_with(" GMT"));
}

#[tokio::test]
async fn alias_replaces_the_location_prefix() {
    let site = site();
    let cfg = StaticConfig::alias(site.www.join("static")).expect("config");
    let a = get(&cfg, "/static/app.css").await;
    assert_eq!((a.status, a.body.as_slice()), (StatusCode::OK, &b"body { color: red }\n"[..]));
    let a = ask(&cfg, "/assets", &parts(Method::GET, "/assets/sub/", &[])).await;
    assert_eq!((a.status, a.body.as_slice()), (StatusCode::OK, &b"<h1>index</h1>"[..]));
    // Under root, the same URI looks for www/static/static/app.css.
    let cfg = StaticConfig::root(site.www.join("static")).expect("config");
    assert_eq!(get(&cfg, "/static/app.css").await.status, StatusCode::NOT_FOUND);
    // The alias prefix must end on a segment boundary.
    let cfg = StaticConfig::alias(site.www.join("static")).expect("config");
    let a = ask(&cfg, "/static", &parts(Method::GET, "/static../secret.txt", &[])).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn alias_to_a_single_file() {
    let site = site();
    let cfg = StaticConfig::alias(site.www.join("static/logo.png")).expect("config");
    let a = ask(&cfg, "/favicon.png", &parts(Method::GET, "/favicon.png", &[])).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header(header::CONTENT_TYPE), "image/png");
}

#[tokio::test]
async fn content_types() {
    let site = site();
    let cfg = root(&site);
    let ty = |a: Answer| a.header(header::CONTENT_TYPE).to_owned();
    assert_eq!(ty(get(&cfg, "/static/app.js").await), "application/javascript");
    assert_eq!(ty(get(&cfg, "/static/logo.png").await), "image/png");
    assert_eq!(ty(get(&cfg, "/static/data.unknownext").await), "application/octet-stream");
    let custom = StaticConfig::from_options(StaticOptions {
        root: Some(site.www.clone()),
        default_type: Some("text/plain".into()),
        ..StaticOptions::default()
    })
    .expect("config");
    assert_eq!(ty(get(&custom, "/static/data.unknownext").await), "text/plain");
}

/// Every escape attempt, under every symlink policy that promises containment: never a 200, never
/// the secret, and the documented status.
#[tokio::test]
async fn traversal_table_never_serves_the_secret() {
    let site = site();
    let table: &[(&str, u16)] = &[
        ("/static/../../secret.txt", 404),
        ("/static/%2e%2e/%2e%2e/secret.txt", 404),
        ("/static/%2E%2E/%2E%2E/secret.txt", 404),
        ("/static/..%2f..%2fsecret.txt", 404),
        ("/static/%2e%2e%2f%2e%2e%2fsecret.txt", 404),
        ("/static/..%5c..%5csecret.txt", 404),
        ("/static/..\\..\\secret.txt", 404),
        ("/static/%252e%252e/%252e%252e/secret.txt", 404),
        ("/static/secret.txt%00.css", 400),
        ("/static/%00/../../secret.txt", 400),
        ("/static/%zz/../../secret.txt", 400),
        ("/c:/secret.txt", 404),
        ("/static/c:/secret.txt", 404),
        ("/static/escape_rel", 404),
        ("/static/escape_abs", 404),
        ("/static/escape_dir/secret.txt", 404),
        ("/static/escape_dangling", 404),
        ("/static/./escape_rel", 404),
        ("//static//escape_abs", 404),
    ];
    for policy in [FollowSymlinks::InsideRoot, FollowSymlinks::Never] {
        let cfgs = [
            ("/static/", root(&site).with_follow_symlinks(policy)),
            ("/static/", StaticConfig::alias(site.www.join("static")).expect("config").with_follow_symlinks(policy)),
        ];
        for (prefix, cfg) in &cfgs {
            for (uri, status) in table {
                for method in [Method::GET, Method::HEAD] {
                    let a = ask(cfg, prefix, &parts(method.clone(), uri, &[])).await;
                    assert_eq!(a.status.as_u16(), *status, "{policy:?} {method} {uri}");
                    let body = String::from_utf8_lossy(&a.body);
                    assert!(!body.contains(SECRET), "{policy:?} {uri} leaked the secret");
                }
            }
        }
    }
}

#[tokio::test]
async fn symlinks_by_policy() {
    let site = site();
    let inside = get(&root(&site), "/static/inside_link.css").await;
    assert_eq!(inside.status, StatusCode::OK);
    assert_eq!(inside.header(header::CONTENT_TYPE), "text/css");
    let never = root(&site).with_follow_symlinks(FollowSymlinks::Never);
    assert_eq!(get(&never, "/static/inside_link.css").await.status, StatusCode::NOT_FOUND);
    // `always` is the operator saying the links are trusted: it does follow them out.
    let always = root(&site).with_follow_symlinks(FollowSymlinks::Always);
    assert_eq!(get(&always, "/static/escape_rel").await.body, SECRET.as_bytes());
}

#[tokio::test]
async fn double_encoding_names_a_literal_file() {
    let site = site();
    let a = get(&root(&site), "/static/%252e%252e").await;
    assert_eq!((a.status, a.body.as_slice()), (StatusCode::OK, &b"literal percent name"[..]));
}

#[tokio::test]
async fn directories() {
    let site = site();
    let cfg = root(&site);
    let a = get(&cfg, "/static/sub?x=1").await;
    assert_eq!(a.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(a.header(header::LOCATION), "/static/sub/?x=1");
    assert!(a.meta.is_none());
    let a = get(&cfg, "/static/sub/").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header(header::CONTENT_TYPE), "text/html");
    assert_eq!(a.meta.expect("meta").path, "/static/sub/index.html");
    assert_eq!(get(&cfg, "/static/noindex/").await.status, StatusCode::FORBIDDEN);
    assert_eq!(get(&cfg, "/").await.body, b"<h1>home</h1>");
    assert_eq!(get(&cfg, "/static/missing/").await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&cfg, "/static/app.css/").await.status, StatusCode::NOT_FOUND);
    let other_index = root(&site).with_index(["file.txt"]).expect("index");
    assert_eq!(get(&other_index, "/static/noindex/").await.body, b"x");
}

#[tokio::test]
async fn missing_and_methods() {
    let site = site();
    let cfg = root(&site);
    assert_eq!(get(&cfg, "/static/nope.css").await.status, StatusCode::NOT_FOUND);
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
        let err =
            serve(&cfg, "/static/", "/static/app.css", &parts(method, "/static/app.css", &[])).await.expect_err("405");
        assert_eq!(err.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(matches!(err, StaticError::MethodNotAllowed));
    }
    assert_eq!(ALLOWED_METHODS, "GET, HEAD");
}

#[tokio::test]
async fn head_has_the_headers_and_no_body() {
    let site = site();
    let cfg = root(&site);
    let g = get(&cfg, "/static/app.css").await;
    let h = ask(&cfg, "/static/", &parts(Method::HEAD, "/static/app.css", &[])).await;
    assert_eq!(h.status, StatusCode::OK);
    assert!(h.body.is_empty());
    for name in [header::CONTENT_TYPE, header::CONTENT_LENGTH, header::ETAG, header::LAST_MODIFIED] {
        assert_eq!(h.header(name.clone()), g.header(name.clone()), "{name}");
    }
}

#[tokio::test]
async fn not_modified() {
    let site = site();
    let cfg = root(&site);
    let first = get(&cfg, "/static/app.css").await;
    let etag = first.header(header::ETAG).to_owned();
    let lm = first.header(header::LAST_MODIFIED).to_owned();
    let meta = first.meta.expect("meta");
    let secs = meta.mtime.duration_since(std::time::UNIX_EPOCH).expect("after epoch").as_secs();
    assert_eq!(etag, format!("\"{secs:x}-{:x}\"", meta.size));

    let ask_with = |h: Vec<(&'static str, String)>| {
        let cfg = cfg.clone();
        async move {
            let headers: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
            ask(&cfg, "/static/", &parts(Method::GET, "/static/app.css", &headers)).await
        }
    };
    let a = ask_with(vec![("if-none-match", etag.clone())]).await;
    assert_eq!(a.status, StatusCode::NOT_MODIFIED);
    assert!(a.body.is_empty());
    assert_eq!(a.header(header::ETAG), etag);
    assert!(a.meta.is_some(), "304 still carries meta for the cache policy");
    let a = ask_with(vec![("if-modified-since", lm.clone())]).await;
    assert_eq!(a.status, StatusCode::NOT_MODIFIED);
    let a = ask_with(vec![("if-none-match", "\"stale\"".into()), ("if-modified-since", lm)]).await;
    assert_eq!(a.status, StatusCode::OK, "If-None-Match wins");
}

#[tokio::test]
async fn ranges() {
    let site = site();
    let cfg = root(&site);
    let range = |r: &'static str| {
        let cfg = cfg.clone();
        async move { ask(&cfg, "/static/", &parts(Method::GET, "/static/digits.txt", &[("range", r)])).await }
    };
    let a = range("bytes=2-4").await;
    assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(a.body, b"234");
    assert_eq!(a.header(header::CONTENT_RANGE), "bytes 2-4/10");
    assert_eq!(a.header(header::CONTENT_LENGTH), "3");
    let a = range("bytes=-3").await;
    assert_eq!((a.body.as_slice(), a.header(header::CONTENT_RANGE)), (&b"789"[..], "bytes 7-9/10"));
    let a = range("bytes=10-").await;
    assert_eq!(a.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(a.header(header::CONTENT_RANGE), "bytes */10");
    assert!(a.body.is_empty());
    let a = range("bytes=0-1,4-5").await;
    assert_eq!((a.status, a.body.as_slice()), (StatusCode::OK, &b"0123456789"[..]));
    let empty = ask(&cfg, "/static/", &parts(Method::GET, "/static/empty.txt", &[("range", "bytes=0-")])).await;
    assert_eq!(empty.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(empty.header(header::CONTENT_RANGE), "bytes */0");
}

#[tokio::test]
async fn large_files_stream_whole_and_in_ranges() {
    let site = site();
    let data: Vec<u8> = (0..CHUNK_SIZE * 3 + 17).map(|i| (i * 7 % 256) as u8).collect();
    write(&site.www, "static/big.bin", &data);
    let cfg = root(&site);
    let a = get(&cfg, "/static/big.bin").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header(header::CONTENT_LENGTH), data.len().to_string());
    assert!(a.body == data);
    let start = CHUNK_SIZE - 5;
    let end = CHUNK_SIZE * 2 + 100;
    let r = format!("bytes={start}-{end}");
    let a = ask(&cfg, "/static/", &parts(Method::GET, "/static/big.bin", &[("range", &r)])).await;
    assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
    assert!(a.body == data[start..=end]);
}

fn write(dir: &Path, rel: &str, data: &[u8]) {
    std::fs::write(dir.join(rel), data).expect("write");
}

#[tokio::test]
async fn query_string_expires_max_through_the_meta_seam() {
    let site = site();
    let cfg = root(&site);
    for (uri, expected) in [("/static/app.css?v=3", true), ("/static/app.css", false), ("/static/app.css?", false)] {
        let req = parts(Method::GET, uri, &[]);
        let served = serve(&cfg, "/static/", req.uri.path(), &req).await.expect("served");
        let meta = served.meta.expect("meta");
        assert_eq!(meta.path, "/static/app.css");
        assert_eq!(meta.content_type, "text/css");
        assert_eq!(meta.size, 20);
        let mut response = served.response;
        query_string_expires_max(&meta).apply(response.status(), response.headers_mut());
        let h = response.headers();
        if expected {
            assert_eq!(h[header::EXPIRES], "Thu, 31 Dec 2037 23:55:55 GMT", "{uri}");
            assert_eq!(h[header::CACHE_CONTROL], "max-age=315360000", "{uri}");
        } else {
            assert!(!h.contains_key(header::EXPIRES), "{uri}");
            assert!(!h.contains_key(header::CACHE_CONTROL), "{uri}");
        }
    }
}

/// A configuration whose cache keeps entries for `valid`.
fn cached(site: &Site, valid: std::time::Duration) -> StaticConfig {
    root(site).with_open_file_cache(OpenFileCacheSettings { valid, ..OpenFileCacheSettings::DEFAULT })
}

const LONG: std::time::Duration = std::time::Duration::from_secs(60);
const SHORT: std::time::Duration = std::time::Duration::from_millis(50);

/// Sleeps past [`SHORT`].
async fn past_short_interval() {
    tokio::time::sleep(SHORT * 3).await;
}

#[tokio::test]
async fn within_the_interval_the_cache_answers_and_after_it_the_disk() {
    let site = site();
    // Rewritten in place, same size: only the cache can still give the old bytes.
    let long = cached(&site, LONG);
    let short = cached(&site, SHORT);
    for cfg in [&long, &short] {
        assert_eq!(get(cfg, "/static/digits.txt").await.body, b"0123456789");
        assert_eq!(get(cfg, "/static/sub/").await.body, b"<h1>index</h1>");
    }
    write(&site.www, "static/digits.txt", b"abcdefghij");
    write(&site.www, "static/sub/index.html", b"<h1>new index</h1>");
    assert_eq!(get(&long, "/static/digits.txt").await.body, b"0123456789");
    assert_eq!(get(&long, "/static/sub/").await.body, b"<h1>index</h1>");
    past_short_interval().await;
    let a = get(&short, "/static/digits.txt").await;
    assert_eq!((a.status, a.body.as_slice()), (StatusCode::OK, &b"abcdefghij"[..]));
    let a = get(&short, "/static/sub/").await;
    assert_eq!((a.body.as_slice(), a.header(header::CONTENT_LENGTH)), (&b"<h1>new index</h1>"[..], "18"));
    // Without a cache, every request sees the disk.
    let off = root(&site).with_open_file_cache(OpenFileCacheSettings::OFF);
    assert_eq!(get(&off, "/static/digits.txt").await.body, b"abcdefghij");
    write(&site.www, "static/digits.txt", b"0123456789");
    assert_eq!(get(&off, "/static/digits.txt").await.body, b"0123456789");
}

#[tokio::test]
async fn a_cached_entry_answers_each_request_for_itself() {
    let site = site();
    let cfg = cached(&site, LONG);
    let first = get(&cfg, "/static/digits.txt").await;
    let etag = first.header(header::ETAG).to_owned();
    // Same file, from the cache: the query, the method, the conditions and the range are this
    // request's.
    let a = get(&cfg, "/static/digits.txt?v=2").await;
    assert_eq!(a.meta.as_ref().and_then(|m| m.query.as_deref()), Some("v=2"));
    let a = ask(&cfg, "/static/", &parts(Method::HEAD, "/static/digits.txt", &[])).await;
    assert_eq!((a.status, a.body.len(), a.header(header::CONTENT_LENGTH)), (StatusCode::OK, 0, "10"));
    let a = ask(&cfg, "/static/", &parts(Method::GET, "/static/digits.txt", &[("if-none-match", &etag)])).await;
    assert_eq!((a.status, a.body.len()), (StatusCode::NOT_MODIFIED, 0));
    let a = ask(&cfg, "/static/", &parts(Method::GET, "/static/digits.txt", &[("range", "bytes=2-4")])).await;
    assert_eq!(
        (a.status, a.body.as_slice(), a.header(header::CONTENT_LENGTH)),
        (StatusCode::PARTIAL_CONTENT, &b"234"[..], "3")
    );
    // A directory without its slash is never cached as a file: still the redirect.
    for _ in 0..2 {
        let a = get(&cfg, "/static/sub").await;
        assert_eq!((a.status, a.header(header::LOCATION)), (StatusCode::MOVED_PERMANENTLY, "/static/sub/"));
        assert_eq!(get(&cfg, "/static/app.css/").await.status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn a_large_file_keeps_its_descriptor_until_the_interval_ends() {
    let site = site();
    let old = vec![b'o'; CHUNK_SIZE + 10];
    let new = vec![b'n'; CHUNK_SIZE * 2 + 3];
    write(&site.www, "static/big.bin", &old);
    let settings = OpenFileCacheSettings { max_content_size: 1024, ..OpenFileCacheSettings::DEFAULT };
    let long = root(&site).with_open_file_cache(OpenFileCacheSettings { valid: LONG, ..settings });
    let short = root(&site).with_open_file_cache(OpenFileCacheSettings { valid: SHORT, ..settings });
    for cfg in [&long, &short] {
        assert!(get(cfg, "/static/big.bin").await.body == old);
    }
    // Replaced by a rename, as a deploy does: the cached descriptor still reads the old file.
    write(&site.www, "static/big.new", &new);
    std::fs::rename(site.www.join("static/big.new"), site.www.join("static/big.bin")).expect("rename");
    let a = get(&long, "/static/big.bin").await;
    assert!(a.status == StatusCode::OK && a.body == old);
    past_short_interval().await;
    let a = get(&short, "/static/big.bin").await;
    assert_eq!(a.header(header::CONTENT_LENGTH), new.len().to_string());
    assert!(a.body == new);
    std::fs::remove_file(site.www.join("static/big.bin")).expect("remove");
    past_short_interval().await;
    assert_eq!(get(&short, "/static/big.bin").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_link_turned_outward_is_refused_once_the_interval_ends() {
    let site = site();
    let cfg = cached(&site, SHORT);
    assert_eq!(get(&cfg, "/static/inside_link.css").await.body, b"body { color: red }\n");
    let link = site.www.join("static/inside_link.css");
    std::fs::remove_file(&link).expect("unlink");
    symlink("../../secret.txt", &link).expect("symlink");
    past_short_interval().await;
    let a = get(&cfg, "/static/inside_link.css").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(!String::from_utf8_lossy(&a.body).contains(SECRET));
}

#[tokio::test]
async fn more_files_than_the_bound_are_all_served_right() {
    let site = site();
    let cfg = root(&site).with_open_file_cache(OpenFileCacheSettings { max: 2, ..OpenFileCacheSettings::DEFAULT });
    for _ in 0..3 {
        for (uri, body) in [
            ("/static/app.css", &b"body { color: red }\n"[..]),
            ("/static/app.js", b"console.log(1)\n"),
            ("/static/digits.txt", b"0123456789"),
        ] {
            let a = get(&cfg, uri).await;
            assert_eq!((a.status, a.body.as_slice()), (StatusCode::OK, body), "{uri}");
        }
    }
    assert!(cfg.cache().len() <= 2);
}
