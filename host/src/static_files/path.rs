//! Turning a request path into file-system segments, safely and without I/O.
//!
//! The pipeline hands over the path in the normal form its location was chosen by
//! (`crate::uri_path`: unreserved escapes decoded, dot segments resolved, `%2F`, `%5C`, `%00`
//! and paths above `/` already answered 400), so every spelling of a path names the same file.
//! These rules hold on their own all the same, for any path, in order (see
//! `docs/static-and-gzip.md`):
//! 1. split the *raw* path on `/`, then percent-decode each segment exactly once, so `%2f` can never
//!    become a separator and `%252e` stays the literal name `%2e`;
//! 2. a malformed escape or a NUL byte is a client error (400);
//! 3. a segment that decodes to `..`, contains `/` or `\`, or starts with a drive letter (`c:`) is
//!    refused (answered like a missing file: 404);
//! 4. empty and `.` segments are dropped (nginx merges slashes and removes `/./` too).
//!
//! What is left is a list of plain names that can only walk *down* from the base directory. The
//! symlink policy is enforced later, when the names are opened (`open.rs`).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use crate::uri_path::hex;

/// Why a request path cannot name a file under the base directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `/` (e.g. the `*` of `OPTIONS *`). A client error: 400.
    #[error("request path does not start with '/'")]
    NotAbsolute,
    /// A `%` not followed by two hex digits. A client error: 400.
    #[error("malformed percent-encoding in request path")]
    BadEncoding,
    /// A NUL byte (raw or `%00`): no file name can contain one. A client error: 400.
    #[error("NUL byte in request path")]
    Nul,
    /// A path that is well formed but may not name a file (`..`, encoded separator, backslash,
    /// drive letter, or outside the location prefix). Answered as 404 so that nothing about the
    /// file system is revealed.
    #[error("refused request path: {0}")]
    Refused(&'static str),
}

/// A decoded request path: plain names only, plus whether the client wrote a trailing slash
/// (which decides between serving a directory's index and redirecting to the slash form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPath {
    /// Decoded, validated names (never empty, `.`, or `..`; no `/`, `\` or NUL inside).
    pub segments: Vec<OsString>,
    /// The path ends with `/` (or with a `.` segment, which names the same directory).
    pub trailing_slash: bool,
}

impl RequestPath {
    /// Parses a raw (still percent-encoded) request path, applying the rules of this module.
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        let rest = raw.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
        let mut segments = Vec::new();
        let mut trailing_slash = true; // "/" alone names the base directory
        for raw_segment in rest.split('/') {
            let decoded = decode_segment(raw_segment)?;
            if decoded.is_empty() || decoded == b"." {
                trailing_slash = true;
                continue;
            }
            check_segment(&decoded)?;
            segments.push(OsString::from_vec(decoded));
            trailing_slash = false;
        }
        Ok(Self { segments, trailing_slash })
    }

    /// The normalized decoded path (`/a/b` or `/a/b/`), for logs and for the cache-policy data.
    /// Names that are not UTF-8 are rendered lossily: this is for humans and rules, not for I/O.
    pub fn display(&self) -> String {
        let mut out = String::from("/");
        for (i, segment) in self.segments.iter().enumerate() {
            if i > 0 {
                out.push('/');
            }
            out.push_str(&segment.to_string_lossy());
        }
        if self.trailing_slash && !self.segments.is_empty() {
            out.push('/');
        }
        out
    }

    /// The names relative to an `alias` directory: the location prefix's names are removed.
    ///
    /// nginx replaces the prefix as a string, so `location /img { alias /data/images; }` maps
    /// `/img../x` to `/data/images../x`, a classic escape. Here the prefix must end on a segment
    /// boundary, otherwise the path is refused.
    pub fn strip_prefix(&self, location_prefix: &str) -> Result<Vec<OsString>, PathError> {
        let prefix: Vec<&str> = location_prefix.split('/').filter(|s| !s.is_empty()).collect();
        if self.segments.len() < prefix.len() {
            return Err(PathError::Refused("path is shorter than the location prefix"));
        }
        let matches = prefix.iter().zip(&self.segments).all(|(p, s)| s.as_os_str() == std::ffi::OsStr::new(p));
        if !matches {
            return Err(PathError::Refused("path does not start with the location prefix"));
        }
        Ok(self.segments[prefix.len()..].to_vec())
    }
}

/// Percent-decodes one segment (once). `+` is not a space in a path.
fn decode_segment(raw: &str) -> Result<Vec<u8>, PathError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|c| hex(*c));
            let lo = bytes.get(i + 2).and_then(|c| hex(*c));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(PathError::BadEncoding),
            }
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

/// Applies the refusal rules to one decoded, non-empty, non-`.` segment.
fn check_segment(segment: &[u8]) -> Result<(), PathError> {
    if segment.contains(&0) {
        return Err(PathError::Nul);
    }
    if segment == b".." {
        return Err(PathError::Refused("'..' segment"));
    }
    if segment.contains(&b'/') {
        return Err(PathError::Refused("encoded '/' in a segment"));
    }
    if segment.contains(&b'\\') {
        return Err(PathError::Refused("backslash in path"));
    }
    if segment.len() >= 2 && segment[0].is_ascii_alphabetic() && segment[1] == b':' {
        return Err(PathError::Refused("drive letter in path"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(raw: &str) -> Vec<String> {
        RequestPath::parse(raw)
            .expect("path should be accepted")
            .segments
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }

    /// The traversal table: every way of writing an escape or a forbidden byte, and its answer.
    #[test]
    fn traversal_table() {
        use PathError::*;
        let table: &[(&str, PathError)] = &[
            ("/static/../secret", Refused("'..' segment")),
            ("/../secret", Refused("'..' segment")),
            ("/static/..", Refused("'..' segment")),
            ("/static/%2e%2e/secret", Refused("'..' segment")),
            ("/static/%2E%2E/secret", Refused("'..' segment")),
            ("/static/.%2e/secret", Refused("'..' segment")),
            ("/static/%2e./secret", Refused("'..' segment")),
            ("/static/..%2fsecret", Refused("encoded '/' in a segment")),
            ("/static/%2e%2e%2fsecret", Refused("encoded '/' in a segment")),
            ("/static/%2F..%2Fsecret", Refused("encoded '/' in a segment")),
            ("/static/a%2fb", Refused("encoded '/' in a segment")),
            ("/static/..%5csecret", Refused("backslash in path")),
            ("/static/%5C..%5Csecret", Refused("backslash in path")),
            ("/static/..\\secret", Refused("backslash in path")),
            ("/static/a\\b", Refused("backslash in path")),
            ("/c:/windows/win.ini", Refused("drive letter in path")),
            ("/static/C:/x", Refused("drive letter in path")),
            ("/static/c%3a/x", Refused("drive letter in path")),
            ("/static/c:x", Refused("drive letter in path")),
            ("/static/a%00.css", Nul),
            ("/static/%00", Nul),
            ("/static/a%2", BadEncoding),
            ("/static/a%", BadEncoding),
            ("/static/%zz", BadEncoding),
            ("/static/%g0", BadEncoding),
            ("static/a.css", NotAbsolute),
            ("*", NotAbsolute),
            ("", NotAbsolute),
        ];
        for (raw, expected) in table {
            assert_eq!(RequestPath::parse(raw).as_ref().err(), Some(expected), "path {raw:?}");
        }
    }

    #[test]
    fn double_encoding_is_decoded_once() {
        // `%252e%252e` is the literal name `%2e%2e`, not `..`.
        assert_eq!(names("/static/%252e%252e/x"), ["static", "%2e%2e", "x"]);
        assert_eq!(names("/static/%252f"), ["static", "%2f"]);
        assert_eq!(names("/static/%255c"), ["static", "%5c"]);
        assert_eq!(names("/static/%2500"), ["static", "%00"]);
    }

    #[test]
    fn harmless_forms_are_normalized() {
        assert_eq!(names("/static//a.css"), ["static", "a.css"]);
        assert_eq!(names("/static/./a.css"), ["static", "a.css"]);
        assert_eq!(names("/static/%2e/a.css"), ["static", "a.css"]);
        assert_eq!(names("/static/a%20b.css"), ["static", "a b.css"]);
        assert_eq!(names("/static/a+b.css"), ["static", "a+b.css"]);
        assert_eq!(names("/static/...css"), ["static", "...css"]);
        assert_eq!(names("/static/..a"), ["static", "..a"]);
        assert_eq!(names("/static/a..b"), ["static", "a..b"]);
        assert_eq!(names("/static/ab:c"), ["static", "ab:c"]);
        assert_eq!(names("/static/1:b"), ["static", "1:b"]);
        assert_eq!(names("/static/%C3%A9.txt"), ["static", "é.txt"]);
        assert!(names("/").is_empty());
    }

    #[test]
    fn non_utf8_names_are_kept_as_bytes() {
        let p = RequestPath::parse("/static/%ff.bin").expect("accepted");
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(p.segments[1].as_bytes(), b"\xff.bin");
        assert_eq!(p.display(), "/static/\u{fffd}.bin");
    }

    #[test]
    fn trailing_slash_is_remembered() {
        let slash = |raw: &str| RequestPath::parse(raw).expect("accepted").trailing_slash;
        assert!(slash("/"));
        assert!(slash("/static/"));
        assert!(slash("/static//"));
        assert!(slash("/static/."));
        assert!(!slash("/static"));
        assert!(!slash("/static/a.css"));
        assert!(!slash("/static/./a.css"));
    }

    #[test]
    fn display_is_normalized() {
        let d = |raw: &str| RequestPath::parse(raw).expect("accepted").display();
        assert_eq!(d("/"), "/");
        assert_eq!(d("/static//a%20b.css"), "/static/a b.css");
        assert_eq!(d("/static/./sub/"), "/static/sub/");
    }

    #[test]
    fn alias_prefix_is_replaced_on_segment_boundaries() {
        let strip = |raw: &str, prefix: &str| {
            RequestPath::parse(raw)
                .expect("accepted")
                .strip_prefix(prefix)
                .map(|v| v.iter().map(|s| s.to_string_lossy().into_owned()).collect::<Vec<_>>())
        };
        assert_eq!(strip("/static/css/a.css", "/static/"), Ok(vec!["css".into(), "a.css".into()]));
        assert_eq!(strip("/static/a.css", "/static"), Ok(vec!["a.css".into()]));
        assert_eq!(strip("/static/", "/static/"), Ok(vec![]));
        assert_eq!(strip("/static", "/static"), Ok(vec![]));
        assert_eq!(strip("/x/y/z", "/"), Ok(vec!["x".into(), "y".into(), "z".into()]));
        assert_eq!(strip("/st%61tic/a", "/static/"), Ok(vec!["a".into()]));
        // nginx's string replacement would turn these into siblings of the alias directory.
        assert!(strip("/static../secret", "/static").is_err());
        assert!(strip("/staticfoo", "/static").is_err());
        assert!(strip("/other/a.css", "/static/").is_err());
        assert!(strip("/", "/static/").is_err());
    }
}
