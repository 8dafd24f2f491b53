//! What a leader knows about each follower's log (Figure 2, "volatile state on leaders").

use crate::time::Instant;

#[derive(Clone, Debug)]
pub struct Progress {
    /// Highest index known replicated *and durable* on the follower.
    pub matched: u64,
    /// Next index to send. Advanced optimistically when entries are sent (pipelining), moved
    /// back on a rejection or when a retransmission is due.
    pub next: u64,
    /// When the follower last answered this leader: the check-quorum lease.
    pub last_heard: Instant,
    /// A snapshot went out and nothing has been heard since: do not send it again before the
    /// next heartbeat.
    pub snapshot_sent: bool,
}

impl Progress {
    pub fn new(last_index: u64, now: Instant) -> Self {
        Progress { matched: 0, next: last_index + 1, last_heard: now, snapshot_sent: false }
    }

    /// Entries sent but not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.next.saturating_sub(self.matched + 1)
    }

    /// A successful append response through `index`. Returns whether `matched` moved.
    pub fn on_ack(&mut self, index: u64) -> bool {
        self.next = self.next.max(index + 1);
        if index > self.matched {
            self.matched = index;
            true
        } else {
            false
        }
    }

    /// The follower holds a corrupt entry at `index + 1`: it is durable and verified only
    /// through `index`, whatever it acknowledged before it lost the entry.
    pub fn on_faulty(&mut self, index: u64) {
        self.matched = index;
        self.next = index + 1;
    }

    /// A rejection with a hint: probe from `hint + 1`, never forward (a stale rejection must
    /// not skip entries). A hint below `matched` means the follower lost entries it had
    /// acknowledged (its recovery found them corrupt) or the rejection is stale; either way
    /// counting it lower is safe (the commit index never goes back) and lets it catch up.
    pub fn on_reject(&mut self, hint: u64) {
        self.matched = self.matched.min(hint);
        self.next = (hint + 1).min(self.next).max(self.matched + 1);
    }
}
