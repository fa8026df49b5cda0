//! What happens to stored files: the cleanup table with a real Tornado handler that opens them
//! (docs/uploads.md, "Request flow": cleanup), 499 when the client leaves, file modes (D10), client aborts, and
//! the 100 MB body cap (the head checks, D8).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use gale_tests::multipart::{self, B, TXT, TXT_MD5, body, file, text};
use gale_tests::{ConfigBuilder, Gale, Request, Response, Tornado, wait_until};
use md5::Digest as _;
use serde_json::Value;
use tempfile::TempDir;

use super::{HANG, Site, UPLOAD, private_store, upload_location};

/// The Tornado handler behind the upload location (tests/tornado/app.py `UploadAnswer`).
const ANSWER: &str = "/upload-answer";

/// gale with an upload location at `/upload-answer` in front of a real Tornado process.
struct TornadoSite {
    gale: Gale,
    tornado: Tornado,
    store: PathBuf,
    _dir: TempDir,
}

impl TornadoSite {
    #[track_caller]
    fn new(extra: &str) -> TornadoSite {
        let tornado = Tornado::spawn("uploads");
        let (dir, store) = private_store();
        let gale = ConfigBuilder::new([tornado.addr()])
            // Debug: gale logs each upload's cleanup outcome, which the tests wait for.
            .global("log_level", "debug")
            .http("client_max_body_size", "100M")
            .location(&upload_location(ANSWER, &store, extra))
            .start();
        TornadoSite { gale, tornado, store, _dir: dir }
    }

    fn stored(&self) -> Vec<String> {
        multipart::list_dir(&self.store)
    }

    fn form() -> Vec<u8> {
        body(&[text("somearg", b"s"), file("file", "hello.txt", "text/plain", TXT), text("other", b"dropped")])
    }

    fn request(query: &str) -> Request {
        Request::post(&format!("{ANSWER}?{query}"), Self::form()).header("Content-Type", &multipart::content_type())
    }
}

/// The report Tornado's handler wrote, checking that it parsed the form, opened the file and
/// found the md5 and size the form claims.
#[track_caller]
fn tornado_report(response: &Response, mode: &str) -> Value {
    let report: Value = response.json();
    let files = report["files"].as_array().unwrap_or_else(|| panic!("no files in the report:\n{response}"));
    assert_eq!(files.len(), 1, "{report}");
    let f = &files[0];
    assert_eq!(f["exists"], true, "the backend could not open `.path`: {report}");
    assert_eq!(f["ok"], true, "md5/size of the stored file differ from `.md5`/`.size`: {report}");
    assert_eq!(f["md5"], TXT_MD5, "{report}");
    assert_eq!(f["size"], 14, "{report}");
    assert_eq!(f["name"], "hello.txt", "{report}");
    assert_eq!(f["mode"], mode, "{report}");
    assert_eq!(report["fields"]["somearg"], serde_json::json!(["s"]), "{report}");
    assert!(report["fields"].get("other").is_none(), "`other` is not passed: {report}");
    report
}

#[test]
fn cleanup_table_with_a_real_tornado_handler() {
    let site = TornadoSite::new("");
    // The reference configuration's `upload_cleanup 200 400 404 499`: delete after those, keep after the others.
    for (status, deleted) in [(200, true), (400, true), (404, true), (201, false), (500, false)] {
        let response = site.gale.send(&TornadoSite::request(&format!("status={status}")));
        assert_eq!(response.status, status, "the backend's status reaches the client:\n{response}");
        let report = tornado_report(&response, "0600");
        let path = report["files"][0]["path"].as_str().expect("path").to_owned();
        if deleted {
            // Removed right after the answer (like nginx-upload-module), not before it.
            wait_until(HANG, &format!("the file to be deleted after {status}"), || site.stored().is_empty());
        } else {
            // gale decided (and logged) to keep it; only then is "still there" a verdict.
            let decided = format!("upload cleanup after {status}: Kept(1)");
            wait_until(HANG, &decided, || site.gale.stderr().contains(&decided));
            let left = site.stored();
            assert_eq!(left.len(), 1, "after {status} the file must be kept: {left:?}");
            assert_eq!(std::fs::read(&path).expect("kept file"), TXT, "after {status}");
            std::fs::remove_file(&path).expect("remove the kept file");
        }
    }
}

#[test]
fn client_leaving_while_the_backend_works_is_499_and_deletes() {
    let site = TornadoSite::new("");
    // The backend answers 201 (keep) after a while: if gale waited for it instead of treating the
    // departure as 499, the file would be kept and the wait below would time out.
    let mut conn = site.gale.conn();
    let request = TornadoSite::request("status=201&delay=5");
    conn.write_raw(&request.encode("gale")).expect("send the upload");
    wait_until(HANG, "the backend to be handling the upload", || site.tornado.inflight(ANSWER) == 1);
    assert_eq!(site.stored().len(), 1, "the file exists while the backend works");
    drop(conn);
    wait_until(HANG, "the file to be deleted after the client left (499)", || site.stored().is_empty());
}

#[test]
fn access_mode_is_honoured() {
    let site = TornadoSite::new(", access = \"0640\"");
    let response = site.gale.send(&TornadoSite::request("status=201"));
    assert_eq!(response.status, 201, "{response}");
    let report = tornado_report(&response, "0640");
    let path = report["files"][0]["path"].as_str().expect("path");
    let mode = std::fs::metadata(path).expect("kept file").permissions().mode() & 0o7777;
    assert_eq!(mode, 0o640);
}

#[test]
fn client_abort_mid_upload_leaves_no_file() {
    let site = Site::new();
    // One file cut in the middle, then a completed file followed by a second one cut short
    // (nginx-upload-module's `client_abort_mid_body` and `client_abort_after_file1`).
    let first = body(&[file("file", "big.bin", "application/octet-stream", &vec![b'q'; 1 << 20])]);
    let second = body(&[
        file("file1", "a.txt", "text/plain", TXT),
        file("file2", "big.bin", "application/octet-stream", &vec![b'r'; 1 << 20]),
    ]);
    for (data, files_before_abort) in [(first, 1), (second, 2)] {
        let mut conn = site.gale.conn();
        let head = format!(
            "POST {UPLOAD} HTTP/1.1\r\nHost: gale\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
            multipart::content_type(),
            data.len()
        );
        conn.write_raw(head.as_bytes()).expect("head");
        conn.write_raw(&data[..data.len() / 2 + 1000]).expect("half the body");
        wait_until(HANG, "gale to store the files sent so far", || site.stored().len() == files_before_abort);
        drop(conn);
        wait_until(HANG, "the aborted upload's files to be removed", || site.stored().is_empty());
    }
    site.assert_backend_untouched("client abort");
}

/// A file part header and the close delimiter around `file_len` bytes of file data.
fn framing(file_len: u64) -> (Vec<u8>, Vec<u8>, u64) {
    let prefix = format!(
        "--{B}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    let suffix = format!("\r\n--{B}--\r\n").into_bytes();
    let total = prefix.len() as u64 + file_len + suffix.len() as u64;
    (prefix, suffix, total)
}

/// 1 MiB of the pattern byte[i] = (offset + i) % 251.
fn pattern(offset: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| ((offset + i) % 251) as u8).collect()
}

const CAP: u64 = 100 * 1024 * 1024;

#[test]
fn the_100m_cap_exactly_at_the_limit_over_it_streamed_and_declared() {
    let site = Site::new();
    let (prefix, suffix, overhead) = framing(0);

    // Exactly 104857600 bytes: accepted, the file is whole (spec (c) check 2, `at_limit`).
    let file_len = CAP - overhead;
    let mut conn = site.gale.conn();
    let head = format!(
        "POST {UPLOAD} HTTP/1.1\r\nHost: gale\r\nContent-Type: {}\r\nContent-Length: {CAP}\r\n\r\n",
        multipart::content_type()
    );
    conn.write_raw(head.as_bytes()).expect("head");
    conn.write_raw(&prefix).expect("part head");
    let mut md5 = md5::Md5::new();
    let mut sent = 0u64;
    while sent < file_len {
        let chunk = pattern(sent, (file_len - sent).min(1 << 20) as usize);
        md5.update(&chunk);
        conn.write_raw(&chunk).expect("file data");
        sent += chunk.len() as u64;
    }
    conn.write_raw(&suffix).expect("close delimiter");
    let response = conn.read_response(false).expect("answer to the at-limit upload");
    assert_eq!(response.status, 200, "a body of exactly client_max_body_size:\n{response}");
    let got = site.capture.only();
    let form = got.form();
    assert_eq!(multipart::values(&form, "file.size"), vec![file_len.to_string().as_bytes()]);
    let want_md5 = multipart::hex(&md5.finalize());
    assert_eq!(multipart::values(&form, "file.md5"), vec![want_md5.as_bytes()]);
    assert_eq!((got.files[0].size, got.files[0].md5.as_str()), (file_len, want_md5.as_str()), "the stored file");
    site.assert_store_empty("after the at-limit upload");
    site.capture.clear();

    // 100 MB + 1 byte, streamed chunked (no length to refuse up front): 413 once the decoded
    // bytes pass the cap, and the file written so far is removed (D8).
    let file_len = CAP + 1 - overhead;
    let mut conn = site.gale.conn();
    let head = format!(
        "POST {UPLOAD} HTTP/1.1\r\nHost: gale\r\nContent-Type: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        multipart::content_type()
    );
    let chunk = |data: &[u8]| [format!("{:x}\r\n", data.len()).as_bytes(), data, b"\r\n"].concat();
    conn.write_raw(head.as_bytes()).expect("head");
    conn.write_raw(&chunk(&prefix)).expect("part head");
    let block = vec![b'x'; 1 << 20];
    let mut sent = 0u64;
    let mut checked_midway = false;
    let mut write_failed = false;
    while sent < file_len {
        let n = (file_len - sent).min(block.len() as u64) as usize;
        if conn.write_raw(&chunk(&block[..n])).is_err() {
            write_failed = true;
            break;
        }
        sent += n as u64;
        if !checked_midway && sent >= CAP / 2 {
            wait_until(HANG, "gale to be writing the file to the store", || site.stored().len() == 1);
            checked_midway = true;
        }
    }
    if !write_failed {
        let _ = conn.write_raw(&chunk(&suffix));
        let _ = conn.write_raw(b"0\r\n\r\n");
    }
    let response = conn.read_response(false).expect("answer to the 100M+1 upload");
    assert_eq!(response.status, 413, "a streamed body of 100M + 1:\n{response}");
    assert!(sent + 2 * block.len() as u64 >= file_len, "gale answered 413 long before the cap ({sent} bytes sent)");
    wait_until(HANG, "the partial file to be removed", || site.stored().is_empty());
    site.assert_backend_untouched("100M + 1 streamed");

    // 100 MB + 1 declared: 413 before the body is read (spec (c) check 1).
    let mut conn = site.gale.conn();
    let head = format!(
        "POST {UPLOAD} HTTP/1.1\r\nHost: gale\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
        multipart::content_type(),
        CAP + 1
    );
    conn.write_raw(head.as_bytes()).expect("head");
    let _ = conn.write_raw(&prefix);
    let response = conn.read_response(false).expect("answer to the declared 100M+1 upload");
    assert_eq!(response.status, 413, "Content-Length 100M + 1:\n{response}");
    site.assert_store_empty("100M + 1 declared");
    site.assert_backend_untouched("100M + 1 declared");
}
