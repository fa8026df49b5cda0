//! Text with placeholders for a supervised child: `{port}`, `{index}` and
//! `{name}` (the upstream's name). Parsed once at validation, so an unknown
//! placeholder is a config error with a position, never a surprise at spawn
//! time.

use std::fmt;

/// A piece of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Port,
    Index,
    Name,
}

/// A parsed template; `{{` and `}}` stand for literal braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// The values one child substitutes into its templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildVars<'a> {
    /// The port the child must listen on: `base_port + index`.
    pub port: u16,
    /// The child's position in its upstream, from 0.
    pub index: usize,
    /// The upstream's name.
    pub name: &'a str,
}

impl Template {
    /// Parses `text`; the error says which placeholder is wrong and which
    /// ones exist.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((_, ch)) = chars.next() {
            match ch {
                '{' if chars.peek().is_some_and(|(_, c)| *c == '{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().is_some_and(|(_, c)| *c == '}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for (_, c) in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    if !closed {
                        return Err(format!(
                            "unclosed `{{` in `{text}`: write `{{port}}`, `{{index}}` or `{{name}}`, or `{{{{` for a literal brace"
                        ));
                    }
                    let piece = match name.as_str() {
                        "port" => Piece::Port,
                        "index" => Piece::Index,
                        "name" => Piece::Name,
                        other => {
                            return Err(format!(
                                "unknown placeholder `{{{other}}}` in `{text}`: use `{{port}}`, `{{index}}` or `{{name}}`"
                            ));
                        }
                    };
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(piece);
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Self { pieces })
    }

    /// The text with the child's values substituted.
    pub fn render(&self, vars: ChildVars<'_>) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Port => out.push_str(&vars.port.to_string()),
                Piece::Index => out.push_str(&vars.index.to_string()),
                Piece::Name => out.push_str(vars.name),
            }
        }
        out
    }

    /// Whether the rendered text differs between children of one upstream.
    pub fn varies_per_child(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Port | Piece::Index))
    }
}

impl fmt::Display for Template {
    /// The template as it would be written in the config.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.pieces {
            match p {
                Piece::Text(t) => write!(f, "{}", t.replace('{', "{{").replace('}', "}}"))?,
                Piece::Port => f.write_str("{port}")?,
                Piece::Index => f.write_str("{index}")?,
                Piece::Name => f.write_str("{name}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VARS: ChildVars<'static> = ChildVars { port: 8002, index: 2, name: "app" };

    #[test]
    fn substitutes_every_placeholder() {
        let t = Template::parse("--port={port}").expect("valid");
        assert_eq!(t.render(VARS), "--port=8002");
        let t = Template::parse("logs/{name}-{index}.log").expect("valid");
        assert_eq!(t.render(VARS), "logs/app-2.log");
        let t = Template::parse("{port}{port}").expect("valid");
        assert_eq!(t.render(VARS), "80028002");
        let t = Template::parse("plain").expect("valid");
        assert_eq!(t.render(VARS), "plain");
        assert!(!t.varies_per_child());
        assert!(Template::parse("x{index}").expect("valid").varies_per_child());
    }

    #[test]
    fn doubled_braces_are_literal() {
        let t = Template::parse("{{\"port\": {port}}}").expect("valid");
        assert_eq!(t.render(VARS), "{\"port\": 8002}");
        assert_eq!(t.to_string(), "{{\"port\": {port}}}");
        // A lone closing brace is just text.
        assert_eq!(Template::parse("a}b").expect("valid").render(VARS), "a}b");
    }

    #[test]
    fn unknown_or_unclosed_placeholders_are_errors() {
        let e = Template::parse("--port={prot}").unwrap_err();
        assert!(e.contains("unknown placeholder `{prot}`"), "{e}");
        assert!(e.contains("`{port}`"), "{e}");
        let e = Template::parse("--port={port").unwrap_err();
        assert!(e.starts_with("unclosed `{`"), "{e}");
        assert!(Template::parse("{}").is_err());
    }
}
