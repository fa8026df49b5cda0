//! Many hosts on one machine: network namespaces made by the test as two backend hosts (Tornado),
//! two gale hosts and a balancer host (HAProxy in TCP mode, the DNS server, the clients), joined
//! by a bridge (tests/src/netns.rs). HAProxy health-checks each gale's `/ready`, as an L4
//! balancer or a Kubernetes endpoint controller does. While clients send requests through HAProxy:
//!
//! 1. the DNS answer for the backends' name changes: traffic moves, nothing fails;
//! 2. one gale is stopped gracefully (SIGTERM; its shutdown_delay outlasts HAProxy's check
//!    interval times `fall`): HAProxy takes it out while it still serves, nothing fails;
//! 3. one backend host's link is cut while requests are in flight on it: gale's connects to it
//!    time out, traffic moves to the other host, and the requests that were already sent to it
//!    fail with 504 rather than being sent twice (`next_upstream = "connect"`).
//!
//! Every request has its own path, so the backends' counters show where each one went and that
//! none arrived twice. Skipped, saying why, where namespaces cannot be made (not root, no `ip`)
//! or HAProxy is missing; namespaces are removed when the test ends, also on a panic.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gale_tests::admin::{self, admin_addr};
use gale_tests::dns::{Answer, DnsServer};
use gale_tests::haproxy::HaProxy;
use gale_tests::http::{Conn, Request};
use gale_tests::netns::{self, Host, Lan};
use gale_tests::{Gale, Launch, SIGTERM, Tornado, Whoami, wait_until};

const NAME: &str = "app.gale.test";
/// Fixed ports: each host has its own network, so nothing else can hold them.
const APP_PORT: u16 = 8000;
const GALE_PORT: u16 = 8080;
const ADMIN_PORT: u16 = 9901;
const BALANCER_PORT: u16 = 80;
/// Client threads, each with one request in flight at a time.
const CLIENTS: usize = 4;
/// HAProxy checks each gale every 200 ms and takes it out after 2 failed checks: 0.4 s, well
/// inside gale's shutdown_delay of 3 s (a loaded machine delays checks).
const SHUTDOWN_DELAY: &str = "3s";
/// How long any one phase may take to show what it waits for before the test calls it a hang.
const PHASE_TIMEOUT: Duration = Duration::from_secs(20);

/// One gale host's config: the backends by DNS name, checked actively; one connection per request
/// (keepalive = 0) so that a cut host shows as connect timeouts on new connections.
fn gale_config(host: &Host, dns: SocketAddr) -> String {
    let ip = host.ip();
    format!(
        r#"[global]
threads = 2
shutdown_delay = "{SHUTDOWN_DELAY}"
shutdown_timeout = "10s"
resolvers = ["{dns}"]

[admin]
listen = "{ip}:{ADMIN_PORT}"
allow_remote = true

[upstream.tornadoes]
servers = ["{NAME}:{APP_PORT}"]
resolve_interval = "1s"
next_upstream = "connect"
connect_timeout = "500ms"
read_timeout = "5s"
keepalive = 0
max_fails = 1
fail_timeout = "30s"
health_check = {{ path = "/health", interval = "300ms", timeout = "1s", rise = 1, fall = 2 }}

[[server]]
listen = ["{ip}:{GALE_PORT}"]

[[server.location]]
path = "/"
proxy = {{ pass = "tornadoes" }}
"#
    )
}

fn start_gale(host: &Host, dns: SocketAddr) -> Gale {
    let launch = Launch { netns: Some(host.path()), ..Launch::default() };
    Gale::start_with(&gale_config(host, dns), &launch)
}

/// HAProxy in TCP mode over the gales, checking `GET /ready` on their admin port. No retries and
/// no redispatch: a connection HAProxy cannot make is a failed request the test sees.
fn haproxy_config(balancer: &Host, gales: &[&Host]) -> String {
    let mut config = format!(
        "global\n    log stderr format raw local0 info\n\n\
         defaults\n    mode tcp\n    log global\n    retries 0\n    timeout connect 2s\n    \
         timeout client 30s\n    timeout server 30s\n    timeout check 2s\n\n\
         frontend public\n    bind {}:{BALANCER_PORT}\n    default_backend gales\n\n\
         backend gales\n    balance roundrobin\n    option httpchk GET /ready\n    \
         http-check expect status 200\n    default-server check inter 200ms fall 2 rise 2 port {ADMIN_PORT}\n",
        balancer.ip()
    );
    for (i, gale) in gales.iter().enumerate() {
        config.push_str(&format!("    server gale{} {}:{GALE_PORT}\n", i + 1, gale.ip()));
    }
    config
}

/// One client request: its id (in its path, `/r/ID/whoami`), the phase it was sent in, and the
/// backend that answered or what went wrong.
#[derive(Clone, Debug)]
struct Record {
    id: u64,
    phase: usize,
    outcome: Result<String, String>,
}

/// Client threads on the balancer host, each sending one request at a time on a new connection.
struct Load {
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicUsize>,
    records: Arc<Mutex<Vec<Record>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(host: &Host, front: SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(AtomicUsize::new(0));
        let records = Arc::new(Mutex::new(Vec::new()));
        let next_id = Arc::new(AtomicU64::new(0));
        let threads = (0..CLIENTS)
            .map(|_| {
                let (stop, phase, records, next_id) = (stop.clone(), phase.clone(), records.clone(), next_id.clone());
                let ns: PathBuf = host.path();
                std::thread::spawn(move || {
                    netns::enter(&ns);
                    // Bounded: stops when told, or after 5 minutes whatever happens.
                    let end = Instant::now() + Duration::from_secs(300);
                    while !stop.load(Ordering::SeqCst) && Instant::now() < end {
                        let id = next_id.fetch_add(1, Ordering::SeqCst);
                        let phase = phase.load(Ordering::SeqCst);
                        let outcome = Conn::try_open(front)
                            .map_err(|e| format!("connect: {e}"))
                            .and_then(|mut c| {
                                c.try_send(&Request::get(&format!("/r/{id}/whoami"))).map_err(|e| format!("{e}"))
                            })
                            .and_then(|r| {
                                if r.status == 200 {
                                    Ok(r.json::<Whoami>().name)
                                } else {
                                    Err(format!("status {}", r.status))
                                }
                            });
                        records.lock().unwrap_or_else(|e| e.into_inner()).push(Record { id, phase, outcome });
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            })
            .collect();
        Load { stop, phase, records, threads }
    }

    fn set_phase(&self, phase: usize) {
        self.phase.store(phase, Ordering::SeqCst);
    }

    fn records(&self) -> Vec<Record> {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many requests have finished so far.
    fn mark(&self) -> usize {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Waits until the last `n` requests finished after `mark` were all answered by `backend`.
    #[track_caller]
    fn wait_streak(&self, mark: usize, backend: &str, n: usize, what: &str) -> Instant {
        wait_until(PHASE_TIMEOUT, what, || {
            let records = self.records();
            let after = &records[mark.min(records.len())..];
            after.len() >= n && after[after.len() - n..].iter().all(|r| r.outcome.as_deref() == Ok(backend))
        });
        Instant::now()
    }

    /// Waits until at least `n` requests finished after `mark` satisfy `pick`.
    #[track_caller]
    fn wait_count(&self, mark: usize, n: usize, what: &str, pick: impl Fn(&Record) -> bool) {
        wait_until(PHASE_TIMEOUT, what, || self.records().iter().skip(mark).filter(|r| pick(r)).count() >= n);
    }

    fn finish(mut self) -> Vec<Record> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            t.join().expect("a client thread panicked");
        }
        self.records()
    }
}

fn failures(records: &[Record], phase: usize) -> Vec<&Record> {
    records.iter().filter(|r| r.phase == phase && r.outcome.is_err()).collect()
}

/// Requests per id as the backends counted them (`/r/ID/whoami` hits), asked from their hosts.
fn hits_by_id(apps: &[Host], tornadoes: &[Tornado]) -> HashMap<u64, Vec<String>> {
    let mut by_id: HashMap<u64, Vec<String>> = HashMap::new();
    for (host, tornado) in apps.iter().zip(tornadoes) {
        for (path, n) in host.run(|| tornado.stats()).hits {
            let Some(id) = path.strip_prefix("/r/").and_then(|p| p.strip_suffix("/whoami")) else { continue };
            let id: u64 = id.parse().expect("a numeric id");
            for _ in 0..n {
                by_id.entry(id).or_default().push(tornado.name().to_owned());
            }
        }
    }
    by_id
}

#[test]
fn a_balancer_two_gales_and_two_backend_hosts_lose_nothing() {
    if let Some(why) = netns::unavailable().or_else(HaProxy::unavailable) {
        eprintln!("skipped: the multi-host test needs network namespaces and HAProxy: {why}");
        return;
    }
    // Dropped last: every process in the namespaces is gone before they are deleted.
    let mut lan = Lan::create();
    let balancer = lan.host("lb", 1);
    let gale_hosts = [lan.host("gale1", 11), lan.host("gale2", 12)];
    let apps = [lan.host("app1", 21), lan.host("app2", 22)];

    let dns = balancer.run(|| DnsServer::start_on(IpAddr::V4(balancer.ip())));
    dns.set(NAME, Answer::Addresses(vec![IpAddr::V4(apps[0].ip())], 1));
    let tornadoes: Vec<Tornado> = apps
        .iter()
        .enumerate()
        .map(|(i, host)| Tornado::spawn_in(&format!("app{}", i + 1), &host.path(), IpAddr::V4(host.ip()), APP_PORT))
        .collect();
    let mut gales = [start_gale(&gale_hosts[0], dns.addr()), start_gale(&gale_hosts[1], dns.addr())];
    let mut haproxy =
        HaProxy::start(&haproxy_config(&balancer, &[&gale_hosts[0], &gale_hosts[1]]), Some(&balancer.path()));
    let front = SocketAddr::new(IpAddr::V4(balancer.ip()), BALANCER_PORT);
    balancer.run(|| wait_until(PHASE_TIMEOUT, "HAProxy accepting", || TcpStream::connect(front).is_ok()));

    let load = Load::start(&balancer, front);

    // 1. The DNS answer changes: app1 -> app2 -> both.
    load.wait_count(0, 20, "requests answered by app1 through the balancer", |r| r.outcome.as_deref() == Ok("app1"));
    let changed = Instant::now();
    let mark = load.mark();
    dns.set(NAME, Answer::Addresses(vec![IpAddr::V4(apps[1].ip())], 1));
    let moved = load.wait_streak(mark, "app2", 30, "traffic moving to app2 after the DNS change");
    eprintln!("multihost: DNS app1 -> app2: traffic on app2 alone {:?} after the change", moved - changed);
    let mark = load.mark();
    dns.set(NAME, Answer::Addresses(vec![IpAddr::V4(apps[0].ip()), IpAddr::V4(apps[1].ip())], 1));
    for app in ["app1", "app2"] {
        load.wait_count(mark, 10, &format!("{app} answering after the DNS answer named both"), |r| {
            r.outcome.as_deref() == Ok(app)
        });
    }
    let records = load.records();
    assert!(failures(&records, 0).is_empty(), "failed requests while DNS answers changed: {:?}", failures(&records, 0));

    // 2. gale1 stops gracefully behind the balancer.
    load.set_phase(1);
    gales[0].signal(SIGTERM);
    haproxy.wait_log("gales/gale1 is DOWN", PHASE_TIMEOUT);
    assert!(
        gales[0].wait_timeout(Duration::ZERO).is_none(),
        "gale1 exited before HAProxy took it out (shutdown_delay too short?); stderr:\n{}",
        gales[0].stderr()
    );
    let status = gales[0].wait();
    assert_eq!(status.code(), Some(0), "gale1's graceful stop; stderr:\n{}", gales[0].stderr());
    let mark = load.mark();
    load.wait_count(mark, 40, "requests answered after gale1 exited", |r| r.outcome.is_ok());
    let records = load.records();
    assert!(failures(&records, 1).is_empty(), "failed requests while gale1 stopped: {:?}", failures(&records, 1));
    // It comes back, and HAProxy takes it in again.
    gales[0] = start_gale(&gale_hosts[0], dns.addr());
    haproxy.wait_log("gales/gale1 is UP", PHASE_TIMEOUT);

    // 3. app1's link is cut while requests are in flight on it: slow ones sent to gale2 directly
    // (four at once, so round robin gives app1 some), and the clients' own.
    load.set_phase(2);
    let gale2 = SocketAddr::new(IpAddr::V4(gale_hosts[1].ip()), GALE_PORT);
    let slow: Vec<JoinHandle<Result<u16, String>>> = (0..4)
        .map(|_| {
            let ns = balancer.path();
            std::thread::spawn(move || {
                netns::enter(&ns);
                let mut conn = Conn::try_open(gale2).map_err(|e| e.to_string())?;
                conn.try_send(&Request::get("/slow?s=2")).map(|r| r.status).map_err(|e| e.to_string())
            })
        })
        .collect();
    wait_until(PHASE_TIMEOUT, "a slow request in flight on app1", || {
        apps[0].run(|| tornadoes[0].inflight("/slow")) >= 1
    });
    let mark = load.mark();
    let cut = Instant::now();
    apps[0].cut();
    let moved = load.wait_streak(mark, "app2", 40, "traffic moving to app2 after app1's link was cut");
    eprintln!("multihost: app1 cut: traffic on app2 alone {:?} after the cut", moved - cut);
    let slow: Vec<Result<u16, String>> = slow.into_iter().map(|t| t.join().expect("a slow client panicked")).collect();
    let records = load.finish();
    apps[0].restore();

    // The slow requests app1 held were sent: each ends in 504 (read_timeout), none is sent again
    // to app2 (next_upstream = "connect"); the others were answered by app2.
    let statuses: Vec<u16> = slow.iter().map(|r| *r.as_ref().expect("a slow request got no answer")).collect();
    let timed_out = statuses.iter().filter(|s| **s == 504).count();
    let answered = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(timed_out + answered, statuses.len(), "slow requests: {statuses:?}");
    let on_app1 = apps[0].run(|| tornadoes[0].hits("/slow"));
    let on_app2 = apps[1].run(|| tornadoes[1].hits("/slow"));
    assert!(on_app1 >= 1, "app1 never got a slow request");
    assert_eq!(on_app1, timed_out as u64, "each slow request app1 held ends in 504: {statuses:?}");
    assert_eq!(on_app2, answered as u64, "a slow request sent to app1 was sent again to app2: {statuses:?}");

    // Connects to app1 timed out (no refusal: the host is unreachable, not down).
    let stderr: String = gales.iter().map(Gale::stderr).collect();
    let app1 = SocketAddr::new(IpAddr::V4(apps[0].ip()), APP_PORT).to_string();
    assert!(stderr.contains(&format!("connect to {app1} timed out")), "no connect timeout to {app1} logged:\n{stderr}");
    let connect_errors: f64 = gales
        .iter()
        .zip(&gale_hosts)
        .map(|(gale, host)| {
            let metrics = host.run(|| admin::metrics(admin_addr(gale)));
            let labels = [("upstream", "tornadoes"), ("backend", app1.as_str()), ("outcome", "connect_error")];
            metrics.get("gale_upstream_attempts_total", &labels).unwrap_or(0.0)
        })
        .sum();
    assert!(connect_errors >= 1.0, "gale counted no connect error to {app1}");

    // Requests of the first two phases that finished later failed no more than the others.
    for (phase, what) in [(0, "while DNS answers changed"), (1, "while gale1 stopped and came back")] {
        assert!(failures(&records, phase).is_empty(), "failed requests {what}: {:?}", failures(&records, phase));
    }

    // What failed was sent to app1 before the cut: a 504 after read_timeout, at most one per
    // client, never sent again to app2.
    let failed = failures(&records, 2);
    assert!(
        failed.iter().all(|r| r.outcome.as_ref().is_err_and(|e| e == "status 504")),
        "unexpected failures: {failed:?}"
    );
    assert!(failed.len() <= CLIENTS, "{} requests failed with {CLIENTS} clients: {failed:?}", failed.len());
    eprintln!(
        "multihost: {} client requests in all; after the cut, {} of theirs and {timed_out} slow ones in flight \
         to app1 failed (504)",
        records.len(),
        failed.len()
    );

    // No request reached a backend twice; each answered one reached exactly the backend that
    // answered it; no failed one reached app2.
    let hits = hits_by_id(&apps, &tornadoes);
    for record in &records {
        let got = hits.get(&record.id).map(Vec::as_slice).unwrap_or_default();
        assert!(got.len() <= 1, "request {} reached the backends {} times: {got:?}", record.id, got.len());
        match &record.outcome {
            Ok(backend) => assert_eq!(got, std::slice::from_ref(backend), "request {}", record.id),
            Err(_) => assert!(!got.iter().any(|b| b == "app2"), "failed request {} was sent again to app2", record.id),
        }
    }
}
