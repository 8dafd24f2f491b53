//! A pull consumer's state machine: which stream sequences it has handed out, which await an
//! ack, which are due again, and the pull requests waiting for messages.
//!
//! Inputs (all carry time): `request(now, reply, NextRequest)` for `CONSUMER.MSG.NEXT`,
//! `ack(now, sseq, AckKind)` for a `$JS.ACK` reply, `tick(now)` for ack-wait expiry, request
//! expiry and idle heartbeats, and `pump(now, store, durable_seq)` after anything that may have
//! made messages deliverable. Outputs are `Outgoing` messages pushed into the caller's vector: deliveries to
//! the request's reply subject with the `$JS.ACK` reply, and the 404/408/100 status messages.
//! `poll_timeout()` says when `tick` is next needed. `dirty` is set whenever the persistent part
//! (`ConsumerState`) changed; the driver writes it before answering acks that asked for a reply.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::api::{AckPolicy, ConsumerConfig, DeliverPolicy, NextRequest, SequenceInfo};
use super::headers;
use super::Outgoing;
use crate::store::StreamStore;
use crate::time::Instant;

/// One message handed out and not yet acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub cseq: u64,
    /// How many times it was delivered.
    pub deliveries: u64,
    /// Unix nanoseconds of the last delivery.
    pub ts: i64,
}

/// What survives a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerState {
    pub delivered: SequenceInfo,
    pub ack_floor: SequenceInfo,
    /// Stream sequence → pending entry.
    pub pending: BTreeMap<u64, Pending>,
    /// The next stream sequence to deliver for the first time.
    pub next_sseq: u64,
    /// `last_per_subject`: the last message of each subject at creation, delivered before
    /// anything from `next_sseq` on.
    #[serde(default)]
    pub initial: VecDeque<u64>,
}

/// The ack bodies nats-server understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckKind {
    Ack,
    /// Redeliver, after the delay in nanoseconds if any.
    Nak(Option<u64>),
    InProgress,
    Term,
}

impl AckKind {
    /// Parses an ack body; `None` for bodies this slice does not handle (`+NXT`).
    pub fn parse(body: &[u8]) -> Option<AckKind> {
        let text = std::str::from_utf8(body).ok()?.trim();
        if text.is_empty() || text == "+ACK" || text == "+OK" {
            return Some(AckKind::Ack);
        }
        if let Some(rest) = text.strip_prefix("-NAK") {
            let rest = rest.trim();
            let delay = serde_json::from_str::<serde_json::Value>(rest)
                .ok()
                .and_then(|v| v.get("delay")?.as_u64());
            return Some(AckKind::Nak(delay));
        }
        if text.starts_with("+WPI") {
            return Some(AckKind::InProgress);
        }
        if text.starts_with("+TERM") {
            return Some(AckKind::Term);
        }
        None
    }
}

struct Waiting {
    reply: String,
    /// Messages still wanted.
    batch: u64,
    /// Byte budget left, if the request set one.
    max_bytes: Option<u64>,
    expires: Option<Instant>,
    no_wait: bool,
    delivered: u64,
    heartbeat: Option<(u64, Instant)>,
}

pub struct Consumer {
    pub stream: String,
    pub name: String,
    pub config: ConsumerConfig,
    /// Unix nanoseconds.
    pub created: i64,
    pub state: ConsumerState,
    /// Ack deadlines of pending messages (not persisted: a restart restarts the clocks).
    deadlines: BTreeMap<u64, Instant>,
    /// Pending sequences due for redelivery, lowest first (nats-server's order).
    redeliver: BTreeSet<u64>,
    waiting: VecDeque<Waiting>,
    /// Set when `state` changed and has not been written.
    pub dirty: bool,
    /// An ack confirmation waits for the next write of `state`.
    pub sync_now: bool,
    /// When `state` was last written.
    pub last_write: Instant,
    /// Last time a client pulled or acked (for ephemerals' inactive threshold).
    pub last_active: Instant,
    /// Last push delivery or heartbeat.
    last_push: Instant,
    /// Push consumers: whether anyone subscribes to the deliver subject (the driver's answer,
    /// set before each `pump`). nats-server delivers only with interest, and clients create
    /// the consumer before they subscribe, so deliveries made earlier would be lost.
    pub push_active: bool,
    /// Stream sequences this consumer is done with (acked, terminated, or delivered without
    /// ack tracking), for retention policies that remove them; drained by the manager.
    pub done: Vec<u64>,
}

impl Consumer {
    /// A new consumer positioned by its deliver policy over `store`.
    pub fn new(
        stream: &str,
        name: &str,
        config: ConsumerConfig,
        created: i64,
        store: &mut dyn StreamStore,
        now: Instant,
    ) -> Consumer {
        let filters = config.filters();
        let st = store.state();
        let mut initial = VecDeque::new();
        let next = match config.deliver_policy {
            DeliverPolicy::All => st.first_seq,
            DeliverPolicy::LastPerSubject => {
                let mut lasts: Vec<u64> = if filters.is_empty() {
                    store.subjects_state(b">").values().map(|s| s.last_seq).collect()
                } else {
                    filters
                        .iter()
                        .flat_map(|f| store.subjects_state(f.as_bytes()).into_values())
                        .map(|s| s.last_seq)
                        .collect()
                };
                lasts.sort_unstable();
                lasts.dedup();
                initial = lasts.into();
                st.last_seq + 1
            }
            DeliverPolicy::New => st.last_seq + 1,
            DeliverPolicy::Last => last_matching(store, &filters).unwrap_or(st.last_seq + 1),
            DeliverPolicy::ByStartSequence => config.opt_start_seq.unwrap_or(1),
            DeliverPolicy::ByStartTime => {
                let ts = config
                    .opt_start_time
                    .as_deref()
                    .and_then(super::api::parse_rfc3339)
                    .unwrap_or(0);
                store.seq_at_time(ts)
            }
        };
        let next = next.max(1);
        let start = initial.front().copied().unwrap_or(next);
        let state = ConsumerState {
            next_sseq: next,
            initial,
            // Like nats-server, the floors start just below where delivery starts.
            delivered: SequenceInfo { consumer_seq: 0, stream_seq: start - 1 },
            ack_floor: SequenceInfo { consumer_seq: 0, stream_seq: start - 1 },
            pending: BTreeMap::new(),
        };
        Self::recovered(stream, name, config, created, state, now)
    }

    /// A consumer from persisted state: its pending messages are due again at once, since the
    /// clients they went to may be gone and their ack deadlines were not kept.
    pub fn recovered(
        stream: &str,
        name: &str,
        config: ConsumerConfig,
        created: i64,
        state: ConsumerState,
        now: Instant,
    ) -> Consumer {
        let redeliver = state.pending.keys().copied().collect();
        Consumer {
            stream: stream.into(),
            name: name.into(),
            config,
            created,
            state,
            deadlines: BTreeMap::new(),
            redeliver,
            waiting: VecDeque::new(),
            dirty: true,
            sync_now: true,
            last_write: now,
            last_active: now,
            last_push: now,
            push_active: false,
            done: Vec::new(),
        }
    }

    fn filters(&self) -> Vec<String> {
        self.config.filters()
    }

    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn num_ack_pending(&self) -> usize {
        self.state.pending.len()
    }

    pub fn num_redelivered(&self) -> usize {
        self.state.pending.values().filter(|p| p.deliveries > 1).count()
    }

    /// Messages not yet delivered once (nats-server's `num_pending`).
    pub fn num_pending(&self, store: &dyn StreamStore) -> u64 {
        self.state.initial.len() as u64
            + pending_count(store, &self.filters(), self.state.next_sseq)
    }

    pub fn is_push(&self) -> bool {
        self.config.deliver_subject.as_deref().is_some_and(|d| !d.is_empty())
    }

    /// A `CONSUMER.MSG.NEXT` request. Returns status messages to send now (a refused request).
    pub fn request(
        &mut self,
        now: Instant,
        reply: &str,
        req: NextRequest,
        out: &mut Vec<Outgoing>,
    ) {
        self.last_active = now;
        let batch = req.batch.unwrap_or(1).max(1) as u64;
        if self.config.max_batch > 0 && batch > self.config.max_batch as u64 {
            let hdr = headers::status(
                409,
                &format!("Exceeded MaxRequestBatch of {}", self.config.max_batch),
                &[],
            );
            out.push(Outgoing::status(reply, hdr));
            return;
        }
        if self.waiting.len() as i64 >= self.config.max_waiting {
            out.push(Outgoing::status(reply, headers::status(409, "Exceeded MaxWaiting", &[])));
            return;
        }
        let expires =
            req.expires.filter(|e| *e > 0).map(|e| now + std::time::Duration::from_nanos(e as u64));
        let heartbeat = req
            .idle_heartbeat
            .filter(|h| *h > 0)
            .map(|h| (h as u64, now + std::time::Duration::from_nanos(h as u64)));
        self.waiting.push_back(Waiting {
            reply: reply.to_string(),
            batch,
            max_bytes: req.max_bytes.filter(|b| *b > 0).map(|b| b as u64),
            expires,
            no_wait: req.no_wait.unwrap_or(false),
            delivered: 0,
            heartbeat,
        });
    }

    /// The consumer (or its stream) is being deleted: waiting pull requests are told so, with
    /// nats-server's `409 Consumer Deleted`, instead of timing out.
    pub fn close(&mut self, out: &mut Vec<Outgoing>) {
        for w in self.waiting.drain(..) {
            out.push(Outgoing::status(&w.reply, headers::status(409, "Consumer Deleted", &[])));
        }
    }

    /// An ack for stream sequence `sseq`. Returns whether it changed anything.
    pub fn ack(&mut self, now: Instant, sseq: u64, kind: AckKind) -> bool {
        self.last_active = now;
        if !self.state.pending.contains_key(&sseq) {
            return false;
        }
        match kind {
            AckKind::Ack if self.config.ack_policy == AckPolicy::All => {
                let acked: Vec<u64> = self.state.pending.range(..=sseq).map(|(s, _)| *s).collect();
                for s in acked {
                    self.forget(s);
                    self.done.push(s);
                }
            }
            AckKind::Ack | AckKind::Term => {
                self.forget(sseq);
                self.done.push(sseq);
            }
            AckKind::Nak(delay) => match delay.filter(|d| *d > 0) {
                Some(d) => {
                    self.deadlines.insert(sseq, now + std::time::Duration::from_nanos(d));
                }
                None => {
                    self.deadlines.remove(&sseq);
                    self.redeliver.insert(sseq);
                }
            },
            AckKind::InProgress => {
                self.deadlines.insert(sseq, now + self.ack_wait());
            }
        }
        self.dirty = true;
        true
    }

    fn ack_wait(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.config.ack_wait.max(0) as u64)
    }

    fn forget(&mut self, sseq: u64) {
        self.state.pending.remove(&sseq);
        self.deadlines.remove(&sseq);
        self.redeliver.remove(&sseq);
        self.update_ack_floor();
    }

    /// The floor is everything below the oldest unacknowledged message (or everything
    /// delivered when nothing is pending), as nats-server reports it.
    fn update_ack_floor(&mut self) {
        let floor = match self.state.pending.iter().next() {
            Some((sseq, p)) => SequenceInfo {
                consumer_seq: p.cseq.saturating_sub(1),
                stream_seq: sseq.saturating_sub(1),
            },
            None => self.state.delivered,
        };
        // The floor never goes back.
        if floor.stream_seq >= self.state.ack_floor.stream_seq {
            self.state.ack_floor = floor;
        }
    }

    fn push_heartbeat_due(&self) -> Option<Instant> {
        let hb = self.config.idle_heartbeat;
        (self.is_push() && self.push_active && hb > 0)
            .then(|| self.last_push + std::time::Duration::from_nanos(hb as u64))
    }

    /// Ack deadlines, request expiry and heartbeats due at `now`.
    pub fn tick(&mut self, now: Instant, store: &dyn StreamStore, out: &mut Vec<Outgoing>) {
        if let Some(due) = self.push_heartbeat_due() {
            if due <= now {
                let target = self.config.deliver_subject.clone().unwrap_or_default();
                // As nats-server: the last delivered sequences ride along so an ordered
                // consumer can tell a gap.
                let hdr = headers::status(
                    100,
                    "Idle Heartbeat",
                    &[
                        ("Nats-Last-Consumer", self.state.delivered.consumer_seq.to_string()),
                        ("Nats-Last-Stream", self.state.delivered.stream_seq.to_string()),
                    ],
                );
                out.push(Outgoing::status(&target, hdr));
                self.last_push = now;
            }
        }
        let due: Vec<u64> =
            self.deadlines.iter().filter(|(_, d)| **d <= now).map(|(s, _)| *s).collect();
        for sseq in due {
            self.deadlines.remove(&sseq);
            self.redeliver.insert(sseq);
        }
        let filters = self.filters();
        let mut kept = VecDeque::with_capacity(self.waiting.len());
        while let Some(mut w) = self.waiting.pop_front() {
            if w.expires.is_some_and(|e| e <= now) {
                out.push(Outgoing::status(
                    &w.reply,
                    timeout_status(store, &filters, self.state.next_sseq),
                ));
                continue;
            }
            if let Some((every, next)) = w.heartbeat {
                if next <= now {
                    out.push(Outgoing::status(
                        &w.reply,
                        headers::status(100, "Idle Heartbeat", &[]),
                    ));
                    w.heartbeat = Some((every, now + std::time::Duration::from_nanos(every)));
                }
            }
            kept.push_back(w);
        }
        self.waiting = kept;
    }

    /// When `tick` is next needed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let deadline = self.deadlines.values().min().copied();
        let waits =
            self.waiting.iter().flat_map(|w| [w.expires, w.heartbeat.map(|h| h.1)]).flatten().min();
        [deadline, waits, self.push_heartbeat_due()].into_iter().flatten().min()
    }

    /// Hands out what is deliverable (durable and wanted) to the waiting requests, in order,
    /// then answers `no_wait` requests that could not be filled.
    pub fn pump(
        &mut self,
        now: Instant,
        wall: i64,
        store: &mut dyn StreamStore,
        durable_seq: u64,
        out: &mut Vec<Outgoing>,
    ) {
        let filters = self.filters();
        if let Some(target) = self.config.deliver_subject.clone().filter(|d| !d.is_empty()) {
            self.push(now, wall, store, durable_seq, &target, &filters, out);
            return;
        }
        let mut pending_left = PendingLeft::default();
        while let Some((budget, delivered)) =
            self.waiting.front().map(|w| (w.max_bytes, w.delivered))
        {
            let Some(msg) = self.next_message(store, &filters, durable_seq) else { break };
            let size = (msg.subject.len() + msg.headers.len() + msg.payload.len()) as u64;
            if let Some(budget) = budget {
                if size > budget && delivered > 0 {
                    // Finished by its byte budget: put the message back for the next request.
                    if let Some(p) = self.state.pending.get(&msg.seq) {
                        if p.deliveries > 0 {
                            self.redeliver.insert(msg.seq);
                        }
                    }
                    let _ = self.waiting.pop_front();
                    continue;
                }
            }
            let entry = self.record_delivery(now, wall, msg.seq);
            let pending = pending_left.get(store, self, entry.deliveries);
            let ack = format!(
                "$JS.ACK.{}.{}.{}.{}.{}.{}.{}",
                self.stream, self.name, entry.deliveries, msg.seq, entry.cseq, msg.ts, pending
            );
            let Some(w) = self.waiting.front_mut() else { break };
            out.push(Outgoing {
                to: w.reply.clone(),
                subject: String::from_utf8_lossy(&msg.subject).into_owned(),
                reply: Some(ack),
                headers: (!msg.headers.is_empty()).then(|| msg.headers.to_vec()),
                payload: msg.payload.clone(),
            });
            w.delivered += 1;
            w.batch -= 1;
            if let Some(b) = w.max_bytes.as_mut() {
                *b = b.saturating_sub(size);
            }
            if w.batch == 0 || w.max_bytes == Some(0) {
                let _ = self.waiting.pop_front();
            }
        }
        // `no_wait` requests end now: 404 if they got nothing, 408 if only part.
        let mut kept = VecDeque::with_capacity(self.waiting.len());
        while let Some(w) = self.waiting.pop_front() {
            if w.no_wait {
                let hdr = if w.delivered == 0 {
                    headers::status(404, "No Messages", &[])
                } else {
                    timeout_status(store, &filters, self.state.next_sseq)
                };
                out.push(Outgoing::status(&w.reply, hdr));
            } else {
                kept.push_back(w);
            }
        }
        self.waiting = kept;
    }

    /// Push delivery: everything deliverable goes to the deliver subject now.
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        now: Instant,
        wall: i64,
        store: &mut dyn StreamStore,
        durable_seq: u64,
        target: &str,
        filters: &[String],
        out: &mut Vec<Outgoing>,
    ) {
        if !self.push_active {
            return;
        }
        let mut pending_left = PendingLeft::default();
        while let Some(msg) = self.next_message(store, filters, durable_seq) {
            let entry = self.record_delivery(now, wall, msg.seq);
            let pending = pending_left.get(store, self, entry.deliveries);
            let ack = format!(
                "$JS.ACK.{}.{}.{}.{}.{}.{}.{}",
                self.stream, self.name, entry.deliveries, msg.seq, entry.cseq, msg.ts, pending
            );
            let (hdrs, payload) = if self.config.headers_only {
                let size = msg.payload.len().to_string();
                (Some(headers::with_extra(&msg.headers, &[("Nats-Msg-Size", size)])), Bytes::new())
            } else {
                ((!msg.headers.is_empty()).then(|| msg.headers.to_vec()), msg.payload.clone())
            };
            out.push(Outgoing {
                to: target.to_string(),
                subject: String::from_utf8_lossy(&msg.subject).into_owned(),
                reply: Some(ack),
                headers: hdrs,
                payload,
            });
            self.last_push = now;
        }
    }

    /// The next message to hand out: a due redelivery first, then the next new one at or below
    /// `durable_seq`, subject to max_ack_pending and max_deliver.
    fn next_message(
        &mut self,
        store: &mut dyn StreamStore,
        filters: &[String],
        durable_seq: u64,
    ) -> Option<crate::store::StoredMsg> {
        while let Some(sseq) = self.redeliver.pop_first() {
            let Some(p) = self.state.pending.get(&sseq) else { continue };
            if self.config.max_deliver > 0 && p.deliveries >= self.config.max_deliver as u64 {
                // Out of deliveries: it stays unacknowledged but is never sent again, as in
                // nats-server (which then advises MAX_DELIVERIES).
                continue;
            }
            match store.load(sseq) {
                Ok(Some(m)) => return Some(m),
                // Gone from the stream (limits, delete): nothing left to deliver.
                _ => self.forget(sseq),
            }
        }
        let tracked = self.config.ack_policy != AckPolicy::None;
        if tracked
            && self.config.max_ack_pending > 0
            && self.state.pending.len() as i64 >= self.config.max_ack_pending
        {
            return None;
        }
        while let Some(&seq) = self.state.initial.front() {
            if seq > durable_seq {
                return None;
            }
            self.state.initial.pop_front();
            if let Ok(Some(m)) = store.load(seq) {
                return Some(m);
            }
        }
        let msg = next_matching(store, filters, self.state.next_sseq)?;
        if msg.seq > durable_seq {
            return None;
        }
        Some(msg)
    }

    fn record_delivery(&mut self, now: Instant, wall: i64, sseq: u64) -> Pending {
        self.dirty = true;
        let tracked = self.config.ack_policy != AckPolicy::None;
        let deadline = now + self.ack_wait();
        // Every delivery, redeliveries included, takes the next consumer sequence, as in
        // nats-server (`o.dseq++` in deliverMsg).
        self.state.delivered.consumer_seq += 1;
        let cseq = self.state.delivered.consumer_seq;
        if let Some(p) = self.state.pending.get_mut(&sseq) {
            p.deliveries += 1;
            p.ts = wall;
            p.cseq = cseq;
            let p = *p;
            self.deadlines.insert(sseq, deadline);
            return p;
        }
        self.state.delivered.stream_seq = self.state.delivered.stream_seq.max(sseq);
        self.state.next_sseq = self.state.next_sseq.max(sseq + 1);
        let entry = Pending { cseq, deliveries: 1, ts: wall };
        if tracked {
            self.state.pending.insert(sseq, entry);
            self.deadlines.insert(sseq, deadline);
        } else {
            self.update_ack_floor();
            self.done.push(sseq);
        }
        entry
    }
}

/// `num_pending` for the ack subjects of one pump: counted once (it is linear in the backlog)
/// and then decremented per first delivery, since the store does not change during a pump.
#[derive(Default)]
struct PendingLeft(Option<u64>);

impl PendingLeft {
    fn get(&mut self, store: &dyn StreamStore, c: &Consumer, deliveries: u64) -> u64 {
        match self.0.as_mut() {
            Some(n) => {
                if deliveries == 1 {
                    *n = n.saturating_sub(1);
                }
                *n
            }
            None => *self.0.insert(c.num_pending(store)),
        }
    }
}

fn next_matching(
    store: &mut dyn StreamStore,
    filters: &[String],
    start: u64,
) -> Option<crate::store::StoredMsg> {
    if filters.is_empty() {
        return store.load_next(b">", start).ok().flatten();
    }
    let mut best: Option<crate::store::StoredMsg> = None;
    for f in filters {
        if let Ok(Some(m)) = store.load_next(f.as_bytes(), start) {
            if best.as_ref().is_none_or(|b| m.seq < b.seq) {
                best = Some(m);
            }
        }
    }
    best
}

fn last_matching(store: &mut dyn StreamStore, filters: &[String]) -> Option<u64> {
    if filters.is_empty() {
        return store.load_last(b">").ok().flatten().map(|m| m.seq);
    }
    filters.iter().filter_map(|f| store.load_last(f.as_bytes()).ok().flatten()).map(|m| m.seq).max()
}

fn pending_count(store: &dyn StreamStore, filters: &[String], start: u64) -> u64 {
    if filters.is_empty() {
        return store.num_pending(b">", start, false);
    }
    filters.iter().map(|f| store.num_pending(f.as_bytes(), start, false)).sum()
}

fn timeout_status(store: &dyn StreamStore, filters: &[String], next: u64) -> Vec<u8> {
    let pending = pending_count(store, filters, next);
    headers::status(
        408,
        "Request Timeout",
        &[("Nats-Pending-Messages", pending.to_string()), ("Nats-Pending-Bytes", "0".into())],
    )
}

impl Outgoing {
    fn status(reply: &str, headers: Vec<u8>) -> Outgoing {
        Outgoing {
            to: reply.to_string(),
            subject: reply.to_string(),
            reply: None,
            headers: Some(headers),
            payload: Bytes::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Limits, MemStore};
    use std::time::Duration;

    const SEC: Duration = Duration::from_secs(1);

    fn setup(n: u64, config: ConsumerConfig) -> (MemStore, Consumer) {
        let mut store = MemStore::new(Limits::default());
        for i in 0..n {
            store.store(format!("s.{i}").as_bytes(), b"", b"x", i as i64, None).unwrap();
        }
        let config = config.normalize().unwrap();
        let c = Consumer::new("S", "C", config, 0, &mut store, Instant::ZERO);
        (store, c)
    }

    fn explicit() -> ConsumerConfig {
        ConsumerConfig {
            durable_name: Some("C".into()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: 1_000_000_000,
            ..Default::default()
        }
    }

    fn pull(
        c: &mut Consumer,
        store: &mut MemStore,
        now: Instant,
        batch: i64,
        no_wait: bool,
    ) -> Vec<Outgoing> {
        let mut out = Vec::new();
        let req = NextRequest { batch: Some(batch), no_wait: Some(no_wait), ..Default::default() };
        c.request(now, "inbox", req, &mut out);
        let durable = store.state().last_seq;
        c.pump(now, 0, store, durable, &mut out);
        out
    }

    fn seqs(out: &[Outgoing]) -> Vec<u64> {
        out.iter()
            .filter_map(|o| o.reply.as_deref())
            .map(|r| r.split('.').nth(5).unwrap().parse().unwrap())
            .collect()
    }

    #[test]
    fn ack_subject_as_nats_server_formats_it() {
        let (mut store, mut c) = setup(2, explicit());
        let out = pull(&mut c, &mut store, Instant::ZERO, 1, false);
        assert_eq!(out[0].reply.as_deref(), Some("$JS.ACK.S.C.1.1.1.0.1"));
        assert_eq!(out[0].subject, "s.0");
        assert_eq!(out[0].to, "inbox");
    }

    #[test]
    fn nothing_above_the_durable_sequence_is_delivered() {
        let (mut store, mut c) = setup(3, explicit());
        let mut out = Vec::new();
        c.request(
            Instant::ZERO,
            "inbox",
            NextRequest { batch: Some(5), ..Default::default() },
            &mut out,
        );
        c.pump(Instant::ZERO, 0, &mut store, 1, &mut out);
        assert_eq!(seqs(&out), vec![1]);
        c.pump(Instant::ZERO, 0, &mut store, 3, &mut out);
        assert_eq!(seqs(&out), vec![1, 2, 3], "the waiting request is served once durable");
    }

    #[test]
    fn unacked_messages_come_back_after_ack_wait_and_floor_moves() {
        let (mut store, mut c) = setup(3, explicit());
        assert_eq!(seqs(&pull(&mut c, &mut store, Instant::ZERO, 3, true)), vec![1, 2, 3]);
        assert!(c.ack(Instant::ZERO, 1, AckKind::Ack));
        assert_eq!(c.state.ack_floor, SequenceInfo { consumer_seq: 1, stream_seq: 1 });
        assert_eq!(c.poll_timeout(), Some(Instant::ZERO + SEC));
        let mut out = Vec::new();
        c.tick(Instant::ZERO + SEC, &store, &mut out);
        let out = pull(&mut c, &mut store, Instant::ZERO + SEC, 5, true);
        assert_eq!(seqs(&out), vec![2, 3]);
        assert!(
            out[0].reply.as_deref().unwrap().starts_with("$JS.ACK.S.C.2.2.4."),
            "second delivery, new consumer seq"
        );
        assert_eq!(c.num_redelivered(), 2);
        c.ack(Instant::ZERO, 3, AckKind::Ack);
        c.ack(Instant::ZERO, 2, AckKind::Ack);
        assert_eq!(c.num_ack_pending(), 0);
        assert_eq!(c.state.ack_floor, SequenceInfo { consumer_seq: 5, stream_seq: 3 });
    }

    #[test]
    fn nak_redelivers_at_once_and_term_never() {
        let (mut store, mut c) = setup(2, explicit());
        pull(&mut c, &mut store, Instant::ZERO, 2, true);
        c.ack(Instant::ZERO, 1, AckKind::Nak(None));
        c.ack(Instant::ZERO, 2, AckKind::Term);
        assert_eq!(seqs(&pull(&mut c, &mut store, Instant::ZERO, 5, true)), vec![1]);
        assert_eq!(c.num_ack_pending(), 1);
    }

    #[test]
    fn in_progress_pushes_the_deadline() {
        let (mut store, mut c) = setup(1, explicit());
        pull(&mut c, &mut store, Instant::ZERO, 1, true);
        c.ack(Instant::ZERO + SEC / 2, 1, AckKind::InProgress);
        let mut out = Vec::new();
        c.tick(Instant::ZERO + SEC, &store, &mut out);
        assert!(seqs(&pull(&mut c, &mut store, Instant::ZERO + SEC, 1, true)).is_empty());
        c.tick(Instant::ZERO + SEC * 2, &store, &mut out);
        assert_eq!(seqs(&pull(&mut c, &mut store, Instant::ZERO + SEC * 2, 1, true)), vec![1]);
    }

    #[test]
    fn max_deliver_stops_redelivery() {
        let (mut store, mut c) = setup(1, ConsumerConfig { max_deliver: 2, ..explicit() });
        let mut out = Vec::new();
        for round in 0..4u32 {
            let now = Instant::ZERO + SEC * round;
            c.tick(now, &store, &mut out);
            let got = seqs(&pull(&mut c, &mut store, now, 1, true));
            assert_eq!(got.len(), usize::from(round < 2), "round {round}");
        }
    }

    #[test]
    fn max_ack_pending_holds_new_messages() {
        let (mut store, mut c) = setup(3, ConsumerConfig { max_ack_pending: 1, ..explicit() });
        assert_eq!(seqs(&pull(&mut c, &mut store, Instant::ZERO, 3, true)), vec![1]);
        c.ack(Instant::ZERO, 1, AckKind::Ack);
        assert_eq!(seqs(&pull(&mut c, &mut store, Instant::ZERO, 3, true)), vec![2]);
    }

    #[test]
    fn no_wait_answers_404_when_empty_and_408_when_short() {
        let (mut store, mut c) = setup(1, explicit());
        let out = pull(&mut c, &mut store, Instant::ZERO, 2, true);
        assert_eq!(seqs(&out), vec![1]);
        let last = out.last().unwrap().headers.clone().unwrap();
        assert!(last.starts_with(b"NATS/1.0 408 Request Timeout\r\n"));
        let out = pull(&mut c, &mut store, Instant::ZERO, 2, true);
        assert_eq!(out[0].headers.as_deref(), Some(&b"NATS/1.0 404 No Messages\r\n\r\n"[..]));
        assert_eq!(c.num_waiting(), 0);
    }

    #[test]
    fn expiring_request_times_out_with_408() {
        let (mut store, mut c) = setup(0, explicit());
        let mut out = Vec::new();
        let req =
            NextRequest { batch: Some(1), expires: Some(1_000_000_000), ..Default::default() };
        c.request(Instant::ZERO, "inbox", req, &mut out);
        c.pump(Instant::ZERO, 0, &mut store, 0, &mut out);
        assert!(out.is_empty());
        assert_eq!(c.poll_timeout(), Some(Instant::ZERO + SEC));
        c.tick(Instant::ZERO + SEC, &store, &mut out);
        assert!(out[0].headers.as_ref().unwrap().starts_with(b"NATS/1.0 408"));
        assert_eq!(c.num_waiting(), 0);
    }

    #[test]
    fn deliver_policies() {
        let new = ConsumerConfig { deliver_policy: DeliverPolicy::New, ..explicit() };
        let (_, c) = setup(3, new);
        assert_eq!(c.state.next_sseq, 4);
        let last = ConsumerConfig { deliver_policy: DeliverPolicy::Last, ..explicit() };
        let (_, c) = setup(3, last);
        assert_eq!(c.state.next_sseq, 3);
        let by_seq = ConsumerConfig {
            deliver_policy: DeliverPolicy::ByStartSequence,
            opt_start_seq: Some(2),
            ..explicit()
        };
        let (_, c) = setup(3, by_seq);
        assert_eq!(c.state.next_sseq, 2);
    }

    #[test]
    fn ack_bodies() {
        assert_eq!(AckKind::parse(b""), Some(AckKind::Ack));
        assert_eq!(AckKind::parse(b"+ACK"), Some(AckKind::Ack));
        assert_eq!(AckKind::parse(b"-NAK"), Some(AckKind::Nak(None)));
        assert_eq!(AckKind::parse(b"-NAK {\"delay\":5}"), Some(AckKind::Nak(Some(5))));
        assert_eq!(AckKind::parse(b"+WPI"), Some(AckKind::InProgress));
        assert_eq!(AckKind::parse(b"+TERM reason"), Some(AckKind::Term));
        assert_eq!(AckKind::parse(b"bogus"), None);
    }

    #[test]
    fn push_delivers_only_with_interest_last_per_subject_first() {
        let mut store = MemStore::new(Limits::default());
        for subject in ["k.a", "k.b", "k.a"] {
            store.store(subject.as_bytes(), b"", b"xy", 0, None).unwrap();
        }
        let config = ConsumerConfig {
            deliver_subject: Some("dlv".into()),
            deliver_policy: DeliverPolicy::LastPerSubject,
            headers_only: true,
            ..Default::default()
        }
        .normalize()
        .unwrap();
        let mut c = Consumer::new("S", "C", config, 0, &mut store, Instant::ZERO);
        assert_eq!(c.num_pending(&store), 2);
        let mut out = Vec::new();
        c.pump(Instant::ZERO, 0, &mut store, 3, &mut out);
        assert!(out.is_empty(), "no subscriber on the deliver subject yet");
        c.push_active = true;
        c.pump(Instant::ZERO, 0, &mut store, 3, &mut out);
        assert_eq!(seqs(&out), vec![2, 3]);
        assert_eq!(out[0].to, "dlv");
        assert!(out[0].payload.is_empty());
        assert_eq!(headers::get(out[0].headers.as_deref().unwrap(), "Nats-Msg-Size"), Some("2"));
        assert!(out[1].reply.as_deref().unwrap().ends_with(".0"), "nothing pending after the last");
        store.store(b"k.c", b"", b"z", 0, None).unwrap();
        c.pump(Instant::ZERO, 0, &mut store, 4, &mut out);
        assert_eq!(seqs(&out), vec![2, 3, 4]);
    }
}
