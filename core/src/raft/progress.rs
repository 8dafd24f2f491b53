//! What a leader knows about each follower's log (Figure 2, "volatile state on leaders"), and
//! how it sends to it: probing one append at a time until the logs are known to match, then
//! pipelining appends within an in-flight window (raft-rs' and etcd's flow control).

use crate::time::Instant;

/// How the leader is sending to one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendState {
    /// Where the follower's log matches ours is not known: one append at a time (each answer
    /// moves `next`), resent at each heartbeat while unanswered. A new leader starts here, and
    /// a rejection, a faulty entry or a stalled pipeline comes back here.
    Probe,
    /// The follower's log matched at the last acknowledgement: appends leave back to back
    /// without waiting for each answer (pipelining), `next` advancing optimistically, until
    /// `max_in_flight` entries are unacknowledged.
    Replicate,
    /// A snapshot went out and nothing has been heard since: nothing more until it is answered
    /// or the next heartbeat resends it.
    Snapshot,
}

#[derive(Clone, Debug)]
pub struct Progress {
    /// Highest index known replicated *and durable* on the follower.
    pub matched: u64,
    /// Next index to send.
    pub next: u64,
    /// When the follower last answered this leader: the check-quorum lease.
    pub last_heard: Instant,
    pub state: SendState,
    /// Probe: an append is out and unanswered, send no other before the next heartbeat.
    pub probe_sent: bool,
    /// `matched` at the last heartbeat: a pipeline that has not moved since is stalled (its
    /// last appends or their answers were lost, and no later append will draw a rejection).
    pub matched_at_heartbeat: u64,
}

impl Progress {
    pub fn new(last_index: u64, now: Instant) -> Self {
        Progress {
            matched: 0,
            next: last_index + 1,
            last_heard: now,
            state: SendState::Probe,
            probe_sent: false,
            matched_at_heartbeat: 0,
        }
    }

    /// Entries sent but not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.next.saturating_sub(self.matched + 1)
    }

    /// May an append (not a heartbeat) go out now?
    pub fn may_send(&self, window: u64) -> bool {
        match self.state {
            SendState::Probe => !self.probe_sent,
            SendState::Replicate => self.in_flight() < window,
            SendState::Snapshot => false,
        }
    }

    /// A successful append response through `index`: the follower's log matches ours through
    /// `index`, durably, so the leader may pipeline from there. Returns whether `matched`
    /// moved.
    pub fn on_ack(&mut self, index: u64) -> bool {
        let moved = index > self.matched;
        if moved {
            self.matched = index;
        }
        if self.state != SendState::Replicate && (moved || index + 1 >= self.next) {
            // (A stale acknowledgement below what we probe proves nothing about `next`.)
            self.state = SendState::Replicate;
            self.next = self.matched + 1;
            self.probe_sent = false;
        }
        self.next = self.next.max(index + 1);
        moved
    }

    /// The follower holds a corrupt entry at `index + 1`: it is durable and verified only
    /// through `index`, whatever it acknowledged before it lost the entry. Probe from there:
    /// every append still in flight would only draw the same answer. Returns false when this
    /// is such an answer (the probe for it is already out).
    pub fn on_faulty(&mut self, index: u64) -> bool {
        if self.state == SendState::Probe && self.matched == index && self.next == index + 1 {
            return false;
        }
        self.matched = index;
        self.next = index + 1;
        self.state = SendState::Probe;
        self.probe_sent = false;
        true
    }

    /// A rejection of the append whose `prev_index` was `rejected`, with a hint. Returns
    /// false (and changes nothing) for a stale rejection: one of an append sent before what
    /// we now know (pipelined appends behind a lost one are all rejected; only the first
    /// rejection should move `next`). Otherwise probe from `hint + 1`, never forward. A hint
    /// below `matched` means the follower lost entries it had acknowledged (its recovery
    /// found them corrupt, the lost-suffix fence); counting it lower is safe (the commit
    /// index never goes back) and lets it catch up.
    pub fn on_reject(&mut self, rejected: u64, hint: u64) -> bool {
        let stale = match self.state {
            SendState::Replicate => rejected < self.matched,
            SendState::Probe | SendState::Snapshot => rejected + 1 != self.next,
        };
        if stale {
            return false;
        }
        self.matched = self.matched.min(hint);
        self.next = (hint + 1).min(self.next).max(self.matched + 1);
        self.state = SendState::Probe;
        self.probe_sent = false;
        true
    }

    /// The heartbeat is due. Returns whether the pipeline stalled: entries in flight and no
    /// acknowledgement for a whole heartbeat interval, so the leader probes again from
    /// `matched + 1` (a lost tail draws no rejection). A probe may have been lost: it is sent
    /// again. So may a snapshot: probing at the snapshot's index finds out (a follower without
    /// it rejects, and the rejection sends it again).
    pub fn on_heartbeat(&mut self) -> bool {
        let stalled = self.state == SendState::Replicate
            && self.in_flight() > 0
            && self.matched == self.matched_at_heartbeat;
        self.matched_at_heartbeat = self.matched;
        if stalled {
            self.state = SendState::Probe;
            self.next = self.matched + 1;
        }
        if self.state == SendState::Snapshot {
            self.state = SendState::Probe;
        }
        self.probe_sent = false;
        stalled
    }

    /// A snapshot through `index` went out.
    pub fn on_snapshot_sent(&mut self, index: u64) {
        self.state = SendState::Snapshot;
        self.next = index + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicating(matched: u64, next: u64) -> Progress {
        let mut p = Progress::new(0, Instant(0));
        p.on_ack(matched);
        p.next = next;
        p
    }

    #[test]
    fn a_new_follower_is_probed_one_append_at_a_time() {
        let mut p = Progress::new(10, Instant(0));
        assert_eq!((p.state, p.next), (SendState::Probe, 11));
        assert!(p.may_send(8));
        p.probe_sent = true;
        assert!(!p.may_send(8), "a second probe before the answer");
        p.on_heartbeat();
        assert!(p.may_send(8), "the heartbeat resends a probe that may have been lost");
    }

    #[test]
    fn an_acknowledged_probe_switches_to_pipelining_within_the_window() {
        let mut p = Progress::new(10, Instant(0));
        assert!(p.on_reject(10, 4));
        assert_eq!(p.next, 5);
        p.probe_sent = true;
        assert!(p.on_ack(6));
        assert_eq!((p.state, p.matched, p.next), (SendState::Replicate, 6, 7));
        p.next = 15;
        assert!(p.may_send(9), "8 in flight, window 9");
        assert!(!p.may_send(8), "8 in flight, window 8");
    }

    #[test]
    fn only_the_first_rejection_of_a_pipeline_moves_next() {
        // Appends at prev 5, 6, 7, 8 in flight; the one at prev 5 was lost.
        let mut p = replicating(5, 10);
        assert!(p.on_reject(6, 5), "the first rejection is news");
        assert_eq!((p.state, p.next), (SendState::Probe, 6));
        assert!(!p.on_reject(7, 5), "later appends of the same pipeline");
        assert!(!p.on_reject(8, 5));
        assert_eq!(p.next, 6);
        // In the pipeline, a rejection of an append before what is acknowledged is stale.
        let mut p = replicating(9, 12);
        assert!(!p.on_reject(7, 7));
        assert_eq!((p.state, p.matched, p.next), (SendState::Replicate, 9, 12));
    }

    #[test]
    fn a_follower_that_lost_acknowledged_entries_is_counted_lower() {
        let mut p = replicating(9, 10);
        assert!(p.on_reject(9, 4));
        assert_eq!((p.state, p.matched, p.next), (SendState::Probe, 4, 5));
    }

    #[test]
    fn a_stale_acknowledgement_does_not_end_a_probe() {
        let mut p = replicating(5, 10);
        assert!(p.on_reject(9, 7));
        assert_eq!(p.next, 8);
        assert!(!p.on_ack(3));
        assert_eq!(p.state, SendState::Probe, "an old ack says nothing about index 8");
        assert!(p.on_ack(7));
        assert_eq!((p.state, p.next), (SendState::Replicate, 8));
    }

    #[test]
    fn a_stalled_pipeline_probes_again_from_matched() {
        let mut p = replicating(5, 10);
        assert!(!p.on_heartbeat(), "first heartbeat since matched moved");
        assert!(p.on_heartbeat(), "no acknowledgement for a whole interval");
        assert_eq!((p.state, p.next), (SendState::Probe, 6));
        let mut idle = replicating(5, 6);
        idle.on_heartbeat();
        assert!(!idle.on_heartbeat(), "nothing in flight is not a stall");
    }

    #[test]
    fn a_faulty_follower_is_probed_from_its_verified_prefix() {
        let mut p = replicating(9, 12);
        assert!(p.on_faulty(6));
        assert_eq!((p.state, p.matched, p.next), (SendState::Probe, 6, 7));
        p.probe_sent = true;
        assert!(!p.on_faulty(6), "the same answer to another append of the pipeline");
        assert!(p.probe_sent);
    }
}
