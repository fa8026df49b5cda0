//! The gzip stage: eligibility table, header rewriting, streaming round trips.

use std::io::{Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{ACCEPT_RANGES, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG, VARY, VIA};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Version};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, StreamBody};

use super::*;

/// The reference configuration's `gzip on; gzip_min_length 1000; gzip_proxied any; gzip_types ...`.
fn reference() -> GzipConfig {
    GzipConfig::from_options(GzipOptions {
        min_length: Some(1000),
        proxied: Some(OneOrMany::One("any".into())),
        types: Some(
            [
                "text/plain",
                "text/html",
                "text/css",
                "text/xml",
                "application/x-javascript",
                "application/xml",
                "application/atom+xml",
                "text/javascript",
            ]
            .map(String::from)
            .to_vec(),
        ),
        level: None,
    })
    .expect("reference config")
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(http::HeaderName::from_bytes(k.as_bytes()).expect("name"), HeaderValue::from_str(v).expect("value"));
    }
    h
}

struct Case {
    name: &'static str,
    method: Method,
    version: Version,
    req: &'static [(&'static str, &'static str)],
    status: u16,
    resp: &'static [(&'static str, &'static str)],
    expected: GzipDecision,
}

const GZ: &[(&str, &str)] = &[("accept-encoding", "gzip, deflate")];
const HTML_5000: &[(&str, &str)] = &[("content-type", "text/html"), ("content-length", "5000")];

fn case(name: &'static str, expected: GzipDecision) -> Case {
    Case { name, method: Method::GET, version: Version::HTTP_11, req: GZ, status: 200, resp: HTML_5000, expected }
}

#[test]
fn eligibility_table() {
    use GzipDecision::*;
    let cases = [
        case("5000-byte text/html", Compress),
        Case { resp: &[("content-type", "text/html"), ("content-length", "293")], ..case("293 bytes", Skip) },
        Case { resp: &[("content-type", "text/html"), ("content-length", "999")], ..case("just below min", Skip) },
        Case { resp: &[("content-type", "text/html"), ("content-length", "1000")], ..case("exactly min", Compress) },
        Case { resp: &[("content-type", "text/css")], ..case("unknown length", Compress) },
        Case {
            resp: &[("content-type", "text/css; charset=utf-8"), ("content-length", "5000")],
            ..case("type with parameters", Compress)
        },
        Case { resp: &[("content-type", "image/png"), ("content-length", "5000")], ..case("image/png", Skip) },
        Case { resp: &[("content-length", "5000")], ..case("no content-type", Skip) },
        Case { req: &[], ..case("no accept-encoding", VaryOnly) },
        Case { req: &[("accept-encoding", "gzip;q=0")], ..case("gzip;q=0", VaryOnly) },
        Case { req: &[("accept-encoding", "br")], ..case("only br", VaryOnly) },
        Case { resp: &[("content-type", "text/html"), ("content-encoding", "br")], ..case("already encoded", Skip) },
        Case { resp: &[("content-type", "text/html"), ("content-encoding", "gzip")], ..case("already gzip", Skip) },
        Case { status: 206, ..case("206", Skip) },
        Case { status: 304, ..case("304", Skip) },
        Case { status: 204, ..case("204", Skip) },
        Case { status: 500, ..case("500", Skip) },
        Case { status: 301, ..case("301", Skip) },
        Case { status: 404, ..case("404", Compress) },
        Case { status: 403, ..case("403", Compress) },
        Case { method: Method::HEAD, ..case("HEAD", CompressedHead) },
        Case { method: Method::HEAD, version: Version::HTTP_10, ..case("HEAD HTTP/1.0", VaryOnly) },
        Case { method: Method::HEAD, status: 206, ..case("HEAD 206", Skip) },
        Case { method: Method::POST, ..case("POST", Compress) },
        Case { version: Version::HTTP_10, ..case("HTTP/1.0", VaryOnly) },
        Case {
            resp: &[("content-type", "text/html"), ("cache-control", "public, no-transform")],
            ..case("no-transform", Skip)
        },
        Case { req: &[("accept-encoding", "gzip"), ("via", "1.1 cdn")], ..case("via with proxied any", Compress) },
    ];
    for c in cases {
        let got = decide(
            &reference(),
            &c.method,
            c.version,
            &headers(c.req),
            StatusCode::from_u16(c.status).expect("status"),
            &headers(c.resp),
        );
        assert_eq!(got, c.expected, "{}", c.name);
        assert_eq!(
            should_compress(
                &reference(),
                &c.method,
                c.version,
                &headers(c.req),
                StatusCode::from_u16(c.status).expect("status"),
                &headers(c.resp)
            ),
            c.expected == Compress,
            "{}",
            c.name
        );
    }
}

#[test]
fn proxied_off_refuses_requests_through_another_proxy() {
    let off = GzipConfig { proxied: GzipProxied::default(), ..reference() };
    let decide_via = |cfg: &GzipConfig, via: bool| {
        let mut req = headers(GZ);
        if via {
            req.insert(VIA, HeaderValue::from_static("1.1 cdn"));
        }
        decide(cfg, &Method::GET, Version::HTTP_11, &req, StatusCode::OK, &headers(HTML_5000))
    };
    assert_eq!(decide_via(&off, false), GzipDecision::Compress, "no Via: proxied does not apply");
    assert_eq!(decide_via(&off, true), GzipDecision::VaryOnly);
    assert_eq!(decide_via(&reference(), true), GzipDecision::Compress);
}

#[test]
fn proxied_words_follow_nginx() {
    let now = httpdate::parse_http_date("Sun, 01 Jun 2025 12:00:00 GMT").expect("date");
    let p = |words: &[&str]| GzipProxied::parse(words.iter().copied()).expect("words");
    let allows = |words: &[&str], req: &[(&str, &str)], resp: &[(&str, &str)]| {
        proxied_allows(&p(words), &headers(req), &headers(resp), now)
    };
    let past = "Sat, 01 Jun 2024 12:00:00 GMT";
    let future = "Mon, 01 Jun 2026 12:00:00 GMT";
    assert!(!allows(&["off"], &[], &[]));
    assert!(allows(&["any"], &[], &[("expires", future)]));
    assert!(allows(&["auth"], &[("authorization", "Basic x")], &[("expires", future)]));
    assert!(!allows(&["auth"], &[], &[("cache-control", "no-cache")]));
    assert!(allows(&["expired"], &[], &[("expires", past)]));
    assert!(!allows(&["expired"], &[], &[("expires", future)]));
    assert!(!allows(&["expired"], &[], &[("expires", "0")]));
    assert!(allows(&["expired"], &[], &[("expires", future), ("date", "Tue, 01 Jun 2027 00:00:00 GMT")]));
    assert!(!allows(&["no-cache"], &[], &[("expires", past)]), "Expires present: only `expired` decides");
    assert!(allows(&["no-cache"], &[], &[("cache-control", "no-cache")]));
    assert!(allows(&["no-store"], &[], &[("cache-control", "max-age=0, no-store")]));
    assert!(allows(&["private"], &[], &[("cache-control", "private")]));
    assert!(!allows(&["no-cache", "no-store", "private"], &[], &[("cache-control", "public")]));
    assert!(!allows(&["no_last_modified"], &[], &[("last-modified", past)]));
    assert!(allows(&["no_last_modified"], &[], &[]));
    assert!(!allows(&["no_etag"], &[], &[("etag", "\"x\"")]));
    assert!(allows(&["no_etag"], &[], &[]));
}

#[test]
fn compress_rewrites_the_head() {
    let resp = Response::builder()
        .header(CONTENT_TYPE, "text/html")
        .header(CONTENT_LENGTH, "5000")
        .header(ACCEPT_RANGES, "bytes")
        .header(ETAG, "\"5fee6600-1388\"")
        .header(VARY, "Cookie")
        .body(Full::new(Bytes::from_static(b"x")))
        .expect("response");
    let out = compress(&reference(), resp);
    let h = out.headers();
    assert!(!h.contains_key(CONTENT_LENGTH));
    assert!(!h.contains_key(ACCEPT_RANGES));
    assert_eq!(h[CONTENT_ENCODING], "gzip");
    assert_eq!(h[ETAG], "W/\"5fee6600-1388\"");
    let vary: Vec<_> = h.get_all(VARY).iter().collect();
    assert_eq!(vary, ["Cookie", "Accept-Encoding"]);
    assert!(out.body().is_compressing());

    let weak = compress(
        &reference(),
        Response::builder().header(ETAG, "W/\"a\"").header(VARY, "accept-encoding").body(()).expect("r"),
    );
    assert_eq!(weak.headers()[ETAG], "W/\"a\"");
    assert_eq!(weak.headers().get_all(VARY).iter().count(), 1);
    let bad = compress(&reference(), Response::builder().header(ETAG, "unquoted").body(()).expect("r"));
    assert!(!bad.headers().contains_key(ETAG));
}

#[tokio::test]
async fn apply_vary_only_and_skip_leave_the_body_alone() {
    let make = || {
        Response::builder().header(CONTENT_LENGTH, "3").body(Full::new(Bytes::from_static(b"abc"))).expect("response")
    };
    let vary = apply(&reference(), GzipDecision::VaryOnly, make());
    assert_eq!(vary.headers()[VARY], "Accept-Encoding");
    assert_eq!(vary.headers()[CONTENT_LENGTH], "3");
    assert_eq!(vary.body().size_hint().exact(), Some(3));
    assert_eq!(vary.into_body().collect().await.expect("body").to_bytes(), "abc");
    let skip = apply(&reference(), GzipDecision::Skip, make());
    assert!(!skip.headers().contains_key(VARY));
    assert_eq!(skip.into_body().collect().await.expect("body").to_bytes(), "abc");
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data).read_to_end(&mut out).expect("valid gzip");
    out
}

fn text(len: usize) -> Vec<u8> {
    let words = ["tornado ", "gale ", "nginx ", "upstream ", "static ", "<div>", "</div>\n"];
    let mut out = Vec::with_capacity(len + 16);
    let mut i = 0usize;
    while out.len() < len {
        out.extend_from_slice(words[(i * 7 + i / 3) % words.len()].as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

async fn gzip_all<B>(body: B, level: u32) -> (Vec<u8>, usize)
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut gz = std::pin::pin!(GzipBody::gzip(body, level));
    let mut out = Vec::new();
    let mut frames = 0;
    while let Some(frame) = gz.frame().await {
        let data = frame.expect("frame").into_data().expect("data");
        assert!(!data.is_empty(), "no empty data frames");
        out.extend_from_slice(&data);
        frames += 1;
    }
    (out, frames)
}

#[tokio::test]
async fn round_trip_across_many_small_chunks() {
    let input = text(300_000);
    let mut chunks = Vec::new();
    let mut at = 0;
    let mut size = 1;
    while at < input.len() {
        let end = (at + size).min(input.len());
        chunks.push(Bytes::copy_from_slice(&input[at..end]));
        at = end;
        size = size % 97 + 1;
    }
    assert!(chunks.len() > 5000);
    for level in [1, 6, 9] {
        let frames = chunks.iter().map(|c| Ok::<_, std::convert::Infallible>(Frame::data(c.clone())));
        let body = StreamBody::new(futures_util::stream::iter(frames.collect::<Vec<_>>()));
        let (compressed, frames) = gzip_all(body, level).await;
        assert!(compressed.len() < input.len() / 4, "level {level}: {} bytes", compressed.len());
        assert!(frames < chunks.len() / 10, "ready chunks are not flushed one by one");
        assert!(gunzip(&compressed) == input, "level {level}");
    }
}

#[tokio::test]
async fn round_trip_of_empty_and_single_bodies() {
    let (empty, _) = gzip_all(Full::new(Bytes::new()), 1).await;
    assert!(gunzip(&empty).is_empty());
    let input = text(5000);
    let (one, _) = gzip_all(Full::new(Bytes::from(input.clone())), 1).await;
    assert_eq!(gunzip(&one), input);
}

/// A body fed by a channel: the test decides when the next chunk arrives.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

/// When the inner body waits, what was written so far is flushed and sent: a slow upstream's
/// bytes reach the client without waiting for the end.
#[tokio::test]
async fn a_waiting_inner_body_flushes_what_it_has() {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut gz = std::pin::pin!(GzipBody::gzip(ChannelBody(rx), 1));
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    let mut all = Vec::new();
    for part in ["event: one\n\n", "event: two\n\n", "event: three\n\n"] {
        tx.send(Bytes::from(part)).await.expect("send");
        let frame = gz.frame().await.expect("a frame").expect("ok");
        decoder.write_all(frame.data_ref().expect("data")).expect("decode");
        decoder.flush().expect("flush");
        all.extend_from_slice(part.as_bytes());
        assert_eq!(decoder.get_ref(), &all, "everything sent so far is decodable");
    }
    drop(tx);
    while let Some(frame) = gz.frame().await {
        decoder.write_all(frame.expect("ok").data_ref().expect("data")).expect("decode");
    }
    assert_eq!(decoder.finish().expect("complete gzip"), all);
}

#[tokio::test]
async fn trailers_follow_the_gzip_trailer() {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", HeaderValue::from_static("abc"));
    let frames = vec![
        Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"hello"))),
        Ok(Frame::trailers(trailers.clone())),
    ];
    let mut gz = std::pin::pin!(GzipBody::gzip(StreamBody::new(futures_util::stream::iter(frames)), 1));
    let mut data = Vec::new();
    let mut got_trailers = None;
    while let Some(frame) = gz.frame().await {
        match frame.expect("ok").into_data() {
            Ok(d) => data.extend_from_slice(&d),
            Err(f) => got_trailers = f.into_trailers().ok(),
        }
    }
    assert_eq!(gunzip(&data), b"hello");
    assert_eq!(got_trailers, Some(trailers));
    assert!(gz.is_end_stream());
}

#[tokio::test]
async fn inner_errors_end_the_stream() {
    let frames = vec![Ok(Frame::data(Bytes::from_static(b"partial"))), Err(std::io::Error::other("upstream reset"))];
    let gz = GzipBody::gzip(StreamBody::new(futures_util::stream::iter(frames)), 1);
    let err = gz.collect().await.expect_err("error propagates");
    assert!(err.to_string().contains("upstream reset"));
}

#[test]
fn gzip_body_is_send_and_sync_when_its_inner_body_is() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<GzipBody<Full<Bytes>>>();
}
