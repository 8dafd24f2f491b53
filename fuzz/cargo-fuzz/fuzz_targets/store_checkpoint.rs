//! The store's checkpoint decoder on arbitrary bytes: it must not panic nor allocate for counts
//! it has not bounded by the bytes left, and a checkpoint it accepts must re-encode to exactly
//! the bytes it came from.

#![no_main]

use fjord_core::store::checkpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(cp) = checkpoint::decode(data) else {
        return;
    };
    let again = checkpoint::encode(
        cp.last_seq,
        cp.last_ts,
        (cp.tail, cp.tail_len),
        cp.last_record,
        &cp.blocks,
        cp.entries.iter().map(|(seq, e)| (*seq, e)),
    );
    assert_eq!(again, data, "re-encoding differs");
});
