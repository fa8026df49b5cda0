//! Validators (`ETag`, `Last-Modified`) and what a conditional or range request gets. Pure.
//!
//! nginx's rules, which this follows:
//! - the ETag is `"<mtime seconds hex>-<size hex>"`, strong;
//! - `If-None-Match` is evaluated first (weak comparison, `*` matches); when present it alone
//!   decides, `If-Modified-Since` is then ignored;
//! - `If-Modified-Since` gives 304 only when it equals `Last-Modified` exactly (nginx's default
//!   `if_modified_since exact`), which protects against a file restored with an older mtime;
//! - one range is honoured (206); several ranges get the whole file (200), which is nginx's
//!   `max_ranges 1` (nginx's default would build `multipart/byteranges`);
//! - a syntactically valid range past the end is 416; an invalid `Range` header is ignored;
//! - `If-Range` (strong ETag or exact date) that does not match turns a range request into 200.

use std::time::SystemTime;

use http::HeaderValue;

/// What identifies one version of a file, rendered once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Validators {
    /// Strong entity tag with its quotes.
    pub etag: String,
    /// The HTTP date of the modification time (second precision).
    pub last_modified: String,
    /// File size in bytes.
    pub size: u64,
    /// The modification time truncated to seconds, for date comparisons.
    mtime: SystemTime,
}

impl Validators {
    pub(crate) fn new(size: u64, mtime: SystemTime) -> Self {
        let secs = mtime.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mtime = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        Self { etag: format!("\"{secs:x}-{size:x}\""), last_modified: httpdate::fmt_http_date(mtime), size, mtime }
    }
}

/// The request headers that can change the answer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Conditions {
    pub if_none_match: Option<HeaderValue>,
    pub if_modified_since: Option<HeaderValue>,
    pub range: Option<HeaderValue>,
    pub if_range: Option<HeaderValue>,
}

impl Conditions {
    pub(crate) fn from_headers(headers: &http::HeaderMap) -> Self {
        Self {
            if_none_match: headers.get(http::header::IF_NONE_MATCH).cloned(),
            if_modified_since: headers.get(http::header::IF_MODIFIED_SINCE).cloned(),
            range: headers.get(http::header::RANGE).cloned(),
            if_range: headers.get(http::header::IF_RANGE).cloned(),
        }
    }
}

/// The answer for a file that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 304: the client's copy is current.
    NotModified,
    /// 200 with the whole file.
    Full,
    /// 206 with bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// 416: the range starts past the end.
    Unsatisfiable,
}

/// Decides between 304, 200, 206 and 416.
pub(crate) fn evaluate(v: &Validators, c: &Conditions) -> Outcome {
    if let Some(inm) = &c.if_none_match {
        if etag_list_matches(inm.as_bytes(), &v.etag) {
            return Outcome::NotModified;
        }
    } else if let Some(ims) = &c.if_modified_since
        && same_date(ims.as_bytes(), v)
    {
        return Outcome::NotModified;
    }
    let Some(range) = &c.range else {
        return Outcome::Full;
    };
    if let Some(if_range) = &c.if_range
        && !if_range_matches(if_range.as_bytes(), v)
    {
        return Outcome::Full;
    }
    match parse_range(range.as_bytes(), v.size) {
        RangeSpec::Ignore => Outcome::Full,
        RangeSpec::Unsatisfiable => Outcome::Unsatisfiable,
        RangeSpec::Bytes { start, end } => Outcome::Partial { start, end },
    }
}

/// `If-None-Match`: `*` or a list of entity tags, compared weakly (the `W/` is ignored).
fn etag_list_matches(header: &[u8], etag: &str) -> bool {
    let ours = opaque(etag.as_bytes());
    let header = trim(header);
    if header == b"*" {
        return true;
    }
    let mut rest = header;
    loop {
        rest = trim_start(rest);
        while let [b',', tail @ ..] = rest {
            rest = trim_start(tail);
        }
        if rest.is_empty() {
            return false;
        }
        let Some((tag, tail)) = split_etag(rest) else {
            return false; // malformed: no match, the file is sent
        };
        if opaque(tag) == ours {
            return true;
        }
        rest = tail;
    }
}

/// `If-Range`: an entity tag (strong comparison) or a date (exact match).
fn if_range_matches(header: &[u8], v: &Validators) -> bool {
    let header = trim(header);
    if header.starts_with(b"W/") {
        return false;
    }
    if header.starts_with(b"\"") {
        return header == v.etag.as_bytes();
    }
    same_date(header, v)
}

/// An HTTP date (any of the three formats) equal to the modification time.
fn same_date(header: &[u8], v: &Validators) -> bool {
    std::str::from_utf8(header)
        .ok()
        .and_then(|s| httpdate::parse_http_date(s.trim()).ok())
        .is_some_and(|t| t == v.mtime)
}

/// Splits one `[W/]"..."` off the front; returns the tag (with `W/` and quotes) and the rest.
fn split_etag(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let body_start = if s.starts_with(b"W/\"") {
        3
    } else if s.starts_with(b"\"") {
        1
    } else {
        return None;
    };
    let close = s[body_start..].iter().position(|b| *b == b'"')? + body_start;
    Some((&s[..=close], &s[close + 1..]))
}

/// The quoted part of an entity tag, without `W/`.
fn opaque(tag: &[u8]) -> &[u8] {
    tag.strip_prefix(b"W/").unwrap_or(tag)
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
    &s[n..]
}

fn trim(s: &[u8]) -> &[u8] {
    let s = trim_start(s);
    let n = s.iter().rev().take_while(|b| matches!(b, b' ' | b'\t')).count();
    &s[..s.len() - n]
}

/// A parsed `Range` header, for a file of a known size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeSpec {
    /// Invalid, not `bytes`, or several ranges: send the whole file.
    Ignore,
    /// Valid but starts past the end: 416.
    Unsatisfiable,
    /// One satisfiable range, `end` inclusive and clamped to the file.
    Bytes { start: u64, end: u64 },
}

fn parse_range(header: &[u8], size: u64) -> RangeSpec {
    let Ok(header) = std::str::from_utf8(header) else {
        return RangeSpec::Ignore;
    };
    let header = header.trim();
    let Some((unit, set)) = header.split_once('=') else {
        return RangeSpec::Ignore;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeSpec::Ignore;
    }
    let specs: Vec<&str> = set.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    let [spec] = specs.as_slice() else {
        return RangeSpec::Ignore; // none, or several (max_ranges 1)
    };
    let Some((first, last)) = spec.split_once('-') else {
        return RangeSpec::Ignore;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // suffix: the last N bytes
        let Some(n) = digits(last) else {
            return RangeSpec::Ignore;
        };
        if n == 0 || size == 0 {
            return RangeSpec::Unsatisfiable;
        }
        return RangeSpec::Bytes { start: size.saturating_sub(n), end: size - 1 };
    }
    let Some(start) = digits(first) else {
        return RangeSpec::Ignore;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match digits(last) {
            Some(end) if end >= start => end,
            _ => return RangeSpec::Ignore,
        }
    };
    if start >= size {
        return RangeSpec::Unsatisfiable;
    }
    RangeSpec::Bytes { start, end: end.min(size - 1) }
}

/// A non-empty run of ASCII digits that fits in u64.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn validators() -> Validators {
        // 2021-01-01T00:00:00Z, 1000 bytes
        Validators::new(1000, UNIX_EPOCH + Duration::from_secs(1_609_459_200))
    }

    fn cond(headers: &[(&str, &str)]) -> Conditions {
        let mut map = http::HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        Conditions::from_headers(&map)
    }

    #[test]
    fn validators_look_like_nginx() {
        let v = validators();
        assert_eq!(v.etag, "\"5fee6600-3e8\"");
        assert_eq!(v.last_modified, "Fri, 01 Jan 2021 00:00:00 GMT");
    }

    #[test]
    fn not_modified_table() {
        use Outcome::*;
        let lm = "Fri, 01 Jan 2021 00:00:00 GMT";
        let table: &[(&[(&str, &str)], Outcome)] = &[
            (&[], Full),
            (&[("if-none-match", "\"5fee6600-3e8\"")], NotModified),
            (&[("if-none-match", "W/\"5fee6600-3e8\"")], NotModified),
            (&[("if-none-match", "\"x\", \"5fee6600-3e8\"")], NotModified),
            (&[("if-none-match", "\"x\",W/\"5fee6600-3e8\" ")], NotModified),
            (&[("if-none-match", "*")], NotModified),
            (&[("if-none-match", "\"other\"")], Full),
            (&[("if-none-match", "5fee6600-3e8")], Full),
            (&[("if-none-match", "\"5fee6600-3e8")], Full),
            (&[("if-modified-since", lm)], NotModified),
            (&[("if-modified-since", "Friday, 01-Jan-21 00:00:00 GMT")], NotModified),
            (&[("if-modified-since", "Fri Jan  1 00:00:00 2021")], NotModified),
            (&[("if-modified-since", "Thu, 31 Dec 2020 23:59:59 GMT")], Full),
            (&[("if-modified-since", "Sat, 02 Jan 2021 00:00:00 GMT")], Full),
            (&[("if-modified-since", "garbage")], Full),
            // If-None-Match wins over If-Modified-Since, both ways.
            (&[("if-none-match", "\"other\""), ("if-modified-since", lm)], Full),
            (
                &[("if-none-match", "\"5fee6600-3e8\""), ("if-modified-since", "Sat, 02 Jan 2021 00:00:00 GMT")],
                NotModified,
            ),
            // 304 beats a range.
            (&[("if-none-match", "*"), ("range", "bytes=0-1")], NotModified),
        ];
        for (headers, expected) in table {
            assert_eq!(evaluate(&validators(), &cond(headers)), *expected, "{headers:?}");
        }
    }

    #[test]
    fn range_table() {
        use Outcome::*;
        let table: &[(&str, Outcome)] = &[
            ("bytes=0-0", Partial { start: 0, end: 0 }),
            ("bytes=0-499", Partial { start: 0, end: 499 }),
            ("bytes=500-", Partial { start: 500, end: 999 }),
            ("bytes=990-5000", Partial { start: 990, end: 999 }),
            ("bytes=-10", Partial { start: 990, end: 999 }),
            ("bytes=-5000", Partial { start: 0, end: 999 }),
            ("bytes=999-999", Partial { start: 999, end: 999 }),
            ("Bytes = 1-2", Partial { start: 1, end: 2 }),
            ("bytes=1-2,", Partial { start: 1, end: 2 }),
            ("bytes=1000-", Unsatisfiable),
            ("bytes=1000-2000", Unsatisfiable),
            ("bytes=-0", Unsatisfiable),
            ("bytes=0-1,5-6", Full),
            ("bytes=5-1", Full),
            ("bytes=a-b", Full),
            ("bytes=-", Full),
            ("bytes=1", Full),
            ("bytes=+1-2", Full),
            ("bytes=", Full),
            ("items=0-1", Full),
            ("bytes=99999999999999999999-", Full),
        ];
        for (range, expected) in table {
            assert_eq!(evaluate(&validators(), &cond(&[("range", range)])), *expected, "{range}");
        }
    }

    #[test]
    fn empty_file_ranges() {
        let v = Validators::new(0, UNIX_EPOCH);
        assert_eq!(evaluate(&v, &cond(&[("range", "bytes=0-")])), Outcome::Unsatisfiable);
        assert_eq!(evaluate(&v, &cond(&[("range", "bytes=-1")])), Outcome::Unsatisfiable);
    }

    #[test]
    fn if_range() {
        use Outcome::*;
        let part = Partial { start: 0, end: 1 };
        let table: &[(&str, Outcome)] = &[
            ("\"5fee6600-3e8\"", part),
            ("W/\"5fee6600-3e8\"", Full),
            ("\"other\"", Full),
            ("Fri, 01 Jan 2021 00:00:00 GMT", part),
            ("Sat, 02 Jan 2021 00:00:00 GMT", Full),
        ];
        for (if_range, expected) in table {
            let c = cond(&[("range", "bytes=0-1"), ("if-range", if_range)]);
            assert_eq!(evaluate(&validators(), &c), *expected, "{if_range}");
        }
    }
}
