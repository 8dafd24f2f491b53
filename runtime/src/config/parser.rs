//! Builds the [`Map`] tree from configuration text: entries, nested maps and arrays,
//! `include` directives and `$variable` references.
//!
//! Variables resolve against earlier keys of the enclosing maps (innermost first), then the
//! environment; an environment value is itself parsed as a configuration value, which is how a
//! reference cycle can arise. As in nats-server, an included file is parsed on its own (it does
//! not see the includer's variables) and its keys are merged where the `include` stands.

use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::lexer::{classify_bare, Cursor, LexError, Scalar};
use super::{ConfigError, Entry, ErrorKind, Map, Pos, Value};

/// Where the parser gets files and environment variables; tests pass in-memory ones.
pub struct Sources<'a> {
    pub load: &'a dyn Fn(&Path) -> io::Result<Vec<u8>>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

/// Deeper nesting than this is an error rather than a stack overflow.
const MAX_DEPTH: usize = 64;
const MAX_INCLUDE_DEPTH: usize = 16;
const MAX_ENV_DEPTH: usize = 16;

/// Parses the file at `path`, reading it through `sources.load`.
pub fn parse_file(path: &Path, sources: &Sources) -> Result<Map, ConfigError> {
    let mut ctx = Ctx { sources, includes: Vec::new(), env_refs: Vec::new() };
    ctx.parse_path(path, None)
}

/// Parses `text` as if it were the file `path` (includes resolve against `path`'s directory).
pub fn parse_str(text: &str, path: &Path, sources: &Sources) -> Result<Map, ConfigError> {
    let mut ctx = Ctx { sources, includes: vec![normalize(path)], env_refs: Vec::new() };
    Parser::new(text, path, &mut ctx).parse_document()
}

/// State shared by the parsers of one document and its includes.
struct Ctx<'s> {
    sources: &'s Sources<'s>,
    /// The include chain, outermost first, to detect a file including itself.
    includes: Vec<PathBuf>,
    /// Environment variables being expanded, to detect reference cycles.
    env_refs: Vec<String>,
}

impl Ctx<'_> {
    fn parse_path(&mut self, path: &Path, included_at: Option<&Pos>) -> Result<Map, ConfigError> {
        let key = normalize(path);
        let file: Arc<str> = path.display().to_string().into();
        let here = included_at.cloned().unwrap_or(Pos { file: file.clone(), line: 0, column: 0 });
        if self.includes.contains(&key) {
            return Err(ConfigError::new(
                ErrorKind::Include,
                here,
                format!("include cycle: '{}' includes itself", path.display()),
            ));
        }
        if self.includes.len() >= MAX_INCLUDE_DEPTH {
            return Err(ConfigError::new(
                ErrorKind::Include,
                here,
                "includes are nested too deeply",
            ));
        }
        let (kind, prefix) = match included_at {
            Some(_) => {
                (ErrorKind::Include, format!("error reading include file '{}': ", path.display()))
            }
            None => (ErrorKind::Io, String::new()),
        };
        let bytes = (self.sources.load)(path)
            .map_err(|e| ConfigError::new(kind, here.clone(), format!("{prefix}{e}")))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
            let column = 1 + std::str::from_utf8(valid)
                .map(|s| s.rsplit('\n').next().unwrap_or("").chars().count())
                .unwrap_or(0);
            ConfigError::new(
                ErrorKind::Parse,
                Pos { file: file.clone(), line: line as u32, column: column as u32 },
                "the file is not valid UTF-8",
            )
        })?;
        self.includes.push(key);
        let result = Parser::new(&text, path, self).parse_document();
        self.includes.pop();
        result
    }
}

/// Removes `.` and folds `..` so one file reached by two spellings is recognised.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

struct Parser<'t, 'c, 's> {
    cur: Cursor<'t>,
    file: Arc<str>,
    dir: PathBuf,
    ctx: &'c mut Ctx<'s>,
    /// The maps being built, outermost first; the last one receives new entries.
    scopes: Vec<Map>,
    depth: usize,
}

/// A parsed value with the source text of an unquoted scalar.
type Parsed = (Value, Option<String>);

impl<'t, 'c, 's> Parser<'t, 'c, 's> {
    fn new(text: &'t str, path: &Path, ctx: &'c mut Ctx<'s>) -> Self {
        Parser {
            cur: Cursor::new(text),
            file: path.display().to_string().into(),
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            ctx,
            scopes: Vec::new(),
            depth: 0,
        }
    }

    fn pos(&self) -> Pos {
        Pos { file: self.file.clone(), line: self.cur.line(), column: self.cur.column() }
    }

    fn lex_err(&self, e: LexError) -> ConfigError {
        ConfigError::new(
            ErrorKind::Parse,
            Pos { file: self.file.clone(), line: e.line, column: e.column },
            e.message,
        )
    }

    fn syntax(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::new(ErrorKind::Parse, self.pos(), message)
    }

    fn describe_next(&self) -> String {
        match self.cur.peek() {
            None => "end of file".to_string(),
            Some('\n') => "a new line".to_string(),
            Some(c) => format!("'{}'", c.escape_debug()),
        }
    }

    fn parse_document(mut self) -> Result<Map, ConfigError> {
        self.scopes.push(Map::new());
        self.parse_entries(None)?;
        Ok(self.scopes.pop().unwrap_or_default())
    }

    /// Parses entries into the innermost scope until `}` (inside a map opened at `open`) or
    /// the end of the text (top level).
    fn parse_entries(&mut self, open: Option<&Pos>) -> Result<(), ConfigError> {
        loop {
            self.cur.skip_all();
            match self.cur.peek() {
                None => {
                    return match open {
                        None => Ok(()),
                        Some(p) => Err(self.syntax(format!(
                            "unexpected end of file inside the map opened at line {} column {}",
                            p.line, p.column
                        ))),
                    }
                }
                Some('}') if open.is_some() => {
                    self.cur.bump();
                    return Ok(());
                }
                // Stray terminators between entries are harmless.
                Some(',') | Some(';') => {
                    self.cur.bump();
                }
                Some(_) => self.parse_entry(open.is_some())?,
            }
        }
    }

    fn parse_entry(&mut self, in_map: bool) -> Result<(), ConfigError> {
        let key_pos = self.pos();
        let (key, quoted) = match self.cur.peek() {
            Some('"') => (self.cur.read_double_quoted().map_err(|e| self.lex_err(e))?, true),
            Some('\'') => (self.cur.read_single_quoted().map_err(|e| self.lex_err(e))?, true),
            _ => {
                let key = self.cur.read_until(|c| {
                    c.is_whitespace()
                        || matches!(c, ':' | '=' | '{' | '[' | '}' | ']' | ',' | ';' | '"' | '\'')
                });
                if key.is_empty() {
                    return Err(
                        self.syntax(format!("expected a key, found {}", self.describe_next()))
                    );
                }
                (key.to_string(), false)
            }
        };
        self.cur.skip_inline();
        let mut separated = false;
        if matches!(self.cur.peek(), Some(':') | Some('=')) {
            self.cur.bump();
            separated = true;
            self.cur.skip_inline();
        }
        if matches!(self.cur.peek(), None | Some('\n') | Some(',') | Some(';') | Some('}')) {
            return Err(self.syntax(format!(
                "expected a value for key '{key}', found {}",
                self.describe_next()
            )));
        }
        if !quoted
            && !separated
            && key.eq_ignore_ascii_case("include")
            && !matches!(self.cur.peek(), Some('{' | '['))
        {
            self.parse_include(&key_pos)?;
        } else {
            let (value, raw) = self.parse_value()?;
            let entry = Entry { key, value, pos: key_pos, raw, used_as_variable: false };
            self.scope().insert(entry);
        }
        self.end_of_entry(in_map)
    }

    fn scope(&mut self) -> &mut Map {
        if self.scopes.is_empty() {
            self.scopes.push(Map::new());
        }
        let last = self.scopes.len() - 1;
        &mut self.scopes[last]
    }

    /// After a value: a comment, then a new line, `,`, `;`, the map's `}` or the end of text.
    fn end_of_entry(&mut self, in_map: bool) -> Result<(), ConfigError> {
        self.cur.skip_inline();
        match self.cur.peek() {
            None | Some('\n') | Some(',') | Some(';') => Ok(()),
            Some('}') if in_map => Ok(()),
            _ => Err(self.syntax(format!(
                "expected a new line, ',', ';'{} after the value, found {}",
                if in_map { " or '}'" } else { "" },
                self.describe_next()
            ))),
        }
    }

    fn parse_include(&mut self, at: &Pos) -> Result<(), ConfigError> {
        let target = match self.cur.peek() {
            Some('"') => self.cur.read_double_quoted().map_err(|e| self.lex_err(e))?,
            Some('\'') => self.cur.read_single_quoted().map_err(|e| self.lex_err(e))?,
            _ => self
                .cur
                .read_until(|c| c.is_whitespace() || matches!(c, ',' | ';' | '}'))
                .to_string(),
        };
        let path = self.dir.join(&target);
        let included = self.ctx.parse_path(&path, Some(at))?;
        let scope = self.scope();
        for entry in included.entries {
            scope.insert(entry);
        }
        Ok(())
    }

    fn parse_value(&mut self) -> Result<Parsed, ConfigError> {
        match self.cur.peek() {
            Some('{') => {
                let open = self.pos();
                self.cur.bump();
                self.enter(&open)?;
                self.scopes.push(Map::new());
                let result = self.parse_entries(Some(&open));
                let map = self.scopes.pop().unwrap_or_default();
                self.depth -= 1;
                result.map(|()| (Value::Map(map), None))
            }
            Some('[') => {
                let open = self.pos();
                self.cur.bump();
                self.enter(&open)?;
                let result = self.parse_array_items(&open);
                self.depth -= 1;
                result.map(|items| (Value::Array(items), None))
            }
            Some('"') => Ok((
                Value::String(self.cur.read_double_quoted().map_err(|e| self.lex_err(e))?),
                None,
            )),
            Some('\'') => Ok((
                Value::String(self.cur.read_single_quoted().map_err(|e| self.lex_err(e))?),
                None,
            )),
            Some('(') if self.block_string_follows() => {
                // An unterminated block is reported where it opens, not at the end of the file.
                let open = self.pos();
                self.cur.bump();
                self.cur.skip_inline();
                self.cur.bump();
                let text = self
                    .cur
                    .read_block_string()
                    .map_err(|e| ConfigError::new(ErrorKind::Parse, open, e.message))?;
                Ok((Value::String(text), None))
            }
            _ => {
                let pos = self.pos();
                let text = self
                    .cur
                    .read_until(|c| c.is_whitespace() || matches!(c, ',' | ';' | ']' | '}'));
                if text.is_empty() {
                    return Err(
                        self.syntax(format!("expected a value, found {}", self.describe_next()))
                    );
                }
                if let Some(name) = text.strip_prefix('$') {
                    if !is_bcrypt(text) {
                        return Ok((self.resolve_variable(name, &pos)?, None));
                    }
                }
                let value = match classify_bare(text)
                    .map_err(|m| ConfigError::new(ErrorKind::Parse, pos, m))?
                {
                    Scalar::String(s) => Value::String(s),
                    Scalar::Integer(i) => Value::Integer(i),
                    Scalar::Float(f) => Value::Float(f),
                    Scalar::Bool(b) => Value::Bool(b),
                };
                Ok((value, Some(text.to_string())))
            }
        }
    }

    fn enter(&mut self, open: &Pos) -> Result<(), ConfigError> {
        if self.depth >= MAX_DEPTH {
            return Err(ConfigError::new(
                ErrorKind::Parse,
                open.clone(),
                "maps and arrays are nested too deeply",
            ));
        }
        self.depth += 1;
        Ok(())
    }

    /// `(` followed only by blanks up to the end of its line opens a block string; otherwise
    /// the `(` begins an ordinary unquoted string.
    fn block_string_follows(&self) -> bool {
        let mut probe = self.cur.clone();
        probe.bump();
        while matches!(probe.peek(), Some(' ' | '\t' | '\r')) {
            probe.bump();
        }
        probe.peek() == Some('\n')
    }

    fn parse_array_items(&mut self, open: &Pos) -> Result<Vec<Value>, ConfigError> {
        let mut items = Vec::new();
        loop {
            self.cur.skip_all();
            match self.cur.peek() {
                None => {
                    return Err(self.syntax(format!(
                        "unexpected end of file inside the array opened at line {} column {}",
                        open.line, open.column
                    )))
                }
                Some(']') => {
                    self.cur.bump();
                    return Ok(items);
                }
                Some(_) => {}
            }
            items.push(self.parse_value()?.0);
            self.cur.skip_inline();
            match self.cur.peek() {
                Some(',') | Some('\n') => {
                    self.cur.bump();
                }
                Some(']') | None => {}
                _ => {
                    return Err(self.syntax(format!(
                        "expected ',', a new line or ']' after an array value, found {}",
                        self.describe_next()
                    )))
                }
            }
        }
    }

    fn resolve_variable(&mut self, name: &str, at: &Pos) -> Result<Value, ConfigError> {
        if name.is_empty() {
            return Err(ConfigError::new(
                ErrorKind::Variable,
                at.clone(),
                "'$' must be followed by a variable name",
            ));
        }
        for scope in self.scopes.iter_mut().rev() {
            if let Some(entry) = scope.get_mut(name) {
                entry.used_as_variable = true;
                return Ok(entry.value.clone());
            }
        }
        let err = |message: String| ConfigError::new(ErrorKind::Variable, at.clone(), message);
        if self.ctx.env_refs.iter().any(|n| n == name) {
            return Err(err(format!("variable reference cycle for '{name}'")));
        }
        if self.ctx.env_refs.len() >= MAX_ENV_DEPTH {
            return Err(err(format!("variable references nest too deeply at '{name}'")));
        }
        let Some(text) = (self.ctx.sources.env)(name) else {
            return Err(err(format!("variable reference for '{name}' can not be found")));
        };
        self.ctx.env_refs.push(name.to_string());
        let parsed = self.parse_env_value(name, &text);
        self.ctx.env_refs.pop();
        parsed.map_err(|inner| {
            let detail = match inner.kind {
                ErrorKind::Parse => format!("Parse error: {}", inner.message),
                _ => inner.message,
            };
            err(format!("variable reference for '{name}' could not be parsed: {detail}"))
        })
    }

    /// An environment variable's text is one configuration value; its own `$references`
    /// resolve against the environment only.
    fn parse_env_value(&mut self, name: &str, text: &str) -> Result<Value, ConfigError> {
        let path = PathBuf::from(format!("${name}"));
        let mut sub = Parser::new(text, &path, self.ctx);
        sub.dir = self.dir.clone();
        sub.cur.skip_all();
        if sub.cur.at_eof() {
            return Err(sub.syntax("expected a value, found end of file"));
        }
        let (value, _) = sub.parse_value()?;
        sub.cur.skip_all();
        if !sub.cur.at_eof() {
            return Err(
                sub.syntax(format!("expected the end of the value, found {}", sub.describe_next()))
            );
        }
        Ok(value)
    }
}

/// bcrypt hashes (`$2a$11$...`) start with `$` but are passwords, not variables.
fn is_bcrypt(text: &str) -> bool {
    ["$2a$", "$2b$", "$2x$", "$2y$"].iter().any(|p| text.starts_with(p))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn pos() -> Pos {
        Pos { file: "".into(), line: 0, column: 0 }
    }

    fn m(entries: Vec<(&str, Value)>) -> Map {
        let mut map = Map::new();
        for (key, value) in entries {
            map.insert(Entry {
                key: key.to_string(),
                value,
                pos: pos(),
                raw: None,
                used_as_variable: false,
            });
        }
        map
    }

    fn s(text: &str) -> Value {
        Value::String(text.to_string())
    }

    fn i(n: i64) -> Value {
        Value::Integer(n)
    }

    fn b(v: bool) -> Value {
        Value::Bool(v)
    }

    fn arr(items: Vec<Value>) -> Value {
        Value::Array(items)
    }

    fn mv(entries: Vec<(&str, Value)>) -> Value {
        Value::Map(m(entries))
    }

    /// Parses `text` as `/etc/fjord/main.conf` with the given extra files and environment.
    fn parse_with(
        text: &str,
        files: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> Result<Map, ConfigError> {
        let files: HashMap<PathBuf, Vec<u8>> =
            files.iter().map(|(p, t)| (PathBuf::from(p), t.as_bytes().to_vec())).collect();
        let env: HashMap<String, String> =
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let load = |p: &Path| {
            files
                .get(&normalize(p))
                .cloned()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))
        };
        let env = |name: &str| env.get(name).cloned();
        parse_str(text, Path::new("/etc/fjord/main.conf"), &Sources { load: &load, env: &env })
    }

    fn parse(text: &str) -> Result<Map, ConfigError> {
        parse_with(text, &[], &[])
    }

    #[test]
    fn valid_documents() {
        let cases: Vec<(&str, Map)> = vec![
            ("a: 1\nb = 2\nc 3\n", m(vec![("a", i(1)), ("b", i(2)), ("c", i(3))])),
            ("a:1;b=2,c 3;", m(vec![("a", i(1)), ("b", i(2)), ("c", i(3))])),
            ("  a : 1 ,\n\tb\t=\t2 ;\n", m(vec![("a", i(1)), ("b", i(2))])),
            (
                "# leading comment\na: 1 # trailing\n// slash comment\nb: two // trailing\n   # indented\n",
                m(vec![("a", i(1)), ("b", s("two"))]),
            ),
            ("", m(vec![])),
            ("# only a comment", m(vec![])),
            ("a: 1\r\nb: 2\r\n", m(vec![("a", i(1)), ("b", i(2))])),
            (
                "authorization {\n  user: derek\n  password: T0pS3cr3t\n  timeout: 1\n}\n",
                m(vec![(
                    "authorization",
                    mv(vec![("user", s("derek")), ("password", s("T0pS3cr3t")), ("timeout", i(1))]),
                )]),
            ),
            ("a: {x: 1}\nb = {x: 2}\nc {x: 3}", m(vec![("a", mv(vec![("x", i(1))])), ("b", mv(vec![("x", i(2))])), ("c", mv(vec![("x", i(3))]))])),
            ("a {}\nb: {\n}\n", m(vec![("a", mv(vec![])), ("b", mv(vec![]))])),
            (
                "outer { middle { inner { x: 1 } } }",
                m(vec![("outer", mv(vec![("middle", mv(vec![("inner", mv(vec![("x", i(1))]))]))]))]),
            ),
            ("a: [1, 2, 3]", m(vec![("a", arr(vec![i(1), i(2), i(3)]))])),
            ("a: [\n  1\n  2,\n  3, # c\n  // d\n]", m(vec![("a", arr(vec![i(1), i(2), i(3)]))])),
            ("a: [1, 2,]\nb: []\nc: [ ]", m(vec![("a", arr(vec![i(1), i(2)])), ("b", arr(vec![])), ("c", arr(vec![]))])),
            ("a: [[1, 2], [\"x\"]]", m(vec![("a", arr(vec![arr(vec![i(1), i(2)]), arr(vec![s("x")])]))])),
            (
                "users = [\n  {user: a, password: b}\n  {user: c, password: d},\n]",
                m(vec![(
                    "users",
                    arr(vec![mv(vec![("user", s("a")), ("password", s("b"))]), mv(vec![("user", s("c")), ("password", s("d"))])]),
                )]),
            ),
            ("a: [foo.*, \"bar.>\", 'baz']", m(vec![("a", arr(vec![s("foo.*"), s("bar.>"), s("baz")]))])),
            (
                r#"a: "x y\t\"q\" \\ \x41"
b: 'raw \t $x'
c: bare-string
d: 127.0.0.1:4222
e: nats://host:4222/path?x=1
f: a=b
g: ab#c"#,
                m(vec![
                    ("a", s("x y\t\"q\" \\ A")),
                    ("b", s("raw \\t $x")),
                    ("c", s("bare-string")),
                    ("d", s("127.0.0.1:4222")),
                    ("e", s("nats://host:4222/path?x=1")),
                    ("f", s("a=b")),
                    ("g", s("ab#c")),
                ]),
            ),
            ("a: \"multi\nline\"", m(vec![("a", s("multi\nline"))])),
            (
                "a: true\nb: TRUE\nc: yes\nd: On\ne: false\nf: no\ng: OFF\nh: \"true\"",
                m(vec![
                    ("a", b(true)),
                    ("b", b(true)),
                    ("c", b(true)),
                    ("d", b(true)),
                    ("e", b(false)),
                    ("f", b(false)),
                    ("g", b(false)),
                    ("h", s("true")),
                ]),
            ),
            (
                "a: 1k\nb: 1KB\nc: 1m\nd: 1MB\ne: 2GiB\nf: 1mi\ng: -1\nh: 1.5\ni: -0.5\nj: 10s\nk: 1e5",
                m(vec![
                    ("a", i(1000)),
                    ("b", i(1024)),
                    ("c", i(1_000_000)),
                    ("d", i(1_048_576)),
                    ("e", i(2 << 30)),
                    ("f", i(1_048_576)),
                    ("g", i(-1)),
                    ("h", Value::Float(1.5)),
                    ("i", Value::Float(-0.5)),
                    ("j", s("10s")),
                    ("k", s("1e5")),
                ]),
            ),
            ("\"quoted key\": 1\n'single': 2", m(vec![("quoted key", i(1)), ("single", i(2))])),
            ("a: 1\na: 2\nb: 3", m(vec![("a", i(2)), ("b", i(3))])),
            ("p: $2a$11$W2zko751KUvVy59mUTWmpOdWjpEm5qhcCZRd05GjI/sSOT.xtiHyG", m(vec![("p", s("$2a$11$W2zko751KUvVy59mUTWmpOdWjpEm5qhcCZRd05GjI/sSOT.xtiHyG"))])),
            ("a: (\n  line one\n  line two\n)\nb: 1", m(vec![("a", s("  line one\n  line two")), ("b", i(1))])),
            ("include=x\nINCLUDE: y", m(vec![("include", s("x")), ("INCLUDE", s("y"))])),
            ("\u{feff}a: 1", m(vec![("a", i(1))])),
            ("a: é\nb: \"ü\"", m(vec![("a", s("é")), ("b", s("ü"))])),
        ];
        for (text, want) in cases {
            match parse(text) {
                Ok(got) => assert_eq!(got, want, "document:\n{text}"),
                Err(e) => panic!("document:\n{text}\nfailed: {e}"),
            }
        }
    }

    #[test]
    fn variables_resolve_from_blocks_then_environment() {
        let text = "
            PORT_VAR: 4333
            port: $PORT_VAR
            outer {
              inner_var: \"x\"
              nested { a: $inner_var, b: $PORT_VAR, c: $FROM_ENV }
            }
            list: [$PORT_VAR, $FROM_ENV]
            map_var { k: 1 }
            copied: $map_var
            env_map: $ENV_MAP
        ";
        let env = [("FROM_ENV", "hello"), ("ENV_MAP", "{ x: [1, 2] }"), ("PORT_VAR", "9")];
        let got = parse_with(text, &[], &env).unwrap();
        let want = m(vec![
            ("PORT_VAR", i(4333)),
            ("port", i(4333)),
            (
                "outer",
                mv(vec![
                    ("inner_var", s("x")),
                    ("nested", mv(vec![("a", s("x")), ("b", i(4333)), ("c", s("hello"))])),
                ]),
            ),
            ("list", arr(vec![i(4333), s("hello")])),
            ("map_var", mv(vec![("k", i(1))])),
            ("copied", mv(vec![("k", i(1))])),
            ("env_map", mv(vec![("x", arr(vec![i(1), i(2)]))])),
        ]);
        assert_eq!(got, want);
        assert!(got.get("PORT_VAR").unwrap().used_as_variable);
        assert!(got.get("map_var").unwrap().used_as_variable);
        assert!(!got.get("port").unwrap().used_as_variable);
    }

    #[test]
    fn environment_values_are_parsed_as_values() {
        let env = [("N", "4444"), ("B", "true"), ("Q", "\"a b\""), ("CHAIN", "$N")];
        let got = parse_with("a: $N\nb: $B\nc: $Q\nd: $CHAIN", &[], &env).unwrap();
        assert_eq!(got, m(vec![("a", i(4444)), ("b", b(true)), ("c", s("a b")), ("d", i(4444))]));
        // Two bare words are not one value.
        let err = parse_with("a: $S", &[], &[("S", "hello world")]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Variable);
        assert!(err.message.contains("could not be parsed"), "{err}");
    }

    #[test]
    fn raw_text_of_unquoted_scalars_is_kept() {
        let got = parse("ping_interval: 2m\nq: \"2m\"\nmax: 1MB").unwrap();
        let e = got.get("ping_interval").unwrap();
        assert_eq!((e.value.clone(), e.raw.as_deref()), (i(2_000_000), Some("2m")));
        assert_eq!(got.get("q").unwrap().raw, None);
        assert_eq!(got.get("max").unwrap().raw.as_deref(), Some("1MB"));
    }

    #[test]
    fn key_positions_are_recorded() {
        let got = parse("a: 1\n  bb {\n    c: 2\n  }").unwrap();
        let a = got.get("a").unwrap();
        assert_eq!((a.pos.line, a.pos.column, &*a.pos.file), (1, 1, "/etc/fjord/main.conf"));
        let bb = got.get("bb").unwrap();
        assert_eq!((bb.pos.line, bb.pos.column), (2, 3));
        let Value::Map(inner) = &bb.value else { panic!() };
        let c = inner.get("c").unwrap();
        assert_eq!((c.pos.line, c.pos.column), (3, 5));
    }

    #[test]
    fn includes_merge_keys_where_they_stand() {
        let files = [
            ("/etc/fjord/auth.conf", "user: a\npassword: b\n"),
            ("/etc/fjord/sub/x.conf", "include \"y.conf\"\nx: 1"),
            ("/etc/fjord/sub/y.conf", "y: 2 # from the included file's own directory\n"),
            ("/etc/fjord/vars.conf", "Q: 4333"),
            ("/abs/z.conf", "z: 3"),
        ];
        let text = "
            port: 1
            authorization {
              include auth.conf
              timeout: 2
            }
            include 'sub/x.conf'
            include \"vars.conf\"; include /abs/z.conf
            port2: $Q
        ";
        let got = parse_with(text, &files, &[]).unwrap();
        let want = m(vec![
            ("port", i(1)),
            ("authorization", mv(vec![("user", s("a")), ("password", s("b")), ("timeout", i(2))])),
            ("y", i(2)),
            ("x", i(1)),
            ("Q", i(4333)),
            ("z", i(3)),
            ("port2", i(4333)),
        ]);
        assert_eq!(got, want);
        // Positions of included keys name the included file.
        assert_eq!(&*got.get("y").unwrap().pos.file, "/etc/fjord/sub/y.conf");
    }

    #[test]
    fn included_files_do_not_see_the_includers_variables() {
        let files = [("/etc/fjord/v.conf", "port: $P")];
        let err = parse_with("P: 1\ninclude v.conf", &files, &[]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Variable);
        assert_eq!((&*err.pos.file, err.pos.line, err.pos.column), ("/etc/fjord/v.conf", 1, 7));
    }

    /// (document, extra files, env, kind, line, column, message fragment)
    type Bad = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static [(&'static str, &'static str)],
        ErrorKind,
        u32,
        u32,
        &'static str,
    );

    #[test]
    fn invalid_documents() {
        let cases: Vec<Bad> = vec![
            ("a: \"abc", &[], &[], ErrorKind::Parse, 1, 4, "unterminated"),
            ("a: 'abc\n\n", &[], &[], ErrorKind::Parse, 1, 4, "unterminated"),
            (
                "port: 4222\ndebug: true\nauthorization {\n  user: \"abc\n}\n",
                &[],
                &[],
                ErrorKind::Parse,
                4,
                9,
                "unterminated",
            ),
            (
                "a {\n  b: 1\n",
                &[],
                &[],
                ErrorKind::Parse,
                3,
                1,
                "inside the map opened at line 1 column 3",
            ),
            ("a: [1, 2", &[], &[], ErrorKind::Parse, 1, 9, "inside the array"),
            ("a: [1 2]", &[], &[], ErrorKind::Parse, 1, 7, "after an array value"),
            ("= 5", &[], &[], ErrorKind::Parse, 1, 1, "expected a key"),
            ("a: 1 }", &[], &[], ErrorKind::Parse, 1, 6, "found '}'"),
            ("}", &[], &[], ErrorKind::Parse, 1, 1, "expected a key"),
            ("a: x]", &[], &[], ErrorKind::Parse, 1, 5, "found ']'"),
            ("a: x y", &[], &[], ErrorKind::Parse, 1, 6, "found 'y'"),
            ("a\nb: 1", &[], &[], ErrorKind::Parse, 1, 2, "expected a value for key 'a'"),
            ("a:", &[], &[], ErrorKind::Parse, 1, 3, "expected a value"),
            ("a: 1\nb: \"\\q\"", &[], &[], ErrorKind::Parse, 2, 5, "invalid escape"),
            ("a: 9223372036854775808", &[], &[], ErrorKind::Parse, 1, 4, "out of range"),
            ("a: [,]", &[], &[], ErrorKind::Parse, 1, 5, "expected a value"),
            ("a: (\nno end", &[], &[], ErrorKind::Parse, 1, 4, "block string"),
            ("a: $NOPE", &[], &[], ErrorKind::Variable, 1, 4, "'NOPE' can not be found"),
            ("a: $", &[], &[], ErrorKind::Variable, 1, 4, "variable name"),
            ("a = $b\nb = 1", &[], &[], ErrorKind::Variable, 1, 5, "'b' can not be found"),
            ("x { y: 5 }\nz: $y", &[], &[], ErrorKind::Variable, 2, 4, "'y' can not be found"),
            ("P: 1\nport: $p", &[], &[], ErrorKind::Variable, 2, 7, "'p' can not be found"),
            ("a: $A", &[], &[("A", "$B"), ("B", "$A")], ErrorKind::Variable, 1, 4, "cycle for 'A'"),
            ("a: $A", &[], &[("A", "$A")], ErrorKind::Variable, 1, 4, "cycle"),
            ("a: 1\ninclude nope.conf", &[], &[], ErrorKind::Include, 2, 1, "nope.conf"),
            ("include main.conf", &[], &[], ErrorKind::Include, 1, 1, "includes itself"),
            (
                "include a.conf",
                &[
                    ("/etc/fjord/a.conf", "include ./b.conf"),
                    ("/etc/fjord/b.conf", "include a.conf"),
                ],
                &[],
                ErrorKind::Include,
                1,
                1,
                "includes itself",
            ),
            (
                "include a.conf",
                &[("/etc/fjord/a.conf", "x: 1\ny: [")],
                &[],
                ErrorKind::Parse,
                2,
                5,
                "inside the array",
            ),
        ];
        for (text, files, env, kind, line, column, fragment) in cases {
            let err = match parse_with(text, files, env) {
                Ok(map) => panic!("document {text:?} parsed: {map:?}"),
                Err(e) => e,
            };
            assert_eq!(
                (err.kind, err.pos.line, err.pos.column),
                (kind, line, column),
                "document {text:?}: {err}"
            );
            assert!(err.to_string().contains(fragment), "document {text:?}: {err}");
        }
    }

    #[test]
    fn error_display_names_file_line_and_column() {
        let err = parse("a: 1\nb: 2\nc: [1 2]").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/fjord/main.conf:3:7: Parse error: expected ',', a new line or ']' after an array value, found '2'"
        );
        let err = parse("a: $X").unwrap_err();
        assert!(!err.to_string().contains("Parse error"));
        assert!(err.to_string().starts_with("/etc/fjord/main.conf:1:4: "));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("a: {}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(&deep).unwrap_err().message.contains("nested too deeply"));
        let deep = format!("a {}", "{ b ".repeat(10_000));
        assert!(parse(&deep).unwrap_err().message.contains("nested too deeply"));
    }

    #[test]
    fn invalid_utf8_reports_its_position() {
        let load = |_: &Path| Ok(b"a: 1\nb: \xff\n".to_vec());
        let env = |_: &str| None;
        let err = parse_file(Path::new("x.conf"), &Sources { load: &load, env: &env }).unwrap_err();
        assert_eq!((err.kind, err.pos.line, err.pos.column), (ErrorKind::Parse, 2, 4));
    }

    #[test]
    fn unreadable_file_is_an_io_error() {
        let load = |_: &Path| Err(io::Error::new(io::ErrorKind::NotFound, "gone"));
        let env = |_: &str| None;
        let err = parse_file(Path::new("x.conf"), &Sources { load: &load, env: &env }).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Io);
        assert_eq!(err.to_string(), "x.conf: gone");
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let load = |_: &Path| Ok(bytes.clone());
            let env = |name: &str| name.starts_with(char::is_uppercase).then(|| "$X".to_string());
            let _ = parse_file(Path::new("r.conf"), &Sources { load: &load, env: &env });
        }

        #[test]
        fn random_config_like_text_never_panics(
            text in proptest::string::string_regex("[a-c$:=;, \\t\\n{}\\[\\]()\"'#/\\\\0-9kKmMbB.\\-é]{0,200}").unwrap()
        ) {
            let load = |_: &Path| Ok(b"a: [1, {b: $a}]".to_vec());
            let env = |name: &str| match name { "a" => Some("{x: $b}".to_string()), "b" => Some("$a".to_string()), _ => None };
            if let Ok(map) = parse_str(&text, Path::new("r.conf"), &Sources { load: &load, env: &env }) {
                let mut opts = crate::options::Options::default();
                let _ = crate::config::apply(&map, &mut opts);
            }
        }
    }
}
