//! Listeners and client connections: binding, the accept loops, the
//! per-connection hyper server, `max_connections` (with idle connections
//! reclaimed when it is reached: `connections.rs`), answers hyper and the
//! tap write before a request reaches the pipeline (logged and counted
//! here), and graceful shutdown (stop accepting, let in-flight requests
//! finish, bounded by `shutdown_timeout`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, TryAcquireError, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};

use crate::body::{BoxError, ResponseBody};
use crate::connections::{Conn, InFlight, Registered, Registry};
use crate::framing::sniff::{HeadLimits, TapObserver, Tapped, Verdicts};
use crate::listeners::{bind_all, local};
use crate::pipeline::{self, ConnInfo};
use crate::site::{ListenerKey, Site};

/// How long an HTTP/2 connection asked to close (reclaimed, or idle past
/// its timeout) may take over its GOAWAY before it is dropped: the GOAWAY
/// waits for the client to answer a PING, which a silent client never does.
const HTTP2_GOAWAY_GRACE: Duration = Duration::from_secs(1);

/// How long a connection that has not sent a byte yet may take to start its
/// first request once the drain begins (it was accepted just before).
const FIRST_REQUEST_GRACE: Duration = Duration::from_millis(250);

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
    /// The address the config names (`127.0.0.1:0` stays so), and a second
    /// descriptor of the socket, which an upgrade hands to the new gale.
    /// Dropped with the accept loop, so a removed listener closes.
    configured: SocketAddr,
    socket: Option<OwnedFd>,
}

/// The serving process: the current [`Site`], the accept loops, the
/// connection cap. A reload swaps the site and adds or removes accept
/// loops; a listener present in both configs keeps its socket, so no
/// connection is refused.
pub struct Running {
    current: ArcSwap<Site>,
    permits: Arc<Semaphore>,
    max_connections: usize,
    connections: Arc<Registry>,
    shutdown: watch::Receiver<bool>,
    accepting: Mutex<Vec<Accepting>>,
    /// Set on a stop signal, before the drain starts: `/ready` answers 503
    /// while gale still serves (`shutdown_delay`).
    stopping: AtomicBool,
}

impl Running {
    /// Binds every listener of `site` (a busy port is an error naming the
    /// address) and starts accepting. A listener whose configured address is
    /// in `inherited` (sockets an upgrade handed over) uses that socket
    /// instead of binding; the ones left over are closed.
    pub fn start(
        site: Site,
        shutdown: watch::Receiver<bool>,
        mut inherited: Vec<(SocketAddr, std::net::TcpListener)>,
    ) -> Result<Arc<Self>, ServeError> {
        let max = site.config.global.max_connections;
        let bound = bind_all(&site, &[], &mut inherited)?;
        site.set_bound_addrs(bound.iter().map(|(_, _, l)| local(l)).collect());
        let me = Arc::new(Self {
            current: ArcSwap::from_pointee(site),
            permits: Arc::new(Semaphore::new(max)),
            max_connections: max,
            connections: Arc::default(),
            shutdown,
            accepting: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
        });
        let keys = me.current().listener_keys().to_vec();
        let mut accepting = me.lock();
        for (key, (_, configured, listener)) in keys.into_iter().zip(bound) {
            accepting.push(me.spawn_accept(key, configured, listener));
        }
        drop(accepting);
        Ok(me)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Accepting>> {
        self.accepting.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn_accept(self: &Arc<Self>, key: ListenerKey, configured: SocketAddr, listener: TcpListener) -> Accepting {
        let bound = local(&listener);
        let socket = match listener.as_fd().try_clone_to_owned() {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::warn!(addr = %bound, error = %e, "cannot keep a descriptor of the listener for upgrades");
                None
            }
        };
        let me = self.clone();
        let task = tokio::spawn(async move { me.accept_loop(key, listener).await });
        Accepting { key, bound, task, configured, socket }
    }

    /// Runs `f` on each listener's configured address and socket (an
    /// upgrade hands them over), in the current config's order.
    pub fn with_listener_sockets<R>(&self, f: impl FnOnce(&[(SocketAddr, BorrowedFd<'_>)]) -> R) -> R {
        let accepting = self.lock();
        let site = self.current();
        let sockets: Vec<(SocketAddr, BorrowedFd<'_>)> = site
            .listener_keys()
            .iter()
            .filter_map(|k| accepting.iter().find(|a| a.key == *k))
            .filter_map(|a| a.socket.as_ref().map(|fd| (a.configured, fd.as_fd())))
            .collect();
        f(&sockets)
    }

    /// From now on `/ready` answers 503; serving goes on until the drain.
    pub fn mark_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Whether gale is on its way out (see [`Running::mark_stopping`]).
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
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
        let fresh = bind_all(&site, &have, &mut Vec::new())?;
        let mut added = Vec::new();
        for (key, configured, listener) in fresh {
            added.push(self.spawn_accept(key, configured, listener));
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
            let (stream, remote) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // With max_connections open, the oldest idle ones are closed to
            // make room (as nginx reuses connections); while none is idle,
            // this client and those behind it in the kernel's backlog wait.
            let permit = match self.permits.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(TryAcquireError::Closed) => return,
                Err(TryAcquireError::NoPermits) => {
                    match self.connections.make_room(&self.permits, self.max_connections).await {
                        Some(p) => p,
                        None => return,
                    }
                }
            };
            let registered = self.connections.register();
            let me = self.clone();
            tokio::spawn(async move {
                me.serve_connection(key, stream, remote, registered).await;
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

    async fn serve_connection(
        self: Arc<Self>,
        key: ListenerKey,
        stream: TcpStream,
        remote: SocketAddr,
        registered: Registered,
    ) {
        let _ = stream.set_nodelay(true);
        let site = self.current();
        let tls = site.listener_index(key).and_then(|i| site.tls[i].clone());
        let client = Client { remote, listener: key, conn: registered.conn().clone(), accepted: Instant::now() };
        match tls {
            None => serve_http1(self, site, "http", stream, client).await,
            // Boxed: the handshake and the TLS stream make this future
            // several times larger, and a plain connection's task (kept for
            // its whole life, idle keep-alive included) would carry that
            // size too.
            Some(acceptor) => {
                let tls = Box::pin(self.serve_tls(site, acceptor, stream, client));
                tls.await;
            }
        }
        drop(registered);
    }

    /// A TLS connection: the handshake, then HTTP/2 or HTTP/1.1 by ALPN.
    async fn serve_tls(
        self: Arc<Self>,
        site: Arc<Site>,
        acceptor: tokio_rustls::TlsAcceptor,
        stream: TcpStream,
        client: Client,
    ) {
        let remote = client.remote;
        let deadline = client.accepted + site.config.http.client_header_timeout;
        // A handshake in progress is a connection with no request yet: it
        // may be reclaimed like any other, and does not hold up a shutdown.
        let mut shutdown = self.shutdown.clone();
        let handshake = tokio::select! {
            r = tokio::time::timeout_at(deadline, acceptor.accept(stream)) => r,
            _ = client.conn.reclaimed() => return,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let stream = match handshake {
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
            serve_http2(self, site, stream, client).await;
        } else {
            serve_http1(self, site, "https", stream, client).await;
        }
    }
}

/// One accepted client connection, as the serving functions need it.
struct Client {
    remote: SocketAddr,
    listener: ListenerKey,
    conn: Arc<Conn>,
    accepted: Instant,
}

/// A response body that keeps its request counted in flight on its
/// connection (not idle, so never reclaimed) until hyper is done with it.
/// A plain wrapper, not a box: no allocation per request.
pub struct TrackedBody {
    inner: ResponseBody,
    _in_flight: InFlight,
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The per-connection service: each request runs on the site in force when
/// it arrives (see [`Running::site_for`]).
fn service(
    running: Arc<Running>,
    accepted_under: Arc<Site>,
    info: Arc<ConnInfo>,
    conn: Arc<Conn>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<TrackedBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<http::Response<TrackedBody>, Infallible>> + Send,
> + Clone {
    service_fn(move |req| {
        let site = running.site_for(info.listener, &accepted_under);
        let info = info.clone();
        let in_flight = conn.request();
        // Boxed: hyper keeps a slot the size of the service's future for the whole life of an
        // HTTP/1 connection, idle keep-alive included, and the pipeline's future is many
        // kilobytes; boxed, the slot is a pointer and the memory exists only while a request runs.
        Box::pin(async move {
            let resp = pipeline::handle(site, info, req).await;
            Ok::<_, Infallible>(resp.map(|inner| TrackedBody { inner, _in_flight: in_flight }))
        })
    })
}

async fn serve_http1<I>(running: Arc<Running>, site: Arc<Site>, scheme: &'static str, stream: I, client: Client)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Client { remote, listener, conn, accepted } = client;
    let verdicts = Verdicts::default();
    let info = Arc::new(ConnInfo { remote, listener, scheme, verdicts: verdicts.clone() });
    let http = &site.config.http;
    let keep_alive = !http.keepalive_timeout.is_zero();
    // hyper's header timer runs from the moment it waits for a head, so it
    // is the idle keep-alive timeout (a silent close, like nginx). `Tapped`
    // holds the first request to client_header_timeout from accept (a
    // silent close if nothing came) and a head that has started to arrive
    // to client_header_timeout (408).
    let idle_timeout = if keep_alive { http.keepalive_timeout } else { http.client_header_timeout };
    let max_header = usize::try_from(http.max_header_size.bytes()).unwrap_or(usize::MAX);
    let limits =
        HeadLimits { accepted, header_timeout: http.client_header_timeout, max_uri: http.max_uri_size.bytes() };
    let observer: Arc<dyn TapObserver> = conn.clone();
    let io = TokioIo::new(Tapped::new(stream, verdicts, limits, observer));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(idle_timeout)
        .keep_alive(keep_alive)
        .max_header_size(max_header)
        .max_headers(http.max_headers);
    let shutdown = running.shutdown.clone();
    let svc = service(running.clone(), site.clone(), info, conn.clone());
    let served = builder.serve_connection(io, svc).with_upgrades();
    tokio::pin!(served);
    let ended = drive(served, remote, &conn, None, shutdown, |c| c.graceful_shutdown()).await;
    // What was answered before a request reached the pipeline: the tap's
    // 408 or 414, or hyper's own 400, 414 or 431.
    let refused = match conn.tap_answer() {
        Some((status, line)) => Some((status, Some(line))),
        None => ended.err().as_ref().and_then(hyper_answer).map(|status| (status, None)),
    };
    if let Some((status, line)) = refused {
        let site = running.site_for(listener, &site);
        log_refused(&site, listener, remote, status, line);
    }
}

async fn serve_http2<I>(running: Arc<Running>, site: Arc<Site>, stream: I, client: Client)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Client { remote, listener, conn, accepted } = client;
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
    // hyper has no idle timer for HTTP/2: `drive` closes a connection with
    // no stream yet after client_header_timeout from accept, and one idle
    // between streams after keepalive_timeout, as for HTTP/1.1.
    let idle = IdleTimeouts {
        first: accepted + http.client_header_timeout,
        between: if http.keepalive_timeout.is_zero() { http.client_header_timeout } else { http.keepalive_timeout },
    };
    let shutdown = running.shutdown.clone();
    let svc = service(running, site.clone(), info, conn.clone());
    let served = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(served);
    let _ = drive(served, remote, &conn, Some(idle), shutdown, |c| c.graceful_shutdown()).await;
}

/// The idle timers `drive` keeps for an HTTP/2 connection.
struct IdleTimeouts {
    /// The first stream must start by then.
    first: Instant,
    /// Longest idle time between streams.
    between: Duration,
}

impl IdleTimeouts {
    /// When to look at `conn` again, or `None` if it is to be closed now.
    fn next_check(&self, conn: &Conn, now: Instant) -> Option<Instant> {
        match conn.idle_for() {
            None => Some(now + self.between),
            Some(_) if !conn.started() => (now < self.first).then_some(self.first),
            Some(idle) => self.between.checked_sub(idle).filter(|left| !left.is_zero()).map(|left| now + left),
        }
    }
}

/// The status hyper wrote itself for a head it could not parse (it answers
/// these before the service sees a request), if it did.
fn hyper_answer(e: &hyper::Error) -> Option<u16> {
    if !e.is_parse() || e.is_parse_version_h2() {
        return None;
    }
    if e.is_parse_too_large() {
        // hyper has no accessor for which limit: its message says.
        return Some(if e.to_string().contains("URI") { 414 } else { 431 });
    }
    Some(400)
}

/// Logs and counts an answer written before a request could be read: in
/// the access log, and in the requests counter of the listener's default
/// server (the server nginx would log it under).
fn log_refused(site: &Site, listener: ListenerKey, remote: SocketAddr, status: u16, first_line: Option<&[u8]>) {
    if let Some(i) = site.listener_index(listener) {
        let (server, _) = site.routes[i].server(&site.config, "");
        site.server_metrics[server].response(status);
    }
    site.access_log.write_refused(remote, status, first_line);
    tracing::debug!(client = %remote, status, "request refused before it was read");
}

/// Runs a connection to its end and returns how it ended. On shutdown, asks
/// it to finish gracefully (in-flight requests complete, no new ones start);
/// a connection on which no request has started within
/// [`FIRST_REQUEST_GRACE`] is simply closed. When the
/// registry reclaims it while it is idle, it is closed the same way. For
/// HTTP/2, `idle` are the timers hyper lacks.
async fn drive<F>(
    mut served: Pin<&mut F>,
    remote: SocketAddr,
    conn: &Conn,
    idle: Option<IdleTimeouts>,
    mut shutdown: watch::Receiver<bool>,
    graceful: impl Fn(Pin<&mut F>),
) -> hyper::Result<()>
where
    F: Future<Output = hyper::Result<()>>,
{
    let http2 = idle.is_some();
    let mut draining = *shutdown.borrow();
    // A connection accepted just before the drain may have its first request
    // on the wire, not yet read (after an upgrade the new gale accepts the
    // ones behind it): it gets a moment to start it, and that one is served.
    let mut first_request: Option<Pin<Box<Sleep>>> = None;
    if draining {
        if conn.started() {
            graceful(served.as_mut());
        } else {
            first_request = Some(Box::pin(tokio::time::sleep(FIRST_REQUEST_GRACE)));
        }
    }
    let mut closing = false;
    // The GOAWAY grace of an HTTP/2 connection asked to close.
    let mut grace: Option<Pin<Box<Sleep>>> = None;
    let mut idle_check: Option<Pin<Box<Sleep>>> =
        idle.as_ref().map(|t| Box::pin(tokio::time::sleep_until(t.first.min(Instant::now() + t.between))));
    loop {
        let close_idle = tokio::select! {
            r = served.as_mut() => {
                if let Err(e) = &r {
                    tracing::debug!(client = %remote, error = %e, "client connection ended with an error");
                }
                return r;
            }
            changed = shutdown.changed(), if !draining => {
                if changed.is_err() || *shutdown.borrow() {
                    draining = true;
                    if conn.started() {
                        graceful(served.as_mut());
                    } else {
                        first_request = Some(Box::pin(tokio::time::sleep(FIRST_REQUEST_GRACE)));
                    }
                }
                false
            }
            () = async { if let Some(f) = first_request.as_mut() { f.as_mut().await } }, if first_request.is_some() => {
                first_request = None;
                if !conn.started() {
                    // Nothing was asked: nothing is cut short.
                    return Ok(());
                }
                graceful(served.as_mut());
                false
            }
            () = conn.reclaimed(), if !closing => {
                let idle = conn.is_idle();
                if !idle {
                    conn.reprieve();
                }
                idle
            }
            () = async { if let Some(g) = grace.as_mut() { g.as_mut().await } }, if grace.is_some() => return Ok(()),
            () = async { if let Some(c) = idle_check.as_mut() { c.as_mut().await } }, if idle_check.is_some() => {
                match (idle.as_ref().map(|t| t.next_check(conn, Instant::now())), idle_check.as_mut()) {
                    (Some(Some(at)), Some(check)) => {
                        check.as_mut().reset(at);
                        false
                    }
                    _ => true,
                }
            }
        };
        if close_idle && !closing {
            closing = true;
            idle_check = None;
            if !conn.started() {
                // Nothing was ever asked, so nothing can be cut short.
                return Ok(());
            }
            graceful(served.as_mut());
            if http2 {
                grace = Some(Box::pin(tokio::time::sleep(HTTP2_GOAWAY_GRACE)));
            }
        }
    }
}
