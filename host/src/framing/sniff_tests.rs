//! The tracker on byte streams split every way: verdicts, body ends, limits.

use super::*;

fn verdicts_for(stream: &[u8], chunk: usize) -> Vec<Option<FramingError>> {
    let v = Verdicts::default();
    let mut t = Tracker::new(v.clone());
    for piece in stream.chunks(chunk.max(1)) {
        t.feed(piece);
    }
    let q = v.0.lock().unwrap();
    q.iter().cloned().collect()
}

#[test]
fn follows_pipelined_requests_across_any_split() {
    let stream = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
GET /b HTTP/1.1\r\nHost: x\r\n\r\n\
POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n\
POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    for chunk in [1, 2, 3, 7, 64, stream.len()] {
        let v = verdicts_for(stream, chunk);
        assert_eq!(v, vec![None, None, None, Some(FramingError::ContentLengthWithTransferEncoding)], "split {chunk}");
    }
}

#[test]
fn body_bytes_that_look_like_a_head_are_not_heads() {
    let stream = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 63\r\n\r\nGET /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n\r\n";
    assert_eq!(verdicts_for(stream, 5), vec![None]);
}

#[test]
fn heads_with_hundreds_of_headers_are_still_followed() {
    let mut head = String::from("POST / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..300 {
        head.push_str(&format!("X-H-{i}: v\r\n"));
    }
    let dup = format!("{head}Content-Length: 1\r\nContent-Length: 1\r\n\r\na");
    for chunk in [7, 4096, dup.len()] {
        assert_eq!(verdicts_for(dup.as_bytes(), chunk), vec![Some(FramingError::DuplicateContentLength)]);
    }
    let two = format!("{head}Content-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(verdicts_for(two.as_bytes(), 100), vec![None, None]);
}

#[test]
fn a_request_target_is_too_long_once_that_much_of_it_arrived() {
    assert!(!target_too_long(b"GET /aaaa", 8));
    assert!(target_too_long(b"GET /aaaaaaaaa", 8));
    assert!(!target_too_long(b"\r\nGET /aaaaaaa HTTP/1.1\r\nHost: aaaaaaaaaaaaa", 8));
    assert!(target_too_long(b"GET /aaaaaaaaa HTTP/1.1\r\nHost: a", 8));
    assert!(!target_too_long(b"AVERYLONGMETHODNAMEWITHOUTSPACE", 8), "no target yet");
    assert_eq!(first_line(b"\r\nGET / HTTP/1.1\r\nHost: a"), b"GET / HTTP/1.1\r\n");
    assert_eq!(first_line(&[b'a'; 5000]).len(), KEPT_LINE);
}

#[test]
fn keeps_following_after_an_upgrade_request_without_timing_out_a_tunnel() {
    // Refused upgrade: the connection stays HTTP and the next head gets its verdict.
    let s = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\
POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na";
    assert_eq!(verdicts_for(s, 3), vec![None, Some(FramingError::DuplicateContentLength)]);
    // Accepted upgrade: tunnel bytes that look like half a head are not a stalled head.
    let mut t = Tracker::new(Verdicts::default());
    t.feed(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: foo\r\n\r\nsome tunnel text");
    assert!(!t.head_in_progress());
}

#[test]
fn trailers_end_as_hyper_ends_them() {
    // An LF alone is part of a trailer line (hyper drops the lines after it): no head here.
    let s = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\nGET /f HTTP/1.1\r\n\
Content-Length: 1\r\nContent-Length: 1\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
    for chunk in [1, 3, s.len()] {
        assert_eq!(verdicts_for(s, chunk), vec![None, None], "split {chunk}");
    }
    // Leading zeros in a chunk size are fine, as in hyper.
    let s = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0000000000000000001\r\na\r\n0\r\n\r\n\
GET /b HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(verdicts_for(s, 1), vec![None, None]);
}

#[test]
fn duplicate_equal_lengths_and_te_before_cl_are_flagged() {
    let s = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na";
    assert_eq!(verdicts_for(s, 100), vec![Some(FramingError::DuplicateContentLength)]);
    let s = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n0\r\n\r\n";
    assert_eq!(verdicts_for(s, 100), vec![Some(FramingError::ContentLengthWithTransferEncoding)]);
}
