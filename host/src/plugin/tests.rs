//! Runtime tests against the real guest plugins built by
//! `scripts/build-plugins.sh` into `<repo>/target/plugins/`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};

use super::test_support::{relaxed, runtime, table};
use super::*;

fn plugins_dir() -> PathBuf {
    test_support::plugins_dir(&["header_policy", "test_loop", "test_trap", "test_oom"])
}

/// A request and what a view of it needs.
struct Req {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Req {
    fn get(target: &str) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("www.example.org"));
        headers.insert("user-agent", HeaderValue::from_static("curl/8"));
        headers.insert("x-debug", HeaderValue::from_static("1"));
        Self { method: Method::GET, uri: target.parse().expect("uri"), headers }
    }

    fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            uri: &self.uri,
            headers: &self.headers,
            remote_addr: SocketAddr::from(([192, 0, 2, 7], 51234)),
            scheme: "https",
            host: "www.example.org",
        }
    }
}

async fn load(rt: &PluginRuntime, name: &str, config: &str, limits: Limits) -> HeaderPolicy {
    rt.load_header_policy(&plugins_dir(), name, &table(config), limits)
        .await
        .unwrap_or_else(|e| panic!("{name} loads: {e}"))
}

fn continued(action: RequestAction) -> HeaderEdits {
    match action {
        RequestAction::Continue(edits) => edits,
        RequestAction::Respond(r) => panic!("expected continue, got {}", r.status()),
    }
}

#[test]
fn handles_can_be_shared_across_tasks() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<PluginRuntime>();
    shareable::<HeaderPolicy>();
    fn sendable<T: Send + Sync + 'static>() {}
    sendable::<PluginError>();
}

const POLICY: &str = r#"
[request]
set = { x-real-ip = "$remote_addr", x-scheme = "$scheme", x-target = "$host$request_uri", x-ua = "$http_user_agent" }
remove = ["x-debug"]
[response]
set = { x-frame-options = "DENY" }
remove = ["server"]
[[deny]]
path_prefix = "/admin"
status = 403
"#;

#[tokio::test]
async fn header_policy_sets_and_removes_request_headers() {
    let cache = tempfile::tempdir().expect("tempdir");
    let policy = load(&runtime(cache.path()), "header-policy", POLICY, relaxed()).await;
    let req = Req::get("/app?x=1");
    let edits = continued(policy.on_request(&req.view()).await.expect("on-request"));
    let mut headers = req.headers.clone();
    edits.apply(&mut headers);
    assert_eq!(headers["x-real-ip"], "192.0.2.7");
    assert_eq!(headers["x-scheme"], "https");
    assert_eq!(headers["x-target"], "www.example.org/app?x=1");
    assert_eq!(headers["x-ua"], "curl/8");
    assert!(!headers.contains_key("x-debug"));
    assert_eq!(headers["host"], "www.example.org");
}

/// [`POLICY`] with `memoize = false`: every hook call reaches the guest.
fn unremembered() -> String {
    format!("memoize = false\n{POLICY}")
}

#[tokio::test]
async fn remembered_answers_are_the_answers() {
    let cache = tempfile::tempdir().expect("tempdir");
    let rt = runtime(cache.path());
    let remembered = load(&rt, "header-policy", POLICY, relaxed()).await;
    let every_time = load(&rt, "header-policy", &unremembered(), relaxed()).await;
    let targets = ["/app?x=1", "/app?x=1", "/app?x=2", "/admin", "/admin", "/admin/x", "/app?x=1"];
    for target in targets {
        let req = Req::get(target);
        let a = remembered.on_request(&req.view()).await.expect("on-request");
        let b = every_time.on_request(&req.view()).await.expect("on-request");
        match (a, b) {
            (RequestAction::Continue(a), RequestAction::Continue(b)) => assert_eq!(a, b, "{target}"),
            (RequestAction::Respond(a), RequestAction::Respond(b)) => {
                assert_eq!((a.status(), a.headers(), a.body()), (b.status(), b.headers(), b.body()), "{target}");
            }
            _ => panic!("{target}: the remembered answer differs"),
        }
        for status in [StatusCode::OK, StatusCode::NOT_FOUND] {
            let mut a = HeaderMap::new();
            a.insert("server", HeaderValue::from_static("TornadoServer/6.4"));
            let mut b = a.clone();
            remembered.on_response(&req.view(), status, &mut a).await.expect("on-response");
            every_time.on_response(&req.view(), status, &mut b).await.expect("on-response");
            assert_eq!(a, b, "{target} {status}");
            assert_eq!(a["x-frame-options"], "DENY");
        }
    }
    // on-request reads the path and query (`$request_uri`, the deny rule):
    // four distinct requests; on-response reads nothing of the request but
    // is keyed by status: two.
    assert_eq!(remembered.remembered(), (4, 2));
    assert_eq!(every_time.remembered(), (0, 0));
    // The guest counted only the denials it was called for.
    assert_eq!(remembered.counters(), vec![("denied".to_string(), 2)]);
    assert_eq!(every_time.counters(), vec![("denied".to_string(), 3)]);
}

#[tokio::test]
async fn header_policy_edits_response_headers() {
    let cache = tempfile::tempdir().expect("tempdir");
    let policy = load(&runtime(cache.path()), "header_policy", POLICY, relaxed()).await;
    let req = Req::get("/");
    let mut headers = HeaderMap::new();
    headers.insert("server", HeaderValue::from_static("TornadoServer/6.4"));
    headers.insert("content-type", HeaderValue::from_static("text/html"));
    policy.on_response(&req.view(), StatusCode::OK, &mut headers).await.expect("on-response");
    assert!(!headers.contains_key("server"));
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["content-type"], "text/html");
}

#[tokio::test]
async fn header_policy_denies_without_the_backend() {
    let cache = tempfile::tempdir().expect("tempdir");
    let policy = load(&runtime(cache.path()), "header-policy", POLICY, relaxed()).await;
    for target in ["/admin", "/admin/users?id=1", "/%61dmin"] {
        let req = Req::get(target);
        match policy.on_request(&req.view()).await.expect("on-request") {
            RequestAction::Respond(resp) => {
                assert_eq!(resp.status(), StatusCode::FORBIDDEN);
                assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
                assert_eq!(resp.body().as_ref(), b"403 Forbidden\n");
            }
            RequestAction::Continue(_) => panic!("{target} must be denied"),
        }
    }
    assert_eq!(policy.counters(), vec![("denied".to_string(), 3)]);
}

#[tokio::test]
async fn empty_config_changes_nothing() {
    let cache = tempfile::tempdir().expect("tempdir");
    let policy = load(&runtime(cache.path()), "header-policy", "", relaxed()).await;
    let req = Req::get("/admin");
    assert!(continued(policy.on_request(&req.view()).await.expect("on-request")).is_empty());
    let mut headers = HeaderMap::new();
    headers.insert("server", HeaderValue::from_static("x"));
    let before = headers.clone();
    policy.on_response(&req.view(), StatusCode::OK, &mut headers).await.expect("on-response");
    assert_eq!(headers, before);
}

#[tokio::test]
async fn defaults_file_is_merged_under_the_attachment_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(plugins_dir().join("header_policy.wasm"), dir.path().join("header_policy.wasm")).expect("copy");
    std::fs::write(dir.path().join("header-policy.toml"), "[response.set]\nx-a = \"default\"\nx-b = \"default\"\n")
        .expect("write");
    let rt = runtime(&dir.path().join("cache"));
    let policy = rt
        .load_header_policy(dir.path(), "header-policy", &table("response.set.x-b = \"attached\""), relaxed())
        .await
        .expect("loads");
    let mut headers = HeaderMap::new();
    policy.on_response(&Req::get("/").view(), StatusCode::OK, &mut headers).await.expect("ok");
    assert_eq!(headers["x-a"], "default");
    assert_eq!(headers["x-b"], "attached");
}

#[tokio::test]
async fn warm_instances_are_reused() {
    let cache = tempfile::tempdir().expect("tempdir");
    let policy = load(&runtime(cache.path()), "header-policy", POLICY, relaxed()).await;
    assert_eq!(policy.idle_instances(), 1, "load leaves the configured instance warm");
    for _ in 0..5 {
        policy.on_request(&Req::get("/").view()).await.expect("on-request");
    }
    assert_eq!(policy.idle_instances(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_one_policy() {
    let cache = tempfile::tempdir().expect("tempdir");
    // Every call reaches the guest (nothing remembered), so that the calls
    // really run concurrently and the guest counts each denial.
    let policy = load(&runtime(cache.path()), "header-policy", &unremembered(), relaxed()).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let policy = policy.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    let req = Req::get(if i % 2 == 0 { "/admin" } else { "/" });
                    policy.on_request(&req.view()).await.expect("on-request");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    assert_eq!(policy.counters(), vec![("denied".to_string(), 200)]);
    assert!(policy.idle_instances() >= 1);
}

#[tokio::test]
async fn a_loop_is_cut_off_at_its_deadline_and_the_plugin_recovers() {
    let cache = tempfile::tempdir().expect("tempdir");
    let limits = Limits { timeout: Duration::from_millis(50), ..Limits::default() };
    let policy = load(&runtime(cache.path()), "test-loop", "path_prefix = \"/loop\"", limits).await;
    for _ in 0..2 {
        let start = Instant::now();
        let err = policy.on_request(&Req::get("/loop").view()).await.expect_err("loops");
        let elapsed = start.elapsed();
        assert!(
            matches!(err, PluginError::Timeout { hook, limit, .. } if hook == "on-request" && limit == limits.timeout),
            "{err:?}"
        );
        assert!(err.is_call_error());
        assert!(err.to_string().contains("test-loop"), "{err}");
        // Generous bound for a loaded 2-core machine; the point is "not forever".
        assert!(elapsed < Duration::from_secs(2), "cut off after {elapsed:?}");
        assert_eq!(policy.idle_instances(), 0, "the interrupted instance is discarded");
        let edits = continued(policy.on_request(&Req::get("/fine").view()).await.expect("works"));
        let mut headers = HeaderMap::new();
        edits.apply(&mut headers);
        assert_eq!(headers["x-fixture"], "test-loop");
    }
}

#[tokio::test]
async fn a_sleeping_guest_is_stopped_by_the_host_deadline() {
    let cache = tempfile::tempdir().expect("tempdir");
    let rt = runtime(cache.path());
    // The epoch ticker sleeps while no guest code runs, and must resume.
    drop(load(&rt, "header-policy", POLICY, relaxed()).await);
    wait_for_ticker_sleep(&rt).await;
    let limits = Limits { timeout: Duration::from_millis(50), ..Limits::default() };
    let sleeper = load(&rt, "test-loop", "path_prefix = \"/sleep\"\nsleep = true", limits).await;
    let start = Instant::now();
    let err = sleeper.on_request(&Req::get("/sleep").view()).await.expect_err("sleeps");
    assert!(matches!(err, PluginError::Timeout { hook: "on-request", .. }), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(2), "stopped after {:?}", start.elapsed());
    sleeper.on_request(&Req::get("/fine").view()).await.expect("a fresh instance works");
    let spinner = load(&rt, "test-loop", "path_prefix = \"/loop\"", limits).await;
    let err = spinner.on_request(&Req::get("/loop").view()).await.expect_err("loops");
    assert!(matches!(err, PluginError::Timeout { hook: "on-request", .. }), "{err:?}");
}

/// Waits until the epoch ticker has gone to sleep (100 ms after the last
/// guest code ran), failing after a generous bound.
async fn wait_for_ticker_sleep(rt: &PluginRuntime) {
    let start = Instant::now();
    while !rt.ticker_sleeping() {
        assert!(start.elapsed() < Duration::from_secs(5), "the epoch ticker never went to sleep");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_epoch_ticker_sleeps_between_calls_and_a_loop_still_meets_its_deadline() {
    let cache = tempfile::tempdir().expect("tempdir");
    let rt = runtime(cache.path());
    let limits = Limits { timeout: Duration::from_millis(50), ..Limits::default() };
    let spinner = load(&rt, "test-loop", "path_prefix = \"/loop\"", limits).await;
    for _ in 0..2 {
        // Asleep: an idle gale with plugins is not woken every millisecond.
        wait_for_ticker_sleep(&rt).await;
        let start = Instant::now();
        let err = spinner.on_request(&Req::get("/loop").view()).await.expect_err("loops");
        assert!(matches!(err, PluginError::Timeout { hook: "on-request", .. }), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(2), "cut off after {:?}", start.elapsed());
    }
}

#[tokio::test]
async fn policies_are_only_called_for_the_hooks_they_declare() {
    let cache = tempfile::tempdir().expect("tempdir");
    let rt = runtime(cache.path());
    let wants = |p: &HeaderPolicy| (p.wants_request(), p.wants_response());
    let response_only =
        load(&rt, "header-policy", "response = { set = { x-frame-options = \"DENY\" } }", relaxed()).await;
    assert_eq!(wants(&response_only), (false, true));
    let request_only = load(&rt, "header-policy", "request = { remove = [\"x-debug\"] }", relaxed()).await;
    assert_eq!(wants(&request_only), (true, false));
    let deny_only = load(&rt, "header-policy", "deny = [{ path_prefix = \"/admin\", status = 403 }]", relaxed()).await;
    assert_eq!(wants(&deny_only), (true, false));
    assert_eq!(wants(&load(&rt, "header-policy", "", relaxed()).await), (false, false));
    assert_eq!(wants(&load(&rt, "header-policy", POLICY, relaxed()).await), (true, true));
    // A policy built against `header-policy` alone declares nothing: every hook.
    assert_eq!(wants(&load(&rt, "test-trap", "path_prefix = \"/trap\"", relaxed()).await), (true, true));

    let req = Req::get("/");
    // Not called: no edits, and the headers stay as they are.
    assert!(continued(response_only.on_request(&req.view()).await.expect("skipped")).is_empty());
    let mut headers = HeaderMap::new();
    headers.insert("server", HeaderValue::from_static("TornadoServer/6.4"));
    request_only.on_response(&req.view(), StatusCode::OK, &mut headers).await.expect("skipped");
    assert_eq!(headers.len(), 1);
    // Called: the declared hooks still run.
    response_only.on_response(&req.view(), StatusCode::OK, &mut headers).await.expect("runs");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(matches!(deny_only.on_request(&Req::get("/admin").view()).await, Ok(RequestAction::Respond(_))));

    // Headers are copied in only for a policy that reads them.
    assert!(!response_only.wants_request_headers() && !deny_only.wants_request_headers());
    let reads = load(&rt, "header-policy", "response = { set = { x-ua = \"$http_user_agent\" } }", relaxed()).await;
    assert!(reads.wants_request_headers());
    let mut headers = HeaderMap::new();
    reads.on_response(&req.view(), StatusCode::OK, &mut headers).await.expect("runs");
    assert_eq!(headers["x-ua"], "curl/8");
    let converted = HookRequest::for_policies(&req.view(), [&response_only, &reads]);
    let mut headers = HeaderMap::new();
    reads.on_response_with(&converted, StatusCode::OK, &mut headers).await.expect("runs");
    assert_eq!(headers["x-ua"], "curl/8", "one reader is enough to copy them");
}

#[tokio::test]
async fn one_converted_request_serves_every_hook() {
    let cache = tempfile::tempdir().expect("tempdir");
    let policy = load(&runtime(cache.path()), "header-policy", POLICY, relaxed()).await;
    let req = Req::get("/app?x=1");
    let converted = HookRequest::new(&req.view());
    for _ in 0..2 {
        let shared = continued(policy.on_request_with(&converted).await.expect("on-request"));
        assert_eq!(shared, continued(policy.on_request(&req.view()).await.expect("on-request")));
        let (mut a, mut b) = (HeaderMap::new(), HeaderMap::new());
        policy.on_response_with(&converted, StatusCode::OK, &mut a).await.expect("on-response");
        policy.on_response(&req.view(), StatusCode::OK, &mut b).await.expect("on-response");
        assert_eq!((a.len(), a), (1, b));
    }
}

#[tokio::test]
async fn a_trap_fails_every_time_and_the_next_call_works() {
    let cache = tempfile::tempdir().expect("tempdir");
    let policy = load(&runtime(cache.path()), "test-trap", "path_prefix = \"/trap\"", relaxed()).await;
    for _ in 0..3 {
        let err = policy.on_request(&Req::get("/trap").view()).await.expect_err("traps");
        let PluginError::Trap { ref plugin, hook, ref trap } = err else {
            panic!("expected a trap, got {err:?}");
        };
        assert_eq!((plugin.as_str(), hook), ("test-trap", "on-request"));
        assert!(trap.contains("unreachable"), "{trap}");
        assert!(trap.contains("test-trap: trapping on purpose"), "panic message kept: {trap}");
        assert!(err.to_string().starts_with("plugin `test-trap` trapped in on-request: "));
        policy.on_request(&Req::get("/fine").view()).await.expect("next call works");
    }
}

#[tokio::test]
async fn memory_growth_stops_at_the_limit() {
    let cache = tempfile::tempdir().expect("tempdir");
    let limits = Limits { memory: 4 * 1024 * 1024, ..relaxed() };
    let policy = load(&runtime(cache.path()), "test-oom", "path_prefix = \"/oom\"", limits).await;
    let err = policy.on_request(&Req::get("/oom").view()).await.expect_err("runs out");
    assert!(
        matches!(err, PluginError::MemoryLimit { limit, hook, .. } if limit == 4 * 1024 * 1024 && hook == "on-request"),
        "{err:?}"
    );
    policy.on_request(&Req::get("/fine").view()).await.expect("a fresh instance works");
}

#[tokio::test]
async fn a_rejected_config_returns_the_plugins_message() {
    let cache = tempfile::tempdir().expect("tempdir");
    let err = runtime(cache.path())
        .load_header_policy(&plugins_dir(), "header-policy", &table("request.set = { x-a = \"$nope\" }"), relaxed())
        .await
        .expect_err("rejected");
    let PluginError::Config { ref plugin, ref message } = err else {
        panic!("expected a config error, got {err:?}");
    };
    assert_eq!(plugin, "header-policy");
    assert!(message.contains("request.set.x-a") && message.contains("$nope"), "{message}");
    assert!(!err.is_call_error());
}

#[tokio::test]
async fn a_missing_plugin_is_not_found() {
    let cache = tempfile::tempdir().expect("tempdir");
    let err = runtime(cache.path())
        .load_header_policy(&plugins_dir(), "no-such-plugin", &toml::Table::new(), relaxed())
        .await
        .expect_err("missing");
    assert!(matches!(err, PluginError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-plugin.wasm"), "{err}");
}

#[tokio::test]
async fn files_that_are_not_header_policies_are_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    // An empty core module, an empty component (no exports) and garbage.
    std::fs::write(dir.path().join("core.wasm"), b"\0asm\x01\0\0\0").expect("write");
    std::fs::write(dir.path().join("empty.wasm"), b"\0asm\x0d\0\x01\0").expect("write");
    std::fs::write(dir.path().join("junk.wasm"), b"#!/bin/sh\necho hi\n").expect("write");
    let rt = runtime(&dir.path().join("cache"));
    let load = |name: &'static str| {
        let rt = rt.clone();
        let dir = dir.path().to_owned();
        async move { rt.load_header_policy(&dir, name, &toml::Table::new(), relaxed()).await.expect_err("refused") }
    };
    let core = load("core").await;
    assert!(matches!(core, PluginError::Compile { .. }), "{core:?}");
    assert!(core.to_string().contains("not a valid WebAssembly component"), "{core}");
    let junk = load("junk").await;
    assert!(matches!(junk, PluginError::Compile { .. }), "{junk:?}");
    assert!(junk.to_string().contains("not a WebAssembly file"), "{junk}");
    let empty = load("empty").await;
    assert!(matches!(empty, PluginError::WrongWorld { world: "header-policy", .. }), "{empty:?}");
    assert!(empty.to_string().contains("header-hooks"), "{empty}");
}

#[tokio::test]
async fn compiled_plugins_are_cached_on_disk_and_reused() {
    let cache = tempfile::tempdir().expect("tempdir");
    let wasm = plugins_dir().join("header_policy.wasm");
    let first = runtime(cache.path());
    let file = first.cache_file_for(&wasm).expect("cache in use");
    assert!(!file.exists());
    load(&first, "header-policy", POLICY, relaxed()).await;
    assert!(file.is_file(), "{} written", file.display());
    let written = std::fs::metadata(&file).and_then(|m| m.modified()).expect("mtime");
    // A restart (a new runtime) loads the cached file instead of compiling
    // (a compile would rewrite it).
    let second = runtime(cache.path());
    assert_eq!(second.cache_file_for(&wasm).as_deref(), Some(file.as_path()));
    let policy = load(&second, "header-policy", POLICY, relaxed()).await;
    policy.on_request(&Req::get("/").view()).await.expect("cached plugin runs");
    let after = std::fs::metadata(&file).and_then(|m| m.modified()).expect("mtime");
    assert_eq!(written, after, "the cached file was not rewritten");
}

#[tokio::test]
async fn an_unsafe_cache_folder_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let cache = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let rt = runtime(cache.path());
    assert_eq!(rt.cache_file_for(&plugins_dir().join("header_policy.wasm")), None);
    load(&rt, "header-policy", "", relaxed()).await;
}
