//! `gale plugins call` and `gale plugins test`: the bundled plugins run on one request, or on a
//! cases file, by the real binary without a server; failures of the plugin (trap, spin, an input
//! read but not declared) and of the input (missing plugin, wrong world, bad request, malformed
//! cases file) each give a clear message and their exit status (1: the plugin failed; 2: it
//! could not be run).

use std::path::Path;

use gale_tests::plugins::{self, HEADER_POLICY, TEST_LOOP, TEST_TRAP, TEST_UNDECLARED};
use gale_tests::{Finished, run_gale};

fn call(args: &[&str]) -> Finished {
    let mut all = vec!["plugins", "call"];
    all.extend_from_slice(args);
    run_gale(&all, None)
}

fn wasm(file: &str) -> String {
    plugins::wasm(file).to_str().expect("utf-8 path").to_owned()
}

fn one_line_error(run: &Finished, code: i32, wanted: &[&str]) {
    assert_eq!(run.code(), Some(code), "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    let err = run.stderr.trim_end();
    assert!(err.starts_with("gale: error: ") && !err.contains('\n'), "one line expected:\n{err}");
    for w in wanted {
        assert!(err.contains(w), "missing {w:?} in {err}");
    }
}

#[test]
fn call_prints_a_deny_rules_local_response_after_on_response() {
    let run = call(&[
        &wasm(HEADER_POLICY),
        "--config",
        r#"{ deny = [{ header = { name = "user-agent", value = "evilbot" }, status = 403, body = "go away" }], response = { set = { x-tag = "edge" } } }"#,
        "--request",
        "GET /admin",
        "-H",
        "User-Agent: evilbot",
    ]);
    assert_eq!(run.code(), Some(0), "{}{}", run.stdout, run.stderr);
    let out = &run.stdout;
    assert!(out.starts_with("on-request: respond 403 Forbidden\n"), "{out}");
    assert!(out.contains("  body: \"go away\""), "{out}");
    // Response hooks run on the local answer, as in the pipeline.
    assert!(out.contains("on-response (the local response): 403 Forbidden\n"), "{out}");
    assert!(out.contains("  x-tag: edge"), "{out}");

    let other = call(&[
        &wasm(HEADER_POLICY),
        "--config",
        r#"deny = [{ header = { name = "user-agent", value = "evilbot" } }]"#,
        "-H",
        "User-Agent: curl",
    ]);
    assert_eq!(other.code(), Some(0), "{}", other.stderr);
    assert_eq!(other.stdout, "on-request: continue (no header edits)\n");
}

#[test]
fn call_prints_header_edits_on_both_sides() {
    let dir = plugins::built_dir();
    let run = call(&[
        "header-policy",
        "--plugin-dir",
        dir.to_str().expect("utf-8"),
        "--config",
        r#"{ request = { set = { x-real-ip = "$remote_addr" }, remove = ["x-debug"] }, response = { remove = ["server"] } }"#,
        "--remote",
        "192.0.2.7:5555",
        "-H",
        "X-Debug: 1",
        "--response",
        "200",
        "-H",
        "Server: tornado",
        "-H",
        "Content-Type: text/plain",
    ]);
    assert_eq!(run.code(), Some(0), "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout,
        "on-request: continue, editing the request headers:\n  remove x-debug\n  set x-real-ip: 192.0.2.7\n\
         on-response (the response): 200 OK\n  content-type: text/plain\n"
    );
}

fn write_cases(dir: &Path, text: &str) -> String {
    let path = dir.join("cases.toml");
    std::fs::write(&path, text).expect("write cases");
    path.to_str().expect("utf-8").to_owned()
}

const CASES: &str = r#"
config = { deny = [{ path_prefix = "/admin", status = 403, body = "no" }], request = { set = { x-from = "edge" } }, response = { remove = ["server"] } }

[[case]]
name = "admin is denied"
request = "GET /admin/users"
expect = { status = 403, body = "no" }

[[case]]
name = "others go on, tagged"
request = "GET /app"
headers = { accept = "text/html" }
response = { status = 200, headers = { server = "tornado", etag = "1" } }
expect = { decision = "continue", headers = { x-from = "edge", accept = "text/html" } }
expect_response = { status = 200, headers = { etag = "1" }, absent = ["server"] }

[[case]]
name = "a wrong expectation"
request = "GET /app"
expect = { headers = { x-from = "somewhere else" } }
"#;

#[test]
fn test_runs_every_case_and_shows_a_diff_per_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = write_cases(dir.path(), CASES);
    let run = run_gale(&["plugins", "test", &wasm(HEADER_POLICY), "--cases", &cases], None);
    assert_eq!(run.code(), Some(1), "{}{}", run.stdout, run.stderr);
    let out = &run.stdout;
    assert!(out.contains("ok    admin is denied ("), "{out}");
    assert!(out.contains("ok    others go on, tagged ("), "{out}");
    assert!(out.contains(&format!("FAIL  a wrong expectation ({cases}:17)")), "{out}");
    assert!(out.contains("request header x-from: expected [\"somewhere else\"], got [\"edge\"]"), "{out}");
    assert!(
        out.contains(
            "  - on-request answered:\n        continue, editing the request headers:\n          set x-from: edge\n"
        ),
        "{out}"
    );
    assert!(out.ends_with("3 cases: 2 passed, 1 failed\n"), "{out}");

    let passing = CASES.split("\n[[case]]\nname = \"a wrong").next().expect("cases");
    let cases = write_cases(dir.path(), passing);
    let run = run_gale(&["plugins", "test", &wasm(HEADER_POLICY), "--cases", &cases], None);
    assert_eq!(run.code(), Some(0), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.ends_with("\n2 cases: 2 passed, 0 failed\n"), "{}", run.stdout);
}

#[test]
fn check_inputs_catches_an_input_read_but_not_declared() {
    let dir = tempfile::tempdir().expect("tempdir");
    // What gale really does with this plugin: the bot is let through, as the hook never sees
    // the header it did not declare.
    let cases = write_cases(
        dir.path(),
        "[[case]]\nname = \"bot\"\nrequest = \"GET /\"\nheaders = { user-agent = \"somebot\" }\n\
         response = { status = 200 }\nexpect = { decision = \"continue\" }\n",
    );
    let plain = run_gale(&["plugins", "test", &wasm(TEST_UNDECLARED), "--cases", &cases], None);
    assert_eq!(plain.code(), Some(0), "{}{}", plain.stdout, plain.stderr);

    let checked = run_gale(&["plugins", "test", &wasm(TEST_UNDECLARED), "--cases", &cases, "--check-inputs"], None);
    assert_eq!(checked.code(), Some(1), "{}{}", checked.stdout, checked.stderr);
    let out = &checked.stdout;
    assert!(out.contains("on-request: input read but not declared"), "{out}");
    assert!(out.contains("respond 403 Forbidden"), "the whole-request answer is shown: {out}");
    assert!(out.contains("on-response: input read but not declared"), "{out}");
    assert!(out.contains("x-seen-agent: somebot"), "{out}");
    assert!(out.ends_with("1 cases: 0 passed, 1 failed, inputs checked\n"), "{out}");

    // A plugin that declares what it reads passes the check.
    let honest = write_cases(
        dir.path(),
        "config = { deny = [{ header = { name = \"user-agent\", value = \"somebot\" } }] }\n\
         [[case]]\nname = \"bot\"\nrequest = \"GET /\"\nheaders = { user-agent = \"somebot\" }\n\
         expect = { status = 403 }\n",
    );
    let run = run_gale(&["plugins", "test", &wasm(HEADER_POLICY), "--cases", &honest, "--check-inputs"], None);
    assert_eq!(run.code(), Some(0), "{}{}", run.stdout, run.stderr);

    let call = call(&[&wasm(TEST_UNDECLARED), "-H", "User-Agent: somebot", "--check-inputs"]);
    assert_eq!(call.code(), Some(1), "{}{}", call.stdout, call.stderr);
    assert!(call.stdout.contains("on-request: input read but not declared"), "{}", call.stdout);
}

#[test]
fn call_asks_a_cache_policy_for_a_files_headers() {
    let run = call(&[
        &wasm("static_cache.wasm"),
        "--config",
        r#"{ rules = [{ extension = "css", max_age = "1h", immutable = true }] }"#,
        "--request",
        "GET /static/app.css",
        "--content-type",
        "text/css",
    ]);
    assert_eq!(run.code(), Some(0), "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.starts_with("decide: caching headers:\n  cache-control: max-age=3600, immutable\n"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("  expires: "), "{}", run.stdout);

    let other = call(&[
        &wasm("static_cache.wasm"),
        "--config",
        r#"{ rules = [{ extension = "css", max_age = "1h" }] }"#,
        "--request",
        "GET /a.js",
    ]);
    assert_eq!(other.code(), Some(0), "{}", other.stderr);
    assert_eq!(other.stdout, "decide: no caching headers\n");
}

#[test]
fn cache_and_upload_policies_run_their_cases_with_a_diff_per_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = write_cases(
        dir.path(),
        "config = { rules = [{ extension = \"css\", max_age = \"1h\" }] }\n\
         [[case]]\nname = \"css for an hour\"\nrequest = \"GET /s/a.css\"\nfile = { content_type = \"text/css\" }\n\
         expect = { headers = { cache-control = \"max-age=3600\" } }\n\
         [[case]]\nname = \"js too (wrong)\"\nrequest = \"GET /s/a.js\"\n\
         expect = { headers = { cache-control = \"max-age=3600\" } }\n\
         [[case]]\nname = \"js uncached\"\nrequest = \"GET /s/a.js\"\nexpect = { absent = [\"cache-control\", \"expires\"] }\n",
    );
    let run = run_gale(&["plugins", "test", &wasm("static_cache.wasm"), "--cases", &cache], None);
    assert_eq!(run.code(), Some(1), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("ok    css for an hour"), "{}", run.stdout);
    assert!(run.stdout.contains("FAIL  js too (wrong)"), "{}", run.stdout);
    assert!(
        run.stdout.contains("  - caching header cache-control: expected [\"max-age=3600\"], got (absent)"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("ok    js uncached"), "{}", run.stdout);
    assert!(run.stdout.contains("3 cases: 2 passed, 1 failed"), "{}", run.stdout);

    // The bundled upload-fields plugin, against fields written here by hand (not computed by
    // gale): a file taken as three zero bytes, md5 from Python's hashlib.
    let upload = write_cases(
        dir.path(),
        "config = { pass_fields = [\"^title$\"] }\n\
         [[case]]\nname = \"fields\"\ntext_fields = [\"title\", \"other\"]\n\
         files = [{ field = \"doc\", filename = \"C:\\\\x\\\\a.txt\", content_type = \"text/plain\", size = 3 }]\n\
         expect = { text = { title = \"pass\", other = \"drop\" }, fields = [\
         [\"doc.name\", \"a.txt\"], [\"doc.content_type\", \"text/plain\"],\
         [\"doc.path\", \"/var/lib/gale/uploads/00000000000000000000000000000001\"],\
         [\"doc.md5\", \"693e9af84d3dfcc71e640e005bdc5e2e\"], [\"doc.size\", \"3\"]] }\n\
         [[case]]\nname = \"wrong\"\ntext_fields = [\"other\"]\nexpect = { text = { other = \"pass\" } }\n",
    );
    let run = run_gale(&["plugins", "test", &wasm("upload_fields.wasm"), "--cases", &upload], None);
    assert_eq!(run.code(), Some(1), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("ok    fields"), "{}", run.stdout);
    assert!(run.stdout.contains("FAIL  wrong"), "{}", run.stdout);
    assert!(run.stdout.contains("  - text \"other\": expected pass, got drop"), "{}", run.stdout);

    // A hook that traps is a failure the case can expect.
    let fault = write_cases(
        dir.path(),
        "config = { mode = \"trap\", name_prefix = \"bad\" }\n\
         [[case]]\nname = \"traps\"\ntext_fields = [\"bad1\"]\nexpect = { error = \"trap\" }\n",
    );
    let run = run_gale(&["plugins", "test", &wasm("test_fields_fault.wasm"), "--cases", &fault], None);
    assert_eq!(run.code(), Some(0), "{}{}", run.stdout, run.stderr);
}

#[test]
fn a_trapping_or_spinning_plugin_is_a_clear_failure() {
    let trap = call(&[&wasm(TEST_TRAP)]);
    assert_eq!(trap.code(), Some(1), "{}{}", trap.stdout, trap.stderr);
    assert!(trap.stdout.contains("on-request: error: plugin `test_trap` trapped in on-request"), "{}", trap.stdout);
    assert!(trap.stdout.contains("test-trap: trapping on purpose"), "the guest's panic: {}", trap.stdout);
    assert!(!trap.stdout.contains("RUST_BACKTRACE"), "nothing an author can act on: {}", trap.stdout);
    assert!(trap.stdout.contains("[trap]"), "{}", trap.stdout);

    // Under the default limit of `gale run` (run_gale fails the test if gale does not exit).
    let spin = call(&[&wasm(TEST_LOOP)]);
    assert_eq!(spin.code(), Some(1), "{}{}", spin.stdout, spin.stderr);
    assert!(
        spin.stdout.contains("plugin `test_loop` exceeded its time limit of 10ms in on-request"),
        "{}",
        spin.stdout
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let cases = write_cases(
        dir.path(),
        "[[case]]\nname = \"traps\"\nrequest = \"GET /\"\nexpect = { error = \"trap\" }\n\
         [[case]]\nname = \"should not trap\"\nrequest = \"GET /\"\n",
    );
    let run = run_gale(&["plugins", "test", &wasm(TEST_TRAP), "--cases", &cases], None);
    assert_eq!(run.code(), Some(1), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("ok    traps"), "{}", run.stdout);
    assert!(run.stdout.contains("FAIL  should not trap"), "{}", run.stdout);
    assert!(run.stdout.contains("  - on-request failed: plugin `test_trap` trapped"), "{}", run.stdout);
}

#[test]
fn inputs_that_cannot_run_are_one_line_errors_with_status_2() {
    let empty = tempfile::tempdir().expect("tempdir");
    let dir = empty.path().to_str().expect("utf-8");
    let missing = call(&["my-policy", "--plugin-dir", dir]);
    one_line_error(
        &missing,
        2,
        &["plugin `my-policy`: no my-policy.wasm or my_policy.wasm in the plugin directory", dir, "wasm32-wasip2"],
    );

    one_line_error(&call(&[&format!("{dir}/absent.wasm")]), 2, &["absent.wasm: no such file"]);
    one_line_error(
        &call(&[&wasm("test_two_worlds.wasm")]),
        2,
        &["exports the hooks of several worlds: header-policy (header-hooks), cache-policy (cache-hooks)"],
    );
    // A case written for another world is refused before anything runs, at its line.
    let cases = write_cases(empty.path(), "[[case]]\nname = \"x\"\nrequest = \"GET /\"\nexpect = { status = 403 }\n");
    let run = run_gale(&["plugins", "test", &wasm("static_cache.wasm"), "--cases", &cases], None);
    one_line_error(
        &run,
        2,
        &[&format!("{cases}:1: case \"x\": the plugin's world is cache-policy"), "header policies"],
    );
    let run = run_gale(&["plugins", "test", &wasm("upload_fields.wasm"), "--cases", &cases], None);
    one_line_error(&run, 2, &["the plugin's world is upload-fields: needs `text_fields` or `files`"]);
    one_line_error(&call(&[&wasm(HEADER_POLICY), "--request", "/admin"]), 2, &["--request", "METHOD /path"]);
    one_line_error(&call(&[&wasm(HEADER_POLICY), "-H", "no colon"]), 2, &["-H", "Name: value"]);
    one_line_error(&call(&[&wasm(HEADER_POLICY), "--response", "abc"]), 2, &["--response", "100 to 999"]);
    one_line_error(&call(&[&wasm(HEADER_POLICY), "--config", "{ deny = "]), 2, &["--config: not a TOML table"]);
    one_line_error(
        &call(&[&wasm(HEADER_POLICY), "--config", "{ deny = 3 }"]),
        2,
        &["plugin `header_policy` rejected its config: `deny`: invalid config"],
    );
    assert!(
        !call(&[&wasm(HEADER_POLICY), "--config", "{ deny = 3 }"]).stderr.contains(" at line "),
        "no JSON positions"
    );

    let cases = write_cases(empty.path(), "[[case]]\nname = \"x\"\nrequest = \"GET /\"\nexpect = { staus = 403 }\n");
    let run = run_gale(&["plugins", "test", &wasm(HEADER_POLICY), "--cases", &cases], None);
    one_line_error(&run, 2, &[&format!("{cases}:4:12: unknown field `staus`")]);
    let run = run_gale(&["plugins", "test", &wasm(HEADER_POLICY), "--cases", &format!("{dir}/nope.toml")], None);
    one_line_error(&run, 2, &["nope.toml: cannot read the cases file"]);
}

fn explain_config(dir: &Path, plugin_config: &str) -> String {
    let text = format!(
        "[global]\nplugin_dir = {plugins:?}\nplugin_cache_dir = {cache:?}\n\
         [upstream.app]\nservers = [\"127.0.0.1:9\"]\n\
         [[server]]\nlisten = [\"127.0.0.1:0\"]\n\
         [[server.location]]\npath = \"/\"\nproxy = {{ pass = \"app\" }}\n\
         plugins = [{{ name = \"header-policy\", config = {plugin_config} }}]\n",
        plugins = plugins::built_dir().display().to_string(),
        cache = dir.join("cache").display().to_string(),
    );
    let path = dir.join("gale.toml");
    std::fs::write(&path, text).expect("write config");
    path.to_str().expect("utf-8").to_owned()
}

#[test]
fn explain_exits_1_when_a_plugin_rejects_its_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let explain =
        |config: &str| run_gale(&["plugins", "explain", "--config", config, "--host", "a", "--path", "/"], None);

    let good = explain(&explain_config(dir.path(), r#"{ request = { set = { x-a = "1" } } }"#));
    assert_eq!(good.code(), Some(0), "{}{}", good.stdout, good.stderr);

    let bad = explain(&explain_config(dir.path(), "{ deny = 3 }"));
    assert_eq!(bad.code(), Some(1), "{}{}", bad.stdout, bad.stderr);
    assert!(
        bad.stdout.contains("error:    plugin `header-policy` rejected its config: `deny`: invalid config"),
        "{}",
        bad.stdout
    );
    assert!(!bad.stdout.contains(" at line "), "no JSON positions: {}", bad.stdout);
}

#[test]
fn check_reports_a_rejected_config_at_its_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = explain_config(dir.path(), r#"{ deny = [{ path_prefix = "/a", status = "x" }] }"#);
    // A second attachment whose plugin names no key: reported at its `config` table.
    let text = std::fs::read_to_string(&config).expect("read")
        + &format!(
            "[[server.location]]\npath = \"/t/\"\nstatic = {{ root = {root:?} }}\n\
             plugins = [{{ name = \"test-cache-fault\", config = {{ path_prefix = \"x\" }} }}]\n",
            root = dir.path().display().to_string()
        );
    std::fs::write(&config, &text).expect("write");
    let line_of = |needle: &str| 1 + text.lines().position(|l| l.contains(needle)).expect("in config");
    let col_of =
        |needle: &str, at: &str| 1 + text.lines().find(|l| l.contains(needle)).expect("line").find(at).expect("col");

    let check = run_gale(&["check", "--config", &config], None);
    assert_eq!(check.code(), Some(1), "{}{}", check.stdout, check.stderr);
    let lines = check.stderr_lines();
    let status = format!(
        "{config}:{}:{}: plugin `header-policy` rejected its config: `deny[0].status`: invalid config: \
         invalid type: string \"x\", expected u16",
        line_of("status = \"x\""),
        col_of("status = \"x\"", "status")
    );
    assert!(lines.contains(&status.as_str()), "want {status:?} in:\n{}", check.stderr);
    let table = format!(
        "{config}:{}:{}: plugin `test-cache-fault` rejected its config: the prefix must start with `/`",
        line_of("test-cache-fault"),
        col_of("test-cache-fault", "{ path_prefix")
    );
    assert!(lines.contains(&table.as_str()), "want {table:?} in:\n{}", check.stderr);
    assert!(!check.stderr.contains(" at line "), "no JSON positions: {}", check.stderr);
}
