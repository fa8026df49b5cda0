//! The streaming multipart parser: random bodies cut into random chunks.
//!
//! Invariants: no panic; no empty `Data` event; the result (events with adjacent data merged,
//! or the error) is the same whether the body arrives in one piece or in the chunks the input
//! chooses; after each chunk is drained, the parser holds no more than that chunk plus one
//! header line and one delimiter (it never accumulates a part's data).

use gale::upload::Boundary;
use gale::upload::multipart::{Event, MultipartError, Parser, ParserLimits};

const LIMITS: ParserLimits = ParserLimits { max_header_line: 511, max_header_bytes: 8192, max_parts: 64 };

/// The boundary every input is parsed with: fixed, so delimiters stay reachable by mutation.
pub const BOUNDARY: &[u8] = b"XbOuNdArY123";

fn parse(boundary: &Boundary, body: &[u8], sizes: &[u8]) -> Result<Vec<Event>, MultipartError> {
    let mut parser = Parser::new(boundary, LIMITS);
    // "\r\n--" + boundary + "--\r\n": the longest delimiter the parser may hold back.
    let delimiter = BOUNDARY.len() + 8;
    let mut events: Vec<Event> = Vec::new();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = if sizes.is_empty() { rest.len() } else { usize::from(sizes[i % sizes.len()]).clamp(1, rest.len()) };
        i += 1;
        // Both ways in: borrowed (copied into the parser) and owned (sliced without a copy).
        if i % 2 == 0 {
            parser.push(&rest[..n]);
        } else {
            parser.push_bytes(bytes::Bytes::copy_from_slice(&rest[..n]));
        }
        rest = &rest[n..];
        while let Some(event) = parser.next_event()? {
            match (events.last_mut(), event) {
                (_, Event::Data(d)) if d.is_empty() => panic!("empty Data event"),
                (Some(Event::Data(prev)), Event::Data(more)) => {
                    *prev = [&prev[..], &more[..]].concat().into();
                }
                (_, event) => events.push(event),
            }
        }
        let bound = n + LIMITS.max_header_line + 1 + delimiter;
        assert!(
            parser.buffered() <= bound,
            "the parser holds {} bytes after a {n}-byte chunk (bound {bound})",
            parser.buffered()
        );
    }
    parser.finish().map(|()| events)
}

/// Input layout: `[sizes_len][sizes...][body...]`.
pub fn check(input: &[u8]) {
    let Some((&n, rest)) = input.split_first() else {
        return;
    };
    let n = usize::from(n % 16).min(rest.len());
    let (sizes, body) = rest.split_at(n);
    let boundary = Boundary::new(BOUNDARY).expect("valid boundary");
    let whole = parse(&boundary, body, &[]);
    let chunked = parse(&boundary, body, sizes);
    assert_eq!(whole, chunked, "chunking changed the result");
}
