//! The incremental client-protocol parser.
//!
//! The parser is check-then-parse: [`Parser::parse`] looks at the front of the caller's read
//! buffer and either returns one complete op (borrowing from the buffer) with the number of bytes
//! it used, or says that more bytes are needed, consuming nothing. It keeps no bytes and almost
//! no state, so the caller may grow, drain or reallocate its buffer freely between calls.
//!
//! # What nats-server 2.15.1 does (observed on the running binary, one raw socket per case)
//!
//! Every [`ParseError`] closes the connection. [`ParseError::err_text`] tells whether nats-server
//! first sends `-ERR '<text>'`; `None` means it closes without a word.
//!
//! | client sends | nats-server | here |
//! |---|---|---|
//! | `FOO bar`, `X`, `MSG ..`, `HMSG ..`, `RS+ ..`, `LS+ ..`, `A+ ..`, a NUL, `PIG`, `PUBX ..` | `-ERR 'Unknown Protocol Operation'`, close (at the first byte that fits no op, before `\n`) | `UnknownOp` |
//! | empty line (`\r\n` or `\n`), `\r\r\n`, a leading space/TAB before the op | same | `UnknownOp` |
//! | `PUB\r\n`, `SUB\r\n`, `UNSUB\r\n`, `-ERR\r\n` (op not followed by space/TAB) | same | `UnknownOp` |
//! | `pub`, `PuB`, `sub`, `ping`, `connect`, `+ok` | accepted: op names are case-insensitive | ok |
//! | `PUB \t foo  \t bar\t 2`, trailing spaces/TABs | accepted: args split on runs of space/TAB | ok |
//! | bare `\n` ending a control line | accepted | ok |
//! | `PUB foo` (1 arg), `PUB foo a b 2` (4 args), `PUB \r\n` | close, no `-ERR` | `PubArgs` |
//! | `PUB foo x`, `-2`, `+2`, `2\r` before `\r\n`, or more than 9 digits (`0000000002` too) | close, no `-ERR` | `BadSize` |
//! | `PUB foo 1048577` (> max_payload; checked on the control line, before the payload) | `-ERR 'Maximum Payload Violation'`, close | `MaxPayload` |
//! | payload followed by anything but `\r\n` (`hiXX`, `hi\n`, `hi\rX`, `hi\r\r\n`) | `-ERR 'Unknown Protocol Operation'`, close | `MissingPayloadEnd` |
//! | `HPUB foo 12` (2 args), `HPUB foo a b 12 14` (5 args) | close, no `-ERR` | `HpubArgs` |
//! | `HPUB foo x 14`, `HPUB foo -1 14`, `HPUB foo 1 x` | close, no `-ERR` | `BadSize` |
//! | `HPUB foo 14 12` (hdr > total; wins over max_payload) | close, no `-ERR` | `HeaderSize` |
//! | `HPUB foo 12 1048577` | `-ERR 'Maximum Payload Violation'`, close | `MaxPayload` |
//! | `SUB foo` (1 arg), `SUB foo q 1 x` (4 args), `SUB \r\n` | close, no `-ERR` | `SubArgs` |
//! | `UNSUB \r\n`, `UNSUB 1 5 6` | close, no `-ERR` | `UnsubArgs` |
//! | `UNSUB 1 x`, `UNSUB 1 -5`, `UNSUB 1 0`, `UNSUB 1 1000000000` (10 digits) | accepted as an immediate unsubscribe | `max: None` |
//! | control line args longer than max_control_line (4096), with or without the `\n` yet | `-ERR 'maximum control line exceeded'`, close | `MaxControlLine` |
//! | `CONNECT`, `CONNECT x`, `CONNECT {bad`, `CONNECT 5` | close, no `-ERR` (JSON decode fails) | `Connect(json)`; the connection decodes it |
//! | `CONNECT{}` (no space), `CONNECT\t{..}`, `CONNECT {}   ` | accepted | `Connect(json)` |
//! | `INFO {}` / `INFO{}` from a client | accepted and ignored | `Info(json)` |
//! | `INFO`, `INFOX`, `INFO {bad`, `INFO 5` | close, no `-ERR` (JSON decode fails) | `Info(json)`; the connection decodes it |
//! | `+OK`, `+OKX`, `+OK x` | accepted and ignored (anything up to `\n` is skipped) | `Ok` |
//! | `-ERR 'x'` | close, no `-ERR` | `ClientErr` |
//! | `PINGX`, `PING x`, `PONGX` | accepted as PING/PONG (anything up to `\n` is skipped) | `Ping`/`Pong` |
//! | `HPUB ..` on a connection whose CONNECT lacked `headers:true` | close, no `-ERR` | not the parser's job |
//!
//! Where this parser departs from nats-server, on inputs no client sends:
//! - nats-server buffers nothing while it skips the whitespace after an op name or the rest of a
//!   PING/PONG/+OK line, so `PUB` + 5000 spaces + `foo 2` is accepted there. A check-then-parse
//!   parser must hold those bytes until the `\n`, so it bounds them too: a whitespace run after
//!   the op name longer than max_control_line is `MaxControlLine`, like an over-long argument.
//! - nats-server measures the control line per read (its check is "not exact" by its own
//!   comment). Here the measure is exact and independent of how the bytes were split: the
//!   arguments (after the op name and its whitespace, without the line ending) may be at most
//!   max_control_line bytes; at 4096 nats-server accepts and at 4097 it refuses, as here.
//! - `CONNECT\n` with no argument: nats-server takes the `\n` as the start of the argument and
//!   waits for another line; here it is `Connect(b"")`. Both end in a silent close.
//! - nats-server splits SUB/UNSUB/HPUB arguments on `\r` as well as space/TAB (`SUB foo\r1` is
//!   accepted) but PUB arguments on space/TAB only (`PUB foo\r2` closes). We do the same.

use memchr::memchr;

/// Limits the parser enforces while it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParserConfig {
    /// Longest control line accepted (nats-server's `max_control_line`, default 4096).
    pub max_control_line: usize,
    /// Largest PUB/HPUB payload (headers included) accepted (`max_payload`, default 1 MiB).
    pub max_payload: usize,
}

impl Default for ParserConfig {
    fn default() -> Self {
        ParserConfig { max_control_line: 4096, max_payload: 1024 * 1024 }
    }
}

/// One operation a client sent, borrowing from the read buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOp<'a> {
    /// `CONNECT {json}`: the JSON text, not yet validated. nats-server closes the connection
    /// without an `-ERR` when it does not decode (empty, `x`, `{bad`, `5`).
    Connect(&'a [u8]),
    /// `PUB` (headers `None`) or `HPUB` (headers `Some`, the whole header block).
    /// nats-server closes silently on an HPUB from a client whose CONNECT lacked `headers:true`.
    Pub {
        subject: &'a [u8],
        reply: Option<&'a [u8]>,
        headers: Option<&'a [u8]>,
        payload: &'a [u8],
    },
    Sub {
        subject: &'a [u8],
        queue: Option<&'a [u8]>,
        sid: &'a [u8],
    },
    /// `max: Some(n)` (n >= 1): unsubscribe after n messages. `None`: now; nats-server also
    /// unsubscribes at once when max is 0, negative, not a number or longer than 9 digits.
    Unsub {
        sid: &'a [u8],
        max: Option<u64>,
    },
    Ping,
    Pong,
    /// `INFO {json}` sent by a client: nats-server ignores it when the JSON decodes and closes
    /// silently when it does not.
    Info(&'a [u8]),
    /// `+OK` sent by a client: nats-server ignores it.
    Ok,
}

/// Why the parser gave up on a connection's byte stream.
///
/// Every `ParseError` closes the connection (verified against nats-server 2.15.1 for each
/// variant); [`ParseError::err_text`] says whether an `-ERR` goes out first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The bytes at the start of a line spell no op a client may send.
    UnknownOp,
    /// The control line's arguments (or the whitespace before them) are longer than
    /// `max_control_line`; raised as soon as that many bytes are buffered, `\n` or not.
    MaxControlLine,
    /// PUB/HPUB announced more than `max_payload` bytes.
    MaxPayload,
    /// The payload was not followed by `\r\n`.
    MissingPayloadEnd,
    /// PUB without 2 or 3 arguments.
    PubArgs,
    /// HPUB without 3 or 4 arguments.
    HpubArgs,
    /// SUB without 2 or 3 arguments.
    SubArgs,
    /// UNSUB without 1 or 2 arguments.
    UnsubArgs,
    /// A PUB/HPUB size that is not 1 to 9 ASCII digits.
    BadSize,
    /// HPUB whose header size exceeds its total size.
    HeaderSize,
    /// The client sent `-ERR ...`; nats-server closes the connection without a reply.
    ClientErr,
}

impl ParseError {
    /// The exact text nats-server sends as `-ERR '<text>'` before closing, or `None` when it
    /// closes without a word.
    pub fn err_text(&self) -> Option<&'static str> {
        match self {
            ParseError::UnknownOp | ParseError::MissingPayloadEnd => {
                Some("Unknown Protocol Operation")
            }
            ParseError::MaxControlLine => Some("maximum control line exceeded"),
            ParseError::MaxPayload => Some("Maximum Payload Violation"),
            ParseError::PubArgs
            | ParseError::HpubArgs
            | ParseError::SubArgs
            | ParseError::UnsubArgs
            | ParseError::BadSize
            | ParseError::HeaderSize
            | ParseError::ClientErr => None,
        }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            ParseError::UnknownOp => "unknown protocol operation",
            ParseError::MaxControlLine => "maximum control line exceeded",
            ParseError::MaxPayload => "maximum payload exceeded",
            ParseError::MissingPayloadEnd => "payload not followed by CRLF",
            ParseError::PubArgs => "PUB needs 2 or 3 arguments",
            ParseError::HpubArgs => "HPUB needs 3 or 4 arguments",
            ParseError::SubArgs => "SUB needs 2 or 3 arguments",
            ParseError::UnsubArgs => "UNSUB needs 1 or 2 arguments",
            ParseError::BadSize => "bad or missing size",
            ParseError::HeaderSize => "header size larger than total size",
            ParseError::ClientErr => "client sent -ERR",
        };
        f.write_str(text)
    }
}

impl std::error::Error for ParseError {}

/// Which op a line starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Pub,
    Hpub,
    Sub,
    Unsub,
    Connect,
    Info,
    Ping,
    Pong,
    Ok,
    Err,
}

impl Kind {
    /// nats-server requires a space or TAB right after these op names (`PUB\r\n` is an unknown
    /// op, `PUB \r\n` an argument error); CONNECT/INFO/PING/PONG/+OK take anything.
    fn needs_separator(self) -> bool {
        matches!(self, Kind::Pub | Kind::Hpub | Kind::Sub | Kind::Unsub | Kind::Err)
    }
}

#[inline]
fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Matches the op name at the front of `buf` byte by byte, case-insensitively, failing at the
/// first byte that fits no op (as nats-server does, without waiting for the `\n`).
#[inline]
fn op_name(buf: &[u8]) -> Result<Option<(Kind, usize)>, ParseError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let (kind, name): (Kind, &[u8]) = match first.to_ascii_uppercase() {
        b'P' => match buf.get(1).map(u8::to_ascii_uppercase) {
            None => return Ok(None),
            Some(b'U') => (Kind::Pub, b"PUB"),
            Some(b'I') => (Kind::Ping, b"PING"),
            Some(b'O') => (Kind::Pong, b"PONG"),
            Some(_) => return Err(ParseError::UnknownOp),
        },
        b'H' => (Kind::Hpub, b"HPUB"),
        b'S' => (Kind::Sub, b"SUB"),
        b'U' => (Kind::Unsub, b"UNSUB"),
        b'C' => (Kind::Connect, b"CONNECT"),
        b'I' => (Kind::Info, b"INFO"),
        b'+' => (Kind::Ok, b"+OK"),
        b'-' => (Kind::Err, b"-ERR"),
        _ => return Err(ParseError::UnknownOp),
    };
    for (i, &want) in name.iter().enumerate().skip(1) {
        match buf.get(i) {
            None => return Ok(None),
            Some(b) if b.to_ascii_uppercase() == want => {}
            Some(_) => return Err(ParseError::UnknownOp),
        }
    }
    if kind.needs_separator() {
        match buf.get(name.len()) {
            None => return Ok(None),
            Some(&b) if is_blank(b) => {}
            Some(_) => return Err(ParseError::UnknownOp),
        }
    }
    Ok(Some((kind, name.len())))
}

/// Splits `arg` on runs of separators into at most `out.len()` tokens; `None` if there are more.
/// `cr` adds `\r` to space/TAB, as nats-server's SUB/UNSUB/HPUB splitting does (PUB's does not).
#[inline]
fn split_args<'a>(arg: &'a [u8], out: &mut [&'a [u8]], cr: bool) -> Option<usize> {
    let is_sep = |b: u8| is_blank(b) || (cr && b == b'\r');
    let mut n = 0;
    let mut i = 0;
    loop {
        while i < arg.len() && is_sep(arg[i]) {
            i += 1;
        }
        if i == arg.len() {
            return Some(n);
        }
        let start = i;
        while i < arg.len() && !is_sep(arg[i]) {
            i += 1;
        }
        *out.get_mut(n)? = &arg[start..i];
        n += 1;
    }
}

/// nats-server's size rule: 1 to 9 ASCII digits (so no overflow is possible, even on 32-bit);
/// anything else, a sign or a 10th digit included, is no size.
#[inline]
fn parse_size(b: &[u8]) -> Option<usize> {
    if b.is_empty() || b.len() > 9 {
        return None;
    }
    let mut n = 0usize;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n * 10 + d as usize;
    }
    Some(n)
}

/// Checks that the payload ending at `end` is followed by `\r\n`, failing on the first wrong
/// byte already in `buf`. Returns the total bytes used, or `None` if they have not all arrived.
#[inline]
fn payload_end(buf: &[u8], end: usize) -> Result<Option<usize>, ParseError> {
    match buf.get(end) {
        None => return Ok(None),
        Some(b'\r') => {}
        Some(_) => return Err(ParseError::MissingPayloadEnd),
    }
    match buf.get(end + 1) {
        None => Ok(None),
        Some(b'\n') => Ok(Some(end + 2)),
        Some(_) => Err(ParseError::MissingPayloadEnd),
    }
}

/// The parser. It keeps no bytes of its own: the caller owns the read buffer.
#[derive(Debug)]
pub struct Parser {
    config: ParserConfig,
}

impl Parser {
    pub fn new(config: ParserConfig) -> Self {
        Parser { config }
    }

    pub fn config(&self) -> ParserConfig {
        self.config
    }

    /// Parses the next complete operation at the front of `buf`.
    ///
    /// `Ok(Some((op, used)))`: the op and how many bytes of `buf` it took; the caller drops them
    /// before the next call. `Ok(None)`: more bytes are needed (nothing consumed). `Err(_)`: the
    /// connection must be closed (after sending `-ERR` when [`ParseError::err_text`] says so).
    ///
    /// The outcome does not depend on how the stream was split into reads: a prefix of a stream
    /// gives either the same result as the whole or `Ok(None)`.
    pub fn parse<'a>(
        &mut self,
        buf: &'a [u8],
    ) -> Result<Option<(ClientOp<'a>, usize)>, ParseError> {
        let Some((kind, name_len)) = op_name(buf)? else {
            return Ok(None);
        };
        let mcl = self.config.max_control_line;
        // A line whose whitespace and arguments both fit in mcl has its `\n` within this window
        // (plus one byte for `\r`), so searching no further bounds the work on a line that never
        // ends, and a full window without `\n` is an over-long line however the bytes were split.
        let window = mcl.saturating_mul(2).saturating_add(2);
        let search_end = buf.len().min(name_len.saturating_add(window));
        let search = &buf[name_len..search_end];
        let Some(nl) = memchr(b'\n', search) else {
            if search.len() == window {
                return Err(ParseError::MaxControlLine);
            }
            // Not complete yet, but already too long? (The trailing `\r` may be the line end.)
            self.check_line(search)?;
            return Ok(None);
        };
        let arg = self.check_line(&search[..nl])?;
        let line_end = name_len + nl + 1;
        match kind {
            Kind::Pub => self.parse_pub(buf, arg, line_end),
            Kind::Hpub => self.parse_hpub(buf, arg, line_end),
            Kind::Sub => {
                let mut t: [&[u8]; 3] = [&[]; 3];
                let op = match split_args(arg, &mut t, true) {
                    Some(2) => ClientOp::Sub { subject: t[0], queue: None, sid: t[1] },
                    Some(3) => ClientOp::Sub { subject: t[0], queue: Some(t[1]), sid: t[2] },
                    _ => return Err(ParseError::SubArgs),
                };
                Ok(Some((op, line_end)))
            }
            Kind::Unsub => {
                let mut t: [&[u8]; 2] = [&[]; 2];
                let op = match split_args(arg, &mut t, true) {
                    Some(1) => ClientOp::Unsub { sid: t[0], max: None },
                    Some(2) => {
                        let max = parse_size(t[1]).filter(|&n| n > 0).map(|n| n as u64);
                        ClientOp::Unsub { sid: t[0], max }
                    }
                    _ => return Err(ParseError::UnsubArgs),
                };
                Ok(Some((op, line_end)))
            }
            Kind::Connect => Ok(Some((ClientOp::Connect(arg), line_end))),
            Kind::Info => Ok(Some((ClientOp::Info(arg), line_end))),
            Kind::Ping => Ok(Some((ClientOp::Ping, line_end))),
            Kind::Pong => Ok(Some((ClientOp::Pong, line_end))),
            Kind::Ok => Ok(Some((ClientOp::Ok, line_end))),
            Kind::Err => Err(ParseError::ClientErr),
        }
    }

    /// Given what follows the op name up to (not including) the `\n`, or all of it so far,
    /// drops one trailing `\r` and the leading whitespace, enforces max_control_line on both,
    /// and returns the arguments.
    #[inline]
    fn check_line<'a>(&self, rest: &'a [u8]) -> Result<&'a [u8], ParseError> {
        let rest = rest.strip_suffix(b"\r").unwrap_or(rest);
        let blanks = rest.iter().take_while(|&&b| is_blank(b)).count();
        let arg = &rest[blanks..];
        let mcl = self.config.max_control_line;
        if blanks > mcl || arg.len() > mcl {
            return Err(ParseError::MaxControlLine);
        }
        Ok(arg)
    }

    #[inline]
    fn parse_pub<'a>(
        &self,
        buf: &'a [u8],
        arg: &'a [u8],
        line_end: usize,
    ) -> Result<Option<(ClientOp<'a>, usize)>, ParseError> {
        let mut t: [&[u8]; 3] = [&[]; 3];
        let (subject, reply, size) = match split_args(arg, &mut t, false) {
            Some(2) => (t[0], None, t[1]),
            Some(3) => (t[0], Some(t[1]), t[2]),
            _ => return Err(ParseError::PubArgs),
        };
        let size = parse_size(size).ok_or(ParseError::BadSize)?;
        if size > self.config.max_payload {
            return Err(ParseError::MaxPayload);
        }
        let end = line_end.saturating_add(size);
        let Some(used) = payload_end(buf, end)? else {
            return Ok(None);
        };
        let payload = &buf[line_end..end];
        Ok(Some((ClientOp::Pub { subject, reply, headers: None, payload }, used)))
    }

    #[inline]
    fn parse_hpub<'a>(
        &self,
        buf: &'a [u8],
        arg: &'a [u8],
        line_end: usize,
    ) -> Result<Option<(ClientOp<'a>, usize)>, ParseError> {
        let mut t: [&[u8]; 4] = [&[]; 4];
        let (subject, reply, hdr, total) = match split_args(arg, &mut t, true) {
            Some(3) => (t[0], None, t[1], t[2]),
            Some(4) => (t[0], Some(t[1]), t[2], t[3]),
            _ => return Err(ParseError::HpubArgs),
        };
        let hdr = parse_size(hdr).ok_or(ParseError::BadSize)?;
        let total = parse_size(total).ok_or(ParseError::BadSize)?;
        // nats-server checks hdr <= total before max_payload (`HPUB foo 3000000 2000000` closes
        // silently rather than with the payload -ERR).
        if hdr > total {
            return Err(ParseError::HeaderSize);
        }
        if total > self.config.max_payload {
            return Err(ParseError::MaxPayload);
        }
        let end = line_end.saturating_add(total);
        let Some(used) = payload_end(buf, end)? else {
            return Ok(None);
        };
        let split = line_end + hdr;
        let op = ClientOp::Pub {
            subject,
            reply,
            headers: Some(&buf[line_end..split]),
            payload: &buf[split..end],
        };
        Ok(Some((op, used)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::replay::{self, Outcome, OwnedOp};
    use proptest::prelude::*;

    fn parser() -> Parser {
        Parser::new(ParserConfig::default())
    }

    /// Parses exactly one op that uses the whole input.
    fn one(input: &[u8]) -> ClientOp<'_> {
        match parser().parse(input) {
            Ok(Some((op, used))) => {
                assert_eq!(used, input.len(), "{:?}", String::from_utf8_lossy(input));
                op
            }
            other => panic!("{:?} -> {other:?}", String::from_utf8_lossy(input)),
        }
    }

    fn err(input: &[u8]) -> ParseError {
        match parser().parse(input) {
            Err(e) => e,
            other => panic!("{:?} -> {other:?}", String::from_utf8_lossy(input)),
        }
    }

    fn need_more(input: &[u8]) {
        assert_eq!(parser().parse(input), Ok(None), "{:?}", String::from_utf8_lossy(input));
    }

    fn publ<'a>(subject: &'a [u8], reply: Option<&'a [u8]>, payload: &'a [u8]) -> ClientOp<'a> {
        ClientOp::Pub { subject, reply, headers: None, payload }
    }

    // ---- valid ops ----

    #[test]
    fn pub_forms() {
        assert_eq!(one(b"PUB foo 2\r\nhi\r\n"), publ(b"foo", None, b"hi"));
        assert_eq!(one(b"PUB foo bar 2\r\nhi\r\n"), publ(b"foo", Some(b"bar"), b"hi"));
        assert_eq!(one(b"PUB foo 0\r\n\r\n"), publ(b"foo", None, b""));
        assert_eq!(one(b"pub foo 2\r\nhi\r\n"), publ(b"foo", None, b"hi"));
        assert_eq!(one(b"PuB foo 2\r\nhi\r\n"), publ(b"foo", None, b"hi"));
        assert_eq!(one(b"PUB \t foo  \t bar\t 2\r\nhi\r\n"), publ(b"foo", Some(b"bar"), b"hi"));
        assert_eq!(one(b"PUB\tfoo\t2\r\nhi\r\n"), publ(b"foo", None, b"hi"));
        assert_eq!(one(b"PUB foo 2  \r\nhi\r\n"), publ(b"foo", None, b"hi"));
        assert_eq!(one(b"PUB foo 2\nhi\r\n"), publ(b"foo", None, b"hi"));
        assert_eq!(one(b"PUB foo 002\r\nhi\r\n"), publ(b"foo", None, b"hi"));
        // The payload is opaque: CR, LF and protocol text inside it are data.
        assert_eq!(one(b"PUB foo 6\r\n\r\nPI\n\r\r\n"), publ(b"foo", None, b"\r\nPI\n\r"));
    }

    #[test]
    fn pub_leaves_the_next_op() {
        let buf = b"PUB foo 2\r\nhiPING\r\n";
        let mut p = parser();
        assert_eq!(p.parse(buf), Err(ParseError::MissingPayloadEnd));
        let buf = b"PUB foo 2\r\nhi\r\nPING\r\n";
        let (op, used) = p.parse(buf).unwrap().unwrap();
        assert_eq!(op, publ(b"foo", None, b"hi"));
        assert_eq!(p.parse(&buf[used..]), Ok(Some((ClientOp::Ping, 6))));
    }

    #[test]
    fn pub_at_max_payload() {
        let mut p = Parser::new(ParserConfig { max_control_line: 4096, max_payload: 3 });
        assert_eq!(p.parse(b"PUB a 3\r\nabc\r\n"), Ok(Some((publ(b"a", None, b"abc"), 14))));
        assert_eq!(p.parse(b"PUB a 4\r\n"), Err(ParseError::MaxPayload));
    }

    #[test]
    fn hpub_forms() {
        let hdr = b"NATS/1.0\r\n\r\n";
        assert_eq!(
            one(b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"),
            ClientOp::Pub { subject: b"foo", reply: None, headers: Some(hdr), payload: b"hi" }
        );
        assert_eq!(
            one(b"hpub foo r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"),
            ClientOp::Pub {
                subject: b"foo",
                reply: Some(b"r"),
                headers: Some(hdr),
                payload: b"hi"
            }
        );
        assert_eq!(
            one(b"HPUB foo 12 12\r\nNATS/1.0\r\n\r\n\r\n"),
            ClientOp::Pub { subject: b"foo", reply: None, headers: Some(hdr), payload: b"" }
        );
        // nats-server accepts an empty header block and does not look inside it.
        assert_eq!(
            one(b"HPUB foo 0 2\r\nhi\r\n"),
            ClientOp::Pub { subject: b"foo", reply: None, headers: Some(b""), payload: b"hi" }
        );
        // HPUB splits on CR too.
        assert_eq!(
            one(b"HPUB foo\r0 2\r\nhi\r\n"),
            ClientOp::Pub { subject: b"foo", reply: None, headers: Some(b""), payload: b"hi" }
        );
    }

    #[test]
    fn sub_forms() {
        let sub = |subject, queue, sid| ClientOp::Sub { subject, queue, sid };
        assert_eq!(one(b"SUB foo 1\r\n"), sub(b"foo", None, b"1"));
        assert_eq!(one(b"SUB foo q 1\r\n"), sub(b"foo", Some(&b"q"[..]), b"1"));
        assert_eq!(one(b"sub foo 1\n"), sub(b"foo", None, b"1"));
        assert_eq!(one(b"SUB\tfoo\t1\t \r\n"), sub(b"foo", None, b"1"));
        // nats-server splits SUB arguments on CR too: `SUB foo\r1` is accepted.
        assert_eq!(one(b"SUB foo\r1\r\n"), sub(b"foo", None, b"1"));
    }

    #[test]
    fn unsub_forms() {
        let unsub = |sid, max| ClientOp::Unsub { sid, max };
        assert_eq!(one(b"UNSUB 1\r\n"), unsub(b"1", None));
        assert_eq!(one(b"UNSUB 1 5\r\n"), unsub(b"1", Some(5)));
        assert_eq!(one(b"unsub\t1\t\t5  \r\n"), unsub(b"1", Some(5)));
        assert_eq!(one(b"UNSUB 1 999999999\r\n"), unsub(b"1", Some(999_999_999)));
        // nats-server unsubscribes at once for all of these.
        for max in ["0", "x", "-5", "1000000000", "99999999999999999999999"] {
            let line = format!("UNSUB 1 {max}\r\n");
            assert_eq!(one(line.as_bytes()), unsub(b"1", None), "{max}");
        }
    }

    #[test]
    fn ping_pong_ok_and_their_trailing_junk() {
        for (line, op) in [
            (&b"PING\r\n"[..], ClientOp::Ping),
            (b"ping\n", ClientOp::Ping),
            (b"pInG\r\r\n", ClientOp::Ping),
            (b"PINGX\r\n", ClientOp::Ping),
            (b"PING x\r\n", ClientOp::Ping),
            (b"PING \r\n", ClientOp::Ping),
            (b"PONG\r\n", ClientOp::Pong),
            (b"PONGX\r\n", ClientOp::Pong),
            (b"+OK\r\n", ClientOp::Ok),
            (b"+ok\r\n", ClientOp::Ok),
            (b"+OKX\r\n", ClientOp::Ok),
            (b"+OK x\r\n", ClientOp::Ok),
        ] {
            assert_eq!(one(line), op, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn connect_and_info_return_the_raw_json() {
        assert_eq!(
            one(b"CONNECT {\"verbose\":false}\r\n"),
            ClientOp::Connect(b"{\"verbose\":false}")
        );
        assert_eq!(one(b"connect {}\n"), ClientOp::Connect(b"{}"));
        assert_eq!(one(b"CONNECT{}\r\n"), ClientOp::Connect(b"{}"));
        assert_eq!(one(b"CONNECT\t {}   \r\n"), ClientOp::Connect(b"{}   "));
        assert_eq!(one(b"CONNECT { \"a\" : 1 }\r\n"), ClientOp::Connect(b"{ \"a\" : 1 }"));
        // Not the parser's call: these decode badly and the connection closes silently.
        assert_eq!(one(b"CONNECT\r\n"), ClientOp::Connect(b""));
        assert_eq!(one(b"CONNECT \r\n"), ClientOp::Connect(b""));
        assert_eq!(one(b"CONNECTX\r\n"), ClientOp::Connect(b"X"));
        assert_eq!(one(b"CONNECT {bad\r\n"), ClientOp::Connect(b"{bad"));
        assert_eq!(one(b"INFO {}\r\n"), ClientOp::Info(b"{}"));
        assert_eq!(one(b"INFO{}\r\n"), ClientOp::Info(b"{}"));
        assert_eq!(one(b"INFO\r\n"), ClientOp::Info(b""));
        assert_eq!(one(b"INFOX\r\n"), ClientOp::Info(b"X"));
    }

    #[test]
    fn ops_borrow_from_the_buffer() {
        let buf = b"PUB foo bar 2\r\nhi\r\n".to_vec();
        let Ok(Some((ClientOp::Pub { subject, payload, .. }, _))) = parser().parse(&buf) else {
            panic!()
        };
        assert_eq!(subject.as_ptr(), buf[4..].as_ptr());
        assert_eq!(payload.as_ptr(), buf[15..].as_ptr());
    }

    // ---- incomplete input ----

    #[test]
    fn every_proper_prefix_needs_more() {
        let ops: [&[u8]; 9] = [
            b"PUB foo bar 2\r\nhi\r\n",
            b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
            b"SUB foo q 1\r\n",
            b"UNSUB 1 5\r\n",
            b"PING\r\n",
            b"PONG\r\n",
            b"CONNECT {}\r\n",
            b"INFO {}\r\n",
            b"+OK\r\n",
        ];
        for op in ops {
            for cut in 0..op.len() {
                need_more(&op[..cut]);
            }
            one(op);
        }
    }

    // ---- errors, each as nats-server 2.15.1 answered ----

    #[test]
    fn unknown_ops() {
        for input in [
            &b"FOO bar\r\n"[..],
            b"X\r\n",
            b"X",
            b"\r\n",
            b"\n",
            b"\r\r\n",
            b" PING\r\n",
            b"  PUB foo 2\r\nhi\r\n",
            b"\0\r\n",
            b"PIN\r\n",
            b"PIG\r\n",
            b"PX",
            b"+O\r\n",
            b"-E\r\n",
            b"-ERR\r\n",
            b"-ERRX\r\n",
            b"CONNEC\r\n",
            b"PUBX foo 2\r\n",
            b"PUB\r\n",
            b"PUB\rfoo 2\r\n",
            b"HPUB\r\n",
            b"H\r\n",
            b"SUB\r\n",
            b"SUBX foo 1\r\n",
            b"UNSUB\r\n",
            // Server-to-client and route/leaf ops are not for clients.
            b"MSG foo 1 2\r\nhi\r\n",
            b"msg foo 1 2\r\nhi\r\n",
            b"HMSG foo 1 2 2\r\nhi\r\n",
            b"RMSG $G foo 2\r\nhi\r\n",
            b"RS+ $G foo\r\n",
            b"LS+ $G foo\r\n",
            b"A+ foo\r\n",
        ] {
            assert_eq!(err(input), ParseError::UnknownOp, "{:?}", String::from_utf8_lossy(input));
        }
        assert_eq!(ParseError::UnknownOp.err_text(), Some("Unknown Protocol Operation"));
    }

    #[test]
    fn unknown_op_is_found_before_the_newline() {
        assert_eq!(err(&[b'X'; 5000]), ParseError::UnknownOp);
        assert_eq!(err(b"PUX"), ParseError::UnknownOp);
    }

    #[test]
    fn pub_argument_errors_close_silently() {
        // `PUB foo\r2` is one argument: PUB does not split on CR.
        for input in [
            &b"PUB foo\r\n"[..],
            b"PUB \r\n",
            b"PUB foo bar baz 2\r\nhi\r\n",
            b"PUB foo\r2\r\nhi\r\n",
        ] {
            assert_eq!(err(input), ParseError::PubArgs, "{:?}", String::from_utf8_lossy(input));
        }
        for input in [
            &b"PUB foo x\r\n"[..],
            b"PUB foo -2\r\n",
            b"PUB foo +2\r\n",
            b"PUB foo 1000000000\r\n",
            b"PUB foo 0000000002\r\n",
            b"PUB foo 99999999999999999999999\r\n",
            // PUB does not split on CR, so the size is `2\r`; nats-server closes.
            b"PUB foo 2\r\r\nhi\r\n",
        ] {
            assert_eq!(err(input), ParseError::BadSize, "{:?}", String::from_utf8_lossy(input));
        }
        assert_eq!(ParseError::PubArgs.err_text(), None);
        assert_eq!(ParseError::BadSize.err_text(), None);
    }

    #[test]
    fn max_payload_is_checked_on_the_control_line() {
        assert_eq!(err(b"PUB foo 1048577\r\n"), ParseError::MaxPayload);
        assert_eq!(err(b"PUB foo 999999999\r\n"), ParseError::MaxPayload);
        assert_eq!(err(b"PUB foo x 2000000\r\n"), ParseError::MaxPayload);
        assert_eq!(err(b"HPUB foo 12 1048577\r\n"), ParseError::MaxPayload);
        need_more(b"PUB foo 1048576\r\n");
        assert_eq!(ParseError::MaxPayload.err_text(), Some("Maximum Payload Violation"));
    }

    #[test]
    fn payload_must_end_with_crlf() {
        for input in [
            &b"PUB foo 2\r\nhiXX"[..],
            b"PUB foo 2\r\nhiX",
            b"PUB foo 2\r\nhi\n",
            b"PUB foo 2\r\nhi\rX",
            b"PUB foo 2\r\nhi\r\r\n",
            b"PUB foo 2\r\nPING\r\n",
            b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhiX",
        ] {
            assert_eq!(
                err(input),
                ParseError::MissingPayloadEnd,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        need_more(b"PUB foo 2\r\nhi\r");
        assert_eq!(ParseError::MissingPayloadEnd.err_text(), Some("Unknown Protocol Operation"));
    }

    #[test]
    fn hpub_errors_close_silently() {
        for input in [&b"HPUB foo 12\r\n"[..], b"HPUB foo\r\n", b"HPUB foo a b 12 14\r\n"] {
            assert_eq!(err(input), ParseError::HpubArgs, "{:?}", String::from_utf8_lossy(input));
        }
        for input in [&b"HPUB foo x 14\r\n"[..], b"HPUB foo -1 14\r\n", b"HPUB foo 1 x\r\n"] {
            assert_eq!(err(input), ParseError::BadSize, "{:?}", String::from_utf8_lossy(input));
        }
        assert_eq!(err(b"HPUB foo 14 12\r\nNATS/1.0\r\n\r\nhi\r\n"), ParseError::HeaderSize);
        // hdr > total wins over max_payload, as in nats-server.
        assert_eq!(err(b"HPUB foo 3000000 2000000\r\n"), ParseError::HeaderSize);
        assert_eq!(ParseError::HpubArgs.err_text(), None);
        assert_eq!(ParseError::HeaderSize.err_text(), None);
    }

    #[test]
    fn sub_and_unsub_argument_errors_close_silently() {
        for input in [&b"SUB foo\r\n"[..], b"SUB \r\n", b"SUB foo q 1 x\r\n"] {
            assert_eq!(err(input), ParseError::SubArgs, "{:?}", String::from_utf8_lossy(input));
        }
        for input in [&b"UNSUB \r\n"[..], b"UNSUB 1 5 6\r\n"] {
            assert_eq!(err(input), ParseError::UnsubArgs, "{:?}", String::from_utf8_lossy(input));
        }
        assert_eq!(ParseError::SubArgs.err_text(), None);
        assert_eq!(ParseError::UnsubArgs.err_text(), None);
    }

    #[test]
    fn client_err_closes_silently() {
        assert_eq!(err(b"-ERR 'x'\r\n"), ParseError::ClientErr);
        assert_eq!(err(b"-err 'x'\n"), ParseError::ClientErr);
        assert_eq!(err(b"-ERR \r\n"), ParseError::ClientErr);
        need_more(b"-ERR 'x'");
        assert_eq!(ParseError::ClientErr.err_text(), None);
    }

    #[test]
    fn control_line_limit_matches_the_server_boundary() {
        // Arguments of exactly 4096 bytes pass and 4097 fail, as on nats-server.
        let sub = |n: usize, sp: &str, end: &str| {
            format!("SUB{sp}{} 1{end}", "a".repeat(n - 2)).into_bytes()
        };
        assert!(matches!(parser().parse(&sub(4096, " ", "\r\n")), Ok(Some(_))));
        assert!(matches!(parser().parse(&sub(4096, "  ", "\n")), Ok(Some(_))));
        assert_eq!(err(&sub(4097, " ", "\r\n")), ParseError::MaxControlLine);
        assert_eq!(err(&sub(4097, " ", "\n")), ParseError::MaxControlLine);
        // Without the newline: raised as soon as the limit is passed, not buffered forever.
        let mut long = b"PUB ".to_vec();
        long.extend_from_slice(&[b'a'; 4096]);
        need_more(&long);
        long.push(b'\r');
        need_more(&long);
        long.pop();
        long.push(b'a');
        assert_eq!(err(&long), ParseError::MaxControlLine);
        let mut pub_line = b"PUB ".to_vec();
        pub_line.extend_from_slice(&[b'a'; 5000]);
        pub_line.extend_from_slice(b" 2\r\nhi\r\n");
        assert_eq!(err(&pub_line), ParseError::MaxControlLine);
        let connect = format!("CONNECT {{\"name\":\"{}\"}}\r\n", "a".repeat(5000));
        assert_eq!(err(connect.as_bytes()), ParseError::MaxControlLine);
        assert_eq!(ParseError::MaxControlLine.err_text(), Some("maximum control line exceeded"));
    }

    #[test]
    fn long_whitespace_is_bounded_too() {
        // A departure from nats-server (which accepts these): see the module docs.
        let ping = format!("PING{}\r\n", " ".repeat(5000));
        assert_eq!(err(ping.as_bytes()), ParseError::MaxControlLine);
        let ping = format!("PING{}", " ".repeat(5000));
        assert_eq!(err(ping.as_bytes()), ParseError::MaxControlLine);
        let publ = format!("PUB{}foo 2\r\nhi\r\n", " ".repeat(5000));
        assert_eq!(err(publ.as_bytes()), ParseError::MaxControlLine);
    }

    #[test]
    fn extreme_limits_do_not_overflow() {
        let mut p =
            Parser::new(ParserConfig { max_control_line: usize::MAX, max_payload: usize::MAX });
        assert_eq!(p.parse(b"PUB foo 999999999\r\n"), Ok(None));
        assert_eq!(p.parse(b"PUB foo 2\r\nhi\r\n"), Ok(Some((publ(b"foo", None, b"hi"), 15))));
        let mut p = Parser::new(ParserConfig { max_control_line: 0, max_payload: 0 });
        assert_eq!(p.parse(b"PING\r\n"), Ok(Some((ClientOp::Ping, 6))));
        assert_eq!(p.parse(b"PING \r\n"), Err(ParseError::MaxControlLine));
        assert_eq!(p.parse(b"PUB a 0\r\n"), Err(ParseError::MaxControlLine));
    }

    // ---- property tests ----

    /// An op the generator made, owning its bytes.
    type Owned = OwnedOp;

    /// How one op is spelled on the wire: op-name case, whitespace runs, line endings.
    #[derive(Clone, Debug)]
    struct Style {
        upper: Vec<bool>,
        blanks: Vec<Vec<u8>>,
        crlf: bool,
    }

    impl Style {
        fn name(&self, name: &str, out: &mut Vec<u8>) {
            for (i, c) in name.bytes().enumerate() {
                let up = self.upper.get(i).copied().unwrap_or(true);
                out.push(if up { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() });
            }
        }
        fn blank(&self, i: usize, out: &mut Vec<u8>) {
            match self.blanks.get(i) {
                Some(b) if !b.is_empty() => out.extend_from_slice(b),
                _ => out.push(b' '),
            }
        }
        fn end(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(if self.crlf { b"\r\n" } else { b"\n" });
        }
    }

    fn encode(op: &Owned, s: &Style, out: &mut Vec<u8>) {
        let args = |name: &str, args: &[&[u8]], out: &mut Vec<u8>| {
            s.name(name, out);
            for (i, a) in args.iter().enumerate() {
                s.blank(i, out);
                out.extend_from_slice(a);
            }
            s.end(out);
        };
        match op {
            Owned::Connect(j) => args("connect", &[j], out),
            Owned::Info(j) => args("info", &[j], out),
            Owned::Pub { subject, reply, headers: None, payload } => {
                let size = payload.len().to_string();
                let mut a: Vec<&[u8]> = vec![subject];
                a.extend(reply.as_deref());
                a.push(size.as_bytes());
                args("pub", &a, out);
                out.extend_from_slice(payload);
                out.extend_from_slice(b"\r\n");
            }
            Owned::Pub { subject, reply, headers: Some(h), payload } => {
                let hdr = h.len().to_string();
                let total = (h.len() + payload.len()).to_string();
                let mut a: Vec<&[u8]> = vec![subject];
                a.extend(reply.as_deref());
                a.push(hdr.as_bytes());
                a.push(total.as_bytes());
                args("hpub", &a, out);
                out.extend_from_slice(h);
                out.extend_from_slice(payload);
                out.extend_from_slice(b"\r\n");
            }
            Owned::Sub { subject, queue, sid } => {
                let mut a: Vec<&[u8]> = vec![subject];
                a.extend(queue.as_deref());
                a.push(sid);
                args("sub", &a, out);
            }
            Owned::Unsub { sid, max } => {
                let max = max.map(|m| m.to_string());
                let mut a: Vec<&[u8]> = vec![sid];
                a.extend(max.as_deref().map(str::as_bytes));
                args("unsub", &a, out);
            }
            Owned::Ping => args("ping", &[], out),
            Owned::Pong => args("pong", &[], out),
            Owned::Ok => args("+ok", &[], out),
        }
    }

    fn token() -> impl Strategy<Value = Vec<u8>> {
        proptest::string::string_regex("[A-Za-z0-9_.$*>-]{1,12}")
            .unwrap()
            .prop_map(String::into_bytes)
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }

    fn json() -> impl Strategy<Value = Vec<u8>> {
        proptest::string::string_regex(r#"\{[a-z":,0-9 \t]{0,20}\}"#)
            .unwrap()
            .prop_map(String::into_bytes)
    }

    fn op() -> impl Strategy<Value = Owned> {
        prop_oneof![
            json().prop_map(Owned::Connect),
            json().prop_map(Owned::Info),
            (token(), proptest::option::of(token()), bytes(64)).prop_map(
                |(subject, reply, payload)| {
                    Owned::Pub { subject, reply, headers: None, payload }
                }
            ),
            (token(), proptest::option::of(token()), bytes(32), bytes(32)).prop_map(
                |(subject, reply, h, payload)| Owned::Pub {
                    subject,
                    reply,
                    headers: Some(h),
                    payload
                }
            ),
            (token(), proptest::option::of(token()), token())
                .prop_map(|(subject, queue, sid)| Owned::Sub { subject, queue, sid }),
            (token(), proptest::option::of(1u64..1_000_000_000))
                .prop_map(|(sid, max)| Owned::Unsub { sid, max }),
            Just(Owned::Ping),
            Just(Owned::Pong),
            Just(Owned::Ok),
        ]
    }

    fn style() -> impl Strategy<Value = Style> {
        let blank = proptest::collection::vec(prop_oneof![Just(b' '), Just(b'\t')], 1..4);
        (
            proptest::collection::vec(any::<bool>(), 7),
            proptest::collection::vec(blank, 4),
            any::<bool>(),
        )
            .prop_map(|(upper, blanks, crlf)| Style { upper, blanks, crlf })
    }

    /// Everything parsed from `stream` fed whole: the ops, then the error if one stopped it.
    fn parse_whole(cfg: ParserConfig, stream: &[u8]) -> Outcome {
        replay::parse_whole(cfg, stream).expect("every op consumes bytes it was given")
    }

    /// The same, fed in chunks cut at `cuts` (any values: taken modulo the length, sorted).
    fn parse_chunked(cfg: ParserConfig, stream: &[u8], cuts: &[usize]) -> Outcome {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.sort_unstable();
        replay::parse_chunked(cfg, stream, &cuts).expect("every op consumes bytes it was given")
    }

    const SMALL: ParserConfig = ParserConfig { max_control_line: 64, max_payload: 128 };

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn valid_streams_parse_the_same_whole_or_split(
            ops in proptest::collection::vec((op(), style()), 0..24),
            cuts in proptest::collection::vec(any::<usize>(), 0..16),
        ) {
            let mut stream = Vec::new();
            for (op, s) in &ops {
                encode(op, s, &mut stream);
            }
            let want: Vec<Owned> = ops.into_iter().map(|(op, _)| op).collect();
            let whole = parse_whole(ParserConfig::default(), &stream);
            prop_assert_eq!(&whole, &(want, None, stream.len()));
            prop_assert_eq!(parse_chunked(ParserConfig::default(), &stream, &cuts), whole);
        }

        #[test]
        fn garbage_never_panics_and_splits_agree(
            stream in bytes(512),
            cuts in proptest::collection::vec(any::<usize>(), 0..16),
        ) {
            let whole = parse_whole(SMALL, &stream);
            prop_assert_eq!(parse_chunked(SMALL, &stream, &cuts), whole);
        }

        #[test]
        fn mutated_streams_never_panic_and_splits_agree(
            ops in proptest::collection::vec((op(), style()), 1..12),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..6),
            cuts in proptest::collection::vec(any::<usize>(), 0..16),
        ) {
            let mut stream = Vec::new();
            for (op, s) in &ops {
                encode(op, s, &mut stream);
            }
            for (at, byte, how) in edits {
                let at = at % (stream.len() + 1);
                match how {
                    0 if at < stream.len() => stream[at] = byte,
                    1 if at < stream.len() => { stream.remove(at); }
                    _ => stream.insert(at, byte),
                }
            }
            for cfg in [ParserConfig::default(), SMALL] {
                let whole = parse_whole(cfg, &stream);
                prop_assert_eq!(parse_chunked(cfg, &stream, &cuts), whole);
            }
        }
    }
}
