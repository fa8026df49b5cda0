//! the vectors V1-V17 of docs/uploads.md, through the real binary: the exact bytes the backend
//! receives. Where gale deliberately differs from nginx-upload-module (section (d)), the test names the D
//! item and asserts what docs/uploads.md says gale does instead.

use std::process::Command;

use gale_tests::multipart::{self, B, TXT, TXT_MD5, body, close, file, part, text};

use super::{Site, UPLOAD, expect_forwarded};

/// The five fields of a stored file `field` holding [`TXT`], stored as `<F{n}>`.
fn txt_fields(field: &str, name: &[u8], n: usize) -> Vec<(String, Vec<u8>)> {
    vec![
        (format!("{field}.name"), name.to_vec()),
        (format!("{field}.content_type"), b"text/plain".to_vec()),
        (format!("{field}.path"), format!("<F{n}>").into_bytes()),
        (format!("{field}.md5"), TXT_MD5.as_bytes().to_vec()),
        (format!("{field}.size"), b"14".to_vec()),
    ]
}

fn borrow(fields: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    fields.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect()
}

#[test]
fn v1_basic_one_file_exact_bytes_query_and_content_type_kept() {
    let site = Site::new();
    let data =
        body(&[text("somearg", b"value1"), file("file", "hello.txt", "text/plain", TXT), text("other", b"dropped")]);
    // The spec: Content-Type forwarded verbatim, extra parameters included; query kept.
    let content_type = format!("multipart/form-data; boundary={B}; charset=utf-8");
    let response = site.post("/upload?id=5&x=y", &content_type, &data);
    response.expect_status(200);
    let got = site.capture.only();
    assert!(got.request_line.starts_with("POST /upload?id=5&x=y HTTP/1."), "{}", got.request_line);
    assert_eq!(got.header("content-type"), Some(content_type.as_str()), "Content-Type forwarded verbatim");
    let snapshots = expect_forwarded(
        &site,
        &got,
        B,
        &[
            ("somearg", b"value1"),
            ("file.name", b"hello.txt"),
            ("file.content_type", b"text/plain"),
            ("file.path", b"<F1>"),
            ("file.md5", TXT_MD5.as_bytes()),
            ("file.size", b"14"),
        ],
    );
    // The spec's 517 bytes were measured with the 15-byte path `/tmp/0000000001`.
    let path_len = snapshots[0].path.as_os_str().len();
    assert_eq!(got.body.len(), 517 - 15 + path_len);
    assert_eq!(snapshots[0].contents.as_deref(), Some(TXT), "the stored file holds the part's bytes");
    site.assert_store_empty("V1: removed after 200");
}

#[test]
fn v2_two_files_two_fields_binary_content_kept_exactly() {
    let site = Site::new();
    let mut bin = b"\x00\x01bin\r\n".to_vec();
    bin.extend_from_slice(b"\r\n--XbOuNdArY12\r\n"); // the near-delimiter
    bin.extend_from_slice(b"tail\xff");
    assert_eq!(bin.len(), 29);
    let data = body(&[
        file("file1", "a.txt", "text/plain", b"AAA"),
        text("somearg", b"x"),
        file("file2", "b.bin", "application/octet-stream", &bin),
        text("other", b"zzz"),
    ]);
    let bin_md5 = multipart::md5_hex(&bin);
    let (_, snapshots) = site.vector(
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
    );
    assert_eq!(snapshots[0].contents.as_deref(), Some(&b"AAA"[..]));
    assert_eq!(snapshots[1].contents.as_deref(), Some(&bin[..]), "file2 is byte-identical to the input");
    assert_ne!(snapshots[0].path, snapshots[1].path);
}

#[test]
fn v3_same_field_two_files() {
    let site = Site::new();
    let data = body(&[file("files", "1.txt", "text/plain", b"one"), file("files", "2.txt", "text/plain", b"two")]);
    site.vector(
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
    );
}

#[test]
fn v4_regex_unanchored_case_sensitive_with_d2() {
    let site = Site::new();
    let names = ["somearg", "somearg2", "xsomeargx", "SOMEARG", "Somearg", "some_arg", "somearg[]", "somearg.name", ""];
    let mut parts: Vec<Vec<u8>> = names.iter().map(|n| text(n, format!("v-{n}").as_bytes())).collect();
    parts.push(text("somearg", b""));
    // nginx-upload-module also forwarded `somearg.name=v-somearg.name`; gale drops it (D2).
    site.vector(
        &body(&parts),
        &[
            ("somearg", b"v-somearg"),
            ("somearg2", b"v-somearg2"),
            ("xsomeargx", b"v-xsomeargx"),
            ("somearg[]", b"v-somearg[]"),
            ("somearg", b""),
        ],
    );
}

#[test]
fn v5_interleaved_order() {
    let site = Site::new();
    let data = body(&[text("somearg", b"1"), file("f", "h.txt", "text/plain", TXT), text("somearg", b"2")]);
    site.vector(
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
    );
}

#[test]
fn v6_empty_file_is_created() {
    let site = Site::new();
    let (_, snapshots) = site.vector(
        &body(&[file("file", "empty.txt", "text/plain", b"")]),
        &[
            ("file.name", b"empty.txt"),
            ("file.content_type", b"text/plain"),
            ("file.path", b"<F1>"),
            ("file.md5", b"d41d8cd98f00b204e9800998ecf8427e"),
            ("file.size", b"0"),
        ],
    );
    assert_eq!(snapshots[0].contents.as_deref(), Some(&b""[..]), "a 0-byte file exists");
}

#[test]
fn v7_no_file_selected_creates_nothing() {
    let site = Site::new();
    let data = body(&[file("file", "", "application/octet-stream", b""), text("somearg", b"s")]);
    let (got, _) = site.vector(&data, &[("somearg", b"s")]);
    assert!(got.files.is_empty(), "no file is created");
}

#[test]
fn v8_path_components_in_filenames_with_d4() {
    let site = Site::new();
    let cases: &[(&str, &[u8])] = &[
        ("../../etc/passwd", b"passwd"),
        (r"C:\Users\me\My Docs\a b.txt", b"a b.txt"),
        (r"..\..//x/y\z.txt", b"z.txt"),
        ("a/..", b""), // nginx-upload-module: `..`; D4: `.`/`..` become empty
        ("/", b""),    // nginx-upload-module: `/`; D4: stripped to empty (still a file)
        ("résumé 日本語.txt", "résumé 日本語.txt".as_bytes()),
        ("t\tab\x7f.txt", b"t_ab_.txt"), // nginx-upload-module: raw; D4: control characters become `_`
    ];
    for (raw, want) in cases {
        let fields = txt_fields("file", want, 1);
        let (_, snapshots) = site.vector(&body(&[file("file", raw, "text/plain", TXT)]), &borrow(&fields));
        assert_eq!(snapshots[0].contents.as_deref(), Some(TXT), "{raw:?}");
        // The store name never depends on the client filename.
        assert!(!snapshots[0].path.to_string_lossy().contains("passwd"));
    }
}

#[test]
fn v9_filename_before_name_d4_and_empty_field_name() {
    let site = Site::new();
    // Anchor: `name="` found inside `filename="`, so an empty field name. D4: real parameter
    // parsing, so the field is `file`.
    let data = body(&[part(
        &["Content-Disposition: form-data; filename=\"x.txt\"; name=\"file\"", "Content-Type: text/plain"],
        TXT,
    )]);
    site.vector(&data, &borrow(&txt_fields("file", b"x.txt", 1)));
    // `file_empty_field_name`: as nginx-upload-module, `.name`, `.path`, ...
    site.vector(&body(&[file("", "x.txt", "text/plain", TXT)]), &borrow(&txt_fields("", b"x.txt", 1)));
}

#[test]
fn v10_dummy_body_and_the_d4_d5_cases() {
    let site = Site::new();
    let dummy: &[(&str, &[u8])] = &[("<ngx_upload_module_dummy>", b"")];
    // only_nonmatching_fields and empty_multipart: exactly nginx-upload-module's 104 bytes.
    for data in [body(&[text("other", b"1"), text("x", b"2")]), close()] {
        let (got, _) = site.vector(&data, dummy);
        assert_eq!(got.body.len(), 104);
    }
    // garbage_body: nginx-upload-module forwarded the dummy with 200; D5: 400, backend never called.
    let response = site.post(UPLOAD, &multipart::content_type(), b"this is not multipart at all");
    assert_eq!(response.status, 400, "garbage body (D5):\n{response}");
    site.assert_backend_untouched("garbage body");
    // filename_unquoted, filename_star_only, filename_escaped_quote: nginx-upload-module lost the content
    // (dummy, 200); D4: they are files.
    let cases: &[(&str, &[u8])] = &[
        ("form-data; name=\"file\"; filename=x.txt", b"x.txt"),
        ("form-data; name=\"file\"; filename*=UTF-8''x%20y.txt", b"x y.txt"),
        ("form-data; name=\"file\"; filename=\"a\\\"b.txt\"", b"a\"b.txt"),
    ];
    for (cd, want) in cases {
        let data = body(&[part(&[&format!("Content-Disposition: {cd}"), "Content-Type: text/plain"], TXT)]);
        site.vector(&data, &borrow(&txt_fields("file", want, 1)));
    }
    site.assert_store_empty("V10");
}

#[test]
fn v11_quoted_boundary_d3_is_parsed_and_content_type_rewritten() {
    let site = Site::new();
    // nginx-upload-module kept the quotes in B, found no delimiter, forwarded a 108-byte dummy and lost the
    // file with 200. D3: RFC 2045 parameter; the forwarded Content-Type is rewritten.
    let data = body(&[text("somearg", b"q"), file("file", "hello.txt", "text/plain", TXT)]);
    let response = site.post(UPLOAD, &format!("multipart/form-data; boundary=\"{B}\""), &data);
    response.expect_status(200);
    let got = site.capture.only();
    assert_eq!(got.header("content-type"), Some(format!("multipart/form-data; boundary={B}").as_str()));
    let mut fields = vec![("somearg".to_owned(), b"q".to_vec())];
    fields.extend(txt_fields("file", b"hello.txt", 1));
    let snapshots = expect_forwarded(&site, &got, B, &borrow(&fields));
    assert_eq!(snapshots[0].contents.as_deref(), Some(TXT), "the client's file is not lost");
    site.assert_store_empty("V11");
}

#[test]
fn v12_truncated_in_file_is_400_d5_and_nothing_is_kept() {
    let site = Site::new();
    let mut data = [text("somearg", b"t"), file("file1", "a.txt", "text/plain", TXT)].concat();
    data.extend_from_slice(
        format!("--{B}\r\nContent-Disposition: form-data; name=\"file2\"; filename=\"b.txt\"\r\n\r\npartial data")
            .as_bytes(),
    );
    // nginx-upload-module forwarded somearg + file1 with 200 and dropped file2; D5: 400, everything unlinked.
    let response = site.post(UPLOAD, &multipart::content_type(), &data);
    assert_eq!(response.status, 400, "truncated body (D5):\n{response}");
    site.assert_backend_untouched("V12");
    site.assert_store_empty("V12: file1 and the partial file2");
}

#[test]
fn v13_oversized_field_is_413_d5_and_99k_passes() {
    let site = Site::new();
    let big = vec![b'a'; 200 * 1024];
    let data = body(&[text("somearg", &big), file("file", "hello.txt", "text/plain", TXT)]);
    // nginx-upload-module dropped the field silently with 200; D5: 413.
    let response = site.post(UPLOAD, &multipart::content_type(), &data);
    assert_eq!(response.status, 413, "200 KiB passed field (D5):\n{response}");
    site.assert_backend_untouched("V13");
    site.assert_store_empty("V13");
    // A 99 KiB field passes, as in nginx-upload-module.
    let ok = vec![b'b'; 99 * 1024];
    site.vector(&body(&[text("somearg", &ok)]), &[("somearg", &ok)]);
}

#[test]
fn v14_lf_only_is_forwarded_with_crlf_framing() {
    let site = Site::new();
    let data = format!(
        "--{B}\nContent-Disposition: form-data; name=\"somearg\"\n\nlf\n\
         --{B}\nContent-Disposition: form-data; name=\"file\"; filename=\"hello.txt\"\nContent-Type: text/plain\n\n\
         Hello, world!\n\n--{B}--\n"
    );
    let mut fields = vec![("somearg".to_owned(), b"lf".to_vec())];
    fields.extend(txt_fields("file", b"hello.txt", 1));
    let (_, snapshots) = site.vector(data.as_bytes(), &borrow(&fields));
    assert_eq!(snapshots[0].contents.as_deref(), Some(TXT));
}

#[test]
fn v15_boundary_collision_is_400_d5() {
    let site = Site::new();
    // nginx-upload-module cut the file to `line1`, ignored the rest and answered 200; D5: 400.
    let data = body(&[
        file("file", "c.txt", "text/plain", format!("line1\r\n--{B}-tail\r\nmore").as_bytes()),
        text("somearg", b"after"),
    ]);
    let response = site.post(UPLOAD, &multipart::content_type(), &data);
    assert_eq!(response.status, 400, "`--B` + junk inside a file (D5):\n{response}");
    site.assert_backend_untouched("V15");
    site.assert_store_empty("V15");
}

#[test]
fn v16_filename_trailing_slash_is_a_file_d4() {
    let site = Site::new();
    // nginx-upload-module forwarded `somearg_upload=SECRET-FILE-CONTENT` inline; D4: a filename parameter
    // makes a file, whose name sanitises to empty.
    let data = body(&[file("somearg_upload", "dir/", "text/plain", b"SECRET-FILE-CONTENT")]);
    let md5 = multipart::md5_hex(b"SECRET-FILE-CONTENT");
    let (got, snapshots) = site.vector(
        &data,
        &[
            ("somearg_upload.name", b""),
            ("somearg_upload.content_type", b"text/plain"),
            ("somearg_upload.path", b"<F1>"),
            ("somearg_upload.md5", md5.as_bytes()),
            ("somearg_upload.size", b"19"),
        ],
    );
    assert!(!got.body.windows(6).any(|w| w == b"SECRET"), "the content is not forwarded inline");
    assert_eq!(snapshots[0].contents.as_deref(), Some(&b"SECRET-FILE-CONTENT"[..]));
}

#[test]
fn v17_real_curl_f() {
    let site = Site::new();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("hello.txt"), TXT).expect("write hello.txt");
    let url = format!("http://{}/upload", site.gale.addr());
    let mut command = Command::new("curl");
    command
        .current_dir(dir.path())
        .args(["-v", "-sS", "--max-time", "30", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-F", "somearg=hello world", "-F", "file=@hello.txt", "-F", "other=dropped", &url]);
    let out = gale_tests::process::output(command, "curl -F", std::time::Duration::from_secs(60))
        .expect("run curl (scripts/setup.sh installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "curl: {stderr}");
    // What curl sent, from its verbose trace.
    let sent = stderr
        .lines()
        .find_map(|l| l.strip_prefix("> Content-Type: "))
        .unwrap_or_else(|| panic!("no Content-Type in curl's trace:\n{stderr}"))
        .trim()
        .to_owned();
    let boundary = multipart::boundary_of(&sent).expect("curl's boundary");
    let got = site.capture.only();
    assert_eq!(got.header("content-type"), Some(sent.as_str()), "forwarded verbatim");
    let mut fields = vec![("somearg".to_owned(), b"hello world".to_vec())];
    fields.extend(txt_fields("file", b"hello.txt", 1));
    let snapshots = expect_forwarded(&site, &got, &boundary, &borrow(&fields));
    assert_eq!(snapshots[0].contents.as_deref(), Some(TXT));
    site.assert_store_empty("V17");
}
