//! Tests named after the rules of the Raft paper (Figures 2 and 3, §5.1–5.4) and DESIGN.md
//! §6, driving nodes directly through a small in-test cluster: real `Storage` on a `MemDisk`,
//! messages in a queue the test controls.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::membership::{encode_voters, ConfChange};
use super::message::{Body, Entry, EntryKind, Message, NodeId, RepairAnswer, Snapshot};
use super::node::{CompactError, Config, Mutations, ProposeError, RaftNode, Role};
use super::ready::StateMachine;
use super::storage::{
    decode_entry, encode_entry, Decoded, Recovered, Storage, StorageMutations, LOST_META,
    LOST_SUFFIX,
};
use crate::disk::{Disk, FaultConfig, MemDisk};
use crate::time::Instant;

const DIR: &str = "raft";

struct Member {
    node: RaftNode,
    disk: MemDisk,
    storage: Storage,
    applied: Machine,
}

/// The test's state machine: the list of entries applied, so that tests compare states by
/// comparing lists. Its snapshot is those entries as WAL records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Machine(Vec<Entry>);

impl StateMachine for Machine {
    fn apply(&mut self, entry: &Entry) {
        self.0.push(entry.clone());
    }
    fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for e in &self.0 {
            encode_entry(e, false, &mut out);
        }
        out
    }
    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), String> {
        let mut entries = Vec::new();
        let mut pos = 0;
        while pos < snapshot.data.len() {
            match decode_entry(&snapshot.data[pos..]) {
                Decoded::Entry { entry, faulty: false, len } => {
                    entries.push(entry);
                    pos += len;
                }
                other => return Err(format!("bad snapshot record: {other:?}")),
            }
        }
        if entries.last().map(|e| (e.index, e.term)) != Some((snapshot.index, snapshot.term)) {
            return Err("snapshot does not end at its own index".into());
        }
        self.0 = entries;
        Ok(())
    }
}

impl std::ops::Deref for Machine {
    type Target = Vec<Entry>;
    fn deref(&self) -> &Vec<Entry> {
        &self.0
    }
}

/// The state machine a node restarts with: its recovered snapshot, if any.
fn machine_from(rec: &Recovered) -> Machine {
    let mut m = Machine::default();
    if let Some(snap) = &rec.snapshot {
        m.restore(snap).unwrap();
    }
    m
}

struct Cluster {
    /// The initial voters.
    ids: Vec<NodeId>,
    /// Every node, spares included: whom `heartbeat` and `run_for` tick.
    all: Vec<NodeId>,
    members: BTreeMap<NodeId, Member>,
    net: VecDeque<Message>,
    now: Instant,
    /// Nodes cut off from everyone: their messages in and out are dropped.
    cut: BTreeSet<NodeId>,
    mutations: Mutations,
    /// `(max_batch, max_in_flight)` for every node, if not the defaults.
    flow: Option<(usize, u64)>,
    /// Every (term, leader) ever observed.
    leaders: BTreeMap<u64, BTreeSet<NodeId>>,
}

fn config(id: NodeId, ids: &[NodeId], mutations: Mutations) -> Config {
    Config { mutations, ..Config::new(id, ids.to_vec()) }
}

impl Cluster {
    fn new(n: u64) -> Self {
        Self::with(n, Mutations::default())
    }

    fn with(n: u64, mutations: Mutations) -> Self {
        let ids: Vec<NodeId> = (1..=n).collect();
        let mut c = Cluster {
            ids: ids.clone(),
            all: ids.clone(),
            members: BTreeMap::new(),
            net: VecDeque::new(),
            now: Instant(1_000_000_000),
            cut: BTreeSet::new(),
            mutations,
            flow: None,
            leaders: BTreeMap::new(),
        };
        for id in ids {
            let mut disk = MemDisk::new(id, FaultConfig::default());
            let (storage, rec) =
                Storage::open(&mut disk, DIR, StorageMutations::default()).unwrap();
            let node = c.make_node(id, rec);
            c.members.insert(id, Member { node, disk, storage, applied: Machine::default() });
        }
        c
    }

    /// `n` nodes sending at most `max_batch` entries per append and `max_in_flight`
    /// unacknowledged entries per follower.
    fn with_flow(n: u64, max_batch: usize, max_in_flight: u64) -> Self {
        let mut c = Self::new(n);
        c.flow = Some((max_batch, max_in_flight));
        for id in 1..=n {
            let m = c.members.remove(&id).unwrap();
            let mut disk = m.disk;
            let (storage, rec) =
                Storage::open(&mut disk, DIR, StorageMutations::default()).unwrap();
            let node = c.make_node(id, rec);
            c.members.insert(id, Member { node, disk, storage, applied: Machine::default() });
        }
        c
    }

    /// `n` voters and `spares` more nodes (ids after them) that start outside the
    /// configuration, knowing its voters.
    fn with_spares(n: u64, spares: u64) -> Self {
        let mut c = Self::new(n);
        for id in n + 1..=n + spares {
            let mut disk = MemDisk::new(id, FaultConfig::default());
            let (storage, rec) =
                Storage::open(&mut disk, DIR, StorageMutations::default()).unwrap();
            let node = c.make_node(id, rec);
            c.members.insert(id, Member { node, disk, storage, applied: Machine::default() });
        }
        c.all = (1..=n + spares).collect();
        c
    }

    fn make_node(&self, id: NodeId, rec: Recovered) -> RaftNode {
        let rng = ChaCha8Rng::seed_from_u64(id * 7919 + self.now.0);
        let mut cfg = config(id, &self.ids, self.mutations);
        if let Some((max_batch, max_in_flight)) = self.flow {
            (cfg.max_batch, cfg.max_in_flight) = (max_batch, max_in_flight);
        }
        RaftNode::new(cfg, rec, rng, self.now)
    }

    fn node(&self, id: NodeId) -> &RaftNode {
        &self.members[&id].node
    }

    fn node_mut(&mut self, id: NodeId) -> &mut RaftNode {
        &mut self.members.get_mut(&id).unwrap().node
    }

    /// Works through every `Ready` of `id`: persist (hard state, entries, one sync), send,
    /// apply, then report persistence.
    fn drain(&mut self, id: NodeId) {
        let now = self.now;
        let m = self.members.get_mut(&id).unwrap();
        while m.node.has_ready() {
            let rd = m.node.ready();
            if let Some(hs) = rd.hard_state {
                m.storage.write_hard_state(&mut m.disk, &hs).unwrap();
            }
            if let Some(snap) = &rd.snapshot {
                m.storage.install_snapshot(&mut m.disk, snap, rd.snapshot_keeps_log).unwrap();
            }
            m.storage.append(&mut m.disk, &rd.entries).unwrap();
            m.storage.sync(&mut m.disk).unwrap();
            for msg in rd.messages {
                self.net.push_back(msg);
            }
            if let Some(snap) = &rd.snapshot {
                m.applied.restore(snap).unwrap();
            }
            for e in &rd.committed {
                m.applied.apply(e);
            }
            m.node.on_persisted(now, rd.number);
            m.node.check_invariants().unwrap();
        }
        if m.node.role() == Role::Leader {
            self.leaders.entry(m.node.term()).or_default().insert(id);
        }
    }

    fn deliver(&mut self, msg: Message) {
        if self.cut.contains(&msg.from) || self.cut.contains(&msg.to) {
            return;
        }
        let to = msg.to;
        let now = self.now;
        if let Some(m) = self.members.get_mut(&to) {
            m.node.step(now, msg);
            self.drain(to);
        }
    }

    /// One network hop: delivers the messages in flight now, not the ones they cause.
    /// Returns how many there were.
    fn hop(&mut self) -> usize {
        let batch: Vec<Message> = self.net.drain(..).collect();
        let n = batch.len();
        for msg in batch {
            self.deliver(msg);
        }
        n
    }

    /// The appends in flight to `to`: (prev_index, number of entries).
    fn appends_to(&self, to: NodeId) -> Vec<(u64, usize)> {
        self.net
            .iter()
            .filter_map(|m| match &m.body {
                Body::Append { prev_index, entries, .. } if m.to == to => {
                    Some((*prev_index, entries.len()))
                }
                _ => None,
            })
            .collect()
    }

    fn deliver_all(&mut self) {
        let mut budget = 100_000;
        while let Some(msg) = self.net.pop_front() {
            self.deliver(msg);
            budget -= 1;
            assert!(budget > 0, "messages never settle");
        }
    }

    /// Fires `id`'s timer (it campaigns if it is not the leader) and settles the network.
    fn fire(&mut self, id: NodeId) {
        let at = self.node(id).poll_timeout().unwrap();
        self.now = self.now.max(at);
        let now = self.now;
        self.node_mut(id).tick(now);
        self.drain(id);
        self.deliver_all();
    }

    fn elect(&mut self, id: NodeId) {
        self.fire(id);
        assert_eq!(self.node(id).role(), Role::Leader, "node {id} should have won");
    }

    fn propose(&mut self, id: NodeId, data: &[u8]) -> (u64, u64) {
        let now = self.now;
        let r = self.node_mut(id).propose(now, data.to_vec()).unwrap();
        self.drain(id);
        r
    }

    /// Advances time by a heartbeat and lets every node tick.
    fn heartbeat(&mut self) {
        self.now = self.now + Duration::from_millis(50);
        for id in self.all.clone() {
            let now = self.now;
            if self.node(id).role() == Role::Leader {
                self.node_mut(id).tick(now);
                self.drain(id);
            }
        }
        self.deliver_all();
    }

    /// Lets `d` of time pass in 10 ms steps, ticking every node whose timer is due.
    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now = self.now + Duration::from_millis(10);
            for id in self.all.clone() {
                let now = self.now;
                if self.node(id).poll_timeout().is_some_and(|t| t <= now) {
                    self.node_mut(id).tick(now);
                    self.drain(id);
                }
            }
            self.deliver_all();
        }
    }

    fn leader(&self) -> Option<NodeId> {
        self.all.iter().copied().find(|&id| self.node(id).role() == Role::Leader)
    }

    /// Power loss and restart of `id` from what its disk holds.
    fn restart(&mut self, id: NodeId) -> super::storage::RecoveryReport {
        let mut m = self.members.remove(&id).unwrap();
        m.disk.crash();
        let (storage, rec) = Storage::open(&mut m.disk, DIR, StorageMutations::default()).unwrap();
        let report = rec.report.clone();
        let applied = machine_from(&rec);
        let node = self.make_node(id, rec);
        self.members.insert(id, Member { node, disk: m.disk, storage, applied });
        self.drain(id);
        report
    }

    /// `id` snapshots its state machine at its applied index, makes it durable and compacts.
    fn compact(&mut self, id: NodeId) -> Snapshot {
        let m = self.members.get_mut(&id).unwrap();
        let last = m.applied.last().expect("something applied");
        let snap = m.node.prepare_snapshot(last.index, m.applied.snapshot()).unwrap();
        assert_eq!(snap.term, last.term);
        m.storage.install_snapshot(&mut m.disk, &snap, true).unwrap();
        m.node.compact(snap.clone()).unwrap();
        m.node.check_invariants().unwrap();
        snap
    }

    fn log_ids(&self, id: NodeId) -> Vec<(u64, u64)> {
        self.node(id).log().entries().iter().map(|e| (e.index, e.term)).collect()
    }
}

fn msg(from: NodeId, to: NodeId, term: u64, body: Body) -> Message {
    Message { from, to, term, body }
}

fn entry(index: u64, term: u64) -> Entry {
    Entry { index, term, kind: EntryKind::Normal, data: format!("{index}@{term}").into_bytes() }
}

/// A 3-node cluster where node 1 holds `log` (as if a leader had sent it) at `term`.
fn follower_with_log(term: u64, log: &[(u64, u64)]) -> Cluster {
    let mut c = Cluster::new(3);
    let entries: Vec<Entry> = log.iter().map(|&(i, t)| entry(i, t)).collect();
    let body = Body::Append { prev_index: 0, prev_term: 0, entries, commit: 0, leader_last: 0 };
    c.deliver(msg(2, 1, term, body));
    c.net.clear();
    c
}

// ---- §5.2 leader election ----

#[test]
fn election_safety_one_leader_per_term() {
    // Many random schedules with loss, reordering and restarts: no term ever has two leaders.
    for seed in 0..40 {
        let c = chaos(seed, 5, Mutations::default());
        for (term, leaders) in &c.leaders {
            assert!(leaders.len() <= 1, "seed {seed} term {term}: leaders {leaders:?}");
        }
        assert!(!c.leaders.is_empty(), "seed {seed}: nobody was ever elected");
    }
}

#[test]
fn candidate_wins_with_majority_and_leader_appends_noop() {
    let mut c = Cluster::new(3);
    c.elect(1);
    assert_eq!(c.node(1).term(), 1);
    assert_eq!(c.log_ids(1), vec![(1, 1)]);
    assert_eq!(c.node(1).log().entry(1).unwrap().kind, EntryKind::Noop);
    c.heartbeat();
    assert_eq!(c.node(2).leader(), Some(1));
    assert_eq!(c.node(1).commit(), 1);
}

#[test]
fn each_node_votes_at_most_once_per_term() {
    let mut c = Cluster::new(3);
    c.deliver(msg(2, 1, 5, Body::Vote { last_index: 0, last_term: 0, transfer: false }));
    c.deliver(msg(3, 1, 5, Body::Vote { last_index: 0, last_term: 0, transfer: false }));
    let grants: Vec<(NodeId, bool)> = c
        .net
        .iter()
        .filter_map(|m| match m.body {
            Body::VoteResp { granted } => Some((m.to, granted)),
            _ => None,
        })
        .collect();
    assert_eq!(grants, vec![(2, true), (3, false)]);
}

#[test]
fn vote_requires_up_to_date_log() {
    // §5.4.1: node 1's log ends (2, 1)... with last term 2 at index 2.
    let mut c = follower_with_log(2, &[(1, 1), (2, 2)]);
    let ask = |c: &mut Cluster, from, term, li, lt| {
        c.net.clear();
        c.deliver(msg(
            from,
            1,
            term,
            Body::Vote { last_index: li, last_term: lt, transfer: false },
        ));
        c.net.iter().any(|m| m.body == Body::VoteResp { granted: true })
    };
    c.now = c.now + Duration::from_secs(10); // outside the leader lease
    assert!(!ask(&mut c, 2, 3, 5, 1), "higher index but older last term must lose");
    assert!(!ask(&mut c, 2, 4, 1, 2), "same last term, shorter log must lose");
    assert!(ask(&mut c, 3, 5, 2, 2), "same last entry wins");
    assert!(ask(&mut c, 2, 6, 1, 3), "newer last term wins even if shorter");
}

#[test]
fn vote_grant_is_sent_only_after_it_is_durable() {
    let mut c = Cluster::new(3);
    let now = c.now;
    let n = c.node_mut(1);
    n.step(now, msg(2, 1, 1, Body::Vote { last_index: 0, last_term: 0, transfer: false }));
    let rd = n.ready();
    assert_eq!(rd.hard_state.map(|h| (h.term, h.vote)), Some((1, Some(2))));
    assert!(rd.messages.is_empty(), "grant released before the vote was synced");
    n.on_persisted(now, rd.number);
    let rd = n.ready();
    assert_eq!(rd.messages.len(), 1);
    assert_eq!(rd.messages[0].body, Body::VoteResp { granted: true });
}

#[test]
fn restarted_node_remembers_its_vote() {
    let mut c = Cluster::new(3);
    c.deliver(msg(2, 1, 1, Body::Vote { last_index: 0, last_term: 0, transfer: false }));
    c.restart(1);
    assert_eq!((c.node(1).term(), c.node(1).vote()), (1, Some(2)));
    c.net.clear();
    c.deliver(msg(3, 1, 1, Body::Vote { last_index: 0, last_term: 0, transfer: false }));
    assert!(c.net.iter().all(|m| m.body != Body::VoteResp { granted: true }));
}

#[test]
fn pre_vote_keeps_a_rejoining_node_from_deposing_the_leader() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.heartbeat();
    c.cut.insert(3);
    c.run_for(Duration::from_secs(5));
    c.propose(1, b"while 3 was away");
    assert_eq!(c.node(3).term(), 1, "pre-vote must not raise the term of a cut-off node");
    c.cut.clear();
    c.run_for(Duration::from_secs(3));
    assert_eq!((c.node(1).role(), c.node(1).term()), (Role::Leader, 1));
    assert_eq!(c.node(3).log().last_index(), c.node(1).log().last_index());
}

#[test]
fn leadership_transfer_hands_over_to_an_up_to_date_follower() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.propose(1, b"x");
    c.deliver_all();
    let now = c.now;
    c.node_mut(1).transfer_leadership(now, 2);
    c.drain(1);
    c.deliver_all();
    assert_eq!(c.node(2).role(), Role::Leader);
    assert_eq!(c.node(2).term(), 2);
    c.heartbeat();
    assert_eq!(c.node(1).role(), Role::Follower);
}

#[test]
fn leader_without_a_quorum_steps_down() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.cut.insert(1);
    for _ in 0..20 {
        c.heartbeat();
    }
    assert_eq!(c.node(1).role(), Role::Follower);
}

// ---- §5.3 log replication ----

#[test]
fn leader_append_only() {
    for seed in 0..20 {
        chaos(seed, 3, Mutations::default()); // asserted inside, at every step
    }
}

#[test]
fn log_matching() {
    for seed in 0..20 {
        let c = chaos(seed, 5, Mutations::default());
        assert_log_matching(&c);
    }
}

#[test]
fn follower_deletes_conflicting_suffix_and_appends() {
    let mut c = follower_with_log(3, &[(1, 1), (2, 2), (3, 2)]);
    let entries = vec![entry(2, 3), entry(3, 3)];
    let body = Body::Append { prev_index: 1, prev_term: 1, entries, commit: 0, leader_last: 3 };
    c.deliver(msg(3, 1, 3, body));
    assert_eq!(c.log_ids(1), vec![(1, 1), (2, 3), (3, 3)]);
    c.restart(1);
    assert_eq!(c.log_ids(1), vec![(1, 1), (2, 3), (3, 3)], "the WAL replays the truncation");
}

#[test]
fn append_is_refused_when_prev_does_not_match_and_hint_jumps_back() {
    let mut c = follower_with_log(2, &[(1, 1), (2, 1), (3, 1)]);
    c.net.clear();
    let body =
        Body::Append { prev_index: 3, prev_term: 2, entries: vec![], commit: 0, leader_last: 3 };
    c.deliver(msg(2, 1, 2, body));
    assert_eq!(
        c.net.back().unwrap().body,
        Body::AppendResp { success: false, index: 0, faulty: false, rejected: 3 }
    );
    assert_eq!(c.log_ids(1).len(), 3);
}

#[test]
fn append_ack_only_after_entries_are_durable() {
    let mut c = Cluster::new(3);
    let now = c.now;
    let n = c.node_mut(1);
    let body = Body::Append {
        prev_index: 0,
        prev_term: 0,
        entries: vec![entry(1, 1)],
        commit: 0,
        leader_last: 1,
    };
    n.step(now, msg(2, 1, 1, body));
    let rd = n.ready();
    assert_eq!(rd.entries.len(), 1);
    assert!(rd.messages.is_empty(), "ack released before the entries were synced");
    n.on_persisted(now, rd.number);
    let rd = n.ready();
    assert_eq!(
        rd.messages[0].body,
        Body::AppendResp { success: true, index: 1, faulty: false, rejected: 0 }
    );
}

#[test]
fn proposals_are_replicated_in_batches_and_committed() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let now = c.now;
    for i in 0..10u8 {
        c.node_mut(1).propose(now, vec![i]).unwrap();
    }
    c.drain(1);
    let appends: Vec<usize> = c
        .net
        .iter()
        .filter_map(|m| match &m.body {
            Body::Append { entries, .. } if m.to == 2 => Some(entries.len()),
            _ => None,
        })
        .collect();
    assert!(appends.contains(&10), "ten proposals in one step go out as one batch: {appends:?}");
    c.deliver_all();
    c.heartbeat();
    for id in 1..=3 {
        assert_eq!(c.node(id).commit(), 11);
        assert_eq!(c.members[&id].applied.len(), 11);
    }
}

// ---- log replication: batching and pipelining (issue 6) ----

#[test]
fn leader_pipelines_appends_up_to_the_in_flight_window() {
    let mut c = Cluster::with_flow(3, 2, 6);
    c.elect(1);
    let now = c.now;
    for i in 0..20u8 {
        c.node_mut(1).propose(now, vec![i]).unwrap();
    }
    c.drain(1);
    // The no-op at 1 is acknowledged: three appends of two entries leave back to back,
    // without waiting for an answer, and then the window (6 entries) is full.
    assert_eq!(c.appends_to(2), vec![(1, 2), (3, 2), (5, 2)]);
    c.hop();
    // Each acknowledgement makes room for one more batch.
    c.hop();
    assert_eq!(c.appends_to(2), vec![(7, 2), (9, 2), (11, 2)]);
    c.deliver_all();
    c.heartbeat();
    for id in 1..=3 {
        assert_eq!(c.node(id).commit(), 21);
        assert_eq!(c.members[&id].applied.len(), 21);
    }
}

#[test]
fn a_rejected_pipelined_append_sends_the_leader_back_to_one_probe() {
    let mut c = Cluster::with_flow(3, 1, 4);
    c.elect(1);
    let now = c.now;
    for i in 0..8u8 {
        c.node_mut(1).propose(now, vec![i]).unwrap();
    }
    c.drain(1);
    assert_eq!(c.appends_to(2), vec![(1, 1), (2, 1), (3, 1), (4, 1)]);
    // The first append to node 2 is lost: it rejects the three behind it.
    let lost = c.net.iter().position(|m| m.to == 2).unwrap();
    c.net.remove(lost);
    c.hop();
    let rejections: Vec<u64> = c
        .net
        .iter()
        .filter_map(|m| match m.body {
            Body::AppendResp { success: false, rejected, .. } if m.from == 2 => Some(rejected),
            _ => None,
        })
        .collect();
    assert_eq!(rejections, vec![2, 3, 4]);
    c.hop();
    // The first rejection sends one probe from the gap; the other two are stale.
    assert_eq!(c.appends_to(2), vec![(1, 1)]);
    c.deliver_all();
    c.heartbeat();
    for id in 1..=3 {
        assert_eq!(c.node(id).commit(), 9);
        assert_eq!(c.members[&id].applied.len(), 9);
    }
}

#[test]
fn a_lagging_follower_catches_up_many_entries_per_round_trip() {
    // One entry per append (seed 310416's world): without pipelining a follower 100
    // entries behind needs 100 round trips, 200 hops.
    let mut c = Cluster::with_flow(3, 1, 16);
    c.elect(1);
    c.cut.insert(3);
    commit_some(&mut c, 1, 100);
    c.cut.remove(&3);
    let target = c.node(1).commit();
    assert_eq!(target, 101);
    let mut hops = 0;
    while c.members[&3].applied.len() < target as usize {
        if c.net.is_empty() {
            // A heartbeat: it notices the stalled pipeline to node 3 and probes it.
            c.now = c.now + Duration::from_millis(50);
            let now = c.now;
            c.node_mut(1).tick(now);
            c.drain(1);
        }
        c.hop();
        hops += 1;
        assert!(hops <= 40, "node 3 applied {} of {target}", c.members[&3].applied.len());
    }
    assert_eq!(c.members[&3].applied.0, c.members[&1].applied.0);
}

#[test]
fn a_stalled_pipeline_is_retransmitted_at_the_heartbeat() {
    let mut c = Cluster::with_flow(3, 4, 64);
    c.elect(1);
    let now = c.now;
    for i in 0..8u8 {
        c.node_mut(1).propose(now, vec![i]).unwrap();
    }
    c.drain(1);
    // Every append and nothing else is lost: no later append draws a rejection.
    c.net.clear();
    c.heartbeat();
    assert!(c.node(1).commit() < 9, "nothing reached a follower");
    // The first heartbeat after the loss only holds the lease (entries may still be on
    // their way); at the next one the pipeline has not moved and is sent again.
    c.heartbeat();
    assert_eq!(c.node(1).commit(), 9);
    c.heartbeat();
    for id in 2..=3 {
        assert_eq!(c.members[&id].applied.len(), 9);
    }
}

// ---- §5.4 safety ----

#[test]
fn leader_completeness() {
    for seed in 0..20 {
        chaos(seed, 5, Mutations::default()); // asserted inside, at every election
    }
}

#[test]
fn state_machine_safety() {
    for seed in 0..20 {
        let c = chaos(seed, 3, Mutations::default());
        assert_applied_prefixes(&c);
    }
}

#[test]
fn commit_only_current_term_by_counting() {
    // Figure 8: a leader of term 3 holds an entry of term 2 at index 2 that a majority has.
    // It must not count it committed until an entry of term 3 is also on a majority.
    for mutated in [false, true] {
        let mut c = Cluster::with(3, Mutations { commit_any_term: mutated, skip_noop: false });
        // Node 1 received (1,1),(2,2) from some leader of term 2; node 2 also holds them.
        for id in [1, 2] {
            let entries = vec![entry(1, 1), entry(2, 2)];
            let body =
                Body::Append { prev_index: 0, prev_term: 0, entries, commit: 1, leader_last: 2 };
            c.deliver(msg(3, id, 2, body));
        }
        c.net.clear();
        c.cut.insert(3);
        // Node 1 is elected in term 3, but its appends to node 2 (carrying the new no-op) are
        // lost; only node 2's match of index 2 arrives.
        c.now = c.now + Duration::from_secs(10);
        let now = c.now;
        c.node_mut(1).tick(now);
        c.drain(1);
        while let Some(m) = c.net.pop_front() {
            if !matches!(m.body, Body::Append { .. }) {
                c.deliver(m);
            }
        }
        assert_eq!(c.node(1).role(), Role::Leader);
        assert_eq!(c.node(1).term(), 3);
        c.deliver(msg(
            2,
            1,
            3,
            Body::AppendResp { success: true, index: 2, faulty: false, rejected: 0 },
        ));
        let commit = c.node(1).commit();
        if mutated {
            assert_eq!(commit, 2, "the canary commits a previous-term entry by counting");
        } else {
            assert_eq!(commit, 1, "an entry of term 2 must not commit by counting in term 3");
            c.deliver(msg(
                2,
                1,
                3,
                Body::AppendResp { success: true, index: 3, faulty: false, rejected: 0 },
            ));
            assert_eq!(c.node(1).commit(), 3, "committing the no-op commits what precedes it");
        }
    }
}

// ---- durability and recovery (DESIGN.md §6) ----

#[test]
fn torn_never_acknowledged_tail_is_truncated() {
    for seed in 0..30 {
        let mut c = Cluster::new(1);
        c.elect(1);
        c.propose(1, b"durable");
        let synced = c.log_ids(1);
        // Write a large record without syncing it, then lose power with torn writes on.
        let m = c.members.get_mut(&1).unwrap();
        m.disk.faults_mut().torn_writes = true;
        *m.disk.rng() = ChaCha8Rng::seed_from_u64(seed);
        let e = Entry { index: 3, term: 1, kind: EntryKind::Normal, data: vec![7; 3000] };
        m.storage.append(&mut m.disk, &[e]).unwrap();
        let report = c.restart(1);
        let ids = c.log_ids(1);
        assert!(ids == synced || ids.len() == 3, "seed {seed}: {ids:?}");
        assert!(report.faulty.is_empty() && !report.lost_suffix, "seed {seed}: {report:?}");
        assert!(!c.node(1).is_fenced());
    }
}

/// Flips a bit in the body of the WAL record for `index` (records are laid out in order).
fn corrupt_body(c: &mut Cluster, id: NodeId, index: u64) {
    let m = c.members.get_mut(&id).unwrap();
    let mut pos = 0u64;
    let bytes = m.disk.read_all("raft/wal").unwrap();
    let mut i = 1;
    loop {
        let len = 29
            + u32::from_le_bytes(bytes[pos as usize..pos as usize + 4].try_into().unwrap()) as u64;
        if i == index {
            assert!(len > 29, "entry {index} has a body");
            m.disk.flip_bit("raft/wal", (pos + 29) * 8 + 3).unwrap();
            return;
        }
        pos += len;
        i += 1;
    }
}

#[test]
fn corrupted_acknowledged_entry_is_kept_faulty_not_acknowledged_and_repaired() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.propose(1, b"a");
    c.propose(1, b"b");
    c.deliver_all();
    c.heartbeat();
    assert_eq!(c.node(3).commit(), 3);
    corrupt_body(&mut c, 3, 2);
    let report = c.restart(3);
    assert_eq!(report.faulty, vec![2]);
    // Identity kept: same length, same terms, so it votes exactly as before.
    assert_eq!(c.log_ids(3), vec![(1, 1), (2, 1), (3, 1)]);
    assert!(c.node(3).log().is_faulty(2));
    // The leader's next append: node 3 acknowledges only through index 1 and asks for repair.
    c.net.clear();
    let now = c.now;
    c.node_mut(1).tick(now + Duration::from_millis(60));
    c.drain(1);
    let to3: Vec<Message> = c.net.drain(..).filter(|m| m.to == 3).collect();
    for m in to3 {
        c.deliver(m);
    }
    let at = c.net.iter().position(|m| m.from == 3).unwrap();
    let ack = c.net.remove(at).unwrap();
    assert_eq!(ack.body, Body::AppendResp { success: true, index: 1, faulty: true, rejected: 0 });
    let now = c.now;
    c.node_mut(1).step(now, ack);
    assert_eq!(c.node(1).matched(3), Some(1), "the leader no longer counts node 3 for index 2");
    c.drain(1);
    c.deliver_all();
    assert!(!c.node(3).log().is_faulty(2), "repaired from the leader");
    assert_eq!(c.node(3).log().entry(2).unwrap().data, b"a");
    assert_eq!(c.node(1).matched(3), Some(3));
    let report = c.restart(3);
    assert!(report.faulty.is_empty(), "the repair is durable");
}

/// Node 1 leads term 1 and commits index 2 ("x") with the nodes not in `cut`; then it restarts
/// with entry 2 corrupt, so its log is (1, 1), (2, 1 faulty).
fn leader_to_be_with_a_faulty_entry(cut: &[NodeId]) -> Cluster {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.cut = cut.iter().copied().collect();
    c.propose(1, b"x");
    c.deliver_all();
    c.heartbeat();
    c.cut.clear();
    c.net.clear();
    corrupt_body(&mut c, 1, 2);
    let report = c.restart(1);
    assert_eq!(report.faulty, vec![2]);
    assert_eq!(c.log_ids(1), vec![(1, 1), (2, 1)]);
    c
}

#[test]
fn a_node_with_a_faulty_entry_may_campaign_and_its_leader_repairs_it_from_a_follower() {
    let mut c = leader_to_be_with_a_faulty_entry(&[]);
    assert_eq!(c.node(2).commit(), 2, "index 2 was committed");
    // Its log is as up to date as any: it may win.
    c.elect(1);
    assert_eq!(c.node(1).counters.faulty_repaired, 1);
    assert!(!c.node(1).log().is_faulty(2), "repaired from a follower's copy");
    assert_eq!(c.node(1).log().entry(2).unwrap().data, b"x");
    // Its no-op commits and everything is applied, in order, intact.
    c.heartbeat();
    assert_eq!(c.node(1).commit(), 3);
    let applied: Vec<Vec<u8>> = c.members[&1].applied.iter().map(|e| e.data.clone()).collect();
    assert_eq!(applied, vec![b"".to_vec(), b"x".to_vec(), b"".to_vec()]);
    let report = c.restart(1);
    assert!(report.faulty.is_empty(), "the repair is durable");
}

#[test]
fn a_leader_repairs_a_faulty_entry_its_followers_compacted_from_their_snapshot() {
    let mut c = leader_to_be_with_a_faulty_entry(&[]);
    let snap = c.compact(2);
    c.compact(3);
    assert_eq!(snap.index, 2);
    c.elect(1);
    assert_eq!(c.node(1).counters.faulty_repaired, 1);
    assert!(c.node(1).log().faulty().next().is_none());
    assert_eq!(c.node(1).log().offset(), 2, "the snapshot stands for the faulty entry");
    c.heartbeat();
    assert_eq!(c.node(1).commit(), 3);
    let applied: Vec<Vec<u8>> = c.members[&1].applied.iter().map(|e| e.data.clone()).collect();
    assert_eq!(applied, vec![b"".to_vec(), b"x".to_vec(), b"".to_vec()]);
    let report = c.restart(1);
    assert!(report.faulty.is_empty(), "the snapshot is durable");
}

#[test]
fn a_leader_discards_a_faulty_entry_only_when_a_majority_positively_lacks_it() {
    // Index 2 reached no one but node 1: never committed.
    let mut c = leader_to_be_with_a_faulty_entry(&[2, 3]);
    c.fire(1);
    assert_eq!(c.node(1).counters.faulty_discarded, 1);
    assert_eq!(c.log_ids(1), vec![(1, 1)], "the entry and its suffix (the no-op) are gone");
    assert_ne!(c.node(1).role(), Role::Leader, "it steps down rather than reuse its indexes");
    assert!(c.members[&1].applied.iter().all(|e| e.index < 2), "nothing faulty applied");
    // The cluster goes on, and every log agrees.
    c.run_for(Duration::from_secs(2));
    let leader = c.leader().expect("a leader is elected");
    c.propose(leader, b"after");
    c.deliver_all();
    c.heartbeat();
    assert_eq!(c.log_ids(1), c.log_ids(2));
    assert_eq!(c.log_ids(1), c.log_ids(3));
    assert!(c.node(1).log().faulty().next().is_none());
}

#[test]
fn a_leader_never_discards_while_an_unreachable_peer_may_hold_the_entry_nor_commits_past_it() {
    // Index 2 was committed by nodes 1 and 3; node 2 never got it.
    let mut c = leader_to_be_with_a_faulty_entry(&[2]);
    assert_eq!(c.node(3).log().term(2), Some(1));
    // Node 3 is unreachable: node 2 says it lacks the entry, node 3 says nothing. One
    // answer is not a majority, and silence is not "lacks".
    c.cut.insert(3);
    c.elect(1);
    c.run_for(Duration::from_secs(1));
    assert_eq!(c.node(1).role(), Role::Leader, "node 2 keeps it in its quorum");
    assert!(c.node(1).log().is_faulty(2), "kept: node 3 may hold it (it does)");
    assert_eq!(c.node(1).counters.faulty_discarded, 0);
    assert!(c.node(1).commit() < 2, "nothing committed past the faulty entry");
    assert_eq!(c.node(2).log().last_index(), 1, "nothing sent past it");
    assert!(c.members[&1].applied.iter().all(|e| e.index < 2), "nothing faulty applied");
    // Node 3 comes back: its copy repairs the leader's, and the commit moves on.
    c.cut.clear();
    c.run_for(Duration::from_secs(1));
    assert_eq!(c.node(1).counters.faulty_repaired, 1);
    assert_eq!(c.node(1).log().entry(2).unwrap().data, b"x");
    assert_eq!(c.node(1).commit(), c.node(1).log().last_index());
    assert_eq!(c.members[&2].applied.get(1).map(|e| e.data.clone()), Some(b"x".to_vec()));
}

#[test]
fn a_peer_answers_lacks_only_when_certain() {
    let mut c = follower_with_log(1, &[(1, 1), (2, 1)]);
    let ask = |c: &mut Cluster, index, term| {
        c.net.clear();
        c.deliver(msg(2, 1, 3, Body::RepairReq { index, term }));
        match c.net.pop_front().map(|m| m.body) {
            Some(Body::RepairResp { answer, .. }) => answer,
            other => panic!("no answer: {other:?}"),
        }
    };
    assert_eq!(ask(&mut c, 2, 1), RepairAnswer::Have(entry(2, 1)));
    assert_eq!(ask(&mut c, 2, 2), RepairAnswer::Lacks, "another term there");
    assert_eq!(ask(&mut c, 5, 1), RepairAnswer::Lacks, "past its end");
    assert_eq!(ask(&mut c, 0, 0), RepairAnswer::Unknown);
    // Its own copy corrupt: it cannot say.
    corrupt_body(&mut c, 1, 2);
    c.restart(1);
    assert_eq!(ask(&mut c, 2, 1), RepairAnswer::Unknown);
    // A node that lost acknowledged entries cannot promise it lacks anything.
    let m = c.members.get_mut(&1).unwrap();
    m.disk.flip_bit("raft/wal", 8 * 10).unwrap(); // inside the first record's header
    let report = c.restart(1);
    assert!(report.lost_suffix);
    assert_eq!(ask(&mut c, 5, 1), RepairAnswer::Unknown);
}

#[test]
fn corrupted_header_loses_the_suffix_and_fences_votes_until_caught_up() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.propose(1, b"a");
    c.deliver_all();
    c.heartbeat();
    let m = c.members.get_mut(&3).unwrap();
    m.disk.flip_bit("raft/wal", 8 * 30).unwrap(); // inside the second record's header
    let report = c.restart(3);
    assert!(report.lost_suffix);
    assert_eq!(c.log_ids(3).len(), 1);
    assert_eq!(c.node(3).hard_state().fence & LOST_SUFFIX, LOST_SUFFIX);
    c.net.clear();
    c.now = c.now + Duration::from_secs(10);
    c.deliver(msg(2, 3, 5, Body::Vote { last_index: 9, last_term: 9, transfer: false }));
    assert!(c.net.iter().all(|m| m.body != Body::VoteResp { granted: true }), "fenced node voted");
    c.net.clear();
    // Catching up from the leader lifts the fence (new leader in term 5 is node 2).
    c.run_for(Duration::from_secs(3));
    let leader = c.leader().expect("nodes 1 and 2 elect a leader");
    assert_ne!(leader, 3, "a fenced node must not lead");
    assert_eq!(c.node(3).log().last_index(), c.node(leader).log().last_index());
    assert!(!c.node(3).is_fenced());
}

/// Seed 100732: node 1 leads term 1 but is cut off before anyone hears from it; nodes 2 and 3
/// go on in term 2 and commit (2, 2) at index 2. Node 3 then loses its disk and comes back
/// fenced. Node 1, still leading term 1 in its own eyes, proposes (2, 1) and reaches node 3
/// first.
fn deposed_leader_meets_a_replaced_disk(replacement_term: u64) -> Cluster {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.cut.insert(1);
    // Only node 2's timer fires: node 1 is never ticked, so it never notices it lost its
    // quorum (as if paused).
    for _ in 0..10 {
        if c.node(2).role() == Role::Leader {
            break;
        }
        c.fire(2);
    }
    assert_eq!(c.node(2).role(), Role::Leader);
    c.propose(2, b"after");
    c.deliver_all();
    assert_eq!(c.node(2).log().term(2), Some(2));
    assert!(c.node(2).commit() >= 2, "committed with 2 and 3");
    // Node 3's disk is replaced.
    let mut disk = MemDisk::new(99, FaultConfig::default());
    Storage::init_replacement(&mut disk, DIR, replacement_term).unwrap();
    let (storage, rec) = Storage::open(&mut disk, DIR, StorageMutations::default()).unwrap();
    assert_eq!(rec.hard_state.fence, LOST_META);
    let node = c.make_node(3, rec);
    c.members.insert(3, Member { node, disk, storage, applied: Machine::default() });
    // Node 1 comes back, node 2 is out of reach: only 1 and 3 talk.
    c.cut = BTreeSet::from([2]);
    assert_eq!(c.node(1).role(), Role::Leader, "node 1 never heard of term 2");
    c.propose(1, b"stale");
    c.deliver_all();
    c
}

#[test]
fn a_replaced_disk_starts_at_the_clusters_term_so_a_deposed_leader_cannot_count_it() {
    let c = deposed_leader_meets_a_replaced_disk(2);
    assert_ne!(c.node(1).role(), Role::Leader, "node 3 told node 1 of term 2");
    assert_eq!(c.node(1).commit(), 1);
    assert_eq!(c.node(3).log().term(2), None, "node 3 took nothing from term 1");
    // The hazard the term guards against: at term 0 the blank node helps the deposed leader
    // commit another entry at an index term 2 committed.
    let c = deposed_leader_meets_a_replaced_disk(0);
    assert_eq!(c.node(1).commit(), 2);
    assert_eq!(c.node(1).log().term(2), Some(1));
    assert_eq!(c.node(2).log().term(2), Some(2));
}

#[test]
fn metadata_survives_one_bad_copy_and_fences_when_both_are_bad() {
    let mut c = Cluster::new(3);
    c.deliver(msg(2, 1, 4, Body::Vote { last_index: 0, last_term: 0, transfer: false }));
    let m = c.members.get_mut(&1).unwrap();
    m.disk.flip_bit("raft/meta.a", 70).unwrap();
    let report = c.restart(1);
    assert_eq!(report.bad_meta_copies, 1);
    assert_eq!((c.node(1).term(), c.node(1).vote()), (4, Some(2)));
    let m = c.members.get_mut(&1).unwrap();
    m.disk.flip_bit("raft/meta.a", 70).unwrap();
    m.disk.flip_bit("raft/meta.b", 75).unwrap();
    let report = c.restart(1);
    assert_eq!(report.bad_meta_copies, 2);
    assert_eq!(c.node(1).hard_state().fence & LOST_META, LOST_META);
    c.net.clear();
    c.deliver(msg(3, 1, 9, Body::Vote { last_index: 0, last_term: 0, transfer: false }));
    assert!(c.net.iter().all(|m| m.body != Body::VoteResp { granted: true }));
}

#[test]
fn single_node_cluster_commits_its_own_entries() {
    let mut c = Cluster::new(1);
    c.elect(1);
    c.propose(1, b"x");
    assert_eq!(c.node(1).commit(), 2);
    assert_eq!(c.members[&1].applied.len(), 2);
}

// ---- the random schedule behind the property tests ----

fn assert_log_matching(c: &Cluster) {
    // Figure 3, Log Matching: same (index, term) implies identical prefixes.
    let logs: Vec<Vec<(u64, u64)>> = c.ids.iter().map(|&id| c.log_ids(id)).collect();
    for a in &logs {
        for b in &logs {
            for i in 0..a.len().min(b.len()) {
                if a[i] == b[i] {
                    assert_eq!(a[..=i], b[..=i], "log matching broken at index {}", i + 1);
                }
            }
        }
    }
}

fn assert_applied_prefixes(c: &Cluster) {
    // Figure 3, State Machine Safety: no two nodes apply different entries at one index.
    let mut canon: BTreeMap<u64, Entry> = BTreeMap::new();
    for m in c.members.values() {
        for e in m.applied.iter() {
            let prev = canon.entry(e.index).or_insert_with(|| e.clone());
            assert_eq!(prev, e, "two different entries applied at index {}", e.index);
        }
    }
}

/// Runs a random schedule (ticks, proposals, lost, duplicated and reordered messages, power
/// loss) and checks Leader Append-Only and Leader Completeness as it goes.
fn chaos(seed: u64, n: u64, mutations: Mutations) -> Cluster {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut c = Cluster::with(n, mutations);
    let mut leader_logs: BTreeMap<(NodeId, u64), Vec<Entry>> = BTreeMap::new();
    let mut committed: BTreeMap<u64, Entry> = BTreeMap::new();
    for step in 0..2000 {
        match rng.random_range(0..100) {
            0..=59 => {
                for _ in 0..3 {
                    if c.net.is_empty() {
                        break;
                    }
                    let i = rng.random_range(0..c.net.len().min(4));
                    let msg = c.net.remove(i).unwrap();
                    if rng.random_bool(0.05) {
                        c.net.push_back(msg.clone());
                    }
                    if !rng.random_bool(0.1) {
                        c.deliver(msg);
                    }
                }
            }
            60..=74 => {
                c.now = c.now + Duration::from_millis(rng.random_range(1..40));
                let id = c.ids[rng.random_range(0..c.ids.len())];
                let now = c.now;
                if c.node(id).poll_timeout().is_some_and(|t| t <= now) {
                    c.node_mut(id).tick(now);
                    c.drain(id);
                }
            }
            75..=84 => {
                let now = c.now;
                for id in c.ids.clone() {
                    if c.node(id).role() == Role::Leader {
                        let _ = c.node_mut(id).propose(now, format!("{seed}-{step}").into_bytes());
                        c.drain(id);
                    }
                }
            }
            85 => {
                let id = c.ids[rng.random_range(0..c.ids.len())];
                c.restart(id);
            }
            _ => {
                c.now = c.now + Duration::from_millis(rng.random_range(1..10));
            }
        }
        // Leader Append-Only and Leader Completeness, checked every few steps (cheap enough).
        if step % 10 != 0 {
            continue;
        }
        for &id in &c.ids {
            let node = c.node(id);
            for i in 1..=node.commit() {
                if let Some(e) = node.log().entry(i) {
                    if !node.log().is_faulty(i) {
                        let prev = committed.entry(i).or_insert_with(|| e.clone());
                        assert_eq!(prev, e, "seed {seed}: committed entry {i} changed");
                    }
                }
            }
        }
        for &id in &c.ids {
            let node = c.node(id);
            if node.role() != Role::Leader {
                continue;
            }
            let log = node.log().entries().to_vec();
            let key = (id, node.term());
            if let Some(before) = leader_logs.get(&key) {
                assert!(
                    log.len() >= before.len() && log[..before.len()] == before[..],
                    "seed {seed}: leader {id} rewrote its log in term {}",
                    key.1
                );
            } else {
                for (i, e) in &committed {
                    assert_eq!(
                        node.log().entry(*i),
                        Some(e),
                        "seed {seed}: leader {id} of term {} lacks committed entry {i}",
                        key.1
                    );
                }
            }
            leader_logs.insert(key, log);
        }
    }
    assert_log_matching(&c);
    c
}

#[test]
fn repairing_one_faulty_entry_keeps_the_next_faulty_across_restarts() {
    // Found by the simulator (seed 4662): rewriting the log after a repair wrote a second,
    // still faulty entry back as ordinary (empty) data, which the next life applied.
    let mut c = Cluster::new(3);
    c.elect(1);
    c.propose(1, b"a");
    c.propose(1, b"b");
    c.propose(1, b"c");
    c.deliver_all();
    c.heartbeat();
    corrupt_body(&mut c, 3, 2);
    corrupt_body(&mut c, 3, 3);
    assert_eq!(c.restart(3).faulty, vec![2, 3]);
    let good = c.node(1).log().entry(2).unwrap().clone();
    let body = Body::Append {
        prev_index: 1,
        prev_term: 1,
        entries: vec![good],
        commit: 4,
        leader_last: 4,
    };
    c.deliver(msg(1, 3, 1, body));
    assert!(!c.node(3).log().is_faulty(2) && c.node(3).log().is_faulty(3));
    assert_eq!(c.members[&3].applied.len(), 2, "applies up to the next faulty entry only");
    assert_eq!(c.restart(3).faulty, vec![3], "entry 3 must stay faulty on disk");
    assert_eq!(c.node(3).log().entry(2).unwrap().data, b"a");
}

// ---- §7 log compaction and InstallSnapshot ----

/// WAL records' indexes, in file order.
fn wal_indexes(c: &mut Cluster, id: NodeId) -> Vec<u64> {
    let bytes = c.members.get_mut(&id).unwrap().disk.read_all("raft/wal").unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    while let Decoded::Entry { entry, len, .. } = decode_entry(&bytes[pos..]) {
        out.push(entry.index);
        pos += len;
    }
    out
}

fn commit_some(c: &mut Cluster, leader: NodeId, n: usize) {
    for k in 0..n {
        c.propose(leader, format!("v{k}").as_bytes());
        c.deliver_all();
    }
    c.heartbeat();
}

#[test]
fn compaction_drops_the_log_in_front_of_a_durable_snapshot_and_restarts_from_it() {
    let mut c = Cluster::new(3);
    c.elect(1);
    commit_some(&mut c, 1, 5);
    assert_eq!(c.members[&2].applied.len(), 6);
    let before = c.members[&2].applied.clone();
    let snap = c.compact(2);
    assert_eq!((snap.index, snap.term), (6, 1));
    assert_eq!(c.node(2).log().offset(), 6);
    assert!(c.node(2).log().entries().is_empty());
    assert!(wal_indexes(&mut c, 2).is_empty(), "the WAL no longer holds compacted entries");
    // Compaction never reaches past what was applied, nor goes backwards.
    let early = Snapshot { index: 7, term: 1, voters: vec![1, 2, 3], data: Vec::new() };
    assert!(matches!(c.node_mut(2).compact(early), Err(CompactError::OutOfRange { .. })));
    commit_some(&mut c, 1, 2);
    assert_eq!(wal_indexes(&mut c, 2), vec![7, 8]);
    let report = c.restart(2);
    assert_eq!(report.covered_entries, 0);
    assert_eq!(c.node(2).log().offset(), 6);
    assert_eq!(c.node(2).commit(), 6, "a snapshot is committed by definition");
    assert_eq!(c.log_ids(2), vec![(7, 1), (8, 1)]);
    assert_eq!(c.members[&2].applied[..6], before[..], "state restored from the snapshot");
    c.heartbeat();
    assert_eq!(c.members[&2].applied.len(), 8, "and the log after it applied again");
    assert_applied_prefixes(&c);
}

#[test]
fn lagging_follower_behind_the_leaders_log_gets_the_snapshot_then_the_log() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.cut.insert(3);
    commit_some(&mut c, 1, 8);
    c.compact(1);
    commit_some(&mut c, 1, 2);
    assert_eq!(c.node(1).log().offset(), 9);
    assert_eq!(c.node(3).log().last_index(), 1);
    let sent = c.node(1).counters.snapshots_sent;
    c.cut.clear();
    c.heartbeat();
    c.heartbeat();
    assert_eq!(c.node(1).counters.snapshots_sent, sent + 1, "sent once, not per append");
    assert_eq!(c.node(3).counters.snapshots_installed, 1);
    assert_eq!(c.node(3).log().offset(), 9);
    assert_eq!(c.node(3).log().last_index(), 11);
    assert_eq!(c.node(1).matched(3), Some(11));
    assert_eq!(c.members[&3].applied.0, c.members[&1].applied.0, "same state machine");
    // Durable: a restart comes back from the installed snapshot and the entries after it.
    c.restart(3);
    assert_eq!(c.node(3).log().offset(), 9);
    assert_eq!(c.log_ids(3), vec![(10, 1), (11, 1)]);
    assert_eq!(c.members[&3].applied.len(), 9);
    assert_applied_prefixes(&c);
}

#[test]
fn install_snapshot_acknowledgement_leaves_only_after_the_snapshot_is_durable() {
    let mut c = follower_with_log(2, &[(1, 1), (2, 1)]);
    let snapshot = Snapshot { index: 5, term: 2, voters: vec![1, 2, 3], data: vec![9] };
    let now = c.now;
    c.node_mut(1).step(now, msg(2, 1, 2, Body::Snapshot { snapshot: snapshot.clone() }));
    let rd = c.node_mut(1).ready();
    assert_eq!(rd.snapshot, Some(snapshot.clone()));
    assert!(!rd.snapshot_keeps_log);
    assert!(rd.must_persist());
    assert!(rd.messages.is_empty(), "acknowledged before the snapshot was written");
    // The same snapshot again, before the first is durable: it is "nothing new", and the
    // answer (through the apply point, now the snapshot's index) waits for durability too.
    c.node_mut(1).step(now, msg(2, 1, 2, Body::Snapshot { snapshot: snapshot.clone() }));
    let again = c.node_mut(1).ready();
    assert!(again.snapshot.is_none());
    assert!(again.messages.is_empty(), "acknowledged a snapshot that is not yet durable");
    c.node_mut(1).on_persisted(now, again.number);
    let rd = c.node_mut(1).ready();
    assert_eq!(
        rd.messages.iter().map(|m| m.body.clone()).collect::<Vec<_>>(),
        vec![Body::AppendResp { success: true, index: 5, faulty: false, rejected: 0 }; 2]
    );
}

/// A snapshot of the test machine that applied `log`.
fn snapshot_of(log: &[(u64, u64)]) -> Snapshot {
    let m = Machine(log.iter().map(|&(i, t)| entry(i, t)).collect());
    let &(index, term) = log.last().unwrap();
    Snapshot { index, term, voters: vec![1, 2, 3], data: m.snapshot() }
}

#[test]
fn install_snapshot_keeps_a_matching_suffix_and_discards_a_conflicting_log() {
    // Rule 6: the follower holds the snapshot's last entry: the entries after it stay.
    let mut c = follower_with_log(3, &[(1, 1), (2, 1), (3, 2), (4, 3)]);
    c.deliver(msg(2, 1, 3, Body::Snapshot { snapshot: snapshot_of(&[(1, 1), (2, 1)]) }));
    assert_eq!(c.node(1).log().offset(), 2);
    assert_eq!(c.log_ids(1), vec![(3, 2), (4, 3)]);
    assert_eq!(wal_indexes(&mut c, 1), vec![3, 4]);
    assert_eq!(c.node(1).commit(), 2);
    // Rule 7: another entry at the snapshot's index: the whole log goes, on disk too.
    let mut c = follower_with_log(3, &[(1, 1), (2, 1), (3, 2), (4, 2)]);
    c.deliver(msg(2, 1, 3, Body::Snapshot { snapshot: snapshot_of(&[(1, 1), (2, 1), (3, 3)]) }));
    assert_eq!(c.node(1).log().last_index(), 3);
    assert_eq!(c.node(1).log().last_term(), 3);
    assert!(c.log_ids(1).is_empty());
    assert!(wal_indexes(&mut c, 1).is_empty());
    c.restart(1);
    assert_eq!((c.node(1).log().offset(), c.node(1).log().offset_term()), (3, 3));
    assert!(c.log_ids(1).is_empty(), "the discarded suffix does not come back");
    // A snapshot at or below the commit point changes nothing.
    let mut c = Cluster::new(3);
    c.elect(1);
    commit_some(&mut c, 1, 3);
    let stale = snapshot_of(&[(1, 1), (2, 1)]);
    c.deliver(msg(1, 2, 1, Body::Snapshot { snapshot: stale }));
    assert_eq!(c.node(2).log().offset(), 0);
    assert_eq!(c.node(2).log().last_index(), 4);
}

#[test]
fn crash_between_snapshot_and_wal_rewrite_recovers_the_same_log() {
    let mut c = Cluster::new(3);
    c.elect(1);
    commit_some(&mut c, 1, 4);
    commit_some(&mut c, 1, 0);
    let wal_before = c.members.get_mut(&2).unwrap().disk.read_all("raft/wal").unwrap();
    c.compact(2);
    // As if the power went after the snapshot's rename and before the WAL's.
    let m = c.members.get_mut(&2).unwrap();
    m.disk.replace_atomically("raft/wal", &wal_before).unwrap();
    let report = c.restart(2);
    assert_eq!(report.covered_entries, 5);
    assert_eq!(c.node(2).log().offset(), 5);
    assert!(c.log_ids(2).is_empty());
    assert_eq!(wal_indexes(&mut c, 2), Vec::<u64>::new(), "recovery rewrote the WAL");
    assert_eq!(c.members[&2].applied.len(), 5);
}

#[test]
fn corrupt_snapshot_fences_the_node_until_the_leader_restores_it() {
    let mut c = Cluster::new(3);
    c.elect(1);
    commit_some(&mut c, 1, 4);
    c.compact(1);
    c.compact(3);
    commit_some(&mut c, 1, 1);
    c.members.get_mut(&3).unwrap().disk.flip_bit("raft/snap", 100).unwrap();
    let report = c.restart(3);
    assert!(report.bad_snapshot);
    assert!(c.node(3).is_fenced(), "it lost entries it acknowledged");
    assert_eq!(c.node(3).log().last_index(), 0);
    // A fenced node neither campaigns nor votes; the leader restores it by snapshot.
    c.heartbeat();
    c.heartbeat();
    assert_eq!(c.node(3).log().offset(), 5);
    assert_eq!(c.node(3).log().last_index(), 6);
    assert_eq!(c.members[&3].applied.0, c.members[&1].applied.0);
    // Its lost acknowledgements were made in this term: only a leader of a later term proves
    // it holds them (see `fence_term`), so the fence stays until then.
    assert!(c.node(3).is_fenced());
    let now = c.now;
    c.node_mut(1).transfer_leadership(now, 2);
    c.drain(1);
    c.deliver_all();
    assert_eq!(c.leader(), Some(2));
    c.heartbeat();
    assert!(!c.node(3).is_fenced(), "caught up under a later leader");
}

#[test]
fn snapshot_past_the_apply_point_repairs_a_faulty_follower_even_below_its_commit() {
    let mut c = Cluster::new(3);
    c.elect(1);
    commit_some(&mut c, 1, 3);
    assert_eq!(c.node(3).commit(), 4);
    corrupt_body(&mut c, 3, 2);
    // Cut off while it restarts, so that the leader does not repair the entry by append.
    c.cut.insert(3);
    c.restart(3);
    assert!(c.node(3).log().is_faulty(2));
    commit_some(&mut c, 1, 2);
    c.compact(1);
    c.cut.clear();
    // Make node 3's commit run ahead of its apply point before the snapshot arrives.
    let now = c.now;
    let body =
        Body::Append { prev_index: 4, prev_term: 1, entries: vec![], commit: 4, leader_last: 6 };
    c.node_mut(3).step(now, msg(1, 3, 1, body));
    c.drain(3);
    c.net.clear();
    assert!(c.node(3).log().applied() < c.node(3).commit());
    c.heartbeat();
    c.heartbeat();
    assert_eq!(c.node(3).log().offset(), 6, "installed although below its commit point");
    assert!(c.node(3).log().first_faulty().is_none());
    assert_eq!(c.members[&3].applied.0, c.members[&1].applied.0);
}

// ---- membership changes (Raft thesis §4.1, single-server) ----

fn change(c: &mut Cluster, leader: NodeId, ch: ConfChange) -> Result<(u64, u64), ProposeError> {
    let now = c.now;
    let r = c.node_mut(leader).propose_change(now, ch);
    c.drain(leader);
    c.deliver_all();
    c.heartbeat();
    r
}

#[test]
fn added_voter_catches_up_and_counts_toward_the_quorum() {
    let mut c = Cluster::with_spares(3, 1);
    c.elect(1);
    commit_some(&mut c, 1, 3);
    assert!(!c.node(4).is_voter(4));
    let (index, _) = change(&mut c, 1, ConfChange::AddVoter(4)).unwrap();
    assert_eq!(c.node(1).voters(), &[1, 2, 3, 4]);
    assert!(c.node(1).commit() >= index);
    assert_eq!(c.node(4).voters(), &[1, 2, 3, 4], "it learned its membership from the log");
    assert_eq!(c.members[&4].applied.0, c.members[&1].applied.0, "caught up");
    // Four voters: a quorum is three. With two of them cut off nothing commits.
    c.cut.extend([3, 4]);
    let (i, _) = c.propose(1, b"x");
    c.deliver_all();
    c.heartbeat();
    assert!(c.node(1).commit() < i, "committed with 2 of 4");
    c.cut.remove(&4);
    c.heartbeat();
    assert!(c.node(1).commit() >= i, "node 4 counts");
}

#[test]
fn one_membership_change_at_a_time() {
    let mut c = Cluster::with_spares(3, 2);
    c.elect(1);
    c.cut.extend([2, 3]);
    let now = c.now;
    c.node_mut(1).propose_change(now, ConfChange::AddVoter(4)).unwrap();
    assert_eq!(
        c.node_mut(1).propose_change(now, ConfChange::AddVoter(5)),
        Err(ProposeError::ChangePending)
    );
    c.cut.clear();
    c.drain(1);
    c.heartbeat();
    c.heartbeat();
    assert!(change(&mut c, 1, ConfChange::AddVoter(5)).is_ok(), "once the first is committed");
    assert_eq!(c.node(1).voters(), &[1, 2, 3, 4, 5]);
}

#[test]
fn a_new_leader_changes_membership_only_after_committing_in_its_term() {
    let mut c = Cluster::with_spares(3, 1);
    let at = c.node(1).poll_timeout().unwrap();
    c.now = c.now.max(at);
    let now = c.now;
    c.node_mut(1).tick(now);
    c.drain(1);
    while c.node(1).role() != Role::Leader {
        let m = c.net.pop_front().expect("wins");
        c.deliver(m);
    }
    c.net.clear();
    assert_eq!(
        c.node_mut(1).propose_change(now, ConfChange::AddVoter(4)),
        Err(ProposeError::NotReady)
    );
}

#[test]
fn the_last_voter_cannot_be_removed_and_no_op_changes_are_refused() {
    let mut c = Cluster::new(1);
    c.elect(1);
    commit_some(&mut c, 1, 1);
    assert_eq!(change(&mut c, 1, ConfChange::RemoveVoter(1)), Err(ProposeError::LastVoter));
    assert_eq!(change(&mut c, 1, ConfChange::RemoveVoter(7)), Err(ProposeError::NoChange));
    assert_eq!(change(&mut c, 1, ConfChange::AddVoter(1)), Err(ProposeError::NoChange));
    assert_eq!(c.node(1).voters(), &[1]);
}

#[test]
fn removed_leader_steps_down_after_committing_its_removal_and_never_campaigns() {
    let mut c = Cluster::new(3);
    c.elect(1);
    commit_some(&mut c, 1, 2);
    let now = c.now;
    let (index, _) = c.node_mut(1).propose_change(now, ConfChange::RemoveVoter(1)).unwrap();
    assert_eq!(c.node(1).role(), Role::Leader, "leads until the removal commits");
    assert_eq!(c.node(1).voters(), &[2, 3]);
    c.drain(1);
    c.deliver_all();
    assert_eq!(c.node(1).role(), Role::Follower, "stepped down once it committed");
    assert!(c.node(1).commit() >= index);
    c.deliver_all();
    assert!(c.node(2).commit() >= index, "told the others of the commit");
    c.run_for(Duration::from_secs(2));
    let l = c.leader().expect("the two remaining elect a leader");
    assert_ne!(l, 1);
    assert!(!c.node(1).is_voter(1));
    let (i, _) = c.propose(l, b"after");
    c.deliver_all();
    c.heartbeat();
    assert!(c.node(l).commit() >= i, "two voters commit with both");
    assert_eq!(c.leaders.keys().filter(|&&t| c.leaders[&t].contains(&1)).count(), 1);
}

#[test]
fn a_configuration_takes_effect_in_the_log_and_reverts_when_truncated() {
    let config = Entry { index: 2, term: 1, kind: EntryKind::Config, data: encode_voters(&[1, 2]) };
    let mut c = Cluster::new(3);
    let entries = vec![entry(1, 1), config];
    let body = Body::Append { prev_index: 0, prev_term: 0, entries, commit: 0, leader_last: 2 };
    c.deliver(msg(2, 1, 1, body));
    assert_eq!(c.node(1).voters(), &[1, 2], "in effect uncommitted, as soon as appended");
    c.restart(1);
    assert_eq!(c.node(1).voters(), &[1, 2], "durable with the log");
    // A leader of a later term replaces the uncommitted entry.
    let body = Body::Append {
        prev_index: 1,
        prev_term: 1,
        entries: vec![entry(2, 2)],
        commit: 0,
        leader_last: 2,
    };
    c.deliver(msg(3, 1, 2, body));
    assert_eq!(c.node(1).voters(), &[1, 2, 3], "the truncated configuration is gone");
}

#[test]
fn snapshots_carry_the_configuration() {
    let mut c = Cluster::with_spares(3, 1);
    c.elect(1);
    change(&mut c, 1, ConfChange::RemoveVoter(3)).unwrap();
    commit_some(&mut c, 1, 2);
    let snap = c.compact(2);
    assert_eq!(snap.voters, vec![1, 2]);
    c.restart(2);
    assert_eq!(c.node(2).voters(), &[1, 2]);
    // A new voter gets the configuration with the snapshot.
    c.compact(1);
    change(&mut c, 1, ConfChange::AddVoter(4)).unwrap();
    c.heartbeat();
    assert_eq!(c.node(4).log().offset(), c.node(1).log().offset());
    assert_eq!(c.node(4).voters(), &[1, 2, 4]);
    assert_eq!(c.members[&4].applied.0, c.members[&1].applied.0);
}

#[test]
fn a_removed_leader_that_lost_leadership_before_the_commit_campaigns_to_finish_it() {
    // Two voters; the leader proposes its own removal, but only it holds the entry when it
    // loses leadership. The other cannot be elected without its vote (its log is longer), so
    // it must campaign, not counting itself, until the entry is committed (thesis §4.2.2).
    let mut c = Cluster::new(2);
    c.elect(1);
    commit_some(&mut c, 1, 1);
    c.cut.insert(2);
    let now = c.now;
    let (index, _) = c.node_mut(1).propose_change(now, ConfChange::RemoveVoter(1)).unwrap();
    c.drain(1);
    c.run_for(Duration::from_secs(1));
    assert_ne!(c.node(1).role(), Role::Leader, "check-quorum deposed it");
    c.cut.clear();
    c.run_for(Duration::from_secs(3));
    assert_eq!(c.leader(), Some(2), "the remaining voter leads in the end");
    assert_eq!(c.node(2).voters(), &[2]);
    assert!(c.node(2).commit() >= index);
    assert!(!c.node(1).is_voter(1));
}

#[test]
fn a_leader_ignores_vote_requests_of_a_later_term_within_its_lease() {
    // A removed voter never hears of its removal and keeps campaigning: it must not depose
    // the leader. A transfer the leader asked for is not ignored (see the transfer test).
    let mut c = Cluster::new(3);
    c.elect(1);
    let term = c.node(1).term();
    let body = Body::Vote { last_index: 99, last_term: term, transfer: false };
    c.deliver(msg(3, 1, term + 5, body));
    assert_eq!(c.node(1).role(), Role::Leader);
    assert_eq!(c.node(1).term(), term);
}

/// A candidate whose own vote is still waiting for its sync keeps a timer in the future: a
/// deadline left in the past makes `poll_timeout` due forever, and a driver that sleeps until
/// it would spin until the sync lands.
#[test]
fn a_candidate_waiting_for_its_vote_sync_keeps_its_timer_in_the_future() {
    let mut disk = MemDisk::new(1, FaultConfig::default());
    let (_storage, rec) = Storage::open(&mut disk, DIR, StorageMutations::default()).unwrap();
    let cfg = Config { pre_vote: false, ..Config::new(1, vec![1, 2, 3]) };
    let mut now = Instant(1_000_000_000);
    let mut node = RaftNode::new(cfg, rec, ChaCha8Rng::seed_from_u64(7), now);
    // Campaign without ever reporting the vote's sync: it stays a candidate, vote unsynced.
    now = node.poll_timeout().unwrap();
    node.tick(now);
    assert_eq!(node.role(), Role::Candidate, "node 1 should be campaigning");
    for _ in 0..5 {
        now = now.max(node.poll_timeout().unwrap());
        node.tick(now);
        assert!(node.poll_timeout().unwrap() > now, "the timer stays due: a driver would spin");
    }
}
