//! The most recent closed connections, kept for `/connz?state=closed` (nats-server's
//! `max_closed_clients`, default 10000): a bounded ring, so a server that has seen millions of
//! connections does not hold them all.

use std::collections::VecDeque;

use super::connz::ConnRecord;

pub const DEFAULT_MAX_CLOSED_CLIENTS: usize = 10_000;

pub struct ClosedRing {
    records: VecDeque<ConnRecord>,
    capacity: usize,
}

impl Default for ClosedRing {
    fn default() -> Self {
        ClosedRing { records: VecDeque::new(), capacity: DEFAULT_MAX_CLOSED_CLIENTS }
    }
}

impl ClosedRing {
    /// 0 keeps none, as in nats-server.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        while self.records.len() > capacity {
            self.records.pop_front();
        }
    }

    pub fn push(&mut self, record: ConnRecord) {
        if self.capacity == 0 {
            return;
        }
        if self.records.len() >= self.capacity {
            self.records.pop_front();
        }
        self.records.push_back(record);
    }

    pub fn iter(&self) -> impl Iterator<Item = &ConnRecord> {
        self.records.iter()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_newest() {
        let mut ring = ClosedRing::default();
        ring.set_capacity(2);
        for cid in 1..=3 {
            ring.push(ConnRecord { cid, ..ConnRecord::default() });
        }
        assert_eq!(ring.iter().map(|r| r.cid).collect::<Vec<_>>(), vec![2, 3]);
        ring.set_capacity(0);
        ring.push(ConnRecord::default());
        assert!(ring.is_empty());
    }
}
