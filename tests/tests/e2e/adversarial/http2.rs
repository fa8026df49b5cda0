//! HTTP/2 abuse with a real HTTP/2 client library (python `h2`, tests/h2/abuse.py) over TLS with
//! ALPN h2, the way gale serves HTTP/2: rapid reset, CONTINUATION flood, HPACK bomb, malformed
//! requests (`host` against `:authority`, connection-specific headers), and a normal request
//! over the same kind of connection, during and after each attack.

use std::path::PathBuf;
use std::thread;

use gale_tests::certs::{TestCa, tls_table};
use gale_tests::h2::{self, ENHANCE_YOUR_CALM, Outcome, PROTOCOL_ERROR};
use gale_tests::{Gale, Tornado, Whoami};
use tempfile::TempDir;

/// gale serving `a.test` over TLS (HTTP/2 on by default) in front of one Tornado.
struct H2Site {
    tornado: Tornado,
    gale: Gale,
    ca: PathBuf,
    _dir: TempDir,
}

impl H2Site {
    fn start() -> H2Site {
        let ca = TestCa::new();
        let dir = tempfile::tempdir().expect("tempdir for certificates");
        let ca_path = ca.write(dir.path());
        let (cert, key) = ca.issue(&["a.test"]).write(dir.path(), "a");
        let tornado = Tornado::spawn("app");
        let config = format!(
            "[global]\nthreads = 2\n\n[upstream.app]\nservers = [\"{}\"]\n\n\
             [[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"a.test\"]\ntls = {}\n\
             [[server.location]]\npath = \"/\"\nproxy = {{ pass = \"app\" }}\n",
            tornado.addr(),
            tls_table(&cert, &key)
        );
        let gale = Gale::start(&config);
        H2Site { tornado, gale, ca: ca_path, _dir: dir }
    }

    fn run(&self, scenario: &str, args: &[&str]) -> Outcome {
        h2::run(scenario, self.gale.addr(), "a.test", &self.ca, args)
    }

    /// A normal GET /whoami over a new HTTP/2 connection must be answered 200.
    #[track_caller]
    fn assert_serves(&self) -> Whoami {
        let out = self.run("request", &[]);
        assert_eq!(out.stream_status(), Some(200), "a normal HTTP/2 request failed: {out:?}\n{}", self.gale.stderr());
        serde_json::from_str(out.stream_body()).unwrap_or_else(|e| panic!("not /whoami's JSON ({e}): {out:?}"))
    }

    fn backend_hits(&self) -> u64 {
        self.tornado.hits("/whoami")
    }
}

#[test]
fn a_normal_http2_request_is_served() {
    let site = H2Site::start();
    let who = site.assert_serves();
    assert_eq!(who.host, "a.test", "the backend must see :authority as Host: {who:?}");
}

#[test]
fn host_differing_from_authority_is_400() {
    let site = H2Site::start();
    // RFC 9113 8.3.1: a request whose host and :authority differ is malformed. Before the fix
    // gale routed by :authority and the backend saw `host: b.test`.
    let out = site.run("request", &["--header", "host=b.test"]);
    assert_eq!(out.stream_status(), Some(400), "{out:?}");
    assert_eq!(site.backend_hits(), 0, "the malformed request reached the backend");
    // The same value in both is fine.
    let out = site.run("request", &["--header", "host=a.test"]);
    assert_eq!(out.stream_status(), Some(200), "{out:?}");
    // And :authority naming another server while host names ours is refused the same way.
    let out = site.run("request", &["--authority", "b.test", "--header", "host=a.test"]);
    assert_eq!(out.stream_status(), Some(400), "{out:?}");
}

#[test]
fn connection_specific_headers_make_a_malformed_request() {
    let site = H2Site::start();
    // RFC 9113 8.2.2: connection-specific fields, and `te` other than "trailers", make a request
    // malformed; hyper's h2 resets the stream with PROTOCOL_ERROR before gale sees it.
    for header in ["connection=keep-alive", "transfer-encoding=chunked", "te=gzip", "keep-alive=5", "upgrade=h2c"] {
        let out = site.run("request", &["--header", header]);
        assert!(
            out.stream_reset() == Some(PROTOCOL_ERROR) || out.stream_status() == Some(400),
            "`{header}` was not refused as malformed: {out:?}"
        );
    }
    assert_eq!(site.backend_hits(), 0, "a malformed request reached the backend");
    let out = site.run("request", &["--header", "te=trailers"]);
    assert_eq!(out.stream_status(), Some(200), "`te: trailers` is allowed: {out:?}");
}

#[test]
fn rapid_reset_gets_goaway_while_others_are_served() {
    let site = H2Site::start();
    // Normal clients on their own connections while the abuser runs: all answered.
    let during = thread::scope(|s| {
        let normal = s.spawn(|| (0..5).map(|_| site.assert_serves().host).collect::<Vec<_>>());
        let abuse = site.run("rapid-reset", &["--count", "5000"]);
        (abuse, normal.join().expect("the normal client panicked"))
    });
    let (abuse, served) = during;
    assert_eq!(served.len(), 5);
    // hyper's h2 counts streams reset before they were accepted (max_pending_accept_reset_streams
    // = 64 in server.rs) and answers GOAWAY ENHANCE_YOUR_CALM past it.
    assert_eq!(abuse.goaway, Some(ENHANCE_YOUR_CALM), "the abuser was not sent away: {abuse:?}");
    assert!(abuse.sent.unwrap_or(0) < 5000 || abuse.closed || abuse.goaway.is_some(), "{abuse:?}");
    site.assert_serves();
}

#[test]
fn continuation_flood_is_bounded_and_closed() {
    let site = H2Site::start();
    // 20,000 CONTINUATION frames of ~1 KB each, never ending the header block: gale must close
    // the connection long before (the header list is capped by max_header_size, 32 KiB).
    let out = site.run("continuation", &["--count", "20000"]);
    assert!(out.goaway.is_some() || out.closed, "the flood was not cut off: {out:?}");
    assert!(out.sent.unwrap_or(u64::MAX) < 20000, "gale read all 20,000 frames (20 MB) of one header block: {out:?}");
    assert_eq!(site.backend_hits(), 0);
    site.assert_serves();
}

#[test]
fn hpack_bomb_is_refused() {
    let site = H2Site::start();
    // A 4 KiB header indexed once, then referenced 100,000 times in one block: 100 KB on the
    // wire, 400 MB decoded. The header list limit must stop it, not the machine's memory.
    let out = site.run("hpack-bomb", &["--count", "100000"]);
    assert_ne!(out.stream_status(), Some(200), "the bomb was served: {out:?}");
    assert!(
        out.stream_status() == Some(431) || out.stream_reset().is_some() || out.goaway.is_some() || out.closed,
        "the bomb got no refusal: {out:?}"
    );
    assert_eq!(site.backend_hits(), 0, "the bomb reached the backend");
    site.assert_serves();
}
