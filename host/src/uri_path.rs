//! The request path as gale reads it: the one spelling that locations are matched against,
//! static files are looked up by, and plugins are shown. Pure; no I/O.
//!
//! A client can write one path many ways (`/loop/x`, `/%6coop/x`, `//loop/x`, `/x/../loop/x`).
//! If the location were chosen on the raw bytes, every other spelling would slip past the
//! location's plugins to a backend that decodes and resolves it anyway. So, in order
//! (docs/config.md, "Path normalisation"):
//!
//! 1. every `%` must start a two-digit hex escape, otherwise the request is refused (400);
//! 2. escapes of unreserved characters (RFC 3986: `A-Z a-z 0-9 - . _ ~`) are decoded; every other
//!    escape stays encoded, its hex digits upper-cased (`%2f` → `%2F`), so that decoding can
//!    never produce a `/`, a `%` or any byte with a meaning in a path;
//! 3. an encoded `/` (`%2F`), an encoded or raw `\` (`%5C`) and NUL (`%00`) are refused (400):
//!    kept encoded they would route by one reading while a backend that decodes them walks
//!    another;
//! 4. empty segments are merged (`//` → `/`) unless `merge_slashes = false`;
//! 5. `.` segments are removed and `..` removes the segment before it; climbing above `/` is
//!    refused (400).
//!
//! What the upstream is sent is untouched: the client's bytes.

use std::borrow::Cow;

/// Why a request path has no normal form. Every variant is a client error (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NormaliseError {
    /// A `%` not followed by two hex digits (`%zz`, `%4`).
    #[error("malformed percent-escape in the request path")]
    BadEscape,
    /// `%00`: no path segment can contain NUL.
    #[error("NUL (%00) in the request path")]
    Nul,
    /// `%2F`: a slash that is not a separator would route one way and reach a decoding backend
    /// another.
    #[error("encoded '/' (%2F) in the request path")]
    EncodedSlash,
    /// `\` or `%5C`: a separator on some backends.
    #[error("backslash in the request path")]
    Backslash,
    /// More `..` segments than segments before them (`/../x`).
    #[error("request path climbs above '/'")]
    AboveRoot,
}

/// The normal form of `raw` (a request path without its query): borrowed when `raw` already
/// is one, which is the common case and costs one scan and no allocation. A path that does not
/// start with `/` (the `*` of `OPTIONS *`) is returned as it is: no location matches it.
pub fn normalise(raw: &str, merge_slashes: bool) -> Result<Cow<'_, str>, NormaliseError> {
    if !raw.starts_with('/') || is_normal(raw.as_bytes(), merge_slashes) {
        return Ok(Cow::Borrowed(raw));
    }
    let decoded = decode_unreserved(raw)?;
    resolve_segments(&decoded, merge_slashes).map(Cow::Owned)
}

/// Whether a path starting with `/` needs no work: no escape, no backslash, no `/.` (a dot
/// segment, or a name starting with a dot, which the slow path leaves as it is) and, when
/// slashes are merged, no `//`.
fn is_normal(bytes: &[u8], merge_slashes: bool) -> bool {
    let mut previous_slash = false;
    for &b in bytes {
        match b {
            b'%' | b'\\' => return false,
            b'.' if previous_slash => return false,
            b'/' if previous_slash && merge_slashes => return false,
            _ => {}
        }
        previous_slash = b == b'/';
    }
    true
}

/// Steps 1 to 3: decodes the escapes of unreserved characters, upper-cases the others.
fn decode_unreserved(raw: &str) -> Result<String, NormaliseError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|c| hex(*c));
                let lo = bytes.get(i + 2).and_then(|c| hex(*c));
                let (Some(hi), Some(lo)) = (hi, lo) else { return Err(NormaliseError::BadEscape) };
                match hi << 4 | lo {
                    0 => return Err(NormaliseError::Nul),
                    b'/' => return Err(NormaliseError::EncodedSlash),
                    b'\\' => return Err(NormaliseError::Backslash),
                    c if is_unreserved(c) => out.push(char::from(c)),
                    c => {
                        out.push('%');
                        out.push(char::from(HEX_UPPER[usize::from(c >> 4)]));
                        out.push(char::from(HEX_UPPER[usize::from(c & 0xf)]));
                    }
                }
                i += 3;
            }
            b'\\' => return Err(NormaliseError::Backslash),
            _ => {
                // Copy the run up to the next `%` or `\` as it is (it may hold UTF-8).
                let end = bytes[i..].iter().position(|b| matches!(b, b'%' | b'\\')).map_or(bytes.len(), |n| i + n);
                out.push_str(&raw[i..end]);
                i = end;
            }
        }
    }
    Ok(out)
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// The value of one hex digit of a percent-escape, either case.
pub(crate) fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 section 2.3.
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

/// Steps 4 and 5 on a decoded path that starts with `/` (RFC 3986's remove_dot_segments, plus
/// nginx's merge_slashes): a segment that ends the path as `.`, `..` or empty leaves a
/// trailing slash, so `/a/.` and `/a/b/..` both name the directory `/a/`.
fn resolve_segments(path: &str, merge_slashes: bool) -> Result<String, NormaliseError> {
    let mut out = String::with_capacity(path.len());
    // Where each kept segment (with its leading `/`) starts in `out`, for `..`.
    let mut starts: Vec<usize> = Vec::new();
    let mut trailing_slash = false;
    let mut segments = path[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            "." => trailing_slash = last,
            ".." => {
                let start = starts.pop().ok_or(NormaliseError::AboveRoot)?;
                out.truncate(start);
                trailing_slash = last;
            }
            "" if merge_slashes || last => trailing_slash = last,
            _ => {
                starts.push(out.len());
                out.push('/');
                out.push_str(segment);
                trailing_slash = false;
            }
        }
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use NormaliseError::*;

    fn norm(raw: &str) -> Result<String, NormaliseError> {
        normalise(raw, true).map(Cow::into_owned)
    }

    /// Every spelling of `/loop/x` reaches the same normal form.
    #[test]
    fn spellings_of_one_path() {
        let table = [
            "/loop/x",
            "/%6coop/x",
            "/%6Coop/x",
            "/%6C%6F%6F%70/%78",
            "//loop/x",
            "/loop//x",
            "///loop///x",
            "/./loop/x",
            "/loop/./x",
            "/x/../loop/x",
            "/x/y/../../loop/x",
            "/%2e/loop/x",
            "/x/%2e%2e/loop/x",
            "/x/%2E%2E/loop/x",
            "/x/.%2e/loop/x",
            "/loop/x/.",
            "/loop/x/y/..",
        ];
        for raw in table {
            let expected = if raw.ends_with('.') { "/loop/x/" } else { "/loop/x" };
            assert_eq!(norm(raw).as_deref(), Ok(expected), "{raw:?}");
        }
    }

    #[test]
    fn refusals() {
        let table: &[(&str, NormaliseError)] = &[
            ("/..", AboveRoot),
            ("/../x", AboveRoot),
            ("/x/../../y", AboveRoot),
            ("/%2e%2e/x", AboveRoot),
            ("/x/..%2f", EncodedSlash),
            ("/loop%2Fx", EncodedSlash),
            ("/loop%2fx", EncodedSlash),
            ("/loop%5Cx", Backslash),
            ("/loop%5cx", Backslash),
            ("/loop\\x", Backslash),
            ("/loop%00", Nul),
            ("/a%zz", BadEscape),
            ("/a%4", BadEscape),
            ("/a%", BadEscape),
            ("/a%g0", BadEscape),
            ("/a%%41", BadEscape),
        ];
        for (raw, expected) in table {
            assert_eq!(norm(raw), Err(*expected), "{raw:?}");
        }
    }

    #[test]
    fn reserved_and_other_escapes_stay_encoded_in_upper_case() {
        assert_eq!(norm("/a%20b").as_deref(), Ok("/a%20b"));
        assert_eq!(norm("/a%3fb%3Bc").as_deref(), Ok("/a%3Fb%3Bc"));
        assert_eq!(norm("/caf%c3%a9").as_deref(), Ok("/caf%C3%A9"));
        // `%25` stays `%25`: decoding once can never make a new escape.
        assert_eq!(norm("/%252e%252e/x").as_deref(), Ok("/%252e%252e/x"));
        assert_eq!(norm("/%7Euser/%41%5a%30%2D%5F").as_deref(), Ok("/~user/AZ0-_"));
    }

    #[test]
    fn trailing_slashes_and_the_root() {
        let table = [
            ("/", "/"),
            ("//", "/"),
            ("/.", "/"),
            ("/./", "/"),
            ("/x/..", "/"),
            ("/x/../", "/"),
            ("/loop", "/loop"),
            ("/loop/", "/loop/"),
            ("/loop//", "/loop/"),
            ("/loop/.", "/loop/"),
            ("/loop/%2e", "/loop/"),
            ("/loop/x/..", "/loop/"),
        ];
        for (raw, expected) in table {
            assert_eq!(norm(raw).as_deref(), Ok(expected), "{raw:?}");
        }
    }

    #[test]
    fn names_that_only_look_like_dots_are_names() {
        for raw in ["/.well-known/x", "/a/.hidden", "/a/...", "/a/..b", "/a/b..", "/a/.%2e%2e"] {
            let expected = raw.replace("%2e", ".");
            assert_eq!(norm(raw).as_deref(), Ok(expected.as_str()), "{raw:?}");
        }
    }

    #[test]
    fn without_merge_slashes_empty_segments_are_kept() {
        let keep = |raw| normalise(raw, false).map(Cow::into_owned);
        assert_eq!(keep("//loop/x").as_deref(), Ok("//loop/x"));
        assert_eq!(keep("/a//b/").as_deref(), Ok("/a//b/"));
        assert_eq!(keep("/a//..").as_deref(), Ok("/a/"));
        assert_eq!(keep("//").as_deref(), Ok("//"));
        // Everything else still applies.
        assert_eq!(keep("/%6coop/./x/../y").as_deref(), Ok("/loop/y"));
        assert_eq!(keep("/../x"), Err(AboveRoot));
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for raw in ["/", "/loop/x", "/a-b_c~d/e.f", "/a.b/c", "/x/", "/caf\u{e9}", "*", ""] {
            assert!(matches!(normalise(raw, true), Ok(Cow::Borrowed(_))), "{raw:?}");
        }
        // `//` is normal when slashes are not merged.
        assert!(matches!(normalise("/a//b", false), Ok(Cow::Borrowed("/a//b"))));
    }

    #[test]
    fn paths_not_starting_with_a_slash_are_left_alone() {
        assert_eq!(norm("*").as_deref(), Ok("*"));
        assert_eq!(norm("").as_deref(), Ok(""));
    }
}
