//! Forwarding a request to an upstream pool: pick a backend, get a
//! connection, send, and decide on failure whether another backend may be
//! tried (`next_upstream`). The response streams back through
//! [`UpstreamBody`], which enforces `read_timeout` and recycles the
//! connection.

pub mod headers;
pub mod tunnel;

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use http_body_util::BodyExt;

use crate::body::{BodyFault, FaultSlot, ResponseBody, UpstreamRequestBody};
use crate::config::NextUpstream;
use crate::metrics::Outcome;
use crate::upstream::client::{ConnectError, Sender, UpstreamBody};
use crate::upstream::{Backend, UpstreamPool};

/// A request ready to forward.
pub struct ProxyRequest {
    /// The head, its headers through the first steps of `headers` (the
    /// client's `Connection` options removed, gale's forwarding headers set)
    /// and the plugins' edits.
    pub parts: http::request::Parts,
    pub body: UpstreamRequestBody,
    /// Whether the request carries a body (it cannot be replayed once sent).
    pub has_body: bool,
    /// Where the client body records why it stopped, if it did.
    pub fault: FaultSlot,
    /// Set when the client asked to upgrade the connection (WebSocket).
    pub upgrade: Option<Upgrade>,
}

/// A client's upgrade request, admitted under its route's tunnel cap.
pub struct Upgrade {
    /// What goes upstream as `Upgrade`: the protocols the route allows.
    pub protocol: HeaderValue,
    pub client: hyper::upgrade::OnUpgrade,
    pub slot: tunnel::TunnelSlot,
    pub idle_timeout: std::time::Duration,
}

/// Why forwarding failed; `error.rs` turns it into a status.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Every backend is marked down or was tried: 502.
    #[error("upstream `{upstream}`: no live backend")]
    NoLiveUpstream { upstream: String },
    /// The last backend tried could not be connected to: 502.
    #[error("upstream `{upstream}`: {source}")]
    Connect { upstream: String, source: ConnectError },
    /// The backend closed or broke the connection before a response header: 502.
    #[error("upstream `{upstream}` {addr}: connection failed before the response header: {source}")]
    Closed { upstream: String, addr: SocketAddr, source: hyper::Error },
    /// No response header within `read_timeout`: 504, never retried.
    #[error("upstream `{upstream}` {addr}: no response within {timeout:?}")]
    Timeout { upstream: String, addr: SocketAddr, timeout: std::time::Duration },
    /// The client's body broke the limits or the client went away.
    #[error("client body: {0:?}")]
    ClientBody(BodyFault),
    /// The backend switched protocols although nobody asked it to: 502.
    #[error("upstream `{upstream}` {addr}: 101 Switching Protocols without an upgrade request")]
    UnexpectedUpgrade { upstream: String, addr: SocketAddr },
}

/// Methods that may be sent twice (RFC 9110 9.2.2).
fn idempotent(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE)
}

/// Forwards `req` to `pool` and returns the backend's response head with a
/// streaming body.
pub async fn forward(pool: &Arc<UpstreamPool>, req: ProxyRequest) -> Result<Response<ResponseBody>, ProxyError> {
    let ProxyRequest { mut parts, body, has_body, fault, mut upgrade } = req;
    let cfg = &pool.config;
    let name = || cfg.name.clone();

    headers::to_upstream(&mut parts.headers);
    if let Some(up) = &upgrade {
        parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, up.protocol.clone());
    }
    parts.version = Version::HTTP_11;
    parts.uri = parts.uri.path_and_query().map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
    let retry_after_send = cfg.next_upstream == NextUpstream::Error && idempotent(&parts.method) && !has_body;
    let retry_on_connect = cfg.next_upstream != NextUpstream::Off;
    // A kept-alive connection may be closed by the backend just as a request
    // goes out on it; such a request is sent again once, on a fresh
    // connection to the same backend (nginx does the same for cached
    // connections). Only for requests that may be sent twice.
    let resend_on_stale = idempotent(&parts.method) && !has_body;

    let mut head_slot = Some(parts);
    let mut tried: Vec<Arc<Backend>> = Vec::new();
    let mut body = Some(body);
    let mut last_error: Option<ProxyError> = None;
    loop {
        let Some(backend) = pool.select(&tried) else {
            return Err(last_error.unwrap_or(ProxyError::NoLiveUpstream { upstream: name() }));
        };
        tried.push(backend.clone());
        let in_flight = pool.start(&backend);

        // A connection: an idle one, or a new one. If an idle one turns out
        // to be dead before anything was sent, a fresh one is made.
        let mut sender: Sender;
        let mut reused;
        match backend.conns.take_idle().await {
            Some(s) => {
                sender = s;
                reused = true;
            }
            None => match backend.conns.connect().await {
                Ok(s) => {
                    sender = s;
                    reused = false;
                }
                Err(source) => {
                    let err = ProxyError::Connect { upstream: name(), source };
                    note_failure(pool, &backend, Outcome::ConnectError, &err);
                    last_error = Some(err);
                    if retry_on_connect {
                        continue;
                    }
                    return Err(last_error.unwrap_or(ProxyError::NoLiveUpstream { upstream: name() }));
                }
            },
        }

        let sent_at = std::time::Instant::now();
        let outcome = loop {
            // The head is copied only when a resend after a failure may need
            // it; an unsent request comes back whole from hyper.
            let head = match &head_slot {
                Some(h) if retry_after_send || (reused && resend_on_stale) => h.clone(),
                _ => head_slot.take().unwrap_or_else(unreachable_head),
            };
            let request = Request::from_parts(head, body.take().unwrap_or(UpstreamRequestBody::Empty));
            match tokio::time::timeout(cfg.read_timeout, sender.try_send_request(request)).await {
                Err(_) => {
                    // Never retried (the backend may be running the request),
                    // but a failure towards `max_fails`, as nginx counts one
                    // under `proxy_next_upstream timeout`: a hung backend
                    // leaves rotation instead of taking its share for ever.
                    let err = ProxyError::Timeout { upstream: name(), addr: backend.addr, timeout: cfg.read_timeout };
                    note_failure(pool, &backend, Outcome::Timeout, &err);
                    return Err(err);
                }
                Ok(Ok(resp)) => break Ok(resp),
                Ok(Err(mut e)) => {
                    if let Some(unsent) = e.take_message() {
                        // Nothing reached the backend: head and body are intact.
                        let (head, unsent_body) = unsent.into_parts();
                        head_slot = Some(head);
                        body = Some(unsent_body);
                        if reused {
                            reused = false;
                            match backend.conns.connect().await {
                                Ok(s) => {
                                    sender = s;
                                    continue;
                                }
                                Err(source) => {
                                    break Err((true, ProxyError::Connect { upstream: name(), source }));
                                }
                            }
                        }
                        let source = ConnectError::Io {
                            addr: backend.addr,
                            source: std::io::Error::new(std::io::ErrorKind::ConnectionReset, e.into_error()),
                        };
                        break Err((true, ProxyError::Connect { upstream: name(), source }));
                    }
                    if let Some(f) = fault.get() {
                        return Err(ProxyError::ClientBody(*f));
                    }
                    if reused && resend_on_stale && head_slot.is_some() {
                        // The request may have reached the backend and
                        // killed it (a query of death looks like a stale
                        // connection from here): a refused fresh connect
                        // then counts as a failure after sending, never as
                        // a connect failure another backend is tried for.
                        tracing::debug!(upstream = %cfg.name, addr = %backend.addr, error = %e.error(), "kept-alive connection failed before a response; resending on a fresh one");
                        reused = false;
                        match backend.conns.connect().await {
                            Ok(s) => {
                                sender = s;
                                continue;
                            }
                            Err(source) => break Err((false, ProxyError::Connect { upstream: name(), source })),
                        }
                    }
                    break Err((
                        false,
                        ProxyError::Closed { upstream: name(), addr: backend.addr, source: e.into_error() },
                    ));
                }
            }
        };

        match outcome {
            Ok(mut resp) => {
                backend.health.record_success();
                backend.metrics.outcome(Outcome::Response);
                backend.metrics.latency.observe(sent_at.elapsed());
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    let Some(up) = upgrade.take() else {
                        return Err(ProxyError::UnexpectedUpgrade { upstream: name(), addr: backend.addr });
                    };
                    let upstream_io = hyper::upgrade::on(&mut resp);
                    let (mut head, _) = resp.into_parts();
                    let protocol = head.headers.get(header::UPGRADE).cloned();
                    headers::to_client(&mut head.headers);
                    head.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                    if let Some(p) = protocol {
                        head.headers.insert(header::UPGRADE, p);
                    }
                    head.version = Version::HTTP_11;
                    // The connection now belongs to the tunnel; it never returns to the pool.
                    drop(sender);
                    tokio::spawn(async move {
                        tunnel::run(up.client, upstream_io, up.idle_timeout, up.slot).await;
                        drop(in_flight);
                    });
                    return Ok(Response::from_parts(head, crate::body::empty()));
                }
                let (mut head, incoming) = resp.into_parts();
                headers::to_client(&mut head.headers);
                // The client's protocol version governs the client response.
                head.version = Version::HTTP_11;
                let body = UpstreamBody::new(
                    incoming,
                    cfg.read_timeout,
                    Some((backend.conns.clone(), sender)),
                    Box::new(move || drop(in_flight)),
                );
                return Ok(Response::from_parts(head, body.boxed_unsync()));
            }
            Err((nothing_sent, err)) => {
                let outcome = if nothing_sent { Outcome::ConnectError } else { Outcome::Closed };
                note_failure(pool, &backend, outcome, &err);
                let may_retry = if nothing_sent { retry_on_connect } else { retry_after_send };
                if !may_retry {
                    return Err(err);
                }
                last_error = Some(err);
            }
        }
    }
}

/// Books a failed attempt: metrics, passive health, the error log.
fn note_failure(pool: &UpstreamPool, backend: &Backend, outcome: Outcome, err: &ProxyError) {
    let cfg = &pool.config;
    backend.metrics.outcome(outcome);
    if backend.health.record_failure(std::time::Instant::now()) {
        tracing::warn!(upstream = %cfg.name, addr = %backend.addr, "backend marked down for {:?}", cfg.fail_timeout);
    }
    tracing::warn!(upstream = %cfg.name, addr = %backend.addr, error = %err, "upstream attempt failed");
}

/// The request head is always present when an attempt is made: it is taken
/// only for an attempt that cannot be followed by another.
fn unreachable_head() -> http::request::Parts {
    tracing::error!("internal: request head missing for a retry");
    Request::new(()).into_parts().0
}
