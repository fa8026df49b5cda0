//! The vectors V1-V17 of docs/uploads.md. Where gale deliberately differs from nginx-upload-module
//! (the deviations D1-D16 of docs/uploads.md), the test says which D item and asserts gale's behaviour.

use super::*;

#[tokio::test]
async fn v1_basic_one_file() {
    let data =
        body(&[text("somearg", b"value1"), file("file", "hello.txt", "text/plain", TXT), text("other", b"dropped")]);
    let out = expect_form(
        &data,
        &[
            ("somearg", b"value1"),
            ("file.name", b"hello.txt"),
            ("file.content_type", b"text/plain"),
            ("file.path", b"<F1>"),
            ("file.md5", TXT_MD5.as_bytes()),
            ("file.size", b"14"),
        ],
    )
    .await;
    // The spec's 517 bytes with `/tmp/0000000001` (15 bytes) as the path; here `<F1>` (4).
    assert_eq!(out.body.len(), 517 - 15 + 4);
    assert_eq!(out.files.len(), 1);
    let (f, contents) = &out.files[0];
    assert_eq!(contents, TXT);
    assert_eq!((f.size, f.md5.as_str()), (14, TXT_MD5));
    assert_eq!(&f.field_name[..], b"file");
}

#[tokio::test]
async fn v2_two_files_two_fields() {
    let mut bin = b"\x00\x01bin\r\n".to_vec();
    bin.extend_from_slice(b"\r\n--XbOuNdArY12\r\n"); // near-delimiter
    bin.extend_from_slice(b"tail\xff");
    assert_eq!(bin.len(), 29);
    let data = body(&[
        file("file1", "a.txt", "text/plain", b"AAA"),
        text("somearg", b"x"),
        file("file2", "b.bin", "application/octet-stream", &bin),
        text("other", b"zzz"),
    ]);
    let bin_md5 = super::super::store::hex(&md5_of(&bin));
    let out = expect_form(
        &data,
        &[
            ("file1.name", b"a.txt"),
            ("file1.content_type", b"text/plain"),
            ("file1.path", b"<F1>"),
            ("file1.md5", b"e1faffb3e614e6c2fba74296962386b7"),
            ("file1.size", b"3"),
            ("somearg", b"x"),
            ("file2.name", b"b.bin"),
            ("file2.content_type", b"application/octet-stream"),
            ("file2.path", b"<F2>"),
            ("file2.md5", bin_md5.as_bytes()),
            ("file2.size", b"29"),
        ],
    )
    .await;
    assert_eq!(out.files[1].1, bin, "file2 is byte-identical to the input");
}

#[tokio::test]
async fn v3_same_field_two_files() {
    let data = body(&[file("files", "1.txt", "text/plain", b"one"), file("files", "2.txt", "text/plain", b"two")]);
    expect_form(
        &data,
        &[
            ("files.name", b"1.txt"),
            ("files.content_type", b"text/plain"),
            ("files.path", b"<F1>"),
            ("files.md5", b"f97c5d29941bfb1b2fdab0874906ab82"),
            ("files.size", b"3"),
            ("files.name", b"2.txt"),
            ("files.content_type", b"text/plain"),
            ("files.path", b"<F2>"),
            ("files.md5", b"b8a9f715dbb64fd5c56e7783c6820a61"),
            ("files.size", b"3"),
        ],
    )
    .await;
}

#[tokio::test]
async fn v4_regex_unanchored_with_d2() {
    let names = ["somearg", "somearg2", "xsomeargx", "SOMEARG", "Somearg", "some_arg", "somearg[]", "somearg.name", ""];
    let mut parts: Vec<Vec<u8>> = names.iter().map(|n| text(n, format!("v-{n}").as_bytes())).collect();
    parts.push(text("somearg", b""));
    // nginx-upload-module also forwarded `somearg.name`; gale drops it (D2).
    expect_form(
        &body(&parts),
        &[
            ("somearg", b"v-somearg"),
            ("somearg2", b"v-somearg2"),
            ("xsomeargx", b"v-xsomeargx"),
            ("somearg[]", b"v-somearg[]"),
            ("somearg", b""),
        ],
    )
    .await;
}

#[tokio::test]
async fn v5_interleaved_order() {
    let data = body(&[text("somearg", b"1"), file("f", "h.txt", "text/plain", TXT), text("somearg", b"2")]);
    expect_form(
        &data,
        &[
            ("somearg", b"1"),
            ("f.name", b"h.txt"),
            ("f.content_type", b"text/plain"),
            ("f.path", b"<F1>"),
            ("f.md5", TXT_MD5.as_bytes()),
            ("f.size", b"14"),
            ("somearg", b"2"),
        ],
    )
    .await;
}

#[tokio::test]
async fn v6_empty_file() {
    let out = expect_form(
        &body(&[file("file", "empty.txt", "text/plain", b"")]),
        &[
            ("file.name", b"empty.txt"),
            ("file.content_type", b"text/plain"),
            ("file.path", b"<F1>"),
            ("file.md5", b"d41d8cd98f00b204e9800998ecf8427e"),
            ("file.size", b"0"),
        ],
    )
    .await;
    assert_eq!(out.files.len(), 1, "a 0-byte file is created");
}

#[tokio::test]
async fn v7_no_file_selected() {
    let data = body(&[file("file", "", "application/octet-stream", b""), text("somearg", b"s")]);
    let out = expect_form(&data, &[("somearg", b"s")]).await;
    assert!(out.files.is_empty(), "no file is created");
    // As in nginx-upload-module, the empty part is an empty text field: it passes if its name matches.
    let data = body(&[file("somearg", "", "application/octet-stream", b"")]);
    expect_form(&data, &[("somearg", b"")]).await;
}

#[tokio::test]
async fn v8_path_components_in_filenames() {
    let cases: &[(&str, &[u8])] = &[
        ("../../etc/passwd", b"passwd"),
        (r"C:\Users\me\My Docs\a b.txt", b"a b.txt"),
        (r"..\..//x/y\z.txt", b"z.txt"),
        ("a/..", b""), // nginx-upload-module: ".." (D4)
        ("/", b""),    // nginx-upload-module: "/" (D4)
        ("résumé 日本語.txt", "résumé 日本語.txt".as_bytes()),
        ("t\tab\x7f.txt", b"t_ab_.txt"), // nginx-upload-module: raw (D4)
    ];
    for (raw, want) in cases {
        let out = expect_form(
            &body(&[file("file", raw, "text/plain", TXT)]),
            &[
                ("file.name", want),
                ("file.content_type", b"text/plain"),
                ("file.path", b"<F1>"),
                ("file.md5", TXT_MD5.as_bytes()),
                ("file.size", b"14"),
            ],
        )
        .await;
        assert_eq!(&out.files[0].0.raw_filename[..], raw.as_bytes());
    }
}

#[tokio::test]
async fn v9_filename_before_name_and_empty_field_name() {
    // Anchor: the substring search found `name="` inside `filename="`, so the field name was
    // empty. gale parses parameters (D4) and uses `file`.
    let data = body(&[part(
        &["Content-Disposition: form-data; filename=\"x.txt\"; name=\"file\"", "Content-Type: text/plain"],
        TXT,
    )]);
    expect_form(
        &data,
        &[
            ("file.name", b"x.txt"),
            ("file.content_type", b"text/plain"),
            ("file.path", b"<F1>"),
            ("file.md5", TXT_MD5.as_bytes()),
            ("file.size", b"14"),
        ],
    )
    .await;
    // `file_empty_field_name`: matches nginx-upload-module.
    expect_form(
        &body(&[file("", "x.txt", "text/plain", TXT)]),
        &[
            (".name", b"x.txt"),
            (".content_type", b"text/plain"),
            (".path", b"<F1>"),
            (".md5", TXT_MD5.as_bytes()),
            (".size", b"14"),
        ],
    )
    .await;
}

#[tokio::test]
async fn v10_dummy_body() {
    let dummy = forwarded(B, &[("<ngx_upload_module_dummy>", b"")]);
    assert_eq!(dummy.len(), 104);
    // only_nonmatching_fields and empty_multipart: as nginx-upload-module.
    for data in [body(&[text("other", b"1"), text("x", b"2")]), close()] {
        let out = run(&data).await.expect("dummy form");
        assert_eq!(out.body, dummy);
    }
    // garbage_body: 400 (D5).
    expect_status(b"this is not multipart at all", 400).await;
    // filename_unquoted, filename_star_only, filename_escaped_quote: files (D4), where the
    // module lost the content and forwarded the dummy.
    let cases: &[(&str, &[u8])] = &[
        ("form-data; name=\"file\"; filename=x.txt", b"x.txt"),
        ("form-data; name=\"file\"; filename*=UTF-8''x%20y.txt", b"x y.txt"),
        ("form-data; name=\"file\"; filename=\"a\\\"b.txt\"", b"a\"b.txt"),
    ];
    for (cd, want) in cases {
        let data = body(&[part(&[&format!("Content-Disposition: {cd}"), "Content-Type: text/plain"], TXT)]);
        expect_form(
            &data,
            &[
                ("file.name", want),
                ("file.content_type", b"text/plain"),
                ("file.path", b"<F1>"),
                ("file.md5", TXT_MD5.as_bytes()),
                ("file.size", b"14"),
            ],
        )
        .await;
    }
}

#[tokio::test]
async fn v11_quoted_boundary_is_understood() {
    // nginx-upload-module kept the quotes in B, found no delimiter, lost the file and answered 200 (V11).
    // gale unquotes (D3), parses the body and rewrites the forwarded Content-Type.
    let head = http::Request::post("/upload")
        .header("content-type", "multipart/form-data; boundary=\"XbOuNdArY123\"")
        .body(())
        .expect("request")
        .into_parts()
        .0;
    let RequestCheck::Upload(req) = check_request(&head, &UploadLimits::default()).expect("accepted") else {
        panic!("not an upload");
    };
    assert_eq!(req.content_type, "multipart/form-data; boundary=XbOuNdArY123");
    let (_dir, cfg) = config();
    let data = body(&[text("somearg", b"q"), file("file", "hello.txt", "text/plain", TXT)]);
    let out = run_with(&cfg, &req, &NativeFieldPolicy::reference(), &data).await.expect("parsed");
    assert_eq!(out.files.len(), 1);
    assert!(out.body.starts_with(b"--XbOuNdArY123\r\n"));
}

#[tokio::test]
async fn v12_truncated_in_file_is_400() {
    let mut data = [text("somearg", b"t"), file("file1", "a.txt", "text/plain", TXT)].concat();
    data.extend_from_slice(
        &format!("--{B}\r\nContent-Disposition: form-data; name=\"file2\"; filename=\"b.txt\"\r\n\r\npartial data")
            .into_bytes(),
    );
    // D5: 400, and file1 and file2 are both unlinked (checked by `run`).
    let msg = expect_status(&data, 400).await;
    assert!(msg.contains("close delimiter"), "{msg}");
    // truncated_after_field: the same.
    expect_status(&text("somearg", b"t"), 400).await;
}

#[tokio::test]
async fn v13_oversized_field_is_413() {
    let big = vec![b'a'; 200 * 1024];
    let data = body(&[text("somearg", &big), file("file", "hello.txt", "text/plain", TXT)]);
    expect_status(&data, 413).await;
    // 99 KiB still passes, as in nginx-upload-module.
    let ok = vec![b'b'; 99 * 1024];
    let out = run(&body(&[text("somearg", &ok)])).await.expect("fits");
    assert_eq!(out.body, forwarded(B, &[("somearg", &ok)]));
    // A dropped field is not buffered, so its size does not matter.
    run(&body(&[text("other", &big)])).await.expect("dropped");
}

#[tokio::test]
async fn v14_lf_only() {
    let data = format!(
        "--{B}\nContent-Disposition: form-data; name=\"somearg\"\n\nlf\n\
         --{B}\nContent-Disposition: form-data; name=\"file\"; filename=\"hello.txt\"\nContent-Type: text/plain\n\nHello, world!\n\n\
         --{B}--\n"
    );
    let out = expect_form(
        data.as_bytes(),
        &[
            ("somearg", b"lf"),
            ("file.name", b"hello.txt"),
            ("file.content_type", b"text/plain"),
            ("file.path", b"<F1>"),
            ("file.md5", TXT_MD5.as_bytes()),
            ("file.size", b"14"),
        ],
    )
    .await;
    assert_eq!(out.files[0].1, TXT);
}

#[tokio::test]
async fn v15_boundary_collision_is_400() {
    // nginx-upload-module cut the file to `line1`, ignored the rest and answered 200; D5: 400.
    let data = body(&[
        file("file", "c.txt", "text/plain", format!("line1\r\n--{B}-tail\r\nmore").as_bytes()),
        text("somearg", b"after"),
    ]);
    expect_status(&data, 400).await;
}

#[tokio::test]
async fn v16_filename_trailing_slash_is_still_a_file() {
    // nginx-upload-module forwarded the content inline as a text field; D4: a filename parameter makes a
    // file, whose name sanitises to empty.
    let data = body(&[file("somearg_upload", "dir/", "text/plain", b"SECRET-FILE-CONTENT")]);
    let out = expect_form(
        &data,
        &[
            ("somearg_upload.name", b""),
            ("somearg_upload.content_type", b"text/plain"),
            ("somearg_upload.path", b"<F1>"),
            ("somearg_upload.md5", super::super::store::hex(&md5_of(b"SECRET-FILE-CONTENT")).as_bytes()),
            ("somearg_upload.size", b"19"),
        ],
    )
    .await;
    assert!(!out.body.windows(6).any(|w| w == b"SECRET"));
}

#[tokio::test]
async fn v17_curl_f() {
    let ct = "multipart/form-data; boundary=------------------------d74496d66958873e";
    let head = http::Request::post("/upload").header("content-type", ct).body(()).expect("request").into_parts().0;
    let RequestCheck::Upload(req) = check_request(&head, &UploadLimits::default()).expect("accepted") else {
        panic!("not an upload");
    };
    assert_eq!(req.content_type, ct, "forwarded verbatim");
    let d = "--------------------------d74496d66958873e";
    let data = format!(
        "{d}\r\nContent-Disposition: form-data; name=\"somearg\"\r\n\r\nhello world\r\n\
         {d}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"hello.txt\"\r\nContent-Type: text/plain\r\n\r\nHello, world!\n\r\n\
         {d}\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\ndropped\r\n\
         {d}--\r\n"
    );
    let (_dir, cfg) = config();
    let out = run_with(&cfg, &req, &NativeFieldPolicy::reference(), data.as_bytes()).await.expect("parsed");
    let want = forwarded(
        "------------------------d74496d66958873e",
        &[
            ("somearg", b"hello world"),
            ("file.name", b"hello.txt"),
            ("file.content_type", b"text/plain"),
            ("file.path", b"<F1>"),
            ("file.md5", TXT_MD5.as_bytes()),
            ("file.size", b"14"),
        ],
    );
    assert_eq!(out.body, want);
}
