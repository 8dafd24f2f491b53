//! Encryption at rest: round trip across crash and reopen, nothing readable on disk, a wrong or
//! missing key refused at open, tampered ciphertext reported as corruption, and no nonce ever
//! sealing two different things under one key, across erase, compaction, torn tails and
//! recovery.

use std::collections::BTreeMap;

use crate::disk::{Disk, FaultConfig, MemDisk};
use crate::store::crypt::{NONCE_LEN, OVERHEAD};
use crate::store::record::{self, HEADER_LEN};
use crate::store::*;

fn key(secret: &str) -> StoreKey {
    StoreKey::derive(secret.as_bytes(), b"ORDERS")
}

/// Every open gets a fresh seed, as the runtime draws one from the OS.
fn cfg(secret: &str, seed: u8, compress: bool) -> FileStoreConfig {
    let mut c = FileStoreConfig::new("s");
    c.block_size = 2048;
    c.checkpoint_every = 4;
    c.compress = compress;
    c.encryption =
        Some(Encryption { key: key(secret), cipher: Cipher::ChaChaPoly, seed: [seed; 32] });
    c
}

fn payload(seq: u64) -> Vec<u8> {
    format!("{{\"order\":{seq},\"status\":\"shipped\",\"secret\":\"{}\"}}", "s".repeat(300))
        .into_bytes()
}

fn open(disk: MemDisk, c: FileStoreConfig) -> (FileStore<MemDisk>, RecoveryReport) {
    FileStore::open(disk, c, Limits::default()).unwrap()
}

fn filled(c: FileStoreConfig, n: u64) -> FileStore<MemDisk> {
    let (mut s, _) = open(MemDisk::new(9, FaultConfig::default()), c);
    for seq in 1..=n {
        s.store(b"orders.secret", b"Hdr: confidential", &payload(seq), seq as i64, Some(7))
            .unwrap();
        if seq % 8 == 0 {
            s.flush().unwrap();
        }
    }
    s.flush().unwrap();
    s
}

fn assert_all_there(s: &mut FileStore<MemDisk>, seqs: impl Iterator<Item = u64>) {
    for seq in seqs {
        let m = s.load(seq).unwrap().unwrap_or_else(|| panic!("seq {seq} missing"));
        assert_eq!(
            (&m.subject[..], &m.headers[..], &m.payload[..], m.ts, m.ttl),
            (
                &b"orders.secret"[..],
                &b"Hdr: confidential"[..],
                &payload(seq)[..],
                seq as i64,
                Some(7)
            )
        );
    }
}

fn files(disk: &mut MemDisk) -> BTreeMap<String, Vec<u8>> {
    disk.paths().into_iter().map(|p| (p.clone(), disk.read_all(&p).unwrap())).collect()
}

#[test]
fn messages_round_trip_across_crash_and_nothing_readable_is_on_disk() {
    for compress in [false, true] {
        let mut s = filled(cfg("k1", 1, compress), 300);
        assert!(s.log().block_ids().len() > 3, "the test needs several blocks");
        assert_all_there(&mut s, 1..=300);
        let mut disk = s.into_log().into_disk();
        disk.crash();
        let (mut s, report) = open(disk, cfg("k1", 2, compress));
        assert!(report.used_checkpoint && report.corrupt.is_empty(), "{report:?}");
        assert_all_there(&mut s, 1..=300);
        // Without the checkpoint, the full scan decrypts every block.
        let mut disk = s.into_log().into_disk();
        disk.remove("s/index.ckp").unwrap();
        let (mut s, report) = open(disk, cfg("k1", 3, compress));
        assert!(!report.used_checkpoint && report.corrupt.is_empty(), "{report:?}");
        assert_eq!(s.state().msgs, 300);
        assert_all_there(&mut s, 1..=300);
        assert_eq!(s.store(b"orders.secret", b"", b"more", 1, None).unwrap(), 301);
        s.checkpoint().unwrap();
        for (path, bytes) in files(s.log_mut().disk_mut()) {
            for needle in [&b"orders.secret"[..], b"confidential", b"shipped", b"sssssss"] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{path} holds {:?} in the clear",
                    String::from_utf8_lossy(needle)
                );
            }
        }
    }
}

#[test]
fn compression_comes_before_encryption() {
    let plain_len = filled(cfg("k", 1, false), 300).log().block_ids().len();
    let packed_len = filled(cfg("k", 1, true), 300).log().block_ids().len();
    // The payloads are mostly one repeated byte: compressed before sealing, they take far
    // fewer blocks. Sealed first, they would not compress at all.
    assert!(packed_len * 2 < plain_len, "{packed_len} blocks compressed vs {plain_len} plain");
}

#[test]
fn a_wrong_key_is_refused_even_by_a_store_without_blocks() {
    let (s, _) = open(MemDisk::new(1, FaultConfig::default()), cfg("right", 1, false));
    assert!(s.log().block_ids().is_empty());
    let disk = s.into_log().into_disk();
    let err = FileStore::open(disk.clone(), cfg("wrong", 2, false), Limits::default()).unwrap_err();
    assert_eq!(err, StoreError::KeyMismatch);
    let mut plain = cfg("right", 2, false);
    plain.encryption = None;
    assert_eq!(
        FileStore::open(disk.clone(), plain, Limits::default()).unwrap_err(),
        StoreError::KeyRequired
    );
    let (mut s, _) = open(disk, cfg("right", 3, false));
    assert_eq!(s.store(b"a", b"", b"x", 0, None).unwrap(), 1);
}

#[test]
fn a_wrong_or_missing_key_is_refused_at_open() {
    let disk = filled(cfg("right", 1, false), 50).into_log().into_disk();
    let err = FileStore::open(disk.clone(), cfg("wrong", 2, false), Limits::default()).unwrap_err();
    assert_eq!(err, StoreError::KeyMismatch);
    assert_eq!(err.to_string(), "encryption key does not match");
    let mut plain = cfg("right", 2, false);
    plain.encryption = None;
    let err = FileStore::open(disk.clone(), plain, Limits::default()).unwrap_err();
    assert_eq!(err, StoreError::KeyRequired);
    // The refusals changed nothing: the right key still opens every message.
    let (mut s, report) = open(disk, cfg("right", 3, false));
    assert!(report.corrupt.is_empty(), "{report:?}");
    assert_all_there(&mut s, 1..=50);
}

/// The offset and length of every record in a block file's bytes.
fn records(block: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut off = 0;
    while let Ok(h) = record::decode_header(&block[off..]) {
        out.push((off, h.record_len()));
        off += h.record_len();
    }
    assert_eq!(off, block.len(), "records do not tile the block");
    out
}

#[test]
fn tampered_ciphertext_with_valid_checksums_is_reported_as_corruption() {
    let mut s = filled(cfg("k", 1, false), 100);
    let first = s.log().block_ids()[0];
    let path = s.log().block_path(first);
    let disk = s.log_mut().disk_mut();
    let mut block = disk.read_all(&path).unwrap();
    // The second record is the first message (the first is the block's `Base`).
    let (off, len) = records(&block)[1];
    let seq = record::decode_header(&block[off..]).unwrap().seq;
    block[off + HEADER_LEN + NONCE_LEN + 3] ^= 0x20;
    // Re-frame it: both CRCs hold, only the AEAD tag can tell.
    let kind = block[off + 4];
    let mut rec = block[off..off + len].to_vec();
    record::frame(&mut rec, 0, kind, seq);
    block[off..off + len].copy_from_slice(&rec);
    disk.write_at(&path, 0, &block).unwrap();
    assert!(record::decode_header(&block[off..]).is_ok());
    // The block was cached before the tamper: reopen so the load reads the disk.
    let mut disk = s.into_log().into_disk();
    disk.remove("s/index.ckp").unwrap();
    let (mut s, report) = open(disk, cfg("k", 2, false));
    assert_eq!(report.corrupt, vec![(seq, Some(seq))], "{report:?}");
    assert_eq!(s.load(seq), Err(StoreError::Corrupt { from: seq, to: Some(seq) }));
    assert_all_there(&mut s, (1..=100).filter(|q| *q != seq));
}

#[test]
fn a_damaged_key_file_is_corruption_not_a_wrong_key() {
    let mut s = filled(cfg("k", 1, false), 100);
    let first = s.log().block_ids()[0];
    let key_path = s.log().block_path(first).replace(".blk", ".key");
    let disk = s.log_mut().disk_mut();
    disk.flip_bit(&key_path, 8 * 30).unwrap();
    let disk = s.into_log().into_disk();
    let (mut s, report) = open(disk, cfg("k", 2, false));
    assert!(!report.used_checkpoint, "{report:?}");
    let (from, to) = report.corrupt[0];
    assert_eq!(from, 1, "{report:?}");
    assert!(matches!(s.load(1), Err(StoreError::Corrupt { .. })));
    let later = to.expect("the next block's Base bounds the damage") + 1;
    assert_all_there(&mut s, later..=100);
}

#[test]
fn turning_encryption_on_keeps_plain_blocks_readable_and_seals_new_ones() {
    let mut plain = cfg("k", 1, false);
    plain.encryption = None;
    let disk = filled(plain, 40).into_log().into_disk();
    let (mut s, _) = open(disk, cfg("k", 2, false));
    let plain_blocks = s.log().block_ids();
    s.store(b"orders.secret", b"Hdr: confidential", &payload(41), 41, Some(7)).unwrap();
    s.flush().unwrap();
    let tail = *s.log().block_ids().last().unwrap();
    assert!(!plain_blocks.contains(&tail), "the new record went to a plain block");
    let disk = s.into_log().into_disk();
    let (mut s, report) = open(disk, cfg("k", 3, false));
    assert!(report.corrupt.is_empty(), "{report:?}");
    assert_all_there(&mut s, 1..=41);
}

/// Every sealed thing on the disk now: (file, offset) -> (nonce, sealed bytes).
fn sealings(disk: &mut MemDisk, seen: &mut BTreeMap<[u8; NONCE_LEN], (String, Vec<u8>)>) {
    for (path, bytes) in files(disk) {
        let mut found: Vec<([u8; NONCE_LEN], Vec<u8>)> = Vec::new();
        if path.ends_with(".blk") {
            for (off, len) in records(&bytes) {
                let body = &bytes[off + HEADER_LEN..off + len];
                assert!(body.len() >= OVERHEAD, "{path}@{off}: a record was not sealed");
                found.push((body[..NONCE_LEN].try_into().unwrap(), body[NONCE_LEN..].to_vec()));
            }
        } else if path.ends_with(".key") {
            found.push((bytes[10..22].try_into().unwrap(), bytes[22..].to_vec()));
        } else if path.ends_with(".chk") || path.ends_with(".ckp") {
            // The key check file and the sealed checkpoint: magic, nonce, sealed bytes.
            found.push((bytes[4..16].try_into().unwrap(), bytes[16..].to_vec()));
        }
        for (nonce, sealed) in found {
            match seen.get(&nonce) {
                // The same sealing seen again (a record still on disk): fine.
                Some((_, before)) if *before == sealed => {}
                Some((where_, _)) => panic!("nonce reused: {path} and earlier {where_}"),
                None => {
                    seen.insert(nonce, (path.clone(), sealed));
                }
            }
        }
    }
}

#[test]
fn no_nonce_seals_two_things_across_erase_compaction_torn_tails_and_recovery() {
    let mut seen = BTreeMap::new();
    let mut s = filled(cfg("k", 1, false), 120);
    sealings(s.log_mut().disk_mut(), &mut seen);
    for seq in (3..60).step_by(3) {
        assert!(s.erase(seq).unwrap());
    }
    s.flush().unwrap();
    sealings(s.log_mut().disk_mut(), &mut seen);
    s.compact(80).unwrap();
    s.flush().unwrap();
    sealings(s.log_mut().disk_mut(), &mut seen);
    // Unsynced appends, seen by the process (so on the disk, as far as anyone who reads it
    // after the crash might know), then lost to power loss: recovery cuts the tail and the next
    // appends land at the same offsets, in the same block, under the same block key.
    for seq in 121..=130 {
        s.store(b"orders.secret", b"", &payload(seq), seq as i64, None).unwrap();
    }
    sealings(s.log_mut().disk_mut(), &mut seen);
    let mut disk = s.into_log().into_disk();
    disk.crash();
    let (mut s, _) = open(disk, cfg("k", 2, false));
    let survived = s.state().last_seq;
    assert!(survived < 130, "the crash was expected to lose unsynced appends");
    for seq in survived + 1..=200 {
        s.store(b"orders.secret", b"", &payload(seq + 1000), seq as i64, None).unwrap();
        if seq % 10 == 0 {
            s.flush().unwrap();
            sealings(s.log_mut().disk_mut(), &mut seen);
        }
    }
    s.compact(190).unwrap();
    s.checkpoint().unwrap();
    sealings(s.log_mut().disk_mut(), &mut seen);
    // Compaction deleted every early block; the numbers of new blocks never repeat, and
    // neither does any key file or nonce (checked above).
    assert!(s.log().block_ids()[0] > 1);
    assert!(seen.len() > 250, "only {} sealings seen", seen.len());
}
