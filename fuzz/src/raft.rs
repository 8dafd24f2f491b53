//! Fuzzes a Raft node: random message sequences (stale, future, forged, malformed), ticks,
//! proposals, leadership commands and persistence reports applied to one `RaftNode`, plus
//! random WAL bytes through recovery. Nothing may panic, and after every input:
//! - the node's own invariants hold (`check_invariants`);
//! - its term never goes back, its commit index never goes back, and a committed entry's
//!   identity never changes;
//! - a vote grant leaves only when the persisted term and vote name it (one vote per term);
//! - an append acknowledgement through `i` leaves only when the persisted log holds the same
//!   entry at `i` as the node does, or a durable snapshot covers `i`.
//!
//! Snapshots come in forged messages and from compaction at random applied points; the disk
//! model follows `Storage::install_snapshot`'s rules.

use std::collections::BTreeMap;
use std::time::Duration;

use fjord_core::disk::{Disk, FaultConfig, MemDisk};
use fjord_core::raft::storage::encode_entry;
use fjord_core::raft::{
    Body, Config, Entry, EntryKind, HardState, Message, RaftNode, Recovered, RepairAnswer,
    Snapshot, Storage, StorageMutations,
};
use fjord_core::time::Instant;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ME: u64 = 1;

fn random_entries(rng: &mut ChaCha8Rng, from: u64, max_term: u64) -> Vec<Entry> {
    let n = rng.random_range(0..5);
    let mut term = rng.random_range(0..=max_term);
    let forge = rng.random_bool(0.1);
    (0..n)
        .map(|k| {
            if rng.random_bool(0.3) {
                term = (term + 1).min(max_term);
            }
            let index = if forge { rng.random_range(0..from + 8) } else { from + k };
            let kind = if rng.random_bool(0.2) { EntryKind::Noop } else { EntryKind::Normal };
            let data = (0..rng.random_range(0..4)).map(|_| rng.random()).collect();
            Entry { index, term, kind, data }
        })
        .collect()
}

fn random_message(rng: &mut ChaCha8Rng, node: &RaftNode, peers: u64) -> Message {
    let term = match rng.random_range(0..4) {
        0 => node.term().saturating_sub(1),
        1 | 2 => node.term(),
        _ => node.term() + rng.random_range(1..3),
    };
    let last = node.log().last_index();
    let near = |rng: &mut ChaCha8Rng| rng.random_range(0..=last + 2);
    let body = match rng.random_range(0..10) {
        0 => Body::PreVote { last_index: near(rng), last_term: rng.random_range(0..=term) },
        1 => Body::PreVoteResp { granted: rng.random() },
        2 => Body::Vote {
            last_index: near(rng),
            last_term: rng.random_range(0..=term),
            transfer: rng.random_bool(0.1),
        },
        3 => Body::VoteResp { granted: rng.random_bool(0.7) },
        4 => {
            let prev_index = near(rng);
            let prev_term = match node.log().term(prev_index) {
                Some(t) if rng.random_bool(0.7) => t,
                _ => rng.random_range(0..=term),
            };
            Body::Append {
                prev_index,
                prev_term,
                entries: random_entries(rng, prev_index + 1, term),
                commit: rng.random_range(0..=last + 3),
                leader_last: near(rng),
            }
        }
        5 => Body::AppendResp {
            success: rng.random_bool(0.7),
            index: near(rng),
            faulty: rng.random_bool(0.1),
            rejected: near(rng),
        },
        6 => {
            let index = near(rng);
            let snap_term = match node.log().term(index) {
                Some(t) if rng.random_bool(0.6) => t,
                _ => rng.random_range(0..=term),
            };
            let voters = (1..=rng.random_range(0..4)).collect();
            Body::Snapshot { snapshot: Snapshot { index, term: snap_term, voters, data: vec![1] } }
        }
        7 => Body::TimeoutNow,
        8 => {
            let index = near(rng);
            let t = node.log().term(index).filter(|_| rng.random_bool(0.6));
            Body::RepairReq { index, term: t.unwrap_or_else(|| rng.random_range(0..=term)) }
        }
        _ => {
            // Mostly about the node's own first faulty entry, the one it is repairing.
            let index = match node.log().first_faulty() {
                Some(f) if rng.random_bool(0.8) => f,
                _ => near(rng),
            };
            let t = node.log().term(index).unwrap_or_else(|| rng.random_range(0..=term));
            let answer = match rng.random_range(0..4) {
                0 => {
                    let data = vec![rng.random()];
                    RepairAnswer::Have(Entry { index, term: t, kind: EntryKind::Normal, data })
                }
                1 => RepairAnswer::Lacks,
                2 => {
                    let at = index + rng.random_range(0..3);
                    let snap_term = node.log().term(at).unwrap_or(t);
                    let voters = (1..=peers).collect();
                    let snapshot = Snapshot { index: at, term: snap_term, voters, data: vec![2] };
                    RepairAnswer::Snapshot(snapshot)
                }
                _ => RepairAnswer::Unknown,
            };
            Body::RepairResp { index, term: t, answer }
        }
    };
    let from = if peers == 1 || rng.random_bool(0.05) {
        rng.random_range(0..9)
    } else {
        rng.random_range(2..=peers)
    };
    let to = if rng.random_bool(0.03) { 2 } else { ME };
    Message { from, to, term, body }
}

/// A recovered state: either through `Storage::open` over random WAL bytes, or made up.
fn recovered(rng: &mut ChaCha8Rng) -> Result<Recovered, String> {
    let mut entries = Vec::new();
    let mut term = 0;
    for index in 1..=rng.random_range(0..8u64) {
        term += rng.random_range(0..2);
        entries.push(Entry { index, term, kind: EntryKind::Normal, data: vec![index as u8] });
    }
    if rng.random_bool(0.5) {
        let hs_term = term + rng.random_range(0..3);
        let vote = rng.random_bool(0.5).then(|| rng.random_range(1..=3));
        return Ok(Recovered {
            hard_state: HardState { term: hs_term, vote, fence: 0 },
            snapshot: None,
            entries,
            report: Default::default(),
        });
    }
    let mut disk = MemDisk::new(rng.random(), FaultConfig::default());
    disk.create_dir_all("r").map_err(|e| e.to_string())?;
    let mut wal = Vec::new();
    for e in &entries {
        encode_entry(e, rng.random_bool(0.1), &mut wal);
    }
    for _ in 0..rng.random_range(0..3) {
        if !wal.is_empty() {
            let i = rng.random_range(0..wal.len());
            wal[i] ^= 1 << rng.random_range(0..8);
        }
    }
    if rng.random_bool(0.3) && !wal.is_empty() {
        let cut = rng.random_range(0..wal.len());
        wal.truncate(cut);
    }
    disk.create("r/wal").map_err(|e| e.to_string())?;
    disk.write_at("r/wal", 0, &wal).map_err(|e| e.to_string())?;
    let (_, rec) = Storage::open(&mut disk, "r", StorageMutations::default())
        .map_err(|e| format!("recovery failed on MemDisk: {e}"))?;
    // Recovery's output must itself be a well-formed log.
    if rec.snapshot.is_some() {
        return Err("recovery made up a snapshot".into());
    }
    for (i, e) in rec.entries.iter().enumerate() {
        if e.index != i as u64 + 1 {
            return Err(format!("recovered entry {i} has index {}", e.index));
        }
    }
    Ok(rec)
}

/// The persisted state as the disk holds it: term/vote, the snapshot's identity and the log
/// entries after it.
struct DiskModel {
    hs: HardState,
    base: (u64, u64),
    log: BTreeMap<u64, u64>,
}

/// A `Ready`'s writes: hard state, snapshot (and whether the log after it stayed), entries.
type Writes = (Option<HardState>, Option<(Snapshot, bool)>, Vec<Entry>);

impl DiskModel {
    /// Writes batches in order, as the driver does (`Storage::install_snapshot`'s rules).
    fn write(&mut self, batches: impl Iterator<Item = Writes>) -> Result<(), String> {
        for (hs, snap, entries) in batches {
            if let Some(hs) = hs {
                self.hs = hs;
            }
            if let Some((s, keep)) = snap {
                let there = if self.base.0 == s.index {
                    Some(self.base.1)
                } else {
                    self.log.get(&s.index).copied()
                };
                if keep && there == Some(s.term) {
                    self.log.retain(|&i, _| i > s.index);
                } else {
                    self.log.clear();
                }
                self.base = (s.index, s.term);
            }
            for e in entries {
                let last = self.log.keys().next_back().copied().unwrap_or(0);
                if e.index <= self.base.0 || e.index > last.max(self.base.0) + 1 {
                    return Err(format!(
                        "a Ready carried index {} after the disk's {last} (snapshot {})",
                        e.index, self.base.0
                    ));
                }
                self.log.retain(|&i, _| i < e.index);
                self.log.insert(e.index, e.term);
            }
        }
        Ok(())
    }
}

pub fn run_case(seed: u64, case: u64) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(case);
    let peers = [1u64, 3, 5][rng.random_range(0..3)];
    let cfg = Config::new(ME, (1..=peers).collect());
    let rec = recovered(&mut rng)?;
    let mut disk = DiskModel {
        hs: rec.hard_state,
        base: (0, 0),
        log: rec.entries.iter().map(|e| (e.index, e.term)).collect(),
    };
    let mut now = Instant(rng.random_range(0..1u64 << 40));
    let mut node = RaftNode::new(cfg, rec, ChaCha8Rng::seed_from_u64(rng.random()), now);
    // Ready batches handed out and not yet written (the model writes and syncs at once).
    let mut pending: Vec<Writes> = Vec::new();
    let mut committed: BTreeMap<u64, u64> = BTreeMap::new();
    let mut persisted_upto = 0;
    let (mut last_term, mut last_commit) = (node.term(), node.commit());

    for step in 0..rng.random_range(1..300) {
        match rng.random_range(0..10) {
            0..=4 => {
                let m = random_message(&mut rng, &node, peers);
                node.step(now, m);
            }
            5 => {
                now = now + Duration::from_millis(rng.random_range(0..400));
                node.tick(now);
            }
            6 => {
                let _ = node.propose(now, vec![step as u8]);
            }
            7 => match rng.random_range(0..4) {
                0 => node.transfer_leadership(now, rng.random_range(0..=peers + 1)),
                1 => node.step_down(now),
                2 => {
                    // Compaction at the apply point (the snapshot is durable first) or, to
                    // test the refusals, anywhere.
                    let applied = node.log().applied();
                    let index = if rng.random_bool(0.7) {
                        applied
                    } else {
                        rng.random_range(0..=applied + 2)
                    };
                    let term = node.log().term(index).unwrap_or(0);
                    let snap = Snapshot { index, term, voters: vec![ME], data: Vec::new() };
                    let ok_point = index > node.log().offset() && index <= applied;
                    match node.compact(snap) {
                        Ok(()) if !ok_point => {
                            return Err(format!(
                                "step {step}: compacted at {index} (applied {applied})"
                            ))
                        }
                        Ok(()) => {
                            // The driver wrote every Ready before this; `install_snapshot`
                            // with `keep_log`: the durable entry there must be this one,
                            // since it was applied.
                            disk.write(pending.drain(..))?;
                            if disk.log.get(&index) != Some(&term) && disk.base != (index, term) {
                                return Err(format!(
                                    "step {step}: compacted at {index}, not durable"
                                ));
                            }
                            disk.log.retain(|&i, _| i > index);
                            disk.base = (index, term);
                        }
                        Err(_) => {}
                    }
                }
                // A late or repeated report of what really was persisted.
                _ => node.on_persisted(now, rng.random_range(0..=persisted_upto)),
            },
            _ => {
                // Drain, persisting some of what was handed out.
                while node.has_ready() {
                    let rd = node.ready();
                    for m in &rd.messages {
                        if m.from != ME {
                            return Err(format!("step {step}: sent a message from {}", m.from));
                        }
                        match m.body {
                            Body::VoteResp { granted: true }
                                if (disk.hs.term, disk.hs.vote) != (m.term, Some(m.to)) =>
                            {
                                return Err(format!(
                                    "step {step}: granted a vote to {} in term {} while the disk holds {:?}",
                                    m.to, m.term, disk.hs
                                ));
                            }
                            Body::AppendResp { success: true, index, .. }
                                if index > disk.base.0 =>
                            {
                                let on_disk = disk.log.get(&index).copied();
                                if on_disk.is_none() || on_disk != node.log().term(index) {
                                    return Err(format!(
                                        "step {step}: acknowledged index {index} while the disk holds term {on_disk:?} there"
                                    ));
                                }
                            }
                            _ => {}
                        }
                    }
                    let snap = rd.snapshot.map(|s| (s, rd.snapshot_keeps_log));
                    pending.push((rd.hard_state, snap, rd.entries));
                    if rng.random_bool(0.7) {
                        disk.write(pending.drain(..))?;
                        persisted_upto = rd.number;
                        node.on_persisted(now, rd.number);
                    }
                }
            }
        }
        node.check_invariants().map_err(|e| format!("step {step}: {e}"))?;
        if node.term() < last_term || node.commit() < last_commit {
            return Err(format!("step {step}: term or commit went back"));
        }
        (last_term, last_commit) = (node.term(), node.commit());
        for i in node.log().offset().max(1)..=node.commit() {
            let t = node.log().term(i).ok_or(format!("step {step}: commit past the log"))?;
            match committed.get(&i) {
                Some(&c) if c != t => {
                    return Err(format!("step {step}: committed entry {i} changed term {c} -> {t}"))
                }
                Some(_) => {}
                None => {
                    committed.insert(i, t);
                }
            }
        }
    }
    Ok(())
}
