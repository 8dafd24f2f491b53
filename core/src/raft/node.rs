//! `RaftNode`: one member of one Raft group, sans-IO.
//!
//! Inputs (each takes `now`, the driver's monotonic time):
//! - `step(now, message)`: a message from a peer;
//! - `tick(now)`: time passed; call it at (or after) `poll_timeout()`;
//! - `propose(now, data)`: a client's command, accepted only by the leader;
//! - `transfer_leadership(now, to)`, `step_down(now)`;
//! - `on_persisted(now, number)`: the driver's sync covered `Ready` number `number`;
//! - `compact(snapshot)`: the driver made a snapshot of its state machine durable.
//!
//! Outputs: `has_ready()` / `ready()` (see [`Ready`] for the order the driver works through
//! it) and `poll_timeout()`. Drain `ready()` after every input until `has_ready()` is false.
//!
//! Rules that are easy to get wrong and where they live:
//! - a vote grant or an append acknowledgement leaves only after the sync that made the vote
//!   or the entries durable (`hold` and `on_persisted`);
//! - a candidate counts its own vote, and a leader its own log, only once durable;
//! - a leader commits only an entry of its own term by counting replicas (§5.4.2), which is
//!   why it appends a no-op when elected;
//! - pre-vote and the leader lease keep a node that was cut off from deposing a working
//!   leader when it returns;
//! - a node with a lost log suffix never campaigns; a node with a lost suffix or lost
//!   metadata never votes (DESIGN.md §6.3);
//! - a node with a faulty entry may campaign (its log's identities are intact, so elections
//!   stay correct), but as leader it counts its own log only below its first faulty entry,
//!   commits nothing past it and applies nothing faulty; it asks its peers for the entry
//!   (`RepairReq`), copies an intact one, and drops the entry and its suffix only when a
//!   majority of voters positively lacks it (then steps down: see `on_repair_resp`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::log::{AppendError, RaftLog};
use super::membership::{encode_voters, ConfChange, Membership};
use super::message::{Body, Entry, EntryKind, Message, NodeId, RepairAnswer, Snapshot};
use super::progress::{Progress, SendState};
use super::ready::Ready;
use super::storage::{HardState, Recovered, LOST_SUFFIX};
use crate::time::Instant;

/// Test-only mutations of the protocol, for the simulator's canaries. Never set outside
/// tests: each one is a known Raft bug.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mutations {
    /// Commit an entry of an earlier term as soon as a majority holds it (Figure 8's bug).
    pub commit_any_term: bool,
    /// A new leader does not append a no-op: with `commit_any_term`, the implementations the
    /// Figure 8 scenario was written about.
    pub skip_noop: bool,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub id: NodeId,
    /// The initial voters (this node among them if it is one), used until a snapshot or a
    /// configuration entry in the log names others. A node joining a running group starts
    /// with the group's current voters, or none: it never campaigns while not a voter.
    pub peers: Vec<NodeId>,
    /// The election timeout is drawn uniformly from `[election_min, election_max)` each time
    /// it is reset, so that split votes do not repeat (§5.2).
    pub election_min: Duration,
    pub election_max: Duration,
    /// How often a leader sends appends (empty ones as heartbeats); must be well below
    /// `election_min`.
    pub heartbeat: Duration,
    /// Entries per append message.
    pub max_batch: usize,
    /// Entries sent but not acknowledged, per follower, before the leader waits.
    pub max_in_flight: u64,
    pub pre_vote: bool,
    pub mutations: Mutations,
}

impl Config {
    pub fn new(id: NodeId, peers: Vec<NodeId>) -> Self {
        Config {
            id,
            peers,
            election_min: Duration::from_millis(150),
            election_max: Duration::from_millis(300),
            heartbeat: Duration::from_millis(50),
            max_batch: 64,
            max_in_flight: 256,
            pre_vote: true,
            mutations: Mutations::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// Why `compact` did not take a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompactError {
    /// The snapshot's index is not above the current one or not yet applied here.
    OutOfRange { index: u64, offset: u64, applied: u64 },
    /// The log's entry at the snapshot's index has another term: it is not this log's state.
    WrongTerm { index: u64, term: u64, log_term: Option<u64> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposeError {
    /// Only the leader takes proposals; `leader` is who this node believes leads, if anyone.
    NotLeader { leader: Option<NodeId> },
    /// A leadership transfer is in progress.
    Transferring,
    /// Membership: a previous change is not committed yet (one at a time).
    ChangePending,
    /// Membership: no entry of this leader's term is committed yet.
    NotReady,
    /// Membership: the change would leave no voter.
    LastVoter,
    /// Membership: the node already is (add) or is not (remove) a voter.
    NoChange,
}

/// A message that may leave only after `Ready` number `after` is durable. `guard`, for an
/// acknowledgement, is the entry it vouches for: if that entry was replaced in the meantime
/// the acknowledgement is dropped rather than sent as a lie.
#[derive(Clone, Debug)]
struct Held {
    after: u64,
    msg: Message,
    guard: Option<(u64, u64)>,
}

/// Counters of things a correct cluster never does, for tests and the fuzzer.
#[derive(Clone, Debug, Default)]
pub struct Alarms {
    /// An append that would have overwritten a committed entry was refused.
    pub conflicts_with_committed: u64,
    /// Malformed messages ignored (non-consecutive entries, unknown sender, ...).
    pub malformed: u64,
}

/// Counters of ordinary events worth seeing in statistics.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub snapshots_sent: u64,
    pub snapshots_installed: u64,
    pub compactions: u64,
    /// Leader: own faulty entries repaired from a peer's copy.
    pub faulty_repaired: u64,
    /// Leader: own faulty entries dropped because a majority lacked them.
    pub faulty_discarded: u64,
}

pub struct RaftNode {
    cfg: Config,
    members: Membership,
    role: Role,
    term: u64,
    vote: Option<NodeId>,
    fence: u8,
    leader: Option<NodeId>,
    log: RaftLog,
    /// The newest snapshot (its index is the log's offset): what a follower behind the
    /// offset is sent.
    snapshot: Option<Snapshot>,
    /// A snapshot from the leader for the next `Ready`, and whether the log after it stayed.
    snapshot_out: Option<(Snapshot, bool)>,
    rng: ChaCha8Rng,
    election_deadline: Instant,
    heartbeat_deadline: Instant,
    /// When this node last heard from a leader of its term: the lease pre-votes respect.
    leader_seen: Option<Instant>,
    votes: BTreeMap<NodeId, bool>,
    progress: BTreeMap<NodeId, Progress>,
    /// Leader: when to check that a majority still answers.
    quorum_check: Instant,
    transfer: Option<(NodeId, Instant)>,
    /// Leader: the faulty entry being repaired and the voters that answered they positively
    /// lack it (in this term; reset when the entry changes).
    repair_lacks: (u64, BTreeSet<NodeId>),
    /// The hard state changed since the last `Ready`.
    hs_dirty: bool,
    outbox: Vec<Message>,
    /// Messages waiting for the next `Ready` to be numbered, then for its persistence.
    unnumbered: Vec<(Message, Option<(u64, u64)>)>,
    held: VecDeque<Held>,
    /// `Ready` batches handed out and not yet persisted: (number, last entry identity).
    persisting: VecDeque<(u64, u64, u64)>,
    /// Candidate: the `Ready` that carries its vote for itself.
    self_vote_after: Option<u64>,
    /// Leader: appends are due (new entries); sent when the next `Ready` is built (batching).
    broadcast_due: bool,
    /// A node with a lost suffix lifts its fence once durable through this entry.
    unfence_at: Option<(u64, u64)>,
    /// The term this life started in. A lost suffix holds entries acknowledged in this term or
    /// earlier; only a leader of a later term was elected without this node's vote and so
    /// provably holds every entry committed with the lost acknowledgements (a stale append
    /// from an older leader may predate them).
    fence_term: u64,
    next_ready: u64,
    persisted: u64,
    pub alarms: Alarms,
    pub counters: Counters,
}

impl RaftNode {
    /// A node starting from what its storage recovered. `rng` draws election timeouts only.
    pub fn new(cfg: Config, recovered: Recovered, rng: ChaCha8Rng, now: Instant) -> Self {
        let hs = recovered.hard_state;
        let (offset, offset_term) =
            recovered.snapshot.as_ref().map_or((0, 0), |s| (s.index, s.term));
        let mut node = RaftNode {
            members: Membership::default(),
            cfg,
            role: Role::Follower,
            term: hs.term,
            vote: hs.vote,
            fence: hs.fence,
            leader: None,
            log: RaftLog::restored(offset, offset_term, recovered.entries, recovered.report.faulty),
            snapshot: recovered.snapshot.clone(),
            snapshot_out: None,
            rng,
            election_deadline: now,
            heartbeat_deadline: now,
            leader_seen: None,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            quorum_check: now,
            transfer: None,
            repair_lacks: (0, BTreeSet::new()),
            hs_dirty: false,
            outbox: Vec::new(),
            unnumbered: Vec::new(),
            held: VecDeque::new(),
            persisting: VecDeque::new(),
            self_vote_after: None,
            broadcast_due: false,
            unfence_at: None,
            fence_term: hs.term,
            next_ready: 1,
            persisted: 0,
            alarms: Alarms::default(),
            counters: Counters::default(),
        };
        let base = recovered.snapshot.map_or_else(|| node.cfg.peers.clone(), |s| s.voters);
        node.members = Membership::new(base, &node.log);
        node.reset_election_timer(now);
        node
    }

    // ---- accessors ----

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn term(&self) -> u64 {
        self.term
    }
    pub fn vote(&self) -> Option<NodeId> {
        self.vote
    }
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn log(&self) -> &RaftLog {
        &self.log
    }
    pub fn commit(&self) -> u64 {
        self.log.commit()
    }
    pub fn hard_state(&self) -> HardState {
        HardState { term: self.term, vote: self.vote, fence: self.fence }
    }
    pub fn is_fenced(&self) -> bool {
        self.fence != 0
    }
    /// The newest snapshot this node holds (recovered, taken or installed).
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }
    /// The voters this node acts on: the newest configuration in its log.
    pub fn voters(&self) -> &[NodeId] {
        self.members.voters()
    }
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.members.voters().contains(&id)
    }
    fn quorum(&self) -> usize {
        self.members.voters().len() / 2 + 1
    }
    /// Leader only: the index each peer is known to hold durably.
    pub fn matched(&self, peer: NodeId) -> Option<u64> {
        self.progress.get(&peer).map(|p| p.matched)
    }

    /// When the node next needs `tick`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(match self.role {
            Role::Leader => {
                let t = self.heartbeat_deadline.min(self.quorum_check);
                self.transfer.map_or(t, |(_, d)| t.min(d))
            }
            Role::Candidate => self.election_deadline.min(self.heartbeat_deadline),
            _ => self.election_deadline,
        })
    }

    // ---- inputs ----

    /// A candidate asks again every peer that has not answered its vote request.
    fn resend_votes(&mut self) {
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        for peer in self.others() {
            if !self.votes.contains_key(&peer) {
                let body = Body::Vote { last_index, last_term, transfer: false };
                self.send(peer, body);
            }
        }
    }

    pub fn tick(&mut self, now: Instant) {
        match self.role {
            Role::Leader => {
                if let Some((_, deadline)) = self.transfer {
                    if now >= deadline {
                        // The target did not take over in time: keep leading.
                        self.transfer = None;
                    }
                }
                if now >= self.quorum_check {
                    // Check quorum: a leader that cannot reach a majority steps down, so its
                    // clients look for the real leader instead of waiting on it forever.
                    let window = self.cfg.election_max;
                    let heard = self
                        .progress
                        .iter()
                        .filter(|(id, _)| self.is_voter(**id))
                        .filter(|(&id, p)| id == self.cfg.id || now - p.last_heard < window)
                        .count();
                    if heard < self.quorum() {
                        self.become_follower(now, self.term, None);
                        return;
                    }
                    self.quorum_check = now + window;
                }
                if now >= self.heartbeat_deadline {
                    self.heartbeat_deadline = now + self.cfg.heartbeat;
                    // Requests or answers may have been lost: ask again.
                    self.request_repair();
                    for peer in self.others() {
                        // A lost probe, snapshot or pipeline tail is sent again from here.
                        if let Some(p) = self.progress.get_mut(&peer) {
                            p.on_heartbeat();
                        }
                        self.send_append(peer, true);
                    }
                }
            }
            _ => {
                if self.role == Role::Candidate && now >= self.heartbeat_deadline {
                    // The deadline moves on even while our own vote waits for its sync: left
                    // in the past it would make `poll_timeout` due forever and a driver spin
                    // until the sync lands (found by the simulator's spin check, seed 417).
                    self.heartbeat_deadline = now + self.cfg.heartbeat;
                    if self.self_vote_after.is_none() {
                        // The network may have lost a request or its answer: ask again those
                        // that have not answered, until the election times out.
                        self.resend_votes();
                    }
                }
                if now < self.election_deadline {
                    return;
                }
                self.reset_election_timer(now);
                if !self.may_campaign() {
                    return;
                }
                if self.cfg.pre_vote {
                    self.pre_campaign(now);
                } else {
                    self.campaign(now, false);
                }
            }
        }
    }

    pub fn propose(&mut self, _now: Instant, data: Vec<u8>) -> Result<(u64, u64), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        if self.transfer.is_some() {
            return Err(ProposeError::Transferring);
        }
        let index = self.log.append_new(self.term, EntryKind::Normal, data);
        self.broadcast_due = true;
        Ok((index, self.term))
    }

    /// The driver's state machine snapshot through `snapshot.index` (applied here) is durable
    /// (`Storage::install_snapshot`): the log in front of it may go (§7). The snapshot is kept
    /// to send to followers that need entries compacted away.
    /// The snapshot to write for the state machine's `data` at applied index `index`: its
    /// term and the configuration there come from the log.
    pub fn prepare_snapshot(&self, index: u64, data: Vec<u8>) -> Result<Snapshot, CompactError> {
        let (offset, applied) = (self.log.offset(), self.log.applied());
        if index <= offset || index > applied {
            return Err(CompactError::OutOfRange { index, offset, applied });
        }
        let term = self.log.term(index).unwrap_or(0);
        Ok(Snapshot { index, term, voters: self.members.at(index), data })
    }

    pub fn compact(&mut self, snapshot: Snapshot) -> Result<(), CompactError> {
        let (offset, applied) = (self.log.offset(), self.log.applied());
        if snapshot.index <= offset || snapshot.index > applied {
            return Err(CompactError::OutOfRange { index: snapshot.index, offset, applied });
        }
        let log_term = self.log.term(snapshot.index);
        if log_term != Some(snapshot.term) {
            return Err(CompactError::WrongTerm {
                index: snapshot.index,
                term: snapshot.term,
                log_term,
            });
        }
        self.log.compact(snapshot.index);
        self.members.compact(snapshot.index);
        self.snapshot = Some(snapshot);
        self.counters.compactions += 1;
        Ok(())
    }

    /// Leader: propose adding or removing one voter (see [`membership`](super::membership)
    /// for the rules). Returns the configuration entry's `(index, term)`; the change takes
    /// effect at once, and is done when that entry commits.
    pub fn propose_change(
        &mut self,
        now: Instant,
        change: ConfChange,
    ) -> Result<(u64, u64), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        if self.transfer.is_some() {
            return Err(ProposeError::Transferring);
        }
        if self.members.latest_index() > self.log.commit() {
            return Err(ProposeError::ChangePending);
        }
        if self.log.term(self.log.commit()) != Some(self.term) {
            return Err(ProposeError::NotReady);
        }
        let mut voters = self.members.voters().to_vec();
        match change {
            ConfChange::AddVoter(id) if !voters.contains(&id) && id != 0 => voters.push(id),
            ConfChange::RemoveVoter(id) if voters.contains(&id) => {
                if voters.len() == 1 {
                    return Err(ProposeError::LastVoter);
                }
                voters.retain(|&v| v != id);
            }
            _ => return Err(ProposeError::NoChange),
        }
        let index = self.log.append_new(self.term, EntryKind::Config, encode_voters(&voters));
        self.members.rescan(&self.log, index);
        self.on_config_change(now);
        self.broadcast_due = true;
        Ok((index, self.term))
    }

    /// Leader: track exactly the voters of the newest configuration (and itself).
    fn on_config_change(&mut self, now: Instant) {
        if self.role != Role::Leader {
            return;
        }
        let voters = self.members.voters().to_vec();
        let (me, last) = (self.cfg.id, self.log.last_index());
        self.progress.retain(|id, _| *id == me || voters.contains(id));
        for v in voters {
            self.progress.entry(v).or_insert_with(|| Progress::new(last, now));
        }
        // The quorum may have shrunk: what is replicated may now be committed.
        self.maybe_commit();
    }

    /// Leader: hand leadership to `to` once it is up to date (Raft thesis §3.10).
    pub fn transfer_leadership(&mut self, now: Instant, to: NodeId) {
        if self.role != Role::Leader
            || to == self.cfg.id
            || !self.progress.contains_key(&to)
            || !self.is_voter(to)
        {
            return;
        }
        self.transfer = Some((to, now + self.cfg.election_max));
        self.maybe_send_timeout_now(to);
    }

    /// Leader: stop leading (the others elect a new leader after their timeouts).
    pub fn step_down(&mut self, now: Instant) {
        if self.role == Role::Leader {
            self.become_follower(now, self.term, None);
        }
    }

    pub fn step(&mut self, now: Instant, m: Message) {
        // Senders are not checked against the configuration: a new node hears from a leader
        // before it knows the configuration that names it, and a node with a stale one
        // from voters it has not heard of. Only voters' votes are counted.
        if m.to != self.cfg.id || m.from == self.cfg.id || m.from == 0 {
            self.alarms.malformed += 1;
            return;
        }
        if m.term > self.term {
            // A leader is in its own lease: check-quorum deposes it when a majority stops
            // answering. Without this a removed voter, which never hears of its removal (the
            // leader stops sending to it), would depose the leader at every timeout.
            let lease = self.leader_seen.is_some_and(|t| now - t < self.cfg.election_min)
                || self.role == Role::Leader;
            match &m.body {
                // Pre-votes do not change terms: that is their point.
                Body::PreVote { .. } => {}
                Body::PreVoteResp { granted: true } => {}
                // A node that hears from its leader ignores elections (the leader lease),
                // unless the leader itself asked for one.
                Body::Vote { transfer: false, .. } if lease => return,
                Body::Append { .. }
                | Body::Snapshot { .. }
                | Body::TimeoutNow
                | Body::RepairReq { .. } => self.become_follower(now, m.term, Some(m.from)),
                _ => self.become_follower(now, m.term, None),
            }
        } else if m.term < self.term {
            // Tell a stale sender the current term so it steps down; nothing else.
            let reply = match m.body {
                Body::Append { .. } | Body::Snapshot { .. } => {
                    Some(Body::AppendResp { success: false, index: 0, faulty: false, rejected: 0 })
                }
                Body::PreVote { .. } => Some(Body::PreVoteResp { granted: false }),
                Body::Vote { .. } => Some(Body::VoteResp { granted: false }),
                Body::RepairReq { index, term } => {
                    Some(Body::RepairResp { index, term, answer: RepairAnswer::Unknown })
                }
                _ => None,
            };
            if let Some(body) = reply {
                self.send(m.from, body);
            }
            return;
        }
        match m.body {
            Body::PreVote { last_index, last_term } => {
                self.on_pre_vote(now, m.from, m.term, last_index, last_term)
            }
            Body::PreVoteResp { granted } => self.on_pre_vote_resp(now, m.from, m.term, granted),
            Body::Vote { last_index, last_term, .. } => {
                self.on_vote(now, m.from, last_index, last_term)
            }
            Body::VoteResp { granted } => self.on_vote_resp(now, m.from, granted),
            Body::Append { prev_index, prev_term, entries, commit, leader_last } => {
                self.on_append(now, m.from, prev_index, prev_term, entries, commit, leader_last)
            }
            Body::AppendResp { success, index, faulty, rejected } => {
                self.on_append_resp(now, m.from, success, index, faulty, rejected)
            }
            Body::Snapshot { snapshot } => self.on_snapshot(now, m.from, snapshot),
            Body::TimeoutNow => {
                if self.leader == Some(m.from) && self.role == Role::Follower && self.may_campaign()
                {
                    self.campaign(now, true);
                }
            }
            Body::RepairReq { index, term } => self.on_repair_req(now, m.from, index, term),
            Body::RepairResp { index, term, answer } => {
                self.on_repair_resp(now, m.from, index, term, answer)
            }
        }
    }

    // ---- elections ----

    fn may_campaign(&self) -> bool {
        // A node that lost a suffix must not lead: its log may look shorter than what it
        // acknowledged. A faulty entry is different: its identity is intact, so the log is as
        // up to date as it looks, and the leader repairs the entry (`request_repair`);
        // forbidding it to campaign would leave a cluster whose only up-to-date nodes hold a
        // faulty entry without a leader.
        // A node outside its newest configuration campaigns only while that configuration is
        // not known committed (Raft thesis §4.2.2): a leader that proposed its own removal
        // and lost leadership may be the only node holding the entry, and the others cannot
        // elect anyone without it. Its own vote does not count (`granted`).
        let member = self.is_voter(self.cfg.id) || self.members.latest_index() > self.log.commit();
        self.fence == 0 && member
    }

    fn pre_campaign(&mut self, now: Instant) {
        self.role = Role::PreCandidate;
        self.leader = None;
        self.votes.clear();
        self.votes.insert(self.cfg.id, true);
        if self.try_win_pre_vote(now) {
            return;
        }
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        for peer in self.others() {
            self.outbox.push(Message {
                from: self.cfg.id,
                to: peer,
                term: self.term + 1,
                body: Body::PreVote { last_index, last_term },
            });
        }
    }

    fn try_win_pre_vote(&mut self, now: Instant) -> bool {
        if self.role == Role::PreCandidate && self.granted() >= self.quorum() {
            self.campaign(now, false);
            return true;
        }
        false
    }

    fn campaign(&mut self, now: Instant, transfer: bool) {
        self.role = Role::Candidate;
        self.term += 1;
        self.vote = Some(self.cfg.id);
        self.leader = None;
        self.hs_dirty = true;
        self.votes.clear();
        self.reset_election_timer(now);
        self.heartbeat_deadline = now + self.cfg.heartbeat;
        // Our own vote counts only once durable: see `on_persisted`.
        self.self_vote_after = Some(self.next_ready);
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        for peer in self.others() {
            let body = Body::Vote { last_index, last_term, transfer };
            self.hold(Message { from: self.cfg.id, to: peer, term: self.term, body }, None);
        }
    }

    /// Votes granted by voters of the newest configuration.
    fn granted(&self) -> usize {
        self.votes.iter().filter(|(id, g)| **g && self.is_voter(**id)).count()
    }

    fn rejected(&self) -> usize {
        self.votes.iter().filter(|(id, g)| !**g && self.is_voter(**id)).count()
    }

    fn on_pre_vote(&mut self, now: Instant, from: NodeId, term: u64, li: u64, lt: u64) {
        let lease = self.leader_seen.is_some_and(|t| now - t < self.cfg.election_min)
            || self.role == Role::Leader;
        let granted =
            term > self.term && !lease && self.fence == 0 && self.log.is_up_to_date(li, lt);
        let reply_term = if granted { term } else { self.term };
        self.outbox.push(Message {
            from: self.cfg.id,
            to: from,
            term: reply_term,
            body: Body::PreVoteResp { granted },
        });
    }

    fn on_pre_vote_resp(&mut self, now: Instant, from: NodeId, term: u64, granted: bool) {
        if self.role != Role::PreCandidate || term != self.term + 1 {
            return;
        }
        self.votes.insert(from, granted);
        if !self.try_win_pre_vote(now) && self.rejected() >= self.quorum() {
            self.role = Role::Follower;
        }
    }

    fn on_vote(&mut self, now: Instant, from: NodeId, li: u64, lt: u64) {
        // Figure 2, RequestVote receiver: one vote per term, only for a log at least as up to
        // date as ours (§5.4.1); a fenced node cannot know either, so it does not vote.
        let free = self.vote.is_none() || self.vote == Some(from);
        let granted = free && self.fence == 0 && self.log.is_up_to_date(li, lt);
        let msg = Message {
            from: self.cfg.id,
            to: from,
            term: self.term,
            body: Body::VoteResp { granted },
        };
        if granted {
            if self.vote != Some(from) {
                self.vote = Some(from);
                self.hs_dirty = true;
            }
            self.reset_election_timer(now);
            self.hold(msg, None);
        } else {
            self.outbox.push(msg);
        }
    }

    fn on_vote_resp(&mut self, now: Instant, from: NodeId, granted: bool) {
        if self.role != Role::Candidate {
            return;
        }
        self.votes.insert(from, granted);
        self.try_win(now);
        if self.role == Role::Candidate && self.rejected() >= self.quorum() {
            self.become_follower(now, self.term, None);
        }
    }

    fn try_win(&mut self, now: Instant) {
        if self.role == Role::Candidate
            && self.self_vote_after.is_none()
            && self.granted() >= self.quorum()
        {
            self.become_leader(now);
        }
    }

    fn become_follower(&mut self, now: Instant, term: u64, leader: Option<NodeId>) {
        if term > self.term {
            self.term = term;
            self.vote = None;
            self.hs_dirty = true;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.transfer = None;
        self.self_vote_after = None;
        self.progress.clear();
        self.broadcast_due = false;
        self.reset_election_timer(now);
    }

    fn become_leader(&mut self, now: Instant) {
        self.role = Role::Leader;
        self.leader = Some(self.cfg.id);
        self.transfer = None;
        let last = self.log.last_index();
        self.progress =
            self.members.voters().iter().map(|&p| (p, Progress::new(last, now))).collect();
        self.progress.insert(self.cfg.id, Progress::new(last, now));
        let own = self.own_match();
        if let Some(me) = self.progress.get_mut(&self.cfg.id) {
            me.matched = own;
        }
        self.repair_lacks = (0, BTreeSet::new());
        self.request_repair();
        // §5.4.2: entries of earlier terms commit only under an entry of this term.
        if !self.cfg.mutations.skip_noop {
            self.log.append_new(self.term, EntryKind::Noop, Vec::new());
        }
        self.broadcast_due = true;
        self.heartbeat_deadline = now + self.cfg.heartbeat;
        self.quorum_check = now + self.cfg.election_max;
    }

    fn reset_election_timer(&mut self, now: Instant) {
        let lo = self.cfg.election_min.as_nanos() as u64;
        let hi = (self.cfg.election_max.as_nanos() as u64).max(lo + 1);
        self.election_deadline = now + Duration::from_nanos(self.rng.random_range(lo..hi));
    }

    // ---- replication ----

    #[allow(clippy::too_many_arguments)]
    fn on_append(
        &mut self,
        now: Instant,
        from: NodeId,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
        leader_last: u64,
    ) {
        if self.role == Role::Leader {
            // Two leaders in one term cannot happen (Election Safety); a forged message can.
            self.alarms.malformed += 1;
            return;
        }
        let consecutive = entries.iter().enumerate().all(|(k, e)| {
            Some(e.index) == prev_index.checked_add(k as u64 + 1)
                && e.term <= self.term
                && e.kind != EntryKind::Faulty
        }) && entries.windows(2).all(|w| w[0].term <= w[1].term)
            && entries.first().is_none_or(|e| e.term >= prev_term);
        if !consecutive {
            self.alarms.malformed += 1;
            return;
        }
        self.role = Role::Follower;
        self.leader = Some(from);
        self.leader_seen = Some(now);
        self.reset_election_timer(now);
        match self.log.try_append(prev_index, prev_term, &entries) {
            Ok(last_new) => {
                if !entries.is_empty() {
                    self.members.rescan(&self.log, prev_index + 1);
                }
                // Figure 2 rule 5, bounded by what this message proved we share.
                self.log.commit_to(commit.min(last_new));
                let verified = self.log.first_faulty().map_or(last_new, |f| last_new.min(f - 1));
                let faulty = self.log.first_faulty().is_some_and(|f| f <= last_new);
                if self.fence & LOST_SUFFIX != 0
                    && self.term > self.fence_term
                    && last_new >= leader_last
                    && !faulty
                {
                    if let Some(t) = self.log.term(last_new) {
                        self.unfence_at = Some((last_new, t));
                    }
                }
                let guard = self.log.term(verified).map(|t| (verified, t));
                let body = Body::AppendResp { success: true, index: verified, faulty, rejected: 0 };
                self.hold(Message { from: self.cfg.id, to: from, term: self.term, body }, guard);
            }
            Err(e) => {
                if e == AppendError::ConflictsWithCommitted {
                    self.alarms.conflicts_with_committed += 1;
                    return;
                }
                let hint = self.log.reject_hint(prev_index);
                let body = Body::AppendResp {
                    success: false,
                    index: hint,
                    faulty: false,
                    rejected: prev_index,
                };
                self.send(from, body);
            }
        }
    }

    /// InstallSnapshot receiver (§7). A snapshot at or below what we applied tells us nothing
    /// new: answer with what we applied (matching the leader, as it is committed; verified).
    /// Otherwise install it, even below our commit point (a faulty or unsynced entry may be
    /// holding the apply point back, and the snapshot repairs it); the acknowledgement
    /// leaves once it is durable.
    fn on_snapshot(&mut self, now: Instant, from: NodeId, snapshot: Snapshot) {
        if self.role == Role::Leader {
            self.alarms.malformed += 1;
            return;
        }
        if snapshot.index == 0 || snapshot.term > self.term {
            self.alarms.malformed += 1;
            return;
        }
        self.role = Role::Follower;
        self.leader = Some(from);
        self.leader_seen = Some(now);
        self.reset_election_timer(now);
        if snapshot.index <= self.log.applied() {
            // Held like any acknowledgement: the apply point may be a snapshot installed a
            // moment ago and not yet durable.
            let index = self.log.applied();
            let guard = self.log.term(index).map(|t| (index, t));
            let body = Body::AppendResp { success: true, index, faulty: false, rejected: 0 };
            self.hold(Message { from: self.cfg.id, to: from, term: self.term, body }, guard);
            return;
        }
        if snapshot.index <= self.log.commit()
            && self.log.term(snapshot.index) != Some(snapshot.term)
        {
            // A committed entry with another identity: never from a correct leader.
            self.alarms.conflicts_with_committed += 1;
            return;
        }
        let (index, term) = (snapshot.index, snapshot.term);
        let keep = self.log.install_snapshot(index, term);
        self.members.install(&snapshot.voters, &self.log);
        self.counters.snapshots_installed += 1;
        self.snapshot = Some(snapshot.clone());
        self.snapshot_out = Some((snapshot, keep));
        let body = Body::AppendResp { success: true, index, faulty: false, rejected: 0 };
        self.hold(
            Message { from: self.cfg.id, to: from, term: self.term, body },
            Some((index, term)),
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn on_append_resp(
        &mut self,
        now: Instant,
        from: NodeId,
        success: bool,
        index: u64,
        faulty: bool,
        rejected: u64,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let last = self.log.last_index();
        let Some(p) = self.progress.get_mut(&from) else { return };
        p.last_heard = now;
        if index > last || rejected > last {
            // About entries this leader never had: forged or from another life.
            self.alarms.malformed += 1;
            return;
        }
        if !success {
            if p.on_reject(rejected, index) {
                self.send_append(from, false);
            }
            return;
        }
        if faulty {
            if p.on_faulty(index) {
                self.send_append(from, false);
            }
        } else {
            if p.on_ack(index) {
                self.maybe_commit();
            }
            // Pipelining: an answer makes room in the window (or ends a probe).
            self.send_append(from, false);
        }
        if self.transfer.is_some_and(|(to, _)| to == from) {
            self.maybe_send_timeout_now(from);
        }
    }

    fn maybe_send_timeout_now(&mut self, to: NodeId) {
        if self.progress.get(&to).is_some_and(|p| p.matched == self.log.last_index()) {
            self.send(to, Body::TimeoutNow);
        } else {
            self.send_append(to, false);
        }
    }

    /// Sends `peer` what its progress allows (see [`SendState`]): a probe, or appends back to
    /// back from `next` until the in-flight window is full (pipelining), each of up to
    /// `max_batch` entries. A `heartbeat` always sends something: the probe again, or, with
    /// nothing new to send, an empty append at `matched` (which the follower holds, so it
    /// cannot draw a spurious rejection while later appends are still in flight).
    fn send_append(&mut self, peer: NodeId, heartbeat: bool) {
        let last = self.log.last_index();
        let commit = self.log.commit();
        let (max_batch, window) = (self.cfg.max_batch.max(1) as u64, self.cfg.max_in_flight.max(1));
        let (me, term) = (self.cfg.id, self.term);
        let Some(p) = self.progress.get_mut(&peer) else { return };
        let mut heartbeat_due = heartbeat;
        loop {
            if !heartbeat_due && !p.may_send(window) {
                return;
            }
            p.next = p.next.max(p.matched + 1).min(last + 1);
            let prev_index = p.next - 1;
            let Some(prev_term) = self.log.term(prev_index) else {
                // The entries it needs are compacted away: send the snapshot instead (§7).
                let Some(snapshot) = self.snapshot.clone() else { return };
                p.on_snapshot_sent(snapshot.index);
                self.counters.snapshots_sent += 1;
                let body = Body::Snapshot { snapshot };
                self.outbox.push(Message { from: me, to: peer, term, body });
                return;
            };
            let room = match p.state {
                SendState::Replicate => window.saturating_sub(p.in_flight()),
                _ => max_batch,
            };
            let upto = last.min(prev_index + max_batch.min(room));
            if p.state == SendState::Replicate && upto <= prev_index {
                // Nothing new, or the window is full.
                if heartbeat_due {
                    if let Some(t) = self.log.term(p.matched) {
                        let body = Body::Append {
                            prev_index: p.matched,
                            prev_term: t,
                            entries: Vec::new(),
                            commit,
                            leader_last: last,
                        };
                        self.outbox.push(Message { from: me, to: peer, term, body });
                    }
                }
                return;
            }
            let entries: Vec<Entry> = (prev_index + 1..=upto)
                .map_while(|i| self.log.entry(i).filter(|_| !self.log.is_faulty(i)).cloned())
                .collect();
            let sent = entries.len() as u64;
            if sent == 0 && !heartbeat_due && p.state == SendState::Replicate {
                // Our next entry is faulty: nothing to send until it is repaired (an empty
                // append here would draw an acknowledgement, and that another append).
                return;
            }
            let body = Body::Append { prev_index, prev_term, entries, commit, leader_last: last };
            self.outbox.push(Message { from: me, to: peer, term, body });
            heartbeat_due = false;
            if p.state != SendState::Replicate {
                // One probe at a time; its answer moves `next`.
                p.probe_sent = true;
                return;
            }
            if sent == 0 {
                return;
            }
            p.next = prev_index + 1 + sent;
        }
    }

    /// Leader: how far its own log counts toward a commit: durable, and below its first
    /// faulty entry (a corrupt copy vouches for nothing).
    fn own_match(&self) -> u64 {
        let stable = self.log.stable();
        self.log.first_faulty().map_or(stable, |f| stable.min(f - 1))
    }

    /// Leader: asks the voters that have not said they lack it for an intact copy of its
    /// first faulty entry.
    fn request_repair(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let Some(index) = self.log.first_faulty() else { return };
        let Some(term) = self.log.term(index) else { return };
        if self.repair_lacks.0 != index {
            self.repair_lacks = (index, BTreeSet::new());
        }
        for peer in self.others() {
            if !self.repair_lacks.1.contains(&peer) {
                self.send(peer, Body::RepairReq { index, term });
            }
        }
    }

    /// A leader of our term asks whether we hold `(index, term)`: our intact copy, or our
    /// snapshot when it covers the index. `Lacks` is a promise the
    /// leader may discard on, so it is given only when certain: our log ends before `index`
    /// or holds another term there, above our snapshot, and we are not fenced (a fenced node
    /// may have lost entries it acknowledged). Having adopted the leader's term, we take no
    /// entry from an older leader afterwards, and this leader never sends its faulty one.
    fn on_repair_req(&mut self, now: Instant, from: NodeId, index: u64, term: u64) {
        if self.role == Role::Leader {
            // Two leaders in one term cannot happen; a forged message can.
            self.alarms.malformed += 1;
            return;
        }
        self.role = Role::Follower;
        self.leader = Some(from);
        self.leader_seen = Some(now);
        self.reset_election_timer(now);
        let answer = if index == 0 {
            RepairAnswer::Unknown
        } else if index <= self.log.offset() {
            // Committed and compacted here: our snapshot covers it (a snapshot holds only
            // applied, so committed, state; a fence does not make it less so).
            match &self.snapshot {
                Some(snap) if snap.index >= index => RepairAnswer::Snapshot(snap.clone()),
                _ => RepairAnswer::Unknown,
            }
        } else if self.fence != 0 {
            RepairAnswer::Unknown
        } else {
            match self.log.term(index) {
                Some(t) if t == term => match self.log.entry(index) {
                    Some(e) if !self.log.is_faulty(index) => RepairAnswer::Have(e.clone()),
                    _ => RepairAnswer::Unknown,
                },
                Some(_) | None => RepairAnswer::Lacks,
            }
        };
        self.send(from, Body::RepairResp { index, term, answer });
    }

    /// Leader: a peer's answer about our first faulty entry. An intact copy repairs it. A
    /// majority of voters positively lacking it proves it was never committed (a committed
    /// entry is held by a majority, which would have answered `Have` or `Unknown`); then the
    /// entry and everything after it go, and the leader steps down: entries of this term
    /// after it may already sit on followers, and new ones at the same indexes would break
    /// Log Matching within the term. The next election starts from logs without it.
    ///
    /// Counting against the configuration at the entry before it covers the entry itself
    /// being an unreadable configuration change: with single-server changes a majority of
    /// the old configuration lacking it leaves too few holders for a majority of the new one.
    /// Later configurations in our log must be outvoted too.
    fn on_repair_resp(
        &mut self,
        now: Instant,
        from: NodeId,
        index: u64,
        term: u64,
        answer: RepairAnswer,
    ) {
        if self.role != Role::Leader
            || self.log.first_faulty() != Some(index)
            || self.log.term(index) != Some(term)
        {
            return;
        }
        if let Some(p) = self.progress.get_mut(&from) {
            p.last_heard = now;
        }
        match answer {
            RepairAnswer::Have(e) => {
                if e.index != index || !self.log.repair(&e) {
                    self.alarms.malformed += 1;
                    return;
                }
                self.counters.faulty_repaired += 1;
                self.members.rescan(&self.log, index);
                self.on_config_change(now);
                self.repair_lacks = (0, BTreeSet::new());
                self.broadcast_due = true;
                self.request_repair();
            }
            RepairAnswer::Lacks => {
                if self.repair_lacks.0 != index {
                    self.repair_lacks = (index, BTreeSet::new());
                }
                self.repair_lacks.1.insert(from);
                if self.majority_lacks(index) && self.log.discard_from(index) {
                    self.counters.faulty_discarded += 1;
                    self.members.rescan(&self.log, index);
                    self.repair_lacks = (0, BTreeSet::new());
                    self.become_follower(now, self.term, None);
                }
            }
            RepairAnswer::Snapshot(snap) => {
                // It covers our faulty entry and ends at an entry we hold (same identity, so
                // by Log Matching the snapshot is our prefix's state): install it as a
                // follower would (§7), keeping the entries after it.
                if snap.index < index
                    || self.log.term(snap.index) != Some(snap.term)
                    || snap.index <= self.log.applied()
                {
                    self.alarms.malformed += 1;
                    return;
                }
                let keep = self.log.install_snapshot(snap.index, snap.term);
                self.members.install(&snap.voters, &self.log);
                self.counters.faulty_repaired += 1;
                self.counters.snapshots_installed += 1;
                self.snapshot = Some(snap.clone());
                self.snapshot_out = Some((snap, keep));
                self.on_config_change(now);
                self.repair_lacks = (0, BTreeSet::new());
                self.broadcast_due = true;
                self.request_repair();
            }
            RepairAnswer::Unknown => {}
        }
    }

    /// Does a majority of every configuration from the one in effect before `index` to the
    /// newest in our log positively lack our entry at `index`?
    fn majority_lacks(&self, index: u64) -> bool {
        let lacks = &self.repair_lacks.1;
        self.members.since(index).iter().all(|voters| {
            let n = voters.iter().filter(|v| lacks.contains(v)).count();
            n > voters.len() / 2
        })
    }

    /// Figure 2, rules for leaders: commit N if a majority holds it durably and it is of this
    /// term (§5.4.2). The leader's own copy counts once its sync is done.
    fn maybe_commit(&mut self) {
        let voters = self.members.voters();
        let mut matched: Vec<u64> =
            voters.iter().map(|v| self.progress.get(v).map_or(0, |p| p.matched)).collect();
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let Some(&n) = matched.get(self.quorum() - 1) else { return };
        // Nothing past our own faulty entry: we could not serve it, and until it is repaired
        // or proven uncommitted we do not know it is the cluster's.
        let n = self.log.first_faulty().map_or(n, |f| n.min(f - 1));
        if n > self.log.commit()
            && (self.cfg.mutations.commit_any_term || self.log.term(n) == Some(self.term))
        {
            self.log.commit_to(n);
            // Followers learn the new commit index with the next append.
            self.broadcast_due = true;
        }
        // A leader whose removal is committed steps down (after telling the others of the
        // commit: the broadcast above goes out with the next `Ready` only if it still leads,
        // so send it now).
        if !self.is_voter(self.cfg.id) && self.log.commit() >= self.members.latest_index() {
            for peer in self.others() {
                self.send_append(peer, true);
            }
            self.role = Role::Follower;
            self.leader = None;
            self.transfer = None;
            self.progress.clear();
            self.broadcast_due = false;
        }
    }

    /// The voters other than this node: whom elections and appends go to.
    fn others(&self) -> Vec<NodeId> {
        self.members.voters().iter().copied().filter(|&p| p != self.cfg.id).collect()
    }

    fn send(&mut self, to: NodeId, body: Body) {
        self.outbox.push(Message { from: self.cfg.id, to, term: self.term, body });
    }

    /// Queues a message that may leave only once the current state is durable.
    fn hold(&mut self, msg: Message, guard: Option<(u64, u64)>) {
        self.unnumbered.push((msg, guard));
    }

    // ---- outputs ----

    pub fn has_ready(&self) -> bool {
        !self.outbox.is_empty()
            || self.hs_dirty
            || self.snapshot_out.is_some()
            || self.log.has_unstable()
            || self.broadcast_due
            || !self.unnumbered.is_empty()
            || self.log.applicable() > self.log.applied()
    }

    pub fn ready(&mut self) -> Ready {
        if self.broadcast_due && self.role == Role::Leader {
            for peer in self.others() {
                self.send_append(peer, false);
            }
        }
        self.broadcast_due = false;
        let number = self.next_ready;
        self.next_ready += 1;
        let hard_state =
            if std::mem::take(&mut self.hs_dirty) { Some(self.hard_state()) } else { None };
        let (snapshot, snapshot_keeps_log) =
            self.snapshot_out.take().map_or((None, false), |(s, k)| (Some(s), k));
        let entries = self.log.take_unstable();
        if let Some(first) = entries.first() {
            // This batch rewrites the log from `first.index` (a repair or a truncation): an
            // earlier batch's sync vouches only for what lies below it.
            let below = first.index - 1;
            let below_term = self.log.term(below).unwrap_or(0);
            for rec in self.persisting.iter_mut() {
                if rec.1 > below {
                    (rec.1, rec.2) = (below, below_term);
                }
            }
        }
        self.persisting.push_back((number, self.log.last_index(), self.log.last_term()));
        for (msg, guard) in self.unnumbered.drain(..) {
            self.held.push_back(Held { after: number, msg, guard });
        }
        Ready {
            number,
            hard_state,
            snapshot,
            snapshot_keeps_log,
            entries,
            messages: std::mem::take(&mut self.outbox),
            committed: self.log.take_committed(),
        }
    }

    /// The driver's sync covered every `Ready` up to `number`.
    pub fn on_persisted(&mut self, now: Instant, number: u64) {
        if number < self.persisted || number >= self.next_ready {
            return;
        }
        self.persisted = number;
        while let Some(&(n, index, term)) = self.persisting.front() {
            if n > number {
                break;
            }
            self.persisting.pop_front();
            self.log.on_stable(index, term);
        }
        while self.held.front().is_some_and(|h| h.after <= number) {
            let Some(h) = self.held.pop_front() else { break };
            // A promise made in an earlier term is dropped: the term moved on (durably).
            let valid = h.msg.term == self.term
                && h.guard
                    .is_none_or(|(i, t)| i <= self.log.stable() && self.log.term(i) == Some(t));
            if valid {
                self.outbox.push(h.msg);
            }
        }
        if let Some((i, t)) = self.unfence_at {
            if i <= self.log.stable() && self.log.term(i) == Some(t) {
                self.unfence_at = None;
                self.fence &= !LOST_SUFFIX;
                self.hs_dirty = true;
            }
        }
        if self.self_vote_after.is_some_and(|n| n <= number) {
            self.self_vote_after = None;
            if self.role == Role::Candidate {
                self.votes.insert(self.cfg.id, true);
                self.try_win(now);
            }
        }
        if self.role == Role::Leader {
            let own = self.own_match();
            if let Some(me) = self.progress.get_mut(&self.cfg.id) {
                me.matched = own;
            }
            self.maybe_commit();
        }
    }

    /// Checks the node's invariants; used by tests, the fuzzer and the simulator.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.log.check()?;
        let snap = self.snapshot.as_ref().map_or((0, 0), |s| (s.index, s.term));
        if snap != (self.log.offset(), self.log.offset_term()) {
            return Err(format!(
                "snapshot {snap:?} but the log starts after ({}, {})",
                self.log.offset(),
                self.log.offset_term()
            ));
        }
        if self.log.last_term() > self.term {
            return Err(format!(
                "log term {} above current term {}",
                self.log.last_term(),
                self.term
            ));
        }
        if self.role == Role::Leader {
            if self.vote != Some(self.cfg.id) {
                return Err(format!("leader of term {} did not vote for itself", self.term));
            }
            if self.fence != 0 {
                return Err("a fenced node leads".into());
            }
        }
        if let Some(f) = self.log.first_faulty() {
            if self.log.applied() >= f {
                return Err(format!("faulty entry {f} applied (applied {})", self.log.applied()));
            }
        }
        Ok(())
    }
}
