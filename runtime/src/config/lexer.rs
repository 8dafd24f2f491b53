//! Character-level scanning for the configuration language.
//!
//! The language is context sensitive (`a:b` is a key and separator at the start of an entry but
//! one bare string after a separator), so instead of a token stream the lexer offers one scanning
//! method per context and the parser picks the right one.

/// A scanning failure at a 1-based line and column of the current text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LexError {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

#[derive(Clone)]
pub struct Cursor<'a> {
    text: &'a str,
    offset: usize,
    line: u32,
    column: u32,
}

/// What an unquoted value turned out to be.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    String(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl<'a> Cursor<'a> {
    pub fn new(text: &'a str) -> Self {
        // A byte-order mark is not content; editors on some systems add one.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Cursor { text, offset: 0, line: 1, column: 1 }
    }

    pub fn line(&self) -> u32 {
        self.line
    }

    pub fn column(&self) -> u32 {
        self.column
    }

    pub fn error(&self, message: impl Into<String>) -> LexError {
        LexError { line: self.line, column: self.column, message: message.into() }
    }

    pub fn peek(&self) -> Option<char> {
        self.text[self.offset..].chars().next()
    }

    pub fn peek_second(&self) -> Option<char> {
        let mut chars = self.text[self.offset..].chars();
        chars.next();
        chars.next()
    }

    pub fn at_eof(&self) -> bool {
        self.offset >= self.text.len()
    }

    pub fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.offset += c.len_utf8();
        if c == '\n' {
            self.line = self.line.saturating_add(1);
            self.column = 1;
        } else {
            self.column = self.column.saturating_add(1);
        }
        Some(c)
    }

    fn at_comment(&self) -> bool {
        match self.peek() {
            Some('#') => true,
            Some('/') => self.peek_second() == Some('/'),
            _ => false,
        }
    }

    /// Skips spaces, tabs and carriage returns, and a comment running to the end of the line.
    /// Stops at a newline, so the caller can treat it as a separator.
    pub fn skip_inline(&mut self) {
        while let Some(c) = self.peek() {
            if c == ' ' || c == '\t' || c == '\r' {
                self.bump();
            } else if self.at_comment() {
                while let Some(c) = self.peek() {
                    if c == '\n' {
                        break;
                    }
                    self.bump();
                }
            } else {
                break;
            }
        }
    }

    /// Skips whitespace, newlines and comments.
    pub fn skip_all(&mut self) {
        loop {
            self.skip_inline();
            if self.peek() == Some('\n') {
                self.bump();
            } else {
                break;
            }
        }
    }

    /// Reads a run of characters up to (not including) the first for which `stop` holds.
    pub fn read_until(&mut self, stop: impl Fn(char) -> bool) -> &'a str {
        let start = self.offset;
        while let Some(c) = self.peek() {
            if stop(c) {
                break;
            }
            self.bump();
        }
        &self.text[start..self.offset]
    }

    /// Reads a `"`-quoted string whose opening quote is the current character.
    /// nats-server allows only `\t \n \r \" \\ \xXX` escapes; anything else is an error.
    pub fn read_double_quoted(&mut self) -> Result<String, LexError> {
        let open = self.error("unterminated quoted string");
        self.bump();
        let mut out = String::new();
        loop {
            // An escape error points at its backslash.
            let at = self.error("");
            match self.bump() {
                None => return Err(open),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('t') => out.push('\t'),
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('x') => {
                        let hi = self.bump().and_then(|c| c.to_digit(16));
                        let lo = self.bump().and_then(|c| c.to_digit(16));
                        match (hi, lo) {
                            (Some(hi), Some(lo)) => out.push(char::from((hi * 16 + lo) as u8)),
                            _ => {
                                return Err(LexError {
                                    message: "\\x must be followed by two hex digits".into(),
                                    ..at
                                })
                            }
                        }
                    }
                    Some(c) => {
                        return Err(LexError {
                            message: format!(
                            "invalid escape character '{}' (allowed: \\t \\n \\r \\\" \\\\ \\xXX)",
                            c.escape_debug()
                        ),
                            ..at
                        })
                    }
                    None => return Err(open),
                },
                Some(c) => out.push(c),
            }
        }
    }

    /// Reads a `'`-quoted string: no escapes at all.
    pub fn read_single_quoted(&mut self) -> Result<String, LexError> {
        let open = self.error("unterminated quoted string");
        self.bump();
        let body = self.read_until(|c| c == '\'');
        if self.bump().is_none() {
            return Err(open);
        }
        Ok(body.to_string())
    }

    /// After a `(` that ends its line: the lines up to one holding only `)` form a multi-line
    /// string (nats-server's block strings).
    pub fn read_block_string(&mut self) -> Result<String, LexError> {
        let open = self.error("unterminated block string: expected a line holding only ')'");
        let mut lines = Vec::new();
        loop {
            if self.at_eof() {
                return Err(open);
            }
            let line = self.read_until(|c| c == '\n');
            if line.trim() == ")" {
                // The newline after `)` ends the entry, so it is left for the parser.
                return Ok(lines.join("\n"));
            }
            self.bump();
            lines.push(line.strip_suffix('\r').unwrap_or(line));
        }
    }
}

/// The multiplier for a size suffix: single letters are powers of 1000, `kb`/`ki`/`kib` and
/// friends are powers of 1024. Matched case-insensitively.
fn suffix_multiplier(suffix: &str) -> Option<i64> {
    const K: i64 = 1000;
    const KI: i64 = 1024;
    let s = suffix.to_ascii_lowercase();
    let m = match s.as_str() {
        "" => 1,
        "k" => K,
        "m" => K.pow(2),
        "g" => K.pow(3),
        "t" => K.pow(4),
        "p" => K.pow(5),
        "e" => K.pow(6),
        "kb" | "ki" | "kib" => KI,
        "mb" | "mi" | "mib" => KI.pow(2),
        "gb" | "gi" | "gib" => KI.pow(3),
        "tb" | "ti" | "tib" => KI.pow(4),
        "pb" | "pi" | "pib" => KI.pow(5),
        "eb" | "ei" | "eib" => KI.pow(6),
        _ => return None,
    };
    Some(m)
}

/// Classifies an unquoted value: a boolean word, an integer (optionally with a size suffix),
/// a float, or else a string. Anything that merely starts like a number (`1.2.3`, `10s`, `1b`)
/// is a string, as in nats-server. An integer too large for i64 is an error.
pub fn classify_bare(text: &str) -> Result<Scalar, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => return Ok(Scalar::Bool(true)),
        "false" | "no" | "off" => return Ok(Scalar::Bool(false)),
        _ => {}
    }
    let digits_start = usize::from(text.starts_with('-'));
    let rest = &text[digits_start..];
    let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    if int_len == 0 {
        return Ok(Scalar::String(text.to_string()));
    }
    let after = &rest[int_len..];
    if let Some(frac) = after.strip_prefix('.') {
        if !frac.is_empty() && frac.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(f) = text.parse::<f64>() {
                return Ok(Scalar::Float(f));
            }
        }
        return Ok(Scalar::String(text.to_string()));
    }
    let Some(multiplier) = suffix_multiplier(after) else {
        return Ok(Scalar::String(text.to_string()));
    };
    let out_of_range = || format!("integer '{text}' is out of range");
    let number: i64 = text[..digits_start + int_len].parse().map_err(|_| out_of_range())?;
    number.checked_mul(multiplier).map(Scalar::Integer).ok_or_else(out_of_range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_suffixes() {
        let cases: &[(&str, i64)] = &[
            ("1k", 1000),
            ("1K", 1000),
            ("1kb", 1024),
            ("1KiB", 1024),
            ("1ki", 1024),
            ("1m", 1_000_000),
            ("1MB", 1_048_576),
            ("1mi", 1_048_576),
            ("2g", 2_000_000_000),
            ("1gb", 1 << 30),
            ("1gib", 1 << 30),
            ("1t", 1_000_000_000_000),
            ("1tb", 1 << 40),
            ("1pb", 1 << 50),
            ("1e", 1_000_000_000_000_000_000),
            ("1eb", 1 << 60),
            ("-1k", -1000),
            ("007", 7),
            ("9223372036854775807", i64::MAX),
        ];
        for (text, want) in cases {
            assert_eq!(classify_bare(text), Ok(Scalar::Integer(*want)), "{text}");
        }
    }

    #[test]
    fn strings_that_look_like_numbers() {
        for text in [
            "1b", "1x", "10s", "2m30s", "1e5", "1kk", "1k2", "+5", "0x10", "1_000", "1.2.3", "5.",
            "-",
        ] {
            assert_eq!(classify_bare(text), Ok(Scalar::String(text.to_string())), "{text}");
        }
    }

    #[test]
    fn out_of_range_integers() {
        assert!(classify_bare("9223372036854775808").is_err());
        assert!(classify_bare("9999999999999999999k").is_err());
        assert!(classify_bare("10eb").is_err());
    }

    #[test]
    fn floats_and_booleans() {
        assert_eq!(classify_bare("1.5"), Ok(Scalar::Float(1.5)));
        assert_eq!(classify_bare("-0.25"), Ok(Scalar::Float(-0.25)));
        for t in ["true", "TRUE", "Yes", "on", "ON"] {
            assert_eq!(classify_bare(t), Ok(Scalar::Bool(true)), "{t}");
        }
        for f in ["false", "No", "off", "OFF"] {
            assert_eq!(classify_bare(f), Ok(Scalar::Bool(false)), "{f}");
        }
    }

    #[test]
    fn quoted_strings() {
        let mut c = Cursor::new(r#""a\tb\x41\"\\" rest"#);
        assert_eq!(c.read_double_quoted().unwrap(), "a\tbA\"\\");
        let mut c = Cursor::new(r"'a\tb'");
        assert_eq!(c.read_single_quoted().unwrap(), r"a\tb");
        let mut c = Cursor::new(r#""a\qb""#);
        let err = c.read_double_quoted().unwrap_err();
        assert_eq!((err.line, err.column), (1, 3));
        let mut c = Cursor::new("\"abc\n");
        assert!(c.read_double_quoted().is_err());
        let mut c = Cursor::new(r#""\x4""#);
        assert!(c.read_double_quoted().is_err());
    }

    #[test]
    fn positions_count_characters_from_one() {
        let mut c = Cursor::new("\u{feff}é\nab");
        assert_eq!((c.line(), c.column()), (1, 1));
        c.bump();
        assert_eq!((c.line(), c.column()), (1, 2));
        c.bump();
        assert_eq!((c.line(), c.column()), (2, 1));
    }
}
