//! The backup archive (`jetstream::archive`) and the store snapshot inside it: a random store's
//! snapshot is archived, then damaged (bit flips, cuts, noise, foreign bytes) either in the
//! archive or inside it with every outer checksum made right again. Decoding must never panic,
//! must give back exactly what was archived when nothing was damaged, and may only accept a
//! damaged archive that still decodes to the original bytes (a flipped copy offset in a run of
//! equal bytes changes nothing); a restore from a damaged store snapshot must be refused or be
//! identical to the original.

use fjord_core::jetstream::archive;
use fjord_core::store::{Limits, MemStore, StreamStore};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random_store(rng: &mut ChaCha8Rng) -> MemStore {
    let mut s = MemStore::new(Limits::default());
    let n = rng.random_range(0..40);
    for i in 0..n {
        let subject = format!("s.{}", rng.random_range(0..5));
        let headers: Vec<u8> =
            if rng.random_bool(0.3) { b"NATS/1.0\r\nX: 1\r\n\r\n".to_vec() } else { Vec::new() };
        let len = rng.random_range(0..200);
        // Half the payloads repetitive (compressible), half noise.
        let payload: Vec<u8> = if rng.random_bool(0.5) {
            vec![(i % 7) as u8; len]
        } else {
            (0..len).map(|_| rng.random()).collect()
        };
        let _ = s.store(subject.as_bytes(), &headers, &payload, 1_000 + i as i64, None);
    }
    for _ in 0..rng.random_range(0..5) {
        let _ = s.remove(rng.random_range(1..n.max(1) as u64 + 1));
    }
    let _ = s.flush();
    s
}

fn damage(rng: &mut ChaCha8Rng, bytes: &mut Vec<u8>) {
    match rng.random_range(0..4) {
        0 if !bytes.is_empty() => {
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..bytes.len());
                bytes[at] ^= 1 << rng.random_range(0..8);
            }
        }
        1 => bytes.truncate(rng.random_range(0..bytes.len().max(1))),
        2 => bytes.extend((0..rng.random_range(1..20)).map(|_| rng.random::<u8>())),
        _ => *bytes = (0..rng.random_range(0..100)).map(|_| rng.random::<u8>()).collect(),
    }
}

fn same_messages(a: &mut MemStore, b: &mut MemStore) -> Result<(), String> {
    if a.state() != b.state() {
        return Err(format!("state {:?} != {:?}", a.state(), b.state()));
    }
    let mut seq = 0;
    loop {
        let (x, y) = (a.load_next(b">", seq), b.load_next(b">", seq));
        match (x, y) {
            (Ok(None), Ok(None)) => return Ok(()),
            (Ok(Some(x)), Ok(Some(y))) if x == y => seq = x.seq + 1,
            (x, y) => return Err(format!("messages differ at {seq}: {x:?} / {y:?}")),
        }
    }
}

pub fn run_case(seed: u64, case: u64) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ case.rotate_left(29) ^ 0xa4c1);
    let mut original = random_store(&mut rng);
    let mut snap = Vec::new();
    original.snapshot(&mut snap).map_err(|e| format!("snapshot: {e}"))?;
    let meta = br#"{"config":{"name":"S"},"created":1,"consumers":[]}"#.to_vec();
    let mut bytes = archive::encode(&meta, &snap).map_err(|e| format!("encode: {e}"))?;
    match rng.random_range(0..3) {
        // Intact: everything comes back, and restores into an identical store.
        0 => {
            let (m, s) = archive::decode(&bytes).map_err(|e| format!("intact refused: {e}"))?;
            if m != meta || s != snap {
                return Err("intact archive decoded to other bytes".into());
            }
            let mut restored = MemStore::new(Limits::default());
            restored.restore(&s).map_err(|e| format!("intact restore: {e}"))?;
            same_messages(&mut original, &mut restored)
        }
        // Damaged archive: refused, or decoded to exactly the original.
        1 => {
            damage(&mut rng, &mut bytes);
            match archive::decode(&bytes) {
                Ok((m, s)) if m != meta || s != snap => {
                    Err("a damaged archive decoded to other bytes".into())
                }
                _ => Ok(()),
            }
        }
        // Damaged store snapshot under intact archive checksums: the restore refuses it or
        // gives back the original.
        _ => {
            let mut inner = snap.clone();
            damage(&mut rng, &mut inner);
            let bytes = archive::encode(&meta, &inner).map_err(|e| format!("encode: {e}"))?;
            let (_, s) = archive::decode(&bytes).map_err(|e| format!("re-encoded refused: {e}"))?;
            let mut restored = MemStore::new(Limits::default());
            match restored.restore(&s) {
                Ok(_) => same_messages(&mut original, &mut restored),
                Err(_) if restored.state().msgs == 0 && restored.state().last_seq == 0 => Ok(()),
                Err(e) => Err(format!("a refused restore left state behind: {e}")),
            }
        }
    }
}
