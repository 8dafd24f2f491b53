//! The client-protocol parser on arbitrary bytes: it must not panic, and feeding the stream
//! whole, split in two at a point the input chooses, or one byte at a time must give the same
//! ops, the same error and the same number of bytes consumed.
//!
//! Input layout: byte 0 picks the limits (odd: defaults; even: small ones, so the control-line
//! and payload limits are reached by short inputs), bytes 1-2 the split point, the rest is the
//! stream.

#![no_main]

use fjord_core::proto::{ParseError, Parser, ParserConfig};
use libfuzzer_sys::fuzz_target;

/// Ops rendered with Debug (owning, comparable across buffers), the error, the bytes consumed.
type Outcome = (Vec<String>, Option<ParseError>, usize);

/// Feeds `stream` in chunks ending at each of `cuts` (then the end), like a connection: append,
/// parse every complete op, drop what was used.
fn run(cfg: ParserConfig, stream: &[u8], cuts: &[usize]) -> Outcome {
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
                    assert!(used > 0 && used <= buf.len() - at, "{op:?} claims {used} bytes");
                    ops.push(format!("{op:?}"));
                    at += used;
                }
                Ok(None) => break,
                Err(e) => return (ops, Some(e), consumed + at),
            }
        }
        buf.drain(..at);
        consumed += at;
    }
    (ops, None, consumed)
}

fuzz_target!(|data: &[u8]| {
    let Some((&[limits, s0, s1], stream)) = data.split_first_chunk::<3>() else {
        return;
    };
    let cfg = if limits & 1 == 1 {
        ParserConfig::default()
    } else {
        ParserConfig { max_control_line: usize::from(limits >> 1), max_payload: usize::from(s0) }
    };
    let split = usize::from(u16::from_le_bytes([s0, s1])) % (stream.len() + 1);
    let whole = run(cfg, stream, &[]);
    assert_eq!(run(cfg, stream, &[split]), whole, "split at {split}");
    if stream.len() <= 1024 {
        let every: Vec<usize> = (1..stream.len()).collect();
        assert_eq!(run(cfg, stream, &every), whole, "byte by byte");
    }
});
