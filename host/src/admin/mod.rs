//! The admin listener: `/` (the status page, HTML: page.rs), `/metrics`
//! (Prometheus text), `/status` (JSON: servers, upstream health, in-flight
//! counts, children, plugins), and the probes `/ready` (200 or 503 with the
//! reason, see `lifecycle::readiness`) and `/live` (200 while the process
//! answers at all). It is a separate listener, on loopback unless the
//! config says otherwise, never one of the public ones.

mod page;
mod rates;
mod samples;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::body::{ResponseBody, full};
use crate::metrics;
use crate::server::Running;

/// A source of extra `/status` sections (the supervisor and the plugin
/// runtime add theirs).
pub type StatusSection = Box<dyn Fn() -> (String, serde_json::Value) + Send + Sync>;

fn sections() -> &'static Mutex<Vec<StatusSection>> {
    static S: OnceLock<Mutex<Vec<StatusSection>>> = OnceLock::new();
    S.get_or_init(Default::default)
}

/// Adds a section to `/status`.
pub fn add_status_section(section: StatusSection) {
    sections().lock().unwrap_or_else(|e| e.into_inner()).push(section);
}

/// Binds the admin listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves admin requests until the process ends, or until `stop` turns true
/// (an upgrade handed the listener to the new gale, which answers from then on).
pub async fn serve(listener: TcpListener, running: Arc<Running>, mut stop: tokio::sync::watch::Receiver<bool>) {
    // The readings the status page's rates come from.
    let mut sampler_stop = stop.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(rates::EVERY);
        loop {
            tokio::select! {
                _ = every.tick() => rates::record(),
                _ = sampler_stop.wait_for(|s| *s) => return,
            }
        }
    });
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let running = running.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let running = running.clone();
                async move { Ok::<_, Infallible>(answer(&running, &req)) }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

fn answer(running: &Running, req: &Request<Incoming>) -> Response<ResponseBody> {
    let (ctype, body) = match req.uri().path() {
        "/metrics" => ("text/plain; version=0.0.4", metrics::render()),
        "/status" => ("application/json", status(running).to_string()),
        "/live" => ("text/plain", "live\n".to_owned()),
        "/ready" => match crate::lifecycle::readiness(running) {
            Ok(()) => ("text/plain", "ready\n".to_owned()),
            Err(why) => {
                let mut resp = Response::new(full(format!("not ready: {why}\n")));
                *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
                return resp;
            }
        },
        "/" => match page::refresh_from_query(req.uri().query()) {
            Ok(refresh) => ("text/html; charset=utf-8", page::render(&status(running), &metrics::render(), refresh)),
            Err(why) => {
                let mut resp = Response::new(full(why));
                *resp.status_mut() = StatusCode::BAD_REQUEST;
                resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
                return resp;
            }
        },
        _ => return crate::error::error_page(StatusCode::NOT_FOUND),
    };
    let mut resp = Response::new(full(body));
    if let Ok(v) = header::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

fn status(running: &Running) -> serde_json::Value {
    let site = running.current();
    let upstreams: Vec<_> = site.upstreams.iter().map(|u| u.status_json()).collect();
    let servers: Vec<_> = site
        .config
        .servers
        .iter()
        .map(|s| {
            let tenant = s.tenant.and_then(|crate::config::TenantId(i)| site.config.tenants.get(i));
            serde_json::json!({
                // The `server` label of its series in /metrics.
                "label": crate::site::server_label(s),
                "names": s.names.iter().map(|n| match n {
                    crate::config::ServerName::Exact(n) => n.clone(),
                    crate::config::ServerName::Wildcard(suffix) => format!("*{suffix}"),
                }).collect::<Vec<_>>(),
                "listen": s.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "tls": s.tls.is_some(),
                "tenant": tenant.map_or(crate::config::GLOBAL_TENANT, |t| t.name.as_str()),
                "locations": s.locations.len(),
            })
        })
        .collect();
    let mut out = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "listening": running.bound_addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "servers": servers,
        "upstreams": upstreams,
    });
    for section in sections().lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let (name, value) = section();
        out[name] = value;
    }
    out
}
