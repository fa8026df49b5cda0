//! Header edits a plugin asks for, in HTTP terms, and how they apply.

use std::sync::Arc;

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

/// Headers gale frames itself; plugins may not edit them (an edit would
/// let a plugin desynchronise a message's framing).
pub(crate) const FRAMING_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// One validated header edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    /// Replace every value of the header with this one.
    Set(HeaderName, HeaderValue),
    /// Add a value, keeping existing ones.
    Append(HeaderName, HeaderValue),
    /// Remove every value.
    Remove(HeaderName),
}

/// The edits a hook returned, in order. Returned rather than applied so that
/// the caller can apply them to the header map it owns (the request view
/// borrows the original headers while the hook runs). Shared, not copied,
/// when cloned: a remembered answer is handed out for many requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits(Arc<[HeaderEdit]>);

impl From<Vec<HeaderEdit>> for HeaderEdits {
    fn from(edits: Vec<HeaderEdit>) -> Self {
        Self(edits.into())
    }
}

impl HeaderEdits {
    /// Applies the edits to `headers`, in order.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for edit in self.0.iter() {
            match edit {
                HeaderEdit::Set(name, value) => {
                    headers.insert(name.clone(), value.clone());
                }
                HeaderEdit::Append(name, value) => {
                    headers.append(name.clone(), value.clone());
                }
                HeaderEdit::Remove(name) => {
                    headers.remove(name);
                }
            }
        }
    }

    /// True when the hook asked for nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The edits, in order.
    pub fn iter(&self) -> impl Iterator<Item = &HeaderEdit> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &'static str) -> HeaderName {
        HeaderName::from_static(s)
    }

    fn value(s: &'static str) -> HeaderValue {
        HeaderValue::from_static(s)
    }

    #[test]
    fn edits_apply_in_order() {
        let mut headers = HeaderMap::new();
        headers.append("x-a", value("1"));
        headers.append("x-a", value("2"));
        headers.append("x-b", value("b"));
        let edits = HeaderEdits::from(vec![
            HeaderEdit::Set(name("x-a"), value("3")),
            HeaderEdit::Append(name("x-c"), value("c1")),
            HeaderEdit::Append(name("x-c"), value("c2")),
            HeaderEdit::Remove(name("x-b")),
            HeaderEdit::Remove(name("x-missing")),
        ]);
        edits.apply(&mut headers);
        assert_eq!(headers.get_all("x-a").iter().collect::<Vec<_>>(), vec!["3"]);
        assert_eq!(headers.get_all("x-c").iter().collect::<Vec<_>>(), vec!["c1", "c2"]);
        assert!(!headers.contains_key("x-b"));
        assert_eq!(headers.len(), 3);
    }
}
