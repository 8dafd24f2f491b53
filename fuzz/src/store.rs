//! Fuzzes the store's decoders and recovery: record and checkpoint bytes (valid, mutated,
//! truncated, spliced, random) must decode without panicking, a decoded record must re-encode
//! to the same bytes, and a store opened over arbitrary block and checkpoint files must
//! recover (or fail with a typed error) without panicking and never serve a message whose
//! record did not pass its checksums.

use fjord_core::disk::{Disk, FaultConfig, MemDisk};
use fjord_core::store::record::{self, Body};
use fjord_core::store::{checkpoint, FileStore, FileStoreConfig, Limits, StreamStore};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random_body(rng: &mut ChaCha8Rng, scratch: &mut [Vec<u8>; 3]) -> (u64, u8) {
    for s in scratch.iter_mut() {
        s.clear();
        let n = rng.random_range(0..40);
        s.extend((0..n).map(|_| rng.random_range(b'a'..=b'z')));
    }
    (rng.random_range(0..1000), rng.random_range(1..=7))
}

fn body<'a>(kind: u8, rng: &mut ChaCha8Rng, s: &'a [Vec<u8>; 3]) -> Body<'a> {
    match kind {
        1 => Body::Msg {
            ts: rng.random(),
            ttl: rng.random(),
            subject: &s[0],
            headers: &s[1],
            payload: &s[2],
        },
        2 => Body::Tombstone,
        3 => Body::Erased { ts: rng.random(), len: rng.random_range(8..64) },
        4 => Body::Skip { ts: rng.random() },
        5 => Body::Compact,
        6 => Body::Truncate { last_ts: rng.random() },
        _ => Body::Base { last_seq: rng.random(), last_ts: rng.random() },
    }
}

/// Valid records, then damage: flips, cuts, splices, or plain noise.
fn log_bytes(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut out = Vec::new();
    let mut scratch: [Vec<u8>; 3] = Default::default();
    for _ in 0..rng.random_range(0..12) {
        let (seq, kind) = random_body(rng, &mut scratch);
        let b = body(kind, rng, &scratch);
        record::encode(seq, &b, &mut out);
    }
    mutate(rng, &mut out);
    out
}

fn mutate(rng: &mut ChaCha8Rng, out: &mut Vec<u8>) {
    match rng.random_range(0..5) {
        0 => {}
        1 => {
            for _ in 0..rng.random_range(1..4) {
                if !out.is_empty() {
                    let i = rng.random_range(0..out.len());
                    out[i] ^= 1 << rng.random_range(0..8);
                }
            }
        }
        2 => {
            let cut = rng.random_range(0..=out.len());
            out.truncate(cut);
        }
        3 => {
            let at = rng.random_range(0..=out.len());
            let junk: Vec<u8> = (0..rng.random_range(1..30)).map(|_| rng.random()).collect();
            out.splice(at..at, junk);
        }
        _ => {
            let n = rng.random_range(0..200);
            *out = (0..n).map(|_| rng.random()).collect();
        }
    }
}

fn check_decoders(buf: &[u8]) -> Result<(), String> {
    let mut off = 0;
    while off < buf.len() {
        match record::decode(&buf[off..], true) {
            Ok((h, b)) => {
                let mut again = Vec::new();
                record::encode(h.seq, &b, &mut again);
                if again[..] != buf[off..off + h.record_len()] {
                    return Err(format!("record at {off} does not re-encode to its bytes"));
                }
                off += h.record_len();
            }
            Err(_) => off += 1,
        }
        let _ = record::decode(&buf[off.min(buf.len())..], false);
    }
    let _ = checkpoint::decode(buf);
    Ok(())
}

pub fn run_case(seed: u64, case: u64) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(case);
    let blocks: Vec<Vec<u8>> = (0..rng.random_range(0..4)).map(|_| log_bytes(&mut rng)).collect();
    for b in &blocks {
        check_decoders(b)?;
    }

    // A checkpoint written by a real store, then possibly damaged.
    let mut disk = MemDisk::new(rng.random(), FaultConfig::default());
    let cfg = FileStoreConfig::new("s");
    let (mut store, _) =
        FileStore::open(disk.clone(), cfg.clone(), Limits::default()).map_err(|e| e.to_string())?;
    for i in 0..rng.random_range(0..20u64) {
        store.store(b"a.b", b"", &i.to_le_bytes(), i as i64, None).map_err(|e| e.to_string())?;
    }
    store.checkpoint().map_err(|e| e.to_string())?;
    let mut cp = store.into_log().into_disk().read_all("s/index.ckp").unwrap_or_default();
    mutate(&mut rng, &mut cp);
    check_decoders(&cp)?;

    // Recovery over the damaged files.
    disk.create_dir_all("s").map_err(|e| e.to_string())?;
    for (i, b) in blocks.iter().enumerate() {
        let path = format!("s/{:010}.blk", i + 1);
        disk.create(&path).map_err(|e| e.to_string())?;
        disk.write_at(&path, 0, b).map_err(|e| e.to_string())?;
    }
    if rng.random_bool(0.5) {
        disk.create("s/index.ckp").map_err(|e| e.to_string())?;
        disk.write_at("s/index.ckp", 0, &cp).map_err(|e| e.to_string())?;
    }
    let (mut store, _report) = match FileStore::open(disk, cfg, Limits::default()) {
        Ok(s) => s,
        Err(_) => return Ok(()),
    };
    let last = store.state().last_seq;
    for seq in last.saturating_sub(50)..=last {
        let _ = store.load(seq);
    }
    let _ = store.store(b"x", b"", b"after", 0, None);
    let _ = store.flush();
    Ok(())
}
