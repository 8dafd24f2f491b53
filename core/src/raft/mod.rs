//! Raft consensus, sans-IO (raft-rs' shape): the node decides, the driver moves bytes, keeps
//! time and syncs the disk.
//!
//! Rooms: [`message`] (what nodes say), [`log`] (entries, commit and apply points, faulty
//! entries, the snapshot offset), [`progress`] (a leader's view of each follower), [`storage`]
//! (WAL, snapshot file and term/vote metadata through `Disk`, recovery), [`ready`] (the batch
//! the driver works through, and the state machine interface), [`membership`] (who votes,
//! single-server changes), [`node`] (the protocol).
//!
//! Snapshots: the driver takes one from its state machine at an applied index
//! (`RaftNode::prepare_snapshot` adds the term and configuration there), makes it durable with
//! `Storage::install_snapshot` (which then drops the WAL in front of it) and hands it to
//! `RaftNode::compact`; a follower whose next entry the leader has compacted away gets the
//! snapshot in a message and the driver installs it from `Ready::snapshot`, restoring its
//! state machine (`StateMachine::restore`) before applying `Ready::committed`.
//!
//! Membership: single-server changes through `RaftNode::propose_change` (see [`membership`]).
//!
//! Protocol-aware recovery (DESIGN.md §6.3): a corrupt entry keeps its identity as *faulty*
//! ([`log`]), is never acknowledged or applied, and is repaired: a follower's from the
//! leader's appends, a leader's own from its peers (`RepairReq`: a peer's intact copy or its
//! snapshot covering it), or dropped with its suffix only when a majority of voters answers
//! that it positively lacks it (see `RaftNode::on_repair_resp`).
//!
//! Not yet here (issue 6): learners (new voters count at once); chunked snapshots (sent
//! whole); a wire encoding of messages.

pub mod log;
pub mod membership;
pub mod message;
pub mod node;
pub mod progress;
pub mod ready;
pub mod storage;

#[cfg(test)]
mod tests;

pub use membership::ConfChange;
pub use message::{Body, Entry, EntryKind, Message, NodeId, RepairAnswer, Snapshot};
pub use node::{CompactError, Config, Mutations, ProposeError, RaftNode, Role};
pub use ready::{Ready, StateMachine};
pub use storage::{HardState, Recovered, Storage, StorageMutations};
