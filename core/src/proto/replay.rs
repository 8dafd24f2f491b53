//! Feeding a byte stream to the parser the ways a connection can receive it, for the parser's
//! property tests and the fuzzers: whole, or in chunks ending at given cuts. Any split of the
//! stream must give the same ops, the same error and the same number of bytes consumed.

use super::parser::{ClientOp, ParseError, Parser, ParserConfig};

/// An op with its own bytes, so results from different buffers compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedOp {
    Connect(Vec<u8>),
    Pub { subject: Vec<u8>, reply: Option<Vec<u8>>, headers: Option<Vec<u8>>, payload: Vec<u8> },
    Sub { subject: Vec<u8>, queue: Option<Vec<u8>>, sid: Vec<u8> },
    Unsub { sid: Vec<u8>, max: Option<u64> },
    Ping,
    Pong,
    Info(Vec<u8>),
    Ok,
}

impl From<ClientOp<'_>> for OwnedOp {
    fn from(op: ClientOp<'_>) -> Self {
        match op {
            ClientOp::Connect(j) => OwnedOp::Connect(j.to_vec()),
            ClientOp::Pub { subject, reply, headers, payload } => OwnedOp::Pub {
                subject: subject.to_vec(),
                reply: reply.map(<[u8]>::to_vec),
                headers: headers.map(<[u8]>::to_vec),
                payload: payload.to_vec(),
            },
            ClientOp::Sub { subject, queue, sid } => OwnedOp::Sub {
                subject: subject.to_vec(),
                queue: queue.map(<[u8]>::to_vec),
                sid: sid.to_vec(),
            },
            ClientOp::Unsub { sid, max } => OwnedOp::Unsub { sid: sid.to_vec(), max },
            ClientOp::Ping => OwnedOp::Ping,
            ClientOp::Pong => OwnedOp::Pong,
            ClientOp::Info(j) => OwnedOp::Info(j.to_vec()),
            ClientOp::Ok => OwnedOp::Ok,
        }
    }
}

/// What a stream parsed to: the ops, the error that stopped it (if any), the bytes consumed.
pub type Outcome = (Vec<OwnedOp>, Option<ParseError>, usize);

/// Parses the stream handed over whole.
pub fn parse_whole(cfg: ParserConfig, stream: &[u8]) -> Result<Outcome, String> {
    let mut p = Parser::new(cfg);
    let mut ops = Vec::new();
    let mut at = 0;
    loop {
        match p.parse(&stream[at..]) {
            Ok(Some((op, used))) => {
                if used == 0 || used > stream.len() - at {
                    return Err(format!("op {op:?} claims {used} bytes of {}", stream.len() - at));
                }
                ops.push(op.into());
                at += used;
            }
            Ok(None) => return Ok((ops, None, at)),
            Err(e) => return Ok((ops, Some(e), at)),
        }
    }
}

/// Parses the stream the way a connection reads it: append a chunk (ending at each cut), parse
/// every complete op, drop the bytes used.
pub fn parse_chunked(cfg: ParserConfig, stream: &[u8], cuts: &[usize]) -> Result<Outcome, String> {
    let mut p = Parser::new(cfg);
    let mut buf = Vec::new();
    let mut ops = Vec::new();
    let mut fed = 0;
    let mut consumed = 0;
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        let cut = cut.clamp(fed, stream.len());
        buf.extend_from_slice(&stream[fed..cut]);
        fed = cut;
        let mut at = 0;
        loop {
            match p.parse(&buf[at..]) {
                Ok(Some((op, used))) => {
                    if used == 0 || used > buf.len() - at {
                        return Err(format!("op {op:?} claims {used} bytes of {}", buf.len() - at));
                    }
                    ops.push(op.into());
                    at += used;
                }
                Ok(None) => break,
                Err(e) => return Ok((ops, Some(e), consumed + at)),
            }
        }
        buf.drain(..at);
        consumed += at;
    }
    Ok((ops, None, consumed))
}

/// Checks one stream: whole vs. chunked at `cuts` (sorted) vs. one byte at a time for short ones.
pub fn check(cfg: ParserConfig, stream: &[u8], cuts: &[usize]) -> Result<Outcome, String> {
    let whole = parse_whole(cfg, stream)?;
    let chunked = parse_chunked(cfg, stream, cuts)?;
    if chunked != whole {
        return Err(format!("split at {cuts:?} gave {chunked:?}, whole gave {whole:?}"));
    }
    if stream.len() <= 2048 {
        let bytewise: Vec<usize> = (1..stream.len()).collect();
        let one_by_one = parse_chunked(cfg, stream, &bytewise)?;
        if one_by_one != whole {
            return Err(format!("byte by byte gave {one_by_one:?}, whole gave {whole:?}"));
        }
    }
    Ok(whole)
}
