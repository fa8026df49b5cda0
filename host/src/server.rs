//! Listeners and client connections: binding, the accept loops, the
//! per-connection hyper server, `max_connections`, and graceful shutdown
//! (stop accepting, let in-flight requests finish, bounded by
//! `shutdown_timeout`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::framing::sniff::{Tapped, Verdicts};
use crate::pipeline::{self, ConnInfo};
use crate::site::{ListenerKey, Site};

/// Why gale could not start serving, or apply a reload.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    // Not `source`: the message already says it, and anyhow's `{:#}`
    // would print it twice.
    #[error("cannot listen on {addr}: {cause}")]
    Bind { addr: SocketAddr, cause: std::io::Error },
}

/// One accept loop, for one listener.
struct Accepting {
    key: ListenerKey,
    bound: SocketAddr,
    task: JoinHandle<()>,
}

/// The serving process: the current [`Site`], the accept loops, the
/// connection cap. A reload swaps the site and adds or removes accept
/// loops; a listener present in both configs keeps its socket, so no
/// connection is refused.
pub struct Running {
    current: ArcSwap<Site>,
    permits: Arc<Semaphore>,
    max_connections: usize,
    shutdown: watch::Receiver<bool>,
    accepting: Mutex<Vec<Accepting>>,
}

impl Running {
    /// Binds every listener of `site` (a busy port is an error naming the
    /// address) and starts accepting.
    pub fn start(site: Site, shutdown: watch::Receiver<bool>) -> Result<Arc<Self>, ServeError> {
        let max = site.config.global.max_connections;
        let bound = bind_all(&site, &[])?;
        site.set_bound_addrs(bound.iter().map(|(_, l)| local(l)).collect());
        let me = Arc::new(Self {
            current: ArcSwap::from_pointee(site),
            permits: Arc::new(Semaphore::new(max)),
            max_connections: max,
            shutdown,
            accepting: Mutex::new(Vec::new()),
        });
        let keys = me.current().listener_keys().to_vec();
        let mut accepting = me.lock();
        for (key, (_, listener)) in keys.into_iter().zip(bound) {
            accepting.push(me.spawn_accept(key, listener));
        }
        drop(accepting);
        Ok(me)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Accepting>> {
        self.accepting.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn_accept(self: &Arc<Self>, key: ListenerKey, listener: TcpListener) -> Accepting {
        let bound = local(&listener);
        let me = self.clone();
        let task = tokio::spawn(async move { me.accept_loop(key, listener).await });
        Accepting { key, bound, task }
    }

    /// The config in force.
    pub fn current(&self) -> Arc<Site> {
        self.current.load_full()
    }

    /// The addresses really bound, in the current config's listener order.
    pub fn bound_addrs(&self) -> Vec<SocketAddr> {
        let accepting = self.lock();
        let site = self.current();
        site.listener_keys().iter().filter_map(|k| accepting.iter().find(|a| a.key == *k).map(|a| a.bound)).collect()
    }

    /// Swaps in `site`: new listeners are bound first (a failure leaves the
    /// old config in force), then the site is swapped, then listeners the
    /// new config no longer has stop accepting. Requests in flight finish on
    /// the site they started on.
    pub fn reload(self: &Arc<Self>, site: Site) -> Result<(), ServeError> {
        let mut accepting = self.lock();
        let have: Vec<ListenerKey> = accepting.iter().map(|a| a.key).collect();
        let fresh = bind_all(&site, &have)?;
        let mut added = Vec::new();
        for (key, listener) in fresh {
            added.push(self.spawn_accept(key, listener));
        }
        accepting.append(&mut added);
        let keys = site.listener_keys().to_vec();
        site.set_bound_addrs(
            keys.iter().filter_map(|k| accepting.iter().find(|a| a.key == *k).map(|a| a.bound)).collect(),
        );
        self.current.store(Arc::new(site));
        accepting.retain(|a| {
            let keep = keys.contains(&a.key);
            if !keep {
                tracing::info!(addr = %a.bound, "listener removed by reload");
                a.task.abort();
            }
            keep
        });
        Ok(())
    }

    /// Waits for the shutdown signal, then drains: stops accepting and waits
    /// for open connections to finish their in-flight requests, at most
    /// `shutdown_timeout`.
    pub async fn wait(self: Arc<Self>) {
        let mut shutdown = self.shutdown.clone();
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        for a in self.lock().drain(..) {
            a.task.abort();
        }
        let site = self.current();
        let grace = site.config.global.shutdown_timeout;
        tracing::info!("shutting down: waiting up to {grace:?} for in-flight requests");
        let all = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
        if tokio::time::timeout(grace, self.permits.acquire_many(all)).await.is_err() {
            tracing::warn!("shutdown_timeout passed with connections still open; closing them");
        }
        site.access_log.flush();
    }

    async fn accept_loop(self: Arc<Self>, key: ListenerKey, listener: TcpListener) {
        loop {
            // Holding back accept() when max_connections are open leaves new
            // clients in the kernel's backlog, as nginx does.
            let Ok(permit) = self.permits.clone().acquire_owned().await else {
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
            let me = self.clone();
            tokio::spawn(async move {
                me.serve_connection(key, stream, remote).await;
                drop(permit);
            });
        }
    }

    /// The site a request on listener `key` is served by: the current one,
    /// or, for a connection whose listener a reload removed, the one it was
    /// accepted under.
    fn site_for(&self, key: ListenerKey, accepted_under: &Arc<Site>) -> Arc<Site> {
        let current = self.current();
        if current.listener_index(key).is_some() { current } else { accepted_under.clone() }
    }

    async fn serve_connection(self: Arc<Self>, key: ListenerKey, stream: TcpStream, remote: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let site = self.current();
        let tls = site.listener_index(key).and_then(|i| site.tls[i].clone());
        match tls {
            None => serve_http1(self, site, key, "http", stream, remote).await,
            // Boxed: the handshake and the TLS stream make this future
            // several times larger, and a plain connection's task (kept for
            // its whole life, idle keep-alive included) would carry that
            // size too.
            Some(acceptor) => {
                let tls = Box::pin(self.serve_tls(site, key, acceptor, stream, remote));
                tls.await;
            }
        }
    }

    /// A TLS connection: the handshake, then HTTP/2 or HTTP/1.1 by ALPN.
    async fn serve_tls(
        self: Arc<Self>,
        site: Arc<Site>,
        key: ListenerKey,
        acceptor: tokio_rustls::TlsAcceptor,
        stream: TcpStream,
        remote: SocketAddr,
    ) {
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
            serve_http2(self, site, key, stream, remote).await;
        } else {
            serve_http1(self, site, key, "https", stream, remote).await;
        }
    }
}

fn local(l: &TcpListener) -> SocketAddr {
    l.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// Binds the listeners of `site` that are not in `have`.
fn bind_all(site: &Site, have: &[ListenerKey]) -> Result<Vec<(ListenerKey, TcpListener)>, ServeError> {
    let mut out = Vec::new();
    for (key, l) in site.listener_keys().iter().zip(&site.config.listeners) {
        if have.contains(key) {
            continue;
        }
        let listener = bind_one(l.addr).map_err(|source| ServeError::Bind { addr: l.addr, cause: source })?;
        out.push((*key, listener));
    }
    Ok(out)
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

/// The per-connection service: each request runs on the site in force when
/// it arrives (see [`Running::site_for`]).
fn service(
    running: Arc<Running>,
    accepted_under: Arc<Site>,
    info: Arc<ConnInfo>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<crate::body::ResponseBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<http::Response<crate::body::ResponseBody>, Infallible>> + Send,
> + Clone {
    service_fn(move |req| {
        let site = running.site_for(info.listener, &accepted_under);
        let info = info.clone();
        // Boxed: hyper keeps a slot the size of the service's future for the whole life of an
        // HTTP/1 connection, idle keep-alive included, and the pipeline's future is many
        // kilobytes; boxed, the slot is a pointer and the memory exists only while a request runs.
        Box::pin(async move { Ok::<_, Infallible>(pipeline::handle(site, info, req).await) })
    })
}

async fn serve_http1<I>(
    running: Arc<Running>,
    site: Arc<Site>,
    listener: ListenerKey,
    scheme: &'static str,
    stream: I,
    remote: SocketAddr,
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
    let shutdown = running.shutdown.clone();
    let conn = builder.serve_connection(io, service(running, site.clone(), info)).with_upgrades();
    tokio::pin!(conn);
    drive(conn, remote, shutdown, |c| c.graceful_shutdown()).await;
}

async fn serve_http2<I>(running: Arc<Running>, site: Arc<Site>, listener: ListenerKey, stream: I, remote: SocketAddr)
where
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
    let shutdown = running.shutdown.clone();
    let conn = builder.serve_connection(TokioIo::new(stream), service(running, site.clone(), info));
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
