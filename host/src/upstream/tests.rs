use super::*;

fn pool_of(servers: &str) -> Arc<UpstreamPool> {
    let text = format!(
        r#"
[upstream.app]
servers = [{servers}]
[[server]]
listen = ["127.0.0.1:8080"]
[[server.location]]
path = "/"
proxy = {{ pass = "app" }}
"#
    );
    let cfg = config::parse("t.toml", &text, std::path::Path::new(".")).expect("valid");
    UpstreamPool::new(cfg.upstreams[0].clone())
}

fn ports(picks: &[Arc<Backend>]) -> Vec<u16> {
    picks.iter().map(|b| b.addr.port()).collect()
}

#[test]
fn select_skips_backends_out_of_rotation() {
    let pool = pool_of(r#""127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8002""#);
    assert!(pool.fixed().iter().all(|b| b.in_rotation()), "in rotation by default");
    pool.fixed()[1].set_in_rotation(false);
    let picks: Vec<_> = (0..6).map(|_| pool.select(&[]).expect("a backend")).collect();
    assert_eq!(ports(&picks), [8000, 8002, 8000, 8002, 8000, 8002]);
    for b in pool.fixed() {
        b.set_in_rotation(false);
    }
    assert!(pool.select(&[]).is_none());
}

#[test]
fn select_skips_what_was_tried() {
    let pool = pool_of(r#""127.0.0.1:8000", "127.0.0.1:8001""#);
    let first = pool.select(&[]).expect("a backend");
    let second = pool.select(std::slice::from_ref(&first)).expect("another");
    assert_ne!(first.addr, second.addr);
    assert!(pool.select(&[first, second]).is_none());
}

#[test]
fn resolved_addresses_join_and_leave_keeping_the_survivors() {
    let pool = pool_of(r#""127.0.0.1:8000", { address = "app.example:9000", weight = 2 }"#);
    assert_eq!(pool.members().backends.len(), 1, "no address for the name yet");
    let a: SocketAddr = "10.0.0.1:9000".parse().expect("addr");
    let b: SocketAddr = "10.0.0.2:9000".parse().expect("addr");
    assert!(pool.set_addresses(0, &[a, b]));
    let members = pool.members();
    assert_eq!(members.backends.len(), 3);
    assert!(members.backends[1..].iter().all(|x| x.weight == 2 && x.name.as_deref() == Some("app.example")));
    let kept = members.backends[2].clone();
    assert!(!pool.set_addresses(0, &[a, b]), "the same answer changes nothing");
    let c: SocketAddr = "10.0.0.3:9000".parse().expect("addr");
    let in_flight = pool.start(&members.backends[1]);
    assert!(pool.set_addresses(0, &[b, c]));
    let now = pool.members();
    assert!(Arc::ptr_eq(&now.backends[1], &kept), "a surviving address keeps its state");
    assert_eq!(now.backends[2].addr, c);
    assert!(members.backends[1].conns.is_retired(), "the removed address keeps no idle connections");
    assert_eq!(members.backends[1].in_flight(), 1, "its request in flight goes on");
    let gone = members.backends[1].addr.to_string();
    assert!(crate::metrics::render().contains(&format!("backend=\"{gone}\"")), "series while it serves");
    drop(in_flight);
    drop(members);
    assert!(
        !crate::metrics::render().contains(&format!("backend=\"{gone}\"")),
        "the series of a removed address end with its last request"
    );
    let picked: Vec<_> = (0..30).map(|_| pool.select(&[]).expect("a backend").addr).collect();
    assert!(!picked.contains(&a), "a removed address gets no new request");
    assert!(picked.contains(&c) && picked.contains(&b));
}
