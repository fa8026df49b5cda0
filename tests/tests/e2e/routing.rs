//! Picking the server block (Host) and the location (exact, then longest prefix).

use std::net::SocketAddr;

use gale_tests::http::{self, Request};
use gale_tests::{Gale, Tornado, Whoami, free_port};

/// Which backend answered `target` with this Host.
#[track_caller]
fn answered_by(addr: SocketAddr, host: &str, target: &str) -> u16 {
    let response = http::send(addr, &Request::get(target).header("Host", host));
    response.expect_status(200);
    response.json::<Whoami>().port
}

/// Two server blocks on one listener: `www.example.org` -> a, `*.example.net` -> b.
fn two_servers(a: &Tornado, b: &Tornado, b_is_default: bool) -> Gale {
    let port = free_port();
    Gale::start(&format!(
        r#"
[upstream.a]
servers = ["{a}"]

[upstream.b]
servers = ["{b}"]

[[server]]
listen = ["127.0.0.1:{port}"]
server_name = ["www.example.org"]

[[server.location]]
path = "/"
proxy = {{ pass = "a" }}

[[server]]
listen = ["127.0.0.1:{port}"]
server_name = ["*.example.net"]
default_server = {b_is_default}

[[server.location]]
path = "/"
proxy = {{ pass = "b" }}
"#,
        a = a.addr(),
        b = b.addr(),
    ))
}

#[test]
fn server_name_picks_the_server_block_and_the_first_is_the_default() {
    let a = Tornado::spawn("a");
    let b = Tornado::spawn("b");
    let gale = two_servers(&a, &b, false);
    let addr = gale.addr();
    assert_eq!(answered_by(addr, "www.example.org", "/whoami"), a.port());
    assert_eq!(answered_by(addr, "www.example.org:8080", "/whoami"), a.port());
    assert_eq!(answered_by(addr, "WWW.Example.Org", "/whoami"), a.port());
    assert_eq!(answered_by(addr, "api.example.net", "/whoami"), b.port());
    assert_eq!(answered_by(addr, "deep.api.example.net:1", "/whoami"), b.port());
    // Unknown names fall to the listener's default server: the first one.
    assert_eq!(answered_by(addr, "unknown.test", "/whoami"), a.port());
    assert_eq!(answered_by(addr, "example.net", "/whoami"), a.port(), "*.x does not match x");
}

#[test]
fn default_server_flag_overrides_the_first_server() {
    let a = Tornado::spawn("a");
    let b = Tornado::spawn("b");
    let gale = two_servers(&a, &b, true);
    assert_eq!(answered_by(gale.addr(), "unknown.test", "/whoami"), b.port());
    assert_eq!(answered_by(gale.addr(), "www.example.org", "/whoami"), a.port());
}

#[test]
fn exact_location_beats_prefixes_and_the_longest_prefix_wins() {
    let a = Tornado::spawn("a");
    let b = Tornado::spawn("b");
    let gale = Gale::start(&format!(
        r#"
[upstream.a]
servers = ["{a}"]

[upstream.b]
servers = ["{b}"]

[[server]]
listen = ["127.0.0.1:0"]

[[server.location]]
path = "/"
proxy = {{ pass = "a" }}

[[server.location]]
path = "/api/"
proxy = {{ pass = "b" }}

[[server.location]]
path = "/api/v1/"
proxy = {{ pass = "a" }}

[[server.location]]
path = "= /whoami"
proxy = {{ pass = "b" }}
"#,
        a = a.addr(),
        b = b.addr(),
    ));
    let addr = gale.addr();
    let host = "localhost";
    assert_eq!(answered_by(addr, host, "/whoami"), b.port(), "exact match");
    assert_eq!(answered_by(addr, host, "/whoami?x=1"), b.port(), "exact match ignores the query");
    assert_eq!(answered_by(addr, host, "/x/whoami"), a.port(), "prefix /");
    assert_eq!(answered_by(addr, host, "/api/whoami"), b.port(), "prefix /api/");
    assert_eq!(answered_by(addr, host, "/api/v1/whoami"), a.port(), "longest prefix /api/v1/");
    assert_eq!(answered_by(addr, host, "/api/v2/whoami"), b.port(), "prefix /api/");
}

#[test]
fn no_matching_location_is_404_without_touching_a_backend() {
    let a = Tornado::spawn("a");
    let gale = Gale::start(&format!(
        r#"
[upstream.a]
servers = ["{a}"]

[[server]]
listen = ["127.0.0.1:0"]

[[server.location]]
path = "/api/"
proxy = {{ pass = "a" }}
"#,
        a = a.addr(),
    ));
    gale.get("/whoami").expect_status(404);
    gale.get("/apiwhoami").expect_status(404);
    gale.get("/api/whoami").expect_status(200);
    let stats = a.stats();
    assert_eq!(stats.hits.get("/whoami"), None, "{stats:?}");
    assert_eq!(stats.hits.get("/apiwhoami"), None, "{stats:?}");
}
