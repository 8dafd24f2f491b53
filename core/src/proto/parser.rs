//! The incremental client-protocol parser.
//!
//! (Being written: see the parser brief.)

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
    /// `CONNECT {json}`: the JSON text.
    Connect(&'a [u8]),
    /// `PUB` (headers `None`) or `HPUB` (headers `Some`, the whole header block).
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
    Unsub {
        sid: &'a [u8],
        max: Option<u64>,
    },
    Ping,
    Pong,
}

/// Why the parser gave up on a connection's byte stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    UnknownOp,
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
    /// before the next call. `Ok(None)`: more bytes are needed (nothing consumed).
    pub fn parse<'a>(
        &mut self,
        buf: &'a [u8],
    ) -> Result<Option<(ClientOp<'a>, usize)>, ParseError> {
        let _ = buf;
        todo!()
    }
}
