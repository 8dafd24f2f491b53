//! Bounded memory: loads go through a block cache that never holds more than `cache_bytes`,
//! however large the stream, and never serves bytes the disk no longer holds.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::disk::{FaultConfig, MemDisk};
use crate::store::*;

fn payload(seq: u64) -> Vec<u8> {
    (0..1000).map(|i| (seq as usize * 31 + i) as u8).collect()
}

fn store(cache_bytes: u64) -> FileStore<MemDisk> {
    let mut cfg = FileStoreConfig::new("s");
    cfg.block_size = 16 << 10;
    cfg.cache_bytes = cache_bytes;
    let (mut s, _) =
        FileStore::open(MemDisk::new(1, FaultConfig::default()), cfg, Limits::default()).unwrap();
    for seq in 1..=2000u64 {
        assert_eq!(s.store(b"a.b", b"", &payload(seq), seq as i64, None).unwrap(), seq);
    }
    s.flush().unwrap();
    s
}

#[test]
fn a_stream_far_larger_than_the_cache_loads_within_its_budget() {
    const BUDGET: u64 = 64 << 10;
    let mut s = store(BUDGET);
    let blocks = s.log().block_ids().len() as u64;
    assert!(blocks > 100, "the stream spans {blocks} blocks, ~30x the cache");
    // A sequential pass reads each sealed block once, then serves its messages from memory.
    for seq in 1..=2000u64 {
        let m = s.load(seq).unwrap().unwrap();
        assert_eq!(&m.payload[..], &payload(seq)[..]);
        assert!(s.log().cached_bytes() <= BUDGET, "cache over budget at seq {seq}");
    }
    let (hits, misses) = s.log().cache_stats();
    assert!(misses <= blocks, "a sequential pass missed {misses} times for {blocks} blocks");
    assert!(hits > 1500, "only {hits} loads served from the cache");
    // Random loads evict and refill without ever exceeding the budget.
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for _ in 0..3000 {
        let seq = rng.random_range(1..=2000u64);
        assert_eq!(&s.load(seq).unwrap().unwrap().payload[..], &payload(seq)[..]);
        assert!(s.log().cached_bytes() <= BUDGET);
    }
    assert!(s.log().cached_bytes() > BUDGET / 2, "the cache is used, not just bounded");
}

#[test]
fn no_cache_means_no_block_held() {
    let mut s = store(0);
    for seq in (1..=2000u64).step_by(7) {
        assert_eq!(&s.load(seq).unwrap().unwrap().payload[..], &payload(seq)[..]);
    }
    assert_eq!(s.log().cached_bytes(), 0);
    assert_eq!(s.log().cache_stats(), (0, 0));
}

#[test]
fn erase_and_compaction_drop_cached_blocks() {
    let mut s = store(1 << 20);
    assert!(s.load(10).unwrap().is_some());
    assert!(s.load(11).unwrap().is_some());
    assert!(s.log().cached_bytes() > 0);
    // The erase rewrites the cached block in place: the cache must not keep the old bytes,
    // so the next load from that block reads it again.
    let (_, misses) = s.log().cache_stats();
    assert!(s.erase(10).unwrap());
    s.flush().unwrap();
    assert_eq!(s.load(10).unwrap(), None);
    assert_eq!(&s.load(11).unwrap().unwrap().payload[..], &payload(11)[..]);
    assert_eq!(&s.load(12).unwrap().unwrap().payload[..], &payload(12)[..]);
    assert_eq!(s.log().cache_stats().1, misses + 1, "the erased block was not re-read");
    // Removed blocks leave the cache with their files.
    s.compact(1500).unwrap();
    s.flush().unwrap();
    let live: std::collections::BTreeSet<u32> = s.log().block_ids().into_iter().collect();
    assert!(!live.contains(&1));
    assert!(s.log().cached_bytes() <= (live.len() as u64) * (17 << 10));
    assert_eq!(&s.load(1600).unwrap().unwrap().payload[..], &payload(1600)[..]);
}

/// A random load reads its record, not its whole block: over a store larger than the cache,
/// whole-block reads would cost a block per load. A run of loads from one block (a consumer
/// reading in order) still reads it whole once and serves the rest from memory.
#[test]
fn random_loads_read_records_and_runs_read_blocks() {
    let mut s = store(64 << 10);
    // Every ~17 messages a new block; never two loads in a row from one block.
    let spread: Vec<u64> = (1..=1900u64).step_by(97).collect();
    for &seq in &spread {
        assert_eq!(&s.load(seq).unwrap().unwrap().payload[..], &payload(seq)[..]);
    }
    // Backwards in one block is no run either.
    for seq in [40u64, 38, 36, 34] {
        assert_eq!(&s.load(seq).unwrap().unwrap().payload[..], &payload(seq)[..]);
    }
    assert_eq!(s.log().cache_stats(), (0, 0), "a scattered load read its whole block");
    assert_eq!(s.log().cached_bytes(), 0);
    for seq in 500..=510u64 {
        assert_eq!(&s.load(seq).unwrap().unwrap().payload[..], &payload(seq)[..]);
    }
    let (hits, misses) = s.log().cache_stats();
    assert!((1..=2).contains(&misses), "a run of 11 loads read {misses} blocks whole");
    assert!(hits >= 8, "a run was served from the cache only {hits} times");
}
