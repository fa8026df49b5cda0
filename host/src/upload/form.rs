//! The rewritten form sent upstream, byte-exact with nginx-upload-module (the vectors of docs/uploads.md):
//!
//! ```text
//! body  = field *( CRLF field ) CRLF "--" B "--" CRLF
//! field = "--" B CRLF "Content-Disposition: form-data; name=\"" NAME "\"" CRLF CRLF VALUE
//! ```
//!
//! No preamble or epilogue, no per-part Content-Type, names and values unescaped; the client's
//! boundary is reused; an empty form is the single field `<ngx_upload_module_dummy>` with an empty
//! value. `Content-Length = Σ(len(B)+47+len(NAME)+len(VALUE)) + 2·(n−1) + len(B)+8`.
//!
//! Because nothing is escaped, a name or value holding `--B` (Tornado splits on `--B\r\n`
//! anywhere, not only after a line break) or a name holding `"`, CR, LF or NUL would let a client
//! forge fields; such input is refused (400) instead of forwarded.

use bytes::{Bytes, BytesMut};
use memchr::memmem;

use super::request::Boundary;

/// The field nginx-upload-module emits when nothing else is (kept for byte parity).
pub const DUMMY_FIELD: &[u8] = b"<ngx_upload_module_dummy>";

const DISPOSITION: &[u8] = b"Content-Disposition: form-data; name=\"";

/// Why a field cannot be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// The form would exceed the cap (D5/D13: 413 where nginx-upload-module silently dropped the field).
    #[error("rewritten form would exceed {0} bytes")]
    TooLarge(usize),
    /// A name or value that would forge delimiters or break `name="…"` (400).
    #[error("field {0} would break the rewritten form's framing")]
    Unsafe(&'static str),
}

/// Builds the rewritten body in memory, within a byte cap.
#[derive(Debug)]
pub struct FormWriter {
    /// `--B`
    dash: Vec<u8>,
    finder: memmem::Finder<'static>,
    buf: BytesMut,
    fields: usize,
    cap: usize,
}

impl FormWriter {
    /// An empty form for `boundary`, at most `cap` bytes once closed.
    pub fn new(boundary: &Boundary, cap: usize) -> Self {
        let mut dash = b"--".to_vec();
        dash.extend_from_slice(boundary.as_bytes());
        FormWriter { finder: memmem::Finder::new(&dash).into_owned(), dash, buf: BytesMut::new(), fields: 0, cap }
    }

    /// The closed body's length if a field of these sizes were added now.
    pub fn len_with(&self, name_len: usize, value_len: usize) -> usize {
        let b = self.dash.len() - 2;
        let sep = if self.fields > 0 { 2 } else { 0 };
        self.buf.len() + sep + b + 47 + name_len + value_len + b + 8
    }

    /// Fails with [`FormError::TooLarge`] if a field of these sizes would not fit; lets a text
    /// field be refused while it streams, before it is buffered whole.
    pub fn check_room(&self, name_len: usize, value_len: usize) -> Result<(), FormError> {
        if self.len_with(name_len, value_len) > self.cap {
            return Err(FormError::TooLarge(self.cap));
        }
        Ok(())
    }

    /// Appends one field.
    pub fn push(&mut self, name: &[u8], value: &[u8]) -> Result<(), FormError> {
        if name.iter().any(|&b| matches!(b, b'"' | b'\r' | b'\n' | 0)) {
            return Err(FormError::Unsafe("name"));
        }
        if self.finder.find(name).is_some() {
            return Err(FormError::Unsafe("name"));
        }
        if self.finder.find(value).is_some() {
            return Err(FormError::Unsafe("value"));
        }
        self.check_room(name.len(), value.len())?;
        self.append(name, value);
        Ok(())
    }

    fn append(&mut self, name: &[u8], value: &[u8]) {
        if self.fields > 0 {
            self.buf.extend_from_slice(b"\r\n");
        }
        self.buf.extend_from_slice(&self.dash);
        self.buf.extend_from_slice(b"\r\n");
        self.buf.extend_from_slice(DISPOSITION);
        self.buf.extend_from_slice(name);
        self.buf.extend_from_slice(b"\"\r\n\r\n");
        self.buf.extend_from_slice(value);
        self.fields += 1;
    }

    /// Closes the form, adding the dummy field if it is empty.
    pub fn finish(mut self) -> Bytes {
        if self.fields == 0 {
            self.append(DUMMY_FIELD, b"");
        }
        self.buf.extend_from_slice(b"\r\n");
        self.buf.extend_from_slice(&self.dash);
        self.buf.extend_from_slice(b"--\r\n");
        self.buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boundary() -> Boundary {
        Boundary::new(b"XbOuNdArY123").expect("valid")
    }

    #[test]
    fn dummy_is_104_bytes() {
        let body = FormWriter::new(&boundary(), 1 << 20).finish();
        assert_eq!(
            &body[..],
            &b"--XbOuNdArY123\r\nContent-Disposition: form-data; name=\"<ngx_upload_module_dummy>\"\r\n\r\n\r\n--XbOuNdArY123--\r\n"[..]
        );
        assert_eq!(body.len(), 104);
    }

    #[test]
    fn length_formula_holds() {
        let mut form = FormWriter::new(&boundary(), 1 << 20);
        let fields: &[(&[u8], &[u8])] = &[(b"somearg", b"value1"), (b"a", b""), (b"", b"x")];
        let mut expected = 12 + 8 + 2 * (fields.len() - 1);
        for (n, v) in fields {
            assert_eq!(form.len_with(n.len(), v.len()), form.len_with(0, 0) + n.len() + v.len());
            form.push(n, v).expect("fits");
            expected += 12 + 47 + n.len() + v.len();
        }
        assert_eq!(form.finish().len(), expected);
    }

    #[test]
    fn cap_is_exact() {
        let mut form = FormWriter::new(&boundary(), 100);
        // 12+47+len(name)+len(value) + 12+8 = 79 + name + value
        assert_eq!(form.push(b"n", b"12345678901234567890"), Ok(()));
        let mut form2 = FormWriter::new(&boundary(), 100);
        assert_eq!(form2.push(b"n", b"123456789012345678901"), Err(FormError::TooLarge(100)));
        assert_eq!(form.finish().len(), 100);
    }

    #[test]
    fn forging_input_is_refused() {
        let mut form = FormWriter::new(&boundary(), 1 << 20);
        for name in [&b"a\"b"[..], b"a\rb", b"a\nb", b"a\0b", b"x--XbOuNdArY123"] {
            assert_eq!(form.push(name, b"v"), Err(FormError::Unsafe("name")));
        }
        assert_eq!(form.push(b"n", b"abc--XbOuNdArY123\r\nforged"), Err(FormError::Unsafe("value")));
        assert_eq!(form.push(b"n", b"--XbOuNdArY12 near miss"), Ok(()));
    }
}
