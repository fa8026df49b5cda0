//! Tenants with the real guests (built by `scripts/build-plugins.sh` into
//! `<repo>/target/plugins/`): timeouts and memory-limit hits count toward
//! the breaker and the metrics, traps only toward the metrics; two tenants
//! never share a pool; the warm-instance cap spans a tenant's pools.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderMap, Method, Uri};

use super::*;

fn plugins_dir() -> PathBuf {
    test_support::plugins_dir(&["test_oom", "test_loop", "test_trap"])
}

fn tenant(name: &str, failures: u32, max_instances: usize) -> Tenant {
    Tenant::new(TenantSettings {
        name: name.into(),
        plugin_dir: plugins_dir(),
        // Long enough that test-oom always reaches its memory limit first, even in a debug build
        // on a loaded machine (at 50 ms it sometimes timed out instead).
        limits: Limits { timeout: Duration::from_millis(500), ..Limits::default() },
        max_concurrent: 4,
        max_instances,
        breaker: BreakerSettings { failures, backoff: Duration::from_secs(60), ..BreakerSettings::default() },
    })
}

async fn call(policy: &HeaderPolicy, target: &str) -> Result<RequestAction, PluginError> {
    let (method, uri, headers): (Method, Uri, HeaderMap) =
        (Method::GET, target.parse().expect("uri"), HeaderMap::new());
    let view = RequestView {
        method: &method,
        uri: &uri,
        headers: &headers,
        remote_addr: SocketAddr::from(([127, 0, 0, 1], 1)),
        scheme: "http",
        host: "t.test",
    };
    policy.on_request(&view).await
}

fn metrics_text() -> String {
    let mut text = String::new();
    render_metrics(&mut text);
    text
}

#[tokio::test]
async fn memory_hits_and_timeouts_quarantine_the_plugin() {
    let rt = PluginRuntime::new(RuntimeOptions::default()).expect("runtime");
    let t = tenant("unit-breaker", 2, 8);
    let table = |text: &str| text.parse::<toml::Table>().expect("toml");
    let oom = rt.load_header_policy_for(&t, "test-oom", &table("path_prefix = \"/x\"")).await.expect("loads");
    let spin = rt.load_header_policy_for(&t, "test-loop", &table("path_prefix = \"/x\"")).await.expect("loads");
    assert_eq!(oom.tenant(), Some("unit-breaker"));

    for _ in 0..2 {
        let e = call(&oom, "/x").await.expect_err("oom");
        assert!(matches!(e, PluginError::MemoryLimit { .. }), "{e}");
    }
    let e = call(&oom, "/fine").await.expect_err("quarantined");
    assert!(e.is_quarantined(), "{e}");
    // The other plugin of the tenant has its own breaker.
    assert!(call(&spin, "/fine").await.is_ok());
    for _ in 0..2 {
        let e = call(&spin, "/x").await.expect_err("spins");
        assert!(matches!(e, PluginError::Timeout { .. }), "{e}");
    }
    assert!(call(&spin, "/fine").await.expect_err("quarantined").is_quarantined());
    let states: Vec<_> = t.breakers().into_iter().map(|(name, b)| (name, b.state)).collect();
    assert_eq!(states, [("test-loop".to_owned(), BreakerState::Open), ("test-oom".to_owned(), BreakerState::Open)]);

    let text = metrics_text();
    let l = |plugin: &str| format!("tenant=\"unit-breaker\",plugin=\"{plugin}\",hook=\"on-request\"");
    for want in [
        format!("gale_plugin_calls_total{{{},outcome=\"memory_limit\"}} 2", l("test-oom")),
        format!("gale_plugin_calls_total{{{},outcome=\"quarantined\"}} 1", l("test-oom")),
        format!("gale_plugin_quarantines_total{{{}}} 1", l("test-oom")),
        format!("gale_plugin_calls_total{{{},outcome=\"timeout\"}} 2", l("test-loop")),
        format!("gale_plugin_calls_total{{{},outcome=\"ok\"}} 1", l("test-loop")),
        "gale_plugin_quarantined{tenant=\"unit-breaker\",plugin=\"test-oom\"} 1".to_owned(),
    ] {
        assert!(text.contains(&want), "missing {want} in\n{text}");
    }
}

#[tokio::test]
async fn traps_are_counted_but_never_quarantine_the_plugin() {
    let rt = PluginRuntime::new(RuntimeOptions::default()).expect("runtime");
    let t = tenant("unit-traps", 2, 8);
    let config = "path_prefix = \"/x\"".parse::<toml::Table>().expect("toml");
    let trap = rt.load_header_policy_for(&t, "test-trap", &config).await.expect("loads");
    for round in 0..20 {
        let e = call(&trap, "/x").await.expect_err("traps");
        assert!(matches!(e, PluginError::Trap { .. }), "{e}");
        assert!(!e.is_limit_hit());
        // The next request, another client's, gets the plugin as usual.
        assert!(call(&trap, "/fine").await.is_ok(), "round {round}");
    }
    let (_, b) = &t.breakers()[0];
    assert_eq!((b.state, b.recent_failures, b.recent_calls), (BreakerState::Closed, 0, 40));
    let text = metrics_text();
    let l = "tenant=\"unit-traps\",plugin=\"test-trap\",hook=\"on-request\"";
    for want in [
        format!("gale_plugin_calls_total{{{l},outcome=\"trap\"}} 20"),
        format!("gale_plugin_calls_total{{{l},outcome=\"ok\"}} 20"),
        format!("gale_plugin_calls_total{{{l},outcome=\"quarantined\"}} 0"),
        format!("gale_plugin_quarantines_total{{{l}}} 0"),
    ] {
        assert!(text.contains(&want), "missing {want} in\n{text}");
    }
}

#[tokio::test]
async fn tenants_never_share_a_pool_and_cap_warm_instances_across_theirs() {
    let rt = PluginRuntime::new(RuntimeOptions::default()).expect("runtime");
    let (a, b) = (tenant("unit-pools-a", 5, 1), tenant("unit-pools-b", 5, 1));
    let empty = toml::Table::new();
    let a1 = rt.load_header_policy_for(&a, "header-policy", &empty).await.expect("loads");
    let b1 = rt.load_header_policy_for(&b, "header-policy", &empty).await.expect("loads");
    assert_eq!((a1.idle_instances(), b1.idle_instances()), (1, 1), "each tenant keeps its own warm instance");
    // A second attachment in tenant a: its warm-up instance is dropped, a is at max_instances.
    let a2 = rt.load_header_policy_for(&a, "header-policy", &empty).await.expect("loads");
    assert_eq!((a1.idle_instances(), a2.idle_instances(), a.idle_instances()), (1, 0, 1));
    call(&a2, "/").await.expect("a fresh instance serves the call");
    assert_eq!(a2.idle_instances(), 0, "and is not kept");
    call(&a1, "/").await.expect("the warm one is reused");
    assert_eq!((a1.idle_instances(), a.idle_instances()), (1, 1));
    drop(a1);
    assert_eq!(a.idle_instances(), 0, "a dropped pool gives its slots back");
}
