//! What Raft nodes say to each other, and the log entries they carry.
//!
//! Messages are plain values: the driver moves them between nodes however it likes (the
//! simulator through its lossy network, the runtime later through routes). Anything in a
//! message may be stale, duplicated, reordered or forged by a fuzzer, so the node validates
//! every field it relies on and never panics on one.

/// A node's identity inside one Raft group.
pub type NodeId = u64;

/// What an entry means to the log itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// The empty entry a new leader appends so that it can commit (§5.4.2, Figure 8): earlier
    /// terms' entries only commit once an entry of the leader's own term does.
    Noop,
    /// Data for the state machine.
    Normal,
    /// A new configuration: the voters (`membership::encode_voters`). Takes effect as soon as
    /// it is in a node's log; the state machine sees it applied like any entry.
    Config,
    /// This node's copy is corrupt: only the identity `(index, term)` survived recovery. Never
    /// sent, never applied; written back to the WAL as an identity-only record so it stays
    /// faulty across restarts until the leader repairs it.
    Faulty,
}

/// One log entry. `(index, term)` is its identity: by the Log Matching Property two logs that
/// hold an entry with the same identity agree on it and on everything before it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    pub index: u64,
    pub term: u64,
    pub kind: EntryKind,
    pub data: Vec<u8>,
}

/// The state machine's state through `index` (the entry at `index` has `term`), standing in
/// for the log up to there. `data` is the state machine's own encoding; Raft never looks in it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Snapshot {
    pub index: u64,
    pub term: u64,
    /// The configuration in effect at `index`.
    pub voters: Vec<NodeId>,
    pub data: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// "Would you vote for me in `term`?" Asked before a real election so that a node cut off
    /// from the leader cannot raise everyone's term when it rejoins (Raft thesis §9.6). The
    /// message's term is the term the sender *would* campaign in; its own term is unchanged.
    PreVote {
        last_index: u64,
        last_term: u64,
    },
    PreVoteResp {
        granted: bool,
    },
    /// RequestVote (Figure 2). `transfer` is set when the current leader asked for this
    /// election (leadership transfer), which lets voters ignore their leader lease.
    Vote {
        last_index: u64,
        last_term: u64,
        transfer: bool,
    },
    /// A granted vote is only sent once the vote is durable.
    VoteResp {
        granted: bool,
    },
    /// AppendEntries (Figure 2). `leader_last` is the leader's last index when it sent this,
    /// which lets a node that lost part of its log know when it has caught up again.
    Append {
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
        leader_last: u64,
    },
    /// `success`: the follower's log matches the leader's through `index` and that prefix is
    /// durable (sent only after the sync). `faulty`: the follower holds a corrupted entry at
    /// `index + 1` and asks the leader to send it again (protocol-aware repair).
    /// Not `success`: the log does not match at `rejected` (the append's `prev_index`, which
    /// tells the leader whether the rejection is stale); `index` is a hint, the highest index
    /// the leader should try next. `rejected` is 0 in an acknowledgement.
    AppendResp {
        success: bool,
        index: u64,
        faulty: bool,
        rejected: u64,
    },
    /// InstallSnapshot (§7): the follower needs entries the leader has compacted away. Sent
    /// whole (the simulator's and the stream layer's states are small; chunking can come with
    /// a wire encoding). Answered with an `AppendResp` through `snapshot.index`, sent only once
    /// the snapshot is durable.
    Snapshot {
        snapshot: Snapshot,
    },
    /// Leadership transfer: the leader tells an up-to-date follower to start an election now.
    TimeoutNow,
    /// Protocol-aware repair (Alagappan et al., FAST 2018, "CTRL"): the leader's own copy of
    /// the entry `(index, term)` is corrupt; does the receiver hold it?
    RepairReq {
        index: u64,
        term: u64,
    },
    /// The answer to `RepairReq { index, term }`.
    RepairResp {
        index: u64,
        term: u64,
        answer: RepairAnswer,
    },
}

/// What a peer knows about an entry a leader asked to repair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepairAnswer {
    /// Its intact copy of the entry.
    Have(Entry),
    /// It positively does not hold `(index, term)`: its log ends before `index` or holds
    /// another term there, and it has lost nothing it acknowledged (it is not fenced). A
    /// node answers this only after adopting the asker's term, so no older leader can give
    /// it the entry afterwards; a majority of these proves the entry was never committed.
    Lacks,
    /// The entry is inside its snapshot, so it was committed: the snapshot, which stands for
    /// the log through its index, replaces the leader's log up to there.
    Snapshot(Snapshot),
    /// It cannot say: its copy is corrupt too, or it may have lost acknowledged entries.
    /// Counts as neither.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: u64,
    pub body: Body,
}

impl Message {
    /// A short name for traces and statistics.
    pub fn kind_name(&self) -> &'static str {
        match self.body {
            Body::PreVote { .. } => "PreVote",
            Body::PreVoteResp { .. } => "PreVoteResp",
            Body::Vote { .. } => "Vote",
            Body::VoteResp { .. } => "VoteResp",
            Body::Append { .. } => "Append",
            Body::AppendResp { .. } => "AppendResp",
            Body::Snapshot { .. } => "Snapshot",
            Body::TimeoutNow => "TimeoutNow",
            Body::RepairReq { .. } => "RepairReq",
            Body::RepairResp { .. } => "RepairResp",
        }
    }
}
