//! The batch of work a node hands its driver, and the state machine interface.

use super::message::{Entry, Message};
use super::storage::HardState;

/// One batch of work, drained with `RaftNode::ready()`. The driver, in this order:
/// 1. writes `hard_state` (if any) durably, then appends `entries` to the log (an entry at
///    index `i` replaces the stored entry at `i` and everything after it);
/// 2. sends `messages` (they promise nothing about this batch's persistence);
/// 3. applies `committed` to the state machine, in order;
/// 4. once a sync covers steps 1's writes, calls `RaftNode::on_persisted(now, number)`. Only then
///    does the node release the messages that promise persistence (vote grants, append
///    acknowledgements) and count its own log toward a commit. Batches are persisted in
///    `number` order; one sync may cover several (group commit).
#[derive(Clone, Debug, Default)]
pub struct Ready {
    pub number: u64,
    pub hard_state: Option<HardState>,
    pub entries: Vec<Entry>,
    pub messages: Vec<Message>,
    pub committed: Vec<Entry>,
}

impl Ready {
    /// Does this batch need a write and a sync before `on_persisted`?
    pub fn must_persist(&self) -> bool {
        self.hard_state.is_some() || !self.entries.is_empty()
    }
}

/// What the stream and meta layers implement to sit on top of a Raft group: committed
/// entries arrive in log order, each exactly once per life of the node (a restarted node
/// applies again from the start of its log, or later from its snapshot).
pub trait StateMachine {
    fn apply(&mut self, entry: &Entry);
}
