//! Prints the mean cost of the bundled header policy's hooks on a warm
//! instance, called through gale's plugin API (conversions included): with
//! every call reaching the guest (`memoize = false`), with its answers
//! remembered, and with an empty config (no hook wanted: nothing runs).
//!
//! A measurement, not a test: run it in release mode on a quiet machine,
//! after `scripts/build-plugins.sh`:
//!
//! ```sh
//! cargo run --release -p gale --example plugin_call_cost [PLUGIN_DIR]
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use gale::plugin::{HeaderPolicy, Limits, PluginRuntime, RequestView, RuntimeOptions};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};

/// A reference-like policy: request sets with variables, a removal, a deny rule; a
/// response set and removal.
const POLICY: &str = concat!(
    r#"request = { remove = ["x-debug"], set = { x-real-ip = "$remote_addr", x-scheme = "$scheme", "#,
    r#"x-target = "$host$request_uri", x-ua = "$http_user_agent" } }"#,
    "\n",
    r#"response = { set = { x-frame-options = "DENY" }, remove = ["server"] }"#,
    "\n",
    r#"deny = [{ path_prefix = "/admin", status = 403 }]"#,
    "\n",
);

const CALLS: u32 = 100_000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"), PathBuf::from);
    let cache = tempfile::tempdir()?;
    let rt = PluginRuntime::new(RuntimeOptions { cache_dir: Some(cache.path().to_owned()), ..Default::default() })?;
    let load = |config: String| {
        let rt = &rt;
        let dir = &dir;
        async move {
            let table: toml::Table = config.parse()?;
            anyhow::Ok(rt.load_header_policy(dir, "header-policy", &table, Limits::default()).await?)
        }
    };
    let cases = [
        ("reference-like policy, every call reaches the guest", load(format!("memoize = false\n{POLICY}")).await?),
        ("the same, answers remembered", load(POLICY.to_owned()).await?),
        ("empty config", load(String::new()).await?),
    ];

    let uri: Uri = "/app?x=1".parse()?;
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("www.example.org"));
    headers.insert("user-agent", HeaderValue::from_static("curl/8"));
    headers.insert("x-debug", HeaderValue::from_static("1"));
    let view = RequestView {
        method: &Method::GET,
        uri: &uri,
        headers: &headers,
        remote_addr: SocketAddr::from(([192, 0, 2, 7], 51234)),
        scheme: "https",
        host: "www.example.org",
    };
    for (what, policy) in &cases {
        let (request, response) = measure(policy, &view).await?;
        println!("{what}: on-request {request:?}/call, on-response {response:?}/call");
    }
    Ok(())
}

async fn measure(policy: &HeaderPolicy, view: &RequestView<'_>) -> anyhow::Result<(Duration, Duration)> {
    for _ in 0..1_000 {
        policy.on_request(view).await?;
    }
    let start = Instant::now();
    for _ in 0..CALLS {
        policy.on_request(view).await?;
    }
    let request = start.elapsed() / CALLS;
    let mut sent = HeaderMap::new();
    sent.insert("server", HeaderValue::from_static("TornadoServer/6.4"));
    let start = Instant::now();
    for _ in 0..CALLS {
        let mut h = sent.clone();
        policy.on_response(view, StatusCode::OK, &mut h).await?;
    }
    Ok((request, start.elapsed() / CALLS))
}
