//! Listeners and client connections: binding, the accept loops, the
//! per-connection hyper server, `max_connections`, and graceful shutdown
//! (stop accepting, let in-flight requests finish, bounded by
//! `shutdown_timeout`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::tls;

use crate::framing::sniff::{Tapped, Verdicts};
use crate::pipeline::{self, ConnInfo, Site};

/// Why gale could not start serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("TLS setup for {addr} failed: {source}")]
    Tls { addr: SocketAddr, source: rustls::Error },
}

/// A bound listen socket, with its TLS acceptor when it serves HTTPS.
pub struct Bound {
    pub listener: TcpListener,
    pub tls: Option<TlsAcceptor>,
}

/// Binds every listener of the config, in order. A busy port is an error
/// naming the address.
pub fn bind(site: &Site) -> Result<Vec<Bound>, ServeError> {
    let cfg = &site.config;
    cfg.listeners
        .iter()
        .map(|l| {
            let listener = bind_one(l.addr).map_err(|source| ServeError::Bind { addr: l.addr, source })?;
            let tls = if l.tls {
                let entries = l
                    .servers
                    .iter()
                    .filter_map(|&i| {
                        cfg.servers[i].tls.as_ref().map(|t| (cfg.servers[i].names.clone(), t.certified.clone()))
                    })
                    .collect();
                let config = tls::server_config(tls::SniResolver::new(entries), cfg.http.http2)
                    .map_err(|source| ServeError::Tls { addr: l.addr, source })?;
                Some(TlsAcceptor::from(config))
            } else {
                None
            };
            Ok(Bound { listener, tls })
        })
        .collect()
}

fn bind_one(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

/// Serves until `shutdown` turns true, then drains: waits for open
/// connections to finish their in-flight requests, at most
/// `shutdown_timeout`.
pub async fn serve(site: Arc<Site>, listeners: Vec<Bound>, mut shutdown: watch::Receiver<bool>) {
    let max = site.config.global.max_connections;
    let permits = Arc::new(Semaphore::new(max));
    let mut accept_tasks = Vec::new();
    for (index, listener) in listeners.into_iter().enumerate() {
        let site = site.clone();
        let permits = permits.clone();
        let shutdown = shutdown.clone();
        accept_tasks.push(tokio::spawn(accept_loop(site, index, listener, permits, shutdown)));
    }
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            break;
        }
    }
    for t in &accept_tasks {
        t.abort();
    }
    let grace = site.config.global.shutdown_timeout;
    tracing::info!("shutting down: waiting up to {grace:?} for in-flight requests");
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(grace, permits.acquire_many(all)).await.is_err() {
        tracing::warn!("shutdown_timeout passed with connections still open; closing them");
    }
    site.access_log.flush();
}

async fn accept_loop(
    site: Arc<Site>,
    index: usize,
    bound: Bound,
    permits: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
) {
    loop {
        // Holding back accept() when max_connections are open leaves new
        // clients in the kernel's backlog, as nginx does.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (stream, remote) = match bound.listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::error!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let site = site.clone();
        let shutdown = shutdown.clone();
        let tls = bound.tls.clone();
        tokio::spawn(async move {
            serve_connection(site, index, tls, stream, remote, shutdown).await;
            drop(permit);
        });
    }
}

async fn serve_connection(
    site: Arc<Site>,
    listener: usize,
    tls: Option<TlsAcceptor>,
    stream: TcpStream,
    remote: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = tls else {
        return serve_http1(site, listener, "http", stream, remote, shutdown).await;
    };
    let handshake = site.config.http.client_header_timeout;
    let stream = match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(client = %remote, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(client = %remote, "TLS handshake timed out");
            return;
        }
    };
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        serve_http2(site, listener, stream, remote, shutdown).await;
    } else {
        serve_http1(site, listener, "https", stream, remote, shutdown).await;
    }
}

fn service(
    site: Arc<Site>,
    info: Arc<ConnInfo>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<crate::body::ResponseBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<http::Response<crate::body::ResponseBody>, Infallible>> + Send,
> + Clone {
    service_fn(move |req| {
        let site = site.clone();
        let info = info.clone();
        async move { Ok::<_, Infallible>(pipeline::handle(site, info, req).await) }
    })
}

async fn serve_http1<I>(
    site: Arc<Site>,
    listener: usize,
    scheme: &'static str,
    stream: I,
    remote: SocketAddr,
    shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let verdicts = Verdicts::default();
    let info = Arc::new(ConnInfo { remote, listener, scheme, verdicts: verdicts.clone() });
    let http = &site.config.http;
    let keep_alive = !http.keepalive_timeout.is_zero();
    // hyper's header timer runs from the moment it waits for a head, so it
    // is the idle keep-alive timeout (a silent close, like nginx); a head
    // that has started to arrive is held to client_header_timeout by
    // `Tapped`, which answers 408.
    let idle_timeout = if keep_alive { http.keepalive_timeout } else { http.client_header_timeout };
    let max_header = usize::try_from(http.max_header_size.bytes()).unwrap_or(usize::MAX);
    let io = TokioIo::new(Tapped::new(stream, verdicts, http.client_header_timeout));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(idle_timeout)
        .keep_alive(keep_alive)
        .max_header_size(max_header);
    let conn = builder.serve_connection(io, service(site.clone(), info)).with_upgrades();
    tokio::pin!(conn);
    drive(conn, remote, shutdown, |c| c.graceful_shutdown()).await;
}

async fn serve_http2<I>(
    site: Arc<Site>,
    listener: usize,
    stream: I,
    remote: SocketAddr,
    shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let info = Arc::new(ConnInfo { remote, listener, scheme: "https", verdicts: Verdicts::default() });
    let http = &site.config.http;
    let max_header = u32::try_from(http.max_header_size.bytes()).unwrap_or(u32::MAX);
    let mut builder = http2::Builder::new(TokioExecutor::new());
    // Abuse limits: concurrent streams, header list size, and the rapid-reset
    // guards (streams reset before they are accepted, or by our own errors).
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(http.http2_max_concurrent_streams)
        .max_header_list_size(max_header)
        .max_pending_accept_reset_streams(64)
        .max_local_error_reset_streams(256)
        .keep_alive_interval(None);
    let conn = builder.serve_connection(TokioIo::new(stream), service(site.clone(), info));
    tokio::pin!(conn);
    drive(conn, remote, shutdown, |c| c.graceful_shutdown()).await;
}

/// Runs a connection to its end; on shutdown, asks it to finish gracefully
/// (in-flight requests complete, no new ones start).
async fn drive<F, E>(
    mut conn: Pin<&mut F>,
    remote: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
    graceful: impl Fn(Pin<&mut F>),
) where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut draining = *shutdown.borrow();
    if draining {
        graceful(conn.as_mut());
    }
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(client = %remote, error = %e, "client connection ended with an error");
                }
                return;
            }
            changed = shutdown.changed(), if !draining => {
                if changed.is_err() || *shutdown.borrow() {
                    draining = true;
                    graceful(conn.as_mut());
                }
            }
        }
    }
}
