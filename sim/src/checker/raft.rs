//! The Raft workload's checker. It watches what nodes apply and what clients were told, plus
//! each node's role, term and commit index after every event (the simulator is omniscient;
//! the properties are the cluster's promises, not implementation details):
//! - Election Safety: at most one leader per term, over the whole run;
//! - State Machine Safety: every node applies the same entry at each index, compared through
//!   a hash chain (index i's hash covers every entry up to i), so a divergence anywhere below
//!   shows at the first index a node applies after it, in every life of every node;
//! - the commit index never goes back within one life of a node;
//! - Leader Completeness: an entry any node counts committed (at or below its commit index)
//!   has one identity everywhere and is in the log of every leader of its commit term or a
//!   later one (a leader of an earlier term may show up late: a candidate paused mid-election
//!   wins its old term when it resumes, and owes nothing committed since);
//! - every acknowledged proposal is in the committed log exactly once, at the index it was
//!   acknowledged at;
//! - after the liveness phase every node has applied the same log.
//!
//! Normal entries are the append-only values or key-value commands, both carrying the
//! proposing (client, sequence); the key-value register lives in each node's `Applied` and is
//! checked for linearizability by the workload (`kv_history`).
//!
//! Snapshots carry the chain hash at their index (`Applied::snapshot_data`), so a node that
//! restores one (at restart, or from its leader) is checked against the chain there and goes
//! on extending the same chain: divergence is still caught at the first index it applies.

use std::collections::BTreeMap;

use fjord_core::raft::{Entry, EntryKind, Snapshot};

use super::Violation;
use crate::rng::Fnv64;
use crate::workload::kv_history::{decode_command, KvRegister};

#[derive(Debug, Default)]
pub struct RaftChecker {
    leaders: BTreeMap<u64, usize>,
    /// The term of the entry at each index some node has counted committed.
    committed_terms: Vec<u64>,
    /// The lowest current term of a node seen counting each index committed: no lower than
    /// the term it was committed in, since a node learns of a commit from that term's leader
    /// or a later one.
    commit_terms: Vec<u64>,
    /// Chain hash of the committed log at each index (index i at position i - 1).
    chain: Vec<u64>,
    /// The value (client, sequence) committed at each index, for normal entries.
    values: BTreeMap<u64, (u32, u64)>,
    /// Which index each value was committed at (a second index is a duplicate).
    value_index: BTreeMap<(u32, u64), u64>,
    /// Acknowledged proposals: value -> index.
    acked: BTreeMap<(u32, u64), u64>,
    pub stats: RaftStats,
}

#[derive(Clone, Debug, Default)]
pub struct RaftStats {
    pub proposed: u64,
    pub acked: u64,
    pub elections: u64,
    pub applied: u64,
    pub committed: u64,
    pub compactions: u64,
    pub conf_changes: u64,
    pub snapshots_sent: u64,
    pub snapshots_installed: u64,
    /// Leaders' own faulty entries repaired from a peer, and dropped as never committed.
    pub faulty_repaired: u64,
    pub faulty_discarded: u64,
    /// Key-value operations recorded for the linearizability check, and how many of them
    /// were left without a return (timed out, overwritten entries excluded).
    pub kv_ops: u64,
    pub kv_unreturned: u64,
    /// Runs whose key-value history the checker could not decide within its budget (not a
    /// pass: reported so a rising count is seen).
    pub kv_unknown: u64,
}

/// Each node's view, per life.
#[derive(Clone, Debug, Default)]
pub struct Applied {
    pub index: u64,
    pub hash: u64,
    pub commit: u64,
    /// The key-value register, with every committed command through `index` applied in log
    /// order.
    pub kv: KvRegister<u64, u64>,
}

impl Applied {
    /// The state machine's snapshot: its applied index and the chain hash there, then the
    /// key-value register.
    pub fn snapshot_data(&self) -> Vec<u8> {
        let mut v = self.index.to_le_bytes().to_vec();
        v.extend_from_slice(&self.hash.to_le_bytes());
        v.extend_from_slice(&self.kv.snapshot());
        v
    }
}

/// The (client, sequence) a normal entry carries: an append-only value or a key-value command.
pub fn proposal_id(data: &[u8]) -> Option<(u32, u64)> {
    decode_value(data).or_else(|| decode_command(data).map(|(c, s, _)| (c, s)))
}

pub fn encode_value(client: u32, seq: u64) -> Vec<u8> {
    let mut v = client.to_le_bytes().to_vec();
    v.extend_from_slice(&seq.to_le_bytes());
    v
}

pub fn decode_value(data: &[u8]) -> Option<(u32, u64)> {
    let c = u32::from_le_bytes(data.get(0..4)?.try_into().ok()?);
    let s = u64::from_le_bytes(data.get(4..12)?.try_into().ok()?);
    (data.len() == 12).then_some((c, s))
}

fn link(prev: u64, e: &Entry) -> u64 {
    let mut h = Fnv64::default();
    h.write_u64(prev);
    h.write_u64(e.index);
    h.write_u64(e.term);
    h.write(&[matches!(e.kind, EntryKind::Noop) as u8]);
    h.write(&e.data);
    h.finish()
}

impl RaftChecker {
    /// `node` leads `term`; `term_at` reads its log, which starts after its snapshot at
    /// `offset` (the entries up to there are checked when a snapshot is restored or taken).
    /// A leader seen for the first time must hold every entry counted committed so far in its
    /// term or an earlier one.
    pub fn leader(
        &mut self,
        node: usize,
        term: u64,
        offset: u64,
        term_at: impl Fn(u64) -> Option<u64>,
    ) -> Result<(), Violation> {
        match self.leaders.get(&term) {
            Some(&other) if other != node => Err(Violation(format!(
                "election safety: node{other} and node{node} both led term {term}"
            ))),
            Some(_) => Ok(()),
            None => {
                self.stats.elections += 1;
                self.leaders.insert(term, node);
                for (i, (&t, &ct)) in
                    self.committed_terms.iter().zip(&self.commit_terms).enumerate()
                {
                    let index = i as u64 + 1;
                    if index < offset {
                        continue;
                    }
                    if ct <= term && term_at(index) != Some(t) {
                        return Err(Violation(format!(
                            "leader completeness: node{node} leads term {term} without committed entry {index} (term {t}); it has {:?}",
                            term_at(index)
                        )));
                    }
                }
                Ok(())
            }
        }
    }

    /// `node`, in term `node_term`, counts the entry `(index, term)` committed.
    pub fn committed(
        &mut self,
        node: usize,
        node_term: u64,
        index: u64,
        term: Option<u64>,
    ) -> Result<(), Violation> {
        let Some(term) = term else {
            return Err(Violation(format!("node{node} commits index {index} beyond its log")));
        };
        let i = (index - 1) as usize;
        match self.committed_terms.get(i) {
            Some(&t) if t != term => Err(Violation(format!(
                "state machine safety: node{node} counts ({index}, term {term}) committed, another node ({index}, term {t})"
            ))),
            Some(_) => {
                self.commit_terms[i] = self.commit_terms[i].min(node_term);
                Ok(())
            }
            None if i == self.committed_terms.len() => {
                self.committed_terms.push(term);
                self.commit_terms.push(node_term);
                Ok(())
            }
            None => {
                // Committed entries are a prefix; a gap means this node's prefix is unknown
                // to the checker so far, so fill in only what follows on.
                Ok(())
            }
        }
    }

    /// `node` applied `e` in its life whose state is `mine`.
    pub fn apply(&mut self, node: usize, mine: &mut Applied, e: &Entry) -> Result<(), Violation> {
        if e.index != mine.index + 1 {
            return Err(Violation(format!(
                "node{node} applied index {} after {}",
                e.index, mine.index
            )));
        }
        mine.hash = link(mine.hash, e);
        mine.index = e.index;
        self.stats.applied += 1;
        let i = (e.index - 1) as usize;
        if let Some(&h) = self.chain.get(i) {
            if h != mine.hash {
                return Err(Violation(format!(
                    "state machine safety: node{node} applied a different log at index {} (term {}, {:?})",
                    e.index, e.term, proposal_id(&e.data)
                )));
            }
            return Ok(());
        }
        self.chain.push(mine.hash);
        self.stats.committed += 1;
        if e.kind == EntryKind::Normal {
            let Some(v) = proposal_id(&e.data) else {
                return Err(Violation(format!("index {} holds data no client proposed", e.index)));
            };
            if let Some(first) = self.value_index.insert(v, e.index) {
                return Err(Violation(format!(
                    "proposal {v:?} committed twice, at {first} and {}",
                    e.index
                )));
            }
            self.values.insert(e.index, v);
        }
        Ok(())
    }

    /// `node` replaced its state machine with `snap` (restart or InstallSnapshot).
    pub fn restore(
        &mut self,
        node: usize,
        mine: &mut Applied,
        snap: &Snapshot,
    ) -> Result<(), Violation> {
        let d = &snap.data;
        let decoded = (d.len() >= 16).then(|| {
            (
                u64::from_le_bytes(d[0..8].try_into().unwrap_or_default()),
                u64::from_le_bytes(d[8..16].try_into().unwrap_or_default()),
                KvRegister::restore(&d[16..]),
            )
        });
        let Some((index, hash, Some(kv))) = decoded.filter(|(i, _, _)| *i == snap.index) else {
            return Err(Violation(format!(
                "node{node} restored a snapshot at {} that is not a state machine's",
                snap.index
            )));
        };
        match self.chain_at(index) {
            Some(h) if h == hash => {}
            other => {
                return Err(Violation(format!(
                    "state machine safety: node{node} restored a snapshot at {index} with chain {hash:#x}, the committed chain there is {other:?}"
                )))
            }
        }
        mine.index = index;
        mine.hash = hash;
        mine.kv = kv;
        Ok(())
    }

    pub fn commit(&self, node: usize, mine: &mut Applied, commit: u64) -> Result<(), Violation> {
        if commit < mine.commit {
            return Err(Violation(format!(
                "node{node}'s commit index went back from {} to {commit}",
                mine.commit
            )));
        }
        mine.commit = commit;
        Ok(())
    }

    /// A client was told its proposal `v` committed at `index`.
    pub fn acked(&mut self, v: (u32, u64), index: u64) -> Result<(), Violation> {
        self.stats.acked += 1;
        self.acked.insert(v, index);
        match self.values.get(&index) {
            Some(&got) if got == v => Ok(()),
            other => Err(Violation(format!(
                "client acknowledged {v:?} at index {index}, but the committed log holds {other:?} there"
            ))),
        }
    }

    pub fn committed_len(&self) -> u64 {
        self.chain.len() as u64
    }

    pub fn chain_at(&self, index: u64) -> Option<u64> {
        self.chain.get(index.checked_sub(1)? as usize).copied()
    }

    /// End of run: every acknowledged proposal is in the committed log, once, where it was
    /// acknowledged; every node applied the same log through `upto`.
    pub fn finish(&self, nodes: &[Applied]) -> Result<(), Violation> {
        for (v, &index) in &self.acked {
            if self.values.get(&index) != Some(v) || self.value_index.get(v) != Some(&index) {
                return Err(Violation(format!(
                    "acknowledged proposal {v:?} (index {index}) is not in the final log there"
                )));
            }
        }
        let upto = self.committed_len();
        for (n, a) in nodes.iter().enumerate() {
            if a.index != upto || Some(a.hash) != self.chain_at(upto) {
                return Err(Violation(format!(
                    "liveness: node{n} applied through {} but the log is {upto} long",
                    a.index
                )));
            }
        }
        Ok(())
    }
}
