//! The Raft WAL decoder and recovery on arbitrary bytes. `decode_entry` must not panic; a
//! sound record must re-encode to exactly the bytes it was decoded from (a faulty one to its
//! identity-only form, which must decode back to the same identity); and `Storage::open` over
//! the bytes as a WAL (and, if the input is long enough, its first 29 bytes as a metadata
//! copy) must recover on a fault-free disk, with entries numbered 1, 2, 3, ...
//!
//! Input layout: byte 0 odd puts bytes 1..30 in `meta.a`; the rest is the WAL.

#![no_main]

use fjord_core::disk::{Disk, FaultConfig, MemDisk};
use fjord_core::raft::storage::{decode_entry, encode_entry, Decoded};
use fjord_core::raft::{Storage, StorageMutations};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let (meta, wal) =
        if flags & 1 == 1 && rest.len() >= 29 { rest.split_at(29) } else { (&[][..], rest) };

    let mut pos = 0;
    while pos < wal.len() {
        match decode_entry(&wal[pos..]) {
            Decoded::Entry { entry, faulty, len } => {
                assert!(len > 0 && pos + len <= wal.len(), "record length {len} out of bounds");
                let mut again = Vec::new();
                encode_entry(&entry, faulty, &mut again);
                if faulty {
                    match decode_entry(&again) {
                        Decoded::Entry { entry: e, faulty: true, .. } => {
                            assert_eq!((e.index, e.term), (entry.index, entry.term));
                        }
                        other => panic!("identity-only record decodes as {other:?}"),
                    }
                } else {
                    assert_eq!(&again[..], &wal[pos..pos + len], "re-encoding differs");
                }
                pos += len;
            }
            Decoded::Incomplete | Decoded::BadHeader => break,
        }
    }

    let mut disk = MemDisk::new(0, FaultConfig::default());
    disk.create_dir_all("r").unwrap();
    disk.create("r/wal").unwrap();
    disk.write_at("r/wal", 0, wal).unwrap();
    if !meta.is_empty() {
        disk.create("r/meta.a").unwrap();
        disk.write_at("r/meta.a", 0, meta).unwrap();
    }
    let (_, rec) = Storage::open(&mut disk, "r", StorageMutations::default())
        .expect("recovery on a fault-free disk");
    for (i, e) in rec.entries.iter().enumerate() {
        assert_eq!(e.index, i as u64 + 1, "recovered log is not numbered from 1");
    }
    // Recovery rewrote the WAL: opening again must give the same log and no new damage.
    let (_, again) =
        Storage::open(&mut disk, "r", StorageMutations::default()).expect("second recovery");
    assert_eq!(again.entries, rec.entries, "a second recovery changed the log");
    assert!(!again.report.lost_suffix && again.report.torn_bytes == 0, "{:?}", again.report);
});
