//! The gale config being written, and its TOML text: each table preceded by
//! a comment naming the nginx block it comes from, each key by the
//! directives it replaces.

use std::fmt::Write as _;

use super::parse::Directive;

/// A TOML string literal, on one line: a JSON string is a TOML basic string
/// (control characters as `\n`, `\t` or `\uXXXX`).
pub fn lit(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// A TOML array of string literals.
pub fn lit_list<S: AsRef<str>>(items: &[S]) -> String {
    let parts: Vec<String> = items.iter().map(|s| lit(s.as_ref())).collect();
    format!("[{}]", parts.join(", "))
}

/// A bare TOML key, or a quoted one when it needs quotes.
pub fn key(k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        k.to_owned()
    } else {
        lit(k)
    }
}

/// An inline table from (key, value literal) pairs.
pub fn inline(pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return "{}".to_owned();
    }
    let parts: Vec<String> = pairs.iter().map(|(k, v)| format!("{} = {v}", key(k))).collect();
    format!("{{ {} }}", parts.join(", "))
}

/// One key of a table and the directives it replaces.
#[derive(Debug)]
pub struct Entry {
    pub key: String,
    /// A TOML value, already rendered.
    pub value: String,
    /// `listen 80 (nginx.conf:40)`, one per directive.
    pub from: Vec<String>,
}

/// A table: its keys, and the nginx block it comes from.
#[derive(Debug, Default)]
pub struct Table {
    pub source: Option<String>,
    pub entries: Vec<Entry>,
}

impl Table {
    pub fn from_block(d: &Directive) -> Self {
        Table { source: Some(format!("`{} {{ ... }}` at {}", d.text(), d.source())), entries: Vec::new() }
    }

    /// Sets `key` (replacing an earlier value, whose sources are kept).
    pub fn set(&mut self, key: &str, value: String, from: &[&Directive]) {
        let mut sources: Vec<String> = Vec::new();
        for d in from {
            let s = format!("`{}` ({})", d.text(), d.source());
            if !sources.contains(&s) {
                sources.push(s);
            }
        }
        if let Some(e) = self.entries.iter_mut().find(|e| e.key == key) {
            e.value = value;
            sources.retain(|s| !e.from.contains(s));
            e.from.append(&mut sources);
        } else {
            self.entries.push(Entry { key: key.to_owned(), value, from: sources });
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().find(|e| e.key == key).map(|e| e.value.as_str())
    }

    fn write(&self, out: &mut String, header: &str) {
        if let Some(source) = &self.source {
            let _ = writeln!(out, "# nginx: {source}");
        }
        let _ = writeln!(out, "{header}");
        for e in &self.entries {
            for f in &e.from {
                let _ = writeln!(out, "# {f}");
            }
            let _ = writeln!(out, "{} = {}", key(&e.key), e.value);
        }
        out.push('\n');
    }
}

/// A `[[server]]` and its locations.
#[derive(Debug, Default)]
pub struct Server {
    pub table: Table,
    pub locations: Vec<Table>,
}

/// The whole gale config.
#[derive(Debug, Default)]
pub struct Model {
    pub global: Table,
    pub http: Table,
    pub upstreams: Vec<(String, Table)>,
    pub servers: Vec<Server>,
}

impl Model {
    pub fn upstream_mut(&mut self, name: &str) -> Option<&mut Table> {
        self.upstreams.iter_mut().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// The TOML text, with `header` (comment lines) first.
    pub fn to_toml(&self, header: &str) -> String {
        let mut out = String::new();
        for line in header.lines() {
            let _ = writeln!(out, "# {line}");
        }
        out.push('\n');
        if !self.global.entries.is_empty() {
            self.global.write(&mut out, "[global]");
        }
        if !self.http.entries.is_empty() {
            self.http.write(&mut out, "[http]");
        }
        for (name, table) in &self.upstreams {
            table.write(&mut out, &format!("[upstream.{}]", key(name)));
        }
        for server in &self.servers {
            server.table.write(&mut out, "[[server]]");
            for location in &server.locations {
                location.write(&mut out, "[[server.location]]");
            }
        }
        out
    }
}
