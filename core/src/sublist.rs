//! The subscription index: a trie of subject tokens with `*` and `>` wildcards and queue groups.
//!
//! (Being written: see the subject/sublist brief.)

use crate::subject::SubjectError;

/// The subscriptions that match one published subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchResult<T> {
    /// Plain subscriptions: each gets the message.
    pub plain: Vec<T>,
    /// Queue groups: one member of each gets the message.
    pub queues: Vec<QueueGroup<T>>,
}

impl<T> Default for MatchResult<T> {
    fn default() -> Self {
        MatchResult { plain: Vec::new(), queues: Vec::new() }
    }
}

impl<T> MatchResult<T> {
    pub fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.queues.iter().all(|q| q.members.is_empty())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueGroup<T> {
    pub name: Vec<u8>,
    pub members: Vec<T>,
}

/// The index. `T` identifies one subscription (the runtime stores a handle to the
/// subscriber's connection; the simulator a (client, sid) pair).
pub struct Sublist<T> {
    _marker: std::marker::PhantomData<T>,
}

impl<T: Clone + PartialEq> Default for Sublist<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + PartialEq> Sublist<T> {
    pub fn new() -> Self {
        todo!()
    }

    /// Adds a subscription. The subject must pass `validate_subscription`.
    pub fn insert(
        &mut self,
        subject: &[u8],
        queue: Option<&[u8]>,
        value: T,
    ) -> Result<(), SubjectError> {
        let _ = (subject, queue, value);
        todo!()
    }

    /// Removes one subscription equal to `value`; false if it was not there.
    pub fn remove(&mut self, subject: &[u8], queue: Option<&[u8]>, value: &T) -> bool {
        let _ = (subject, queue, value);
        todo!()
    }

    /// Every subscription whose subject matches the literal `subject`.
    pub fn matches(&self, subject: &[u8]) -> MatchResult<T> {
        let _ = subject;
        todo!()
    }

    /// Number of subscriptions held.
    pub fn len(&self) -> usize {
        todo!()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bumped by every insert and remove, so cached match results can be validated.
    pub fn generation(&self) -> u64 {
        todo!()
    }
}
