//! The client-protocol parser on arbitrary bytes: it must not panic, and feeding the stream
//! whole, split in two at a point the input chooses, or one byte at a time must give the same
//! ops, the same error and the same number of bytes consumed.
//!
//! Input layout: byte 0 picks the limits (odd: defaults; even: small ones, so the control-line
//! and payload limits are reached by short inputs), bytes 1-2 the split point, the rest is the
//! stream.

#![no_main]

use fjord_core::proto::replay::check;
use fjord_core::proto::ParserConfig;
use libfuzzer_sys::fuzz_target;

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
    if let Err(why) = check(cfg, stream, &[split]) {
        panic!("{why}");
    }
});
