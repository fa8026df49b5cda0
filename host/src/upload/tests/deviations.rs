//! The deviations from nginx-upload-module (D1-D16 in docs/uploads.md) that live in the upload leaf, plus aborts.

use std::time::Duration;

use futures_util::StreamExt;

use super::*;
use crate::upload::store::BATCH_BYTES;

#[tokio::test]
async fn d2_forged_generated_fields_are_dropped() {
    // The classic attack: pass `.*` and send a text field `file.path=/etc/passwd`.
    let mut cfg = FieldPolicyConfig::reference();
    cfg.pass_fields = vec![".*".into()];
    let policy = NativeFieldPolicy::new(&cfg).expect("policy");
    let (_dir, ucfg) = config();
    let data = body(&[text("file.path", b"/etc/passwd"), text("file.md5", b"0"), text("ok", b"1")]);
    let out = run_with(&ucfg, &request(B), &policy, &data).await.expect("form");
    assert_eq!(out.body, forwarded(B, &[("ok", b"1")]));
}

#[tokio::test]
async fn d5_malformed_bodies_are_400_in_every_chunking() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no delimiter", b"just some bytes\r\n".to_vec()),
        ("empty body", Vec::new()),
        ("no close delimiter", text("somearg", b"x")),
        ("delimiter + junk", [text("somearg", b"x"), format!("--{B}junk\r\n").into_bytes()].concat()),
        ("delimiter + single dash", format!("--{B}-x\r\n").into_bytes()),
        ("missing Content-Disposition", body(&[part(&["Content-Type: text/plain"], b"x")])),
        ("no name (nginx-upload-module: 500, D6)", body(&[part(&["Content-Disposition: form-data"], b"x")])),
        ("bad disposition", body(&[part(&["Content-Disposition: inline; name=\"a\""], b"x")])),
        (
            "NUL in header (D15)",
            body(&[part(&["Content-Disposition: form-data; name=\"a\"; filename=\"x\0.txt\""], b"x")]),
        ),
        ("quote in name (D15)", body(&[part(&["Content-Disposition: form-data; name=\"a\\\"b\""], b"x")])),
        (
            "empty part Content-Type",
            body(&[part(&["Content-Disposition: form-data; name=\"a\"", "Content-Type:"], b"x")]),
        ),
        ("headers never end", format!("--{B}\r\nContent-Disposition: form-data; name=\"a\"\r\n").into_bytes()),
        ("text value forging a delimiter", body(&[text("somearg", format!("a--{B}\r\nx").as_bytes())])),
        ("filename forging a delimiter", body(&[file("f", &format!("--{B}--"), "text/plain", b"x")])),
    ];
    for (what, data) in cases {
        let msg = expect_status(&data, 400).await;
        assert!(!msg.is_empty(), "{what}");
    }
}

#[tokio::test]
async fn d5_preamble_epilogue_and_padding_are_fine() {
    let mut data = b"preamble\r\n".to_vec();
    data.extend_from_slice(&format!("--{B} \t\r\n").into_bytes());
    data.extend_from_slice(b"Content-Disposition: form-data; name=\"somearg\"\r\n\r\nv\r\n");
    data.extend_from_slice(&close());
    data.extend_from_slice(b"epilogue --XbOuNdArY123 junk");
    let out = run(&data).await.expect("valid");
    assert_eq!(out.body, forwarded(B, &[("somearg", b"v")]));
}

#[tokio::test]
async fn d5_data_starting_with_dashes_boundary_ends_the_part() {
    // The header block's final LF already happened, so `--B` right after it is a delimiter: no
    // value may start with `--B`, which would forge a delimiter upstream.
    let data = format!("--{B}\r\nContent-Disposition: form-data; name=\"somearg\"\r\n\r\n--{B}--\r\n");
    let out = run(data.as_bytes()).await.expect("valid");
    assert_eq!(out.body, forwarded(B, &[("somearg", b"")]));
}

#[tokio::test]
async fn d14_header_line_limit_is_511() {
    let prefix = "Content-Disposition: form-data; name=\"somearg\"; x=\"";
    let line = |len: usize| format!("{prefix}{}\"", "a".repeat(len - prefix.len() - 1));
    let ok = body(&[part(&[&line(511)], b"v")]);
    assert_eq!(run(&ok).await.expect("511 fits").body, forwarded(B, &[("somearg", b"v")]));
    expect_status(&body(&[part(&[&line(512)], b"v")]), 400).await;
}

#[tokio::test]
async fn d14_caps_on_parts_files_and_header_bytes() {
    let (_dir, mut cfg) = config();
    cfg.limits.max_parts = 3;
    cfg.limits.max_files = 2;
    let policy = NativeFieldPolicy::reference();
    let req = request(B);
    let three = body(&[text("a", b""), text("b", b""), text("c", b"")]);
    assert!(run_with(&cfg, &req, &policy, &three).await.is_ok());
    let four = body(&[text("a", b""), text("b", b""), text("c", b""), text("d", b"")]);
    assert_eq!(run_with(&cfg, &req, &policy, &four).await.map(|_| ()).expect_err("must fail").0, 413);
    let files = body(&[
        file("f", "1", "text/plain", b"1"),
        file("f", "2", "text/plain", b"2"),
        file("f", "3", "text/plain", b"3"),
    ]);
    // The first two are stored and then unlinked by the failure (checked by run_with).
    assert_eq!(run_with(&cfg, &req, &policy, &files).await.map(|_| ()).expect_err("must fail").0, 413);
    cfg.limits.max_part_header_bytes = 200;
    let many = body(&[part(
        &[
            "Content-Disposition: form-data; name=\"somearg\"",
            &format!("X-A: {}", "a".repeat(80)),
            &format!("X-B: {}", "b".repeat(80)),
        ],
        b"v",
    )]);
    assert_eq!(run_with(&cfg, &req, &policy, &many).await.map(|_| ()).expect_err("must fail").0, 400);
}

#[tokio::test]
async fn d8_streamed_body_cap_is_413() {
    let (_dir, mut cfg) = config();
    let data = body(&[file("f", "big.bin", "application/octet-stream", &[7u8; 4096])]);
    cfg.limits.max_body_bytes = data.len() as u64;
    let policy = NativeFieldPolicy::reference();
    assert!(run_with(&cfg, &request(B), &policy, &data).await.is_ok());
    cfg.limits.max_body_bytes = data.len() as u64 - 1;
    let err = run_with(&cfg, &request(B), &policy, &data).await.map(|_| ());
    assert_eq!(err.expect_err("must fail").0, 413);
}

#[tokio::test]
async fn d13_sha256_when_configured() {
    let mut pc = FieldPolicyConfig::reference();
    pc.file_fields.push(FileAttr::Sha256);
    let policy = NativeFieldPolicy::new(&pc).expect("policy");
    let (_dir, cfg) = config();
    let out =
        run_with(&cfg, &request(B), &policy, &body(&[file("file", "h.txt", "text/plain", TXT)])).await.expect("form");
    let got = out.files[0].0.sha256.clone().expect("sha256 computed");
    assert_eq!(got, "d9014c4624844aa5bac314773d6b689ad467fa4e1d1a50a1b8a99d5a95f72ff5");
    assert!(out.body.ends_with(format!("name=\"file.sha256\"\r\n\r\n{got}\r\n--{B}--\r\n").as_bytes()));
}

#[tokio::test]
async fn filename_star_and_quoted_escapes_reach_name() {
    let data = body(&[part(
        &[
            "Content-Disposition: form-data; name=\"file\"; filename=\"fallback.txt\"; filename*=UTF-8''..%2F..%2Fr%C3%A9sum%C3%A9.txt",
            "Content-Type: text/plain",
        ],
        TXT,
    )]);
    let out = run(&data).await.expect("form");
    assert_eq!(&out.files[0].0.filename[..], "résumé.txt".as_bytes());
}

#[tokio::test]
async fn client_error_mid_file_leaves_no_file() {
    let (_dir, cfg) = config();
    let mut data = text("somearg", b"x");
    data.extend_from_slice(&file("f", "done.txt", "text/plain", TXT));
    data.extend_from_slice(
        format!("--{B}\r\nContent-Disposition: form-data; name=\"g\"; filename=\"half.bin\"\r\n\r\n").as_bytes(),
    );
    data.extend_from_slice(&vec![1u8; 2 * BATCH_BYTES + 1000]); // more than two write batches
    let items: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(16 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .chain(std::iter::once(Err(std::io::Error::other("connection reset"))))
        .collect();
    let err =
        receive(stream::iter(items), &request(B), &cfg, &NativeFieldPolicy::reference()).await.expect_err("aborted");
    assert_eq!(err.status().as_u16(), 400);
    assert!(store_is_empty(cfg.store.path()));
}

#[tokio::test]
async fn dropped_future_mid_file_leaves_no_file() {
    // The client vanished: hyper stops the body and the pipeline drops the receiving future.
    let (_dir, cfg) = config();
    let mut data = file("f", "done.txt", "text/plain", TXT);
    data.extend_from_slice(
        format!("--{B}\r\nContent-Disposition: form-data; name=\"g\"; filename=\"half.bin\"\r\n\r\n").as_bytes(),
    );
    data.extend_from_slice(&[1u8; 300 * 1024]);
    let items = stream::iter(chunks(&data, 8192)).chain(stream::pending());
    let policy = NativeFieldPolicy::reference();
    let req = request(B);
    let fut = receive(items, &req, &cfg, &policy);
    let timed = tokio::time::timeout(Duration::from_millis(200), fut).await;
    assert!(timed.is_err(), "the body never ends");
    assert!(store_is_empty(cfg.store.path()));
}

#[test]
fn error_statuses() {
    use std::io;
    let no_space = UploadError::Store(StoreError { op: "write", source: io::Error::from_raw_os_error(libc::ENOSPC) });
    assert_eq!(no_space.status().as_u16(), 507);
    let quota = UploadError::Store(StoreError { op: "write", source: io::Error::from_raw_os_error(libc::EDQUOT) });
    assert_eq!(quota.status().as_u16(), 507);
    let eio = UploadError::Store(StoreError { op: "write", source: io::Error::from_raw_os_error(libc::EIO) });
    assert_eq!(eio.status().as_u16(), 503);
    assert_eq!(UploadError::Policy("trap".into()).status().as_u16(), 500);
    assert_eq!(UploadError::TooManyFiles(1).status().as_u16(), 413);
}

/// A policy that fails, as a trapping plugin would: 500 and nothing left behind.
struct FailingPolicy;

impl FieldPolicy for FailingPolicy {
    fn text_field<'a>(
        &'a self,
        _name: &'a [u8],
    ) -> futures_util::future::BoxFuture<'a, Result<TextDecision, PolicyError>> {
        Box::pin(async { Ok(TextDecision::Pass) })
    }
    fn file_fields<'a>(
        &'a self,
        _file: &'a StoredFile,
    ) -> futures_util::future::BoxFuture<'a, Result<Vec<FormField>, PolicyError>> {
        Box::pin(async { Err("plugin trapped".into()) })
    }
}

#[tokio::test]
async fn policy_failure_is_500_and_unlinks() {
    let (_dir, cfg) = config();
    let data = body(&[file("f", "a.txt", "text/plain", TXT)]);
    let got = run_with(&cfg, &request(B), &FailingPolicy, &data).await.map(|_| ());
    assert_eq!(got.expect_err("must fail").0, 500);
}

#[tokio::test]
async fn large_file_streams_through_many_batches() {
    // 16 KiB frames: eight and a bit write batches, one in flight while the next fills.
    let (_dir, cfg) = config();
    let mut x: u32 = 1;
    let payload: Vec<u8> = (0..8 * BATCH_BYTES + 12_345)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let data = body(&[file("big", "big.bin", "application/octet-stream", &payload)]);
    let up = receive(stream::iter(chunks(&data, 16 * 1024)), &request(B), &cfg, &NativeFieldPolicy::reference())
        .await
        .expect("upload");
    let f = &up.files.files()[0];
    assert_eq!(f.size, payload.len() as u64);
    assert_eq!(f.md5, super::super::store::hex(&md5_of(&payload)));
    assert_eq!(std::fs::read(&f.path).expect("read"), payload);
}

#[test]
fn receive_future_is_send() {
    // hyper services run on a multi-threaded runtime: the pipeline needs a Send future.
    fn is_send<T: Send>(_: &T) {}
    let (_dir, cfg) = config();
    let req = request(B);
    let policy = NativeFieldPolicy::reference();
    let body = stream::iter(Vec::<Result<Bytes, std::io::Error>>::new());
    let fut = receive(body, &req, &cfg, &policy);
    is_send(&fut);
}
