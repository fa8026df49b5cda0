//! HTTPS "by adding a server block": certificates made at test time, SNI choosing among
//! several on one listener (wildcard and default included), HTTP/2 by ALPN with curl,
//! `redirect_http`, old protocol versions refused, and certificates swapped by a reload while
//! a `wss` WebSocket stays open.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gale_tests::certs::{TestCa, TestCert, tls_table};
use gale_tests::curl::curl;
use gale_tests::tls::{self, ClientOptions, FirstRecord};
use gale_tests::{Gale, Tornado, Whoami, free_port, reload, wait_until, ws};
use tempfile::TempDir;

/// A CA and a directory for certificate files, kept for the test's lifetime.
struct Pki {
    ca: TestCa,
    dir: TempDir,
    ca_path: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let ca = TestCa::new();
        let dir = tempfile::tempdir().expect("tempdir for certificates");
        let ca_path = ca.write(dir.path());
        Pki { ca, dir, ca_path }
    }

    /// Issues a certificate for `names` and writes it as `STEM.pem` / `STEM.key`.
    fn issue(&self, stem: &str, names: &[&str]) -> (TestCert, String) {
        let cert = self.ca.issue(names);
        let (c, k) = cert.write(self.dir.path(), stem);
        (cert, tls_table(&c, &k))
    }

    fn ca(&self) -> &Path {
        &self.ca_path
    }
}

/// One HTTPS server for `a.test` in front of `tornado`, plus `extra` TOML.
fn https_config(tornado: &Tornado, tls: &str, extra: &str) -> String {
    format!(
        "[global]\nthreads = 2\n{extra}\n[upstream.app]\nservers = [\"{}\"]\n\n\
         [[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"a.test\"]\ntls = {tls}\n\
         [[server.location]]\npath = \"/\"\nproxy = {{ pass = \"app\" }}\n",
        tornado.addr()
    )
}

#[test]
fn https_reaches_tornado_which_sees_https() {
    let pki = Pki::new();
    let (_, tls) = pki.issue("a", &["a.test"]);
    let tornado = Tornado::spawn("app");
    let gale = Gale::start(&https_config(&tornado, &tls, ""));
    let addr = gale.addr();

    // curl verifies the chain against the test CA and the name against the SAN.
    let out =
        curl(&format!("https://a.test:{}/whoami", addr.port()), Some(pki.ca()), &[("a.test", addr)], &["--http1.1"]);
    assert!(out.success, "curl failed: {out:#?}");
    assert_eq!(out.write_out, "200 1.1", "{out:#?}");
    let who: Whoami = out.json();
    assert_eq!(who.port, tornado.port());
    assert_eq!(who.protocol, "https", "Tornado (xheaders) must see https: {who:#?}");
    assert_eq!(who.header("X-Scheme"), Some("https"));
    assert_eq!(who.header("X-Forwarded-Proto"), Some("https"));
    assert_eq!(who.host, format!("a.test:{}", addr.port()), "Host must reach Tornado unchanged");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = gale_tests::Conn::try_open(addr).and_then(|mut c| c.try_send(&gale_tests::Request::get("/whoami")));
    // A TLS alert (not HTTP) or a close; never an answer, and never silence.
    gale_tests::http::assert_no_response(&plain, "plain HTTP on a TLS listener");
}

#[test]
fn sni_picks_the_certificate_on_a_shared_listener_wildcard_and_default_included() {
    let pki = Pki::new();
    let (a, a_tls) = pki.issue("a", &["a.test"]);
    let (b, b_tls) = pki.issue("b", &["*.b.test"]);
    let (d, d_tls) = pki.issue("d", &["default.test"]);
    let backends = Tornado::spawn_pool(3);
    let port = free_port();
    // The default server is listed last: `default_server` must win over "first listed".
    let config = format!(
        "[global]\nthreads = 2\n\n\
         [upstream.a]\nservers = [\"{}\"]\n[upstream.b]\nservers = [\"{}\"]\n[upstream.d]\nservers = [\"{}\"]\n\n\
         [[server]]\nlisten = [\"127.0.0.1:{port}\"]\nserver_name = [\"a.test\"]\ntls = {a_tls}\n\
         [[server.location]]\npath = \"/\"\nproxy = {{ pass = \"a\" }}\n\n\
         [[server]]\nlisten = [\"127.0.0.1:{port}\"]\nserver_name = [\"*.b.test\"]\ntls = {b_tls}\n\
         [[server.location]]\npath = \"/\"\nproxy = {{ pass = \"b\" }}\n\n\
         [[server]]\nlisten = [\"127.0.0.1:{port}\"]\nserver_name = [\"default.test\"]\ndefault_server = true\n\
         tls = {d_tls}\n[[server.location]]\npath = \"/\"\nproxy = {{ pass = \"d\" }}\n",
        backends[0].addr(),
        backends[1].addr(),
        backends[2].addr()
    );
    let gale = Gale::start(&config);
    assert_eq!(gale.addrs().len(), 1, "three TLS servers on one address are one listener");
    let addr = gale.addr();

    let cases: [(Option<&str>, &TestCert, &str); 6] = [
        (Some("a.test"), &a, "exact name"),
        (Some("x.b.test"), &b, "wildcard"),
        (Some("www.b.test"), &b, "wildcard"),
        (Some("b.test"), &d, "*.b.test does not match b.test itself: default"),
        (Some("unknown.test"), &d, "unknown name: default server"),
        (None, &d, "no SNI: default server"),
    ];
    for (sni, want, why) in cases {
        let options = sni.map_or_else(ClientOptions::no_sni, ClientOptions::sni);
        let got = tls::handshake(addr, &options);
        assert!(got.cert == want.der, "SNI {sni:?} ({why}): gale presented the wrong certificate");
    }

    // Real clients verify what they get, and the request reaches that server block's pool.
    for (name, backend) in [("a.test", &backends[0]), ("x.b.test", &backends[1]), ("default.test", &backends[2])] {
        let url = format!("https://{name}:{port}/whoami");
        let out = curl(&url, Some(pki.ca()), &[(name, addr)], &[]);
        assert!(out.success, "curl {url} failed: {out:#?}");
        let who: Whoami = out.json();
        assert_eq!(who.port, backend.port(), "{name} reached the wrong pool");
        assert_eq!(who.protocol, "https");
    }
    // An unknown name gets the default certificate, which curl rightly refuses to trust for it.
    let out = curl(&format!("https://unknown.test:{port}/whoami"), Some(pki.ca()), &[("unknown.test", addr)], &[]);
    assert!(!out.success, "curl accepted default.test's certificate for unknown.test: {out:#?}");
}

#[test]
fn curl_negotiates_http2_and_gets_the_tornado_response() {
    let pki = Pki::new();
    let (_, tls) = pki.issue("a", &["a.test"]);
    let tornado = Tornado::spawn("app");
    let gale = Gale::start(&https_config(&tornado, &tls, ""));
    let addr = gale.addr();
    let base = format!("https://a.test:{}", addr.port());
    let resolve = [("a.test", addr)];

    let hs = tls::handshake(addr, &ClientOptions::sni("a.test").alpn(&[b"h2", b"http/1.1"]));
    assert_eq!(hs.alpn.as_deref(), Some(&b"h2"[..]), "ALPN must pick h2 when offered");

    let out = curl(&format!("{base}/whoami"), Some(pki.ca()), &resolve, &["--http2"]);
    assert!(out.success, "{out:#?}");
    assert_eq!(out.write_out, "200 2", "curl must speak HTTP/2 to gale: {out:#?}");
    let who: Whoami = out.json();
    assert_eq!(who.protocol, "https");
    assert_eq!(who.version, "HTTP/1.1", "backends are spoken to in HTTP/1.1");
    assert_eq!(who.host, format!("a.test:{}", addr.port()), ":authority must reach Tornado as Host");

    // A request body and a large response body over HTTP/2.
    let body: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let file = tempfile::NamedTempFile::new().expect("body file");
    std::fs::write(file.path(), &body).expect("write body");
    let data = format!("@{}", file.path().display());
    let out = curl(
        &format!("{base}/echo?back=1"),
        Some(pki.ca()),
        &resolve,
        &["--http2", "-H", "Content-Type: application/octet-stream", "--data-binary", &data],
    );
    assert_eq!(out.write_out, "200 2", "{out:#?}");
    assert!(out.body == body, "the POST body came back different ({} bytes, sent {})", out.body.len(), body.len());

    let out = curl(&format!("{base}/big?n=2000000&chunked=1"), Some(pki.ca()), &resolve, &["--http2"]);
    assert_eq!(out.write_out, "200 2", "{out:#?}");
    assert_eq!(out.body.len(), 2_000_000);
    assert!(out.body.iter().enumerate().all(|(i, b)| usize::from(*b) == i % 251), "the body was corrupted");

    // With http2 = false, ALPN offers only http/1.1.
    let gale = Gale::start(&https_config(&tornado, &tls, "[http]\nhttp2 = false\n"));
    let addr = gale.addr();
    let hs = tls::handshake(addr, &ClientOptions::sni("a.test").alpn(&[b"h2", b"http/1.1"]));
    assert_eq!(hs.alpn.as_deref(), Some(&b"http/1.1"[..]));
    let out =
        curl(&format!("https://a.test:{}/whoami", addr.port()), Some(pki.ca()), &[("a.test", addr)], &["--http2"]);
    assert_eq!(out.write_out, "200 1.1", "{out:#?}");
}

#[test]
fn redirect_http_answers_301_to_the_https_listener() {
    let pki = Pki::new();
    let (_, tls) = pki.issue("a", &["a.test"]);
    let tornado = Tornado::spawn("app");
    let config = format!(
        "[global]\nthreads = 2\n\n[upstream.app]\nservers = [\"{}\"]\n\n\
         [[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"a.test\"]\nredirect_http = true\n\n\
         [[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"a.test\"]\ntls = {tls}\n\
         [[server.location]]\npath = \"/\"\nproxy = {{ pass = \"app\" }}\n",
        tornado.addr()
    );
    let gale = Gale::start(&config);
    let [plain, https] = gale.addrs() else { panic!("expected two listeners: {:?}", gale.addrs()) };
    let (plain, https) = (*plain, *https);

    let response = gale_tests::http::send(
        plain,
        &gale_tests::Request::get("/some/path?q=1&r=2").header("Host", &format!("a.test:{}", plain.port())),
    );
    response.expect_status(301);
    assert_eq!(
        response.header("location"),
        Some(format!("https://a.test:{}/some/path?q=1&r=2", https.port()).as_str()),
        "{response}"
    );
    assert_eq!(tornado.hits("/some/path"), 0, "a redirect must not reach the backend");

    // curl follows it to Tornado over HTTPS.
    let out = curl(
        &format!("http://a.test:{}/whoami", plain.port()),
        Some(pki.ca()),
        &[("a.test", plain), ("a.test", https)],
        &["-L"],
    );
    assert!(out.success, "{out:#?}");
    assert!(out.write_out.starts_with("200 "), "{out:#?}");
    let who: Whoami = out.json();
    assert_eq!(who.protocol, "https");
}

#[test]
fn a_tls_1_1_client_is_refused_and_tls_1_2_and_1_3_accepted() {
    let pki = Pki::new();
    let (_, tls) = pki.issue("a", &["a.test"]);
    let tornado = Tornado::spawn("app");
    let gale = Gale::start(&https_config(&tornado, &tls, ""));
    let addr = gale.addr();

    // The same hand-made ClientHello: as TLS 1.2 it gets a ServerHello (so the bytes are a
    // valid hello), as TLS 1.1 a protocol_version alert.
    assert_eq!(tls::raw_client_hello(addr, "a.test", 0x0303), FirstRecord::Handshake(2), "TLS 1.2 hello");
    // 2/70: a fatal protocol_version alert.
    assert_eq!(tls::raw_client_hello(addr, "a.test", 0x0302), FirstRecord::Alert(2, 70), "TLS 1.1 must be refused");
    assert_eq!(tls::raw_client_hello(addr, "a.test", 0x0301), FirstRecord::Alert(2, 70), "TLS 1.0 must be refused");

    assert_eq!(tls::handshake(addr, &ClientOptions::sni("a.test").tls12_only()).version, "TLSv1_2");
    assert_eq!(tls::handshake(addr, &ClientOptions::sni("a.test")).version, "TLSv1_3");
}

/// Opens `wss://a.test:PORT/ws` (HTTP/1.1 by ALPN) and checks the handshake's certificate.
fn open_wss(addr: SocketAddr, expect: &TestCert) -> ws::WebSocket<tls::TlsStream> {
    let (stream, hs) = tls::connect(addr, &ClientOptions::sni("a.test")).expect("TLS handshake");
    assert!(hs.cert == expect.der, "the wss handshake presented an unexpected certificate");
    match ws::handshake(stream, &format!("a.test:{}", addr.port()), "/ws").expect("WebSocket handshake") {
        Ok(socket) => socket,
        Err(refused) => panic!("wss handshake refused: {} {}", refused.status, refused.text()),
    }
}

#[test]
fn reload_swaps_the_certificate_while_a_wss_websocket_stays_open() {
    let pki = Pki::new();
    let (old, tls) = pki.issue("a", &["a.test"]);
    let tornado = Tornado::spawn("app");
    let config = https_config(&tornado, &tls, "");
    let gale = Gale::start(&config);
    let addr = gale.addr();

    let mut socket = open_wss(addr, &old);
    socket.echo("before the reload");
    let who: serde_json::Value = serde_json::from_str(&socket.ask("__whoami__")).expect("whoami JSON");
    assert_eq!(who["protocol"], "https", "Tornado must see the wss handshake as https: {who}");
    assert_eq!(who["host"], format!("a.test:{}", addr.port()));

    // Same file names, new certificate and key; the same config, re-read on SIGHUP.
    let (new, _) = pki.issue("a", &["a.test"]);
    assert!(new.der != old.der);
    reload::sighup(&gale, &config).expect_reloaded();

    let hs = tls::handshake(addr, &ClientOptions::sni("a.test"));
    assert!(hs.cert == new.der, "a new connection after the reload must get the new certificate");
    let out = curl(&format!("https://a.test:{}/whoami", addr.port()), Some(pki.ca()), &[("a.test", addr)], &[]);
    assert!(out.success && out.write_out.starts_with("200 "), "{out:#?}");

    // The WebSocket opened before the reload is still the same live tunnel.
    for i in 0..5 {
        socket.echo(&format!("after the reload #{i}"));
    }
    let blob: Vec<u8> = (0..150_000u32).map(|i| (i % 253) as u8).collect();
    socket.send_binary(&blob).expect("send binary");
    assert_eq!(socket.recv().expect("binary echo"), ws::Message::Binary(blob));
    let stats = tornado.stats();
    assert_eq!(stats.hits.get("ws-open"), Some(&1), "one WebSocket was ever opened: {stats:?}");
    assert_eq!(stats.hits.get("ws-close"), None, "the WebSocket must not have been closed: {stats:?}");

    // A second wss socket on the new certificate works too; then both close cleanly.
    let mut second = open_wss(addr, &new);
    second.echo("on the new certificate");
    for s in [&mut socket, &mut second] {
        s.send_close(1000).expect("send close");
        assert!(matches!(s.recv(), Ok(ws::Message::Close(Some(1000), _))), "the close must be answered");
    }
    wait_until(Duration::from_secs(20), "Tornado to see both WebSockets closed", || {
        tornado.stats().hits.get("ws-close") == Some(&2)
    });
}

#[test]
fn a_broken_certificate_on_reload_keeps_the_old_one() {
    let pki = Pki::new();
    let (old, tls) = pki.issue("a", &["a.test"]);
    let tornado = Tornado::spawn("app");
    let config = https_config(&tornado, &tls, "");
    let gale = Gale::start(&config);
    let addr = gale.addr();

    // A key that does not match the certificate.
    let other = pki.ca.issue(&["a.test"]);
    std::fs::write(pki.dir.path().join("a.key"), &other.key_pem).expect("write the wrong key");
    let log = reload::sighup(&gale, &config).expect_failed().to_owned();
    assert!(log.contains("a.key") || log.contains("a.pem"), "the error must name the files:\n{log}");
    assert!(tls::handshake(addr, &ClientOptions::sni("a.test")).cert == old.der, "the old certificate must stay");

    // A certificate file that is not PEM.
    std::fs::write(pki.dir.path().join("a.pem"), "not a certificate\n").expect("write garbage");
    reload::sighup(&gale, &config).expect_failed();
    assert!(tls::handshake(addr, &ClientOptions::sni("a.test")).cert == old.der, "the old certificate must stay");
    let out = curl(&format!("https://a.test:{}/whoami", addr.port()), Some(pki.ca()), &[("a.test", addr)], &[]);
    assert!(out.success && out.write_out.starts_with("200 "), "the old config must keep serving: {out:#?}");
}

#[test]
fn a_reload_adds_an_sni_server_and_turns_a_plain_listener_into_https() {
    let pki = Pki::new();
    let (a, a_tls) = pki.issue("a", &["a.test"]);
    let (b, b_tls) = pki.issue("b", &["*.b.test"]);
    let tornado = Tornado::spawn("app");
    let (tls_port, plain_port) = (free_port(), free_port());
    let server = |port: u16, name: &str, tls: Option<&str>| {
        let tls = tls.map(|t| format!("tls = {t}\n")).unwrap_or_default();
        format!(
            "[[server]]\nlisten = [\"127.0.0.1:{port}\"]\nserver_name = [\"{name}\"]\n{tls}\
             [[server.location]]\npath = \"/\"\nproxy = {{ pass = \"app\" }}\n\n"
        )
    };
    let head = format!("[global]\nthreads = 2\n\n[upstream.app]\nservers = [\"{}\"]\n\n", tornado.addr());
    let v1 = format!("{head}{}{}", server(tls_port, "a.test", Some(&a_tls)), server(plain_port, "a.test", None));
    let v2 = format!(
        "{head}{}{}{}",
        server(tls_port, "a.test", Some(&a_tls)),
        server(tls_port, "*.b.test", Some(&b_tls)),
        server(plain_port, "a.test", Some(&a_tls))
    );
    let gale = Gale::start(&v1);
    let tls_addr = SocketAddr::from(([127, 0, 0, 1], tls_port));
    let plain_addr = SocketAddr::from(([127, 0, 0, 1], plain_port));
    assert!(tls::handshake(tls_addr, &ClientOptions::sni("x.b.test")).cert == a.der, "before: the only certificate");
    gale_tests::http::get(plain_addr, "/whoami").expect_status(200);

    reload::sighup(&gale, &v2).expect_reloaded();
    assert!(tls::handshake(tls_addr, &ClientOptions::sni("x.b.test")).cert == b.der, "the added SNI server");
    assert!(tls::handshake(tls_addr, &ClientOptions::sni("a.test")).cert == a.der);
    // The kept socket on the formerly plain port now speaks TLS.
    let out = curl(&format!("https://a.test:{plain_port}/whoami"), Some(pki.ca()), &[("a.test", plain_addr)], &[]);
    assert!(out.success && out.write_out.starts_with("200 "), "{out:#?}");
    assert_eq!(out.json::<Whoami>().protocol, "https");
}
