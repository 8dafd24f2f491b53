//! The store workload's checker: a model of the stream replayed from the operations the
//! clients issued, the acknowledgements `flush` gave, and what a fault atlas says was corrupted.
//!
//! Properties, each a failure with its evidence when violated:
//! - a load never returns bytes other than those stored at that sequence (and, while the store
//!   runs, exactly the model's message there);
//! - after recovery, every store acknowledged as durable (and not removed by any later
//!   operation, durable or not) is present with identical bytes, unless a bit flip was injected
//!   on its record, and then it is reported as corrupt, never silently missing;
//! - nothing unacknowledged is required: the recovered state equals the model replayed from
//!   the last recovery through the durable operations plus some prefix of the ones after them
//!   (power loss keeps a prefix of unsynced writes at most);
//! - power loss, torn writes, read errors and a full disk alone never produce a corruption
//!   report (only injected bit flips may);
//! - recovery never panics (a panic fails the run, see `run_world`).
//!
//! The checker owns no store: the workload hands it what the store answered.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use fjord_core::store::{StoreError, StoredMsg};
use fjord_core::subject;

use super::Violation;

/// One mutation a client issued, with what the model needs to replay it.
#[derive(Clone, Debug)]
pub enum Op {
    Store(StoredMsg),
    /// Remove and erase look the same to a reader.
    Remove(u64),
    Purge,
    Compact(u64),
    Truncate(u64),
    Skip {
        count: u64,
        ts: i64,
    },
}

/// The stream as an obviously-correct map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    pub msgs: BTreeMap<u64, StoredMsg>,
    pub last_seq: u64,
    pub last_ts: i64,
}

impl Model {
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Store(m) => {
                self.msgs.insert(m.seq, m.clone());
                self.last_seq = m.seq;
                self.last_ts = m.ts;
            }
            Op::Remove(seq) => {
                self.msgs.remove(seq);
            }
            // The engine writes a compaction at `last_seq + 1`.
            Op::Purge => self.compact(self.last_seq + 1),
            Op::Compact(seq) => self.compact(*seq),
            Op::Truncate(seq) => {
                if *seq < self.last_seq {
                    self.last_ts = self.msgs.get(seq).map_or(0, |m| m.ts);
                    self.msgs.retain(|s, _| s <= seq);
                    self.last_seq = *seq;
                }
            }
            Op::Skip { count, ts } => {
                if *count > 0 {
                    self.last_seq += count;
                    self.last_ts = *ts;
                }
            }
        }
    }

    fn compact(&mut self, seq: u64) {
        if seq == 0 {
            return;
        }
        self.msgs.retain(|s, _| *s >= seq);
        if seq > self.last_seq + 1 {
            self.last_seq = seq - 1;
        }
    }

    /// What `purge_ex(filter, up_to, keep)` removes, in the order the engine removes them.
    pub fn purge_ex_victims(
        &self,
        filter: &[u8],
        up_to: Option<u64>,
        keep: Option<u64>,
    ) -> Vec<u64> {
        let mut by_subject: BTreeMap<&Bytes, Vec<u64>> = BTreeMap::new();
        for (seq, m) in &self.msgs {
            if filter == b">" || subject::matches(filter, &m.subject) {
                by_subject.entry(&m.subject).or_default().push(*seq);
            }
        }
        let mut doomed: Vec<u64> = Vec::new();
        for seqs in by_subject.values() {
            let keep_from = seqs.len().saturating_sub(keep.unwrap_or(0) as usize);
            doomed
                .extend(seqs[..keep_from].iter().copied().filter(|s| up_to.is_none_or(|u| *s < u)));
        }
        doomed.sort_unstable();
        doomed
    }

    pub fn live(&self) -> BTreeSet<u64> {
        self.msgs.keys().copied().collect()
    }

    /// The first live message at or after `start` matching `filter`.
    pub fn next_matching(&self, filter: &[u8], start: u64) -> Option<u64> {
        self.msgs
            .range(start..)
            .find(|(_, m)| filter == b">" || subject::matches(filter, &m.subject))
            .map(|(s, _)| *s)
    }

    pub fn last_matching(&self, filter: &[u8]) -> Option<u64> {
        self.msgs
            .iter()
            .rev()
            .find(|(_, m)| filter == b">" || subject::matches(filter, &m.subject))
            .map(|(s, _)| *s)
    }
}

/// Which data the injected bit flips hit, so checks excuse exactly that damage.
#[derive(Clone, Debug, Default)]
pub struct Excuses {
    /// Sequences of message, tombstone, erase or skip records that took a flip.
    pub seqs: BTreeSet<u64>,
    /// A flip hit a record whose loss changes more than its own sequence (compact, truncate,
    /// block base) or could not be placed: the exact-state check is off from then on.
    pub relaxed: bool,
    /// Any flip at all was injected (the store may then report corruption).
    pub any: bool,
}

/// What a recovered store looks like, as the workload read it with injected read errors off.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    pub last_seq: u64,
    pub live: BTreeSet<u64>,
    /// Every live sequence's load: a message, or the error the store gave.
    pub loads: BTreeMap<u64, Result<StoredMsg, StoreError>>,
    /// The store's damaged ranges (recovery report and reads).
    pub corrupt: Vec<(u64, Option<u64>)>,
    /// Loads of acknowledged sequences that recovery did not index.
    pub missing_loads: BTreeMap<u64, Result<Option<StoredMsg>, StoreError>>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct StoreStats {
    pub stores: u64,
    pub acked: u64,
    pub flushes: u64,
    pub ops: u64,
    pub loads_checked: u64,
    pub recoveries: u64,
    pub recoveries_from_checkpoint: u64,
    pub exact_matches: u64,
    pub torn_bytes: u64,
    pub flips: u64,
    pub corrupt_reported: u64,
    pub read_errors: u64,
    pub no_space: u64,
    pub acked_verified: u64,
    /// Messages removed by `max_age` expiry.
    pub expired: u64,
}

#[derive(Debug, Default)]
pub struct StoreChecker {
    /// The model at the last recovery (what was then on disk, so durable).
    base: Model,
    /// Mutations since `base`, in order.
    ops: Vec<Op>,
    /// How many of `ops` the last successful flush covers.
    durable_ops: usize,
    /// `base` with every op applied: what the running store must answer.
    current: Model,
    /// Every message ever stored at each sequence (a sequence is reused after a truncate).
    history: BTreeMap<u64, Vec<StoredMsg>>,
    /// Acknowledged messages, by sequence.
    acked: BTreeMap<u64, StoredMsg>,
    /// Stored since the last flush, awaiting its acknowledgement.
    unacked: BTreeMap<u64, StoredMsg>,
    pub stats: StoreStats,
}

fn covered(seq: u64, ranges: &[(u64, Option<u64>)]) -> bool {
    ranges.iter().any(|(f, t)| seq >= *f && t.is_none_or(|t| seq <= t))
}

impl StoreChecker {
    pub fn current(&self) -> &Model {
        &self.current
    }

    pub fn record(&mut self, op: Op) {
        self.stats.ops += 1;
        if let Op::Store(m) = &op {
            self.stats.stores += 1;
            self.history.entry(m.seq).or_default().push(m.clone());
            self.unacked.insert(m.seq, m.clone());
        }
        self.current.apply(&op);
        self.ops.push(op);
    }

    /// A flush succeeded: every op so far is durable, and these sequences are acknowledged.
    pub fn flushed(&mut self, acked: &[u64]) -> Result<(), Violation> {
        self.stats.flushes += 1;
        self.durable_ops = self.ops.len();
        // A sequence stored, truncated away and stored again before one flush is listed twice.
        let acked: BTreeSet<u64> = acked.iter().copied().collect();
        for seq in &acked {
            let Some(m) = self.unacked.remove(seq) else {
                return Err(Violation(format!(
                    "flush acknowledged seq {seq}, which no store since the last flush returned"
                )));
            };
            self.stats.acked += 1;
            self.acked.insert(*seq, m);
        }
        if let Some(seq) = self.unacked.keys().find(|s| self.current.msgs.contains_key(s)) {
            return Err(Violation(format!(
                "flush did not acknowledge seq {seq}, stored before it and still live"
            )));
        }
        self.unacked.clear();
        Ok(())
    }

    /// A load by sequence on the running store.
    pub fn check_load(
        &mut self,
        seq: u64,
        got: &Result<Option<StoredMsg>, StoreError>,
        ex: &Excuses,
        read_errors_on: bool,
    ) -> Result<(), Violation> {
        self.stats.loads_checked += 1;
        let want = self.current.msgs.get(&seq);
        match got {
            Ok(Some(m)) => self.same_as_stored(m, want, ex),
            Ok(None) if want.is_none() || ex.seqs.contains(&seq) || ex.relaxed => Ok(()),
            Ok(None) => Err(Violation(format!("load {seq}: no message, but seq {seq} is live"))),
            Err(e) => self.excused_error(seq, e, ex, read_errors_on),
        }
    }

    /// `load_next` / `load_last` on the running store: the answer is the model's, unless
    /// corruption (which removes sequences from the store's view) was injected.
    pub fn check_query(
        &mut self,
        what: &str,
        want_seq: Option<u64>,
        got: &Result<Option<StoredMsg>, StoreError>,
        ex: &Excuses,
        read_errors_on: bool,
    ) -> Result<(), Violation> {
        self.stats.loads_checked += 1;
        match got {
            Ok(Some(m)) => {
                let want = self.current.msgs.get(&m.seq);
                self.same_as_stored(m, want, ex)?;
                if !ex.any && want_seq != Some(m.seq) {
                    return Err(Violation(format!(
                        "{what}: returned seq {}, the model says {want_seq:?}",
                        m.seq
                    )));
                }
                Ok(())
            }
            Ok(None) if want_seq.is_none() || ex.any => Ok(()),
            Ok(None) => Err(Violation(format!("{what}: nothing, the model says {want_seq:?}"))),
            Err(e) => {
                let seq = match e {
                    StoreError::Corrupt { from, .. } => *from,
                    _ => 0,
                };
                self.excused_error(seq, e, ex, read_errors_on)
            }
        }
    }

    fn same_as_stored(
        &self,
        m: &StoredMsg,
        want: Option<&StoredMsg>,
        ex: &Excuses,
    ) -> Result<(), Violation> {
        let versions = self.history.get(&m.seq).map_or(&[][..], |v| &v[..]);
        if !versions.contains(m) {
            return Err(Violation(format!(
                "seq {} returned bytes that were never stored there (payload {} bytes, subject {:?})",
                m.seq,
                m.payload.len(),
                String::from_utf8_lossy(&m.subject)
            )));
        }
        if want != Some(m) && !ex.relaxed && !ex.seqs.contains(&m.seq) {
            return Err(Violation(format!(
                "seq {} returned an old or removed message (the model holds {:?})",
                m.seq,
                want.map(|w| w.payload.len())
            )));
        }
        Ok(())
    }

    fn excused_error(
        &mut self,
        seq: u64,
        e: &StoreError,
        ex: &Excuses,
        read_errors_on: bool,
    ) -> Result<(), Violation> {
        match e {
            StoreError::Disk(_) if read_errors_on => {
                self.stats.read_errors += 1;
                Ok(())
            }
            StoreError::Corrupt { .. } if ex.any => {
                self.stats.corrupt_reported += 1;
                Ok(())
            }
            other => Err(Violation(format!("load {seq}: unexpected error {other}"))),
        }
    }

    /// After a crash and recovery: checks the recovered store against the model, then makes
    /// what was recovered the new base.
    pub fn recovered(&mut self, r: &Recovered, ex: &Excuses) -> Result<(), Violation> {
        self.stats.recoveries += 1;
        if !ex.any && !r.corrupt.is_empty() {
            return Err(Violation(format!(
                "recovery reported corruption {:?} though no bit flip was injected",
                r.corrupt
            )));
        }
        // Candidates: the durable prefix, then each later op (a power loss keeps a prefix).
        let mut model = self.base.clone();
        for op in &self.ops[..self.durable_ops] {
            model.apply(op);
        }
        let mut candidates = vec![model.clone()];
        for op in &self.ops[self.durable_ops..] {
            model.apply(op);
            candidates.push(model.clone());
        }
        // Required: acknowledged, and live with the same message in every candidate.
        let required: Vec<(u64, &StoredMsg)> = self
            .acked
            .iter()
            .filter(|(s, m)| candidates.iter().all(|c| c.msgs.get(s) == Some(*m)))
            .map(|(s, m)| (*s, m))
            .collect();
        // Every served message was stored there (never damaged bytes).
        for (seq, load) in &r.loads {
            match load {
                Ok(m) => {
                    let versions = self.history.get(seq).map_or(&[][..], |v| &v[..]);
                    if !versions.contains(m) {
                        return Err(Violation(format!(
                            "seq {seq} recovered with bytes that were never stored there"
                        )));
                    }
                }
                Err(StoreError::Corrupt { .. }) if ex.any => {}
                Err(e) => return Err(Violation(format!("load {seq} after recovery: {e}"))),
            }
        }
        for (seq, want) in &required {
            let excused = ex.seqs.contains(seq);
            match r.loads.get(seq) {
                Some(Ok(m)) if m == *want => self.stats.acked_verified += 1,
                // Injected damage lost the record that superseded an older message at this
                // sequence (a truncate, then a new store): the older one, intact and really
                // stored there, is back, and the damage was reported.
                Some(Ok(_)) if excused && !r.corrupt.is_empty() => {}
                Some(Ok(m)) => {
                    return Err(Violation(format!(
                        "acknowledged seq {seq} recovered with different bytes ({} vs {} payload bytes)",
                        m.payload.len(),
                        want.payload.len()
                    )))
                }
                Some(Err(StoreError::Corrupt { .. })) if excused => {}
                Some(Err(e)) => {
                    return Err(Violation(format!(
                        "acknowledged seq {seq}: load after recovery failed: {e}"
                    )))
                }
                None if excused && covered(*seq, &r.corrupt) => {}
                None if covered(*seq, &r.corrupt) => {
                    return Err(Violation(format!(
                        "acknowledged seq {seq} reported corrupt, but no bit flip hit it"
                    )))
                }
                None => {
                    return Err(Violation(format!(
                        "acknowledged seq {seq} lost after recovery without a corruption report (recovered last_seq {}, load gave {:?})",
                        r.last_seq,
                        r.missing_loads.get(seq).map(|l| l.as_ref().map(|m| m.is_some()))
                    )))
                }
            }
        }
        // The exact state: some candidate, up to the excused sequences.
        let strip = |set: &BTreeSet<u64>| -> BTreeSet<u64> {
            set.iter().copied().filter(|s| !ex.seqs.contains(s)).collect()
        };
        let got_live = strip(&r.live);
        let same_messages = |c: &Model| {
            got_live.iter().all(|s| match r.loads.get(s) {
                Some(Ok(m)) => c.msgs.get(s) == Some(m),
                _ => true,
            })
        };
        // A candidate that matches without excusing anything is the truth; only if none does
        // may the excused sequences be ignored. Otherwise an excused sequence (one a flip hit,
        // perhaps in an earlier incarnation of it before a truncate) could pick an older prefix
        // that lacks a message the store rightly holds, and the model would drift from the
        // store: seed 33538 picked the durable prefix without seq 79, which recovery had kept.
        let matched = candidates
            .iter()
            .position(|c| c.live() == r.live && c.last_seq == r.last_seq && same_messages(c))
            .or_else(|| {
                candidates.iter().position(|c| {
                    strip(&c.live()) == got_live
                        && (ex.any || c.last_seq == r.last_seq)
                        && same_messages(c)
                })
            });
        let next = match matched {
            Some(i) => {
                self.stats.exact_matches += 1;
                candidates.swap_remove(i)
            }
            None if ex.relaxed => {
                // Rebuild the model from what was recovered (flips made the exact state unknowable).
                let mut m = Model { last_seq: r.last_seq, ..Model::default() };
                for (s, load) in &r.loads {
                    if let Ok(msg) = load {
                        m.msgs.insert(*s, msg.clone());
                    }
                }
                m
            }
            None => {
                let durable = &candidates[0];
                let diff = |a: &BTreeSet<u64>, b: &BTreeSet<u64>| {
                    a.difference(b).take(5).copied().collect::<Vec<_>>()
                };
                return Err(Violation(format!(
                    "recovered state matches no prefix of the operations after the durable point ({} durable of {} ops): recovered last_seq {} live {}, durable model last_seq {} live {}; extra {:?} missing {:?}",
                    self.durable_ops,
                    self.ops.len(),
                    r.last_seq,
                    r.live.len(),
                    durable.last_seq,
                    durable.msgs.len(),
                    diff(&got_live, &strip(&durable.live())),
                    diff(&strip(&durable.live()), &got_live),
                )));
            }
        };
        // A flipped message the recovery did not index is gone from this replica: the model
        // follows the store (a later load of it is excused).
        let mut next = next;
        if ex.any {
            next.msgs.retain(|s, _| r.live.contains(s) || !ex.seqs.contains(s));
            next.last_seq = next.last_seq.max(r.last_seq);
            // And an excused sequence the store recovered intact (bytes checked above to be a
            // version really stored there) is live in the store: the model follows it too.
            // Its acknowledgement no longer binds: whether it lives is up to the damage (a lost
            // tombstone brings a removed message back; a later recovery from a checkpoint
            // written before the damage rightly has it removed again: seed 18080).
            for s in r.live.iter().filter(|s| ex.seqs.contains(s)) {
                if let Some(Ok(m)) = r.loads.get(s) {
                    if next.msgs.insert(*s, m.clone()).as_ref() != Some(m) {
                        self.acked.remove(s);
                    }
                }
            }
        }
        // Acknowledgements past the recovered end were of messages a power loss (legitimately,
        // as they were removed or truncated) took: forget them so a reused sequence is not
        // required to hold the old message.
        self.acked.retain(|s, m| next.msgs.get(s) == Some(m));
        // A message in a range the recovery reported (lost, or suspect: a removal of it may
        // have been lost) is no longer promised either way: a later recovery that starts from
        // a checkpoint written before the damage may rightly have it removed (seed 4840: a
        // purge's compaction record lost, the purged messages back and reported; the next
        // recovery, from a checkpoint, had them purged).
        self.acked.retain(|s, _| !covered(*s, &r.corrupt));
        self.unacked.clear();
        self.base = next.clone();
        self.current = next;
        self.ops.clear();
        self.durable_ops = 0;
        Ok(())
    }
}
