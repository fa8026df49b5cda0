//! The corpus: raw requests with gale's expected answer and nginx 1.22's verdict (see the parent
//! module for how each case is run and what nginx was configured with).

/// What the backend received: (request line, Host, body).
pub(super) type Seen = (&'static str, &'static str, &'static str);

/// One raw request (or a pipeline of them) and the answers to it.
pub(super) struct Case {
    pub(super) name: &'static str,
    pub(super) raw: &'static str,
    /// gale's statuses, in order, on this connection.
    pub(super) statuses: &'static [u16],
    /// Whether gale closes the connection after them.
    pub(super) closed: bool,
    /// What the backend received, in order.
    pub(super) backend: &'static [Seen],
    /// nginx 1.22's answer to the same bytes.
    pub(super) nginx: &'static str,
}

const NOTHING: &[Seen] = &[];
const ECHO_HELLO: &[Seen] = &[("POST /echo HTTP/1.1", "a", "hello")];
const WHOAMI: &[Seen] = &[("GET /whoami HTTP/1.1", "a", "")];

/// `POST /echo` with `headers` and `body`.
macro_rules! post {
    ($headers:literal, $body:literal) => {
        concat!("POST /echo HTTP/1.1\r\nHost: a\r\n", $headers, "\r\n", $body)
    };
}
macro_rules! chunked {
    ($body:literal) => {
        post!("Transfer-Encoding: chunked\r\n", $body)
    };
}

pub(super) const CASES: &[Case] = &[
    // --- Content-Length and Transfer-Encoding together, or twice ---
    Case {
        name: "cl_te",
        raw: concat!(
            post!("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"),
            "GET /whoami HTTP/1.1\r\nHost: a\r\n\r\n"
        ),
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        name: "te_cl",
        raw: concat!(
            post!("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "0\r\n\r\n"),
            "GET /whoami HTTP/1.1\r\nHost: a\r\n\r\n"
        ),
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        name: "dup_cl_equal",
        raw: post!("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"),
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        name: "dup_cl_unequal",
        raw: post!("Content-Length: 3\r\nContent-Length: 5\r\n", "hello"),
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        name: "cl_list_equal",
        raw: post!("Content-Length: 5, 5\r\n", "hello"),
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    // --- Transfer-Encoding spellings ---
    Case {
        // nginx answers 501 (not implemented); gale 400: the request is refused either way, and
        // the connection closed.
        name: "te_chunked_identity",
        raw: post!("Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n"),
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "501, closed",
    },
    Case {
        name: "te_gzip_chunked",
        raw: post!("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"),
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "501, closed",
    },
    Case {
        name: "te_xchunked",
        raw: post!("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"),
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "501, closed",
    },
    Case {
        name: "te_two_headers",
        raw: post!("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"),
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        name: "te_upper_case",
        raw: post!("Transfer-Encoding: CHUNKED\r\n", "5\r\nhello\r\n0\r\n\r\n"),
        statuses: &[200],
        closed: false,
        backend: ECHO_HELLO,
        nginx: "200, open, backend got hello",
    },
    Case {
        // RFC 9110 5.6.3: OWS is spaces and tabs, so the value is `chunked`; nginx strips only
        // spaces and answers 501. gale reads the body as chunked and re-frames it upstream, so
        // no hop behind it can read it any other way.
        name: "te_tab_before_value",
        raw: post!("Transfer-Encoding:\tchunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
        statuses: &[200],
        closed: false,
        backend: ECHO_HELLO,
        nginx: "501, closed",
    },
    Case {
        name: "te_trailing_space",
        raw: post!("Transfer-Encoding: chunked \r\n", "5\r\nhello\r\n0\r\n\r\n"),
        statuses: &[200],
        closed: false,
        backend: ECHO_HELLO,
        nginx: "200, open, backend got hello",
    },
    Case {
        name: "te_space_before_colon",
        raw: post!("Transfer-Encoding : chunked\r\n", "0\r\n\r\n"),
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        name: "te_obs_fold",
        raw: post!("Transfer-Encoding:\r\n chunked\r\n", "0\r\n\r\n"),
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        // nginx: 501; a control character in a field value is refused by gale's parser.
        name: "te_vertical_tab",
        raw: post!("Transfer-Encoding:\x0bchunked\r\n", "0\r\n\r\n"),
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "501, closed",
    },
    Case {
        name: "te_http10",
        raw: "POST /echo HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    // --- Content-Length spellings ---
    Case {
        name: "cl_plus",
        raw: post!("Content-Length: +5\r\n", "hello"),
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        name: "cl_minus",
        raw: post!("Content-Length: -5\r\n", "hello"),
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        name: "cl_leading_zeros",
        raw: post!("Content-Length: 005\r\n", "hello"),
        statuses: &[200],
        closed: false,
        backend: ECHO_HELLO,
        nginx: "200, open, backend got hello",
    },
    Case {
        name: "cl_hex",
        raw: post!("Content-Length: 0x5\r\n", "hello"),
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        name: "cl_space_inside",
        raw: post!("Content-Length: 5 5\r\n", "hello"),
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        name: "cl_empty",
        raw: post!("Content-Length: \r\n", "hello"),
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        name: "cl_huge",
        raw: post!("Content-Length: 99999999999999999999999\r\n", "hello"),
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        name: "cl_space_before_colon",
        raw: post!("Content-Length : 5\r\n", "hello"),
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    // --- Line endings and bytes in the head ---
    Case {
        name: "bare_lf_head",
        raw: "GET /whoami HTTP/1.1\nHost: a\n\n",
        statuses: &[200],
        closed: false,
        backend: WHOAMI,
        nginx: "200, open",
    },
    Case {
        name: "bare_cr_in_header",
        raw: "GET /whoami HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n",
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        name: "nul_in_header_value",
        raw: "GET /whoami HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n",
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        name: "space_in_header_name",
        raw: "GET /whoami HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n",
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        // nginx drops the line (ignore_invalid_headers) and serves the request; gale refuses a
        // head it cannot parse rather than guess which lines a hop behind it would keep.
        name: "header_without_colon",
        raw: "GET /whoami HTTP/1.1\r\nHost: a\r\nXA\r\n\r\n",
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "200, open (the line ignored)",
    },
    Case {
        name: "whitespace_before_first_header",
        raw: "GET /whoami HTTP/1.1\r\n Host: a\r\n\r\n",
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    // --- Chunked bodies: well-formed ---
    Case {
        name: "chunk_ext",
        raw: chunked!("5;name=value\r\nhello\r\n0\r\n\r\n"),
        statuses: &[200],
        closed: false,
        backend: ECHO_HELLO,
        nginx: "200, open, backend got hello",
    },
    Case {
        name: "chunk_ext_quoted",
        raw: chunked!("5;name=\"v;x\"\r\nhello\r\n0\r\n\r\n"),
        statuses: &[200],
        closed: false,
        backend: ECHO_HELLO,
        nginx: "200, open, backend got hello",
    },
    Case {
        name: "chunk_trailer",
        raw: chunked!("5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
        statuses: &[200],
        closed: false,
        backend: ECHO_HELLO,
        nginx: "200, open, backend got hello",
    },
    // --- Chunked bodies: malformed (issue 19, finding 6: these were 499 "client closed") ---
    Case {
        name: "chunk_size_junk",
        raw: concat!(chunked!("5x\r\nhello\r\n0\r\n\r\n"), "GET /whoami HTTP/1.1\r\nHost: a\r\n\r\n"),
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        name: "chunk_size_overflow",
        raw: chunked!("ffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        name: "chunk_size_0x",
        raw: chunked!("0x5\r\nhello\r\n0\r\n\r\n"),
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        name: "chunk_size_negative",
        raw: chunked!("-5\r\nhello\r\n0\r\n\r\n"),
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        // nginx accepts LF alone after a chunk size and after chunk data; RFC 9112 7.1 asks for
        // CRLF, and a hop that reads the LF differently sees another body: gale refuses it.
        name: "chunk_bare_lf",
        raw: chunked!("5\nhello\n0\n\n"),
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "200, open, backend got hello",
    },
    Case {
        name: "chunk_data_short",
        raw: chunked!("5\r\nhel\r\n0\r\n\r\n"),
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        name: "chunk_data_long",
        raw: chunked!("3\r\nhello\r\n0\r\n\r\n"),
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        name: "chunk_size_empty",
        raw: chunked!("\r\nhello\r\n0\r\n\r\n"),
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        // hyper ends a trailer line only at CRLF and the trailer section at an empty CRLF line;
        // an LF alone belongs to a trailer line (which hyper then drops). Found by the
        // differential fuzzer (docs/fuzzing.md): the framing tracker used to end the body at
        // the LF and took `GET /fake` for a request, so its verdict (two Content-Length) fell on
        // the next real request, refused with 400; a crafted body could as well hide a real
        // request's verdict. nginx ends the body at the LF, answers 200 and closes without
        // answering what follows.
        name: "chunk_trailer_lf_then_head",
        raw: concat!(
            chunked!(
                "5\r\nhello\r\n0\r\n\nGET /fake HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"
            ),
            "GET /whoami HTTP/1.1\r\nHost: a\r\n\r\n"
        ),
        statuses: &[200, 200],
        closed: false,
        backend: &[("POST /echo HTTP/1.1", "a", "hello"), ("GET /whoami HTTP/1.1", "a", "")],
        nginx: "200, closed (nothing more answered)",
    },
    // --- Pipelining after a body ---
    Case {
        name: "pipelined_after_cl_body",
        raw: concat!(post!("Content-Length: 5\r\n", "hello"), "GET /whoami HTTP/1.1\r\nHost: a\r\n\r\n"),
        statuses: &[200, 200],
        closed: false,
        backend: &[("POST /echo HTTP/1.1", "a", "hello"), ("GET /whoami HTTP/1.1", "a", "")],
        nginx: "200 200, open, backend got both",
    },
    Case {
        name: "pipelined_after_chunked_body",
        raw: concat!(chunked!("5\r\nhello\r\n0\r\n\r\n"), "GET /whoami HTTP/1.1\r\nHost: a\r\n\r\n"),
        statuses: &[200, 200],
        closed: false,
        backend: &[("POST /echo HTTP/1.1", "a", "hello"), ("GET /whoami HTTP/1.1", "a", "")],
        nginx: "200 200, open, backend got both",
    },
    Case {
        name: "get_with_cl_body",
        raw: "GET /whoami HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        statuses: &[200],
        closed: false,
        backend: &[("GET /whoami HTTP/1.1", "a", "hello")],
        nginx: "200, open, backend got the body",
    },
    Case {
        // An upgrade the backend refuses leaves the connection HTTP: the framing tap must keep
        // following it. It used to stop at the upgrade request (what follows might have been a
        // tunnel), and the second request here (two equal Content-Length) was served; found
        // while writing the differential fuzzer. nginx (which does not forward the upgrade in the
        // reference configuration) answers the first request and closes.
        name: "upgrade_refused_then_duplicate_cl",
        raw: "GET /whoami HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\
              POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        statuses: &[200, 400],
        closed: true,
        backend: WHOAMI,
        nginx: "200, closed (the second request not answered)",
    },
    // --- Request lines ---
    Case {
        // nginx answers HTTP/0.9 (a bare body, no status line) and forwards the request; gale
        // speaks HTTP/1.x only.
        name: "http09",
        raw: "GET /whoami\r\n\r\n",
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "an HTTP/0.9 answer (no status line), closed; backend got GET /whoami without Host",
    },
    Case {
        name: "double_space_request_line",
        raw: "GET  /whoami HTTP/1.1\r\nHost: a\r\n\r\n",
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        // gale's parser takes one space as the separator (RFC 9112 3); nginx is lenient.
        nginx: "200, open",
    },
    Case {
        name: "tab_request_line",
        raw: "GET\t/whoami\tHTTP/1.1\r\nHost: a\r\n\r\n",
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        name: "lowercase_version",
        raw: "GET /whoami http/1.1\r\nHost: a\r\n\r\n",
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        // nginx serves HTTP/1.2 as 1.1; gale knows 1.0 and 1.1 only, and refuses the rest.
        name: "version_1_2",
        raw: "GET /whoami HTTP/1.2\r\nHost: a\r\n\r\n",
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "200, open",
    },
    Case {
        name: "version_2_0",
        raw: "GET /whoami HTTP/2.0\r\nHost: a\r\n\r\n",
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "505, closed",
    },
    Case {
        name: "version_junk",
        raw: "GET /whoami HTTP/1.1x\r\nHost: a\r\n\r\n",
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        name: "leading_crlf",
        raw: "\r\n\r\nGET /whoami HTTP/1.1\r\nHost: a\r\n\r\n",
        statuses: &[200],
        closed: false,
        backend: WHOAMI,
        nginx: "200, open",
    },
    Case {
        name: "space_in_target",
        raw: "GET /who ami HTTP/1.1\r\nHost: a\r\n\r\n",
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    // --- Host and the request target (issue 19, finding 8) ---
    Case {
        name: "no_host_http11",
        raw: "GET /whoami HTTP/1.1\r\n\r\n",
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        name: "two_hosts",
        raw: "GET /whoami HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        name: "two_equal_hosts",
        raw: "GET /whoami HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        name: "empty_host",
        raw: "GET /whoami HTTP/1.1\r\nHost: \r\n\r\n",
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        name: "host_with_slash",
        raw: "GET /whoami HTTP/1.1\r\nHost: a/b\r\n\r\n",
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
    Case {
        name: "absolute_form_same_host",
        raw: "GET http://a/whoami HTTP/1.1\r\nHost: a\r\n\r\n",
        statuses: &[200],
        closed: false,
        backend: WHOAMI,
        nginx: "200, open",
    },
    Case {
        // RFC 9112 3.2.2: the target's authority wins. gale routes by it and tells the backend
        // the same host. nginx routes by the target too but (with `Host $http_host`) sends the
        // backend the header's host: the location's rules and the backend's virtual host can
        // then name two different sites.
        name: "absolute_form_other_host",
        raw: "GET http://other/whoami HTTP/1.1\r\nHost: a\r\n\r\n",
        statuses: &[200],
        closed: false,
        backend: &[("GET /whoami HTTP/1.1", "other", "")],
        nginx: "200, open; routed by `other`, backend got Host: a",
    },
    Case {
        name: "absolute_form_no_host",
        raw: "GET http://a/whoami HTTP/1.1\r\n\r\n",
        statuses: &[400],
        closed: true,
        backend: NOTHING,
        nginx: "400, closed",
    },
];
