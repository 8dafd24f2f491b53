//! Power loss and corruption on a simulated disk, and the mutation canaries that prove these
//! tests would notice a store that cheats.
//!
//! Checkers, per seed:
//! - every message a `flush` reported durable (and not since removed) loads back after a crash
//!   with identical bytes;
//! - no load ever returns bytes that were not stored at that sequence;
//! - under bit flips, a durable message either loads intact or is reported as corrupt (by the
//!   recovery report or a `Corrupt` error), never silently missing;
//! - recovery never panics and never fails.

use std::collections::BTreeMap;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::model::file_config;
use crate::disk::{FaultConfig, MemDisk};
use crate::store::file::Canaries;
use crate::store::*;

const SUBJECTS: &[&[u8]] = &[b"orders.eu", b"orders.us", b"kv.a", b"kv.b"];

struct Run {
    rng: ChaCha8Rng,
    /// Everything stored at each sequence in this incarnation of the sequence space.
    written: BTreeMap<u64, StoredMsg>,
    /// Reported durable by `flush` and not removed since.
    must_exist: BTreeMap<u64, StoredMsg>,
}

impl Run {
    /// Stores, removes and flushes at random; returns the store.
    fn workload(&mut self, store: &mut FileStore<MemDisk>, steps: usize) -> Result<(), String> {
        let mut pending = BTreeMap::new();
        for _ in 0..steps {
            match self.rng.random_range(0..10) {
                0..=6 => {
                    let subject = SUBJECTS[self.rng.random_range(0..SUBJECTS.len())];
                    let mut payload = vec![0u8; self.rng.random_range(0..300)];
                    self.rng.fill(&mut payload[..]);
                    let ts = self.rng.random_range(0..1_000_000);
                    let seq = store
                        .store(subject, b"", &payload, ts, None)
                        .map_err(|e| format!("store: {e}"))?;
                    let msg = StoredMsg {
                        seq,
                        subject: Bytes::from_static(subject),
                        headers: Bytes::new(),
                        payload: payload.into(),
                        ts,
                        ttl: None,
                    };
                    self.written.insert(seq, msg.clone());
                    pending.insert(seq, msg);
                }
                7 => {
                    let last = store.state().last_seq;
                    if last > 0 {
                        let seq = self.rng.random_range(1..=last);
                        // Absent or present after a crash are both right until the removal is
                        // durable, so stop requiring it now.
                        self.must_exist.remove(&seq);
                        pending.remove(&seq);
                        store.remove(seq).map_err(|e| format!("remove: {e}"))?;
                    }
                }
                _ => {
                    for seq in store.flush().map_err(|e| format!("flush: {e}"))? {
                        if let Some(m) = pending.remove(&seq) {
                            self.must_exist.insert(seq, m);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Loads every sequence; `damaged` lists what recovery or reads declared corrupt.
    fn check(&self, store: &mut FileStore<MemDisk>, report: &RecoveryReport) -> Result<(), String> {
        let covered = |seq: u64, ranges: &[(u64, Option<u64>)]| {
            ranges.iter().any(|(f, t)| seq >= *f && t.is_none_or(|t| seq <= t))
        };
        let last = store.state().last_seq;
        for seq in 1..=last {
            match store.load(seq) {
                Ok(Some(m)) => {
                    if self.written.get(&seq) != Some(&m) {
                        return Err(format!(
                            "seq {seq} returned bytes that were never stored there"
                        ));
                    }
                }
                Ok(None) => {
                    if self.must_exist.contains_key(&seq) && !covered(seq, &report.corrupt) {
                        return Err(format!(
                            "durable seq {seq} lost without a report ({report:?})"
                        ));
                    }
                }
                Err(StoreError::Corrupt { from, to }) => {
                    if !covered(seq, &[(from, to)]) {
                        return Err(format!(
                            "seq {seq}: corruption error for other seqs {from}..{to:?}"
                        ));
                    }
                }
                Err(e) => return Err(format!("load {seq}: {e}")),
            }
        }
        if let Some((seq, _)) = self.must_exist.range(last + 1..).next() {
            if !covered(*seq, &report.corrupt) {
                return Err(format!("durable seq {seq} is above the recovered last seq {last}"));
            }
        }
        Ok(())
    }
}

/// What a seed injects between a workload and its crash.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    PowerLoss,
    BitFlips,
}

/// One seed: a few rounds of workload then crash (with torn writes, or with bit flips in
/// durable bytes), each followed by recovery and the checks. Returns torn bytes seen.
fn run_seed(seed: u64, fault: Fault, canaries: Canaries) -> Result<u64, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let faults = FaultConfig {
        torn_writes: fault == Fault::PowerLoss,
        tear_block: 64,
        ..Default::default()
    };
    let mut cfg = file_config(rng.random_range(512..8192), rng.random_range(0..4));
    cfg.canaries = canaries;
    // Half the seeds compress sealed blocks (decided without a draw, so seeds keep their runs).
    cfg.compress = seed % 2 == 1;
    let disk = MemDisk::new(rng.random(), faults);
    let (mut store, _) =
        FileStore::open(disk, cfg.clone(), Limits::default()).map_err(|e| format!("open: {e}"))?;
    let mut run = Run { rng, written: BTreeMap::new(), must_exist: BTreeMap::new() };
    let mut torn = 0;
    for _round in 0..4 {
        let steps = run.rng.random_range(1..120);
        run.workload(&mut store, steps)?;
        let mut disk = store.into_log().into_disk();
        if fault == Fault::BitFlips {
            // Corruption at rest, in durable bytes only.
            let paths = disk.paths();
            for _ in 0..run.rng.random_range(1..4) {
                if paths.is_empty() {
                    break;
                }
                let path = &paths[run.rng.random_range(0..paths.len())];
                disk.flip_random_bit(path).map_err(|e| e.to_string())?;
            }
        }
        disk.crash();
        let (mut reopened, report) = FileStore::open(disk, cfg.clone(), Limits::default())
            .map_err(|e| format!("recovery failed: {e}"))?;
        torn += report.torn_bytes;
        if fault == Fault::PowerLoss && !report.corrupt.is_empty() {
            return Err(format!("power loss alone reported corruption: {report:?}"));
        }
        // Sequences above the recovered last were never acknowledged (or are reported):
        // they may be handed out again.
        let last = reopened.state().last_seq;
        run.written.retain(|s, _| *s <= last);
        run.check(&mut reopened, &report)?;
        // Damaged sequences are reported once; the run goes on without requiring them.
        let damaged = reopened.corrupt().to_vec();
        run.must_exist
            .retain(|s, _| !damaged.iter().any(|(f, t)| s >= f && t.is_none_or(|t| *s <= t)));
        if !damaged.is_empty() {
            return Ok(torn);
        }
        store = reopened;
    }
    Ok(torn)
}

const SEEDS: u64 = 150;
/// A canary must fail within this many seeds.
const CANARY_SEEDS: u64 = 10;

#[test]
fn durable_writes_survive_power_loss_and_torn_tails_are_cut() {
    let mut torn = 0;
    for seed in 0..SEEDS {
        torn += run_seed(seed, Fault::PowerLoss, Canaries::default())
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
    assert!(torn > 0, "no seed tore a tail: the test does not exercise torn writes");
}

#[test]
fn bit_flips_are_reported_never_served() {
    for seed in 0..SEEDS {
        run_seed(seed, Fault::BitFlips, Canaries::default())
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

#[test]
fn canary_ack_before_sync_is_caught() {
    let canary = Canaries { ack_before_sync: true, ..Canaries::default() };
    let caught = (0..CANARY_SEEDS).find_map(|s| run_seed(s, Fault::PowerLoss, canary).err());
    let why = caught.unwrap_or_else(|| {
        panic!("acknowledging before sync went unnoticed for {CANARY_SEEDS} seeds")
    });
    // Caught for the right reason: an acknowledged write went missing.
    assert!(why.contains("durable seq"), "{why}");
}

#[test]
fn canary_skip_checksum_is_caught() {
    let canary = Canaries { skip_checksum: true, ..Canaries::default() };
    let caught = (0..CANARY_SEEDS).find_map(|s| run_seed(s, Fault::BitFlips, canary).err());
    let why = caught
        .unwrap_or_else(|| panic!("skipping checksums went unnoticed for {CANARY_SEEDS} seeds"));
    // Caught for the right reason: damaged bytes were served as a message.
    assert!(why.contains("never stored"), "{why}");
}

/// How many of the first seeds each canary fails, for the record (run with --nocapture).
#[test]
fn canary_catch_rates() {
    let ack = Canaries { ack_before_sync: true, ..Canaries::default() };
    let skip = Canaries { skip_checksum: true, ..Canaries::default() };
    let a = (0..CANARY_SEEDS).filter(|s| run_seed(*s, Fault::PowerLoss, ack).is_err()).count();
    let b = (0..CANARY_SEEDS).filter(|s| run_seed(*s, Fault::BitFlips, skip).is_err()).count();
    println!(
        "canaries caught: ack_before_sync {a}/{CANARY_SEEDS}, skip_checksum {b}/{CANARY_SEEDS}"
    );
}

/// An erase rewrites a message's record in place, in a sealed block. A power loss that tears
/// the rewrite inside its header leaves one bad record of known length and sequence; when it
/// is the block's last record, the bad region runs to the block's end, not to a next record,
/// and it is still that one erased message (its tombstone is durable), not damage of unknown
/// extent (simulator seed 73 of the store workload).
#[test]
fn a_torn_erase_of_a_blocks_last_message_is_not_corruption() {
    let mut c = FileStoreConfig::new("s");
    c.block_size = 200;
    c.checkpoint_every = 0;
    let (mut s, _) =
        FileStore::open(MemDisk::new(3, FaultConfig::default()), c.clone(), Limits::default())
            .unwrap();
    for seq in 1..=20u64 {
        s.store(b"a", b"", &[seq as u8; 60], seq as i64, None).unwrap();
    }
    s.flush().unwrap();
    // A message that ends a sealed block (not the first block: erasing all it holds would
    // let a flush delete it).
    let seq = (5..=19u64)
        .find(|q| {
            let (a, b) = (s.index.get(*q).unwrap().loc, s.index.get(q + 1).unwrap().loc);
            a.block != b.block
        })
        .unwrap();
    let loc = s.index.get(seq).unwrap().loc;
    assert!(s.erase(seq).unwrap());
    s.flush().unwrap();
    // Tear the rewritten header: its header checksum no longer holds.
    let path = s.log().block_path(loc.block);
    s.log_mut().disk_mut().flip_bit(&path, (loc.offset + 17) * 8).unwrap();
    let (mut s, report) = FileStore::open(s.into_log().into_disk(), c, Limits::default()).unwrap();
    assert!(report.corrupt.is_empty(), "{report:?}");
    assert_eq!(s.load(seq).unwrap(), None);
    for q in (1..=20u64).filter(|q| *q != seq) {
        assert_eq!(&s.load(q).unwrap().unwrap().payload[..], &[q as u8; 60][..], "seq {q}");
    }
}
