//! nats-server's configuration-file language: parsed into a tree of [`Value`]s
//! ([`parser`]), then mapped onto [`crate::options::Options`] ([`apply`]).
//!
//! The tree keeps what the mapping layer needs to be precise: each key's file and position
//! (for errors), its original spelling, the source text of unquoted scalars (so a value like
//! `2m` can be explained), and whether the key was referenced as a `$variable` (nats-server
//! does not reject such keys as unknown).

pub mod apply;
pub mod lexer;
pub mod parser;

use std::fmt;
use std::sync::Arc;

pub use apply::{apply, load_file, parse_duration};
pub use parser::{parse_file, parse_str, Sources};

/// A position in a configuration file; `line` and `column` count from 1 (0 = unknown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pos {
    pub file: Arc<str>,
    pub line: u32,
    pub column: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    Array(Vec<Value>),
    Map(Map),
}

impl Value {
    /// The name used in type errors ("expected an integer, got a string").
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a boolean",
            Value::Array(_) => "an array",
            Value::Map(_) => "a map",
        }
    }
}

/// One `key: value` of a map.
#[derive(Clone, Debug)]
pub struct Entry {
    /// As written (nats-server matches keys case-insensitively, variables case-sensitively).
    pub key: String,
    pub value: Value,
    /// Where the key starts.
    pub pos: Pos,
    /// Source text of an unquoted scalar value (`2m`, `1MB`, `yes`); None for quoted strings,
    /// maps, arrays and values that came from a variable.
    pub raw: Option<String>,
    /// The key was referenced as `$key` later in the file.
    pub used_as_variable: bool,
}

/// Equality ignores positions and bookkeeping so trees can be compared by content.
impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.value == other.value
    }
}

/// A map in insertion order. A key given twice keeps its first slot and takes the later value
/// (nats-server's maps are last-wins).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Map {
    entries: Vec<Entry>,
}

impl Map {
    pub fn new() -> Self {
        Map::default()
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Exact-spelling lookup (how variables resolve).
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// Case-insensitive lookup (how nats-server matches option names).
    pub fn get_ignore_case(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key.eq_ignore_ascii_case(key))
    }

    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.key == key)
    }

    /// Adds or replaces (same exact spelling) an entry.
    pub fn insert(&mut self, entry: Entry) {
        match self.entries.iter_mut().find(|e| e.key == entry.key) {
            Some(slot) => {
                slot.value = entry.value;
                slot.pos = entry.pos;
                slot.raw = entry.raw;
                slot.used_as_variable |= entry.used_as_variable;
            }
            None => self.entries.push(entry),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The text is not valid configuration syntax.
    Parse,
    /// A `$variable` is undefined, cyclic or its environment value does not parse.
    Variable,
    /// An `include` cannot be read or includes itself.
    Include,
    /// The file itself cannot be read.
    Io,
    /// The document parses but a value is wrong for its key.
    Invalid,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub kind: ErrorKind,
    pub pos: Pos,
    pub message: String,
}

impl ConfigError {
    pub fn new(kind: ErrorKind, pos: Pos, message: impl Into<String>) -> Self {
        ConfigError { kind, pos, message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.pos.file)?;
        if self.pos.line > 0 {
            write!(f, ":{}:{}", self.pos.line, self.pos.column)?;
        }
        if self.kind == ErrorKind::Parse {
            write!(f, ": Parse error: {}", self.message)
        } else {
            write!(f, ": {}", self.message)
        }
    }
}

impl std::error::Error for ConfigError {}
