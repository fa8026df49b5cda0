//! One part's header block: `Content-Disposition` and `Content-Type`, parsed properly.
//!
//! Where nginx-upload-module did substring searches (`name="`, `filename="`), this parses RFC 7578 / 6266
//! parameters (D4): case-insensitive names, token or quoted-string values, `filename*` (RFC 5987 /
//! 8187). Inside quoted-strings only `\"` and `\\` are escapes; any other backslash is kept, so a
//! Windows path such as `C:\Users\me\a.txt` survives for nginx-upload-module's path stripping (V8).
//!
//! Rejected with 400 (D6, D15): NUL or a stray CR in a line, folded lines, a missing
//! Content-Disposition or `name`, a disposition other than `form-data`/`attachment`, duplicate
//! headers or parameters, an empty Content-Type, an unterminated quote, and a field name holding
//! `"` (it would break the rewritten form's `name="…"`). NUL/CR/LF decoded from `filename*` are
//! rejected too.

use bytes::Bytes;

use super::multipart::MultipartError;

/// What gale needs from a part's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartHead {
    /// The `name` parameter (raw bytes; may be empty, never holds `"`, NUL, CR or LF).
    pub name: Bytes,
    /// The decoded filename (`filename*` preferred over `filename`), before any sanitising;
    /// `Some` makes the part a file (D4), except the "no file chosen" case (see `receive`).
    pub filename: Option<Bytes>,
    /// The part's Content-Type with leading whitespace removed (nginx-upload-module keeps trailing
    /// spaces); `None` when absent.
    pub content_type: Option<Bytes>,
}

/// Collects header lines until the blank line.
#[derive(Debug, Default)]
pub(crate) struct HeaderBlock {
    disposition: Option<Disposition>,
    content_type: Option<Bytes>,
}

#[derive(Debug)]
struct Disposition {
    name: Option<Vec<u8>>,
    filename: Option<Vec<u8>>,
    filename_ext: Option<Vec<u8>>,
}

type Result<T> = std::result::Result<T, MultipartError>;

fn malformed(why: &'static str) -> MultipartError {
    MultipartError::BadHeader(why)
}

impl HeaderBlock {
    /// Adds one line (terminator already removed).
    pub(crate) fn add_line(&mut self, line: &[u8]) -> Result<()> {
        if line.contains(&0) {
            return Err(malformed("NUL byte in a part header"));
        }
        if line.contains(&b'\r') {
            return Err(malformed("stray CR in a part header"));
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            return Err(malformed("folded part header line"));
        }
        let colon = line.iter().position(|&b| b == b':').ok_or(malformed("part header line without a colon"))?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(malformed("invalid part header name"));
        }
        let value = value.trim_ascii_start();
        if name.eq_ignore_ascii_case(b"content-disposition") {
            if self.disposition.is_some() {
                return Err(malformed("duplicate Content-Disposition"));
            }
            self.disposition = Some(parse_disposition(value)?);
        } else if name.eq_ignore_ascii_case(b"content-type") {
            if self.content_type.is_some() {
                return Err(malformed("duplicate part Content-Type"));
            }
            if value.trim_ascii().is_empty() {
                return Err(malformed("empty part Content-Type"));
            }
            self.content_type = Some(Bytes::copy_from_slice(value));
        }
        Ok(())
    }

    /// Ends the block at the blank line.
    pub(crate) fn finish(self) -> Result<PartHead> {
        let d = self.disposition.ok_or(malformed("part without Content-Disposition"))?;
        let name = d.name.ok_or(malformed("Content-Disposition without a name"))?;
        if name.contains(&b'"') {
            return Err(malformed("double quote in a field name"));
        }
        let filename = match (d.filename_ext, d.filename) {
            (Some(ext), _) => Some(decode_ext_value(&ext)?),
            (None, plain) => plain,
        };
        Ok(PartHead { name: name.into(), filename: filename.map(Bytes::from), content_type: self.content_type })
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_disposition(value: &[u8]) -> Result<Disposition> {
    let kind_len = value.iter().take_while(|&&b| is_tchar(b)).count();
    let kind = &value[..kind_len];
    if !kind.eq_ignore_ascii_case(b"form-data") && !kind.eq_ignore_ascii_case(b"attachment") {
        return Err(malformed("disposition is not form-data"));
    }
    let mut d = Disposition { name: None, filename: None, filename_ext: None };
    let mut rest = &value[kind_len..];
    loop {
        rest = rest.trim_ascii_start();
        if rest.is_empty() {
            return Ok(d);
        }
        rest = rest.strip_prefix(b";").ok_or(malformed("junk in Content-Disposition"))?.trim_ascii_start();
        if rest.is_empty() || rest[0] == b';' {
            continue;
        }
        let key_len = rest.iter().take_while(|&&b| is_tchar(b)).count();
        let key = &rest[..key_len];
        rest = rest[key_len..].trim_ascii_start();
        rest = rest
            .strip_prefix(b"=")
            .filter(|_| !key.is_empty())
            .ok_or(malformed("malformed Content-Disposition parameter"))?
            .trim_ascii_start();
        let (val, after) = param_value(rest)?;
        rest = after;
        let slot = if key.eq_ignore_ascii_case(b"name") {
            &mut d.name
        } else if key.eq_ignore_ascii_case(b"filename") {
            &mut d.filename
        } else if key.eq_ignore_ascii_case(b"filename*") {
            &mut d.filename_ext
        } else {
            continue;
        };
        if slot.replace(val).is_some() {
            return Err(malformed("duplicate Content-Disposition parameter"));
        }
    }
}

/// A quoted-string (only `\"` and `\\` unescape) or an unquoted value running to `;`.
fn param_value(input: &[u8]) -> Result<(Vec<u8>, &[u8])> {
    if let Some(mut rest) = input.strip_prefix(b"\"") {
        let mut out = Vec::new();
        loop {
            match rest {
                [] => return Err(malformed("unterminated quoted string")),
                [b'"', tail @ ..] => return Ok((out, tail)),
                [b'\\', c @ (b'"' | b'\\'), tail @ ..] => {
                    out.push(*c);
                    rest = tail;
                }
                [c, tail @ ..] => {
                    out.push(*c);
                    rest = tail;
                }
            }
        }
    }
    let len = input.iter().position(|&b| b == b';').unwrap_or(input.len());
    let val = input[..len].trim_ascii_end();
    if val.contains(&b'"') {
        return Err(malformed("stray quote in a parameter"));
    }
    Ok((val.to_vec(), &input[len..]))
}

/// RFC 8187 `charset'language'pct-encoded`; UTF-8 and ISO-8859-1 (converted to UTF-8).
fn decode_ext_value(v: &[u8]) -> Result<Vec<u8>> {
    let bad = || malformed("invalid filename* value");
    let mut it = v.splitn(3, |&b| b == b'\'');
    let (charset, _lang, encoded) =
        (it.next().ok_or_else(bad)?, it.next().ok_or_else(bad)?, it.next().ok_or_else(bad)?);
    let mut raw = Vec::with_capacity(encoded.len());
    let mut i = 0;
    while i < encoded.len() {
        if encoded[i] == b'%' {
            let hex = encoded.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            raw.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            raw.push(encoded[i]);
            i += 1;
        }
    }
    let out = if charset.eq_ignore_ascii_case(b"utf-8") {
        raw
    } else if charset.eq_ignore_ascii_case(b"iso-8859-1") {
        raw.iter().map(|&b| char::from(b)).collect::<String>().into_bytes()
    } else {
        return Err(malformed("filename* charset is not UTF-8 or ISO-8859-1"));
    };
    if out.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n')) {
        return Err(malformed("NUL, CR or LF in filename*"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(lines: &[&[u8]]) -> Result<PartHead> {
        let mut block = HeaderBlock::default();
        for l in lines {
            block.add_line(l)?;
        }
        block.finish()
    }

    fn filename(cd: &str) -> Option<Vec<u8>> {
        let line = format!("Content-Disposition: {cd}");
        head(&[line.as_bytes()]).expect("valid").filename.map(|b| b.to_vec())
    }

    #[test]
    fn basic_and_case_insensitive() {
        let h = head(&[
            b"content-DISPOSITION:form-data; NAME=\"file\"; FileName=\"a.txt\"",
            b"Content-Type:   text/plain; charset=UTF-8  ",
            b"X-Other: ignored",
        ])
        .expect("valid");
        assert_eq!(&h.name[..], b"file");
        assert_eq!(h.filename.as_deref(), Some(&b"a.txt"[..]));
        assert_eq!(h.content_type.as_deref(), Some(&b"text/plain; charset=UTF-8  "[..]));
    }

    #[test]
    fn filename_forms() {
        // D4: escapes, tokens, filename* (preferred), raw backslashes kept.
        assert_eq!(filename(r#"form-data; name="f"; filename="a\"b.txt""#), Some(b"a\"b.txt".to_vec()));
        assert_eq!(
            filename(r#"form-data; name="f"; filename="C:\Users\me\a b.txt""#),
            Some(br"C:\Users\me\a b.txt".to_vec())
        );
        assert_eq!(filename(r#"form-data; name="f"; filename="x\\y""#), Some(br"x\y".to_vec()));
        assert_eq!(filename("form-data; name=f; filename=x.txt"), Some(b"x.txt".to_vec()));
        assert_eq!(
            filename("form-data; name=\"f\"; filename*=UTF-8''r%C3%A9sum%C3%A9.txt"),
            Some("résumé.txt".as_bytes().to_vec())
        );
        assert_eq!(
            filename("form-data; name=\"f\"; filename=\"plain.txt\"; filename*=utf-8'en'b%20c"),
            Some(b"b c".to_vec())
        );
        assert_eq!(filename("form-data; name=\"f\"; filename*=iso-8859-1''caf%E9"), Some("café".as_bytes().to_vec()));
        assert_eq!(filename("form-data; name=\"f\""), None);
        assert_eq!(filename("form-data; filename=\"x.txt\"; name=\"file\""), Some(b"x.txt".to_vec()));
    }

    #[test]
    fn rejects() {
        let cases: &[&[&[u8]]] = &[
            &[b"Content-Type: text/plain"],
            &[b"Content-Disposition: form-data"],
            &[b"Content-Disposition: form-data; filename=\"x\""],
            &[b"Content-Disposition: inline; name=\"a\""],
            &[b"Content-Disposition: form-data; name=\"a"],
            &[b"Content-Disposition: form-data; name=\"a\"; name=\"b\""],
            &[b"Content-Disposition: form-data; name=\"a\\\"b\""],
            &[b"Content-Disposition: form-data; name=\"a\"; filename=\"x\0y\""],
            &[b"Content-Disposition: form-data; name=\"a\"; filename*=UTF-8''a%00b"],
            &[b"Content-Disposition: form-data; name=\"a\"; filename*=UTF-8''a%0Ab"],
            &[b"Content-Disposition: form-data; name=\"a\"; filename*=koi8-r''a"],
            &[b"Content-Disposition: form-data; name=\"a\"; filename*=UTF-8''%zz"],
            &[b"Content-Disposition: form-data; name=\"a\" junk"],
            &[b"Content-Disposition: form-data; name=\"a\"", b"Content-Type: "],
            &[b"Content-Disposition: form-data; name=\"a\"", b" folded"],
            &[b"Content-Disposition: form-data; name=\"a\"", b"no colon"],
            &[b"Content-Disposition: form-data; name=\"a\"", b"Bad\rHeader: x"],
            &[b"Content-Disposition: form-data; name=\"a\"", b"Content-Disposition: form-data; name=\"b\""],
        ];
        for lines in cases {
            assert!(head(lines).is_err(), "{lines:?}");
        }
    }

    #[test]
    fn empty_name_and_attachment_are_accepted() {
        let h = head(&[b"Content-Disposition: attachment; name=\"\"; filename=\"x\""]);
        assert_eq!(&h.expect("valid").name[..], b"");
    }
}
