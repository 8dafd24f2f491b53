//! Recording a key-value workload's history for the linearizability checker
//! ([`crate::checker::linearizability`]), and the replicated register the clients talk to.
//!
//! How the Raft workload (`workload::raft`) uses it (one recorder per run, times always the
//! simulator's global `now`, never a node's local clock, which may jump):
//!
//! 1. **Invoke** when a client submits a command: right after `propose` returned `Ok((index,
//!    term))`, call `recorder.invoke(client, call, now)` and keep the [`OpId`] in the client's
//!    `Waiting` state beside `(node, index, term)`. A proposal `propose` refused (not leader,
//!    no quorum...) never entered a log: record nothing (or `invoke` then `fail`).
//!    Reads go through the log too (`get` is proposed like a write); a read served from a
//!    node's local state without a log round would not be linearizable and must not be
//!    recorded as one.
//! 2. **Complete** when the client sees its result: when the node the client is waiting on
//!    applies an entry at the client's index, if the entry's term is the one `propose`
//!    returned, the command is the client's; its output is what that node's [`KvRegister`]
//!    returned from [`KvRegister::apply`] for it; call `recorder.complete(id, output, now)`.
//!    Every node applies every committed command to its own `KvRegister`, so all replicas
//!    compute the same outputs; the client takes its node's.
//! 3. **Definite failure**: if that node applies a *different* term at the client's index,
//!    the proposal was overwritten and can never commit (an entry never moves to another
//!    index): call `recorder.fail(id)`; the operation is dropped from the history.
//! 4. **Timeout / crash**: when the client's deadline passes (or its node crashes and the
//!    client gives up), do nothing to the recorder: the operation stays without a return, and
//!    the checker lets it take effect at any time after its invocation, or never. The client
//!    may then issue its next command; a late apply of the abandoned entry is not reported
//!    to the recorder (the client has stopped waiting for it).
//! 5. **At the end** (after the liveness phase): `recorder.check(Limits::default())`; a
//!    `NotLinearizable` verdict is a `Violation` with the counterexample's `Display` as its
//!    message; `Unknown` should be reported (as a stat or a warning), not silently passed.
//!
//! With snapshots: the register is part of every node's state machine, so it goes into the
//! snapshot data ([`KvRegister::snapshot`]) and is replaced on restore
//! ([`KvRegister::restore`], in `on_restore`). A client whose entry a node skipped by
//! installing a snapshot never sees its output there: leave it unreturned (step 4); it is not
//! a failure. Entries that are not commands (the append-only values, no-ops, membership
//! changes) decode to `None` and are not applied to the register.
//!
//! Commands travel in log entries as bytes: [`encode_command`] / [`decode_command`], tagged so
//! they are never confused with the append-only log workload's 12-byte values.

use std::collections::BTreeMap;
use std::fmt;

use crate::checker::linearizability::{
    check, Completion, HistoryError, KvCall, KvKey, KvOp, KvReturn, KvValue, Limits, Report,
};

/// An operation's position in the recorder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub usize);

/// A misuse of the recorder by the workload (a bug in the workload, not in the system).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordError {
    UnknownOp(OpId),
    AlreadyCompleted(OpId),
    AlreadyFailed(OpId),
    ReturnedBeforeInvoked { id: OpId, invoked: u64, at: u64 },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::UnknownOp(id) => write!(f, "history: no operation {id:?}"),
            RecordError::AlreadyCompleted(id) => write!(f, "history: {id:?} completed twice"),
            RecordError::AlreadyFailed(id) => write!(f, "history: {id:?} already failed"),
            RecordError::ReturnedBeforeInvoked { id, invoked, at } => {
                write!(f, "history: {id:?} invoked at {invoked} returned at {at}")
            }
        }
    }
}

/// The history as clients saw it.
#[derive(Clone, Debug)]
pub struct HistoryRecorder<K, V> {
    ops: Vec<KvOp<K, V>>,
    /// Operations known never to have taken effect: left out of the history.
    failed: Vec<bool>,
}

impl<K: KvKey, V: KvValue> Default for HistoryRecorder<K, V> {
    fn default() -> Self {
        HistoryRecorder { ops: Vec::new(), failed: Vec::new() }
    }
}

impl<K: KvKey, V: KvValue> HistoryRecorder<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// A client submitted `call` at `at`.
    pub fn invoke(&mut self, client: u64, call: KvCall<K, V>, at: u64) -> OpId {
        self.ops.push(KvOp { client, call, invoked: at, returned: None });
        self.failed.push(false);
        OpId(self.ops.len() - 1)
    }

    /// The client saw `output` at `at`.
    pub fn complete(&mut self, id: OpId, output: KvReturn<V>, at: u64) -> Result<(), RecordError> {
        let op = self.ops.get_mut(id.0).ok_or(RecordError::UnknownOp(id))?;
        if self.failed[id.0] {
            return Err(RecordError::AlreadyFailed(id));
        }
        if op.returned.is_some() {
            return Err(RecordError::AlreadyCompleted(id));
        }
        if at < op.invoked {
            return Err(RecordError::ReturnedBeforeInvoked { id, invoked: op.invoked, at });
        }
        op.returned = Some(Completion { at, output });
        Ok(())
    }

    /// The operation certainly never took effect (and never will): drop it.
    pub fn fail(&mut self, id: OpId) -> Result<(), RecordError> {
        let op = self.ops.get(id.0).ok_or(RecordError::UnknownOp(id))?;
        if op.returned.is_some() {
            return Err(RecordError::AlreadyCompleted(id));
        }
        self.failed[id.0] = true;
        Ok(())
    }

    /// Operations without a return so far (timed out, or still waiting).
    pub fn unreturned(&self) -> usize {
        self.ops.iter().zip(&self.failed).filter(|(o, f)| o.returned.is_none() && !**f).count()
    }

    /// The history to check: every operation not failed, in invocation order of recording.
    pub fn history(&self) -> Vec<KvOp<K, V>> {
        self.ops.iter().zip(&self.failed).filter(|(_, f)| !**f).map(|(o, _)| o.clone()).collect()
    }

    pub fn check(&self, limits: Limits) -> Result<Report<K, V>, HistoryError> {
        check(&self.history(), limits)
    }
}

/// The replicated register each node applies committed commands to; its outputs are what
/// clients see (the same model the checker holds the history to).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvRegister<K: Ord, V> {
    values: BTreeMap<K, V>,
}

impl<K: KvKey, V: KvValue> KvRegister<K, V> {
    pub fn apply(&mut self, call: &KvCall<K, V>) -> KvReturn<V> {
        match call {
            KvCall::Get { key } => KvReturn::Get(self.values.get(key).cloned()),
            KvCall::Put { key, value } => {
                self.values.insert(key.clone(), value.clone());
                KvReturn::Put
            }
            KvCall::Cas { key, expected, new } => {
                if self.values.get(key) != expected.as_ref() {
                    return KvReturn::Cas(false);
                }
                self.values.insert(key.clone(), new.clone());
                KvReturn::Cas(true)
            }
        }
    }
}

impl KvRegister<u64, u64> {
    /// The register as snapshot data: (key, value) pairs in key order, little-endian.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.values.len() * 16);
        for (k, v) in &self.values {
            out.extend_from_slice(&k.to_le_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// The inverse of [`KvRegister::snapshot`]; `None` if the data is not one (a snapshot is
    /// checksummed by the store, so this is a bug or an unchecked corruption).
    pub fn restore(data: &[u8]) -> Option<Self> {
        if !data.len().is_multiple_of(16) {
            return None;
        }
        let mut values = BTreeMap::new();
        for pair in data.chunks_exact(16) {
            let k = u64::from_le_bytes(pair[..8].try_into().ok()?);
            let v = u64::from_le_bytes(pair[8..].try_into().ok()?);
            values.insert(k, v);
        }
        Some(KvRegister { values })
    }
}

/// First byte of an encoded command; the append-only workload's values are 12 bytes with no
/// tag, and a command is never 12 bytes long.
const COMMAND_TAG: u8 = 0xC5;

/// A command as proposed: the client and its sequence number (so a duplicate apply can be
/// told apart), and the call, with `u64` keys and values.
pub fn encode_command(client: u32, seq: u64, call: &KvCall<u64, u64>) -> Vec<u8> {
    let mut out = vec![COMMAND_TAG];
    out.extend_from_slice(&client.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    match call {
        KvCall::Get { key } => {
            out.push(0);
            out.extend_from_slice(&key.to_le_bytes());
        }
        KvCall::Put { key, value } => {
            out.push(1);
            out.extend_from_slice(&key.to_le_bytes());
            out.extend_from_slice(&value.to_le_bytes());
        }
        KvCall::Cas { key, expected, new } => {
            out.push(if expected.is_some() { 3 } else { 2 });
            out.extend_from_slice(&key.to_le_bytes());
            out.extend_from_slice(&new.to_le_bytes());
            if let Some(e) = expected {
                out.extend_from_slice(&e.to_le_bytes());
            }
        }
    }
    out
}

/// The inverse of [`encode_command`]; `None` for anything else (including a bit-flipped
/// entry that no longer parses).
pub fn decode_command(data: &[u8]) -> Option<(u32, u64, KvCall<u64, u64>)> {
    let word = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?))
    };
    if data.first() != Some(&COMMAND_TAG) {
        return None;
    }
    let client = u32::from_le_bytes(data.get(1..5)?.try_into().ok()?);
    let seq = word(5)?;
    let key = word(14)?;
    let (call, len) = match data.get(13)? {
        0 => (KvCall::Get { key }, 22),
        1 => (KvCall::Put { key, value: word(22)? }, 30),
        2 => (KvCall::Cas { key, expected: None, new: word(22)? }, 30),
        3 => (KvCall::Cas { key, expected: Some(word(30)?), new: word(22)? }, 38),
        _ => return None,
    };
    (data.len() == len).then_some((client, seq, call))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::linearizability::Verdict;

    #[test]
    fn commands_round_trip_and_reject_other_bytes() {
        let calls = [
            KvCall::Get { key: 7 },
            KvCall::Put { key: 7, value: u64::MAX },
            KvCall::Cas { key: 1, expected: None, new: 2 },
            KvCall::Cas { key: 1, expected: Some(3), new: 2 },
        ];
        for call in calls {
            let bytes = encode_command(9, 42, &call);
            assert_ne!(bytes.len(), 12, "never the append-only workload's value length");
            assert_eq!(decode_command(&bytes), Some((9, 42, call)));
            assert_eq!(decode_command(&bytes[..bytes.len() - 1]), None);
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(decode_command(&longer), None);
        }
        assert_eq!(decode_command(&crate::checker::raft::encode_value(1, 2)), None);
    }

    #[test]
    fn register_applies_the_checkers_model() {
        let mut r = KvRegister::<u64, u64>::default();
        assert_eq!(r.apply(&KvCall::Get { key: 1 }), KvReturn::Get(None));
        assert_eq!(
            r.apply(&KvCall::Cas { key: 1, expected: Some(0), new: 5 }),
            KvReturn::Cas(false)
        );
        assert_eq!(r.apply(&KvCall::Cas { key: 1, expected: None, new: 5 }), KvReturn::Cas(true));
        assert_eq!(r.apply(&KvCall::Put { key: 1, value: 6 }), KvReturn::Put);
        assert_eq!(r.apply(&KvCall::Get { key: 1 }), KvReturn::Get(Some(6)));
        assert_eq!(r.apply(&KvCall::Get { key: 2 }), KvReturn::Get(None));
        r.apply(&KvCall::Put { key: 0, value: 9 });
        let restored = KvRegister::restore(&r.snapshot()).unwrap();
        assert_eq!(restored, r);
        assert_eq!(KvRegister::restore(&r.snapshot()[..17]), None);
    }

    #[test]
    fn recorder_builds_the_history_and_refuses_misuse() {
        let mut h = HistoryRecorder::<u64, u64>::new();
        let put = h.invoke(0, KvCall::Put { key: 1, value: 10 }, 100);
        let lost = h.invoke(1, KvCall::Put { key: 1, value: 11 }, 110);
        let timed_out = h.invoke(2, KvCall::Put { key: 1, value: 12 }, 120);
        h.complete(put, KvReturn::Put, 200).unwrap();
        h.fail(lost).unwrap();
        assert_eq!(h.complete(put, KvReturn::Put, 300), Err(RecordError::AlreadyCompleted(put)));
        assert_eq!(h.complete(lost, KvReturn::Put, 300), Err(RecordError::AlreadyFailed(lost)));
        assert_eq!(h.complete(OpId(99), KvReturn::Put, 300), Err(RecordError::UnknownOp(OpId(99))));
        assert!(matches!(
            h.complete(timed_out, KvReturn::Put, 50),
            Err(RecordError::ReturnedBeforeInvoked { .. })
        ));
        assert_eq!(h.unreturned(), 1);
        let history = h.history();
        assert_eq!(history.len(), 2, "the failed put is left out");
        // A read of 11 is only explainable by the failed put, which never happened.
        let read = h.invoke(3, KvCall::Get { key: 1 }, 400);
        h.complete(read, KvReturn::Get(Some(11)), 410).unwrap();
        assert!(matches!(h.check(Limits::default()).unwrap().verdict, Verdict::NotLinearizable(_)));
        // A read of 12 is explained by the timed-out put taking effect late.
        let mut ok = HistoryRecorder::<u64, u64>::new();
        ok.invoke(0, KvCall::Put { key: 1, value: 12 }, 0);
        let r = ok.invoke(1, KvCall::Get { key: 1 }, 1_000);
        ok.complete(r, KvReturn::Get(Some(12)), 1_001).unwrap();
        assert_eq!(ok.check(Limits::default()).unwrap().verdict, Verdict::Linearizable);
    }
}
