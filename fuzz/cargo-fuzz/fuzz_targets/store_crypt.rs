//! The encrypted store's decoders on arbitrary bytes, under a fixed key. Byte 0 picks:
//! - 0: the rest as a sealed record (CRCs, then AEAD, then decompression and body decoding);
//! - 1: the rest as a block key file and as a sealed checkpoint file;
//! - otherwise: byte 1 is a kind, bytes 2..10 a sequence, the rest `flag | body` plaintext,
//!   sealed under the key so that the fuzzer reaches what lies behind the AEAD (snappy and the
//!   body decoder) with arbitrary plaintext; a raw (`flag` 0) body must decode exactly as the
//!   plain decoder reads the same body.
//!
//! Nothing may panic or allocate for an unchecked length.

#![no_main]

use fjord_core::store::crypt::{self, Cipher, Crypt, Encryption, StoreKey};
use fjord_core::store::record::{self, Kind};
use libfuzzer_sys::fuzz_target;

fn crypt() -> Crypt {
    Crypt::new(&Encryption {
        key: StoreKey::from_bytes([7; 32]),
        cipher: Cipher::ChaChaPoly,
        seed: [9; 32],
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut c = crypt();
    let (key, _) = c.new_block_key(1);
    let mut scratch = Vec::new();
    match mode {
        0 => {
            let _ = crypt::open_record(&key, rest, true, &mut scratch);
        }
        1 => {
            let _ = c.open_key_file(1, rest);
            let _ = c.open_file(rest);
        }
        _ => {
            let Some((&[k, s0, s1, s2, s3, s4, s5, s6, s7], inner)) =
                rest.split_first_chunk::<9>()
            else {
                return;
            };
            if inner.is_empty() {
                return;
            }
            let seq = u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);
            let mut sealed = Vec::new();
            crypt::seal_inner(&key, c.nonce(), k, seq, inner, &mut sealed);
            let opened = crypt::open_record(&key, &sealed, true, &mut scratch);
            if let (Some(kind), 0) = (Kind::from_u8(k), inner[0]) {
                let plain = record::decode_body(kind, &inner[1..]);
                match (opened, plain) {
                    (Ok((h, a)), Ok(b)) => {
                        assert_eq!(h.seq, seq);
                        assert_eq!(a, b);
                    }
                    (Err(a), Err(b)) => assert_eq!(a, b),
                    (a, b) => panic!("sealed {a:?} vs plain {b:?}"),
                }
            }
        }
    }
});
