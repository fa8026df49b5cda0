//! The common work on the WIT types: reading headers whatever their case,
//! building header edits and local answers.

use crate::types::{Header, HeaderOp, LocalResponse, RequestHead, RequestInputs, ResponseHead};

/// The values of the header `name` (any case) in `headers`, in order.
fn values<'a>(headers: &'a [Header], name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_slice())
}

/// The first value of `name` (any case).
fn first<'a>(headers: &'a [Header], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_slice())
}

/// Joins repeated values with `, ` (RFC 9110's list form); `None` when absent.
fn joined(headers: &[Header], name: &str) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for value in values(headers, name) {
        match &mut out {
            None => out = Some(value.to_vec()),
            Some(out) => {
                out.extend_from_slice(b", ");
                out.extend_from_slice(value);
            }
        }
    }
    out
}

impl Header {
    /// A header; the name is lower-cased (gale's form).
    pub fn new(name: &str, value: impl AsRef<[u8]>) -> Self {
        Header { name: name.to_ascii_lowercase(), value: value.as_ref().to_vec() }
    }
}

impl RequestHead {
    /// The first value of the header `name`, compared without case.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        first(&self.headers, name)
    }

    /// The first value of the header `name` as text; `None` when absent or not UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of the header `name`, in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        values(&self.headers, name)
    }

    /// Every value of `name` joined with `, `, as nginx's `$http_<name>`.
    pub fn header_joined(&self, name: &str) -> Option<Vec<u8>> {
        joined(&self.headers, name)
    }
}

impl ResponseHead {
    /// The first value of the header `name`, compared without case.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        first(&self.headers, name)
    }

    /// The first value of the header `name` as text; `None` when absent or not UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }
}

impl HeaderOp {
    /// Replace every value of `name` with `value` (add it when absent).
    pub fn set(name: &str, value: impl AsRef<[u8]>) -> Self {
        HeaderOp::Set(Header::new(name, value))
    }

    /// Add one more value of `name`.
    pub fn append(name: &str, value: impl AsRef<[u8]>) -> Self {
        HeaderOp::Append(Header::new(name, value))
    }

    /// Remove every value of `name`.
    pub fn remove(name: &str) -> Self {
        HeaderOp::Remove(name.to_ascii_lowercase())
    }
}

impl LocalResponse {
    /// An answer with `status` and `body` and no header (gale adds
    /// `content-length`).
    pub fn new(status: u16, body: impl AsRef<[u8]>) -> Self {
        LocalResponse { status, headers: Vec::new(), body: body.as_ref().to_vec() }
    }

    /// A `text/plain; charset=utf-8` answer.
    pub fn text(status: u16, body: &str) -> Self {
        Self::new(status, body).with_header("content-type", "text/plain; charset=utf-8")
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }

    /// The first value of the header `name`, compared without case.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        first(&self.headers, name)
    }
}

impl RequestInputs {
    /// Reads nothing of the request: the answer depends on the configuration only.
    pub fn none() -> Self {
        RequestInputs {
            method: false,
            path: false,
            query: false,
            remote_addr: false,
            remote_port: false,
            scheme: false,
            host: false,
            headers: Vec::new(),
        }
    }

    /// Adds the header `name` to those read (lower-cased, once).
    pub fn with_header(mut self, name: &str) -> Self {
        self.add_header(name);
        self
    }

    /// Adds the header `name` to those read (lower-cased, once).
    pub fn add_header(&mut self, name: &str) {
        let name = name.to_ascii_lowercase();
        if !self.headers.contains(&name) {
            self.headers.push(name);
        }
    }

    /// What a hook that declared these inputs is given of `request`: the
    /// declared parts, every other field empty, as gale does.
    pub fn mask(&self, request: &RequestHead) -> RequestHead {
        let keep = |on: bool, s: &String| if on { s.clone() } else { String::new() };
        RequestHead {
            method: keep(self.method, &request.method),
            path: keep(self.path, &request.path),
            query: if self.query { request.query.clone() } else { None },
            headers: request.headers.iter().filter(|h| self.headers.contains(&h.name)).cloned().collect(),
            remote_addr: keep(self.remote_addr, &request.remote_addr),
            remote_port: if self.remote_port { request.remote_port } else { 0 },
            scheme: keep(self.scheme, &request.scheme),
            host: keep(self.host, &request.host),
        }
    }
}

impl Default for RequestInputs {
    fn default() -> Self {
        Self::none()
    }
}
