//! Statements -> a tree of directives, with `include` followed.
//!
//! Includes are resolved as nginx resolves them: a relative name against the
//! main configuration file's folder (nginx's conf prefix), a name with `*`,
//! `?` or `[` as a glob whose matches are read in sorted order (none is not an
//! error), a plain name that must exist. `include mime.types` is kept as a
//! directive but not read: gale has nginx's table built in. Each included
//! file must be balanced on its own, as in nginx. An include that leads back
//! to a file being read is a loop, and an error.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::lexer::{At, End, Lexer, Word};

/// A directive of the configuration, where it was written, and its block.
#[derive(Debug, Clone)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    pub file: Rc<str>,
    pub at: At,
    /// Its rank in the order the configuration is read (includes in place).
    pub seq: usize,
    /// `Some` for a block directive (`http { ... }`).
    pub block: Option<Vec<Directive>>,
}

impl Directive {
    /// `FILE:LINE`.
    pub fn source(&self) -> String {
        format!("{}:{}", self.file, self.at.line)
    }

    /// The directive as written, without its block: `listen 80`.
    pub fn text(&self) -> String {
        let mut s = self.name.clone();
        for a in &self.args {
            s.push(' ');
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == ';' || c == '{') {
                s.push('"');
                s.push_str(&a.replace('\\', "\\\\").replace('"', "\\\""));
                s.push('"');
            } else {
                s.push_str(a);
            }
        }
        s
    }
}

/// An error at `FILE:LINE:COL`, or about a whole file.
#[derive(Debug, PartialEq, Eq)]
pub struct ImportError {
    pub file: String,
    pub at: Option<At>,
    pub message: String,
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.at {
            Some(at) => write!(f, "{}:{}:{}: {}", self.file, at.line, at.col, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ImportError {}

/// Blocks nest a few levels in real configurations (http > server >
/// location > if); past this the input is not one, and the parser's
/// recursion stays bounded.
const MAX_DEPTH: usize = 32;
/// Files read in all, through includes.
const MAX_FILES: usize = 1024;
/// Bytes read in all.
const MAX_BYTES: u64 = 64 << 20;
/// Directives in all.
const MAX_DIRECTIVES: usize = 100_000;

/// Reads `path` and everything it includes.
pub fn parse_file(path: &Path) -> Result<Vec<Directive>, ImportError> {
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut state = State { base, chain: Vec::new(), files: 0, bytes: 0, directives: 0 };
    state.file(path, &path.display().to_string())
}

struct State {
    base: PathBuf,
    /// The files being read, outermost first (include loops).
    chain: Vec<PathBuf>,
    files: usize,
    bytes: u64,
    directives: usize,
}

impl State {
    fn file(&mut self, path: &Path, shown: &str) -> Result<Vec<Directive>, ImportError> {
        let whole = |message: String| ImportError { file: shown.to_owned(), at: None, message };
        let canonical = std::fs::canonicalize(path).map_err(|e| whole(format!("cannot read: {e}")))?;
        if self.chain.contains(&canonical) {
            let mut names: Vec<String> = self.chain.iter().map(|p| p.display().to_string()).collect();
            names.push(canonical.display().to_string());
            return Err(whole(format!("include loop: {}", names.join(" -> "))));
        }
        self.files += 1;
        if self.files > MAX_FILES {
            return Err(whole(format!("more than {MAX_FILES} files included")));
        }
        let meta = std::fs::metadata(&canonical).map_err(|e| whole(format!("cannot read: {e}")))?;
        if !meta.is_file() {
            return Err(whole("cannot read: not a regular file".to_owned()));
        }
        self.bytes += meta.len();
        if self.bytes > MAX_BYTES {
            return Err(whole(format!("more than {} MiB of configuration", MAX_BYTES >> 20)));
        }
        let bytes = std::fs::read(&canonical).map_err(|e| whole(format!("cannot read: {e}")))?;
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
                let last = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                let col = String::from_utf8_lossy(&valid[last..]).chars().count() + 1;
                return Err(ImportError {
                    file: shown.to_owned(),
                    at: Some(At { line, col }),
                    message: "not UTF-8 text".to_owned(),
                });
            }
        };
        self.chain.push(canonical);
        let file: Rc<str> = Rc::from(shown);
        let mut lexer = Lexer::new(&text);
        let result = self.block(&mut lexer, &file, 0, None);
        self.chain.pop();
        result
    }

    /// The directives up to the `}` that closes the block opened by `opener`
    /// (or the end of the file at the top level).
    fn block(
        &mut self,
        lexer: &mut Lexer<'_>,
        file: &Rc<str>,
        depth: usize,
        opener: Option<&Word>,
    ) -> Result<Vec<Directive>, ImportError> {
        let err = |at: At, message: String| ImportError { file: file.to_string(), at: Some(at), message };
        let mut out = Vec::new();
        loop {
            let st = lexer.next_statement().map_err(|e| err(e.at, e.message))?;
            match st.end {
                End::Eof => {
                    return match opener {
                        Some(w) => Err(err(
                            st.at,
                            format!(
                                "unexpected end of file, expecting \"}}\" to close `{}` (line {})",
                                w.text, w.at.line
                            ),
                        )),
                        None => Ok(out),
                    };
                }
                End::Close => {
                    return match opener {
                        Some(_) => Ok(out),
                        None => Err(err(st.at, "unexpected \"}\": no block is open here".to_owned())),
                    };
                }
                End::Semicolon | End::Open => {}
            }
            self.directives += 1;
            if self.directives > MAX_DIRECTIVES {
                return Err(err(st.at, format!("more than {MAX_DIRECTIVES} directives")));
            }
            let seq = self.directives;
            let mut words = st.words.into_iter();
            let Some(name) = words.next() else { unreachable!("the lexer returns words before ; and {{") };
            let args: Vec<String> = words.map(|w| w.text).collect();
            let block = if st.end == End::Open {
                if depth + 1 > MAX_DEPTH {
                    return Err(err(name.at, format!("blocks nested more than {MAX_DEPTH} deep")));
                }
                Some(self.block(lexer, file, depth + 1, Some(&name))?)
            } else {
                None
            };
            let directive = Directive { name: name.text.clone(), args, file: file.clone(), at: name.at, seq, block };
            if directive.name == "include" && directive.block.is_none() {
                let included = self.include(&directive).map_err(|message| err(name.at, message))?;
                out.push(directive);
                match included {
                    Included::Directives(mut list) => out.append(&mut list),
                    Included::Error(e) => return Err(e),
                    Included::Skipped => {}
                }
            } else {
                out.push(directive);
            }
        }
    }

    /// Reads what an `include` names; `Err` is a message for the
    /// directive's position, an error inside an included file comes back
    /// as it is.
    fn include(&mut self, d: &Directive) -> Result<Included, String> {
        let [name] = d.args.as_slice() else {
            return Err("include takes one file name or glob".to_owned());
        };
        if Path::new(name).file_name().is_some_and(|f| f == "mime.types") {
            return Ok(Included::Skipped);
        }
        let path = self.base.join(name);
        let files: Vec<PathBuf> = if name.contains(['*', '?', '[']) {
            let pattern = path.to_str().ok_or("include: the path is not UTF-8")?;
            let options = glob::MatchOptions { require_literal_leading_dot: true, ..glob::MatchOptions::new() };
            let paths = glob::glob_with(pattern, options).map_err(|e| format!("include `{name}`: bad glob: {e}"))?;
            let mut list: Vec<PathBuf> = paths.filter_map(Result::ok).filter(|p| p.is_file()).collect();
            list.sort();
            list
        } else {
            if !path.exists() {
                return Err(format!("include `{name}`: {} does not exist", path.display()));
            }
            vec![path]
        };
        let mut all = Vec::new();
        for f in files {
            let canonical = std::fs::canonicalize(&f).map_err(|e| format!("include `{name}`: {}: {e}", f.display()))?;
            if self.chain.contains(&canonical) {
                let mut names: Vec<String> = self.chain.iter().map(|p| p.display().to_string()).collect();
                names.push(canonical.display().to_string());
                return Err(format!("include loop: {}", names.join(" -> ")));
            }
            match self.file(&f, &f.display().to_string()) {
                Ok(mut list) => all.append(&mut list),
                Err(e) => return Ok(Included::Error(e)),
            }
        }
        Ok(Included::Directives(all))
    }
}

enum Included {
    Directives(Vec<Directive>),
    Skipped,
    Error(ImportError),
}
