//! The event heap: ordered by (time, sequence), so events at the same time run in the order
//! they were scheduled, and a run is a pure function of its seed.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;

use crate::network::Side;

/// Everything that can happen. Each event is delivered to one state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The front segment of a stream direction arrives.
    Segment {
        conn: u64,
        to: Side,
    },
    /// A stream was reset by the other side (or its node crashed).
    Reset {
        conn: u64,
        to: Side,
        client: usize,
        node: usize,
    },
    /// A node's `poll_timeout` is due (ignored if the node re-armed or restarted since).
    NodeTimer {
        node: usize,
        incarnation: u64,
    },
    NodeCrash {
        node: usize,
    },
    NodeRestart {
        node: usize,
    },
    /// A client's next burst of operations.
    ClientTick {
        client: usize,
    },
    /// A client (re)connects.
    ClientConnect {
        client: usize,
    },
    /// Fault: the client's connection drops.
    ClientDrop {
        client: usize,
    },
    /// The safety phase ends: faults and new operations stop; every client must converge.
    Quiesce,
    /// The liveness bound.
    Deadline,
    /// Fault: the node's process stops (SIGSTOP, a long GC, a VM migration).
    NodePause {
        node: usize,
    },
    /// The pause begun in `incarnation` ends: the node carries on with its memory intact.
    NodeResume {
        node: usize,
        incarnation: u64,
    },
}

impl Event {
    /// A stable tag for the digest.
    pub fn tag(&self) -> u8 {
        match self {
            Event::Segment { .. } => 1,
            Event::Reset { .. } => 2,
            Event::NodeTimer { .. } => 3,
            Event::NodeCrash { .. } => 4,
            Event::NodeRestart { .. } => 5,
            Event::ClientTick { .. } => 6,
            Event::ClientConnect { .. } => 7,
            Event::ClientDrop { .. } => 8,
            Event::Quiesce => 9,
            Event::Deadline => 10,
            Event::NodePause { .. } => 11,
            Event::NodeResume { .. } => 12,
        }
    }
}

#[derive(Debug)]
struct Scheduled {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap is a max-heap: reverse for earliest first.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Debug, Default)]
pub struct Queue {
    heap: BinaryHeap<Scheduled>,
    seq: u64,
}

impl Queue {
    pub fn push(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.heap.push(Scheduled { at, seq: self.seq, event });
    }

    /// The next event: (time, sequence, event).
    pub fn pop(&mut self) -> Option<(u64, u64, Event)> {
        self.heap.pop().map(|s| (s.at, s.seq, s.event))
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// Simulated nanoseconds shown as seconds with nanosecond precision.
pub struct SimTime(pub u64);

impl fmt::Display for SimTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:4}.{:09}s", self.0 / 1_000_000_000, self.0 % 1_000_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_then_sequence() {
        let mut q = Queue::default();
        q.push(5, Event::Quiesce);
        q.push(3, Event::ClientTick { client: 1 });
        q.push(3, Event::ClientTick { client: 2 });
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).map(|(t, _, e)| (t, e)).collect();
        assert_eq!(
            order,
            vec![
                (3, Event::ClientTick { client: 1 }),
                (3, Event::ClientTick { client: 2 }),
                (5, Event::Quiesce)
            ]
        );
    }
}
