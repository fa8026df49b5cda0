//! Where each key of an attachment's `config` table is written, so that a
//! config a plugin rejects is reported at the key it is about rather than
//! at a position in the JSON text gale handed over (which nobody wrote).
//!
//! A plugin names the key in one of two ways: serde_json's own errors end
//! in `at line L column C` of that JSON text, which is turned back into a
//! key path here; other messages may start with the path (`deny[0].status:
//! ...`, `pass_fields[1]: ...`). A key that is not in the attachment (a
//! default from `<name>.toml`) is reported at its nearest written parent,
//! and a message that names no key at the `config` table.

use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

/// An attachment's `config` table as written, with the span of every value
/// in it, keyed by path (`deny[0].status`).
#[derive(Debug, Default)]
pub struct SpannedConfig {
    pub table: toml::Table,
    pub keys: Vec<(String, Range<usize>)>,
}

/// One value and the spans of the values inside it (paths relative to it).
struct Node {
    value: toml::Value,
    keys: Vec<(String, Range<usize>)>,
}

/// The key toml uses to pass a datetime through serde.
const DATETIME_KEY: &str = "$__toml_private_datetime";

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

fn leaf(value: toml::Value) -> Node {
    Node { value, keys: Vec::new() }
}

/// Adds `child`'s spans under `at` (`key` or `[i]`) to `keys`.
fn adopt(keys: &mut Vec<(String, Range<usize>)>, at: &str, span: Range<usize>, child: Vec<(String, Range<usize>)>) {
    keys.push((at.to_owned(), span));
    for (path, span) in child {
        let sep = if path.starts_with('[') { "" } else { "." };
        keys.push((format!("{at}{sep}{path}"), span));
    }
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(leaf(toml::Value::Boolean(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(leaf(toml::Value::Integer(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        i64::try_from(v).map(|v| leaf(toml::Value::Integer(v))).map_err(|_| E::custom("integer out of range"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(leaf(toml::Value::Float(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(leaf(toml::Value::String(v.to_owned())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let (mut items, mut keys) = (Vec::new(), Vec::new());
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            let span = item.span();
            let item = item.into_inner();
            adopt(&mut keys, &format!("[{}]", items.len()), span, item.keys);
            items.push(item.value);
        }
        Ok(Node { value: toml::Value::Array(items), keys })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let (mut table, mut keys) = (toml::Table::new(), Vec::new());
        // Keys are read as plain strings: toml hands a datetime over as a
        // map whose key cannot be spanned. The key's place is found from
        // its value's ([`key_start`]).
        while let Some(key) = map.next_key::<String>()? {
            if key == DATETIME_KEY {
                let text: String = map.next_value()?;
                let datetime = text.parse().map_err(de::Error::custom)?;
                return Ok(leaf(toml::Value::Datetime(datetime)));
            }
            let value = map.next_value::<Spanned<Node>>()?;
            let span = value.span();
            let value = value.into_inner();
            adopt(&mut keys, &key, span, value.keys);
            table.insert(key, value.value);
        }
        Ok(Node { value: toml::Value::Table(table), keys })
    }
}

impl<'de> Deserialize<'de> for SpannedConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let node = Node::deserialize(d)?;
        match node.value {
            toml::Value::Table(table) => Ok(Self { table, keys: node.keys }),
            _ => Err(de::Error::custom("`config` must be a table")),
        }
    }
}

/// Where the key of the value at `value_start` begins in `text` (`key =
/// value`, the key bare or quoted): errors point at the key, where a reader
/// looks for a setting. `value_start` itself when no key precedes it (an
/// array item).
pub(crate) fn key_start(text: &str, value_start: usize) -> usize {
    let Some(before) = text.get(..value_start) else { return value_start };
    let Some(key) = before.trim_end().strip_suffix('=') else { return value_start };
    let key = key.trim_end();
    let start = match key.chars().last() {
        Some(q @ ('"' | '\'')) => key[..key.len() - 1].rfind(q),
        Some(_) => key.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).map(|i| i + 1).or(Some(0)),
        None => None,
    };
    start.unwrap_or(value_start)
}

/// A plugin's rejection, made readable: the key it is about (when it says)
/// and its message without JSON positions.
#[derive(Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The key path as in the config file (`deny[0].status`), when known.
    pub path: Option<String>,
    /// The plugin's message, without ` at line L column C`.
    pub message: String,
}

/// Reads the plugin's `message` about the config `json` it was given.
pub fn rejection(json: &str, message: &str) -> Rejection {
    if let Some((clean, line, column)) = json_position(message) {
        let path = if line == 1 { path_at(json, column.saturating_sub(1)) } else { None };
        return Rejection { path: path.filter(|p| !p.is_empty()), message: clean.to_owned() };
    }
    // `deny[0].status: must be ...`, as plugins that check by hand write.
    match message.split_once(": ").filter(|(p, _)| {
        !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '[' | ']'))
    }) {
        Some((path, rest)) => Rejection { path: Some(path.to_owned()), message: rest.to_owned() },
        None => Rejection { path: None, message: message.to_owned() },
    }
}

/// Splits serde_json's ` at line L column C` off the end of `message`.
fn json_position(message: &str) -> Option<(&str, usize, usize)> {
    let (head, tail) = message.rsplit_once(" at line ")?;
    let (line, column) = tail.trim_end().split_once(" column ")?;
    Some((head, line.parse().ok()?, column.parse().ok()?))
}

/// The key path of the value at byte `offset` of the one-line JSON text.
fn path_at(json: &str, offset: usize) -> Option<String> {
    enum Frame {
        Object(Option<String>),
        Array(usize),
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut expect_key = false;
    let bytes = json.as_bytes();
    let mut i = 0;
    while i < bytes.len() && i < offset {
        match bytes[i] {
            b'{' => {
                stack.push(Frame::Object(None));
                expect_key = true;
            }
            b'[' => stack.push(Frame::Array(0)),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Array(n)) => *n += 1,
                Some(Frame::Object(_)) => expect_key = true,
                None => {}
            },
            b':' => expect_key = false,
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if expect_key && let Some(Frame::Object(key)) = stack.last_mut() {
                    let raw = json.get(start..i.min(json.len()))?;
                    *key = Some(serde_json::from_str(&format!("\"{raw}\"")).ok()?);
                }
            }
            _ => {}
        }
        i += 1;
    }
    let mut path = String::new();
    for frame in &stack {
        match frame {
            Frame::Object(Some(key)) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Object(None) => {}
            Frame::Array(n) => path.push_str(&format!("[{n}]")),
        }
    }
    Some(path)
}

/// The span of `path` in `keys`, or of its nearest parent there.
#[cfg(test)]
fn span_of<'a>(keys: &'a [(String, Range<usize>)], path: &str) -> Option<(&'a str, Range<usize>)> {
    let mut path = path;
    loop {
        if let Some((p, span)) = keys.iter().find(|(p, _)| p == path) {
            return Some((p.as_str(), span.clone()));
        }
        let cut = path.rfind(['.', '['])?;
        path = &path[..cut];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_positions_become_key_paths() {
        let json = r#"{"deny":[{"path_prefix":"/a","status":"x"}],"request":{"set":{"x-a":1}}}"#;
        let at = |needle: &str| json.find(needle).expect("in json") + needle.len() - 1;
        assert_eq!(path_at(json, at(r#""x""#)).as_deref(), Some("deny[0].status"));
        assert_eq!(path_at(json, at(":1")).as_deref(), Some("request.set.x-a"));
        assert_eq!(path_at(json, 0).as_deref(), Some(""));
        // serde_json counts columns from 1, at the last character read.
        let message = format!("invalid type: integer `1`, expected a string at line 1 column {}", at(":1") + 1);
        let r = rejection(json, &message);
        assert_eq!(r.message, "invalid type: integer `1`, expected a string");
        assert_eq!(r.path.as_deref(), Some("request.set.x-a"));
        let r = rejection(json, "pass_fields[0]: bad regex");
        assert_eq!((r.path.as_deref(), r.message.as_str()), (Some("pass_fields[0]"), "bad regex"));
        let r = rejection(json, "something is off");
        assert_eq!((r.path, r.message.as_str()), (None, "something is off"));
    }

    #[test]
    fn a_rejection_is_placed_at_the_nearest_written_key() {
        let a = crate::config::Attachment {
            name: "p".into(),
            config: toml::Table::new(),
            on_error: crate::config::OnError::default(),
            line: 3,
            col: 5,
            config_at: (3, 20),
            config_keys: vec![("request".into(), 3, 22), ("request.set".into(), 3, 34)],
        };
        let json = r#"{"request":{"set":{"x":1},"remove":2}}"#;
        // `request.remove` comes from the defaults file: its parent is written.
        let col = json.find(":2").expect("in json") + 2;
        let message = format!("invalid type: integer `2`, expected a sequence at line 1 column {col}");
        assert_eq!(
            a.rejection(json, &message),
            (3, 22, "`request.remove`: invalid type: integer `2`, expected a sequence".into())
        );
        assert_eq!(a.rejection(json, "request.set.x: bad"), (3, 34, "`request.set.x`: bad".into()));
        assert_eq!(a.rejection(json, "no key named"), (3, 20, "no key named".into()));
    }

    #[test]
    fn spans_are_kept_at_any_depth() {
        #[derive(serde::Deserialize)]
        struct Doc {
            config: SpannedConfig,
        }
        let text = "config = { deny = [{ status = \"x\" }], when = 1979-05-27, n = { m = 1 } }\n";
        let doc: Doc = toml::from_str(text).expect("valid");
        let span = |p: &str| span_of(&doc.config.keys, p).map(|(_, s)| &text[s]);
        assert_eq!(span("deny[0].status"), Some("\"x\""));
        assert_eq!(span("deny[0]"), Some("{ status = \"x\" }"));
        assert_eq!(span("n.m"), Some("1"));
        assert_eq!(span("n.m.deeper"), Some("1"), "nearest parent");
        assert_eq!(span("absent"), None);
        let key = |p: &str| span_of(&doc.config.keys, p).map(|(_, s)| &text[key_start(text, s.start)..s.end]);
        assert_eq!(key("deny[0].status"), Some("status = \"x\""));
        assert_eq!(key("deny[0]"), Some("{ status = \"x\" }"), "an item has no key");
        assert_eq!(key("when"), Some("when = 1979-05-27"));
        let quoted = "x = { \"a b\" = 1 }";
        assert_eq!(key_start(quoted, quoted.find('1').expect("value")), 6);
        assert!(matches!(doc.config.table.get("when"), Some(toml::Value::Datetime(_))));
    }
}
