//! Snapshot and restore: a round trip between the two stores keeps every observable answer,
//! damage anywhere in the stream is refused before anything is applied, and a store that
//! holds corrupt data refuses to export it.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::disk::{FaultConfig, MemDisk};
use crate::store::snapshot::SnapshotError;
use crate::store::*;

const SUBJECTS: &[&[u8]] = &[b"a.b", b"a.c", b"kv.x"];

fn file_store() -> FileStore<MemDisk> {
    let mut cfg = FileStoreConfig::new("s");
    cfg.block_size = 2048;
    FileStore::open(MemDisk::new(3, FaultConfig::default()), cfg, Limits::default()).unwrap().0
}

/// Random stores, removals, skips and a compaction, so the snapshot has gaps, deleted tail
/// sequences and TTLs.
fn fill(s: &mut impl StreamStore, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in 0..300 {
        let subject = SUBJECTS[rng.random_range(0..SUBJECTS.len())];
        let mut payload = vec![0u8; rng.random_range(0..200)];
        rng.fill(&mut payload[..]);
        let ttl = rng.random_bool(0.2).then(|| rng.random_range(1..1_000_000u64));
        s.store(subject, if i % 3 == 0 { b"NATS/1.0\r\n\r\n" } else { b"" }, &payload, i, ttl)
            .unwrap();
        if rng.random_bool(0.2) {
            let last = s.state().last_seq;
            s.remove(rng.random_range(1..=last)).unwrap();
        }
        if rng.random_bool(0.05) {
            s.skip(rng.random_range(1..4), i).unwrap();
        }
    }
    s.compact(20).unwrap();
    let last = s.state().last_seq;
    s.remove(last).unwrap();
    s.flush().unwrap();
}

fn same(a: &mut impl StreamStore, b: &mut impl StreamStore) {
    // Bytes aside: a file and a memory store count the same messages differently, as
    // nats-server's do; the messages themselves are compared below.
    let without_bytes = |s: StreamState| StreamState { bytes: 0, ..s };
    assert_eq!(without_bytes(a.state()), without_bytes(b.state()));
    assert_eq!(a.deleted(), b.deleted());
    assert_eq!(a.subjects_state(b">"), b.subjects_state(b">"));
    for seq in 0..=a.state().last_seq + 1 {
        assert_eq!(a.load(seq).unwrap(), b.load(seq).unwrap(), "seq {seq}");
    }
}

#[test]
fn file_to_mem_to_file_round_trip_keeps_everything() {
    let mut file = file_store();
    fill(&mut file, 1);
    let mut snap = Vec::new();
    file.snapshot(&mut snap).unwrap();

    let mut mem = MemStore::new(Limits::default());
    assert_eq!(mem.restore(&snap).unwrap(), file.state().msgs);
    same(&mut file, &mut mem);

    let mut snap2 = Vec::new();
    mem.snapshot(&mut snap2).unwrap();
    assert_eq!(snap, snap2, "both stores export the same bytes");
    let mut back = file_store();
    back.restore(&snap2).unwrap();
    back.flush().unwrap();
    // Durable like any store: it survives a power loss.
    let mut disk = back.into_log().into_disk();
    disk.crash();
    let mut cfg = FileStoreConfig::new("s");
    cfg.block_size = 2048;
    let (mut back, report) = FileStore::open(disk, cfg, Limits::default()).unwrap();
    assert!(report.corrupt.is_empty());
    same(&mut file, &mut back);
    assert_eq!(file.state(), back.state(), "two file stores count bytes alike");
    // The restored store goes on from the original's last sequence, not from its last message.
    assert_eq!(back.store(b"a.b", b"", b"next", 1, None).unwrap(), file.state().last_seq + 1);
}

#[test]
fn every_bit_flip_and_every_truncation_is_refused_before_anything_is_applied() {
    let mut src = MemStore::new(Limits::default());
    for i in 0..5 {
        src.store(b"a.b", b"", &[i as u8; 7], i, None).unwrap();
    }
    let mut snap = Vec::new();
    src.snapshot(&mut snap).unwrap();
    for bit in 0..snap.len() * 8 {
        let mut bad = snap.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let mut dst = MemStore::new(Limits::default());
        assert!(matches!(dst.restore(&bad), Err(SnapshotError::Invalid(_))), "bit {bit}");
        assert_eq!(dst.state().last_seq, 0, "bit {bit}: nothing applied");
    }
    for len in 0..snap.len() {
        let mut dst = MemStore::new(Limits::default());
        assert!(matches!(dst.restore(&snap[..len]), Err(SnapshotError::Invalid(_))), "{len}");
        assert_eq!(dst.state().msgs, 0);
    }
}

#[test]
fn restore_needs_an_empty_store() {
    let mut src = MemStore::new(Limits::default());
    src.store(b"a.b", b"", b"x", 1, None).unwrap();
    let mut snap = Vec::new();
    src.snapshot(&mut snap).unwrap();
    let mut dst = MemStore::new(Limits::default());
    dst.skip(1, 0).unwrap();
    assert_eq!(dst.restore(&snap), Err(SnapshotError::NotEmpty));
}

#[test]
fn a_store_holding_corrupt_data_refuses_to_export_it() {
    let mut s = file_store();
    fill(&mut s, 2);
    let seq = s.state().first_seq;
    // Flip a bit in the middle of that message's record body.
    let loc = s.log().block_path(s.log().block_ids()[0]);
    let disk = s.log_mut().disk_mut();
    let len = crate::disk::Disk::len(disk, &loc).unwrap();
    let data = crate::disk::Disk::read_all(disk, &loc).unwrap();
    // Find the record of `seq` by scanning headers.
    let mut off = 0;
    while off < data.len() {
        let h = record::decode_header(&data[off..]).unwrap();
        if h.seq == seq && h.kind == record::Kind::Msg {
            break;
        }
        off += h.record_len();
    }
    assert!(off < len as usize, "record of seq {seq} found in the first block");
    disk.flip_bit(&loc, (off as u64 + record::HEADER_LEN as u64 + 2) * 8).unwrap();
    let mut snap = Vec::new();
    assert!(matches!(s.snapshot(&mut snap), Err(StoreError::Corrupt { .. })));
}
