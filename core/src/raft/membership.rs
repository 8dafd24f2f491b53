//! Who votes: the group's configuration, and single-server membership changes (Raft thesis
//! §4.1).
//!
//! Why single-server changes rather than joint consensus: adding or removing one voter at a
//! time means any majority of the old configuration and any majority of the new one overlap,
//! so the two can never elect two leaders or commit two different entries, without a joint
//! phase. The rules that make it safe, and where they are enforced (`RaftNode::propose_change`):
//! - a node uses the newest configuration *in its log*, committed or not (this file); a
//!   truncated configuration entry takes its configuration with it;
//! - a leader proposes a change only once the previous one is committed, so at most one is
//!   ever in flight;
//! - a leader proposes a change only once an entry of its own term is committed (the fix to
//!   the single-server algorithm published on the raft-dev list in 2015: without it, two
//!   leaders of successive terms could each append a change based on a different committed
//!   configuration and commit entries with disjoint majorities);
//! - the last voter cannot be removed.
//!
//! A removed leader keeps leading, without counting itself, until the entry that removes it
//! is committed, then steps down; if it loses leadership first it may campaign again (without
//! counting its own vote) until it knows the entry committed, since it may be the only node
//! holding it. New voters count toward the quorum as soon as the entry
//! that adds them is in the leader's log; they are not caught up first as learners (so adding
//! a voter to a cluster whose quorum is tight can stall commits until it has caught up).

use super::log::RaftLog;
use super::message::{EntryKind, NodeId};

/// A change a leader can propose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfChange {
    AddVoter(NodeId),
    RemoveVoter(NodeId),
}

/// A configuration entry's data: the voters, sorted, as little-endian u64s.
pub fn encode_voters(voters: &[NodeId]) -> Vec<u8> {
    let mut sorted = voters.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// `None` for data that is not a configuration a leader would write.
pub fn decode_voters(data: &[u8]) -> Option<Vec<NodeId>> {
    if data.is_empty() || !data.len().is_multiple_of(8) {
        return None;
    }
    let voters: Vec<NodeId> = data
        .chunks_exact(8)
        .map(|c| {
            let mut a = [0; 8];
            a.copy_from_slice(c);
            u64::from_le_bytes(a)
        })
        .collect();
    voters.windows(2).all(|w| w[0] < w[1]).then_some(voters)
}

/// The configuration at the log's offset (from the snapshot, or the initial one) and the
/// configuration entries after it.
#[derive(Clone, Debug, Default)]
pub struct Membership {
    base: Vec<NodeId>,
    entries: Vec<(u64, Vec<NodeId>)>,
}

impl Membership {
    /// The configuration `base` at the log's offset, and whatever entries `log` holds after it.
    pub fn new(mut base: Vec<NodeId>, log: &RaftLog) -> Self {
        base.sort_unstable();
        base.dedup();
        let mut m = Membership { base, entries: Vec::new() };
        m.rescan(log, log.offset() + 1);
        m
    }

    /// The newest configuration in the log: the one this node acts on.
    pub fn voters(&self) -> &[NodeId] {
        self.entries.last().map_or(&self.base, |(_, v)| v)
    }

    /// Index of the newest configuration entry (0 when the base configuration is newest).
    pub fn latest_index(&self) -> u64 {
        self.entries.last().map_or(0, |(i, _)| *i)
    }

    /// The configuration in effect at `index` (the newest entry at or below it).
    pub fn at(&self, index: u64) -> Vec<NodeId> {
        self.entries
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map_or_else(|| self.base.clone(), |(_, v)| v.clone())
    }

    /// The configuration in effect just before `index`, then every later one in the log.
    pub fn since(&self, index: u64) -> Vec<Vec<NodeId>> {
        let mut out = vec![self.at(index.saturating_sub(1))];
        out.extend(self.entries.iter().filter(|(i, _)| *i >= index).map(|(_, v)| v.clone()));
        out
    }

    /// The log changed from `from` on (entries appended, replaced or truncated): forget the
    /// configurations there and read them again. A faulty entry's data is lost, so a faulty
    /// configuration entry is skipped until it is repaired (a leader holding one commits nothing
    /// past it, see `RaftNode::majority_lacks`).
    pub fn rescan(&mut self, log: &RaftLog, from: u64) {
        let from = from.max(log.offset() + 1);
        self.entries.retain(|(i, _)| *i < from);
        for index in from..=log.last_index() {
            let Some(e) = log.entry(index) else { break };
            if e.kind == EntryKind::Config && !log.is_faulty(index) {
                if let Some(v) = decode_voters(&e.data) {
                    self.entries.push((index, v));
                }
            }
        }
    }

    /// The log was compacted through `index`.
    pub fn compact(&mut self, index: u64) {
        self.base = self.at(index);
        self.entries.retain(|(i, _)| *i > index);
    }

    /// A snapshot with configuration `voters` replaced the log through its index.
    pub fn install(&mut self, voters: &[NodeId], log: &RaftLog) {
        *self = Membership::new(voters.to_vec(), log);
    }
}
