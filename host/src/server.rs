//! Listeners and client connections: binding, the accept loops, the
//! per-connection hyper server, `max_connections`, and graceful shutdown
//! (stop accepting, let in-flight requests finish, bounded by
//! `shutdown_timeout`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::framing::sniff::{Tapped, Verdicts};
use crate::pipeline::{self, ConnInfo, Site};

/// Why gale could not start serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// Binds every listener of the config, in order. A busy port is an error
/// naming the address.
pub fn bind(site: &Site) -> Result<Vec<TcpListener>, ServeError> {
    site.config
        .listeners
        .iter()
        .map(|l| bind_one(l.addr).map_err(|source| ServeError::Bind { addr: l.addr, source }))
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
pub async fn serve(site: Arc<Site>, listeners: Vec<TcpListener>, mut shutdown: watch::Receiver<bool>) {
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
    listener: TcpListener,
    permits: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
) {
    loop {
        // Holding back accept() when max_connections are open leaves new
        // clients in the kernel's backlog, as nginx does.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (stream, remote) = match listener.accept().await {
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
        tokio::spawn(async move {
            serve_connection(site, index, stream, remote, shutdown).await;
            drop(permit);
        });
    }
}

async fn serve_connection(
    site: Arc<Site>,
    listener: usize,
    stream: TcpStream,
    remote: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let verdicts = Verdicts::default();
    let info = Arc::new(ConnInfo { remote, listener, scheme: "http", verdicts: verdicts.clone() });
    let http = &site.config.http;
    let keep_alive = !http.keepalive_timeout.is_zero();
    // hyper runs one timer both for an idle keep-alive connection and for a
    // request head in progress; gale uses the smaller of the two settings.
    let head_timeout =
        if keep_alive { http.client_header_timeout.min(http.keepalive_timeout) } else { http.client_header_timeout };
    let max_buf = usize::try_from(http.max_header_size.bytes()).unwrap_or(usize::MAX);

    let svc_site = site.clone();
    let service = service_fn(move |req| {
        let site = svc_site.clone();
        let info = info.clone();
        async move { Ok::<_, Infallible>(pipeline::handle(site, info, req).await) }
    });
    let io = TokioIo::new(Tapped::new(stream, verdicts));
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(head_timeout).keep_alive(keep_alive).max_header_size(max_buf);
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let mut draining = *shutdown.borrow();
    if draining {
        conn.as_mut().graceful_shutdown();
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
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
