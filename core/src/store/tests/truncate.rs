//! Truncates under damage. A truncate hands sequences out again, so a truncate lost to damage
//! could make recovery serve a removed message at a sequence that now belongs to a newer one,
//! or lose the newer one unreported. The layout rule that bounds this: a truncate is always the
//! last record of its block, and the next block's `Base` records the truncate point. These
//! tests damage the records around a truncate and check recovery never serves a truncated
//! message unreported and never loses an acknowledged one unreported (the simulator's store
//! workload found both: seeds 12334350833401672365 and 12334350833401668934).

use crate::disk::{Disk, FaultConfig, MemDisk};
use crate::store::record::{self, Body, Header, Kind};
use crate::store::*;

fn cfg() -> FileStoreConfig {
    let mut c = FileStoreConfig::new("s");
    c.block_size = 64 * 1024;
    // Recovery scans every block: the checkpoint would start it past the damage.
    c.checkpoint_every = 0;
    c
}

fn open(disk: MemDisk) -> (FileStore<MemDisk>, RecoveryReport) {
    FileStore::open(disk, cfg(), Limits::default()).unwrap()
}

fn old(seq: u64) -> Vec<u8> {
    format!("old {seq}").into_bytes()
}

fn new(seq: u64) -> Vec<u8> {
    format!("new {seq}").into_bytes()
}

/// Every record of a plain block: its offset and header.
fn records(disk: &mut MemDisk, path: &str) -> Vec<(u64, Header)> {
    let bytes = disk.read_all(path).unwrap();
    let mut out = Vec::new();
    let mut off = 0;
    while let Ok((h, _)) = record::decode(&bytes[off..], true) {
        out.push((off as u64, h));
        off += h.record_len();
    }
    out
}

fn block_paths(s: &FileStore<MemDisk>) -> Vec<String> {
    s.log().block_ids().into_iter().map(|id| s.log().block_path(id)).collect()
}

/// Flips a bit of the sequence field of the header at `offset`: the header checksum fails,
/// so the record's framing is lost (its length can no longer be trusted).
fn break_header(disk: &mut MemDisk, path: &str, offset: u64) {
    disk.flip_bit(path, (offset + 6) * 8).unwrap();
    let _ = disk.remove("s/index.ckp");
}

fn covered(report: &RecoveryReport, seq: u64) -> bool {
    report.corrupt.iter().any(|(f, t)| seq >= *f && t.is_none_or(|t| seq <= t))
}

/// What a load of `seq` may answer after recovery: the newest bytes stored there, or a
/// corruption report covering it; never the truncated message unreported, never nothing
/// unreported. (A reported range is suspect: what is intact in it is still served.)
fn assert_served_or_reported(s: &mut FileStore<MemDisk>, report: &RecoveryReport, seq: u64) {
    match s.load(seq) {
        Ok(Some(m)) if m.payload[..] == new(seq)[..] => {}
        Ok(Some(m)) => {
            assert_eq!(&m.payload[..], &old(seq)[..], "seq {seq}: bytes never stored there");
            assert!(covered(report, seq), "truncated seq {seq} is back, unreported ({report:?})")
        }
        Ok(None) | Err(StoreError::Corrupt { .. }) => {
            assert!(covered(report, seq), "seq {seq} lost unreported ({report:?})")
        }
        Err(e) => panic!("seq {seq}: {e}"),
    }
}

/// A truncated message may be absent or reported, never served unreported.
fn assert_not_resurrected(s: &mut FileStore<MemDisk>, report: &RecoveryReport, seq: u64) {
    match s.load(seq) {
        Ok(Some(m)) if m.payload[..] == old(seq)[..] => {
            assert!(covered(report, seq), "truncated seq {seq} is back, unreported ({report:?})")
        }
        Ok(Some(m)) => panic!("seq {seq}: unexpected bytes {:?}", m.payload),
        Ok(None) | Err(StoreError::Corrupt { .. }) => {}
        Err(e) => panic!("seq {seq}: {e}"),
    }
}

#[test]
fn a_truncate_is_the_last_record_of_its_block() {
    let (mut s, _) = open(MemDisk::new(1, FaultConfig::default()));
    for seq in 1..=10u64 {
        s.store(b"a", b"", &old(seq), seq as i64, None).unwrap();
    }
    s.truncate(4).unwrap();
    assert_eq!(s.store(b"a", b"", &new(5), 5, None).unwrap(), 5);
    s.flush().unwrap();
    let paths = block_paths(&s);
    assert_eq!(paths.len(), 2, "the truncate sealed its block");
    let disk = s.log_mut().disk_mut();
    let first = records(disk, &paths[0]);
    assert_eq!(first.last().map(|(_, h)| h.kind), Some(Kind::Truncate));
    let bytes = disk.read_all(&paths[1]).unwrap();
    let (h, body) = record::decode(&bytes, true).unwrap();
    assert_eq!(h.kind, Kind::Base);
    assert!(matches!(body, Body::Base { last_seq: 4, .. }), "{body:?}");
}

/// Also after a restart, and after a checkpoint taken just after the truncate: the next
/// message still goes to a new block.
#[test]
fn a_truncate_still_ends_its_block_after_a_restart() {
    let mut c = cfg();
    c.checkpoint_every = 1;
    let (mut s, _) =
        FileStore::open(MemDisk::new(2, FaultConfig::default()), c.clone(), Limits::default())
            .unwrap();
    for seq in 1..=10u64 {
        s.store(b"a", b"", &old(seq), seq as i64, None).unwrap();
    }
    s.truncate(4).unwrap();
    s.flush().unwrap();
    for with_checkpoint in [true, false] {
        let mut disk = s.into_log().into_disk();
        if !with_checkpoint {
            let _ = disk.remove("s/index.ckp");
        }
        let (reopened, report) = FileStore::open(disk, c.clone(), Limits::default()).unwrap();
        assert_eq!(report.used_checkpoint, with_checkpoint);
        s = reopened;
    }
    assert_eq!(s.store(b"a", b"", &new(5), 5, None).unwrap(), 5);
    s.flush().unwrap();
    let paths = block_paths(&s);
    let disk = s.log_mut().disk_mut();
    let last = records(disk, paths.last().unwrap());
    assert_eq!(last.first().map(|(_, h)| h.kind), Some(Kind::Base));
    assert!(paths.iter().all(|p| {
        let r = records(disk, p);
        r.iter().position(|(_, h)| h.kind == Kind::Truncate).is_none_or(|i| i == r.len() - 1)
    }));
}

/// Seed 12334350833401672365's shape: the truncate and the message stored after it at a
/// reused sequence are both damaged. Everything after the truncate is in the next block, whose
/// `Base` bounds the first region, so the message is reported, not silently missing.
#[test]
fn a_lost_truncate_and_the_message_that_reused_its_sequence_are_reported() {
    let (mut s, _) = open(MemDisk::new(3, FaultConfig::default()));
    s.store(b"a", b"", &old(1), 1, None).unwrap();
    s.store(b"a", b"", &old(2), 2, None).unwrap();
    s.remove(2).unwrap();
    s.truncate(1).unwrap();
    assert_eq!(s.store(b"a", b"", &new(2), 3, None).unwrap(), 2);
    s.flush().unwrap();
    // Message 1 keeps the truncate's block from being reclaimed.
    let paths = block_paths(&s);
    assert_eq!(paths.len(), 2);
    let disk = s.log_mut().disk_mut();
    let (truncate, _) =
        *records(disk, &paths[0]).iter().find(|(_, h)| h.kind == Kind::Truncate).unwrap();
    let (message, _) = *records(disk, &paths[1]).iter().find(|(_, h)| h.kind == Kind::Msg).unwrap();
    break_header(disk, &paths[0], truncate);
    break_header(disk, &paths[1], message);
    let (mut s, report) = open(s.into_log().into_disk());
    assert_served_or_reported(&mut s, &report, 2);
    assert!(s.state().last_seq >= 2, "sequence 2 may have been acknowledged: never reuse it");
}

/// Seed 12334350833401668934's shape: a damaged truncate whose later messages reused its
/// sequences. Replay must drop what the truncate dropped (it is not suspect: it was removed),
/// never keep index entries above the last sequence, and hand out no reported sequence again.
#[test]
fn a_lost_truncate_bounded_by_the_next_base_drops_what_it_dropped() {
    let (mut s, _) = open(MemDisk::new(4, FaultConfig::default()));
    for seq in 1..=8u64 {
        s.store(b"a", b"", &old(seq), seq as i64, None).unwrap();
    }
    s.truncate(2).unwrap();
    assert_eq!(s.store(b"a", b"", &new(3), 9, None).unwrap(), 3);
    s.remove(3).unwrap();
    s.flush().unwrap();
    let paths = block_paths(&s);
    let disk = s.log_mut().disk_mut();
    let (off, _) =
        *records(disk, &paths[0]).iter().find(|(_, h)| h.kind == Kind::Truncate).unwrap();
    break_header(disk, &paths[0], off);
    let (mut s, report) = open(s.into_log().into_disk());
    let state = s.state();
    assert_eq!(state.last_seq, 3, "{report:?}");
    for seq in 3..=8 {
        assert_not_resurrected(&mut s, &report, seq);
    }
    assert_eq!(s.store(b"a", b"", &new(4), 10, None).unwrap(), 4);
    s.flush().unwrap();
    assert_served_or_reported(&mut s, &report, 4);
    for seq in 5..=8 {
        assert_not_resurrected(&mut s, &report, seq);
    }
}

/// The damage spans the truncate at the end of one block and the `Base` of the next: the
/// truncate point is unknown, but the first message read whole after it assigns a sequence
/// the state already reaches, which only a truncate allows. Everything above it was truncated
/// and must not be served.
#[test]
fn a_message_reusing_a_sequence_implies_the_lost_truncate() {
    let (mut s, _) = open(MemDisk::new(5, FaultConfig::default()));
    for seq in 1..=8u64 {
        s.store(b"a", b"", &old(seq), seq as i64, None).unwrap();
    }
    s.truncate(2).unwrap();
    for seq in 3..=4u64 {
        assert_eq!(s.store(b"a", b"", &new(seq), 9, None).unwrap(), seq);
    }
    s.flush().unwrap();
    let paths = block_paths(&s);
    let disk = s.log_mut().disk_mut();
    let (truncate, _) =
        *records(disk, &paths[0]).iter().find(|(_, h)| h.kind == Kind::Truncate).unwrap();
    break_header(disk, &paths[0], truncate);
    break_header(disk, &paths[1], 0);
    let (mut s, report) = open(s.into_log().into_disk());
    for seq in 3..=4 {
        assert_served_or_reported(&mut s, &report, seq);
    }
    for seq in 5..=8 {
        assert_not_resurrected(&mut s, &report, seq);
    }
    let next = s.store(b"a", b"", &new(5), 10, None).unwrap();
    assert!(next >= 5, "sequence {next} handed out twice");
}

/// The damage spans the truncate and everything after it to the end of the store: the
/// truncate point is unknown and lost messages may have reused any sequence, so nothing can be
/// vouched for and recovery says so instead of guessing.
#[test]
fn an_unbounded_loss_after_a_lost_block_start_reports_everything() {
    let (mut s, _) = open(MemDisk::new(6, FaultConfig::default()));
    for seq in 1..=8u64 {
        s.store(b"a", b"", &old(seq), seq as i64, None).unwrap();
    }
    s.truncate(1).unwrap();
    assert_eq!(s.store(b"a", b"", &new(2), 9, None).unwrap(), 2);
    s.flush().unwrap();
    let paths = block_paths(&s);
    let disk = s.log_mut().disk_mut();
    let (truncate, _) =
        *records(disk, &paths[0]).iter().find(|(_, h)| h.kind == Kind::Truncate).unwrap();
    break_header(disk, &paths[0], truncate);
    // The second block's `Base` and message 2 both lose their framing.
    for (off, _) in records(disk, &paths[1]) {
        break_header(disk, &paths[1], off);
    }
    let (mut s, report) = open(s.into_log().into_disk());
    assert_served_or_reported(&mut s, &report, 2);
    for seq in 3..=8 {
        assert_not_resurrected(&mut s, &report, seq);
    }
}
