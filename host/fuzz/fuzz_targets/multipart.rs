//! Fuzzes the streaming multipart parser: random bodies cut into random chunks.
//!
//! Invariants checked: no panic; no empty `Data` event; the result (events with adjacent data
//! merged, or the error) is the same whether the body arrives in one piece or in the chunks the
//! input chooses (D6); buffered bytes stay bounded by the chunk plus one header line.
#![no_main]

use gale::upload::multipart::{Event, MultipartError, Parser, ParserLimits};
use gale::upload::Boundary;
use libfuzzer_sys::fuzz_target;

const LIMITS: ParserLimits = ParserLimits {
    max_header_line: 511,
    max_header_bytes: 8192,
    max_parts: 64,
};

fn parse(boundary: &Boundary, body: &[u8], sizes: &[u8]) -> Result<Vec<Event>, MultipartError> {
    let mut parser = Parser::new(boundary, LIMITS);
    let mut events: Vec<Event> = Vec::new();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = if sizes.is_empty() {
            rest.len()
        } else {
            usize::from(sizes[i % sizes.len()]).clamp(1, rest.len())
        };
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
    }
    parser.finish().map(|()| events)
}

fuzz_target!(|input: &[u8]| {
    // Layout: [sizes_len][sizes...][body...]; a fixed boundary keeps delimiters reachable.
    let Some((&n, rest)) = input.split_first() else {
        return;
    };
    let n = usize::from(n % 16).min(rest.len());
    let (sizes, body) = rest.split_at(n);
    let boundary = Boundary::new(b"XbOuNdArY123").expect("valid boundary");
    let whole = parse(&boundary, body, &[]);
    let chunked = parse(&boundary, body, sizes);
    assert_eq!(whole, chunked, "chunking changed the result");
});
