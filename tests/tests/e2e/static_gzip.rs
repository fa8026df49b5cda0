//! Static files and gzip through the real binary (issue 4, item 5), with real Tornado behind
//! `location /`: the traversal table against a secret outside the root, validators (304), Range
//! (206/416), HEAD, and gzip on proxied and static responses with the reference configuration's settings
//! (docs/static-and-gzip.md).
//!
//! The reference configuration's `expires max` headers for a query string come from the `static-cache` plugin and
//! are tested in `plugin_worlds`; without a plugin (as here) gale sends no Expires/Cache-Control.

use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

use gale_tests::{ConfigBuilder, Conn, Gale, Request, Response, Tornado};
use tempfile::TempDir;

/// The secret outside the served directory; its bytes must never reach a client.
const SECRET: &[u8] = b"TOP-SECRET-5f1c0d: outside the static root\n";

/// The reference configuration's `gzip on; gzip_min_length 1000; gzip_proxied any; gzip_types ...`.
const SEED_GZIP: &str = "{ min_length = 1000, proxied = \"any\", types = [\"text/plain\", \"text/html\", \
    \"text/css\", \"text/xml\", \"application/x-javascript\", \"application/xml\", \"application/atom+xml\", \
    \"text/javascript\"] }";

/// A temporary tree, a Tornado backend and gale:
///
/// ```text
/// <base>/secret.txt                  SECRET
/// <base>/www/static/app.css          5000 bytes of CSS           location /static/ (root = <base>/www)
/// <base>/www/static/logo.png         5000 bytes, image/png
/// <base>/www/static/c:/secret.txt    SECRET (what a drive-letter path would reach)
/// <base>/www/static/escape           -> <base>/secret.txt        symlinks out of the root
/// <base>/www/static/outside          -> <base>
/// <base>/www/static/inside-link      -> <base>/www/static/app.css (stays inside: served)
/// <base>/www/pub/file.txt                                        location /files (alias = <base>/www/pub/)
/// ```
struct Fixture {
    gale: Gale,
    tornado: Tornado,
    base: PathBuf,
    _dir: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().canonicalize().expect("canonical base");
        let www = base.join("www");
        let stat = www.join("static");
        std::fs::create_dir_all(stat.join("c:")).expect("mkdir static");
        std::fs::create_dir_all(www.join("pub")).expect("mkdir pub");
        std::fs::write(base.join("secret.txt"), SECRET).expect("secret");
        std::fs::write(stat.join("c:").join("secret.txt"), SECRET).expect("drive secret");
        std::fs::write(stat.join("app.css"), css()).expect("app.css");
        std::fs::write(stat.join("logo.png"), png()).expect("logo.png");
        std::fs::write(www.join("pub").join("file.txt"), b"public file\n").expect("file.txt");
        symlink(base.join("secret.txt"), stat.join("escape")).expect("symlink escape");
        symlink(&base, stat.join("outside")).expect("symlink outside");
        symlink(stat.join("app.css"), stat.join("inside-link")).expect("symlink inside");

        let tornado = Tornado::spawn("static-gzip");
        let root = serde_json::to_string(www.to_str().expect("UTF-8")).expect("json");
        let alias = serde_json::to_string(&format!("{}/", www.join("pub").display())).expect("json");
        let gale = ConfigBuilder::new([tornado.addr()])
            .http("gzip", gale_tests::config::Raw(SEED_GZIP.to_owned()))
            .location(&format!("path = \"/static/\"\nstatic = {{ root = {root} }}"))
            .location(&format!("path = \"/files\"\nstatic = {{ alias = {alias} }}"))
            .start();
        Fixture { gale, tornado, base, _dir: dir }
    }

    fn file(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.base.join(rel)).expect("read fixture file")
    }

    fn get(&self, target: &str, headers: &[(&str, &str)]) -> Response {
        let mut request = Request::get(target);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        self.gale.send(&request)
    }
}

/// 5000 bytes of CSS.
fn css() -> Vec<u8> {
    let text: String = (0..400)
        .map(|i| format!(".rule-{i} {{ color: #{:06x}; margin: {}px; }}\n", i * 997 % 0xffffff, i % 40))
        .collect();
    text.as_bytes()[..5000].to_vec()
}

/// 5000 bytes starting with the PNG signature.
fn png() -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend((0..4992u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    v
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data).read_to_end(&mut out).expect("a valid gzip stream");
    out
}

fn varies_on_accept_encoding(response: &Response) -> bool {
    response
        .header_all("vary")
        .iter()
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("accept-encoding"))
}

#[test]
fn traversal_table_never_serves_the_secret() {
    let fx = Fixture::new();
    // Controls: the files inside are served, and a link that stays inside the root works.
    let css = fx.file("www/static/app.css");
    for target in ["/static/app.css", "/static/inside-link"] {
        let response = fx.get(target, &[]);
        assert_eq!(response.status, 200, "{target}:\n{response}");
        assert_eq!(response.body, css, "{target}");
    }
    assert_eq!(fx.get("/files/file.txt", &[]).body, b"public file\n");

    let table = [
        "/static/../../secret.txt",
        "/static/./../../secret.txt",
        "/static//../../secret.txt",
        "/static/sub/../../../secret.txt",
        "/static/%2e%2e/%2e%2e/secret.txt",
        "/static/%2E%2E/%2E%2E/secret.txt",
        "/static/.%2e/.%2e/secret.txt",
        "/static/%252e%252e/%252e%252e/secret.txt",
        "/static/..%2f..%2fsecret.txt",
        "/static/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/static/..%2F..%2Fsecret.txt",
        "/static/..%5c..%5csecret.txt",
        "/static/..%5C..%5Csecret.txt",
        "/static/..\\..\\secret.txt",
        "/static/../../secret.txt%00.css",
        "/static/%00/../../secret.txt",
        "/static/app.css%00",
        "/static/c:/secret.txt",
        "/static/C:/secret.txt",
        "/static/c%3a/secret.txt",
        "/static/c:%5csecret.txt",
        "/static/escape",
        "/static/outside/secret.txt",
        "/files/../../secret.txt",
        "/files/%2e%2e/%2e%2e/secret.txt",
    ];
    for target in table {
        let response = fx.get(target, &[]);
        assert!(
            response.status == 400 || response.status == 404,
            "{target} must be refused (400 for NUL or a bad escape, 404 otherwise), got:\n{response}"
        );
        assert!(!contains(&response.body, SECRET), "{target} served the secret:\n{response}");
    }
    assert_eq!(fx.tornado.stats().hits.len(), 0, "no static request reached the backend");

    // `/files..` is a name, so `/files../../secret.txt` is `/secret.txt` (docs/config.md, "Path
    // normalisation"), as in nginx: `location /`, which is Tornado's 404, never the alias's parent.
    let response = fx.get("/files../../secret.txt", &[]);
    assert_eq!(response.status, 404, "{response}");
    assert!(response.text().contains("404: Not Found"), "Tornado's 404 page expected:\n{response}");
    assert!(!contains(&response.body, SECRET));
}

#[test]
fn conditional_requests_give_304() {
    let fx = Fixture::new();
    let mut conn: Conn = fx.gale.conn();
    let full = conn.send(&Request::get("/static/app.css"));
    full.expect_status(200);
    assert_eq!(full.header("content-type"), Some("text/css"));
    let etag = full.header("etag").expect("ETag").to_owned();
    let last_modified = full.header("last-modified").expect("Last-Modified").to_owned();

    let weak = format!("W/{etag}");
    for (name, value) in
        [("If-None-Match", etag.as_str()), ("If-None-Match", weak.as_str()), ("If-Modified-Since", &last_modified)]
    {
        let response = conn.send(&Request::get("/static/app.css").header(name, value));
        assert_eq!(response.status, 304, "{name}: {value}:\n{response}");
        assert!(response.body.is_empty());
        assert_eq!(response.header("etag"), Some(etag.as_str()), "a 304 carries the ETag");
    }
    // Validators that do not match: the whole file (and the connection is still in sync).
    for (name, value) in [("If-None-Match", "\"not-it\""), ("If-Modified-Since", "Thu, 01 Jan 1970 00:00:00 GMT")] {
        let response = conn.send(&Request::get("/static/app.css").header(name, value));
        assert_eq!(response.status, 200, "{name}: {value}:\n{response}");
        assert_eq!(response.body, full.body);
    }
}

#[test]
fn range_gives_206_with_the_right_bytes_and_416_when_unsatisfiable() {
    let fx = Fixture::new();
    let css = fx.file("www/static/app.css");
    let cases: [(&str, usize, usize); 3] =
        [("bytes=10-19", 10, 20), ("bytes=-7", 4993, 5000), ("bytes=4990-", 4990, 5000)];
    for (range, start, end) in cases {
        // Accept-Encoding too: a 206 is never compressed.
        let response = fx.get("/static/app.css", &[("Range", range), ("Accept-Encoding", "gzip")]);
        assert_eq!(response.status, 206, "{range}:\n{response}");
        assert_eq!(response.header("content-range"), Some(format!("bytes {start}-{}/5000", end - 1).as_str()));
        assert_eq!(response.header("content-encoding"), None, "{range}");
        assert_eq!(response.body, &css[start..end], "{range}");
    }
    for range in ["bytes=5000-", "bytes=9000-9999"] {
        let response = fx.get("/static/app.css", &[("Range", range)]);
        assert_eq!(response.status, 416, "{range}:\n{response}");
        assert_eq!(response.header("content-range"), Some("bytes */5000"));
        assert!(response.body.is_empty());
    }
}

#[test]
fn head_has_no_body() {
    let fx = Fixture::new();
    let css = fx.file("www/static/app.css");
    let mut conn = fx.gale.conn();
    let head = conn.send(&Request::new("HEAD", "/static/app.css").header("Accept-Encoding", "gzip"));
    assert_eq!(head.status, 200, "{head}");
    // The headers its GET gets (RFC 9110 9.3.2): gzip, so no Content-Length.
    assert_eq!(head.header("content-length"), None, "{head}");
    assert_eq!(head.header("content-encoding"), Some("gzip"), "{head}");
    assert!(head.body.is_empty(), "{head}");
    // Had gale sent body bytes after the HEAD head, this response would not parse as itself.
    let next = conn.send(&Request::get("/static/app.css"));
    assert_eq!(next.status, 200, "{next}");
    assert_eq!(next.body, css);
}

#[test]
fn gzip_on_a_proxied_5000_byte_html_page() {
    let fx = Fixture::new();
    let original = gale_tests::http::get(fx.tornado.addr(), "/html?n=5000");
    assert_eq!(original.body.len(), 5000);
    assert!(original.header("content-type").is_some_and(|t| t.starts_with("text/html")));

    let gz = fx.get("/html?n=5000", &[("Accept-Encoding", "gzip")]);
    assert_eq!(gz.status, 200, "{gz}");
    assert_eq!(gz.header("content-encoding"), Some("gzip"), "{gz}");
    assert!(varies_on_accept_encoding(&gz), "Vary: Accept-Encoding:\n{gz}");
    assert!(gz.body.len() < 5000, "compressed");
    assert_eq!(gunzip(&gz.body), original.body, "the decompressed body is byte-identical");

    for headers in [&[][..], &[("Accept-Encoding", "gzip;q=0")][..], &[("Accept-Encoding", "br")][..]] {
        let plain = fx.get("/html?n=5000", headers);
        assert_eq!(plain.status, 200, "{plain}");
        assert_eq!(plain.header("content-encoding"), None, "{headers:?}:\n{plain}");
        assert!(varies_on_accept_encoding(&plain), "Vary: Accept-Encoding on the plain variant too:\n{plain}");
        assert_eq!(plain.body, original.body, "{headers:?}");
    }
}

#[test]
fn no_gzip_on_a_293_byte_response() {
    let fx = Fixture::new();
    let original = gale_tests::http::get(fx.tornado.addr(), "/html?n=293");
    assert_eq!(original.body.len(), 293);
    let response = fx.get("/html?n=293", &[("Accept-Encoding", "gzip")]);
    assert_eq!(response.status, 200, "{response}");
    assert_eq!(response.header("content-encoding"), None, "below min_length 1000:\n{response}");
    assert_eq!(response.body, original.body);
}

#[test]
fn gzip_on_static_css_not_on_png() {
    let fx = Fixture::new();
    let css = fx.file("www/static/app.css");
    let gz = fx.get("/static/app.css", &[("Accept-Encoding", "gzip, deflate")]);
    assert_eq!(gz.status, 200, "{gz}");
    assert_eq!(gz.header("content-encoding"), Some("gzip"), "{gz}");
    assert!(varies_on_accept_encoding(&gz), "{gz}");
    assert_eq!(gunzip(&gz.body), css, "the decompressed body is byte-identical");

    let plain = fx.get("/static/app.css", &[]);
    assert_eq!(plain.header("content-encoding"), None, "{plain}");
    assert!(varies_on_accept_encoding(&plain), "{plain}");
    assert_eq!(plain.body, css);

    let png = fx.get("/static/logo.png", &[("Accept-Encoding", "gzip")]);
    assert_eq!(png.status, 200, "{png}");
    assert_eq!(png.header("content-type"), Some("image/png"));
    assert_eq!(png.header("content-encoding"), None, "image/png is not in gzip types:\n{png}");
    assert_eq!(png.body, fx.file("www/static/logo.png"));
}

/// The open file cache is on by default (`valid = "1s"`): within the interval gale may answer
/// from what it found before, after it every change on disk shows: a file rewritten in place
/// (same inode, same size), a large file replaced by a rename (its descriptor was cached), a
/// link turned towards a file outside the root (404, and never the secret, even from the
/// cache), a file removed.
#[test]
fn files_changed_on_disk_are_served_fresh_after_the_validity_interval() {
    let fx = Fixture::new();
    let stat = fx.base.join("www/static");
    let css = fx.file("www/static/app.css");
    std::fs::write(stat.join("fresh.txt"), b"version 1\n").expect("fresh.txt");
    std::fs::write(stat.join("big.bin"), vec![b'a'; 200_000]).expect("big.bin");
    symlink(stat.join("app.css"), stat.join("moving-link")).expect("symlink");
    let after_the_interval = std::time::Duration::from_millis(1500);

    let mut conn = fx.gale.conn();
    for round in 0..2 {
        // The second round is answered from the cache.
        let small = conn.send(&Request::get("/static/fresh.txt"));
        assert_eq!((small.status, small.body.as_slice()), (200, &b"version 1\n"[..]), "round {round}");
        let big = conn.send(&Request::get("/static/big.bin"));
        assert_eq!(big.status, 200, "round {round}");
        assert!(big.body.len() == 200_000 && big.body.iter().all(|&b| b == b'a'), "round {round}");
        let link = conn.send(&Request::get("/static/moving-link"));
        assert_eq!((link.status, &link.body), (200, &css), "round {round}");
    }

    std::fs::write(stat.join("fresh.txt"), b"version 2\n").expect("rewrite in place");
    std::fs::write(stat.join("big.new"), vec![b'b'; 300_000]).expect("big.new");
    std::fs::rename(stat.join("big.new"), stat.join("big.bin")).expect("rename over big.bin");
    std::fs::remove_file(stat.join("moving-link")).expect("unlink");
    symlink(fx.base.join("secret.txt"), stat.join("moving-link")).expect("symlink out");
    let link = conn.send(&Request::get("/static/moving-link"));
    assert!(!contains(&link.body, SECRET), "served the secret:\n{link}");

    std::thread::sleep(after_the_interval);
    let small = conn.send(&Request::get("/static/fresh.txt"));
    assert_eq!((small.status, small.body.as_slice()), (200, &b"version 2\n"[..]), "{small}");
    let big = conn.send(&Request::get("/static/big.bin"));
    assert_eq!(big.status, 200, "{big}");
    assert_eq!(big.header("content-length"), Some("300000"));
    assert!(big.body.len() == 300_000 && big.body.iter().all(|&b| b == b'b'), "the old big.bin was served");
    let link = conn.send(&Request::get("/static/moving-link"));
    assert_eq!(link.status, 404, "{link}");
    assert!(!contains(&link.body, SECRET));

    std::fs::remove_file(stat.join("fresh.txt")).expect("remove");
    std::thread::sleep(after_the_interval);
    let gone = conn.send(&Request::get("/static/fresh.txt"));
    assert_eq!(gone.status, 404, "{gone}");
}
