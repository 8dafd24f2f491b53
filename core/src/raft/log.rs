//! The in-memory Raft log: entries from index 1, the commit and apply points, what is durable,
//! and which entries are known to be corrupt on this node's disk ("faulty").
//!
//! A faulty entry keeps its `(index, term)` identity (its record header survived, only the
//! body failed its checksum), so the node still knows how long and how recent its log is and
//! votes correctly; but it cannot vouch for the entry's content, so it never acknowledges or
//! applies it until the leader sends it again (DESIGN.md §6.3).
//!
//! After a snapshot the log starts later: `offset` is the snapshot's last index and
//! `offset_term` its term; entries at or below `offset` are gone (the snapshot stands for
//! them), and `term(offset)` still answers so that appends right after it can be matched.

use std::collections::BTreeSet;

use super::message::{Entry, EntryKind};

/// Why an append from a leader was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendError {
    /// Our log has no entry `(prev_index, prev_term)`: the leader must probe further back.
    Mismatch,
    /// Taking the entries would overwrite a committed entry. Never happens with a correct
    /// leader (Leader Completeness); refusing keeps one bad message from destroying data.
    ConflictsWithCommitted,
}

#[derive(Clone, Debug, Default)]
pub struct RaftLog {
    /// `entries[i]` has index `offset + i + 1`.
    entries: Vec<Entry>,
    /// The last index covered by the snapshot (0: none), and the term of that entry.
    offset: u64,
    offset_term: u64,
    faulty: BTreeSet<u64>,
    /// Highest index known committed. Never goes back within one life of the node.
    commit: u64,
    /// Highest index handed to the state machine.
    applied: u64,
    /// Highest index durable on this node's disk in its current form.
    stable: u64,
    /// First index not yet handed to a `Ready` for writing.
    persist_from: u64,
}

impl RaftLog {
    /// A log recovered from disk: everything in it is durable. `(offset, offset_term)` is the
    /// recovered snapshot's identity ((0, 0) without one); `entries` follow it consecutively.
    /// Everything in the snapshot was committed and applied, so both points start there.
    pub fn restored(
        offset: u64,
        offset_term: u64,
        mut entries: Vec<Entry>,
        faulty: impl IntoIterator<Item = u64>,
    ) -> Self {
        let last = offset + entries.len() as u64;
        let mut faulty: BTreeSet<u64> =
            faulty.into_iter().filter(|&i| i > offset && i <= last).collect();
        for e in &mut entries {
            // Either way of naming a faulty entry makes it one, data dropped: a faulty entry
            // is written back as identity-only, never as data.
            if e.kind == EntryKind::Faulty || faulty.contains(&e.index) {
                faulty.insert(e.index);
                e.kind = EntryKind::Faulty;
                e.data.clear();
            }
        }
        RaftLog {
            entries,
            faulty,
            offset,
            offset_term,
            commit: offset,
            applied: offset,
            stable: last,
            persist_from: last + 1,
        }
    }

    /// The snapshot's last index: the log holds entries after it (0 without a snapshot).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn offset_term(&self) -> u64 {
        self.offset_term
    }

    pub fn last_index(&self) -> u64 {
        self.offset + self.entries.len() as u64
    }

    pub fn last_term(&self) -> u64 {
        self.entries.last().map_or(self.offset_term, |e| e.term)
    }

    /// The term of the entry at `index`; the snapshot's last index answers with the
    /// snapshot's term (index 0, the empty prefix, with term 0); compacted indexes with `None`.
    pub fn term(&self, index: u64) -> Option<u64> {
        if index == self.offset {
            return Some(self.offset_term);
        }
        self.entry(index).map(|e| e.term)
    }

    pub fn entry(&self, index: u64) -> Option<&Entry> {
        let i = usize::try_from(index.checked_sub(self.offset + 1)?).ok()?;
        self.entries.get(i)
    }

    /// Position of `index` in `entries` (callers know `offset < index <= last_index`).
    fn pos(&self, index: u64) -> usize {
        (index - self.offset - 1) as usize
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn commit(&self) -> u64 {
        self.commit
    }

    pub fn applied(&self) -> u64 {
        self.applied
    }

    pub fn stable(&self) -> u64 {
        self.stable
    }

    pub fn is_faulty(&self, index: u64) -> bool {
        self.faulty.contains(&index)
    }

    pub fn first_faulty(&self) -> Option<u64> {
        self.faulty.iter().next().copied()
    }

    pub fn faulty(&self) -> impl Iterator<Item = u64> + '_ {
        self.faulty.iter().copied()
    }

    /// §5.4.1: a candidate's log is at least as up to date as ours if its last term is higher,
    /// or equal with a last index at least ours.
    pub fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }

    /// Leader side: appends a new entry of `term` and returns its index.
    pub fn append_new(&mut self, term: u64, kind: EntryKind, data: Vec<u8>) -> u64 {
        let index = self.last_index() + 1;
        self.entries.push(Entry { index, term, kind, data });
        index
    }

    /// Follower side (AppendEntries receiver, Figure 2 rules 2–4): if our log holds
    /// `(prev_index, prev_term)`, make it hold `entries` after it, deleting a conflicting
    /// suffix, and return the index of the last entry the leader sent (or `prev_index`).
    /// `entries` must be consecutive from `prev_index + 1` (the caller checks).
    ///
    /// Entries at or below our snapshot are committed and so, by Leader Completeness, match the
    /// leader's; they are skipped, matching from the snapshot's identity instead.
    pub fn try_append(
        &mut self,
        prev_index: u64,
        prev_term: u64,
        entries: &[Entry],
    ) -> Result<u64, AppendError> {
        let last_sent = prev_index + entries.len() as u64;
        if prev_index < self.offset {
            if last_sent <= self.offset {
                return Ok(last_sent);
            }
            let skip = (self.offset - prev_index) as usize;
            if entries[skip - 1].term != self.offset_term {
                return Err(AppendError::ConflictsWithCommitted);
            }
            return self.try_append(self.offset, self.offset_term, &entries[skip..]);
        }
        if self.term(prev_index) != Some(prev_term) {
            return Err(AppendError::Mismatch);
        }
        // Check before changing anything, so a refused append leaves the log untouched.
        for e in entries {
            if let Some(t) = self.term(e.index) {
                if t != e.term && e.index <= self.commit {
                    return Err(AppendError::ConflictsWithCommitted);
                }
            }
        }
        for e in entries {
            match self.term(e.index) {
                // Same identity: by Log Matching the entry is the same, unless ours is corrupt,
                // in which case this is the repair the follower asked for.
                Some(t) if t == e.term => {
                    if self.faulty.remove(&e.index) {
                        let i = self.pos(e.index);
                        self.entries[i] = e.clone();
                        self.rewrite_from(e.index);
                    }
                }
                Some(_) => {
                    // Rule 3: delete the conflicting entry and all that follow it.
                    self.truncate_after(e.index - 1);
                    self.entries.push(e.clone());
                }
                None => self.entries.push(e.clone()),
            }
        }
        Ok(last_sent)
    }

    /// Leader side of protocol-aware repair: a peer's intact copy `e` of our faulty entry
    /// (same identity) replaces it, to be written again. Returns whether it did.
    pub fn repair(&mut self, e: &Entry) -> bool {
        if e.kind == EntryKind::Faulty
            || self.term(e.index) != Some(e.term)
            || !self.faulty.remove(&e.index)
        {
            return false;
        }
        let i = self.pos(e.index);
        self.entries[i] = e.clone();
        self.rewrite_from(e.index);
        true
    }

    /// Leader side: a majority positively lacks our faulty entry at `index`, so it was never
    /// committed (nor anything after it, by Log Matching): drop it and everything after.
    /// Refuses (false, nothing changed) unless the entry is faulty and above the commit point.
    ///
    /// The WAL keeps the dropped records until a later entry at `index` replaces them: a
    /// restart may bring them back (faulty again, never committed), which costs only another
    /// round of repair requests.
    pub fn discard_from(&mut self, index: u64) -> bool {
        if index <= self.commit || !self.faulty.contains(&index) {
            return false;
        }
        self.truncate_after(index - 1);
        true
    }

    /// Drops every entry after `index`.
    fn truncate_after(&mut self, index: u64) {
        debug_assert!(index >= self.commit, "truncating committed entries");
        self.entries.truncate((index - self.offset) as usize);
        self.faulty.retain(|&i| i <= index);
        self.rewrite_from(index + 1);
    }

    /// Entries from `index` on must be written again (they changed in memory).
    fn rewrite_from(&mut self, index: u64) {
        self.stable = self.stable.min(index.saturating_sub(1));
        self.persist_from = self.persist_from.min(index);
    }

    /// Entries that must be written before they count as durable; marks them handed over.
    /// Returns `(entries, identity of the last)`.
    pub fn take_unstable(&mut self) -> Vec<Entry> {
        let from = self.persist_from.max(self.offset + 1);
        let out: Vec<Entry> = self.entries.iter().skip(self.pos(from)).cloned().collect();
        self.persist_from = self.last_index() + 1;
        out
    }

    pub fn has_unstable(&self) -> bool {
        self.persist_from.max(self.offset + 1) <= self.last_index()
    }

    /// The driver synced everything through `(index, term)`. If the entry there was replaced
    /// since (a newer leader truncated it), the sync covered an older version: ignore it, the
    /// replacement's own sync will follow.
    pub fn on_stable(&mut self, index: u64, term: u64) {
        if index > self.stable && self.term(index) == Some(term) && index < self.persist_from {
            self.stable = index;
        }
    }

    /// Raises the commit index (never lowers it). Callers guarantee `index <= last_index`.
    pub fn commit_to(&mut self, index: u64) {
        let index = index.min(self.last_index());
        if index > self.commit {
            self.commit = index;
        }
    }

    /// The highest index that may be applied: committed, durable here, and not corrupt.
    pub fn applicable(&self) -> u64 {
        let mut upto = self.commit.min(self.stable);
        if let Some(f) = self.first_faulty() {
            upto = upto.min(f - 1);
        }
        upto
    }

    /// Committed entries not yet applied; marks them applied.
    pub fn take_committed(&mut self) -> Vec<Entry> {
        let upto = self.applicable();
        if upto <= self.applied {
            return Vec::new();
        }
        let out = self.entries[self.pos(self.applied + 1)..=self.pos(upto)].to_vec();
        self.applied = upto;
        out
    }

    /// Local compaction: the state machine's snapshot through `index` (applied here) is
    /// durable, so the entries up to it may go. Returns false (nothing changed) unless
    /// `offset < index <= applied`.
    pub fn compact(&mut self, index: u64) -> bool {
        if index <= self.offset || index > self.applied {
            return false;
        }
        let Some(term) = self.term(index) else { return false };
        let n = self.pos(index) + 1;
        self.entries.drain(..n);
        self.offset = index;
        self.offset_term = term;
        self.faulty.retain(|&i| i > index);
        true
    }

    /// A leader's snapshot through `(index, term)`, past our apply point, replaces the log up
    /// to there (§7, InstallSnapshot receiver rules 6 and 7): if we hold that very entry the
    /// entries after it stay (they are the leader's too, or will be overwritten by it);
    /// otherwise the whole log goes. Returns whether the entries after it were kept.
    ///
    /// The snapshot becomes durable with the `Ready` that carries it; until then `stable`
    /// stays below it, so nothing counts it durable early.
    pub fn install_snapshot(&mut self, index: u64, term: u64) -> bool {
        debug_assert!(index > self.applied, "installing a snapshot at or below the apply point");
        let keep = self.term(index) == Some(term) && index > self.offset;
        if keep {
            let n = self.pos(index) + 1;
            self.entries.drain(..n);
            self.persist_from = self.persist_from.max(index + 1);
        } else {
            self.entries.clear();
            self.stable = self.stable.min(index);
            self.persist_from = index + 1;
        }
        self.faulty.retain(|&i| i > index);
        self.offset = index;
        self.offset_term = term;
        self.commit = self.commit.max(index);
        self.applied = index;
        keep
    }

    /// A cheap index the leader may jump back to after a rejection at `prev_index`: just
    /// before the first entry of the conflicting term (Raft §5.3's optimisation), never below
    /// the commit point, never past our end.
    pub fn reject_hint(&self, prev_index: u64) -> u64 {
        if prev_index > self.last_index() {
            return self.last_index();
        }
        let Some(t) = self.term(prev_index) else { return self.last_index() };
        let mut i = prev_index.saturating_sub(1);
        while i > self.commit && self.term(i) == Some(t) {
            i -= 1;
        }
        i
    }

    /// Checks the log's own invariants; used by tests, the fuzzer and debug assertions.
    pub fn check(&self) -> Result<(), String> {
        let mut prev_term = self.offset_term;
        for (i, e) in self.entries.iter().enumerate() {
            if e.index != self.offset + i as u64 + 1 {
                return Err(format!("entry at position {i} has index {}", e.index));
            }
            if e.term < prev_term {
                return Err(format!("term goes back at index {}", e.index));
            }
            prev_term = e.term;
        }
        if self.offset > self.applied
            || self.applied > self.commit
            || self.commit > self.last_index()
        {
            return Err(format!(
                "offset {} applied {} commit {} last {}",
                self.offset,
                self.applied,
                self.commit,
                self.last_index()
            ));
        }
        if self.stable > self.last_index() {
            return Err(format!("stable {} past last {}", self.stable, self.last_index()));
        }
        Ok(())
    }
}
