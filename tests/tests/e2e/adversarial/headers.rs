//! Hop-by-hop stripping cannot remove what gale or a plugin adds; Host and Upgrade rules.
//!
//! A client's `Connection` names headers meant for gale alone (RFC 9110 7.6.1), which gale
//! removes; it must not reach what gale adds (Host, X-Forwarded-*, X-Real-IP, X-Scheme) or what a
//! header-policy plugin sets. nginx does not honour `Connection`'s list at all (it forwards the
//! named headers), so it passes every case below except the plain client header, which it
//! forwards. `Upgrade` is forwarded only for the protocols a location allows (nginx forwards none
//! unless configured). A HEAD gets the headers its GET would (nginx skips gzip for HEAD).

use std::io::Read;

use gale_tests::config::Raw;
use gale_tests::http::{self, Request};
use gale_tests::plugins;
use gale_tests::{ConfigBuilder, Gale, Tornado, Whoami, ws};

/// A request header the plugin sets, and a response header it sets.
const PLUGIN: &str = r#"[{ name = "header-policy", config = {
    request = { set = { "x-plugin-set" = "from the plugin" } },
    response = { set = { "x-plugin-resp" = "from the plugin" } },
} }]"#;

/// One Tornado behind gale with [`PLUGIN`] on `location /`.
fn with_plugin() -> (Tornado, Gale) {
    let tornado = Tornado::spawn("headers");
    let builder = plugins::enable(ConfigBuilder::new([tornado.addr()]), &plugins::built_dir());
    let gale = Gale::start(&plugins::on_root(&builder.render(), PLUGIN));
    (tornado, gale)
}

/// What Tornado must have received, whatever the client's `Connection` says.
fn assert_intact(who: &Whoami, case: &str) {
    assert_eq!(who.host, "edge.example.test", "{case}: Host: {who:#?}");
    assert_eq!(who.header("x-plugin-set"), Some("from the plugin"), "{case}: {who:#?}");
    assert_eq!(who.header("x-real-ip"), Some("127.0.0.1"), "{case}: {who:#?}");
    assert_eq!(who.header("x-scheme"), Some("http"), "{case}: {who:#?}");
    assert_eq!(who.header("x-forwarded-proto"), Some("http"), "{case}: {who:#?}");
    assert_eq!(who.header("x-forwarded-for"), Some("9.9.9.9, 127.0.0.1"), "{case}: {who:#?}");
    assert_eq!(who.header("connection"), None, "{case}: Connection itself is hop-by-hop: {who:#?}");
}

#[test]
fn connection_cannot_name_away_what_gale_or_a_plugin_adds() {
    let (_tornado, gale) = with_plugin();
    // (case, Connection lines, whether the client's own `X-Client-Hop` must be gone)
    let cases: [(&str, &[&str], bool); 11] = [
        ("a plugin-set header", &["x-plugin-set"], false),
        ("Host", &["Host"], false),
        ("X-Forwarded-For", &["X-Forwarded-For"], false),
        ("X-Real-IP", &["X-Real-IP"], false),
        ("X-Scheme", &["X-Scheme"], false),
        ("X-Forwarded-Proto", &["X-Forwarded-Proto"], false),
        // RFC 9110 7.6.1: the client's own hop-by-hop header is removed.
        ("a plain client header", &["x-client-hop"], true),
        ("several in one line", &["keep-alive, x-client-hop, Host, x-plugin-set, X-Real-IP, X-Forwarded-For"], true),
        ("repeated Connection lines", &["keep-alive", "x-plugin-set, Host", "x-client-hop", "X-Forwarded-Proto"], true),
        ("odd case and whitespace", &["  X-PLUGIN-SET ,\tHOST,x-Client-Hop  , x-fORWARDED-fOR,"], true),
        ("empty elements", &[",,", " , host ,, x-client-hop"], true),
    ];
    for (case, lines, client_hop_removed) in cases {
        let mut request = Request::get("/whoami")
            .header("Host", "edge.example.test")
            .header("X-Forwarded-For", "9.9.9.9")
            .header("X-Plugin-Set", "forged by the client")
            .header("X-Client-Hop", "for gale only")
            .header("X-Kept", "kept");
        for line in lines {
            request = request.header("Connection", line);
        }
        let response = gale.send(&request);
        assert_eq!(response.status, 200, "{case}: {lines:?}:\n{response}");
        let who: Whoami = response.json();
        assert_intact(&who, case);
        let hop = who.header("x-client-hop");
        if client_hop_removed {
            assert_eq!(hop, None, "{case}: a header the client named in Connection was forwarded: {who:#?}");
        } else {
            assert_eq!(hop, Some("for gale only"), "{case}: {who:#?}");
        }
        assert_eq!(who.header("x-kept"), Some("kept"), "{case}: {who:#?}");
        assert_eq!(response.header("x-plugin-resp"), Some("from the plugin"), "{case}:\n{response}");
    }
}

/// The response direction: the backend's `Connection` names headers for gale (removed), but
/// the plugins' response edits come after that removal.
#[test]
fn a_backend_connection_header_cannot_remove_a_plugin_response_header() {
    let (_tornado, gale) = with_plugin();
    let response =
        gale.get("/set-headers?Connection=x-plugin-resp,%20x-backend-hop&X-Plugin-Resp=backend&X-Backend-Hop=1");
    response.expect_status(200);
    assert_eq!(response.header_all("x-plugin-resp"), vec!["from the plugin"], "{response}");
    assert_eq!(response.header("x-backend-hop"), None, "the backend's hop-by-hop header:\n{response}");
    assert!(
        response.header_all("connection").iter().all(|v| !v.contains("x-")),
        "the backend's Connection list reached the client:\n{response}"
    );
}

// Upgrade: only the protocols a location allows.

/// `location /` (default: websocket only) and `/foo/` allowing `foo` and not `websocket`.
fn upgrade_site() -> (Tornado, Gale) {
    let tornado = Tornado::spawn("upgrade");
    let gale = ConfigBuilder::new([tornado.addr()])
        .location("path = \"/foo/\"\nproxy = { pass = \"tornadoes\", allow_upgrade = [\"foo\"] }")
        .start();
    (tornado, gale)
}

fn upgrade_request(target: &str, protocol: &str) -> Request {
    Request::get(target)
        .header("Connection", "Upgrade, HTTP2-Settings")
        .header("Upgrade", protocol)
        .header("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA")
}

/// `location /` with gale's defaults only (websocket allowed), so this case also runs against
/// a gale that predates `allow_upgrade`.
#[test]
fn a_protocol_the_location_does_not_allow_goes_upstream_as_a_plain_request() {
    let tornado = Tornado::spawn("upgrade");
    let gale = ConfigBuilder::new([tornado.addr()]).start();
    for (target, protocol) in [("/whoami", "h2c"), ("/whoami", "foo"), ("/whoami", "foo/1, h2c")] {
        let case = format!("{target} Upgrade: {protocol}");
        let response = gale.send(&upgrade_request(target, protocol));
        assert_eq!(response.status, 200, "{case}:\n{response}");
        let who: Whoami = response.json();
        assert_eq!(who.header("upgrade"), None, "{case}: an upgrade the location does not allow: {who:#?}");
        assert!(
            who.header("connection").is_none_or(|c| !c.to_ascii_lowercase().contains("upgrade")),
            "{case}: {who:#?}"
        );
        assert_eq!(who.header("http2-settings"), None, "{case}: named in Connection: {who:#?}");
    }
}

#[test]
fn allow_upgrade_lets_a_location_forward_another_protocol() {
    let (_tornado, gale) = upgrade_site();
    let response = gale.send(&upgrade_request("/foo/whoami", "foo/2, h2c"));
    // Tornado's /whoami does not switch: it answers 200 and shows what it received.
    assert_eq!(response.status, 200, "{response}");
    let who: Whoami = response.json();
    assert_eq!(who.header("upgrade"), Some("foo/2"), "only the allowed token: {who:#?}");
    assert_eq!(who.header("connection"), Some("upgrade"), "{who:#?}");
    // The same location drops what it does not list.
    let who: Whoami = gale.send(&upgrade_request("/foo/whoami", "h2c")).expect_status(200).json();
    assert_eq!(who.header("upgrade"), None, "{who:#?}");
}

#[test]
fn websocket_works_by_default_and_only_where_allowed() {
    let (_tornado, gale) = upgrade_site();
    let mut socket = ws::connect(gale.addr(), "/ws");
    socket.echo("through the default allow_upgrade");
    // `/foo/` allows only `foo`: the handshake reaches Tornado as a plain GET, which its
    // WebSocket handler refuses (400), and no tunnel is made.
    match ws::try_connect(gale.addr(), "/foo/ws").expect("connect") {
        Ok(_) => panic!("a WebSocket was opened on a location that does not allow it"),
        Err(refused) => assert_eq!(refused.status, 400, "{}", refused.text()),
    }
}

// HEAD gets the headers GET gets.

/// The gzip settings of the reference nginx configuration.
const GZIP: &str = "{ min_length = 1000, proxied = \"any\", types = [\"text/html\", \"text/css\"] }";

#[test]
fn head_with_gzip_gets_the_headers_get_gets_and_no_body() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("www");
    std::fs::create_dir_all(root.join("static")).expect("mkdir");
    let css: String = (0..300).map(|i| format!(".r{i} {{ margin: {i}px; }}\n")).collect();
    std::fs::write(root.join("static/app.css"), &css).expect("write css");
    let tornado = Tornado::spawn("head");
    let root = serde_json::to_string(root.to_str().expect("UTF-8")).expect("json");
    let gale = ConfigBuilder::new([tornado.addr()])
        .http("gzip", Raw(GZIP.to_owned()))
        .location(&format!("path = \"/static/\"\nstatic = {{ root = {root} }}"))
        .start();
    let headers = ["content-encoding", "vary", "content-length", "etag", "content-type", "accept-ranges"];
    for target in ["/html?n=5000", "/static/app.css"] {
        let mut conn = gale.conn();
        let get = conn.send(&Request::get(target).header("Accept-Encoding", "gzip"));
        get.expect_status(200);
        assert_eq!(get.header("content-encoding"), Some("gzip"), "{target}: GET:\n{get}");
        let head = conn.send(&Request::new("HEAD", target).header("Accept-Encoding", "gzip"));
        head.expect_status(200);
        for name in headers {
            assert_eq!(head.header(name), get.header(name), "{target}: {name} of HEAD and GET:\n{head}\n{get}");
        }
        assert!(head.body.is_empty(), "{target}: HEAD with a body:\n{head}");
        // Had gale sent bytes after the HEAD head, this response would not parse as itself.
        let next = conn.send(&Request::get(target));
        next.expect_status(200);
        assert_eq!(next.header("content-encoding"), None, "{target}: no Accept-Encoding:\n{next}");
    }
    // And nothing HEAD-specific leaks through a raw read: the head ends the response.
    let mut raw = std::net::TcpStream::connect(gale.addr()).expect("connect");
    std::io::Write::write_all(
        &mut raw,
        b"HEAD /static/app.css HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
    )
    .expect("write");
    raw.set_read_timeout(Some(http::READ_TIMEOUT)).expect("timeout");
    let mut bytes = Vec::new();
    raw.read_to_end(&mut bytes).expect("read until gale closes");
    let text = String::from_utf8_lossy(&bytes);
    let (_, after_head) = text.split_once("\r\n\r\n").expect("a complete head");
    assert!(after_head.is_empty(), "bytes after a HEAD response's head: {after_head:?}");
}
