//! What the reference configuration's `location /` does: proxy to Tornado with the right headers, bodies intact.

use gale_tests::Whoami;
use gale_tests::http::Request;

use crate::pool;

#[test]
fn serves_tornado_pages_with_tornados_server_header() {
    let (_tornadoes, gale) = pool(1, |c| c);
    let response = gale.get("/");
    response.expect_status(200);
    let server = response.header("server").unwrap_or_default();
    assert!(server.starts_with("TornadoServer/"), "the backend's Server header must pass through:\n{response}");
    assert_eq!(response.header_all("server").len(), 1, "{response}");
    assert!(response.text().contains("Hello from tornado-0"), "{response}");
}

#[test]
fn host_reaches_the_backend_as_the_client_sent_it() {
    let (_tornadoes, gale) = pool(1, |c| c);
    for host in ["www.example.org", "Shop.Example.ORG:8443", "127.0.0.1:1"] {
        let who: Whoami = gale.send(&Request::get("/whoami").header("Host", host)).expect_status(200).json();
        assert_eq!(who.header("host"), Some(host));
        assert_eq!(who.host, host);
    }
}

#[test]
fn backend_sees_the_real_client_ip_and_scheme_whatever_the_client_forges() {
    let (_tornadoes, gale) = pool(1, |c| c);
    let forged = Request::get("/whoami")
        .header("X-Real-IP", "6.6.6.6")
        .header("X-Scheme", "https")
        .header("X-Forwarded-For", "6.6.6.6")
        .header("X-Forwarded-Proto", "https");
    let who: Whoami = gale.send(&forged).expect_status(200).json();
    // Tornado's xheaders=True reads X-Real-IP and X-Scheme first: gale must overwrite them.
    assert_eq!(who.remote_ip, "127.0.0.1", "{who:#?}");
    assert_eq!(who.protocol, "http", "{who:#?}");
    assert_eq!(who.header("x-real-ip"), Some("127.0.0.1"), "{who:#?}");
    assert_eq!(who.header("x-scheme"), Some("http"), "{who:#?}");
    assert_eq!(who.header("x-forwarded-proto"), Some("http"), "{who:#?}");
    // X-Forwarded-For is appended to, as nginx's $proxy_add_x_forwarded_for does.
    assert_eq!(who.header("x-forwarded-for"), Some("6.6.6.6, 127.0.0.1"), "{who:#?}");

    let plain: Whoami = gale.get("/whoami").expect_status(200).json();
    assert_eq!(plain.remote_ip, "127.0.0.1");
    assert_eq!(plain.header("x-forwarded-for"), Some("127.0.0.1"), "{plain:#?}");
    assert_eq!(plain.header("x-real-ip"), Some("127.0.0.1"), "{plain:#?}");
}

#[test]
fn hop_by_hop_headers_stay_on_their_hop() {
    let (_tornadoes, gale) = pool(1, |c| c);
    let request = Request::get("/whoami")
        .header("Connection", "keep-alive, X-Hop-Secret")
        .header("X-Hop-Secret", "only for gale")
        .header("Keep-Alive", "timeout=5")
        .header("X-End-To-End", "kept");
    let who: Whoami = gale.send(&request).expect_status(200).json();
    assert_eq!(who.header("x-end-to-end"), Some("kept"), "{who:#?}");
    assert_eq!(who.header("x-hop-secret"), None, "a header named in Connection is hop-by-hop");
    assert_eq!(who.header("keep-alive"), None, "{who:#?}");
    for value in who.header_all("connection") {
        assert!(!value.to_ascii_lowercase().contains("x-hop-secret"), "{who:#?}");
    }
}

#[test]
fn target_and_query_reach_the_backend_unchanged() {
    let (_tornadoes, gale) = pool(1, |c| c);
    let target = "/whoami?a=1&b=%20x&c=%2F..%2F&d";
    let who: Whoami = gale.get(target).expect_status(200).json();
    assert_eq!(who.uri, target);
    assert_eq!(who.method, "GET");
}

#[test]
fn request_bodies_reach_the_backend_intact() {
    let (_tornadoes, gale) = pool(1, |c| c);
    let body = noise(1 << 20);
    let response = gale.send(&Request::post("/echo?back=1", body.clone()));
    response.expect_status(200);
    assert!(response.body == body, "the 1 MiB body came back altered");

    let who: Whoami = gale.send(&Request::new("PUT", "/whoami").body(&b"12345"[..])).expect_status(200).json();
    assert_eq!((who.method.as_str(), who.body_length), ("PUT", 5));
}

#[test]
fn large_responses_arrive_intact_with_either_framing() {
    let (_tornadoes, gale) = pool(1, |c| c);
    let n = 5_000_000;
    for target in [format!("/big?n={n}"), format!("/big?n={n}&chunked=1")] {
        let response = gale.get(&target);
        response.expect_status(200);
        assert_eq!(response.body.len(), n, "{target}");
        let bad = response.body.iter().enumerate().position(|(i, b)| usize::from(*b) != i % 251);
        assert_eq!(bad, None, "{target}: first corrupted byte");
    }
}

#[test]
fn location_header_is_not_rewritten() {
    let (_tornadoes, gale) = pool(1, |c| c);
    let to = "http://127.0.0.1:1/elsewhere?x=1";
    let response = gale.get(&format!("/redirect?to={}", "http%3A%2F%2F127.0.0.1%3A1%2Felsewhere%3Fx%3D1"));
    response.expect_status(302);
    assert_eq!(response.header("location"), Some(to), "{response}");
}

#[test]
fn backend_error_statuses_pass_through() {
    let (_tornadoes, gale) = pool(1, |c| c);
    let response = gale.get("/no/such/page");
    assert_eq!(response.status, 404, "{response}");
    let server = response.header("server").unwrap_or_default();
    assert!(server.starts_with("TornadoServer/"), "the 404 must be Tornado's:\n{response}");
    // A 404 is an answer, not a failure: the backend stays in the pool.
    gale.get("/whoami").expect_status(200);
}

#[test]
fn a_response_cut_by_a_dying_backend_is_never_completed() {
    // The backend sends the head and half the body, then crashes. The client must see a
    // broken response (never a complete-looking one: that would be lost data answered 200).
    for chunked in [false, true] {
        let (_tornadoes, gale) = pool(1, |c| c);
        let target = format!("/big?n=1000000&die_after=500000&chunked={}", u8::from(chunked));
        let mut conn = gale.conn();
        let cut = conn.try_send(&Request::get(&target));
        // Closed mid-body (EOF or reset), never completed and never left hanging.
        gale_tests::http::assert_closed(&cut, &format!("chunked={chunked}: a cut response"));
    }
}

#[test]
fn read_timeout_cuts_a_body_that_stops_but_not_one_that_trickles() {
    // read_timeout bounds each wait for the next piece of the body, not the whole body.
    for chunked in [false, true] {
        let (_tornadoes, gale) = pool(1, |c| c.upstream("read_timeout", "1s"));
        let c = u8::from(chunked);
        // Three pauses of 0.6 s: 1.8 s in all, never 1 s without a byte.
        let trickle = gale.get(&format!("/big?n=100000&stall_after=30000&stall=0.6&chunked={c}"));
        trickle.expect_status(200);
        assert_eq!(trickle.body.len(), 100_000, "chunked={chunked}: the trickling body was cut");
        assert!(trickle.body.iter().enumerate().all(|(i, &b)| usize::from(b) == i % 251));
        // One pause of 4 s: gale gives up after 1 s, and the client must see a broken
        // response, never the complete one the backend would have sent at 4 s.
        let mut conn = gale.conn();
        let stalled = conn.try_send(&Request::get(&format!("/big?n=100000&stall_after=50000&stall=4&chunked={c}")));
        if let Ok(response) = stalled {
            panic!(
                "chunked={chunked}: a stalled body was waited for: {} with {} bytes",
                response.status,
                response.body.len()
            );
        }
    }
}

/// Deterministic bytes that are not a repeating short pattern.
fn noise(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}
