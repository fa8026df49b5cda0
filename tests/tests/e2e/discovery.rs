//! Upstream servers given by DNS name: the harness's own DNS server (UDP and TCP on loopback)
//! answers for `app.gale.test`, real Tornado backends listen on 127.0.0.2, 127.0.0.3, ... with
//! one port, and the test changes the answers while clients run.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gale_tests::admin::{self, admin_addr};
use gale_tests::dns::{Answer, DnsServer};
use gale_tests::{ConfigBuilder, Gale, Tornado, Whoami, free_port, run_gale, wait_until};

const NAME: &str = "app.gale.test";

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// Tornado backends on 127.0.0.{2,3,...} with one port (the one the OS gave the first), named
/// `b2`, `b3`, ...
fn backends(lasts: &[u8]) -> (u16, Vec<Tornado>) {
    let first = Tornado::spawn_on(&format!("b{}", lasts[0]), ip(lasts[0]), 0);
    let port = first.port();
    let mut all = vec![first];
    all.extend(lasts[1..].iter().map(|l| Tornado::spawn_on(&format!("b{l}"), ip(*l), port)));
    (port, all)
}

fn config(dns: &DnsServer, port: u16) -> ConfigBuilder {
    ConfigBuilder::new([])
        .named(&format!("{NAME}:{port}"), 1)
        .upstream("resolvers", gale_tests::config::Raw(format!("[\"{}\"]", dns.addr())))
        .upstream("resolve_interval", "1s")
        .admin()
}

/// The addresses `/status` shows for the name.
fn resolved(gale: &Gale) -> Vec<String> {
    let status = admin::status(admin_addr(gale));
    let names = &status["upstreams"][0]["names"][0]["addresses"];
    names.as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

fn resolve_count(gale: &Gale, result: &str) -> f64 {
    admin::metrics(admin_addr(gale))
        .get("gale_upstream_resolve_total", &[("upstream", "tornadoes"), ("name", NAME), ("result", result)])
        .unwrap_or(0.0)
}

/// Clients sending GET /whoami in a loop until stopped; each answer's backend name or status.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Vec<Result<String, u16>>>>,
}

impl Load {
    fn start(gale: &Gale, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let addr = gale.addr();
        let threads = (0..clients)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    // Bounded: stops when told, or after 60 s whatever happens.
                    let end = Instant::now() + Duration::from_secs(60);
                    while !stop.load(Ordering::SeqCst) && Instant::now() < end {
                        let r = gale_tests::http::get(addr, "/whoami");
                        seen.push(if r.status == 200 { Ok(r.json::<Whoami>().name) } else { Err(r.status) });
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    seen
                })
            })
            .collect();
        Load { stop, threads }
    }

    fn finish(self) -> Vec<Result<String, u16>> {
        self.stop.store(true, Ordering::SeqCst);
        self.threads.into_iter().flat_map(|t| t.join().expect("client thread")).collect()
    }
}

#[test]
fn a_changed_answer_moves_traffic_with_no_failed_request() {
    let (port, tornadoes) = backends(&[2, 3]);
    let dns = DnsServer::start();
    dns.set(NAME, Answer::Addresses(vec![ip(2)], 1));
    let gale = config(&dns, port).start();
    // The Site went live with its first answer: no 502 while the name resolves.
    assert_eq!(resolved(&gale), [format!("127.0.0.2:{port}")]);

    let load = Load::start(&gale, 3);
    wait_until(Duration::from_secs(10), "traffic on b2", || tornadoes[0].hits("/whoami") >= 10);
    let changed_at = Instant::now();
    dns.set(NAME, Answer::Addresses(vec![ip(3)], 1));
    wait_until(Duration::from_secs(10), "traffic on b3", || tornadoes[1].hits("/whoami") >= 1);
    let moved_after = changed_at.elapsed();
    wait_until(Duration::from_secs(10), "/status to show only b3", || resolved(&gale) == [format!("127.0.0.3:{port}")]);
    let b2_then = tornadoes[0].hits("/whoami");
    wait_until(Duration::from_secs(10), "more traffic on b3", || tornadoes[1].hits("/whoami") >= 20);
    let seen = load.finish();

    let failed: Vec<_> = seen.iter().filter(|r| r.is_err()).collect();
    assert!(failed.is_empty(), "failed requests while the answer changed: {failed:?} of {}", seen.len());
    assert_eq!(tornadoes[0].hits("/whoami"), b2_then, "b2 left the answer: no new request reaches it");
    eprintln!("traffic moved {moved_after:?} after the answer changed (resolve_interval 1s, TTL 1s)");
}

#[test]
fn a_removed_address_finishes_its_slow_request_and_gets_no_new_one() {
    let (port, tornadoes) = backends(&[2, 3]);
    let dns = DnsServer::start();
    dns.set(NAME, Answer::Addresses(vec![ip(2), ip(3)], 1));
    let gale = config(&dns, port).start();
    assert_eq!(resolved(&gale).len(), 2);
    let addr = gale.addr();
    let slow = std::thread::spawn(move || gale_tests::http::get(addr, "/slow?s=3"));
    wait_until(Duration::from_secs(10), "the slow request to start", || {
        tornadoes.iter().any(|t| t.inflight("/slow") == 1)
    });
    let (busy, other) = if tornadoes[0].inflight("/slow") == 1 { (0, 1) } else { (1, 0) };
    dns.set(NAME, Answer::Addresses(vec![tornadoes[other].addr().ip()], 1));
    wait_until(Duration::from_secs(10), "the busy address to leave", || resolved(&gale).len() == 1);
    for _ in 0..10 {
        let who: Whoami = gale.get("/whoami").expect_status(200).json();
        assert_eq!(who.name, tornadoes[other].name(), "a removed address got a new request");
    }
    let response = slow.join().expect("slow client");
    response.expect_status(200);
    assert_eq!(tornadoes[busy].hits("/whoami"), 0);
    // Its connection is not kept alive for later: only the harness's own is left.
    wait_until(Duration::from_secs(10), "gale's connection to the removed address closed", || {
        tornadoes[busy].stats().open_connections == 1
    });
    assert!(tornadoes[other].stats().open_connections >= 2, "the address that stays keeps its idle connection");
}

#[test]
fn failed_lookups_keep_the_last_answer_and_are_counted_and_logged() {
    let (port, tornadoes) = backends(&[2]);
    let dns = DnsServer::start();
    dns.set(NAME, Answer::Addresses(vec![ip(2)], 1));
    let gale = config(&dns, port).start();
    for (what, answer, error) in [
        ("NXDOMAIN", Answer::NxDomain, "NXDOMAIN"),
        ("garbage", Answer::Garbage, ""),
        ("no address", Answer::Addresses(vec![], 1), "no address"),
        ("silence", Answer::Silent, ""),
    ] {
        let errors = resolve_count(&gale, "error");
        dns.set(NAME, answer);
        wait_until(Duration::from_secs(30), &format!("a failed lookup counted ({what})"), || {
            resolve_count(&gale, "error") > errors
        });
        for _ in 0..5 {
            let who: Whoami = gale.get("/whoami").expect_status(200).json();
            assert_eq!(who.name, tornadoes[0].name(), "{what}: the last answer is kept");
        }
        assert_eq!(resolved(&gale), [format!("127.0.0.2:{port}")], "{what}");
        let status = admin::status(admin_addr(&gale));
        let last_error = status["upstreams"][0]["names"][0]["last_error"].as_str().unwrap_or_default().to_owned();
        assert!(!last_error.is_empty() && last_error.contains(error), "{what}: /status last_error {last_error:?}");
        // Back to a good answer before the next kind of failure.
        let ok = resolve_count(&gale, "ok");
        dns.set(NAME, Answer::Addresses(vec![ip(2)], 1));
        wait_until(Duration::from_secs(30), "a good lookup again", || resolve_count(&gale, "ok") > ok);
    }
    wait_until(Duration::from_secs(10), "the failed lookups logged", || {
        let stderr = gale.stderr();
        stderr.contains("cannot resolve") && stderr.contains("keeping the last answer")
    });
}

#[test]
fn a_name_unknown_at_start_answers_502_until_it_resolves() {
    let (port, tornadoes) = backends(&[2]);
    let dns = DnsServer::start();
    let gale = config(&dns, port).start();
    gale.get("/whoami").expect_status(502);
    wait_until(Duration::from_secs(10), "the failed lookup logged", || gale.stderr().contains("no address yet"));
    dns.set(NAME, Answer::Addresses(vec![ip(2)], 1));
    wait_until(Duration::from_secs(15), "the name to resolve", || gale.get("/whoami").status == 200);
    let who: Whoami = gale.get("/whoami").expect_status(200).json();
    assert_eq!(who.name, tornadoes[0].name());
}

#[test]
fn check_resolves_names_only_with_strict() {
    let dns = DnsServer::start();
    let port = free_port();
    let text = config(&dns, port).render();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gale.toml");
    std::fs::write(&path, &text).expect("write config");
    let path = path.to_str().expect("utf-8 path");
    let loose = run_gale(&["check", "--config", path], None);
    assert_eq!(loose.code(), Some(0), "without --strict a name is not resolved: {}", loose.stderr);
    let strict = run_gale(&["check", "--strict", "--config", path], None);
    assert_eq!(strict.code(), Some(1), "{}", strict.stderr);
    let line = text.lines().position(|l| l.contains(NAME)).expect("the name in the config");
    let col = text.lines().nth(line).and_then(|l| l.find(&format!("\"{NAME}:"))).expect("quoted name") + 1;
    let expected = format!("{path}:{}:{col}: upstream `tornadoes`: `{NAME}:{port}` does not resolve", line + 1);
    assert!(
        strict.stderr.starts_with(&expected) && strict.stderr.contains("does not resolve"),
        "expected {expected}... does not resolve:\n{}",
        strict.stderr
    );
    dns.set(NAME, Answer::Addresses(vec![ip(2)], 1));
    let ok = run_gale(&["check", "--strict", "--config", path], None);
    assert_eq!(ok.code(), Some(0), "{}", ok.stderr);
}

#[test]
fn a_huge_answer_is_capped_and_logged() {
    let (port, _tornadoes) = backends(&[2]);
    let dns = DnsServer::start();
    // 300 addresses: too large for UDP, so sent truncated and fetched over TCP.
    let many: Vec<IpAddr> = (0..300u16).map(|i| IpAddr::V4(Ipv4Addr::new(127, 1, (i >> 8) as u8, i as u8))).collect();
    dns.set(NAME, Answer::Addresses(many, 30));
    let gale = config(&dns, port).start();
    wait_until(Duration::from_secs(15), "the answer in /status", || resolved(&gale).len() == 256);
    let metrics = admin::metrics(admin_addr(&gale));
    assert_eq!(metrics.value("gale_upstream_addresses", &[("upstream", "tornadoes"), ("name", NAME)]), 256.0);
    wait_until(Duration::from_secs(10), "the cap logged", || {
        gale.stderr().contains("holds 300 addresses; using the first 256")
    });
}

#[test]
fn a_reload_swaps_in_a_resolved_pool_with_no_failed_request_and_a_dropped_pool_stops_asking() {
    let (port, tornadoes) = backends(&[2, 3]);
    let dns = DnsServer::start();
    dns.set(NAME, Answer::Addresses(vec![ip(2), ip(3)], 1));
    let gale = config(&dns, port).start();
    let load = Load::start(&gale, 3);
    wait_until(Duration::from_secs(10), "traffic", || tornadoes.iter().all(|t| t.hits("/whoami") >= 5));
    // A changed upstream: a new pool, which resolves before it is swapped in.
    let changed = config(&dns, port).upstream("resolve_interval", "2s").render();
    gale_tests::reload::sighup(&gale, &changed).expect_reloaded();
    let after: Vec<u64> = tornadoes.iter().map(|t| t.hits("/whoami")).collect();
    wait_until(Duration::from_secs(10), "traffic on both after the reload", || {
        tornadoes.iter().zip(&after).all(|(t, n)| t.hits("/whoami") >= n + 5)
    });
    let seen = load.finish();
    let failed: Vec<_> = seen.iter().filter(|r| r.is_err()).collect();
    assert!(failed.is_empty(), "failed requests across the reload: {failed:?} of {}", seen.len());
    let metrics = admin::metrics(admin_addr(&gale));
    let series = metrics.samples.iter().filter(|s| s.name == "gale_upstream_addresses").count();
    assert_eq!(series, 1, "one pool per upstream name in /metrics:\n{}", metrics.text);

    // Without the name, nobody asks for it any more: the old pool's resolver task ended.
    let literal = ConfigBuilder::new([tornadoes[1].addr()]).admin().render();
    gale_tests::reload::sighup(&gale, &literal).expect_reloaded();
    gale.get("/whoami").expect_status(200);
    let asked = dns.queries(NAME);
    // Absence can only be shown over time: three of the old 2 s intervals.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(dns.queries(NAME), asked, "a dropped pool still resolves its name");
}

#[test]
fn a_and_aaaa_records_are_both_backends_with_the_servers_weight() {
    let (port, mut tornadoes) = backends(&[2]);
    tornadoes.push(Tornado::spawn_on("v6", IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), port));
    let dns = DnsServer::start();
    dns.set(NAME, Answer::Addresses(vec![ip(2), IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)], 1));
    let gale = ConfigBuilder::new([])
        .named(&format!("{NAME}:{port}"), 3)
        .upstream("resolvers", gale_tests::config::Raw(format!("[\"{}\"]", dns.addr())))
        .admin()
        .start();
    let mut got = resolved(&gale);
    got.sort();
    assert_eq!(got, [format!("127.0.0.2:{port}"), format!("[::1]:{port}")]);
    let status = admin::status(admin_addr(&gale));
    let weights: Vec<_> =
        status["upstreams"][0]["backends"].as_array().expect("backends").iter().map(|b| b["weight"].clone()).collect();
    assert_eq!(weights, [3, 3], "each address has the server's weight: {status:#}");
    let names: std::collections::BTreeSet<String> =
        (0..6).map(|_| gale.get("/whoami").expect_status(200).json::<Whoami>().name).collect();
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["b2", "v6"]);
}
