//! A consumer's state machine (pull and push): which stream sequences it has handed out, which
//! await an ack, which are due again, the pull requests waiting for messages, and the pacing of
//! push deliveries (flow control, replay original, rate limit) and pauses.
//!
//! Inputs (all carry time): `request(now, reply, NextRequest)` for `CONSUMER.MSG.NEXT`,
//! `ack(now, sseq, dseq, AckKind)` for a `$JS.ACK` reply (its answer says whether nats-server
//! would confirm it), `flow_control_answered(subject)` for a `$JS.FC` reply, `tick(now)` for
//! ack-wait expiry, request expiry and idle heartbeats, and `pump(now, wall, store, durable_seq)`
//! after anything that may have made messages deliverable. Outputs are `Outgoing` messages
//! pushed into the caller's vector: deliveries with the `$JS.ACK` reply, and the 100/404/408/409
//! status messages. `poll_timeout()` says when `tick` (or a `pump`, for pauses and pacing) is
//! next needed. `dirty` is set whenever the persistent part (`ConsumerState`) changed; the
//! driver writes it before answering acks that asked for a reply. `done` lists what retention
//! may now remove, and `needs` answers whether this consumer still wants a message.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::api::{
    AckPolicy, ConsumerConfig, DeliverPolicy, NextRequest, ReplayPolicy, SequenceInfo,
};
use super::headers;
use super::Outgoing;
use crate::store::StreamStore;
use crate::time::Instant;

/// One message handed out and not yet acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The consumer sequence of its first delivery: nats-server keeps it across redeliveries
    /// and moves the ack floor by it.
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
    /// Messages out of deliveries (max_deliver) and never acked: no longer pending, never sent
    /// again, but still counted as redelivered and still of interest to this consumer (an
    /// interest-retention stream keeps them), as nats-server's redelivery counts do. Stream
    /// sequence → deliveries.
    #[serde(default)]
    pub exhausted: BTreeMap<u64, u64>,
}

/// The ack bodies nats-server understands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AckKind {
    Ack,
    /// Redeliver, after the delay in nanoseconds if any.
    Nak(Option<u64>),
    InProgress,
    /// Never redeliver (the reason only feeds nats-server's advisories).
    Term,
    /// `+NXT`: ack, then the rest of the body is a `CONSUMER.MSG.NEXT` request whose replies go
    /// to the ack's reply subject.
    Next(String),
}

impl AckKind {
    /// Parses an ack body as nats-server does (`processAck`): `None` for bodies it ignores.
    pub fn parse(body: &[u8]) -> Option<AckKind> {
        let text = std::str::from_utf8(body).ok()?;
        if text.is_empty() || text == "+ACK" || text == "+OK" {
            return Some(AckKind::Ack);
        }
        if let Some(rest) = text.strip_prefix("+NXT") {
            return Some(AckKind::Next(rest.trim().to_string()));
        }
        if let Some(rest) = text.strip_prefix("-NAK") {
            return Some(AckKind::Nak(nak_delay(rest.trim())));
        }
        // Only the exact body: nats-server compares `+WPI` with bytes.Equal.
        if text == "+WPI" {
            return Some(AckKind::InProgress);
        }
        if text.starts_with("+TERM") {
            return Some(AckKind::Term);
        }
        None
    }

    /// Whether nats-server answers an ack with this body when it carries a reply subject
    /// (`+NXT` answers with messages instead).
    pub fn confirms(&self) -> bool {
        !matches!(self, AckKind::Next(_))
    }
}

/// A `-NAK` delay: `{"delay": <ns>}` or a Go duration (`"500ms"`); anything else (or none) is a
/// plain NAK, as in nats-server.
fn nak_delay(arg: &str) -> Option<u64> {
    if arg.is_empty() {
        return None;
    }
    if arg.starts_with('{') {
        let v = serde_json::from_str::<serde_json::Value>(arg).ok()?;
        return v.get("delay")?.as_i64().map(|d| d.max(0) as u64);
    }
    crate::time::parse_go_duration(arg).ok().map(|d| d.as_nanos() as u64)
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
    /// While paused (`pause_until` in the future), when delivery resumes on the monotonic
    /// clock; set by `refresh_pause`.
    resume_at: Option<Instant>,
    fc: FlowControl,
    pacing: Pacing,
}

/// The burst of the rate limiter: nats-server uses the largest message allowed, by default
/// the 1 MiB max payload.
const RATE_LIMIT_BURST: f64 = 1024.0 * 1024.0;

/// Delivery pacing for replay `original` and `rate_limit_bps`.
#[derive(Debug, Default)]
struct Pacing {
    /// The stored timestamp and delivery time of the last delivery.
    last: Option<(i64, Instant)>,
    /// Token bucket in bytes, as of `refilled` (full before the first delivery).
    tokens: f64,
    refilled: Option<Instant>,
    /// Nothing is delivered before then.
    hold_until: Option<Instant>,
}

impl Pacing {
    fn tokens_at(&self, now: Instant, rate: f64) -> f64 {
        match self.refilled {
            None => RATE_LIMIT_BURST,
            Some(t) => {
                let refill = now.saturating_since(t).as_secs_f64() * rate;
                (self.tokens + refill).min(RATE_LIMIT_BURST)
            }
        }
    }
}

/// The largest flow-control window (nats-server's `JsFlowControlMaxPending`); it starts at a
/// sixteenth of it and doubles with each answered request.
const FC_MAX_PENDING: u64 = 32 * 1024 * 1024;

/// Push flow control as nats-server runs it: delivered bytes are counted; past half the window
/// a `100 FlowControl Request` goes out with a `$JS.FC` reply subject, past the whole window
/// delivery stalls until the client answers it.
#[derive(Debug)]
struct FlowControl {
    pending_bytes: u64,
    window: u64,
    /// The outstanding request's reply subject and the bytes its answer releases.
    outstanding: Option<(String, u64)>,
    /// Numbers the requests (their subjects' last token).
    sent: u64,
}

impl Default for FlowControl {
    fn default() -> Self {
        FlowControl { pending_bytes: 0, window: FC_MAX_PENDING / 16, outstanding: None, sent: 0 }
    }
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
            exhausted: BTreeMap::new(),
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
            resume_at: None,
            fc: FlowControl::default(),
            pacing: Pacing::default(),
        }
    }

    /// A client answered a flow-control request (a message on its `$JS.FC` subject): only the
    /// latest one counts. Returns whether delivery may go on.
    pub fn flow_control_answered(&mut self, subject: &str) -> bool {
        if self.fc.outstanding.as_ref().is_none_or(|(id, _)| id != subject) {
            return false;
        }
        let (_, released) = self.fc.outstanding.take().unwrap_or_default();
        self.fc.window = (self.fc.window * 2).min(FC_MAX_PENDING);
        self.fc.pending_bytes = self.fc.pending_bytes.saturating_sub(released);
        true
    }

    fn stalled(&self) -> bool {
        self.config.flow_control && self.fc.pending_bytes > self.fc.window
    }

    /// After a push delivery of `size` bytes (deliver subject, ack subject, headers, payload,
    /// as nats-server counts): maybe ask for flow control.
    fn count_for_flow_control(&mut self, size: u64, target: &str, out: &mut Vec<Outgoing>) {
        if !self.config.flow_control {
            return;
        }
        self.fc.pending_bytes += size;
        match &mut self.fc.outstanding {
            None if self.fc.pending_bytes > self.fc.window / 2 => {
                self.fc.sent += 1;
                let id = format!("$JS.FC.{}.{}.{}", self.stream, self.name, base62(self.fc.sent));
                out.push(Outgoing {
                    to: target.to_string(),
                    subject: target.to_string(),
                    reply: Some(id.clone()),
                    headers: Some(headers::status(100, "FlowControl Request", &[])),
                    payload: Bytes::new(),
                });
                self.fc.outstanding = Some((id, self.fc.pending_bytes));
            }
            Some((_, covered)) if self.fc.pending_bytes - *covered >= self.fc.window => {
                *covered += size;
            }
            _ => {}
        }
    }

    /// Re-reads `pause_until` against the clocks: call after the config is set or changed.
    pub fn refresh_pause(&mut self, now: Instant, wall: i64) {
        self.resume_at = self
            .config
            .pause_until_nanos()
            .filter(|until| *until > wall)
            .map(|until| now + std::time::Duration::from_nanos((until - wall) as u64));
    }

    /// Nanoseconds until delivery resumes, if paused.
    pub fn pause_remaining(&self, now: Instant) -> Option<u64> {
        let at = self.resume_at?;
        (at > now).then(|| at.saturating_since(now).as_nanos() as u64)
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

    /// Messages delivered more than once and not yet acked, out-of-deliveries ones included
    /// (nats-server's `len(o.rdc)`).
    pub fn num_redelivered(&self) -> usize {
        if self.config.max_deliver == 1 {
            // nats-server reports none when redelivery is off, though it tracks them.
            return 0;
        }
        self.state.pending.values().filter(|p| p.deliveries > 1).count()
            + self.state.exhausted.len()
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

    /// An ack for stream sequence `sseq`, delivered as consumer sequence `dseq` (both from the
    /// `$JS.ACK` subject). Returns whether nats-server would confirm it to the ack's reply
    /// subject (`processAck`): acks and terms of messages never delivered, and acks on an
    /// `ack_policy: none` consumer, go unanswered; NAK and WPI are always answered.
    pub fn ack(&mut self, now: Instant, sseq: u64, dseq: u64, kind: &AckKind) -> bool {
        self.last_active = now;
        match kind {
            AckKind::Ack | AckKind::Term | AckKind::Next(_) => self.acked(sseq, dseq),
            AckKind::Nak(delay) => {
                if self.state.pending.contains_key(&sseq) {
                    match delay {
                        Some(d) => {
                            self.redeliver.remove(&sseq);
                            self.deadlines.insert(sseq, now + std::time::Duration::from_nanos(*d));
                        }
                        None => {
                            self.deadlines.remove(&sseq);
                            self.redeliver.insert(sseq);
                        }
                    }
                    self.dirty = true;
                }
                true
            }
            AckKind::InProgress => {
                if let Some(p) = self.state.pending.get(&sseq) {
                    let wait = self.wait_for(p.deliveries);
                    self.deadlines.insert(sseq, now + wait);
                }
                true
            }
        }
    }

    fn acked(&mut self, sseq: u64, dseq: u64) -> bool {
        if self.config.ack_policy == AckPolicy::None || sseq >= self.state.next_sseq {
            return false;
        }
        self.dirty = true;
        if self.config.ack_policy == AckPolicy::All {
            if sseq <= self.state.ack_floor.stream_seq {
                return true;
            }
            let acked: Vec<u64> = self.state.pending.range(..=sseq).map(|(s, _)| *s).collect();
            for s in acked {
                self.drop_pending(s);
                self.done.push(s);
            }
            let spent: Vec<u64> = self.state.exhausted.range(..=sseq).map(|(s, _)| *s).collect();
            for s in spent {
                self.state.exhausted.remove(&s);
                self.done.push(s);
            }
            self.state.ack_floor = SequenceInfo { consumer_seq: dseq, stream_seq: sseq };
            return true;
        }
        if let Some(p) = self.drop_pending(sseq) {
            self.move_ack_floor(p.cseq, sseq);
        }
        self.state.exhausted.remove(&sseq);
        self.done.push(sseq);
        true
    }

    /// How long the consumer waits for an ack of a message's `deliveries`-th delivery: the
    /// backoff entry for it (the last one once they run out), else `ack_wait`.
    fn wait_for(&self, deliveries: u64) -> std::time::Duration {
        let backoff = &self.config.backoff;
        let nanos = match backoff.len() {
            0 => self.config.ack_wait,
            n => backoff[(deliveries.max(1) as usize - 1).min(n - 1)],
        };
        std::time::Duration::from_nanos(nanos.max(0) as u64)
    }

    fn drop_pending(&mut self, sseq: u64) -> Option<Pending> {
        self.deadlines.remove(&sseq);
        self.redeliver.remove(&sseq);
        self.state.pending.remove(&sseq)
    }

    /// Out of deliveries: leaves pending without moving the ack floor (what nats-server 2.15.1
    /// reports), and is never sent again.
    fn exhaust(&mut self, sseq: u64) {
        if let Some(p) = self.drop_pending(sseq) {
            self.state.exhausted.insert(sseq, p.deliveries);
            self.dirty = true;
        }
    }

    /// Whether this consumer still needs stream message `sseq` on `subject` (nats-server's
    /// `needAck`): an interest-retention stream removes a message once no consumer does.
    pub fn needs(&self, sseq: u64, subject: &str) -> bool {
        let filters = self.filters();
        if !filters.is_empty()
            && !filters.iter().any(|f| crate::subject::matches(f.as_bytes(), subject.as_bytes()))
        {
            return false;
        }
        if self.state.exhausted.contains_key(&sseq) {
            return true;
        }
        if sseq <= self.state.ack_floor.stream_seq {
            return false;
        }
        match self.config.ack_policy {
            AckPolicy::None | AckPolicy::All => true,
            AckPolicy::Explicit => {
                sseq >= self.state.next_sseq
                    || self.state.pending.contains_key(&sseq)
                    || self.state.initial.contains(&sseq)
            }
        }
    }

    /// nats-server's `moveAckFloor`: with nothing pending the floor is everything delivered;
    /// otherwise it moves only when the ack is of the delivery just above it, and then up to
    /// just below the next pending message.
    fn move_ack_floor(&mut self, dseq: u64, sseq: u64) {
        let floor = if self.state.pending.is_empty() {
            self.state.delivered
        } else if dseq == self.state.ack_floor.consumer_seq.saturating_add(1) {
            match self.state.pending.range(sseq + 1..).next() {
                Some((ss, p)) => SequenceInfo {
                    consumer_seq: p.cseq.saturating_sub(1),
                    stream_seq: ss.saturating_sub(1),
                },
                None => SequenceInfo { consumer_seq: dseq, stream_seq: sseq },
            }
        } else {
            return;
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

    /// nats-server's sendIdleHeartbeat, for push consumers and pull requests alike: the last
    /// delivered sequences ride along so an ordered consumer can tell a gap, and an unanswered
    /// flow-control request too (`Nats-Consumer-Stalled`), so a client that missed it can answer.
    fn idle_heartbeat(&self, to: &str) -> Outgoing {
        let mut extra = vec![
            ("Nats-Last-Consumer", self.state.delivered.consumer_seq.to_string()),
            ("Nats-Last-Stream", self.state.next_sseq.saturating_sub(1).to_string()),
        ];
        if let Some((id, _)) = &self.fc.outstanding {
            extra.push(("Nats-Consumer-Stalled", id.clone()));
        }
        Outgoing::status(to, headers::status(100, "Idle Heartbeat", &extra))
    }

    /// Ack deadlines, request expiry and heartbeats due at `now`.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Outgoing>) {
        if let Some(due) = self.push_heartbeat_due() {
            if due <= now {
                let target = self.config.deliver_subject.clone().unwrap_or_default();
                out.push(self.idle_heartbeat(&target));
                self.last_push = now;
            }
        }
        let due: Vec<u64> =
            self.deadlines.iter().filter(|(_, d)| **d <= now).map(|(s, _)| *s).collect();
        for sseq in due {
            self.deadlines.remove(&sseq);
            let spent =
                self.state.pending.get(&sseq).is_some_and(|p| self.out_of_deliveries(p.deliveries));
            if spent {
                self.exhaust(sseq);
            } else {
                self.redeliver.insert(sseq);
            }
        }
        let mut kept = VecDeque::with_capacity(self.waiting.len());
        while let Some(mut w) = self.waiting.pop_front() {
            if w.expires.is_some_and(|e| e <= now) {
                out.push(Outgoing::status(&w.reply, timeout_status(&w)));
                continue;
            }
            if let Some((every, next)) = w.heartbeat {
                if next <= now {
                    out.push(self.idle_heartbeat(&w.reply));
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
        [deadline, waits, self.push_heartbeat_due(), self.resume_at, self.pacing.hold_until]
            .into_iter()
            .flatten()
            .min()
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
        // Paused: nothing is delivered; waiting requests wait, no_wait ones get their 404.
        let paused = self.resume_at.is_some_and(|at| now < at);
        if !paused {
            self.resume_at = None;
        }
        // Held back by replay timing or the rate limit: nothing until then.
        let held = self.pacing.hold_until.is_some_and(|at| now < at);
        if !held {
            self.pacing.hold_until = None;
        }
        let paused = paused || held;
        let filters = self.filters();
        if let Some(target) = self.config.deliver_subject.clone().filter(|d| !d.is_empty()) {
            if !paused {
                self.push(now, wall, store, durable_seq, &target, &filters, out);
            }
            return;
        }
        let mut pending_left = PendingLeft::default();
        while let Some((budget, reply)) =
            self.waiting.front().filter(|_| !paused).map(|w| (w.max_bytes, w.reply.clone()))
        {
            let Some(msg) = self.next_message(store, &filters, durable_seq) else { break };
            // The delivery as it would go out, to size it as nats-server does (subject, ack
            // subject, headers, payload) before committing to it.
            let deliveries = self.state.pending.get(&msg.seq).map_or(1, |p| p.deliveries + 1);
            let cseq = self.state.delivered.consumer_seq.saturating_add(1);
            let pending = pending_left.peek(store, self, deliveries);
            let delivery = self.delivery(&reply, &msg, deliveries, cseq, pending);
            let size = (msg.subject.len() + delivery.reply.as_ref().map_or(0, String::len)) as u64
                + delivery.headers.as_ref().map_or(0, Vec::len) as u64
                + delivery.payload.len() as u64;
            if let Some((left, budget)) = budget.map(|b| (self.waiting.front(), b)) {
                if size > budget {
                    // Too big for what the request has left: it ends with nats-server's 409
                    // and the message waits for the next request.
                    let wanted = left.map_or(0, |w| w.batch);
                    let hdr = headers::status(
                        409,
                        "Message Size Exceeds MaxBytes",
                        &[
                            ("Nats-Pending-Messages", wanted.to_string()),
                            ("Nats-Pending-Bytes", budget.to_string()),
                        ],
                    );
                    out.push(Outgoing::status(&reply, hdr));
                    self.put_back(msg.seq);
                    let _ = self.waiting.pop_front();
                    continue;
                }
            }
            if self.hold_back(now, &msg, size) {
                break;
            }
            let booked = self.record_delivery(now, wall, msg.seq);
            debug_assert_eq!(booked, (deliveries, cseq));
            let _ = pending_left.get(store, self, deliveries);
            out.push(delivery);
            let Some(w) = self.waiting.front_mut() else { break };
            w.delivered += 1;
            w.batch -= 1;
            if let Some(b) = w.max_bytes.as_mut() {
                *b = b.saturating_sub(size);
            }
            if w.batch == 0 || w.max_bytes == Some(0) {
                let _ = self.waiting.pop_front();
            }
        }
        // `no_wait` requests end at the end of the stream with a 404, as nats-server's
        // processWaiting does; one that also set `expires` and got nothing waits for it (and
        // then ends with a 408 from `tick`).
        let mut kept = VecDeque::with_capacity(self.waiting.len());
        while let Some(w) = self.waiting.pop_front() {
            if w.no_wait && (w.expires.is_none() || w.delivered > 0) {
                out.push(Outgoing::status(&w.reply, headers::status(404, "No Messages", &[])));
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
        while !self.stalled() {
            let Some(msg) = self.next_message(store, filters, durable_seq) else { break };
            let stored_size = (msg.subject.len() + msg.headers.len() + msg.payload.len()) as u64;
            if self.hold_back(now, &msg, stored_size) {
                break;
            }
            let (deliveries, cseq) = self.record_delivery(now, wall, msg.seq);
            let pending = pending_left.get(store, self, deliveries);
            let delivery = self.delivery(target, &msg, deliveries, cseq, pending);
            let size = (target.len() + delivery.reply.as_ref().map_or(0, String::len)) as u64
                + delivery.headers.as_ref().map_or(0, Vec::len) as u64
                + delivery.payload.len() as u64;
            out.push(delivery);
            self.count_for_flow_control(size, target, out);
            self.last_push = now;
        }
    }

    /// Replay `original` and `rate_limit_bps` (nats-server's loopAndGatherMsgs waits before
    /// such a delivery; here the message goes back and the consumer wakes at its time).
    /// Returns true when `msg` must wait; otherwise books it as delivered now.
    fn hold_back(&mut self, now: Instant, msg: &crate::store::StoredMsg, size: u64) -> bool {
        let mut at = now;
        if self.config.replay_policy == ReplayPolicy::Original {
            if let Some((last_ts, last_at)) = self.pacing.last {
                let gap = msg.ts.saturating_sub(last_ts);
                // nats-server does not wait for gaps of a millisecond or less.
                if gap > 1_000_000 {
                    at = at.max(last_at + std::time::Duration::from_nanos(gap as u64));
                }
            }
        }
        let rate = self.config.rate_limit_bps as f64 / 8.0;
        let tokens = self.pacing.tokens_at(now, rate);
        if rate > 0.0 && tokens < size as f64 {
            let wait = (size as f64 - tokens) / rate;
            // try_: a config can make the wait absurd, never a panic.
            let wait =
                std::time::Duration::try_from_secs_f64(wait).unwrap_or(std::time::Duration::MAX);
            at = at.max(now + wait);
        }
        if at > now {
            self.put_back(msg.seq);
            self.pacing.hold_until = Some(at);
            return true;
        }
        self.pacing.last = Some((msg.ts, now));
        if rate > 0.0 {
            self.pacing.tokens = tokens - size as f64;
            self.pacing.refilled = Some(now);
        }
        false
    }

    /// A message taken by `next_message` but not delivered goes back where it came from.
    fn put_back(&mut self, sseq: u64) {
        if self.state.pending.contains_key(&sseq) {
            self.redeliver.insert(sseq);
        } else if sseq < self.state.next_sseq {
            // Only `last_per_subject`'s initial list hands out sequences below the pointer.
            self.state.initial.push_front(sseq);
        }
    }

    /// One delivery of `msg` to `to`, with its `$JS.ACK` reply subject; `headers_only`
    /// consumers send the headers and the payload's size (`Nats-Msg-Size`) instead.
    fn delivery(
        &self,
        to: &str,
        msg: &crate::store::StoredMsg,
        deliveries: u64,
        cseq: u64,
        pending: u64,
    ) -> Outgoing {
        let ack = format!(
            "$JS.ACK.{}.{}.{}.{}.{}.{}.{}",
            self.stream, self.name, deliveries, msg.seq, cseq, msg.ts, pending
        );
        let (hdrs, payload) = if self.config.headers_only {
            let size = msg.payload.len().to_string();
            (Some(headers::with_extra(&msg.headers, &[("Nats-Msg-Size", size)])), Bytes::new())
        } else {
            ((!msg.headers.is_empty()).then(|| msg.headers.to_vec()), msg.payload.clone())
        };
        Outgoing {
            to: to.to_string(),
            subject: String::from_utf8_lossy(&msg.subject).into_owned(),
            reply: Some(ack),
            headers: hdrs,
            payload,
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
            if self.out_of_deliveries(p.deliveries) {
                // A NAK of the last allowed delivery (nats-server advises MAX_DELIVERIES).
                self.exhaust(sseq);
                continue;
            }
            match store.load(sseq) {
                Ok(Some(m)) => return Some(m),
                // Gone from the stream (limits, delete): as nats-server, a term. Only an
                // explicit-ack floor moves with it: `move_ack_floor` compares the floor's
                // consumer sequence with pending entries' first-delivery ones, and an ack-all
                // floor carries the consumer sequence of whatever delivery was acked (a
                // redelivery's is above the first-delivery sequences of messages still
                // pending), so the comparison would carry that floor past them. An ack-all
                // floor moves with acks only.
                _ => {
                    if let Some(p) = self.drop_pending(sseq) {
                        if self.config.ack_policy == AckPolicy::Explicit {
                            self.move_ack_floor(p.cseq, sseq);
                        }
                        self.dirty = true;
                    }
                }
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
        let Some(msg) = next_matching(store, filters, self.state.next_sseq) else {
            // Nothing of ours to the end of the stream: the pointer moves past what was looked
            // at, as nats-server's does (heartbeats report it as Nats-Last-Stream).
            self.state.next_sseq = self.state.next_sseq.max(durable_seq + 1);
            return None;
        };
        if msg.seq > durable_seq {
            return None;
        }
        Some(msg)
    }

    fn out_of_deliveries(&self, deliveries: u64) -> bool {
        self.config.max_deliver > 0 && deliveries >= self.config.max_deliver as u64
    }

    /// Books one delivery of `sseq`; returns (its delivery count, the consumer sequence it
    /// goes out with).
    fn record_delivery(&mut self, now: Instant, wall: i64, sseq: u64) -> (u64, u64) {
        self.dirty = true;
        let tracked = self.config.ack_policy != AckPolicy::None;
        // Every delivery, redeliveries included, takes the next consumer sequence, as in
        // nats-server (`o.dseq++` in deliverMsg).
        self.state.delivered.consumer_seq += 1;
        let cseq = self.state.delivered.consumer_seq;
        if let Some(p) = self.state.pending.get_mut(&sseq) {
            p.deliveries += 1;
            p.ts = wall;
            let deliveries = p.deliveries;
            let deadline = now + self.wait_for(deliveries);
            self.deadlines.insert(sseq, deadline);
            return (deliveries, cseq);
        }
        self.state.delivered.stream_seq = self.state.delivered.stream_seq.max(sseq);
        self.state.next_sseq = self.state.next_sseq.max(sseq + 1);
        if tracked {
            self.state.pending.insert(sseq, Pending { cseq, deliveries: 1, ts: wall });
            self.deadlines.insert(sseq, now + self.wait_for(1));
        } else {
            // Nothing to ack: the floor follows deliveries.
            self.state.ack_floor = self.state.delivered;
            self.done.push(sseq);
        }
        (1, cseq)
    }
}

/// `num_pending` for the ack subjects of one pump: counted once (it is linear in the backlog)
/// and then decremented per first delivery, since the store does not change during a pump.
#[derive(Default)]
struct PendingLeft(Option<u64>);

impl PendingLeft {
    /// What `get` will answer once this delivery is booked (counting, on the first call, what
    /// is pending before it, so that `get` after the booking needs no second count).
    fn peek(&mut self, store: &dyn StreamStore, c: &Consumer, deliveries: u64) -> u64 {
        let before = *self.0.get_or_insert_with(|| c.num_pending(store));
        before.saturating_sub(u64::from(deliveries == 1))
    }

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

/// Base 62 digits of `n`, for short unique subject tokens.
fn base62(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 62) as usize]);
        n /= 62;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
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

/// The 408 that ends a pull request early: nats-server reports what the request still
/// wanted (messages left of its batch, bytes left of its max_bytes), not the stream backlog.
fn timeout_status(w: &Waiting) -> Vec<u8> {
    headers::status(
        408,
        "Request Timeout",
        &[
            ("Nats-Pending-Messages", w.batch.to_string()),
            ("Nats-Pending-Bytes", w.max_bytes.unwrap_or(0).to_string()),
        ],
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
            .filter_map(|o| o.reply.as_deref().filter(|r| r.starts_with("$JS.ACK.")))
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
        assert!(c.ack(Instant::ZERO, 1, 0, &AckKind::Ack));
        assert_eq!(c.state.ack_floor, SequenceInfo { consumer_seq: 1, stream_seq: 1 });
        assert_eq!(c.poll_timeout(), Some(Instant::ZERO + SEC));
        let mut out = Vec::new();
        c.tick(Instant::ZERO + SEC, &mut out);
        let out = pull(&mut c, &mut store, Instant::ZERO + SEC, 5, true);
        assert_eq!(seqs(&out), vec![2, 3]);
        assert!(
            out[0].reply.as_deref().unwrap().starts_with("$JS.ACK.S.C.2.2.4."),
            "second delivery, new consumer seq"
        );
        assert_eq!(c.num_redelivered(), 2);
        c.ack(Instant::ZERO, 3, 0, &AckKind::Ack);
        c.ack(Instant::ZERO, 2, 0, &AckKind::Ack);
        assert_eq!(c.num_ack_pending(), 0);
        assert_eq!(c.state.ack_floor, SequenceInfo { consumer_seq: 5, stream_seq: 3 });
    }

    #[test]
    fn nak_redelivers_at_once_and_term_never() {
        let (mut store, mut c) = setup(2, explicit());
        pull(&mut c, &mut store, Instant::ZERO, 2, true);
        c.ack(Instant::ZERO, 1, 0, &AckKind::Nak(None));
        c.ack(Instant::ZERO, 2, 0, &AckKind::Term);
        assert_eq!(seqs(&pull(&mut c, &mut store, Instant::ZERO, 5, true)), vec![1]);
        assert_eq!(c.num_ack_pending(), 1);
    }

    #[test]
    fn in_progress_pushes_the_deadline() {
        let (mut store, mut c) = setup(1, explicit());
        pull(&mut c, &mut store, Instant::ZERO, 1, true);
        c.ack(Instant::ZERO + SEC / 2, 1, 0, &AckKind::InProgress);
        let mut out = Vec::new();
        c.tick(Instant::ZERO + SEC, &mut out);
        assert!(seqs(&pull(&mut c, &mut store, Instant::ZERO + SEC, 1, true)).is_empty());
        c.tick(Instant::ZERO + SEC * 2, &mut out);
        assert_eq!(seqs(&pull(&mut c, &mut store, Instant::ZERO + SEC * 2, 1, true)), vec![1]);
    }

    #[test]
    fn max_deliver_stops_redelivery() {
        let (mut store, mut c) = setup(1, ConsumerConfig { max_deliver: 2, ..explicit() });
        let mut out = Vec::new();
        for round in 0..4u32 {
            let now = Instant::ZERO + SEC * round;
            c.tick(now, &mut out);
            let got = seqs(&pull(&mut c, &mut store, now, 1, true));
            assert_eq!(got.len(), usize::from(round < 2), "round {round}");
        }
    }

    #[test]
    fn max_ack_pending_holds_new_messages() {
        let (mut store, mut c) = setup(3, ConsumerConfig { max_ack_pending: 1, ..explicit() });
        assert_eq!(seqs(&pull(&mut c, &mut store, Instant::ZERO, 3, true)), vec![1]);
        c.ack(Instant::ZERO, 1, 0, &AckKind::Ack);
        assert_eq!(seqs(&pull(&mut c, &mut store, Instant::ZERO, 3, true)), vec![2]);
    }

    #[test]
    fn no_wait_ends_with_404_at_the_end_of_the_stream() {
        let (mut store, mut c) = setup(1, explicit());
        let out = pull(&mut c, &mut store, Instant::ZERO, 2, true);
        assert_eq!(seqs(&out), vec![1]);
        let last = out.last().unwrap().headers.clone().unwrap();
        assert_eq!(last, b"NATS/1.0 404 No Messages\r\n\r\n", "short batches too, as nats-server");
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
        c.tick(Instant::ZERO + SEC, &mut out);
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
        assert_eq!(AckKind::parse(b"+WPI "), None, "nats-server takes +WPI exactly");
        assert_eq!(AckKind::parse(b"-NAK 1.5s"), Some(AckKind::Nak(Some(1_500_000_000))));
        assert_eq!(AckKind::parse(b"-NAK soon"), Some(AckKind::Nak(None)));
        assert_eq!(
            AckKind::parse(b"+NXT {\"batch\":2}"),
            Some(AckKind::Next("{\"batch\":2}".into()))
        );
        assert_eq!(AckKind::parse(b"+NXT"), Some(AckKind::Next(String::new())));
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

    fn expire_all(c: &mut Consumer, now: Instant) {
        let mut out = Vec::new();
        c.tick(now, &mut out);
    }

    #[test]
    fn backoff_sets_the_wait_of_each_delivery_and_overrides_ack_wait() {
        let config = ConsumerConfig {
            backoff: vec![1_000_000_000, 3_000_000_000],
            ack_wait: 60_000_000_000,
            ..explicit()
        };
        let (mut store, mut c) = setup(1, config);
        assert_eq!(c.config.ack_wait, 1_000_000_000, "the first backoff is the ack wait");
        pull(&mut c, &mut store, Instant::ZERO, 1, true);
        expire_all(&mut c, Instant::ZERO + SEC);
        assert_eq!(seqs(&pull(&mut c, &mut store, Instant::ZERO + SEC, 1, true)), vec![1]);
        // The second delivery waits 3 s, and so does every later one (the last entry repeats).
        expire_all(&mut c, Instant::ZERO + SEC * 3);
        assert!(seqs(&pull(&mut c, &mut store, Instant::ZERO + SEC * 3, 1, true)).is_empty());
        expire_all(&mut c, Instant::ZERO + SEC * 4);
        assert_eq!(seqs(&pull(&mut c, &mut store, Instant::ZERO + SEC * 4, 1, true)), vec![1]);
        expire_all(&mut c, Instant::ZERO + SEC * 6);
        assert!(seqs(&pull(&mut c, &mut store, Instant::ZERO + SEC * 6, 1, true)).is_empty());
        expire_all(&mut c, Instant::ZERO + SEC * 7);
        assert_eq!(seqs(&pull(&mut c, &mut store, Instant::ZERO + SEC * 7, 1, true)), vec![1]);
    }

    #[test]
    fn backoff_longer_than_max_deliver_is_refused() {
        let config =
            ConsumerConfig { backoff: vec![1, 2, 3], max_deliver: 2, ..explicit() }.normalize();
        assert_eq!(config.unwrap_err().err_code, 10116);
        let same = ConsumerConfig { backoff: vec![1, 2], max_deliver: 2, ..explicit() };
        assert!(same.normalize().is_ok(), "as many deliveries as backoffs is allowed");
    }

    #[test]
    fn out_of_deliveries_leaves_pending_but_stays_redelivered_and_needed() {
        let (mut store, mut c) = setup(2, ConsumerConfig { max_deliver: 2, ..explicit() });
        pull(&mut c, &mut store, Instant::ZERO, 2, true);
        c.ack(Instant::ZERO, 2, 2, &AckKind::Ack);
        expire_all(&mut c, Instant::ZERO + SEC);
        pull(&mut c, &mut store, Instant::ZERO + SEC, 1, true);
        expire_all(&mut c, Instant::ZERO + SEC * 2);
        assert_eq!(c.num_ack_pending(), 0);
        assert_eq!(c.num_redelivered(), 1);
        assert_eq!(c.state.ack_floor.stream_seq, 0, "exhaustion does not move the floor");
        assert!(c.needs(1, "s.0"), "an interest stream keeps it");
        assert!(seqs(&pull(&mut c, &mut store, Instant::ZERO + SEC * 2, 1, true)).is_empty());
        assert!(c.ack(Instant::ZERO, 1, 1, &AckKind::Term), "a term of it is still confirmed");
        assert_eq!(c.num_redelivered(), 0);
        assert!(!c.needs(1, "s.0"));
    }

    #[test]
    fn nak_with_delay_waits_then_redelivers() {
        let (mut store, mut c) = setup(1, explicit());
        pull(&mut c, &mut store, Instant::ZERO, 1, true);
        assert!(c.ack(Instant::ZERO, 1, 1, &AckKind::Nak(Some(300_000_000))));
        assert_eq!(c.poll_timeout(), Some(Instant::ZERO + Duration::from_millis(300)));
        expire_all(&mut c, Instant::ZERO + Duration::from_millis(299));
        assert!(seqs(&pull(&mut c, &mut store, Instant::ZERO, 1, true)).is_empty());
        expire_all(&mut c, Instant::ZERO + Duration::from_millis(300));
        assert_eq!(seqs(&pull(&mut c, &mut store, Instant::ZERO, 1, true)), vec![1]);
    }

    #[test]
    fn which_acks_nats_server_confirms() {
        let (mut store, mut c) = setup(3, explicit());
        pull(&mut c, &mut store, Instant::ZERO, 1, true);
        assert!(!c.ack(Instant::ZERO, 2, 2, &AckKind::Ack), "never delivered: no answer");
        assert!(c.ack(Instant::ZERO, 1, 1, &AckKind::Ack));
        assert!(c.ack(Instant::ZERO, 1, 1, &AckKind::Ack), "a repeated ack is answered");
        assert!(c.ack(Instant::ZERO, 1, 1, &AckKind::Nak(None)), "NAK always is");
        assert!(c.ack(Instant::ZERO, 1, 1, &AckKind::InProgress));
        assert_eq!(c.num_ack_pending(), 0, "none of which brings an acked message back");
    }

    #[test]
    fn ack_all_moves_the_floor_to_the_acked_delivery() {
        let config = ConsumerConfig { ack_policy: AckPolicy::All, ..explicit() };
        let (mut store, mut c) = setup(4, config);
        pull(&mut c, &mut store, Instant::ZERO, 4, true);
        assert!(c.ack(Instant::ZERO, 3, 3, &AckKind::Ack));
        assert_eq!(c.state.ack_floor, SequenceInfo { consumer_seq: 3, stream_seq: 3 });
        assert_eq!(c.num_ack_pending(), 1);
        assert_eq!(std::mem::take(&mut c.done), vec![1, 2, 3]);
        assert!(c.ack(Instant::ZERO, 2, 2, &AckKind::Ack), "below the floor: answered");
        // A forged ack subject sets the floor's consumer sequence as nats-server would (to the
        // subject's); the arithmetic on it must not overflow afterwards.
        assert!(c.ack(Instant::ZERO, 4, u64::MAX, &AckKind::Ack));
        assert_eq!(c.state.ack_floor.consumer_seq, u64::MAX);
        let (mut store, mut c) = setup(3, explicit());
        pull(&mut c, &mut store, Instant::ZERO, 3, true);
        c.state.ack_floor.consumer_seq = u64::MAX;
        assert!(c.ack(Instant::ZERO, 2, 2, &AckKind::Ack));
        assert_eq!(c.num_ack_pending(), 2);
    }

    /// Found by the consumer event soup (`fjord-fuzz consumer 41 --case 1292`): an ack-all of
    /// a redelivery puts the redelivery's consumer sequence in the floor; a pending message
    /// whose first delivery is just above that number and which then vanishes from the stream
    /// must not carry the floor past older messages still pending.
    #[test]
    fn ack_all_floor_stays_below_pending_when_a_redelivered_message_vanishes() {
        let config = ConsumerConfig { ack_policy: AckPolicy::All, ..explicit() };
        let (mut store, mut c) = setup(3, config);
        assert_eq!(seqs(&pull(&mut c, &mut store, Instant::ZERO, 2, true)), vec![1, 2]);
        c.ack(Instant::ZERO, 1, 1, &AckKind::Nak(None));
        // 1 again, as consumer sequence 3; then 3 for the first time, as 4.
        assert_eq!(seqs(&pull(&mut c, &mut store, Instant::ZERO, 2, true)), vec![1, 3]);
        assert!(c.ack(Instant::ZERO, 1, 3, &AckKind::Ack));
        assert_eq!(c.state.ack_floor, SequenceInfo { consumer_seq: 3, stream_seq: 1 });
        // 3 (first delivered as consumer sequence 4 = floor + 1) is due again but gone.
        c.ack(Instant::ZERO, 3, 4, &AckKind::Nak(None));
        store.remove(3).unwrap();
        assert!(seqs(&pull(&mut c, &mut store, Instant::ZERO, 1, true)).is_empty());
        assert_eq!(c.state.pending.keys().copied().collect::<Vec<_>>(), vec![2]);
        assert!(c.state.ack_floor.stream_seq < 2, "floor {:?} passed pending 2", c.state.ack_floor);
        // 2 is still delivered until acked.
        c.ack(Instant::ZERO, 2, 2, &AckKind::Nak(None));
        assert_eq!(seqs(&pull(&mut c, &mut store, Instant::ZERO, 1, true)), vec![2]);
    }

    #[test]
    fn needs_follows_filter_floor_and_pending() {
        let config = ConsumerConfig { filter_subject: Some("s.1".into()), ..explicit() };
        let (mut store, mut c) = setup(3, config);
        assert!(!c.needs(1, "s.0"), "not its subject");
        assert!(c.needs(2, "s.1"), "not yet delivered");
        pull(&mut c, &mut store, Instant::ZERO, 1, true);
        assert!(c.needs(2, "s.1"), "pending");
        c.ack(Instant::ZERO, 2, 1, &AckKind::Ack);
        assert!(!c.needs(2, "s.1"), "acked");
    }

    #[test]
    fn request_timeout_reports_what_the_request_still_wanted() {
        let (mut store, mut c) = setup(1, explicit());
        let mut out = Vec::new();
        let req = NextRequest {
            batch: Some(3),
            max_bytes: Some(1000),
            expires: Some(1_000_000_000),
            ..Default::default()
        };
        c.request(Instant::ZERO, "inbox", req, &mut out);
        c.pump(Instant::ZERO, 0, &mut store, 1, &mut out);
        c.tick(Instant::ZERO + SEC, &mut out);
        let hdr = out.last().unwrap().headers.clone().unwrap();
        assert_eq!(headers::get(&hdr, "Nats-Pending-Messages"), Some("2"));
        // Sized as nats-server does: "s.0" + "$JS.ACK.S.C.1.1.1.0.0" + "x" = 25 bytes.
        assert_eq!(headers::get(&hdr, "Nats-Pending-Bytes"), Some("975"));
    }

    #[test]
    fn a_message_over_the_requests_byte_budget_ends_it_with_409() {
        let (mut store, mut c) = setup(2, explicit());
        let mut out = Vec::new();
        let req = NextRequest { batch: Some(5), max_bytes: Some(30), ..Default::default() };
        c.request(Instant::ZERO, "inbox", req, &mut out);
        c.pump(Instant::ZERO, 0, &mut store, 2, &mut out);
        assert_eq!(seqs(&out), vec![1], "25 bytes fit, the next 25 do not");
        assert_eq!(
            out[1].headers.as_deref(),
            Some(&b"NATS/1.0 409 Message Size Exceeds MaxBytes\r\nNats-Pending-Messages: 4\r\nNats-Pending-Bytes: 5\r\n\r\n"[..])
        );
        assert_eq!(c.num_waiting(), 0);
        assert_eq!(
            seqs(&pull(&mut c, &mut store, Instant::ZERO, 1, true)),
            vec![2],
            "kept for later"
        );
    }

    #[test]
    fn paused_consumer_holds_requests_answers_no_wait_and_resumes_on_time() {
        let (mut store, mut c) = setup(1, explicit());
        c.config.pause_until = Some(super::super::api::rfc3339(10_000_000_000));
        // Wall clock 8 s: two seconds of pause left, on the monotonic clock too.
        c.refresh_pause(Instant::ZERO, 8_000_000_000);
        assert_eq!(c.pause_remaining(Instant::ZERO), Some(2_000_000_000));
        let out = pull(&mut c, &mut store, Instant::ZERO, 1, true);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].headers.as_deref(), Some(&b"NATS/1.0 404 No Messages\r\n\r\n"[..]));
        assert!(seqs(&pull(&mut c, &mut store, Instant::ZERO, 1, false)).is_empty());
        assert_eq!(c.num_waiting(), 1, "a waiting request stays");
        assert_eq!(c.poll_timeout(), Some(Instant::ZERO + SEC * 2), "woken when the pause ends");
        let mut out = Vec::new();
        c.pump(Instant::ZERO + SEC * 2, 0, &mut store, 1, &mut out);
        assert_eq!(seqs(&out), vec![1]);
        assert_eq!(c.pause_remaining(Instant::ZERO + SEC * 2), None);
    }

    #[test]
    fn flow_control_asks_past_half_the_window_and_stalls_past_all_of_it() {
        let mut store = MemStore::new(Limits::default());
        let big = vec![b'x'; 300 * 1024];
        for _ in 0..10 {
            store.store(b"s", b"", &big, 0, None).unwrap();
        }
        let config = ConsumerConfig {
            durable_name: Some("C".into()),
            deliver_subject: Some("dlv".into()),
            flow_control: true,
            idle_heartbeat: 1_000_000_000,
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        }
        .normalize()
        .unwrap();
        let mut c = Consumer::new("S", "C", config, 0, &mut store, Instant::ZERO);
        c.push_active = true;
        let mut out = Vec::new();
        c.pump(Instant::ZERO, 0, &mut store, 10, &mut out);
        let fc: Vec<&Outgoing> = out.iter().filter(|o| o.headers.is_some()).collect();
        assert_eq!(fc.len(), 1, "one request at a time");
        assert_eq!(
            fc[0].headers.as_deref(),
            Some(&b"NATS/1.0 100 FlowControl Request\r\n\r\n"[..])
        );
        let id = fc[0].reply.clone().unwrap();
        assert_eq!(id, "$JS.FC.S.C.1");
        let position = out.iter().position(|o| o.reply.as_deref() == Some(id.as_str())).unwrap();
        assert_eq!(position, 4, "after the delivery that passed 1 MiB");
        assert_eq!(seqs(&out).len(), 7, "stalled once past the 2 MiB window");
        // Stalled: the heartbeat names the request to answer.
        out.clear();
        c.tick(Instant::ZERO + SEC, &mut out);
        let hb = out[0].headers.clone().unwrap();
        assert_eq!(headers::get(&hb, "Nats-Consumer-Stalled"), Some(id.as_str()));
        assert_eq!(headers::get(&hb, "Nats-Last-Consumer"), Some("7"));
        assert!(!c.flow_control_answered("$JS.FC.S.C.0"), "only the latest request counts");
        assert!(c.flow_control_answered(&id));
        out.clear();
        c.pump(Instant::ZERO + SEC, 0, &mut store, 10, &mut out);
        assert_eq!(seqs(&out), vec![8, 9, 10], "the answer releases the rest");
    }

    fn push_consumer(store: &mut MemStore, config: ConsumerConfig) -> Consumer {
        let config = ConsumerConfig {
            durable_name: Some("C".into()),
            deliver_subject: Some("dlv".into()),
            ..config
        }
        .normalize()
        .unwrap();
        let mut c = Consumer::new("S", "C", config, 0, store, Instant::ZERO);
        c.push_active = true;
        c
    }

    #[test]
    fn replay_original_spaces_deliveries_as_they_were_stored() {
        let mut store = MemStore::new(Limits::default());
        for ts in [0, 500_000_000, 1_500_000_000] {
            store.store(b"s", b"", b"x", ts, None).unwrap();
        }
        let config = ConsumerConfig { replay_policy: ReplayPolicy::Original, ..Default::default() };
        let mut c = push_consumer(&mut store, config);
        let mut out = Vec::new();
        c.pump(Instant::ZERO, 0, &mut store, 3, &mut out);
        assert_eq!(seqs(&out), vec![1]);
        assert_eq!(c.poll_timeout(), Some(Instant::ZERO + Duration::from_millis(500)));
        c.pump(Instant::ZERO + Duration::from_millis(499), 0, &mut store, 3, &mut out);
        assert_eq!(seqs(&out), vec![1], "not before its time");
        c.pump(Instant::ZERO + Duration::from_millis(500), 0, &mut store, 3, &mut out);
        assert_eq!(seqs(&out), vec![1, 2]);
        assert_eq!(c.poll_timeout(), Some(Instant::ZERO + Duration::from_millis(1500)));
        c.pump(Instant::ZERO + Duration::from_millis(1500), 0, &mut store, 3, &mut out);
        assert_eq!(seqs(&out), vec![1, 2, 3]);
    }

    #[test]
    fn rate_limit_holds_what_the_bucket_cannot_pay_for() {
        let mut store = MemStore::new(Limits::default());
        let body = vec![b'x'; 600 * 1024];
        for _ in 0..2 {
            store.store(b"s", b"", &body, 0, None).unwrap();
        }
        // 1 MiB/s with a 1 MiB burst: the first message is paid from the burst, the second
        // waits for the bytes the bucket lacks.
        let config = ConsumerConfig { rate_limit_bps: 8 * 1024 * 1024, ..Default::default() };
        let mut c = push_consumer(&mut store, config);
        let mut out = Vec::new();
        c.pump(Instant::ZERO, 0, &mut store, 2, &mut out);
        assert_eq!(seqs(&out), vec![1]);
        let wake = c.poll_timeout().expect("a wake-up for the held message");
        let wait = wake.saturating_since(Instant::ZERO);
        assert!(wait > Duration::from_millis(170) && wait < Duration::from_millis(180), "{wait:?}");
        c.pump(wake, 0, &mut store, 2, &mut out);
        assert_eq!(seqs(&out), vec![1, 2]);
    }

    #[test]
    fn push_and_pull_only_options_answer_nats_server_codes() {
        let pull_rate = ConsumerConfig { rate_limit_bps: 1, ..Default::default() };
        assert_eq!(pull_rate.normalize().unwrap_err().err_code, 10086);
        let pull_hb = ConsumerConfig { idle_heartbeat: 1_000_000_000, ..Default::default() };
        assert_eq!(pull_hb.normalize().unwrap_err().err_code, 10088);
        let push = |hb, fc| ConsumerConfig {
            deliver_subject: Some("d".into()),
            idle_heartbeat: hb,
            flow_control: fc,
            ..Default::default()
        };
        assert_eq!(push(50_000_000, false).normalize().unwrap_err().err_code, 10083);
        assert_eq!(push(0, true).normalize().unwrap_err().err_code, 10108);
    }
}
