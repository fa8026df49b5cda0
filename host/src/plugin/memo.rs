//! Remembered answers of plugins that declared their inputs (`hook-inputs`,
//! `cache-inputs` in `wit/`).
//!
//! A hook with declared inputs is given a head holding only those inputs,
//! so its answer is a function of them: the head it was given is the key
//! (serialised), the validated answer the value. The memo is per
//! attachment and bounded; when full it starts over, so a stream of
//! distinct requests (every path different, say) costs one call each, as
//! without a memo, and memory stays bounded.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Mutex, PoisonError};

use http::HeaderMap;
use http::header::HeaderName;

use super::RequestView;
use super::bindings::types::{Header, RequestHead, RequestInputs};

/// Answers remembered per attachment and hook.
const CAPACITY: usize = 4096;

/// One hook's remembered answers. foldhash rather than SipHash: a lookup
/// is on every request's path; its seed is random per process, so keys
/// chosen by clients (paths) cannot be aimed at one bucket.
pub(crate) struct Memo<V> {
    map: Mutex<HashMap<Box<[u8]>, V, foldhash::quality::RandomState>>,
}

impl<V: Clone> Memo<V> {
    pub(crate) fn new() -> Self {
        Self { map: Mutex::new(HashMap::default()) }
    }

    /// The answer remembered for `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Option<V> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).get(key).cloned()
    }

    /// Remembers `value` for `key`; a full memo is emptied first.
    pub(crate) fn put(&self, key: Vec<u8>, value: V) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(key.into_boxed_slice(), value);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// Declared request inputs in HTTP terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Inputs {
    pub(crate) method: bool,
    pub(crate) path: bool,
    pub(crate) query: bool,
    pub(crate) remote_addr: bool,
    pub(crate) remote_port: bool,
    pub(crate) scheme: bool,
    pub(crate) host: bool,
    /// Declared header names that are valid names; others match nothing.
    pub(crate) headers: Vec<HeaderName>,
}

impl From<RequestInputs> for Inputs {
    fn from(i: RequestInputs) -> Self {
        Self {
            method: i.method,
            path: i.path,
            query: i.query,
            remote_addr: i.remote_addr,
            remote_port: i.remote_port,
            scheme: i.scheme,
            host: i.host,
            headers: names(i.headers),
        }
    }
}

/// Valid header names among `names` (lower-cased), without repeats.
pub(crate) fn names(names: Vec<String>) -> Vec<HeaderName> {
    let mut out: Vec<HeaderName> = Vec::new();
    for name in names {
        if let Ok(n) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
            && !out.contains(&n)
        {
            out.push(n);
        }
    }
    out
}

impl Inputs {
    /// The head a hook with these inputs is given: the declared parts of
    /// `req`, every other field empty.
    pub(crate) fn head(&self, req: &RequestView<'_>) -> RequestHead {
        let text = |on: bool, s: &str| if on { s.to_owned() } else { String::new() };
        RequestHead {
            method: text(self.method, req.method.as_str()),
            path: text(self.path, req.uri.path()),
            query: if self.query { req.uri.query().map(str::to_owned) } else { None },
            headers: select(req.headers, &self.headers),
            remote_addr: if self.remote_addr { req.remote_addr.ip().to_canonical().to_string() } else { String::new() },
            remote_port: if self.remote_port { req.remote_addr.port() } else { 0 },
            scheme: text(self.scheme, req.scheme),
            host: text(self.host, req.host),
        }
    }
}

impl Inputs {
    /// The key of the head [`Self::head`] would build for `req`, written
    /// straight from `req` (no head is built when the answer is
    /// remembered): the same bytes as `Key::head(&self.head(req))`.
    pub(crate) fn key(&self, req: &RequestView<'_>) -> Key {
        fn text(on: bool, s: &str) -> &[u8] {
            if on { s.as_bytes() } else { &[] }
        }
        let mut key = Key::default();
        key.bytes(text(self.method, req.method.as_str()))
            .bytes(text(self.path, req.uri.path()))
            .option(if self.query { req.uri.query().map(str::as_bytes) } else { None });
        let count = self.headers.iter().map(|n| req.headers.get_all(n).iter().count()).sum::<usize>();
        key.number(count as u64);
        for name in &self.headers {
            for value in req.headers.get_all(name) {
                key.bytes(name.as_str().as_bytes()).bytes(value.as_bytes());
            }
        }
        if self.remote_addr {
            // An IPv6 address in text is at most 45 bytes.
            let mut buf = [0u8; 64];
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cursor, "{}", req.remote_addr.ip().to_canonical());
            let n = usize::try_from(cursor.position()).unwrap_or(0);
            key.bytes(&buf[..n]);
        } else {
            key.bytes(&[]);
        }
        key.number(if self.remote_port { u64::from(req.remote_addr.port()) } else { 0 })
            .bytes(text(self.scheme, req.scheme))
            .bytes(text(self.host, req.host));
        key
    }
}

/// The values of `names` in `map`, in the declared order, every value of
/// each.
pub(crate) fn select(map: &HeaderMap, names: &[HeaderName]) -> Vec<Header> {
    let mut out = Vec::new();
    for name in names {
        for value in map.get_all(name) {
            out.push(Header { name: name.as_str().to_owned(), value: value.as_bytes().to_vec() });
        }
    }
    out
}

/// Serialises what a hook is given into a memo key. Every field is length
/// prefixed, so that no two different inputs share a key.
pub(crate) struct Key(Vec<u8>);

impl Default for Key {
    fn default() -> Self {
        // Enough for a typical head's declared parts without growing.
        Self(Vec::with_capacity(192))
    }
}

impl Key {
    pub(crate) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(&(b.len() as u64).to_le_bytes());
        self.0.extend_from_slice(b);
        self
    }

    pub(crate) fn number(&mut self, n: u64) -> &mut Self {
        self.0.extend_from_slice(&n.to_le_bytes());
        self
    }

    pub(crate) fn option(&mut self, b: Option<&[u8]>) -> &mut Self {
        match b {
            None => self.number(0),
            Some(b) => self.number(1).bytes(b),
        }
    }

    pub(crate) fn headers(&mut self, list: &[Header]) -> &mut Self {
        self.number(list.len() as u64);
        for h in list {
            self.bytes(h.name.as_bytes()).bytes(&h.value);
        }
        self
    }

    pub(crate) fn head(&mut self, head: &RequestHead) -> &mut Self {
        self.bytes(head.method.as_bytes())
            .bytes(head.path.as_bytes())
            .option(head.query.as_deref().map(str::as_bytes))
            .headers(&head.headers)
            .bytes(head.remote_addr.as_bytes())
            .number(u64::from(head.remote_port))
            .bytes(head.scheme.as_bytes())
            .bytes(head.host.as_bytes())
    }

    pub(crate) fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderValue, Method, Uri};

    use super::*;

    #[test]
    fn a_head_holds_only_the_declared_inputs() {
        let uri: Uri = "/a/b?x=1".parse().expect("uri");
        let mut headers = HeaderMap::new();
        headers.append("x-one", HeaderValue::from_static("1"));
        headers.append("x-one", HeaderValue::from_static("2"));
        headers.append("x-two", HeaderValue::from_static("2"));
        let view = RequestView {
            method: &Method::POST,
            uri: &uri,
            headers: &headers,
            remote_addr: ([192, 0, 2, 7], 4000).into(),
            scheme: "https",
            host: "example.com",
        };
        let none = Inputs::default().head(&view);
        assert_eq!(
            none,
            RequestHead {
                method: String::new(),
                path: String::new(),
                query: None,
                headers: Vec::new(),
                remote_addr: String::new(),
                remote_port: 0,
                scheme: String::new(),
                host: String::new(),
            }
        );
        let some = Inputs {
            host: true,
            query: true,
            headers: names(vec!["X-One".into(), "x-one".into(), "bad name".into(), "x-absent".into()]),
            ..Inputs::default()
        };
        let head = some.head(&view);
        assert_eq!(head.host, "example.com");
        assert_eq!(head.query.as_deref(), Some("x=1"));
        assert_eq!(head.path, "");
        let got: Vec<_> = head.headers.iter().map(|h| (h.name.as_str(), h.value.as_slice())).collect();
        assert_eq!(got, [("x-one", &b"1"[..]), ("x-one", &b"2"[..])]);
        // The key written from the view is the key of the head.
        let all = Inputs {
            method: true,
            path: true,
            query: true,
            remote_addr: true,
            remote_port: true,
            scheme: true,
            host: true,
            headers: names(vec!["x-two".into(), "x-one".into()]),
        };
        let v6: std::net::SocketAddr = "[::ffff:192.0.2.9]:80".parse().expect("addr");
        for inputs in [Inputs::default(), some, all] {
            for view in [view, RequestView { remote_addr: v6, ..view }] {
                assert_eq!(inputs.key(&view).finish(), Key::default().head(&inputs.head(&view)).finish(), "{inputs:?}");
            }
        }
    }

    #[test]
    fn keys_tell_apart_what_concatenation_would_not() {
        let head = |path: &str, query: Option<&str>| RequestHead {
            method: String::new(),
            path: path.into(),
            query: query.map(str::to_owned),
            headers: Vec::new(),
            remote_addr: String::new(),
            remote_port: 0,
            scheme: String::new(),
            host: String::new(),
        };
        let key = |h: &RequestHead| Key::default().head(h).finish();
        assert_ne!(key(&head("/ab", None)), key(&head("/a", Some("b"))));
        assert_ne!(key(&head("/a", None)), key(&head("/a", Some(""))));
        assert_eq!(key(&head("/a", Some("b"))), key(&head("/a", Some("b"))));
    }

    #[test]
    fn a_full_memo_starts_over() {
        let memo = Memo::new();
        for i in 0..CAPACITY as u64 {
            memo.put(i.to_le_bytes().to_vec(), i);
        }
        assert_eq!(memo.len(), CAPACITY);
        assert_eq!(memo.get(&5u64.to_le_bytes()), Some(5));
        memo.put(b"new".to_vec(), 1);
        assert_eq!(memo.len(), 1);
        assert_eq!(memo.get(b"new"), Some(1));
        assert_eq!(memo.get(&5u64.to_le_bytes()), None);
    }
}
