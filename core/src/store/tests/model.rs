//! The model check: random operation sequences give the same observable results on MemStore,
//! FileStore (over MemDisk, with small blocks, checkpoints and restarts) and `Model`, a
//! deliberately naive store that scans a `BTreeMap` for every answer.

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;

use crate::disk::{FaultConfig, MemDisk};
use crate::store::*;
use crate::subject;

/// Obviously-correct reference: every query is a linear scan.
pub(super) struct Model {
    pub msgs: BTreeMap<u64, StoredMsg>,
    pub last_seq: u64,
    pub last_ts: i64,
    pub limits: Limits,
    pub pending: Vec<u64>,
    /// What a message counts for in bytes: the two stores count as nats-server's do, each
    /// its own way (`file_msg_size`, `mem_msg_size`).
    pub msg_size: fn(usize, usize, usize) -> u64,
}

fn hit(filter: &[u8], s: &[u8]) -> bool {
    filter == b">" || subject::matches(filter, s)
}

impl Model {
    pub(super) fn new(limits: Limits, msg_size: fn(usize, usize, usize) -> u64) -> Self {
        Model {
            msgs: BTreeMap::new(),
            last_seq: 0,
            last_ts: 0,
            limits,
            pending: Vec::new(),
            msg_size,
        }
    }
    fn size(&self, m: &StoredMsg) -> u64 {
        (self.msg_size)(m.subject.len(), m.headers.len(), m.payload.len())
    }
    fn bytes(&self) -> u64 {
        self.msgs.values().map(|m| self.size(m)).sum()
    }
    fn count(&self, s: &[u8]) -> u64 {
        self.msgs.values().filter(|m| m.subject == s).count() as u64
    }
    fn store_at(
        &mut self,
        seq: u64,
        subj: &[u8],
        hdr: &[u8],
        pay: &[u8],
        ts: i64,
        ttl: Option<u64>,
    ) -> Result<(), StoreError> {
        let l = self.limits;
        let sz = (self.msg_size)(subj.len(), hdr.len(), pay.len());
        // Discard old takes any message (even one over max_bytes) and then trims.
        if l.discard == Discard::New {
            // A subject at its limit replaces its oldest message unless discard-new-per-subject.
            let full = l.max_msgs_per_subject > 0 && self.count(subj) >= l.max_msgs_per_subject;
            if full && l.discard_new_per_subject {
                return Err(StoreError::MaxMsgsPerSubject);
            }
            if l.max_msgs > 0 && self.msgs.len() as u64 >= l.max_msgs && !full {
                return Err(StoreError::MaxMsgs);
            }
            if l.max_bytes > 0 && self.bytes() + sz > l.max_bytes {
                let oldest = self.msgs.values().find(|m| m.subject == subj);
                if !full || oldest.is_none_or(|m| self.size(m) < sz) {
                    return Err(StoreError::MaxBytes);
                }
            }
        }
        let m = StoredMsg {
            seq,
            subject: Bytes::copy_from_slice(subj),
            headers: Bytes::copy_from_slice(hdr),
            payload: Bytes::copy_from_slice(pay),
            ts,
            ttl: ttl.filter(|t| *t > 0),
        };
        self.msgs.insert(seq, m);
        self.last_seq = seq;
        self.last_ts = ts;
        self.pending.push(seq);
        while l.max_msgs_per_subject > 0 && self.count(subj) > l.max_msgs_per_subject {
            let first = *self.msgs.iter().find(|(_, m)| m.subject == subj).unwrap().0;
            self.msgs.remove(&first);
        }
        while (l.max_msgs > 0 && self.msgs.len() as u64 > l.max_msgs)
            || (l.max_bytes > 0 && self.bytes() > l.max_bytes)
        {
            self.msgs.pop_first();
        }
        Ok(())
    }
    fn first_seq(&self) -> u64 {
        self.msgs.keys().next().copied().unwrap_or(self.last_seq + 1)
    }
    fn state(&self) -> StreamState {
        let msgs = self.msgs.len() as u64;
        let first_seq = self.first_seq();
        let subjects: std::collections::BTreeSet<_> =
            self.msgs.values().map(|m| m.subject.clone()).collect();
        StreamState {
            msgs,
            bytes: self.bytes(),
            first_seq,
            first_ts: self.msgs.values().next().map_or(0, |m| m.ts),
            last_seq: self.last_seq,
            last_ts: self.last_ts,
            num_deleted: (first_seq..=self.last_seq)
                .filter(|s| msgs > 0 && !self.msgs.contains_key(s))
                .count() as u64,
            num_subjects: subjects.len() as u64,
        }
    }
    fn compact(&mut self, seq: u64) -> u64 {
        let before = self.msgs.len();
        self.msgs.retain(|s, _| *s >= seq);
        if seq > self.last_seq + 1 {
            self.last_seq = seq - 1;
        }
        (before - self.msgs.len()) as u64
    }
}

const SUBJECTS: &[&str] = &["a", "b", "a.x", "a.y", "b.x.z"];
const FILTERS: &[&str] = &[">", "a", "a.*", "*.x", "b.>", "c", "a.x"];

#[derive(Clone, Debug)]
pub(super) enum Op {
    Store { subj: usize, hdr: usize, pay: usize, ts: i64, ttl: Option<u64> },
    StoreAt { gap: u64, subj: usize, pay: usize, ts: i64 },
    Skip { n: u64, ts: i64 },
    Remove { back: u64 },
    Erase { back: u64 },
    Purge,
    PurgeEx { filter: usize, up_to: Option<u64>, keep: Option<u64> },
    Compact { back: u64 },
    Truncate { back: u64 },
    Expire { now: i64 },
    Flush,
    Reopen,
}

pub(super) fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..SUBJECTS.len(), 0..3usize, 0..40usize, 0..100i64, proptest::option::of(1..30u64))
            .prop_map(|(subj, hdr, pay, ts, ttl)| Op::Store { subj, hdr, pay, ts, ttl }),
        1 => (1..4u64, 0..SUBJECTS.len(), 0..20usize, 0..100i64).prop_map(|(gap, subj, pay, ts)| Op::StoreAt { gap, subj, pay, ts }),
        1 => (0..3u64, 0..100i64).prop_map(|(n, ts)| Op::Skip { n, ts }),
        2 => (0..12u64).prop_map(|back| Op::Remove { back }),
        1 => (0..12u64).prop_map(|back| Op::Erase { back }),
        1 => Just(Op::Purge),
        1 => (0..FILTERS.len(), proptest::option::of(0..30u64), proptest::option::of(0..3u64))
            .prop_map(|(filter, up_to, keep)| Op::PurgeEx { filter, up_to, keep }),
        1 => (0..10u64).prop_map(|back| Op::Compact { back }),
        1 => (0..10u64).prop_map(|back| Op::Truncate { back }),
        1 => (0..150i64).prop_map(|now| Op::Expire { now }),
        2 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

pub(super) fn limits() -> impl Strategy<Value = Limits> {
    (0..8u64, prop_oneof![Just(0u64), 60..300u64], 0..60u64, 0..3u64, any::<bool>(), any::<bool>())
        .prop_map(|(m, b, age, per, new, new_per_subject)| Limits {
            max_msgs: m,
            max_bytes: b,
            max_age: age,
            max_msgs_per_subject: per,
            discard: if new { Discard::New } else { Discard::Old },
            discard_new_per_subject: new && new_per_subject,
        })
}

/// Runs one op on any store; the result is what a caller would observe.
pub(super) fn run<S: StreamStore>(s: &mut S, op: &Op) -> String {
    let last = s.state().last_seq;
    let back = |b: u64| last.saturating_sub(b);
    let pay = |n: usize| vec![b'p'; n];
    let r = match op {
        Op::Store { subj, hdr, pay: p, ts, ttl } => {
            format!(
                "{:?}",
                s.store(SUBJECTS[*subj].as_bytes(), &vec![b'h'; *hdr], &pay(*p), *ts, *ttl)
            )
        }
        Op::StoreAt { gap, subj, pay: p, ts } => {
            format!(
                "{:?}",
                s.store_at(last + gap, SUBJECTS[*subj].as_bytes(), b"", &pay(*p), *ts, None)
            )
        }
        Op::Skip { n, ts } => format!("{:?}", s.skip(*n, *ts)),
        Op::Remove { back: b } => format!("{:?}", s.remove(back(*b))),
        Op::Erase { back: b } => format!("{:?}", s.erase(back(*b))),
        Op::Purge => format!("{:?}", s.purge()),
        Op::PurgeEx { filter, up_to, keep } => {
            format!("{:?}", s.purge_ex(FILTERS[*filter].as_bytes(), *up_to, *keep))
        }
        Op::Compact { back: b } => format!("{:?}", s.compact(back(*b))),
        Op::Truncate { back: b } => format!("{:?}", s.truncate(back(*b))),
        Op::Expire { now } => format!("{:?}", s.expire(*now)),
        Op::Flush | Op::Reopen => format!("{:?}", s.flush()),
    };
    r
}

impl Model {
    fn run(&mut self, op: &Op) -> String {
        let last = self.last_seq;
        let back = |b: u64| last.saturating_sub(b);
        match op {
            Op::Store { subj, hdr, pay, ts, ttl } => {
                let seq = self.last_seq + 1;
                format!(
                    "{:?}",
                    self.store_at(
                        seq,
                        SUBJECTS[*subj].as_bytes(),
                        &vec![b'h'; *hdr],
                        &vec![b'p'; *pay],
                        *ts,
                        *ttl
                    )
                    .map(|_| seq)
                )
            }
            Op::StoreAt { gap, subj, pay, ts } => {
                format!(
                    "{:?}",
                    self.store_at(
                        last + gap,
                        SUBJECTS[*subj].as_bytes(),
                        b"",
                        &vec![b'p'; *pay],
                        *ts,
                        None
                    )
                )
            }
            Op::Skip { n, ts } => {
                if *n > 0 {
                    self.last_seq += n;
                    self.last_ts = *ts;
                }
                format!("{:?}", Ok::<u64, StoreError>(self.last_seq))
            }
            Op::Remove { back: b } | Op::Erase { back: b } => {
                format!("{:?}", Ok::<bool, StoreError>(self.msgs.remove(&back(*b)).is_some()))
            }
            Op::Purge => {
                let n = self.compact(self.last_seq + 1);
                format!("{:?}", Ok::<u64, StoreError>(n))
            }
            Op::PurgeEx { filter, up_to, keep } => {
                let f = FILTERS[*filter].as_bytes();
                let n = if f == b">" && keep.is_none() {
                    self.compact(up_to.unwrap_or(self.last_seq + 1))
                } else {
                    let mut doomed = Vec::new();
                    let subjects: std::collections::BTreeSet<Bytes> = self
                        .msgs
                        .values()
                        .filter(|m| hit(f, &m.subject))
                        .map(|m| m.subject.clone())
                        .collect();
                    for s in subjects {
                        let seqs: Vec<u64> =
                            self.msgs.values().filter(|m| m.subject == s).map(|m| m.seq).collect();
                        let k = seqs.len().saturating_sub(keep.unwrap_or(0) as usize);
                        doomed.extend(seqs[..k].iter().filter(|q| up_to.is_none_or(|u| **q < u)));
                    }
                    for q in &doomed {
                        self.msgs.remove(q);
                    }
                    doomed.len() as u64
                };
                format!("{:?}", Ok::<u64, StoreError>(n))
            }
            Op::Compact { back: b } => {
                let seq = back(*b);
                let n = if seq == 0 { 0 } else { self.compact(seq) };
                format!("{:?}", Ok::<u64, StoreError>(n))
            }
            Op::Truncate { back: b } => {
                let seq = back(*b);
                if seq < self.last_seq {
                    self.last_ts = self.msgs.get(&seq).map_or(0, |m| m.ts);
                    self.msgs.retain(|s, _| *s <= seq);
                    self.last_seq = seq;
                }
                format!("{:?}", Ok::<(), StoreError>(()))
            }
            Op::Expire { now } => {
                let age = self.limits.max_age as i64;
                let before = self.msgs.len();
                self.msgs.retain(|_, m| {
                    let aged = age > 0 && m.ts <= now - age;
                    let ttl = m.ttl.is_some_and(|t| m.ts + t as i64 <= *now);
                    !aged && !ttl
                });
                format!("{:?}", Ok::<u64, StoreError>((before - self.msgs.len()) as u64))
            }
            Op::Flush | Op::Reopen => {
                format!("{:?}", Ok::<Vec<u64>, StoreError>(std::mem::take(&mut self.pending)))
            }
        }
    }

    /// Every query, answered by scanning.
    fn observe(&self) -> String {
        let mut out = format!("{:?}\n", self.state());
        let deleted: Vec<u64> = if self.msgs.is_empty() {
            vec![]
        } else {
            (self.first_seq()..=self.last_seq).filter(|s| !self.msgs.contains_key(s)).collect()
        };
        out += &format!("{deleted:?}\n");
        for seq in 0..=self.last_seq + 1 {
            out += &format!("{seq} {:?}\n", self.msgs.get(&seq));
        }
        for f in FILTERS {
            let f = f.as_bytes();
            let matching = || self.msgs.values().filter(|m| hit(f, &m.subject));
            out += &format!("last {:?}\n", matching().last());
            for start in 0..=self.last_seq + 1 {
                out += &format!("next {start} {:?}\n", matching().find(|m| m.seq >= start));
                out +=
                    &format!("prev {start} {:?}\n", matching().filter(|m| m.seq <= start).last());
                let pending = matching().filter(|m| m.seq >= start).count() as u64;
                let mut lasts: BTreeMap<&Bytes, u64> = BTreeMap::new();
                for m in matching() {
                    lasts.insert(&m.subject, m.seq);
                }
                let lps = lasts.values().filter(|l| **l >= start).count() as u64;
                out += &format!("pending {start} {pending} {lps}\n");
            }
            let mut st: BTreeMap<Bytes, SubjectState> = BTreeMap::new();
            for m in matching() {
                let e = st.entry(m.subject.clone()).or_insert(SubjectState {
                    msgs: 0,
                    first_seq: m.seq,
                    last_seq: m.seq,
                });
                e.msgs += 1;
                e.last_seq = m.seq;
            }
            out += &format!("subjects {st:?}\n");
        }
        for ts in [0, 30, 60, 99, 200] {
            let seq = self.msgs.values().find(|m| m.ts >= ts).map_or(self.last_seq + 1, |m| m.seq);
            out += &format!("at {ts} {seq}\n");
        }
        out
    }
}

/// The same queries through the trait.
pub(super) fn observe<S: StreamStore>(s: &mut S) -> String {
    let state = s.state();
    let mut out = format!("{state:?}\n{:?}\n", s.deleted());
    for seq in 0..=state.last_seq + 1 {
        out += &format!("{seq} {:?}\n", s.load(seq).expect("load"));
    }
    for f in FILTERS {
        let f = f.as_bytes();
        out += &format!("last {:?}\n", s.load_last(f).expect("last"));
        for start in 0..=state.last_seq + 1 {
            out += &format!("next {start} {:?}\n", s.load_next(f, start).expect("next"));
            out += &format!("prev {start} {:?}\n", s.load_prev(f, start).expect("prev"));
            out += &format!(
                "pending {start} {} {}\n",
                s.num_pending(f, start, false),
                s.num_pending(f, start, true)
            );
        }
        let st = s.subjects_state(f);
        let totals = s.subjects_totals(f);
        assert_eq!(totals, st.iter().map(|(k, v)| (k.clone(), v.msgs)).collect());
        out += &format!("subjects {st:?}\n");
    }
    for ts in [0, 30, 60, 99, 200] {
        out += &format!("at {ts} {}\n", s.seq_at_time(ts));
    }
    out
}

pub(super) fn file_config(block_size: u64, checkpoint_every: u64) -> FileStoreConfig {
    let mut c = FileStoreConfig::new("js/s1/msgs");
    c.block_size = block_size;
    c.checkpoint_every = checkpoint_every;
    // Compression changes only how sealed blocks are kept, never an answer: odd block sizes
    // compress, so the model check covers both.
    c.compress = block_size % 2 == 1;
    c
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mem_file_and_model_agree(
        limits in limits(),
        ops in proptest::collection::vec(op(), 1..60),
        block_size in 64..600u64,
        checkpoint_every in 0..4u64,
        encrypted in any::<bool>(),
    ) {
        let mut mem_model = Model::new(limits, mem_msg_size);
        let mut file_model = Model::new(limits, file_msg_size);
        let mut mem = MemStore::new(limits);
        let mut cfg = file_config(block_size, checkpoint_every);
        // Encryption changes only the bytes on disk, never an answer.
        let with_seed = |mut c: FileStoreConfig, seed: u8| {
            if encrypted {
                let key = StoreKey::derive(b"model", b"s1");
                c.encryption = Some(Encryption { key, cipher: Cipher::ChaChaPoly, seed: [seed; 32] });
            }
            c
        };
        cfg = with_seed(cfg, 0);
        let (mut file, report) = FileStore::open(MemDisk::new(1, FaultConfig::default()), cfg.clone(), limits).unwrap();
        prop_assert_eq!(report, RecoveryReport::default());
        for (i, op) in ops.iter().enumerate() {
            prop_assert_eq!(&run(&mut mem, op), &mem_model.run(op), "mem, op {} {:?}", i, op);
            prop_assert_eq!(&run(&mut file, op), &file_model.run(op), "file, op {} {:?}", i, op);
            if matches!(op, Op::Reopen) {
                let disk = file.into_log().into_disk();
                // Every open draws a fresh seed, as the runtime's does.
                let cfg = with_seed(cfg.clone(), i as u8 + 1);
                let (reopened, report) = FileStore::open(disk, cfg, limits).unwrap();
                prop_assert!(report.corrupt.is_empty() && report.torn_bytes == 0, "{:?}", report);
                file = reopened;
            }
            prop_assert_eq!(&observe(&mut mem), &mem_model.observe(), "mem after op {} {:?}", i, op);
            prop_assert_eq!(&observe(&mut file), &file_model.observe(), "file after op {} {:?}", i, op);
        }
    }
}
