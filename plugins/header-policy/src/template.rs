//! Header value templates: literal text with nginx-style variables.
//!
//! Parsed once at configure time so that a typo in a variable name is a
//! config error, not a surprise at request time.

use gale_plugin::{RequestHead, RequestInputs};

/// A variable a template can refer to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Var {
    /// `$remote_addr`: the client's IP address.
    RemoteAddr,
    /// `$remote_port`: the client's TCP port.
    RemotePort,
    /// `$scheme`: `http` or `https`.
    Scheme,
    /// `$host`: the request's host, without port.
    Host,
    /// `$request_uri`: path and query (the path in gale's normal form, as the
    /// request head carries it).
    RequestUri,
    /// `$uri`: the path without the query.
    Uri,
    /// `$args` / `$query_string`: the query without `?`.
    Args,
    /// `$request_method`: the method.
    Method,
    /// `$http_<name>`: a request header, `_` standing for `-` (lower-case).
    Header(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Var(Var),
}

/// A parsed header value template such as `"$scheme://$host"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`. `$name` and `${name}` are variables; `$$` is a literal
    /// `$`. Unknown variables and control characters are errors.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(c) = text.chars().find(|c| c.is_control() && *c != '\t') {
            return Err(format!("value {text:?} contains the control character {c:?}"));
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(pos) = rest.find('$') {
            literal.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            let (name, consumed) = if let Some(stripped) = after.strip_prefix('$') {
                literal.push('$');
                rest = stripped;
                continue;
            } else if let Some(braced) = after.strip_prefix('{') {
                let end = braced.find('}').ok_or_else(|| format!("value {text:?} has an unclosed `${{`"))?;
                (&braced[..end], end + 2)
            } else {
                let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
                (&after[..end], end)
            };
            if name.is_empty() {
                return Err(format!("value {text:?} has a `$` without a variable name (write `$$` for a literal `$`)"));
            }
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Var(parse_var(name)?));
            rest = &after[consumed..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self { parts })
    }

    /// Whether the value depends on request headers (`$http_<name>`).
    pub fn reads_headers(&self) -> bool {
        self.parts.iter().any(|part| matches!(part, Part::Var(Var::Header(_))))
    }

    /// Adds the parts of the request this template reads to `inputs`.
    pub fn add_inputs(&self, inputs: &mut RequestInputs) {
        for part in &self.parts {
            let Part::Var(var) = part else { continue };
            match var {
                Var::RemoteAddr => inputs.remote_addr = true,
                Var::RemotePort => inputs.remote_port = true,
                Var::Scheme => inputs.scheme = true,
                Var::Host => inputs.host = true,
                Var::RequestUri => {
                    inputs.path = true;
                    inputs.query = true;
                }
                Var::Uri => inputs.path = true,
                Var::Args => inputs.query = true,
                Var::Method => inputs.method = true,
                Var::Header(name) => inputs.add_header(name),
            }
        }
    }

    /// The value for this request, as bytes (header values may be non-UTF-8).
    pub fn expand(&self, head: &RequestHead) -> Vec<u8> {
        let mut out = Vec::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.extend_from_slice(text.as_bytes()),
                Part::Var(var) => expand_var(var, head, &mut out),
            }
        }
        out
    }
}

fn parse_var(name: &str) -> Result<Var, String> {
    // Like nginx, variable names are case-insensitive.
    let lower = name.to_ascii_lowercase();
    Ok(match lower.as_str() {
        "remote_addr" => Var::RemoteAddr,
        "remote_port" => Var::RemotePort,
        "scheme" => Var::Scheme,
        "host" => Var::Host,
        "request_uri" => Var::RequestUri,
        "uri" => Var::Uri,
        "args" | "query_string" => Var::Args,
        "request_method" => Var::Method,
        _ => match lower.strip_prefix("http_") {
            Some(header) if !header.is_empty() => Var::Header(header.replace('_', "-")),
            _ => {
                return Err(format!(
                    "unknown variable `${name}` (known: $remote_addr, $remote_port, $scheme, $host, \
                     $request_uri, $uri, $args, $query_string, $request_method, $http_<header>)"
                ));
            }
        },
    })
}

fn expand_var(var: &Var, head: &RequestHead, out: &mut Vec<u8>) {
    match var {
        Var::RemoteAddr => out.extend_from_slice(head.remote_addr.as_bytes()),
        Var::RemotePort => out.extend_from_slice(head.remote_port.to_string().as_bytes()),
        Var::Scheme => out.extend_from_slice(head.scheme.as_bytes()),
        Var::Host => out.extend_from_slice(head.host.as_bytes()),
        Var::RequestUri => {
            out.extend_from_slice(head.path.as_bytes());
            if let Some(query) = &head.query {
                out.push(b'?');
                out.extend_from_slice(query.as_bytes());
            }
        }
        Var::Uri => out.extend_from_slice(head.path.as_bytes()),
        Var::Args => out.extend_from_slice(head.query.as_deref().unwrap_or("").as_bytes()),
        Var::Method => out.extend_from_slice(head.method.as_bytes()),
        Var::Header(name) => {
            // Like nginx (>= 1.23): repeated headers are joined with ", ".
            let mut first = true;
            for header in head.headers.iter().filter(|h| h.name == *name) {
                if !first {
                    out.extend_from_slice(b", ");
                }
                out.extend_from_slice(&header.value);
                first = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gale_plugin::testing::request;

    fn head() -> RequestHead {
        request("GET /a%20b?x=1")
            .with_header("x-forwarded-for", "10.0.0.1")
            .with_header("x-forwarded-for", "10.0.0.2")
            .with_header("user-agent", "curl")
            .with_remote_addr("192.0.2.7")
            .with_remote_port(51234)
            .with_scheme("https")
            .with_host("www.example.org")
    }

    fn expand(text: &str) -> String {
        let bytes = Template::parse(text).expect("parses").expand(&head());
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn literal_text_is_kept() {
        assert_eq!(expand("nosniff"), "nosniff");
        assert_eq!(expand(""), "");
    }

    #[test]
    fn variables_expand() {
        assert_eq!(expand("$remote_addr"), "192.0.2.7");
        assert_eq!(expand("$scheme://$host$request_uri"), "https://www.example.org/a%20b?x=1");
        assert_eq!(expand("${host}x"), "www.example.orgx");
        assert_eq!(expand("$uri|$args|$request_method|$remote_port"), "/a%20b|x=1|GET|51234");
        assert_eq!(expand("$$5"), "$5");
    }

    #[test]
    fn header_variables_join_repeats_and_default_to_empty() {
        assert_eq!(expand("$http_x_forwarded_for"), "10.0.0.1, 10.0.0.2");
        assert_eq!(expand("$HTTP_USER_AGENT"), "curl");
        assert_eq!(expand("[$http_missing]"), "[]");
    }

    #[test]
    fn request_uri_without_query_has_no_question_mark() {
        let mut h = head();
        h.query = None;
        let t = Template::parse("$request_uri").expect("parses");
        assert_eq!(t.expand(&h), b"/a%20b");
    }

    #[test]
    fn bad_templates_are_rejected_with_a_reason() {
        assert!(Template::parse("$nope").expect_err("invalid").contains("unknown variable `$nope`"));
        assert!(Template::parse("a $ b").expect_err("invalid").contains("$$"));
        assert!(Template::parse("${host").expect_err("invalid").contains("unclosed"));
        assert!(Template::parse("a\r\nb").expect_err("invalid").contains("control"));
        assert!(Template::parse("$http_").is_err());
    }
}
