//! nginx's configuration syntax, one statement at a time: the words of a
//! directive and what ended it (`;`, `{`, `}` or the end of the file).
//!
//! The rules are nginx's own (its `ngx_conf_read_token`): words are split
//! on spaces, tabs and line breaks; `"..."` and `'...'` quote a word that
//! starts with the quote; a backslash escapes the next character anywhere
//! (`\"`, `\'`, `\\` give the character, `\t`, `\r`, `\n` the control
//! character, any other pair is kept as written); `#` starts a comment only
//! where a word could start (`a#b` is one word); `${` inside a word does
//! not open a block, so `${var}` is one word; a quoted word must be followed
//! by a space, `;`, `{` or `)`. Every error carries the line and column
//! (1-based, in characters) where it was found.

/// Where something is in a file: 1-based line and column (in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At {
    pub line: usize,
    pub col: usize,
}

/// One word of a directive, escapes resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub at: At,
}

/// What ended a statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// `;`: a simple directive.
    Semicolon,
    /// `{`: a block directive; its contents follow.
    Open,
    /// `}`: the end of the enclosing block (no words before it).
    Close,
    /// The end of the file (no words before it).
    Eof,
}

/// The words of one directive and what ended it; `at` is where the end is.
#[derive(Debug)]
pub struct Statement {
    pub words: Vec<Word>,
    pub end: End,
    pub at: At,
}

/// A syntax error at a position.
#[derive(Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub at: At,
    pub message: String,
}

/// nginx reads a word into a 4 KiB buffer and refuses longer ones.
const MAX_WORD: usize = 4096;

/// No directive has anywhere near this many parameters: past it the input
/// is not a configuration (a missing `;` in garbage), and stopping keeps
/// memory bounded.
const MAX_WORDS: usize = 1024;

/// Splits one file's text into statements.
pub struct Lexer<'a> {
    text: &'a [u8],
    pos: usize,
    line: usize,
    col: usize,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

impl<'a> Lexer<'a> {
    pub fn new(text: &'a str) -> Self {
        Lexer { text: text.as_bytes(), pos: 0, line: 1, col: 1 }
    }

    fn here(&self) -> At {
        At { line: self.line, col: self.col }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    /// Consumes one byte, keeping line and column (UTF-8 continuation
    /// bytes do not start a column).
    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        if b == b'\n' {
            self.line += 1;
            self.col = 1;
        } else if b & 0xC0 != 0x80 {
            self.col += 1;
        }
        Some(b)
    }

    fn error<T>(at: At, message: impl Into<String>) -> Result<T, SyntaxError> {
        Err(SyntaxError { at, message: message.into() })
    }

    /// The next statement.
    pub fn next_statement(&mut self) -> Result<Statement, SyntaxError> {
        let mut words: Vec<Word> = Vec::new();
        loop {
            let at = self.here();
            let Some(b) = self.peek() else {
                if let Some(first) = words.first() {
                    return Self::error(
                        at,
                        format!(
                            "unexpected end of file, expecting \";\" or \"}}\" after `{}` (line {})",
                            first.text, first.at.line
                        ),
                    );
                }
                return Ok(Statement { words, end: End::Eof, at });
            };
            match b {
                _ if is_space(b) => {
                    self.bump();
                }
                b'#' => {
                    while let Some(c) = self.peek() {
                        if c == b'\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                b';' | b'{' => {
                    self.bump();
                    if words.is_empty() {
                        return Self::error(at, format!("unexpected \"{}\"", b as char));
                    }
                    let end = if b == b';' { End::Semicolon } else { End::Open };
                    return Ok(Statement { words, end, at });
                }
                b'}' => {
                    self.bump();
                    if let Some(first) = words.first() {
                        return Self::error(
                            at,
                            format!("unexpected \"}}\": the directive `{}` before it is missing its \";\"", first.text),
                        );
                    }
                    return Ok(Statement { words, end: End::Close, at });
                }
                b'"' | b'\'' => {
                    let word = self.quoted(b)?;
                    words.push(word);
                    // nginx: a quoted word must be followed by a space, `;`, `{` or `)`.
                    match self.peek() {
                        None | Some(b';' | b'{') => {}
                        Some(c) if is_space(c) => {}
                        Some(b')') => {
                            self.bump();
                        }
                        Some(_) => {
                            let at = self.here();
                            let c = self.rest_char();
                            return Self::error(at, format!("unexpected \"{c}\" after a quoted string"));
                        }
                    }
                }
                _ => {
                    let word = self.bare()?;
                    words.push(word);
                }
            }
            if words.len() > MAX_WORDS {
                let first = &words[0];
                return Self::error(
                    first.at,
                    format!("more than {MAX_WORDS} parameters in `{}`: a \";\" is missing", first.text),
                );
            }
        }
    }

    /// The character at the current position, for messages.
    fn rest_char(&self) -> char {
        let rest = &self.text[self.pos..];
        std::str::from_utf8(&rest[..rest.len().min(4)])
            .ok()
            .or_else(|| (1..4).rev().find_map(|n| std::str::from_utf8(rest.get(..n)?).ok()))
            .and_then(|s| s.chars().next())
            .unwrap_or('?')
    }

    /// After a backslash: appends the escaped character to `out`.
    fn escape(&mut self, out: &mut Vec<u8>) {
        match self.peek() {
            Some(c @ (b'"' | b'\'' | b'\\')) => {
                self.bump();
                out.push(c);
            }
            Some(b't') => {
                self.bump();
                out.push(b'\t');
            }
            Some(b'r') => {
                self.bump();
                out.push(b'\r');
            }
            Some(b'n') => {
                self.bump();
                out.push(b'\n');
            }
            // Any other pair is kept as written (`\d` in a regex).
            Some(c) => {
                self.bump();
                out.push(b'\\');
                out.push(c);
            }
            None => out.push(b'\\'),
        }
    }

    fn word(&self, bytes: Vec<u8>, at: At) -> Result<Word, SyntaxError> {
        if bytes.len() > MAX_WORD {
            return Self::error(at, format!("too long parameter (more than {MAX_WORD} bytes)"));
        }
        // The text was UTF-8 and escapes only remove ASCII backslashes or
        // put ASCII in: the bytes are UTF-8 still.
        match String::from_utf8(bytes) {
            Ok(text) => Ok(Word { text, at }),
            Err(_) => Self::error(at, "parameter is not UTF-8"),
        }
    }

    fn quoted(&mut self, quote: u8) -> Result<Word, SyntaxError> {
        let at = self.here();
        self.bump();
        let mut out = Vec::new();
        loop {
            match self.bump() {
                None => {
                    return Self::error(
                        at,
                        format!("unterminated string: no closing {} before the end of the file", quote as char),
                    );
                }
                Some(b'\\') => self.escape(&mut out),
                Some(c) if c == quote => return self.word(out, at),
                Some(c) => out.push(c),
            }
            if out.len() > MAX_WORD {
                return Self::error(
                    at,
                    format!("too long parameter, probably a missing terminating {} character", quote as char),
                );
            }
        }
    }

    fn bare(&mut self) -> Result<Word, SyntaxError> {
        let at = self.here();
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            if is_space(c) || c == b';' || c == b'{' {
                break;
            }
            self.bump();
            match c {
                b'\\' => self.escape(&mut out),
                // `${name}`: the brace belongs to the variable, not a block.
                b'$' if self.peek() == Some(b'{') => {
                    self.bump();
                    out.extend_from_slice(b"${");
                }
                _ => out.push(c),
            }
            if out.len() > MAX_WORD {
                return Self::error(at, format!("too long parameter (more than {MAX_WORD} bytes)"));
            }
        }
        self.word(out, at)
    }
}
