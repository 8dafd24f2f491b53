//! The batch of work a node hands its driver, and the state machine interface.

use super::message::{Entry, Message, Snapshot};
use super::storage::HardState;

/// One batch of work, drained with `RaftNode::ready()`. The driver, in this order:
/// 1. writes `hard_state` (if any) durably; then, if there is a `snapshot` (from the leader),
///    makes it durable with `Storage::install_snapshot(disk, snapshot, snapshot_keeps_log)`;
///    then appends `entries` to the log (an entry at index `i` replaces the stored entry at
///    `i` and everything after it);
/// 2. sends `messages` (they promise nothing about this batch's persistence);
/// 3. restores the state machine from `snapshot` (if any), then applies `committed`, in order;
/// 4. once a sync covers steps 1's writes, calls `RaftNode::on_persisted(now, number)`. Only then
///    does the node release the messages that promise persistence (vote grants, append
///    acknowledgements) and count its own log toward a commit. Batches are persisted in
///    `number` order; one sync may cover several (group commit).
#[derive(Clone, Debug, Default)]
pub struct Ready {
    pub number: u64,
    pub hard_state: Option<HardState>,
    /// A snapshot from the leader that replaces the state machine and the log through its
    /// index.
    pub snapshot: Option<Snapshot>,
    /// The node kept its log entries after the snapshot (it held the snapshot's last entry).
    pub snapshot_keeps_log: bool,
    pub entries: Vec<Entry>,
    pub messages: Vec<Message>,
    pub committed: Vec<Entry>,
}

impl Ready {
    /// Does this batch need a write and a sync before `on_persisted`?
    pub fn must_persist(&self) -> bool {
        self.hard_state.is_some() || self.snapshot.is_some() || !self.entries.is_empty()
    }
}

/// What the stream and meta layers implement to sit on top of a Raft group: committed
/// entries arrive in log order, each exactly once per life of the node (a restarted node
/// restores its durable snapshot, if any, and applies again from the entry after it).
pub trait StateMachine {
    /// Apply one committed entry (`Noop` entries arrive too, so that the machine always
    /// knows its applied index).
    fn apply(&mut self, entry: &Entry);
    /// The state through the last applied entry, as bytes for `Snapshot::data`.
    fn snapshot(&self) -> Vec<u8>;
    /// Replace the whole state with `snapshot`'s. An error means the bytes are not a state
    /// this machine wrote; the driver must not go on applying after it.
    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), String>;
}
