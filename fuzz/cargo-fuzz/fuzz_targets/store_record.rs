//! The store's record decoder on arbitrary bytes: it must not panic (nor allocate for a length
//! it has not checked), and a record that passes both checksums must be exactly what the
//! encoder makes of what it decoded to: nothing the checksums accept is read differently from
//! how it was written.

#![no_main]

use fjord_core::store::record::{self, Body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = record::decode(data, false);
    let Ok((header, body)) = record::decode(data, true) else {
        return;
    };
    let mut again = Vec::new();
    let n = record::encode(header.seq, &body, &mut again);
    assert_eq!(n, header.record_len());
    match body {
        // An erased record's filler is not data: only its timestamp and length are read back.
        Body::Erased { .. } => assert_eq!(again.len(), header.record_len()),
        _ => assert_eq!(&again[..], &data[..header.record_len()], "re-encoding differs"),
    }
});
