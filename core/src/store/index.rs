//! The in-memory index of live messages: per-sequence metadata, per-subject sequence sets and
//! a TTL queue. Every query a stream asks is answered here; only payloads live in the log.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::SubjectState;
use crate::subject;

/// One live message's metadata; `loc` is wherever the log keeps the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<L> {
    pub subject: Bytes,
    pub ts: i64,
    pub size: u64,
    /// Unix nanoseconds at which a per-message TTL expires it.
    pub expires: Option<i64>,
    pub loc: L,
}

#[derive(Clone, Debug)]
pub struct Index<L> {
    msgs: BTreeMap<u64, Entry<L>>,
    subjects: BTreeMap<Bytes, BTreeSet<u64>>,
    ttls: BTreeSet<(i64, u64)>,
    bytes: u64,
}

impl<L> Default for Index<L> {
    fn default() -> Self {
        Index { msgs: BTreeMap::new(), subjects: BTreeMap::new(), ttls: BTreeSet::new(), bytes: 0 }
    }
}

/// A filter without wildcard tokens names one subject, which the subject map answers directly.
fn is_literal(filter: &[u8]) -> bool {
    !subject::tokens(filter).any(|t| t == subject::STAR || t == subject::GREATER)
}

fn is_all(filter: &[u8]) -> bool {
    filter.is_empty() || filter == subject::GREATER
}

impl<L> Index<L> {
    pub fn insert(&mut self, seq: u64, mut entry: Entry<L>) {
        // The engine never overwrites a live sequence, but a replayed log can (a damaged region
        // that held a truncate): forget the old entry first, or forgetting it after would take
        // the new one out of its subject's set when both have the same subject.
        if let Some(old) = self.msgs.remove(&seq) {
            self.forget(seq, &old);
        }
        // Share one allocation per subject across its messages.
        match self.subjects.get_key_value(&entry.subject[..]) {
            Some((k, _)) => entry.subject = k.clone(),
            None => {
                self.subjects.insert(entry.subject.clone(), BTreeSet::new());
            }
        }
        if let Some(set) = self.subjects.get_mut(&entry.subject[..]) {
            set.insert(seq);
        }
        if let Some(at) = entry.expires {
            self.ttls.insert((at, seq));
        }
        self.bytes += entry.size;
        self.msgs.insert(seq, entry);
    }

    fn forget(&mut self, seq: u64, e: &Entry<L>) {
        self.bytes -= e.size;
        if let Some(set) = self.subjects.get_mut(&e.subject[..]) {
            set.remove(&seq);
            if set.is_empty() {
                self.subjects.remove(&e.subject[..]);
            }
        }
        if let Some(at) = e.expires {
            self.ttls.remove(&(at, seq));
        }
    }

    pub fn remove(&mut self, seq: u64) -> Option<Entry<L>> {
        let e = self.msgs.remove(&seq)?;
        self.forget(seq, &e);
        Some(e)
    }

    pub fn get(&self, seq: u64) -> Option<&Entry<L>> {
        self.msgs.get(&seq)
    }

    pub fn len(&self) -> u64 {
        self.msgs.len() as u64
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn num_subjects(&self) -> u64 {
        self.subjects.len() as u64
    }

    pub fn first(&self) -> Option<(u64, &Entry<L>)> {
        self.msgs.first_key_value().map(|(s, e)| (*s, e))
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, &Entry<L>)> {
        self.msgs.iter().map(|(s, e)| (*s, e))
    }

    pub fn subject_count(&self, subject: &[u8]) -> u64 {
        self.subjects.get(subject).map_or(0, |s| s.len() as u64)
    }

    pub fn subject_first(&self, subject: &[u8]) -> Option<u64> {
        self.subjects.get(subject).and_then(|s| s.first().copied())
    }

    /// Sequences below `seq`.
    pub fn below(&self, seq: u64) -> Vec<u64> {
        self.msgs.range(..seq).map(|(s, _)| *s).collect()
    }

    /// Sequences above `seq`.
    pub fn above(&self, seq: u64) -> Vec<u64> {
        self.msgs.range(seq.saturating_add(1)..).map(|(s, _)| *s).collect()
    }

    fn matching_sets<'a>(
        &'a self,
        filter: &'a [u8],
    ) -> impl Iterator<Item = (&'a Bytes, &'a BTreeSet<u64>)> + 'a {
        // A literal filter is one lookup, not a walk of every subject: a KV put checks its own
        // key's history on every write (the JetStream benchmark's kv-put spent 92% of the
        // server's time in this walk).
        let exact = !is_all(filter) && is_literal(filter);
        let one = if exact { self.subjects.get_key_value(filter) } else { None };
        let scan = (!exact).then(|| {
            self.subjects.iter().filter(move |(s, _)| is_all(filter) || subject::matches(filter, s))
        });
        one.into_iter().chain(scan.into_iter().flatten())
    }

    pub fn next_matching(&self, filter: &[u8], start: u64) -> Option<u64> {
        if is_all(filter) {
            return self.msgs.range(start..).next().map(|(s, _)| *s);
        }
        if is_literal(filter) {
            return self.subjects.get(filter)?.range(start..).next().copied();
        }
        self.matching_sets(filter).filter_map(|(_, set)| set.range(start..).next().copied()).min()
    }

    pub fn prev_matching(&self, filter: &[u8], start: u64) -> Option<u64> {
        if is_all(filter) {
            return self.msgs.range(..=start).next_back().map(|(s, _)| *s);
        }
        if is_literal(filter) {
            return self.subjects.get(filter)?.range(..=start).next_back().copied();
        }
        self.matching_sets(filter)
            .filter_map(|(_, set)| set.range(..=start).next_back().copied())
            .max()
    }

    pub fn matching(&self, filter: &[u8]) -> Vec<(Bytes, Vec<u64>)> {
        self.matching_sets(filter)
            .map(|(s, set)| (s.clone(), set.iter().copied().collect()))
            .collect()
    }

    pub fn subjects_state(&self, filter: &[u8]) -> BTreeMap<Bytes, SubjectState> {
        self.matching_sets(filter)
            .filter_map(|(s, set)| {
                Some((
                    s.clone(),
                    SubjectState {
                        msgs: set.len() as u64,
                        first_seq: *set.first()?,
                        last_seq: *set.last()?,
                    },
                ))
            })
            .collect()
    }

    pub fn num_pending(&self, filter: &[u8], start: u64, last_per_subject: bool) -> u64 {
        if is_all(filter) && !last_per_subject {
            return self.msgs.range(start..).count() as u64;
        }
        self.matching_sets(filter)
            .map(|(_, set)| {
                if last_per_subject {
                    u64::from(set.last().is_some_and(|l| *l >= start))
                } else {
                    set.range(start..).count() as u64
                }
            })
            .sum()
    }

    /// Timestamps need not be monotonic (replicated stores keep the origin's), so this scans.
    pub fn seq_at_time(&self, ts: i64) -> Option<u64> {
        self.msgs.iter().find(|(_, e)| e.ts >= ts).map(|(s, _)| *s)
    }

    /// Sequences expired at `now` by `max_age` (0 = none) or their own TTL, ascending.
    pub fn expired(&self, now: i64, max_age: u64) -> Vec<u64> {
        let mut out: BTreeSet<u64> = self.ttls.range(..=(now, u64::MAX)).map(|(_, s)| *s).collect();
        if max_age > 0 {
            let cutoff = now.saturating_sub(max_age.min(i64::MAX as u64) as i64);
            out.extend(self.msgs.iter().filter(|(_, e)| e.ts <= cutoff).map(|(s, _)| *s));
        }
        out.into_iter().collect()
    }
}

impl<L> Index<L> {
    /// All entries, with an exact length for encoders that write a count first.
    pub fn iter_exact(&self) -> impl ExactSizeIterator<Item = (u64, &Entry<L>)> {
        self.msgs.iter().map(|(s, e)| (*s, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(subject: &'static str) -> Entry<()> {
        Entry {
            subject: Bytes::from_static(subject.as_bytes()),
            ts: 0,
            size: 10,
            expires: None,
            loc: (),
        }
    }

    /// A replay that writes a sequence twice (the same subject or another) leaves exactly the
    /// newer entry, in its subject's set, with the bytes counted once.
    #[test]
    fn overwriting_a_sequence_keeps_the_subject_index_right() {
        let mut i = Index::default();
        i.insert(7, entry("kv.a"));
        i.insert(7, entry("kv.a"));
        assert_eq!(i.next_matching(b"kv.a", 0), Some(7), "lost from its own subject");
        assert_eq!(i.subjects_state(b"kv.a").len(), 1);
        i.insert(7, entry("kv.b"));
        assert_eq!(i.next_matching(b"kv.a", 0), None, "still under the old subject");
        assert_eq!(i.next_matching(b"kv.b", 0), Some(7));
        assert_eq!(i.bytes, 10);
    }
}
