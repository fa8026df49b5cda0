//! multipart/form-data for the upload tests: client bodies built byte by byte, the forwarded form
//! written from its grammar (docs/uploads.md, "The forwarded body"), and a strict parser for what an
//! upload location sends its backend.
//!
//! Written independently of gale's own `upload` module on purpose: a test that reused gale's form
//! writer could not catch a bug in it.

use std::path::Path;

use md5::Digest as _;

/// The spec's boundary (every vector but V17 uses it).
pub const B: &str = "XbOuNdArY123";

/// The spec's `TXT`: `Hello, world!\n` (14 bytes).
pub const TXT: &[u8] = b"Hello, world!\n";

/// md5 of [`TXT`].
pub const TXT_MD5: &str = "746308829575e17c3331bbcb00c0898b";

/// The Content-Type of a client body with boundary [`B`].
pub fn content_type() -> String {
    format!("multipart/form-data; boundary={B}")
}

/// A client part with CRLF framing and boundary [`B`]: delimiter, header lines, blank line,
/// data, CRLF.
pub fn part(headers: &[&str], data: &[u8]) -> Vec<u8> {
    let mut v = format!("--{B}\r\n").into_bytes();
    for h in headers {
        v.extend_from_slice(h.as_bytes());
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(b"\r\n");
    v.extend_from_slice(data);
    v.extend_from_slice(b"\r\n");
    v
}

/// A text part `name=value`.
pub fn text(name: &str, value: &[u8]) -> Vec<u8> {
    part(&[&format!("Content-Disposition: form-data; name=\"{name}\"")], value)
}

/// A file part, as a browser sends it.
pub fn file(name: &str, filename: &str, content_type: &str, data: &[u8]) -> Vec<u8> {
    part(
        &[
            &format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\""),
            &format!("Content-Type: {content_type}"),
        ],
        data,
    )
}

/// The close delimiter `--B--\r\n`.
pub fn close() -> Vec<u8> {
    format!("--{B}--\r\n").into_bytes()
}

/// The parts followed by the close delimiter.
pub fn body(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut v = parts.concat();
    v.extend_from_slice(&close());
    v
}

/// The exact form an upload location forwards (spec (b)):
/// `body = field *( CRLF field ) CRLF "--" B "--" CRLF`,
/// `field = "--" B CRLF "Content-Disposition: form-data; name=\"" NAME "\"" CRLF CRLF VALUE`.
pub fn forwarded(boundary: &str, fields: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
        );
        out.extend_from_slice(value);
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// The spec's Content-Length formula for a forwarded form:
/// `Σ(len(B)+47+len(NAME)+len(VALUE)) + 2·(n−1) + len(B)+8`.
pub fn forwarded_len(boundary: &str, fields: &[(&str, &[u8])]) -> usize {
    let b = boundary.len();
    let sum: usize = fields.iter().map(|(n, v)| b + 47 + n.len() + v.len()).sum();
    sum + 2 * fields.len().saturating_sub(1) + b + 8
}

/// One field of a forwarded form: raw name and value bytes.
pub type Field = (Vec<u8>, Vec<u8>);

/// Parses a form in exactly the forwarded grammar (no preamble, no epilogue, one
/// Content-Disposition header per field, nothing else); `Err` says where it deviates.
pub fn parse_forwarded(body: &[u8], boundary: &str) -> Result<Vec<Field>, String> {
    let delimiter = format!("--{boundary}");
    let head = format!("{delimiter}\r\nContent-Disposition: form-data; name=\"");
    let separator = format!("\r\n{delimiter}");
    let mut fields = Vec::new();
    let mut rest = body;
    loop {
        rest = rest
            .strip_prefix(head.as_bytes())
            .ok_or_else(|| format!("field {} does not start with {head:?}: {}", fields.len(), preview(rest)))?;
        let name_end = find(rest, b"\"\r\n\r\n").ok_or("no end of the field name")?;
        let name = rest[..name_end].to_vec();
        rest = &rest[name_end + 5..];
        let value_end = find(rest, separator.as_bytes()).ok_or("no delimiter after a value")?;
        fields.push((name, rest[..value_end].to_vec()));
        rest = &rest[value_end + 2..];
        if rest == format!("{delimiter}--\r\n").as_bytes() {
            return Ok(fields);
        }
    }
}

/// The values of every field named `name`, in order.
pub fn values<'a>(fields: &'a [Field], name: &str) -> Vec<&'a [u8]> {
    fields.iter().filter(|(n, _)| n == name.as_bytes()).map(|(_, v)| v.as_slice()).collect()
}

/// The boundary of a `multipart/form-data; boundary=...` Content-Type (token or quoted).
pub fn boundary_of(content_type: &str) -> Option<String> {
    let (_, params) = content_type.split_once(';')?;
    params.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim().eq_ignore_ascii_case("boundary").then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// Lower-case hex md5.
pub fn md5_hex(data: &[u8]) -> String {
    hex(&md5::Md5::digest(data))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `path` is a file directly in `store` with one of gale's store names (D10: 128-bit
/// random, 32 lower-case hex digits).
pub fn is_store_path(path: &Path, store: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    path.parent() == Some(store)
        && name.len() == 32
        && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The entries of a directory (names), sorted.
pub fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The bytes for a failure message: text, cut at 600 bytes.
pub fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(600)]).into_owned();
    if bytes.len() > 600 { format!("{text:?}... ({} bytes)", bytes.len()) } else { format!("{text:?}") }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_matches_the_spec_formula_and_parses_back() {
        let fields: &[(&str, &[u8])] = &[("somearg", b"value1"), ("file.name", b"hello.txt"), ("e", b"")];
        let form = forwarded(B, fields);
        assert_eq!(form.len(), forwarded_len(B, fields));
        let parsed = parse_forwarded(&form, B).expect("parses");
        let want: Vec<Field> = fields.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.to_vec())).collect();
        assert_eq!(parsed, want);
    }

    #[test]
    fn the_spec_dummy_is_104_bytes() {
        assert_eq!(forwarded(B, &[("<ngx_upload_module_dummy>", b"")]).len(), 104);
    }

    #[test]
    fn parse_refuses_an_epilogue() {
        let mut form = forwarded(B, &[("a", b"1")]);
        form.extend_from_slice(b"junk");
        assert!(parse_forwarded(&form, B).is_err());
    }

    #[test]
    fn boundary_of_reads_tokens_and_quoted_strings() {
        assert_eq!(boundary_of("multipart/form-data; boundary=abc; charset=utf-8").as_deref(), Some("abc"));
        assert_eq!(boundary_of("multipart/form-data; BOUNDARY=\"a b\"").as_deref(), Some("a b"));
        assert_eq!(boundary_of("multipart/form-data"), None);
    }
}
