//! The call protocol ([`Pool::call`]) and the containment it gives every
//! world, with the real guests built by `scripts/build-plugins.sh`: the
//! fixtures `test-cache-fault` and `test-fields-fault` spin or trap in the
//! `cache-policy` and `upload-fields` worlds, and must be quarantined (limit
//! hits) or answered per call (traps) exactly like header policies, in their
//! own tenant only, with the tenant's label in the metrics.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method, Uri};

use super::bindings::CachePolicyBindings;
use super::pool::Pool;
use super::tenant::Scope;
use super::test_support::table;
use super::*;
use crate::static_files::FileMeta;
use crate::upload::StoredFile;

fn plugins_dir() -> PathBuf {
    test_support::plugins_dir(&["test_cache_fault", "test_fields_fault", "header_policy"])
}

/// A tenant over the built guests; a long deadline (a spinning fixture
/// always reaches it; nothing else comes near it) and a long backoff.
fn tenant(name: &str, failures: u32, max_concurrent: usize, max_instances: usize) -> Tenant {
    Tenant::new(TenantSettings {
        name: name.into(),
        plugin_dir: plugins_dir(),
        limits: Limits { timeout: Duration::from_millis(200), ..Limits::default() },
        max_concurrent,
        max_instances,
        breaker: BreakerSettings { failures, backoff: Duration::from_secs(60), ..BreakerSettings::default() },
    })
}

fn metrics_text() -> String {
    let mut text = String::new();
    render_metrics(&mut text);
    text
}

fn assert_metrics(wants: &[String]) {
    let text = metrics_text();
    for want in wants {
        assert!(text.contains(want.as_str()), "missing {want} in\n{text}");
    }
}

/// A test-cache-fault pool of tenant `t`, loaded as the call protocol sees it.
async fn cache_pool(rt: &PluginRuntime, t: &Tenant) -> std::sync::Arc<Pool<CachePolicyBindings>> {
    let name = "test-cache-fault";
    let limits = t.settings().limits;
    rt.load_scoped::<CachePolicyBindings>(t.plugin_dir(), name, &toml::Table::new(), limits, Some(Scope::new(t, name)))
        .await
        .expect("loads")
}

#[tokio::test]
async fn a_call_keeps_its_instance_when_it_returns_and_drops_it_when_it_fails() {
    let rt = PluginRuntime::new(RuntimeOptions::default()).expect("runtime");
    let t = tenant("unit-call-protocol", 0, 4, 8);
    let pool = cache_pool(&rt, &t).await;
    assert_eq!(pool.idle_count(), 1, "the warm-up instance");

    let value = pool.call("decide", |i| async move { (i, Ok(7)) }).await.expect("returns");
    assert_eq!((value, pool.idle_count(), t.in_flight()), (7, 1, 0), "kept, slot freed");

    // An error that is not a trap or a limit hit (a host failure) is still a failed call.
    let failed = pool.call("decide", |i| async move { (i, Err::<(), _>(wasmtime::format_err!("host broke"))) }).await;
    let e = failed.expect_err("fails");
    assert!(matches!(&e, PluginError::Trap { hook: "decide", trap, .. } if trap.contains("host broke")), "{e}");
    assert_eq!((pool.idle_count(), t.in_flight()), (0, 0), "dropped, slot freed");

    // A call that never ends is stopped by the host deadline; its instance goes with it.
    let parked = pool.call("decide", |i| async move {
        std::future::pending::<()>().await;
        (i, Ok(()))
    });
    let e = parked.await.expect_err("stopped");
    assert!(matches!(e, PluginError::Timeout { hook: "decide", .. }), "{e}");
    assert_eq!((pool.idle_count(), t.in_flight()), (0, 0));

    // The next call makes a fresh instance, and keeps it.
    pool.call("decide", |i| async move { (i, Ok(())) }).await.expect("fresh instance");
    assert_eq!(pool.idle_count(), 1);

    let l = "tenant=\"unit-call-protocol\",plugin=\"test-cache-fault\",hook=\"decide\"";
    assert_metrics(&[
        format!("gale_plugin_calls_total{{{l},outcome=\"ok\"}} 2"),
        format!("gale_plugin_calls_total{{{l},outcome=\"trap\"}} 1"),
        format!("gale_plugin_calls_total{{{l},outcome=\"timeout\"}} 1"),
    ]);
}

#[tokio::test]
async fn a_call_is_refused_before_it_runs_when_the_tenant_has_no_slot() {
    let rt = PluginRuntime::new(RuntimeOptions::default()).expect("runtime");
    let t = tenant("unit-call-busy", 2, 1, 8);
    let pool = cache_pool(&rt, &t).await;
    // Another plugin of the tenant holds its only slot.
    let held = Scope::new(&t, "header-policy").admit("header-policy", "on-request", Duration::ZERO).await;
    let held = held.expect("admitted");
    let mut ran = false;
    let e = pool.call("decide", |i| {
        ran = true;
        async move { (i, Ok(())) }
    });
    let e = e.await.expect_err("busy");
    assert!(matches!(e, PluginError::Busy { hook: "decide", max_concurrent: 1, .. }), "{e}");
    assert!(!ran, "the guest was not called");
    drop(held);
    pool.call("decide", |i| async move { (i, Ok(())) }).await.expect("a free slot");
    assert_eq!(
        t.breakers().iter().find(|(n, _)| n == "test-cache-fault").expect("listed").1.state,
        BreakerState::Closed
    );
}

/// A GET of `path` and the meta of the file it names.
fn file(path: &str) -> (Uri, FileMeta) {
    let uri: Uri = path.parse().expect("uri");
    let meta = FileMeta {
        path: path.to_owned(),
        query: None,
        size: 1,
        mtime: SystemTime::UNIX_EPOCH,
        content_type: "text/plain".into(),
    };
    (uri, meta)
}

async fn decide(policy: &CachePolicy, path: &str) -> Result<Option<String>, PluginError> {
    let (uri, meta) = file(path);
    let headers = HeaderMap::new();
    let view = RequestView {
        method: &Method::GET,
        uri: &uri,
        headers: &headers,
        remote_addr: SocketAddr::from(([127, 0, 0, 1], 1)),
        scheme: "http",
        host: "t.test",
    };
    policy.decide(&view, &meta).await.map(|h| h.cache_control.and_then(|v| v.to_str().ok().map(str::to_owned)))
}

#[tokio::test]
async fn a_spinning_cache_policy_is_quarantined_in_its_tenant_only() {
    let rt = PluginRuntime::new(RuntimeOptions::default()).expect("runtime");
    let (a, b) = (tenant("unit-cache-a", 2, 4, 8), tenant("unit-cache-b", 2, 4, 8));
    let config = table("mode = \"spin\"\npath_prefix = \"/x\"");
    let in_a = rt.load_cache_policy_for(&a, "test-cache-fault", &config).await.expect("loads");
    let in_b = rt.load_cache_policy_for(&b, "test-cache-fault", &config).await.expect("loads");
    assert_eq!(in_a.tenant(), Some("unit-cache-a"));
    let answer = Some("max-age=60, test-cache-fault".to_owned());
    assert_eq!(decide(&in_a, "/fine").await.expect("answers"), answer);
    for _ in 0..2 {
        let e = decide(&in_a, "/x/file").await.expect_err("spins");
        assert!(matches!(e, PluginError::Timeout { hook: "decide", .. }), "{e}");
    }
    let e = decide(&in_a, "/fine").await.expect_err("quarantined");
    assert!(matches!(&e, PluginError::Quarantined { tenant, hook: "decide", .. } if tenant == "unit-cache-a"), "{e}");
    // The same plugin in tenant b: its own breaker, its own pool.
    assert_eq!(decide(&in_b, "/fine").await.expect("b is served"), answer);
    let state = |t: &Tenant| t.breakers().into_iter().find(|(n, _)| n == "test-cache-fault").expect("listed").1.state;
    assert_eq!((state(&a), state(&b)), (BreakerState::Open, BreakerState::Closed));

    let l = |t: &str| format!("tenant=\"{t}\",plugin=\"test-cache-fault\",hook=\"decide\"");
    assert_metrics(&[
        format!("gale_plugin_calls_total{{{},outcome=\"timeout\"}} 2", l("unit-cache-a")),
        format!("gale_plugin_calls_total{{{},outcome=\"quarantined\"}} 1", l("unit-cache-a")),
        format!("gale_plugin_quarantines_total{{{}}} 1", l("unit-cache-a")),
        "gale_plugin_quarantined{tenant=\"unit-cache-a\",plugin=\"test-cache-fault\"} 1".to_owned(),
        format!("gale_plugin_calls_total{{{},outcome=\"ok\"}} 1", l("unit-cache-b")),
        format!("gale_plugin_calls_total{{{},outcome=\"timeout\"}} 0", l("unit-cache-b")),
        "gale_plugin_quarantined{tenant=\"unit-cache-b\",plugin=\"test-cache-fault\"} 0".to_owned(),
    ]);
}

#[tokio::test]
async fn a_trapping_cache_policy_fails_per_call_and_stays_in_service() {
    let rt = PluginRuntime::new(RuntimeOptions::default()).expect("runtime");
    let t = tenant("unit-cache-trap", 2, 4, 8);
    let config = table("mode = \"trap\"\npath_prefix = \"/x\"");
    let policy = rt.load_cache_policy_for(&t, "test-cache-fault", &config).await.expect("loads");
    for round in 0..10 {
        let e = decide(&policy, "/x/file").await.expect_err("traps");
        assert!(matches!(&e, PluginError::Trap { trap, .. } if trap.contains("trapping on purpose")), "{e}");
        assert!(decide(&policy, "/fine").await.is_ok(), "round {round}");
    }
    let (_, b) = t.breakers().into_iter().find(|(n, _)| n == "test-cache-fault").expect("listed");
    assert_eq!((b.state, b.recent_failures), (BreakerState::Closed, 0));
    let l = "tenant=\"unit-cache-trap\",plugin=\"test-cache-fault\",hook=\"decide\"";
    assert_metrics(&[
        format!("gale_plugin_calls_total{{{l},outcome=\"trap\"}} 10"),
        format!("gale_plugin_calls_total{{{l},outcome=\"ok\"}} 10"),
        format!("gale_plugin_quarantines_total{{{l}}} 0"),
    ]);
}

fn stored(field: &'static [u8]) -> StoredFile {
    StoredFile {
        field_name: Bytes::from_static(field),
        filename: Bytes::from_static(b"a.txt"),
        raw_filename: Bytes::from_static(b"a.txt"),
        content_type: Bytes::from_static(b"text/plain"),
        path: "/store/0001".into(),
        store_name: "0001".into(),
        size: 1,
        md5: "0cc175b9c0f1b6a831c399e269772661".into(),
        sha256: None,
    }
}

#[tokio::test]
async fn a_spinning_upload_fields_plugin_is_quarantined_in_its_tenant_only() {
    let rt = PluginRuntime::new(RuntimeOptions::default()).expect("runtime");
    let (a, b) = (tenant("unit-fields-a", 2, 4, 8), tenant("unit-fields-b", 2, 4, 8));
    let config = table("mode = \"spin\"\nname_prefix = \"bad\"");
    let in_a = rt.load_upload_fields_for(&a, "test-fields-fault", &config).await.expect("loads");
    let in_b = rt.load_upload_fields_for(&b, "test-fields-fault", &config).await.expect("loads");
    assert_eq!(in_a.tenant(), Some("unit-fields-a"));
    for _ in 0..2 {
        let e = in_a.text_decision(b"bad_name").await.expect_err("spins");
        assert!(matches!(e, PluginError::Timeout { hook: "text-field", .. }), "{e}");
    }
    // The breaker is the plugin's: its other hook is refused too.
    let e = in_a.fields_for(&stored(b"upload")).await.expect_err("quarantined");
    assert!(matches!(&e, PluginError::Quarantined { hook: "file-fields", .. }), "{e}");
    let fields = in_b.fields_for(&stored(b"upload")).await.expect("b is served");
    assert_eq!(fields[0].name, Bytes::from_static(b"upload_fixture"));

    let l = |t: &str, hook: &str| format!("tenant=\"{t}\",plugin=\"test-fields-fault\",hook=\"{hook}\"");
    assert_metrics(&[
        format!("gale_plugin_calls_total{{{},outcome=\"ok\"}} 1", l("unit-fields-a", "needs-sha256")),
        format!("gale_plugin_calls_total{{{},outcome=\"timeout\"}} 2", l("unit-fields-a", "text-field")),
        format!("gale_plugin_quarantines_total{{{}}} 1", l("unit-fields-a", "text-field")),
        format!("gale_plugin_calls_total{{{},outcome=\"quarantined\"}} 1", l("unit-fields-a", "file-fields")),
        "gale_plugin_quarantined{tenant=\"unit-fields-a\",plugin=\"test-fields-fault\"} 1".to_owned(),
        format!("gale_plugin_calls_total{{{},outcome=\"ok\"}} 1", l("unit-fields-b", "file-fields")),
        "gale_plugin_quarantined{tenant=\"unit-fields-b\",plugin=\"test-fields-fault\"} 0".to_owned(),
    ]);
}

#[tokio::test]
async fn a_trapping_upload_fields_plugin_fails_per_call_and_stays_in_service() {
    let rt = PluginRuntime::new(RuntimeOptions::default()).expect("runtime");
    let t = tenant("unit-fields-trap", 2, 4, 8);
    let config = table("mode = \"trap\"\nname_prefix = \"bad\"");
    let plugin = rt.load_upload_fields_for(&t, "test-fields-fault", &config).await.expect("loads");
    for round in 0..10 {
        let e = plugin.fields_for(&stored(b"bad_file")).await.expect_err("traps");
        assert!(matches!(&e, PluginError::Trap { hook: "file-fields", .. }), "{e}");
        assert!(plugin.text_decision(b"fine").await.is_ok(), "round {round}");
    }
    let (_, b) = t.breakers().into_iter().find(|(n, _)| n == "test-fields-fault").expect("listed");
    assert_eq!(b.state, BreakerState::Closed);
    let l = |hook: &str| format!("tenant=\"unit-fields-trap\",plugin=\"test-fields-fault\",hook=\"{hook}\"");
    assert_metrics(&[
        format!("gale_plugin_calls_total{{{},outcome=\"trap\"}} 10", l("file-fields")),
        format!("gale_plugin_calls_total{{{},outcome=\"ok\"}} 10", l("text-field")),
        format!("gale_plugin_quarantines_total{{{}}} 0", l("file-fields")),
    ]);
}

#[tokio::test]
async fn load_any_for_puts_every_world_under_the_tenant_and_its_instance_cap() {
    let rt = PluginRuntime::new(RuntimeOptions::default()).expect("runtime");
    let t = tenant("unit-any-world", 2, 4, 1);
    let none = toml::Table::new();
    let header = rt.load_any_for(&t, "header-policy", &none).await.expect("loads");
    let cache = rt.load_any_for(&t, "test-cache-fault", &none).await.expect("loads");
    let fields = rt.load_any_for(&t, "test-fields-fault", &none).await.expect("loads");
    let tenants: Vec<_> = [&header, &cache, &fields]
        .iter()
        .map(|p| match p {
            LoadedPlugin::Header(p) => (p.tenant(), "header-policy"),
            LoadedPlugin::Cache(p) => (p.tenant(), "cache-policy"),
            LoadedPlugin::UploadFields(p) => (p.tenant(), "upload-fields"),
        })
        .collect();
    let mine = Some("unit-any-world");
    assert_eq!(tenants, [(mine, "header-policy"), (mine, "cache-policy"), (mine, "upload-fields")]);
    // One warm instance across the three pools: the tenant's cap, whatever the world.
    assert_eq!(t.idle_instances(), 1);
    // A plugin outside the tenant's directory is not found, whatever the world.
    let e = rt.load_any_for(&t, "static-cache-elsewhere", &none).await.expect_err("not found");
    assert!(matches!(e, PluginError::NotFound { .. }), "{e}");
}
