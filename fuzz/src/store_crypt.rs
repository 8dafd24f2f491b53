//! The encrypted store's record decoder (the stable twin of cargo-fuzz's `store_crypt`):
//! random plaintext bodies of every kind, raw or claiming snappy, sealed under a key, then
//! damaged (bit flips with the CRCs refreshed so only the AEAD can notice, cuts, noise). Opening
//! must never panic, must refuse every damaged ciphertext, and must read an undamaged raw body
//! exactly as the plain decoder reads the same bytes.

use fjord_core::store::crypt::{self, Cipher, Crypt, Encryption, StoreKey};
use fjord_core::store::record::{self, Kind, RecordError, HEADER_LEN};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const KINDS: [Kind; 7] = [
    Kind::Msg,
    Kind::Tombstone,
    Kind::Erased,
    Kind::Skip,
    Kind::Compact,
    Kind::Truncate,
    Kind::Base,
];

pub fn run_case(seed: u64, case: u64) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ case.rotate_left(32));
    let mut c = Crypt::new(&Encryption {
        key: StoreKey::from_bytes(rng.random()),
        cipher: Cipher::ChaChaPoly,
        seed: rng.random(),
    });
    let (key, key_file) = c.new_block_key(rng.random_range(1..100));
    let kind = KINDS[rng.random_range(0..KINDS.len())];
    let seq = rng.random_range(0..1000);
    let mut inner = vec![if rng.random_bool(0.8) { 0 } else { rng.random_range(0..3) }];
    let n = rng.random_range(0..80);
    inner.extend((0..n).map(|_| rng.random::<u8>()));
    let mut sealed = Vec::new();
    crypt::seal_inner(&key, c.nonce(), kind as u8, seq, &inner, &mut sealed);
    let mut scratch = Vec::new();
    let opened = crypt::open_record(&key, &sealed, true, &mut scratch);
    if inner[0] == 0 {
        let plain = record::decode_body(kind, &inner[1..]);
        let same = match (&opened, &plain) {
            (Ok((h, a)), Ok(b)) => h.seq == seq && a == b,
            (Err(a), Err(b)) => a == b,
            _ => false,
        };
        if !same {
            return Err(format!("sealed {opened:?} vs plain {plain:?}"));
        }
    }
    // Damage it.
    let mut bad = sealed.clone();
    match rng.random_range(0..3) {
        0 => {
            let at = rng.random_range(HEADER_LEN..bad.len());
            bad[at] ^= 1 << rng.random_range(0..8);
            record::frame(&mut bad, 0, kind as u8, seq);
            match crypt::open_record(&key, &bad, true, &mut scratch) {
                Err(RecordError::BadBody) => {}
                other => return Err(format!("a flipped ciphertext bit gave {other:?}")),
            }
        }
        1 => {
            bad.truncate(rng.random_range(0..bad.len()));
            if crypt::open_record(&key, &bad, true, &mut scratch).is_ok() {
                return Err("a cut record opened".into());
            }
        }
        _ => {
            let n = rng.random_range(0..200);
            let noise: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            let _ = crypt::open_record(&key, &noise, true, &mut scratch);
            let _ = c.open_key_file(1, &noise);
            let _ = c.open_file(&noise);
        }
    }
    // A flipped key file is damage, never a key.
    let mut kf = key_file.clone();
    let at = rng.random_range(0..kf.len());
    kf[at] ^= 1 << rng.random_range(0..8);
    if c.open_key_file(1, &kf).is_ok() {
        return Err("a damaged key file opened".into());
    }
    Ok(())
}
