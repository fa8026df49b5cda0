//! The tokenizer's rules and errors, includes, and each directive's translation.

use std::path::Path;

use super::lexer::{At, End, Lexer};
use super::report::Fate;
use super::{Imported, Options, import};

/// Every statement of `text` as (words, end), or the first error as `LINE:COL: message`.
fn lex(text: &str) -> Result<Vec<(Vec<String>, End)>, String> {
    let mut lexer = Lexer::new(text);
    let mut out = Vec::new();
    loop {
        match lexer.next_statement() {
            Ok(st) => {
                let end = st.end;
                out.push((st.words.into_iter().map(|w| w.text).collect(), end));
                if end == End::Eof {
                    return Ok(out);
                }
            }
            Err(e) => return Err(format!("{}:{}: {}", e.at.line, e.at.col, e.message)),
        }
    }
}

fn words(text: &str) -> Vec<Vec<String>> {
    lex(text).expect("lexes").into_iter().map(|(w, _)| w).filter(|w| !w.is_empty()).collect()
}

fn w(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn words_are_split_on_spaces_and_end_at_semicolons_and_braces() {
    let got = lex("http {\n\tlisten  80 ;\n}\n").expect("lexes");
    let ends: Vec<End> = got.iter().map(|(_, e)| *e).collect();
    assert_eq!(ends, [End::Open, End::Semicolon, End::Close, End::Eof]);
    assert_eq!(got[1].0, w(&["listen", "80"]));
    assert_eq!(words("location /x{ root /a;}"), [w(&["location", "/x"]), w(&["root", "/a"])]);
}

#[test]
fn quotes_and_escapes() {
    assert_eq!(words(r#"a "two words" 'single "q"';"#), [w(&["a", "two words", "single \"q\""])]);
    assert_eq!(words(r#"a "esc \" \\ \t \n \d";"#), [w(&["a", "esc \" \\ \t \n \\d"])]);
    // A backslash keeps the next character in the word outside quotes too (the pair is
    // kept as written, as nginx does), and a quote inside a word is literal.
    assert_eq!(words(r#"a b\ c d\;e \"q;"#), [w(&["a", "b\\ c", "d\\;e", "\"q"])]);
    assert_eq!(words(r#"a x"y;"#), [w(&["a", "x\"y"])]);
    // An empty quoted word is a word.
    assert_eq!(words(r#"a "";"#), [w(&["a", ""])]);
    // After a closing quote: a space, `;`, `{` or `)`.
    assert_eq!(words(r#"if ($a = "x") { b; }"#), [w(&["if", "($a", "=", "x"]), w(&["b"])]);
    assert_eq!(words(r#"if ("$a"){ b; }"#), [w(&["if", "(\"$a\")"]), w(&["b"])]);
    assert_eq!(lex(r#"a "b"c;"#).unwrap_err(), "1:6: unexpected \"c\" after a quoted string");
}

#[test]
fn comments_start_only_where_a_word_could() {
    assert_eq!(words("# all\na b#c; # rest ; {\nd;"), [w(&["a", "b#c"]), w(&["d"])]);
    assert_eq!(words("a \"#not\";"), [w(&["a", "#not"])]);
}

#[test]
fn a_variable_brace_is_part_of_the_word() {
    assert_eq!(words("set $a ${host}x;"), [w(&["set", "$a", "${host}x"])]);
    assert_eq!(words("a ${b} {c;}"), [w(&["a", "${b}"]), w(&["c"])]);
}

#[test]
fn errors_name_line_and_column() {
    assert_eq!(
        lex("a \"open\n\nb;").unwrap_err(),
        "1:3: unterminated string: no closing \" before the end of the file"
    );
    assert_eq!(lex("a 'open").unwrap_err(), "1:3: unterminated string: no closing ' before the end of the file");
    assert_eq!(
        lex("a {\n  b c\n}").unwrap_err(),
        "3:1: unexpected \"}\": the directive `b` before it is missing its \";\""
    );
    assert_eq!(lex("a b").unwrap_err(), "1:4: unexpected end of file, expecting \";\" or \"}\" after `a` (line 1)");
    assert_eq!(lex("  ;").unwrap_err(), "1:3: unexpected \";\"");
    assert_eq!(lex("{").unwrap_err(), "1:1: unexpected \"{\"");
    // Columns count characters, not bytes.
    assert_eq!(lex("é \"x").unwrap_err(), "1:3: unterminated string: no closing \" before the end of the file");
    let long = format!("a {};", "x".repeat(5000));
    assert_eq!(lex(&long).unwrap_err(), "1:3: too long parameter (more than 4096 bytes)");
    let many = format!("a{};", " b".repeat(2000));
    assert!(lex(&many).unwrap_err().starts_with("1:1: more than 1024 parameters in `a`"));
}

#[test]
fn the_lexer_reports_where_each_statement_ends() {
    let mut lexer = Lexer::new("a;\n  b {");
    let st = lexer.next_statement().expect("a");
    assert_eq!((st.words[0].at, st.at), (At { line: 1, col: 1 }, At { line: 1, col: 2 }));
    let st = lexer.next_statement().expect("b");
    assert_eq!(st.words[0].at, At { line: 2, col: 3 });
}

/// Imports `text` written as `nginx.conf` in a temporary folder (with `files` beside it).
fn import_text(text: &str, files: &[(&str, &str)], opts: &Options) -> Result<Imported, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, body) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, body).expect("write");
    }
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, text).expect("write");
    import(&path, opts).map_err(|e| e.to_string().replace(&format!("{}/", dir.path().display()), ""))
}

fn toml_of(text: &str) -> String {
    import_text(text, &[], &Options::default()).expect("imports").toml
}

/// The fate of the first directive written as `directive`.
fn fate_of(imported: &Imported, directive: &str) -> Fate {
    imported
        .report
        .entries
        .iter()
        .find(|e| e.directive == directive)
        .unwrap_or_else(|| panic!("`{directive}` not in the report: {:#?}", imported.report.entries))
        .fate
        .clone()
}

/// The TOML without comment lines.
fn keys(toml: &str) -> String {
    toml.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect::<Vec<_>>().join("\n")
}

#[test]
fn includes_are_read_in_place_with_globs_sorted_and_mime_types_skipped() {
    let text = "http {\n include mime.types;\n include conf.d/*.conf;\n include up.conf;\n}\n";
    let files = [
        ("conf.d/b.conf", "server { listen 8081; location / { proxy_pass http://u; } }\n"),
        ("conf.d/a.conf", "server { listen 8080; location / { proxy_pass http://u; } }\n"),
        ("conf.d/.hidden.conf", "oops\n"),
        ("up.conf", "upstream u { server 127.0.0.1:9000; }\n"),
    ];
    let imported = import_text(text, &files, &Options::default()).expect("imports");
    let k = keys(&imported.toml);
    let a = k.find("0.0.0.0:8080").expect("a.conf's server");
    let b = k.find("0.0.0.0:8081").expect("b.conf's server");
    assert!(a < b, "globs are read in sorted order:\n{k}");
    assert!(k.contains("[upstream.u]\nservers = [\"127.0.0.1:9000\"]"), "{k}");
    assert!(matches!(fate_of(&imported, "include mime.types"), Fate::Default(_)));
    assert!(matches!(fate_of(&imported, "include conf.d/*.conf"), Fate::Translated(_)));
}

#[test]
fn include_errors_point_at_the_include() {
    let missing = import_text("events {}\ninclude nowhere.conf;\n", &[], &Options::default()).unwrap_err();
    assert!(missing.starts_with("nginx.conf:2:1: include `nowhere.conf`: "), "{missing}");
    assert!(missing.ends_with("does not exist"), "{missing}");
    let looped =
        import_text("include a.conf;\n", &[("a.conf", "\n include nginx.conf;\n")], &Options::default()).unwrap_err();
    assert!(looped.starts_with("a.conf:2:2: include loop: "), "{looped}");
    // An error inside an included file names that file.
    let inner = import_text("include a.conf;\n", &[("a.conf", "a \"b;\n")], &Options::default()).unwrap_err();
    assert!(inner.starts_with("a.conf:1:3: unterminated string"), "{inner}");
    // An included file must be balanced on its own, as in nginx.
    let unbalanced =
        import_text("http {\ninclude a.conf;\n}\n", &[("a.conf", "}\n")], &Options::default()).unwrap_err();
    assert!(unbalanced.starts_with("a.conf:1:1: unexpected \"}\""), "{unbalanced}");
}

#[test]
fn deep_nesting_and_bad_bytes_are_errors() {
    let deep = import_text(&"a {".repeat(1000), &[], &Options::default()).unwrap_err();
    assert!(deep.starts_with("nginx.conf:1:97: blocks nested more than 32 deep"), "{deep}");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.conf");
    std::fs::write(&path, b"a;\nb \xff;").expect("write");
    let err = import(&path, &Options::default()).unwrap_err().to_string();
    assert!(err.ends_with("bad.conf:2:3: not UTF-8 text"), "{err}");
    let missing = import(Path::new("/nonexistent/nginx.conf"), &Options::default()).unwrap_err().to_string();
    assert!(missing.starts_with("/nonexistent/nginx.conf: cannot read: "), "{missing}");
}

const POOL: &str =
    "upstream tornadoes { server 127.0.0.1:8000; server 127.0.0.1:8001 weight=2; keepalive 16; least_conn; }";

fn server(body: &str) -> String {
    format!("http {{\n{POOL}\nserver {{\nlisten 8080;\n{body}\n}}\n}}\n")
}

#[test]
fn main_and_events_directives() {
    let text = "user nobody;\nworker_processes 2;\nerror_log /var/log/e.log warn;\npid /run/x.pid;\n\
                events { worker_connections 512; use epoll; }\n";
    let imported = import_text(text, &[], &Options::default()).expect("imports");
    let k = keys(&imported.toml);
    assert!(k.contains("threads = 2"), "{k}");
    assert!(k.contains("error_log = \"/var/log/e.log\"\nlog_level = \"warn\""), "{k}");
    assert!(k.contains("pid_file = \"/run/x.pid\""), "{k}");
    assert!(k.contains("max_connections = 512"), "{k}");
    assert!(matches!(fate_of(&imported, "user nobody"), Fate::Unsupported(_)));
    assert!(matches!(fate_of(&imported, "use epoll"), Fate::Default(_)));
    assert!(matches!(fate_of(&imported, "worker_connections 512"), Fate::Changed(_)));
}

#[test]
fn upstream_blocks() {
    let k = keys(&toml_of(&server("location / { proxy_pass http://tornadoes; }")));
    assert!(
        k.contains(
            "[upstream.tornadoes]\nservers = [\"127.0.0.1:8000\", { address = \"127.0.0.1:8001\", weight = 2 }]\n\
             keepalive = 16\nbalance = \"least_conn\""
        ),
        "{k}"
    );
    let imported = import_text(
        "http { upstream u { server app.internal:80; server 127.0.0.1:1 backup; ip_hash; } }",
        &[],
        &Options::default(),
    )
    .expect("imports");
    assert!(matches!(fate_of(&imported, "server app.internal:80"), Fate::Unsupported(_)));
    assert!(matches!(fate_of(&imported, "server 127.0.0.1:1 backup"), Fate::Unsupported(_)));
    assert!(matches!(fate_of(&imported, "ip_hash"), Fate::Unsupported(_)));
}

#[test]
fn http_settings() {
    let text = "http {\nkeepalive_timeout 75s;\nclient_header_timeout 1m;\nclient_max_body_size 20m;\n\
                gzip on; gzip_min_length 1000; gzip_comp_level 5; gzip_types text/css; gzip_vary on;\n\
                access_log /var/log/a.log;\nsendfile on;\n}\n";
    let imported = import_text(text, &[], &Options::default()).expect("imports");
    let k = keys(&imported.toml);
    assert!(k.contains("keepalive_timeout = \"75s\""), "{k}");
    assert!(k.contains("client_header_timeout = \"60s\""), "{k}");
    assert!(k.contains("client_max_body_size = \"20M\""), "{k}");
    assert!(k.contains("gzip = { min_length = 1000, level = 5, types = [\"text/css\"] }"), "{k}");
    assert!(k.contains("access_log = \"/var/log/a.log\""), "{k}");
    assert!(matches!(fate_of(&imported, "gzip_vary on"), Fate::Default(_)));
    assert!(matches!(fate_of(&imported, "sendfile on"), Fate::Default(_)));
    // gzip off: its settings are not written.
    let off = import_text("http { gzip off; gzip_min_length 10; }", &[], &Options::default()).expect("imports");
    assert!(!off.toml.contains("gzip ="), "{}", off.toml);
    assert!(matches!(fate_of(&off, "gzip_min_length 10"), Fate::Default(_)));
}

#[test]
fn servers_listen_names_and_tls() {
    let text = format!(
        "http {{\n{POOL}\nserver {{\nlisten 443 ssl http2 default_server;\nlisten [::]:443 ssl;\n\
         server_name example.org .example.com _;\nssl_certificate /etc/c.pem;\nssl_certificate_key /etc/k.pem;\n\
         ssl_protocols TLSv1.2;\nlocation / {{ proxy_pass http://tornadoes; }}\n}}\n\
         server {{ listen 80; return 301 https://$host$request_uri; }}\n}}\n"
    );
    let imported = import_text(&text, &[], &Options::default()).expect("imports");
    let k = keys(&imported.toml);
    assert!(k.contains("listen = [\"0.0.0.0:443\", \"[::]:443\"]\ndefault_server = true"), "{k}");
    assert!(k.contains("server_name = [\"example.org\", \"example.com\", \"*.example.com\"]"), "{k}");
    assert!(k.contains("tls = { cert = \"/etc/c.pem\", key = \"/etc/k.pem\" }"), "{k}");
    assert!(k.contains("[[server]]\nlisten = [\"0.0.0.0:80\"]\nredirect_http = true"), "{k}");
    assert!(matches!(fate_of(&imported, "ssl_protocols TLSv1.2"), Fate::Default(_)));
}

#[test]
fn locations_prefix_exact_and_regex_where_expressible() {
    let body = "location /a/ { proxy_pass http://tornadoes; }\nlocation = /b { proxy_pass http://tornadoes; }\n\
                location ^~ /c/ { proxy_pass http://tornadoes; }\nlocation ~ ^/d/e$ { proxy_pass http://tornadoes; }\n\
                location ~ ^/f\\.txt { proxy_pass http://tornadoes; }\nlocation ~* \\.php$ { proxy_pass http://tornadoes; }";
    let imported = import_text(&server(body), &[], &Options::default()).expect("imports");
    let k = keys(&imported.toml);
    for path in ["\"/a/\"", "\"= /b\"", "\"/c/\"", "\"= /d/e\"", "\"/f.txt\""] {
        assert!(k.contains(&format!("path = {path}\nproxy = {{ pass = \"tornadoes\" }}")), "{path}:\n{k}");
    }
    assert!(!k.contains("php"), "{k}");
    assert!(matches!(fate_of(&imported, "location ~* \\.php$"), Fate::Unsupported(_)));
    assert!(matches!(fate_of(&imported, "location ~ ^/d/e$"), Fate::Changed(_)));
}

#[test]
fn proxy_pass_and_headers() {
    let body = "location / {\nproxy_pass http://127.0.0.1:9000;\nproxy_set_header Host $http_host;\n\
                proxy_set_header X-Request-Path $request_uri;\nproxy_set_header X-Custom $ssl_client_s_dn;\n\
                add_header X-Frame-Options DENY;\nproxy_pass_header Server;\nproxy_redirect off;\n}\n\
                location /api/ { proxy_pass http://tornadoes/v1/; }";
    let imported = import_text(&server(body), &[], &Options::default()).expect("imports");
    let k = keys(&imported.toml);
    assert!(k.contains("[upstream.backend-127-0-0-1-9000]\nservers = [\"127.0.0.1:9000\"]"), "{k}");
    assert!(
        k.contains(
            "proxy = { pass = \"backend-127-0-0-1-9000\" }\nplugins = [{ name = \"header-policy\", config = { \
             request = { set = { x-request-path = \"$request_uri\" } }, response = { set = { x-frame-options = \"DENY\" } } } }]"
        ),
        "{k}"
    );
    assert!(matches!(fate_of(&imported, "proxy_set_header Host $http_host"), Fate::Default(_)));
    assert!(matches!(fate_of(&imported, "add_header X-Frame-Options DENY"), Fate::Changed(_)));
    assert!(matches!(fate_of(&imported, "proxy_set_header X-Custom $ssl_client_s_dn"), Fate::Unsupported(_)));
    assert!(matches!(fate_of(&imported, "proxy_pass http://tornadoes/v1/"), Fate::Changed(_)));
    assert!(k.contains("plugin_dir = \"plugins\""), "{k}");
}

#[test]
fn timeouts_and_retries_go_to_the_upstream() {
    let text = format!(
        "http {{\n{POOL}\nproxy_read_timeout 200;\nproxy_connect_timeout 5s;\nproxy_next_upstream error timeout;\n\
         server {{ listen 80;\nlocation / {{ proxy_pass http://tornadoes; }}\n\
         location /slow/ {{ proxy_read_timeout 10m; proxy_pass http://tornadoes; }} }}\n}}\n"
    );
    let imported = import_text(&text, &[], &Options::default()).expect("imports");
    let k = keys(&imported.toml);
    assert!(k.contains("read_timeout = \"600s\""), "the longest of the locations': {k}");
    assert!(k.contains("connect_timeout = \"5s\""), "{k}");
    assert!(k.contains("next_upstream = \"connect\""), "{k}");
    assert!(matches!(fate_of(&imported, "proxy_read_timeout 200"), Fate::Changed(_)));
    let Fate::Changed(note) = fate_of(&imported, "proxy_next_upstream error timeout") else { panic!("not changed") };
    assert!(note.contains("never retries a timeout"), "{note}");
    let kept = import_text(&text, &[], &Options { keep_semantics: true, ..Options::default() }).expect("imports");
    assert!(kept.toml.contains("next_upstream = \"error\""), "{}", kept.toml);
    let off = import_text(
        &server("proxy_next_upstream off;\nlocation / { proxy_pass http://tornadoes; }"),
        &[],
        &Options::default(),
    )
    .expect("imports");
    assert!(off.toml.contains("next_upstream = \"off\""), "{}", off.toml);
}

#[test]
fn static_locations_and_expires() {
    let body = "root /srv/www;\nindex index.html index.htm;\n\
                location /static/ { if ($query_string) { expires max; } }\n\
                location /img/ { alias /srv/images/; expires 30d; }\n\
                location /fresh/ { expires epoch; }\n\
                location /v/ { if ($args) { expires 1h; } }";
    let imported = import_text(&server(body), &[], &Options::default()).expect("imports");
    let k = keys(&imported.toml);
    assert!(
        k.contains("path = \"/static/\"\nstatic = { root = \"/srv/www\", index = [\"index.html\", \"index.htm\"] }\nplugins = [\"static-cache\"]"),
        "{k}"
    );
    assert!(k.contains("static = { alias = \"/srv/images/\", index = [\"index.html\", \"index.htm\"] }\nplugins = [{ name = \"static-cache\", config = { rules = [{ max_age = 2592000 }] } }]"), "{k}");
    assert!(k.contains("rules = [{ no_cache = true }]"), "{k}");
    assert!(k.contains("rules = [{ query = true, max_age = 3600 }]"), "{k}");
    assert!(matches!(fate_of(&imported, "expires epoch"), Fate::Changed(_)));
    let other_if =
        import_text(&server("location / { root /a; if ($http_x) { return 403; } }"), &[], &Options::default())
            .expect("imports");
    assert!(matches!(fate_of(&other_if, "if ($http_x)"), Fate::Unsupported(_)));
    assert!(matches!(fate_of(&other_if, "return 403"), Fate::Unsupported(_)));
}

#[test]
fn return_borrows_a_handler() {
    let body = "location = /robots.txt { return 404 \"nothing here\"; }\nlocation / { proxy_pass http://tornadoes; }\n\
                location /old { return 301 /new; }";
    let imported = import_text(&server(body), &[], &Options::default()).expect("imports");
    let k = keys(&imported.toml);
    assert!(
        k.contains(
            "path = \"= /robots.txt\"\nproxy = { pass = \"tornadoes\" }\nplugins = [{ name = \"header-policy\", config = \
             { deny = [{ status = 404, body = \"nothing here\" }] } }]"
        ),
        "{k}"
    );
    assert!(!k.contains("/old"), "{k}");
    assert!(matches!(fate_of(&imported, "return 301 /new"), Fate::Unsupported(_)));
}

#[test]
fn upload_directives() {
    let body = "location /upload {\nupload_pass @after;\nupload_store /var/spool/up 1;\n\
                upload_store_access user:rw group:r;\n\
                upload_set_form_field $upload_field_name.name \"$upload_file_name\";\n\
                upload_set_form_field $upload_field_name.content_type \"$upload_content_type\";\n\
                upload_set_form_field \"${upload_field_name}_path\" \"$upload_tmp_path\";\n\
                upload_aggregate_form_field $upload_field_name.md5 $upload_file_md5;\n\
                upload_aggregate_form_field $upload_field_name.size $upload_file_size;\n\
                upload_aggregate_form_field $upload_field_name.crc $upload_file_crc32;\n\
                upload_pass_form_field \"^submit$\";\nupload_pass_form_field \"(?!x)\";\n\
                upload_cleanup 400 404 499 500-505;\nupload_max_file_size 1m;\nupload_pass_args on;\n}\n\
                location @after { proxy_pass http://tornadoes; }";
    let imported = import_text(&server(body), &[], &Options::default()).expect("imports");
    let k = keys(&imported.toml);
    assert!(
        k.contains(
            "upload = { store = \"/var/spool/up\", create = true, pass = \"tornadoes\", access = \"0640\", cleanup = \
             [400, 404, 499, \"500-505\"] }\nplugins = [{ name = \"upload-fields\", config = { set = [\"name\", \
             \"content_type\"], aggregate = [\"md5\", \"size\"], pass_fields = [\"^submit$\"] } }]"
        ),
        "{k}"
    );
    assert!(matches!(fate_of(&imported, "upload_store /var/spool/up 1"), Fate::Changed(_)));
    assert!(matches!(
        fate_of(&imported, "upload_aggregate_form_field $upload_field_name.crc $upload_file_crc32"),
        Fate::Unsupported(_)
    ));
    assert!(matches!(fate_of(&imported, "upload_pass_form_field (?!x)"), Fate::Unsupported(_)));
    assert!(matches!(fate_of(&imported, "upload_max_file_size 1m"), Fate::Unsupported(_)));
    assert!(matches!(fate_of(&imported, "upload_pass_args on"), Fate::Default(_)));
    assert!(matches!(fate_of(&imported, "location @after"), Fate::Translated(_)));
    // The built-in policy's fields need no plugin; a store others can write is not used as is.
    let builtin = "location /upload {\nupload_pass @after;\nupload_store /tmp;\n\
                upload_set_form_field $upload_field_name.name \"$upload_file_name\";\n\
                upload_set_form_field $upload_field_name.content_type \"$upload_content_type\";\n\
                upload_set_form_field $upload_field_name.path \"$upload_tmp_path\";\n\
                upload_aggregate_form_field $upload_field_name.md5 $upload_file_md5;\n\
                upload_aggregate_form_field $upload_field_name.size $upload_file_size;\n\
                upload_pass_form_field somearg;\n}\nlocation @after { proxy_pass http://tornadoes; }";
    let imported = import_text(&server(builtin), &[], &Options::default()).expect("imports");
    let k = keys(&imported.toml);
    assert!(k.contains("upload = { store = \"/tmp/gale-uploads\", create = true, pass = \"tornadoes\" }"), "{k}");
    assert!(!k.contains("upload-fields"), "{k}");
    assert!(matches!(fate_of(&imported, "upload_store /tmp"), Fate::Changed(_)));
}

#[test]
fn unknown_directives_and_their_blocks_are_reported_unsupported() {
    let imported =
        import_text("stream { server { listen 53; } }\nfrobnicate 1;\n", &[], &Options::default()).expect("imports");
    assert!(matches!(fate_of(&imported, "stream"), Fate::Unsupported(_)));
    assert!(matches!(fate_of(&imported, "listen 53"), Fate::Unsupported(_)));
    assert!(matches!(fate_of(&imported, "frobnicate 1"), Fate::Unsupported(_)));
    let json = imported.report.to_json();
    assert_eq!(json["summary"]["unsupported"], 4, "{json:#}");
}

#[test]
fn every_translation_of_the_reference_passes_the_config_loader() {
    // The reference without its upload store (which must exist for the loader) loads as gale's
    // own config: the keys and values the translation writes are gale's.
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/nginx-reference.conf"))
        .expect("reference");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let text = text.replace("/var/spool/tornado-uploads", store.to_str().expect("utf-8"));
    let imported = import_text(&text, &[], &Options::default()).expect("imports");
    let path = dir.path().join("gale.toml");
    std::fs::write(&path, &imported.toml).expect("write");
    if let Err(e) = crate::config::load_file(&path) {
        panic!("{e}\n{}", imported.toml);
    }
}

#[test]
fn the_hand_written_example_names_every_directive_of_the_reference() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let tree = super::parse::parse_file(Path::new(&format!("{root}/docs/nginx-reference.conf"))).expect("parses");
    let example = std::fs::read_to_string(format!("{root}/examples/tornado-site.toml")).expect("example");
    let comments: String =
        example.lines().filter_map(|l| l.trim_start().strip_prefix('#')).collect::<Vec<_>>().join("\n");
    fn names(list: &[super::parse::Directive], out: &mut Vec<String>) {
        for d in list {
            out.push(d.name.clone());
            if let Some(b) = &d.block {
                names(b, out);
            }
        }
    }
    let mut all = Vec::new();
    names(&tree, &mut all);
    let missing: Vec<&String> = all.iter().filter(|n| !comments.contains(n.as_str())).collect();
    assert!(missing.is_empty(), "examples/tornado-site.toml does not name {missing:?}");
}

#[test]
fn toml_literals_stay_on_one_line_and_keys_are_quoted_when_needed() {
    use super::emit::{inline, key, lit};
    assert_eq!(lit("a\"b\\c\nd\te"), r#""a\"b\\c\nd\te""#);
    assert_eq!(lit("\u{1}"), r#""\u0001""#);
    assert_eq!(key("x-real-ip"), "x-real-ip");
    assert_eq!(key("a.b"), "\"a.b\"");
    assert_eq!(inline(&[]), "{}");
    let parsed: toml::Table = toml::from_str(&format!("v = {}", lit("a\"b\\c\nd\u{1}"))).expect("valid TOML");
    assert_eq!(parsed["v"].as_str(), Some("a\"b\\c\nd\u{1}"));
}
