//! The JetStream workload's checker: what publishers and consumer clients saw, judged against
//! what JetStream promises across crashes and power loss.
//!
//! - No acknowledged publish is lost: after every recovery each PubAck'd sequence holds the
//!   message that was published (subject and payload), unless a client asked to delete it or
//!   retention could remove it (interest: every consumer that wants it sent an ack or term;
//!   work queue: the one that wants it did).
//! - Sequences are dense and increasing: PubAcks between two crashes name consecutive
//!   sequences, a PubAck after a crash names one above every earlier PubAck, recovery never
//!   ends below the highest PubAck'd sequence, and a limits stream nobody deleted from has no
//!   hole.
//! - A stream sequence, once seen (PubAck or delivery: both only name durable messages), always
//!   carries the same message.
//! - Nothing is redelivered after its ack: not after an ack (or term) sent since the last crash
//!   (the ack was applied in memory), and never after an ack whose confirmation (the reply to
//!   a "double ack") came back, crash or not.
//! - A consumer's ack floor never goes back across restarts below a floor it reported together
//!   with an ack confirmation (the confirmation proves the state write behind the report).
//! - At least once: at the end, every PubAck'd message not deleted was delivered to every
//!   consumer that wants it, and every consumer has nothing pending or unacknowledged left.

use std::collections::{BTreeMap, BTreeSet};

use crate::checker::Violation;

/// The stream's retention policy, as the checker needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    Limits,
    Interest,
    Workqueue,
}

impl Retention {
    pub fn name(self) -> &'static str {
        match self {
            Retention::Limits => "limits",
            Retention::Interest => "interest",
            Retention::Workqueue => "workqueue",
        }
    }
}

/// Counters for reports and for tests that require a run to have exercised something.
#[derive(Clone, Debug, Default)]
pub struct JsStats {
    pub published: u64,
    pub pubacks: u64,
    pub deliveries: u64,
    pub redeliveries: u64,
    pub acks: u64,
    pub confirmed_acks: u64,
    pub naks: u64,
    pub terms: u64,
    pub recoveries: u64,
    pub recovered_msgs_checked: u64,
    pub retired: u64,
    /// Recovered ack floors compared with one known durable (above zero).
    pub floors_checked: u64,
    pub deletes: u64,
}

/// One consumer as its client saw it.
#[derive(Clone, Debug, Default)]
pub struct ConsumerModel {
    pub name: String,
    pub filter: Option<String>,
    /// Stream sequence → deliveries seen.
    pub delivered: BTreeMap<u64, u64>,
    /// Stream sequence → the crash epoch in which an ack or term of it was sent for a delivery
    /// of that epoch (so the running server applied it).
    pub acked: BTreeMap<u64, u64>,
    /// Every sequence an ack or term was sent for to a running server, whatever delivery it
    /// answered (retention may have acted on any of them).
    pub ack_tried: BTreeSet<u64>,
    /// Sequences whose ack (or term) confirmation came back.
    pub confirmed: BTreeSet<u64>,
    /// The highest ack floor reported beside an ack confirmation.
    pub durable_floor: u64,
}

impl ConsumerModel {
    pub fn wants(&self, subject: &str) -> bool {
        self.filter
            .as_deref()
            .is_none_or(|f| fjord_core::subject::matches(f.as_bytes(), subject.as_bytes()))
    }
}

/// What the stream holds at a sequence after recovery, as its API reports it.
pub struct StoredView {
    pub subject: String,
    /// Base64, as `STREAM.MSG.GET` carries it.
    pub data_b64: String,
}

#[derive(Debug, Default)]
pub struct JsChecker {
    pub stats: JsStats,
    pub retention: Option<Retention>,
    /// Publish id → (subject, payload).
    pubs: Vec<(String, Vec<u8>)>,
    /// Stream sequence → publish id, for every sequence a PubAck or a delivery named.
    seq_of: BTreeMap<u64, usize>,
    /// PubAck'd sequences.
    acked_pubs: BTreeSet<u64>,
    last_puback: u64,
    last_puback_epoch: u64,
    /// Crashes so far.
    epoch: u64,
    /// Sequences a client asked to delete.
    deleted: BTreeSet<u64>,
    pub consumers: Vec<ConsumerModel>,
}

fn fail<T>(msg: String) -> Result<T, Violation> {
    Err(Violation(msg))
}

impl JsChecker {
    pub fn new(retention: Retention, consumers: Vec<ConsumerModel>) -> Self {
        JsChecker { retention: Some(retention), consumers, ..JsChecker::default() }
    }

    /// A publish was sent; returns its id (its payload names it).
    pub fn published(&mut self, subject: &str, payload: Vec<u8>) -> usize {
        self.stats.published += 1;
        self.pubs.push((subject.to_string(), payload));
        self.pubs.len() - 1
    }

    /// The payload a publish id will carry.
    pub fn payload_of(id: usize, pad: usize) -> Vec<u8> {
        let mut p = format!("p{id}.").into_bytes();
        p.extend(std::iter::repeat_n(b'x', pad));
        p
    }

    fn id_of_payload(payload: &[u8]) -> Option<usize> {
        let text = std::str::from_utf8(payload).ok()?;
        text.strip_prefix('p')?.split('.').next()?.parse().ok()
    }

    /// Learns (or checks) which publish a sequence holds.
    fn bind(&mut self, seq: u64, id: usize, how: &str) -> Result<(), Violation> {
        match self.seq_of.get(&seq) {
            Some(&known) if known != id => fail(format!(
                "stream sequence {seq} held publish {known}, now {how} says publish {id}"
            )),
            _ => {
                self.seq_of.insert(seq, id);
                Ok(())
            }
        }
    }

    pub fn puback(&mut self, id: usize, seq: u64) -> Result<(), Violation> {
        self.stats.pubacks += 1;
        if self.last_puback_epoch == self.epoch && self.last_puback > 0 {
            if seq != self.last_puback + 1 {
                return fail(format!(
                    "PubAck sequence {seq} after {} with no crash between (not dense)",
                    self.last_puback
                ));
            }
        } else if seq <= self.last_puback {
            return fail(format!(
                "PubAck sequence {seq} after a crash, at or below the earlier PubAck {}",
                self.last_puback
            ));
        }
        self.last_puback = seq;
        self.last_puback_epoch = self.epoch;
        self.acked_pubs.insert(seq);
        self.bind(seq, id, "its PubAck")
    }

    /// A message delivered to consumer `c`.
    pub fn delivery(
        &mut self,
        c: usize,
        sseq: u64,
        subject: &str,
        payload: &[u8],
    ) -> Result<(), Violation> {
        let Some(id) = Self::id_of_payload(payload) else {
            return fail(format!("consumer {c} got sequence {sseq} with a foreign payload"));
        };
        if self.pubs.get(id).is_none_or(|(s, p)| s != subject || p != payload) {
            return fail(format!(
                "consumer {c} got sequence {sseq} as {subject:?} with a payload never published"
            ));
        }
        self.bind(sseq, id, "a delivery")?;
        let epoch = self.epoch;
        let m = &mut self.consumers[c];
        if m.confirmed.contains(&sseq) {
            return fail(format!(
                "consumer {} redelivered sequence {sseq} after its ack was confirmed durable",
                m.name
            ));
        }
        if m.acked.get(&sseq) == Some(&epoch) {
            return fail(format!(
                "consumer {} redelivered sequence {sseq} after an ack with no crash since",
                m.name
            ));
        }
        let n = m.delivered.entry(sseq).or_insert(0);
        *n += 1;
        self.stats.deliveries += 1;
        if *n > 1 {
            self.stats.redeliveries += 1;
        }
        Ok(())
    }

    /// An ack or term of `sseq` was sent to a running server; `applied` when it answered a
    /// delivery the running incarnation made.
    pub fn ack_sent(&mut self, c: usize, sseq: u64, applied: bool) {
        let epoch = self.epoch;
        let m = &mut self.consumers[c];
        m.ack_tried.insert(sseq);
        if applied {
            m.acked.insert(sseq, epoch);
        }
    }

    /// The confirmation of an ack of `sseq` came back.
    pub fn confirmed(&mut self, c: usize, sseq: u64) {
        self.stats.confirmed_acks += 1;
        self.consumers[c].confirmed.insert(sseq);
    }

    /// The consumer reported `floor` in the same flush that confirmed one of its acks.
    pub fn durable_floor(&mut self, c: usize, floor: u64) {
        let m = &mut self.consumers[c];
        m.durable_floor = m.durable_floor.max(floor);
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn crashed(&mut self) {
        self.epoch += 1;
    }

    pub fn delete_sent(&mut self, seq: u64) {
        self.stats.deletes += 1;
        self.deleted.insert(seq);
    }

    /// Whether a delete or retention may have removed `seq` (published on `subject`).
    fn retirable(&self, seq: u64, subject: &str) -> bool {
        if self.deleted.contains(&seq) {
            return true;
        }
        match self.retention {
            Some(Retention::Limits) | None => false,
            Some(_) => self
                .consumers
                .iter()
                .filter(|c| c.wants(subject))
                .all(|c| c.ack_tried.contains(&seq)),
        }
    }

    /// The PubAck'd sequences, for the driver to read back after a recovery.
    pub fn acked_seqs(&self) -> Vec<u64> {
        self.acked_pubs.iter().copied().collect()
    }

    /// After a recovery: the stream's state and what it holds at each PubAck'd sequence.
    pub fn recovered(
        &mut self,
        first_seq: u64,
        last_seq: u64,
        messages: u64,
        held: &BTreeMap<u64, Option<StoredView>>,
    ) -> Result<(), Violation> {
        self.stats.recoveries += 1;
        let highest = self.acked_pubs.last().copied().unwrap_or(0);
        if last_seq < highest {
            return fail(format!(
                "recovered stream ends at sequence {last_seq}, below PubAck'd sequence {highest}"
            ));
        }
        if self.retention == Some(Retention::Limits)
            && self.deleted.is_empty()
            && messages > 0
            && (first_seq != 1 || messages != last_seq - first_seq + 1)
        {
            return fail(format!(
                "recovered limits stream is not dense: {messages} messages in {first_seq}..={last_seq}"
            ));
        }
        let acked: Vec<u64> = self.acked_pubs.iter().copied().collect();
        for seq in acked {
            let id = self.seq_of[&seq];
            let (subject, payload) = self.pubs[id].clone();
            match held
                .get(&seq)
                .ok_or_else(|| Violation(format!("sequence {seq} not read back")))?
            {
                Some(v) => {
                    self.stats.recovered_msgs_checked += 1;
                    let want = fjord_core::jetstream::api::base64(&payload);
                    if v.subject != subject || v.data_b64 != want {
                        return fail(format!(
                            "acknowledged sequence {seq} (publish {id}) holds another message after recovery"
                        ));
                    }
                }
                None if self.retirable(seq, &subject) => self.stats.retired += 1,
                None => {
                    return fail(format!(
                        "acknowledged publish {id} (sequence {seq}) lost after recovery"
                    ))
                }
            }
        }
        Ok(())
    }

    /// After a recovery: consumer `c` reports `floor` as its ack floor.
    pub fn recovered_floor(&mut self, c: usize, floor: u64) -> Result<(), Violation> {
        let m = &self.consumers[c];
        self.stats.floors_checked += u64::from(m.durable_floor > 0);
        if floor < m.durable_floor {
            return fail(format!(
                "consumer {} ack floor back to {floor} after recovery, below {} reported with a confirmed ack",
                m.name, m.durable_floor
            ));
        }
        Ok(())
    }

    /// At the end, with faults off and every client acking: every acknowledged publish reached
    /// every consumer that wants it, and `(num_pending, num_ack_pending)` of each are zero.
    pub fn finish(&self, left: &[(u64, u64)]) -> Result<(), Violation> {
        for (c, m) in self.consumers.iter().enumerate() {
            for &seq in self.acked_pubs.difference(&self.deleted) {
                let subject = &self.pubs[self.seq_of[&seq]].0;
                if m.wants(subject) && !m.delivered.contains_key(&seq) {
                    return fail(format!(
                        "consumer {} never got acknowledged sequence {seq}",
                        m.name
                    ));
                }
            }
            let (pending, ack_pending) = left[c];
            if pending > 0 || ack_pending > 0 {
                return fail(format!(
                    "consumer {} not done at the end: {pending} pending, {ack_pending} awaiting ack",
                    m.name
                ));
            }
        }
        Ok(())
    }
}
