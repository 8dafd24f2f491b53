//! The JetStream manager: one server's streams and consumers, the `$JS.API.>` request router,
//! the `$JS.ACK.>` handler, the publish path's entry, and metadata persistence.
//!
//! Inputs: `handle(now, subject, reply, headers, payload)` for every message that reached a
//! JetStream subscription; `tick(now)` at `poll_timeout()`; `flush(now)` after each batch.
//! Outputs: `poll_output()` until `None` (only filled by `flush`, see the module doc of
//! `jetstream`); `subjects()` is what the driver must subscribe to, re-read whenever
//! `take_interest_changed()` says it changed.
//!
//! Layout on the metadata `Disk` (relative to its root):
//! `jetstream/streams/<stream>.json` (config and creation time),
//! `jetstream/consumers/<stream>.<consumer>.json` (durable consumer config and state),
//! `jetstream/msgs/<stream>/` (the stream's `FileStore`). Memory streams persist nothing.

mod events;
mod snapshot;

use std::collections::BTreeMap;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::api::{self, ConsumerConfig, Storage, StreamConfig, TYPE_PREFIX};
use super::consumer::{AckKind, Consumer, ConsumerState};
use super::errors::ApiError;
use super::republish;
use super::resources;
use super::sourcing;
use super::stream::{self, Store, Stream};
use super::{Now, Outgoing};
use crate::disk::{join, Disk, DiskError};
use crate::store::{EncryptionConfig, FileStoreConfig, MemStore, RecoveryReport, StoreError};
use crate::time::Instant;

/// The JetStream API level reported (`api.level`). nats-server 2.15.1 reports 5; each level
/// names features a client may rely on (nats-server's `jetstream_versioning.go`): 1 is message
/// TTLs and subject delete markers (2.11), which fjord has; 2 is counters, atomic batch
/// publish, message schedules and async persist (2.12), which it has not, so it claims 1.
pub const JS_API_LEVEL: u32 = 1;

const STREAMS_DIR: &str = "jetstream/streams";
const CONSUMERS_DIR: &str = "jetstream/consumers";
const MSGS_DIR: &str = "jetstream/msgs";
/// `<stream>.json`: where each source of a stream got to (see `sourcing`).
const SOURCES_DIR: &str = "jetstream/sources";
/// Longest a sourcing stream's changed positions wait to be written.
const SOURCES_WRITE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
const NAMES_LIMIT: usize = 1024;
/// The most subjects one stream info answer details (nats-server's JSMaxSubjectDetails).
const MAX_SUBJECT_DETAILS: usize = 100_000;
/// Longest a durable consumer's changed state waits to be written when nothing waits on it.
const CONSUMER_WRITE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
const LIST_LIMIT: usize = 256;
/// Messages one mirror or source takes from its origin per round of a flush, and rounds per
/// flush: bounded so that a large catch-up does not hold every other answer back.
const SOURCING_BATCH: usize = 1024;
const SOURCING_ROUNDS: usize = 8;

/// Feed `i` of a stream: the mirror (its only feed) or source `i`.
fn feed_at(s: &sourcing::Sourcing, i: usize) -> Option<&sourcing::Feed> {
    s.mirror.as_ref().filter(|_| i == 0).or_else(|| s.sources.get(i))
}

fn feed_at_mut(s: &mut sourcing::Sourcing, i: usize) -> Option<&mut sourcing::Feed> {
    match &mut s.mirror {
        Some(m) if i == 0 => Some(m),
        _ => s.sources.get_mut(i),
    }
}

#[derive(Serialize, Deserialize)]
struct StreamMeta {
    config: StreamConfig,
    created: i64,
}

#[derive(Serialize, Deserialize)]
struct ConsumerMeta {
    config: ConsumerConfig,
    created: i64,
    state: ConsumerState,
}

/// Opens a fresh `Disk` handle for one stream's file store (the store owns its disk).
pub type DiskFactory<D> = Box<dyn FnMut() -> Result<D, DiskError> + Send>;

pub struct Manager<D: Disk + Send + 'static> {
    meta: D,
    new_disk: DiskFactory<D>,
    streams: BTreeMap<String, Stream>,
    /// Outputs held until the flush that makes what they say durable.
    held: Vec<Outgoing>,
    /// Ack confirmations, by (stream, consumer), held until that consumer's state is written.
    held_acks: Vec<(String, String, Outgoing)>,
    ready: std::collections::VecDeque<Outgoing>,
    interest_changed: bool,
    /// The monotonic clock at the latest input: what a stream info's `active` counts from.
    clock: Instant,
    /// The last flush stopped moving mirror and source messages while some were still to move:
    /// the driver must come back at once (`poll_timeout`).
    sourcing_backlog: bool,
    rng: ChaCha8Rng,
    api_total: u64,
    api_errors: u64,
    /// Encryption at rest for file stores (`jetstream { key }`), if configured.
    encryption: Option<EncryptionConfig>,
    /// What each file store's recovery found at open, for the driver to log: damage must be
    /// said where an operator sees it, not only kept inside the store.
    recoveries: Vec<(String, RecoveryReport)>,
    /// `STREAM.SNAPSHOT` senders and `STREAM.RESTORE` uploads in progress.
    snapshots: snapshot::Snapshots,
    /// RePublish messages by (stream, sequence), released once that sequence is durable.
    republished: Vec<(String, u64, Outgoing)>,
    /// Advisory and session ids: their own stream of randomness, so that drawing them does not
    /// change the consumer names a seed produces.
    ids: ChaCha8Rng,
    /// The `server` of API audit advisories.
    server_name: String,
    /// `jetstream { max_memory_store, max_file_store }`.
    limits: resources::ServerLimits,
    /// Test-only: ack confirmations go out without waiting for the consumer state write (the
    /// state is written lazily, as if plain acks), so a crash can forget a confirmed ack. For
    /// the simulator's canary; never set outside tests.
    #[cfg(any(test, feature = "canaries"))]
    pub canary_confirm_unwritten_acks: bool,
}

/// Why the manager could not start.
#[derive(Debug)]
pub enum OpenError {
    Disk(DiskError),
    Store(String, StoreError),
    Meta(String, String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Disk(e) => write!(f, "{e}"),
            OpenError::Store(s, e) => write!(f, "stream {s}: {e}"),
            OpenError::Meta(p, e) => write!(f, "{p}: {e}"),
        }
    }
}

impl From<DiskError> for OpenError {
    fn from(e: DiskError) -> Self {
        OpenError::Disk(e)
    }
}

/// An optional request body: empty or `null` (what clients send for "no options") is the
/// default.
fn body<T: Default + serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, ApiError> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice::<Option<T>>(payload)
        .map(Option::unwrap_or_default)
        .map_err(ApiError::invalid_json)
}

/// Metadata JSON; a failure is reported as a disk error rather than writing an empty file that
/// recovery would then refuse.
fn encode_meta<T: Serialize>(meta: &T) -> Result<Vec<u8>, DiskError> {
    serde_json::to_vec(meta).map_err(|e| DiskError::Io {
        op: "encode metadata",
        path: String::new(),
        detail: e.to_string(),
    })
}

fn response(op: &str, body: Result<Value, ApiError>) -> Bytes {
    let mut v = match body {
        Ok(v) => v,
        Err(e) => json!({ "error": e }),
    };
    if let Value::Object(map) = &mut v {
        map.insert("type".into(), Value::String(format!("{TYPE_PREFIX}{op}_response")));
    }
    Bytes::from(v.to_string())
}

/// nats-server's pause response carries `paused` and `pause_until` even beside an error.
fn pause_error_fields(body: Bytes) -> Bytes {
    let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(&body) else { return body };
    if !map.contains_key("error") {
        return body;
    }
    map.insert("paused".into(), json!(false));
    map.insert("pause_until".into(), json!(api::rfc3339(0)));
    Bytes::from(Value::Object(map).to_string())
}

impl<D: Disk + Send + 'static> Manager<D> {
    /// Recovers every persisted stream (and its store) and durable consumer. A metadata file
    /// that does not parse stops the start: deleting assets on corrupt metadata would lose
    /// acknowledged data (one of the failures found in nats-server).
    pub fn open(meta: D, new_disk: DiskFactory<D>, now: Now, seed: u64) -> Result<Self, OpenError> {
        Self::open_with(meta, new_disk, now, seed, None)
    }

    /// `open`, with file stores encrypted at rest under `encryption`. A stream whose store does
    /// not open under it (`encryption key does not match`) stops the start, like corrupt
    /// metadata: serving without it would hand its sequences out again.
    pub fn open_with(
        mut meta: D,
        new_disk: DiskFactory<D>,
        now: Now,
        seed: u64,
        encryption: Option<EncryptionConfig>,
    ) -> Result<Self, OpenError> {
        meta.create_dir_all(STREAMS_DIR)?;
        meta.create_dir_all(CONSUMERS_DIR)?;
        meta.create_dir_all(MSGS_DIR)?;
        meta.create_dir_all(SOURCES_DIR)?;
        let mut m = Manager {
            meta,
            new_disk,
            streams: BTreeMap::new(),
            held: Vec::new(),
            held_acks: Vec::new(),
            ready: Default::default(),
            interest_changed: true,
            clock: now.mono,
            sourcing_backlog: false,
            rng: ChaCha8Rng::seed_from_u64(seed),
            api_total: 0,
            api_errors: 0,
            encryption,
            recoveries: Vec::new(),
            snapshots: Default::default(),
            republished: Vec::new(),
            ids: ChaCha8Rng::seed_from_u64(seed ^ 0x6164_7669_736f_7279),
            server_name: String::new(),
            limits: resources::ServerLimits::default(),
            #[cfg(any(test, feature = "canaries"))]
            canary_confirm_unwritten_acks: false,
        };
        for name in m.meta.list(STREAMS_DIR)? {
            let path = join(STREAMS_DIR, &name);
            let Some(stream_name) = name.strip_suffix(".json") else {
                if name.ends_with(".tmp") {
                    // A config write that never got renamed in: its create was never answered.
                    m.meta.remove(&path)?;
                }
                continue;
            };
            let bytes = m.meta.read_all(&path)?;
            let sm: StreamMeta = serde_json::from_slice(&bytes)
                .map_err(|e| OpenError::Meta(path.clone(), e.to_string()))?;
            let store = m
                .open_store(&sm.config)
                .and_then(|mut s| start_at_first_seq(s.as_mut(), sm.config.first_seq).map(|_| s))
                .map_err(|e| OpenError::Store(stream_name.to_string(), e))?;
            let mut s = Stream::new(sm.config, sm.created, store, now.wall);
            let positions = join(SOURCES_DIR, &name);
            if !s.config.sources.is_empty() && m.meta.exists(&positions)? {
                let bytes = m.meta.read_all(&positions)?;
                let p: sourcing::Positions = serde_json::from_slice(&bytes)
                    .map_err(|e| OpenError::Meta(positions.clone(), e.to_string()))?;
                s.sourcing.restore(&p);
            }
            m.streams.insert(stream_name.to_string(), s);
        }
        for name in m.meta.list(CONSUMERS_DIR)? {
            let path = join(CONSUMERS_DIR, &name);
            let Some(id) = name.strip_suffix(".json") else {
                if name.ends_with(".tmp") {
                    m.meta.remove(&path)?;
                }
                continue;
            };
            let Some((sname, cname)) = id.split_once('.') else { continue };
            let bytes = m.meta.read_all(&path)?;
            let cm: ConsumerMeta = serde_json::from_slice(&bytes)
                .map_err(|e| OpenError::Meta(path.clone(), e.to_string()))?;
            if let Some(s) = m.streams.get_mut(sname) {
                let mut c =
                    Consumer::recovered(sname, cname, cm.config, cm.created, cm.state, now.mono);
                c.refresh_pause(now.mono, now.wall);
                s.consumers.insert(cname.to_string(), c);
            }
        }
        Ok(m)
    }

    fn open_store(&mut self, config: &StreamConfig) -> Result<Box<dyn Store>, StoreError> {
        let limits = stream::limits(config);
        match config.storage {
            Storage::Memory => Ok(Box::new(MemStore::new(limits))),
            Storage::File => {
                let disk = (self.new_disk)()?;
                let dir = join(MSGS_DIR, &config.name);
                let mut store_config = FileStoreConfig::new(dir);
                store_config.encryption =
                    self.encryption.as_mut().map(|e| e.for_store(config.name.as_bytes()));
                let (store, report) = crate::store::FileStore::open(disk, store_config, limits)?;
                let notable = !report.corrupt.is_empty()
                    || report.torn_bytes > 0
                    || report.checkpoint_rejected.is_some();
                if notable {
                    self.recoveries.push((config.name.clone(), report));
                }
                Ok(Box::new(store))
            }
        }
    }

    /// What the recovery of each file store opened since the last call found (stream name,
    /// report), for the driver to log.
    pub fn take_recoveries(&mut self) -> Vec<(String, RecoveryReport)> {
        std::mem::take(&mut self.recoveries)
    }

    /// Subjects the driver must deliver to `handle`.
    pub fn subjects(&self) -> Vec<String> {
        let mut subjects = vec![
            "$JS.API.>".to_string(),
            "$JS.ACK.>".to_string(),
            "$JS.FC.>".to_string(),
            "$JS.SNAPSHOT.>".to_string(),
        ];
        for s in self.streams.values() {
            subjects.extend(s.config.subjects.iter().cloned());
        }
        subjects
    }

    /// Whether a push consumer waits for a subscriber: the driver should call `flush` again
    /// soon after subscriptions change.
    pub fn awaiting_interest(&self) -> bool {
        self.snapshot_awaiting_interest()
            || self
                .streams
                .values()
                .flat_map(|s| s.consumers.values())
                .any(|c| c.is_push() && !c.push_active)
    }

    pub fn take_interest_changed(&mut self) -> bool {
        std::mem::take(&mut self.interest_changed)
    }

    pub fn poll_output(&mut self) -> Option<Outgoing> {
        self.ready.pop_front()
    }

    /// The next consumer deadline. Max age and inactive ephemerals have none: the driver
    /// ticks at least once a second for them.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.sourcing_backlog {
            return Some(Instant::ZERO);
        }
        let mut at: Option<Instant> = self.snapshot_timeout();
        for s in self.streams.values() {
            for c in s.consumers.values() {
                let t = c.poll_timeout();
                at = match (at, t) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        at
    }

    /// One message that reached a JetStream subscription.
    pub fn handle(
        &mut self,
        now: Now,
        subject: &str,
        reply: Option<&str>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) {
        self.clock = now.mono;
        if let Some(op) = subject.strip_prefix("$JS.API.") {
            self.api(now, op, reply, payload);
        } else if let Some(rest) = subject.strip_prefix("$JS.ACK.") {
            self.ack(now, rest, reply, payload);
        } else if subject.starts_with("$JS.SNAPSHOT.") {
            self.snapshot_message(now, subject, reply, payload);
        } else if let Some(rest) = subject.strip_prefix("$JS.FC.") {
            // A flow-control answer: `<stream>.<consumer>.<id>`; the next flush delivers on.
            let mut tokens = rest.split('.');
            if let (Some(stream), Some(consumer)) = (tokens.next(), tokens.next()) {
                let c = self.streams.get_mut(stream).and_then(|s| s.consumers.get_mut(consumer));
                if let Some(c) = c {
                    c.flow_control_answered(subject);
                }
            }
        } else {
            self.publish(now, subject, subject, reply, headers, payload);
        }
    }

    /// One of JetStream's own outputs that one of its stream subscriptions took. `to` is the
    /// subject it was routed by, `subject` the one it carries: they differ for a consumer's
    /// delivery, which carries the stored subject. As nats-server does, the stream subscribed
    /// to `to` stores it under the subject it carries.
    pub fn handle_own(
        &mut self,
        now: Now,
        to: &str,
        subject: &str,
        reply: Option<&str>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) {
        if to == subject || to.starts_with("$JS.") {
            self.handle(now, to, reply, headers, payload);
        } else {
            self.clock = now.mono;
            self.publish(now, to, subject, reply, headers, payload);
        }
    }

    /// A message for the stream whose subjects match `route`, stored under `subject`.
    fn publish(
        &mut self,
        now: Now,
        route: &str,
        subject: &str,
        reply: Option<&str>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) {
        if let Some(refused) = self.refuse_over_limits(route, reply) {
            if let Some(answer) = refused {
                self.held.push(answer);
            }
        } else if let Some(s) = self.streams.values_mut().find(|s| s.matches(route)) {
            // RePublish's `Nats-Last-Sequence`: the stored subject's newest sequence before this
            // one (the subject after the stream's own transform, as nats-server uses it).
            let to_republish = s.config.republish.as_ref().map(|_| {
                let stored = s.stored_subject(subject).into_owned();
                let state = s.store.subjects_state(stored.as_bytes());
                (state.values().map(|st| st.last_seq).max(), stored)
            });
            let (published, answer) = s.publish(now.wall, subject, reply, headers, payload);
            if let (stream::Published::Stored(seq), Some((last_seq, subject))) =
                (&published, &to_republish)
            {
                let (seq, last_seq) = (*seq, last_seq.unwrap_or(0));
                let stored = republish::Stored {
                    stream: s.name(),
                    subject,
                    seq,
                    time: &api::rfc3339(now.wall),
                    last_seq,
                    headers: headers.unwrap_or_default(),
                    payload_len: payload.len(),
                };
                let rp = s.config.republish.as_ref();
                if let Some(out) = rp.and_then(|rp| republish::message(rp, &stored, payload)) {
                    self.republished.push((s.name().to_string(), seq, out));
                }
            }
            if let Some((to, body)) = answer {
                // Errors promise nothing, but still go in order with everything else.
                self.held.push(Outgoing::reply(&to, body));
            }
        }
    }

    /// A publish to a stream whose storage type is over its server-wide limit is refused, with
    /// nats-server's PubAck error when the publisher wants an answer. None: not refused.
    fn refuse_over_limits(&self, subject: &str, reply: Option<&str>) -> Option<Option<Outgoing>> {
        if self.limits == resources::ServerLimits::default() {
            return None;
        }
        let s = self.streams.values().find(|s| s.matches(subject))?;
        let storage = s.config.storage;
        if !self.limits.exceeded(storage, self.used(storage)) {
            return None;
        }
        let reply = reply.filter(|r| !r.is_empty() && !s.config.no_ack);
        Some(reply.map(|to| {
            let error = ApiError::insufficient_resources();
            Outgoing::reply(to, json!({"error": error, "stream": s.name(), "seq": 0}).to_string())
        }))
    }

    /// Group commit and release, in the order that keeps every promise: stream stores are
    /// synced (PubAcks), consumers hand out what became durable, consumer states are written,
    /// and only then does anything go out.
    /// `interest` answers whether a subject has subscribers (push consumers deliver only then).
    pub fn flush(&mut self, now: Now, interest: &dyn Fn(&str) -> bool) {
        self.clock = now.mono;
        let mut out = Vec::new();
        // Mirrors and sources take what their origins made durable, and are made durable in
        // turn, a few rounds so that a chain (a mirror of a mirror) moves in one flush.
        let mut rounds = 0;
        loop {
            for s in self.streams.values_mut() {
                if s.needs_flush() {
                    for (to, body) in s.flush() {
                        out.push(Outgoing::reply(&to, body));
                    }
                }
            }
            if rounds == SOURCING_ROUNDS || !self.pump_sourcing(now) {
                break;
            }
            rounds += 1;
        }
        self.sourcing_backlog = rounds == SOURCING_ROUNDS && self.sourcing_behind();
        // RePublish goes out once the message is durable, ahead of its PubAck as in
        // nats-server; one whose store failed to sync is dropped with its PubAck's error.
        let mut republished = Vec::new();
        for (stream, seq, o) in self.republished.drain(..) {
            if self.streams.get(&stream).is_some_and(|s| s.durable_seq >= seq) {
                republished.push(o);
            }
        }
        out.splice(0..0, republished);
        let mut deliveries = Vec::new();
        for s in self.streams.values_mut() {
            let durable = s.durable_seq;
            for c in s.consumers.values_mut() {
                if let Some(d) = c.config.deliver_subject.as_deref() {
                    c.push_active = interest(d);
                    if c.push_active {
                        c.last_active = now.mono;
                    }
                }
                c.pump(now.mono, now.wall, s.store.as_store(), durable, &mut deliveries);
            }
            let done: Vec<u64> =
                s.consumers.values_mut().flat_map(|c| std::mem::take(&mut c.done)).collect();
            s.retire(&done);
            // Ephemerals go once nobody has used them for their inactive threshold: no pull
            // request or ack, and (push) no subscriber on the deliver subject. The driver
            // flushes at least once a second, so the check needs no timer of its own.
            let before = s.consumers.len();
            s.consumers.retain(|_, c| {
                c.config.is_durable()
                    || c.num_waiting() > 0
                    || now.mono.saturating_since(c.last_active).as_nanos()
                        < c.config.inactive_threshold.max(0) as u128
            });
            if s.consumers.len() != before {
                s.sweep_interest();
            }
        }
        // Consumer state is written when an ack confirmation waits on it, else at most once per
        // CONSUMER_WRITE_EVERY: a plain ack promises nothing, and losing it to a crash means a
        // redelivery (at least once), so one write per batch of plain acks would buy nothing
        // for two fsyncs.
        let eager = !self.confirm_unwritten_acks();
        let mut due = Vec::new();
        for s in self.streams.values_mut() {
            let file = s.config.storage == Storage::File;
            for c in s.consumers.values_mut() {
                if !file || !c.config.is_durable() {
                    c.dirty = false;
                    c.sync_now = false;
                    continue;
                }
                let stale = now.mono.saturating_since(c.last_write) >= CONSUMER_WRITE_EVERY;
                if c.dirty && ((c.sync_now && eager) || stale) {
                    due.push((c.stream.clone(), c.name.clone()));
                }
            }
        }
        for (sname, cname) in due {
            let written = self.write_consumer(&sname, &cname).is_ok();
            if let Some(c) = self.streams.get_mut(&sname).and_then(|s| s.consumers.get_mut(&cname))
            {
                if written {
                    c.dirty = false;
                    c.last_write = now.mono;
                }
                c.sync_now = false;
            }
            if !written {
                // These confirmations would promise state that is not on disk: drop them (the
                // client's ack request times out and it may retry).
                self.held_acks.retain(|(s, c, _)| (s, c) != (&sname, &cname));
            }
        }
        self.write_source_positions(now);
        self.ready.extend(out);
        self.ready.extend(self.held_acks.drain(..).map(|(_, _, o)| o));
        self.ready.extend(self.held.drain(..));
        self.ready.extend(deliveries);
        self.serve_snapshots(now, interest);
    }

    fn confirm_unwritten_acks(&self) -> bool {
        #[cfg(any(test, feature = "canaries"))]
        return self.canary_confirm_unwritten_acks;
        #[cfg(not(any(test, feature = "canaries")))]
        false
    }

    /// Ack deadlines, pull request expiry, heartbeats, max_age and inactive ephemerals.
    pub fn tick(&mut self, now: Now) {
        let mut out = Vec::new();
        for s in self.streams.values_mut() {
            if s.config.max_age > 0 || s.config.allow_msg_ttl {
                s.expire(now.wall);
            }
            for c in s.consumers.values_mut() {
                c.tick(now.mono, &mut out);
            }
        }
        self.held.extend(out);
    }

    /// One round of moving messages from origins into their mirrors and sources (see
    /// `sourcing`); whether any message moved.
    fn pump_sourcing(&mut self, now: Now) -> bool {
        let targets: Vec<(String, usize)> = self
            .streams
            .iter()
            .filter(|(_, s)| !s.sourcing.is_empty())
            .map(|(n, s)| (n.clone(), s.sourcing.feeds().count()))
            .collect();
        let mut moved = false;
        for (target, feeds) in targets {
            for i in 0..feeds {
                moved |= self.pump_feed(now, &target, i);
            }
        }
        moved
    }

    /// Feed `i` of stream `target`: up to a batch of its origin's durable messages.
    fn pump_feed(&mut self, now: Now, target: &str, i: usize) -> bool {
        let Some(mut feed) =
            self.streams.get(target).and_then(|t| feed_at(&t.sourcing, i)).cloned()
        else {
            return false;
        };
        if !feed.is_local() || feed.config.name == target {
            return false;
        }
        let Some(origin) = self.streams.get_mut(&feed.config.name) else { return false };
        feed.last_seen = Some(now.mono);
        let identity = sourcing::identity(origin.created);
        let (msgs, next) = feed.batch(origin.store.as_store(), origin.durable_seq, SOURCING_BATCH);
        let Some(t) = self.streams.get_mut(target) else { return false };
        let mirror = t.sourcing.mirror.is_some();
        let mut stored = 0;
        let mut all = true;
        for msg in &msgs {
            let origin_subject = String::from_utf8_lossy(&msg.subject);
            let subject = feed.subject(&origin_subject);
            let ok = if mirror {
                // Already there: a restart resumed below what the store holds.
                msg.seq <= t.store.state().last_seq
                    || t.store_mirrored(msg.seq, &subject, &msg.headers, &msg.payload, msg.ts)
                        .is_ok()
            } else {
                let stamp = feed.source_header(msg.seq, &origin_subject, &identity);
                let hdrs = sourcing::sourced_headers(&msg.headers, &stamp);
                t.publish_sourced(now.wall, &subject, &hdrs, &msg.payload).is_ok()
            };
            if !ok {
                // Refused (discard new on a full stream...): retried from here next flush.
                all = false;
                break;
            }
            stored += 1;
            feed.next = Some(msg.seq + 1);
            feed.last_taken = msg.seq;
        }
        if all {
            feed.next = Some(next);
        }
        if let Some(slot) = feed_at_mut(&mut t.sourcing, i) {
            *slot = feed;
        }
        stored > 0
    }

    /// Writes the positions of sourcing streams whose sources moved: when messages naming them
    /// were removed (at once, before the removal is answered), else at most once per
    /// `SOURCES_WRITE_EVERY`. Only positions whose messages are all durable are written, so
    /// the file is never ahead of the stream.
    fn write_source_positions(&mut self, now: Now) {
        let mut due = Vec::new();
        for (name, s) in &self.streams {
            if s.sourcing.sources.is_empty() || s.config.storage != Storage::File {
                continue;
            }
            let positions = s.sourcing.positions();
            let stale = s
                .sourcing
                .written_at
                .is_none_or(|t| now.mono.saturating_since(t) >= SOURCES_WRITE_EVERY);
            let durable = s.durable_seq == s.store.state().last_seq;
            if positions != s.sourcing.written && durable && (stale || s.sourcing.write_now) {
                due.push((name.clone(), positions));
            }
        }
        for (name, positions) in due {
            let written = encode_meta(&positions).and_then(|bytes| {
                self.meta.replace_atomically(&join(SOURCES_DIR, &format!("{name}.json")), &bytes)
            });
            if let Some(s) = self.streams.get_mut(&name) {
                // On failure the stamped messages still say where the sources got to; the
                // next flush tries again.
                if written.is_ok() {
                    s.sourcing.written = positions;
                    s.sourcing.written_at = Some(now.mono);
                    s.sourcing.write_now = false;
                }
            }
        }
    }

    /// Whether a mirror or source has durable origin messages it has not looked at.
    fn sourcing_behind(&self) -> bool {
        self.streams.values().flat_map(|s| s.sourcing.feeds()).any(|f| {
            f.is_local()
                && self.streams.get(&f.config.name).is_some_and(|o| f.behind(o.durable_seq))
        })
    }

    /// The checks of a mirror or sources config that look at other streams (nats-server's
    /// `checkStreamCfg`): message size ceilings and cycles.
    fn check_sourcing(&self, config: &StreamConfig) -> Result<(), ApiError> {
        let too_small = |origin: &str| {
            self.streams.get(origin).is_some_and(|o| {
                config.max_msg_size > 0
                    && o.config.max_msg_size > 0
                    && config.max_msg_size < o.config.max_msg_size
            })
        };
        if let Some(m) = config.mirror.as_ref().filter(|m| m.external.is_none()) {
            if too_small(&m.name) {
                return Err(ApiError::mirror_max_message_size_too_big());
            }
        }
        for src in config.sources.iter().filter(|s| s.external.is_none()) {
            if too_small(&src.name) {
                return Err(ApiError::source_max_message_size_too_big());
            }
        }
        // Walk what feeds this stream, and what feeds those: meeting a stream twice is a cycle
        // (for sources, only if the subjects really flow round).
        let cycle = || ApiError::stream_invalid_config("detected cycle");
        let mut visit: Vec<&StreamConfig> = vec![config];
        let mut visited: Vec<&str> = Vec::new();
        while let Some(cfg) = visit.pop() {
            visited.push(&cfg.name);
            for src in cfg.sources.iter().filter(|s| s.external.is_none()) {
                if visited.contains(&src.name.as_str()) {
                    let flows = src.filter_subject.is_empty()
                        || cfg.subjects.iter().any(|s| api::overlaps(s, &src.filter_subject));
                    if flows {
                        return Err(cycle());
                    }
                } else if let Some(o) =
                    self.streams.get(&src.name).filter(|o| o.name() != config.name)
                {
                    visit.push(&o.config);
                }
            }
            if let Some(m) = cfg.mirror.as_ref().filter(|m| m.external.is_none()) {
                if visited.contains(&m.name.as_str()) {
                    return Err(cycle());
                }
                if let Some(o) = self.streams.get(&m.name).filter(|o| o.name() != config.name) {
                    visit.push(&o.config);
                }
            }
            if visited.len() > self.streams.len() + 1 {
                break;
            }
        }
        Ok(())
    }

    fn write_stream(&mut self, name: &str) -> Result<(), DiskError> {
        let Some(s) = self.streams.get(name) else { return Ok(()) };
        if s.config.storage != Storage::File {
            return Ok(());
        }
        let meta = StreamMeta { config: s.config.clone(), created: s.created };
        let bytes = encode_meta(&meta)?;
        self.meta.replace_atomically(&join(STREAMS_DIR, &format!("{name}.json")), &bytes)
    }

    fn write_consumer(&mut self, stream: &str, consumer: &str) -> Result<(), DiskError> {
        let Some(s) = self.streams.get(stream) else { return Ok(()) };
        let Some(c) = s.consumers.get(consumer) else { return Ok(()) };
        if s.config.storage != Storage::File || !c.config.is_durable() {
            return Ok(());
        }
        let meta =
            ConsumerMeta { config: c.config.clone(), created: c.created, state: c.state.clone() };
        let bytes = encode_meta(&meta)?;
        self.meta
            .replace_atomically(&join(CONSUMERS_DIR, &format!("{stream}.{consumer}.json")), &bytes)
    }

    fn remove_file(&mut self, dir: &str, name: &str) -> Result<(), DiskError> {
        let path = join(dir, name);
        if self.meta.exists(&path)? {
            self.meta.remove(&path)?;
            self.meta.sync_dir(dir)?;
        }
        Ok(())
    }

    fn ack(&mut self, now: Now, rest: &str, reply: Option<&str>, payload: &[u8]) {
        // <stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>, or the newer form with
        // <domain>.<account hash> in front and a random token behind.
        let tokens: Vec<&str> = rest.split('.').collect();
        let tokens = match tokens.len() {
            7 => &tokens[..],
            n if n >= 9 => &tokens[2..9],
            _ => return,
        };
        let (Ok(sseq), Ok(dseq)) = (tokens[3].parse::<u64>(), tokens[4].parse::<u64>()) else {
            return;
        };
        let Some(kind) = AckKind::parse(payload) else { return };
        let (stream, consumer) = (tokens[0].to_string(), tokens[1].to_string());
        let Some(s) = self.streams.get_mut(&stream) else { return };
        let Some(c) = s.consumers.get_mut(&consumer) else { return };
        let confirm = c.ack(now.mono, sseq, dseq, &kind) && kind.confirms();
        let done = std::mem::take(&mut c.done);
        let reply = reply.filter(|r| !r.is_empty());
        if confirm && reply.is_some() {
            // Its confirmation waits for the next write of this consumer's state.
            c.sync_now = true;
        }
        s.retire(&done);
        if let AckKind::Next(request) = &kind {
            // `+NXT`: the reply subject pulls the next messages.
            self.next(now, &stream, &consumer, reply, request.as_bytes());
            return;
        }
        if let Some(reply) = reply.filter(|_| confirm) {
            // Held until the flush has written the consumer's state ("double ack").
            let confirm = Outgoing::reply(reply, Bytes::new());
            self.held_acks.push((stream, consumer, confirm));
        }
    }

    /// The server name API audit advisories carry.
    /// The server-wide store limits (`resources.rs`); none until set.
    pub fn set_limits(&mut self, limits: resources::ServerLimits) {
        self.limits = limits;
    }

    /// Bytes the streams of `storage` reserve (their positive `max_bytes`).
    fn reserved(&self, storage: Storage) -> i64 {
        let streams = self.streams.values().filter(|s| s.config.storage == storage);
        streams.map(|s| resources::reservation(s.config.max_bytes)).fold(0, i64::saturating_add)
    }

    /// Bytes stored in the streams of `storage`.
    fn used(&self, storage: Storage) -> u64 {
        let streams = self.streams.values().filter(|s| s.config.storage == storage);
        streams.map(|s| s.store.state().bytes).sum()
    }

    pub fn set_server_name(&mut self, name: &str) {
        self.server_name = name.to_string();
    }

    fn api(&mut self, now: Now, op: &str, reply: Option<&str>, payload: &[u8]) {
        let tokens: Vec<&str> = op.split('.').collect();
        let consumers_before: usize = self.streams.values().map(|s| s.consumers.len()).sum();
        // A stream's deletion takes its consumers along, each with its own advisory.
        let doomed: Vec<String> = match tokens.as_slice() {
            ["STREAM", "DELETE", name] => {
                self.streams.get(*name).map(|s| s.consumers.keys().cloned().collect())
            }
            _ => None,
        }
        .unwrap_or_default();
        let (kind, result) = match tokens.as_slice() {
            ["INFO"] => ("account_info", Ok(self.account_info())),
            ["STREAM", "CREATE", name] => ("stream_create", self.stream_create(now, name, payload)),
            ["STREAM", "UPDATE", name] => ("stream_update", self.stream_update(name, payload)),
            ["STREAM", "DELETE", name] => ("stream_delete", self.stream_delete(name)),
            ["STREAM", "INFO", name] => ("stream_info", self.stream_info_req(name, payload)),
            ["STREAM", "LIST"] => ("stream_list", self.stream_list(payload, false)),
            ["STREAM", "NAMES"] => ("stream_names", self.stream_list(payload, true)),
            ["STREAM", "PURGE", name] => ("stream_purge", self.stream_purge(name, payload)),
            ["STREAM", "SNAPSHOT", name] => match self.snapshot_request(name, reply, payload) {
                // Answered at the flush, with the first chunks.
                Ok(()) => {
                    self.api_total += 1;
                    return;
                }
                Err(e) => ("stream_snapshot", Err(e)),
            },
            ["STREAM", "RESTORE", name] => {
                ("stream_restore", self.restore_request(now, name, payload))
            }
            ["STREAM", "MSG", "GET", name] => ("stream_msg_get", self.msg_get(name, payload)),
            ["STREAM", "MSG", "DELETE", name] => {
                ("stream_msg_delete", self.msg_delete(name, payload))
            }
            ["CONSUMER", "CREATE", stream] => {
                ("consumer_create", self.consumer_create(now, stream, None, None, false, payload))
            }
            ["CONSUMER", "CREATE", stream, name, filter @ ..] => {
                let filter = (!filter.is_empty()).then(|| filter.join("."));
                (
                    "consumer_create",
                    self.consumer_create(now, stream, Some(name), filter, false, payload),
                )
            }
            ["CONSUMER", "DURABLE", "CREATE", stream, name] => (
                "consumer_create",
                self.consumer_create(now, stream, Some(name), None, true, payload),
            ),
            ["CONSUMER", "INFO", stream, name] => {
                ("consumer_info", self.consumer_info(now, stream, name))
            }
            ["CONSUMER", "DELETE", stream, name] => {
                ("consumer_delete", self.consumer_delete(stream, name))
            }
            ["CONSUMER", "PAUSE", stream, name] => {
                ("consumer_pause", self.consumer_pause(now, stream, name, payload))
            }
            ["CONSUMER", "LIST", stream] => {
                ("consumer_list", self.consumer_list(now, stream, payload, false))
            }
            ["CONSUMER", "NAMES", stream] => {
                ("consumer_names", self.consumer_list(now, stream, payload, true))
            }
            ["DIRECT", "GET", stream, subject @ ..] => {
                let subject = (!subject.is_empty()).then(|| subject.join("."));
                self.direct_get(stream, subject, reply, payload);
                return;
            }
            ["CONSUMER", "MSG", "NEXT", stream, name] => {
                self.next(now, stream, name, reply, payload);
                return;
            }
            // nats-server ignores unknown API subjects.
            _ => return,
        };
        self.api_total += 1;
        if result.is_err() {
            self.api_errors += 1;
        }
        if let Ok(answer) = &result {
            self.action_advisory(now, kind, &tokens, answer, consumers_before, &doomed);
        }
        let mut body = response(kind, result);
        if kind == "consumer_pause" {
            body = pause_error_fields(body);
        }
        if let Some(reply) = reply.filter(|r| !r.is_empty()) {
            self.held.push(Outgoing::reply(reply, body.clone()));
        }
        self.audit(now, op, payload, &body);
    }

    /// What the monitoring port's `/jsz` shows, read in one go: `account` is the account
    /// totals as `$JS.API.INFO` reports them; `streams` each stream's info (name order) with
    /// its consumers' infos (name order) under `consumers`. Reading it counts no API request.
    /// `now` dates what depends on it (a paused consumer's `pause_remaining`).
    pub fn monitor_view(&self, now: Now) -> Value {
        let streams: Vec<Value> = self
            .streams
            .values()
            .map(|s| {
                let consumers: Vec<Value> = s
                    .consumers
                    .values()
                    .map(|c| Self::consumer_info_value(s, c, now.mono))
                    .collect();
                json!({"info": self.stream_info(s), "consumers": consumers})
            })
            .collect();
        json!({"account": self.account_info(), "streams": streams})
    }

    fn account_info(&self) -> Value {
        let (memory, storage) = (self.used(Storage::Memory), self.used(Storage::File));
        let reserved_memory = self.reserved(Storage::Memory);
        let reserved_storage = self.reserved(Storage::File);
        let consumers: usize = self.streams.values().map(|s| s.consumers.len()).sum();
        json!({
            "memory": memory, "storage": storage,
            "reserved_memory": reserved_memory, "reserved_storage": reserved_storage,
            "streams": self.streams.len(), "consumers": consumers,
            "limits": {"max_memory": -1, "max_storage": -1, "max_streams": -1,
                       "max_consumers": -1, "max_ack_pending": -1,
                       "memory_max_stream_bytes": -1, "storage_max_stream_bytes": -1,
                       "max_bytes_required": false},
            "api": {"level": JS_API_LEVEL, "total": self.api_total, "errors": self.api_errors},
        })
    }

    fn stream_info(&self, s: &Stream) -> Value {
        let st = s.store.state();
        // nats-server reports first_seq 0 until the first message, and omits num_subjects at 0.
        let first_seq = if st.last_seq == 0 && st.msgs == 0 { 0 } else { st.first_seq };
        let mut state = json!({
            "messages": st.msgs, "bytes": st.bytes,
            "first_seq": first_seq, "first_ts": api::rfc3339(st.first_ts),
            "last_seq": st.last_seq, "last_ts": api::rfc3339(st.last_ts),
            "consumer_count": s.consumers.len(),
        });
        if st.num_subjects > 0 {
            state["num_subjects"] = json!(st.num_subjects);
        }
        if st.num_deleted > 0 {
            state["num_deleted"] = json!(st.num_deleted);
        }
        let mut info = json!({
            "config": s.config, "created": api::rfc3339(s.created), "state": state,
            "cluster": {"leader": "fjord"}, "ts": api::rfc3339(s.created),
        });
        let feed_info = |f: &sourcing::Feed, with_seq: bool| {
            let lag = match self.streams.get(&f.config.name).filter(|_| f.is_local()) {
                Some(origin) => f.lag(origin.store.as_store_ref()),
                None => 0,
            };
            f.info(lag, self.clock, with_seq)
        };
        if let Some(m) = &s.sourcing.mirror {
            info["mirror"] = feed_info(m, false);
        }
        if !s.sourcing.sources.is_empty() {
            let sources: Vec<Value> =
                s.sourcing.sources.iter().map(|f| feed_info(f, true)).collect();
            info["sources"] = json!(sources);
        }
        info
    }

    fn stream(&self, name: &str) -> Result<&Stream, ApiError> {
        self.streams.get(name).ok_or_else(ApiError::stream_not_found)
    }

    fn stream_create(&mut self, now: Now, name: &str, payload: &[u8]) -> Result<Value, ApiError> {
        let mut config: StreamConfig =
            serde_json::from_slice(payload).map_err(ApiError::invalid_json)?;
        if config.name.is_empty() {
            config.name = name.to_string();
        }
        if config.name != name {
            return Err(ApiError::stream_name_mismatch());
        }
        let mut config = config.normalize()?;
        self.check_sourcing(&config)?;
        // A mirror serves direct gets exactly when its origin does (nats-server inherits it).
        if let Some(origin) = config.mirror.as_ref().and_then(|m| self.streams.get(&m.name)) {
            config.mirror_direct = origin.config.allow_direct;
        }
        if let Some(existing) = self.streams.get(name) {
            if existing.config == config {
                return Ok(self.stream_info(existing));
            }
            return Err(ApiError::stream_name_exists());
        }
        self.check_overlap(name, &config)?;
        let need = resources::create_need(config.max_bytes);
        self.limits.check_reserve(config.storage, self.reserved(config.storage), need)?;
        // A previous stream of this name may have left message files behind a crash mid-delete.
        self.remove_msgs(name).map_err(ApiError::stream_create)?;
        self.remove_file(SOURCES_DIR, &format!("{name}.json")).map_err(ApiError::stream_create)?;
        let mut store = self.open_store(&config).map_err(ApiError::stream_create)?;
        start_at_first_seq(store.as_mut(), config.first_seq).map_err(ApiError::stream_create)?;
        let s = Stream::new(config, now.wall, store, now.wall);
        self.streams.insert(name.to_string(), s);
        if let Err(e) = self.write_stream(name) {
            self.streams.remove(name);
            return Err(ApiError::stream_create(e));
        }
        self.interest_changed = true;
        let mut info = self.stream_info(self.stream(name)?);
        info["did_create"] = json!(true);
        Ok(info)
    }

    fn check_overlap(&self, name: &str, config: &StreamConfig) -> Result<(), ApiError> {
        for other in self.streams.values().filter(|s| s.name() != name) {
            for a in &config.subjects {
                if other.config.subjects.iter().any(|b| api::overlaps(a, b)) {
                    return Err(ApiError::subjects_overlap());
                }
            }
        }
        Ok(())
    }

    fn stream_update(&mut self, name: &str, payload: &[u8]) -> Result<Value, ApiError> {
        let config: StreamConfig =
            serde_json::from_slice(payload).map_err(ApiError::invalid_json)?;
        if config.name != name {
            return Err(ApiError::stream_name_mismatch());
        }
        let config = config.normalize()?;
        self.check_sourcing(&config)?;
        let old = self.stream(name)?.config.clone();
        if old.storage != config.storage {
            return Err(ApiError::stream_update(
                "stream configuration update can not change storage type",
            ));
        }
        if old.retention != config.retention {
            return Err(ApiError::stream_update(
                "stream configuration update can not change retention policy",
            ));
        }
        if old.allow_msg_ttl && !config.allow_msg_ttl {
            return Err(ApiError::stream_invalid_config("message TTL status can not be disabled"));
        }
        if old.sealed && !config.sealed {
            return Err(ApiError::stream_update(
                "stream configuration update can not unseal a sealed stream",
            ));
        }
        // Removing the mirror promotes the stream to a plain one; nothing else may change it.
        if config.mirror.is_some() && config.mirror != old.mirror {
            return Err(ApiError::mirror_not_updatable());
        }
        self.check_overlap(name, &config)?;
        let need = resources::update_need(old.max_bytes, config.max_bytes);
        self.limits.check_reserve(config.storage, self.reserved(config.storage), need)?;
        if let Some(s) = self.streams.get_mut(name) {
            s.store.set_limits(stream::limits(&config));
            s.sourcing.update(&config, s.store.as_store());
            s.config = config;
        }
        self.write_stream(name).map_err(ApiError::stream_update)?;
        self.interest_changed = true;
        Ok(self.stream_info(self.stream(name)?))
    }

    fn remove_msgs(&mut self, name: &str) -> Result<(), DiskError> {
        let dir = join(MSGS_DIR, name);
        // `list`, not `exists`: a directory "exists" on the filesystem but not on `MemDisk`
        // (the simulator's), where a deleted stream's messages were left behind.
        let files = match self.meta.list(&dir) {
            Ok(files) => files,
            Err(DiskError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        for f in &files {
            self.meta.remove(&join(&dir, f))?;
        }
        if !files.is_empty() {
            self.meta.sync_dir(&dir)?;
        }
        Ok(())
    }

    fn stream_delete(&mut self, name: &str) -> Result<Value, ApiError> {
        let mut s = self.streams.remove(name).ok_or_else(ApiError::stream_not_found)?;
        for c in s.consumers.values_mut() {
            c.close(&mut self.held);
        }
        self.interest_changed = true;
        let consumers: Vec<String> = s.consumers.keys().cloned().collect();
        let file = s.config.storage == Storage::File;
        drop(s);
        if file {
            // The config goes first: without it, leftover files are ignored by recovery.
            self.remove_file(STREAMS_DIR, &format!("{name}.json"))
                .map_err(ApiError::stream_create)?;
            for c in consumers {
                self.remove_file(CONSUMERS_DIR, &format!("{name}.{c}.json"))
                    .map_err(ApiError::stream_create)?;
            }
            self.remove_msgs(name).map_err(ApiError::stream_create)?;
            self.remove_file(SOURCES_DIR, &format!("{name}.json"))
                .map_err(ApiError::stream_create)?;
        }
        Ok(json!({"success": true}))
    }

    fn stream_info_req(&mut self, name: &str, payload: &[u8]) -> Result<Value, ApiError> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Req {
            subjects_filter: Option<String>,
            deleted_details: bool,
            offset: i64,
        }
        let req: Req = body(payload)?;
        let s = self.stream(name)?;
        let mut info = self.stream_info(s);
        // The subject details are paged as nats-server pages them (sorted, at most
        // MAX_SUBJECT_DETAILS from `offset`); `total`, `offset` and `limit` say where the page
        // is, all 0 when no subject matched or none was asked for.
        let (mut total, mut offset, mut limit) = (0, 0, 0);
        if let Some(filter) = req.subjects_filter.as_deref().filter(|f| !f.is_empty()) {
            let totals = s.store.subjects_totals(filter.as_bytes());
            if !totals.is_empty() {
                (total, offset, limit) =
                    (totals.len(), req.offset.max(0) as usize, MAX_SUBJECT_DETAILS);
                let page: BTreeMap<String, u64> = totals
                    .into_iter()
                    .skip(offset)
                    .take(MAX_SUBJECT_DETAILS)
                    .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
                    .collect();
                if !page.is_empty() {
                    info["state"]["subjects"] = json!(page);
                }
            }
        }
        info["total"] = json!(total);
        info["offset"] = json!(offset);
        info["limit"] = json!(limit);
        if req.deleted_details {
            let deleted = s.store.deleted();
            if !deleted.is_empty() {
                info["state"]["deleted"] = json!(deleted);
            }
        }
        Ok(info)
    }

    fn stream_list(&self, payload: &[u8], names: bool) -> Result<Value, ApiError> {
        let req: api::PagedRequest = body(payload)?;
        let all: Vec<&Stream> = self
            .streams
            .values()
            .filter(|s| match req.subject.as_deref().filter(|f| !f.is_empty()) {
                Some(f) => s.config.subjects.iter().any(|x| api::overlaps(x, f)),
                None => true,
            })
            .collect();
        let limit = if names { NAMES_LIMIT } else { LIST_LIMIT };
        let page = all.iter().skip(req.offset).take(limit);
        let items: Vec<Value> = if names {
            page.map(|s| json!(s.name())).collect()
        } else {
            // nats-server's list entries carry no cluster information on a single server.
            page.map(|s| self.stream_info(s))
                .map(|mut info| {
                    if let Some(o) = info.as_object_mut() {
                        o.remove("cluster");
                    }
                    info
                })
                .collect()
        };
        Ok(json!({"total": all.len(), "offset": req.offset, "limit": limit, "streams": items}))
    }

    fn stream_purge(&mut self, name: &str, payload: &[u8]) -> Result<Value, ApiError> {
        let req: api::PurgeRequest = body(payload)?;
        let s = self.streams.get_mut(name).ok_or_else(ApiError::stream_not_found)?;
        if s.config.deny_purge {
            return Err(ApiError::purge_denied());
        }
        if s.config.sealed {
            return Err(ApiError::sealed());
        }
        let filter = req.filter.unwrap_or_default();
        let purged = s
            .store
            .purge_ex(filter.as_bytes(), req.seq.filter(|s| *s > 0), req.keep.filter(|k| *k > 0))
            .map_err(stream::store_error)?;
        // Purged stamps no longer say where the sources got to: the positions file must.
        s.sourcing.write_now = true;
        // The answer is held until the flush that makes the purge durable.
        Ok(json!({"success": true, "purged": purged}))
    }

    fn msg_get(&mut self, name: &str, payload: &[u8]) -> Result<Value, ApiError> {
        let req: api::MsgGetRequest =
            serde_json::from_slice(payload).map_err(ApiError::invalid_json)?;
        let s = self.streams.get_mut(name).ok_or_else(ApiError::stream_not_found)?;
        let found = match (&req.last_by_subj, &req.next_by_subj, req.seq) {
            (Some(subj), _, _) => s.store.load_last(subj.as_bytes()),
            (None, Some(subj), seq) => s.store.load_next(subj.as_bytes(), seq.unwrap_or(0)),
            (None, None, Some(seq)) => s.store.load(seq),
            (None, None, None) => return Err(ApiError::bad_request()),
        }
        .map_err(stream::store_error)?;
        let msg = found.ok_or_else(ApiError::no_message_found)?;
        let mut m = json!({
            "subject": String::from_utf8_lossy(&msg.subject),
            "seq": msg.seq,
            "data": api::base64(&msg.payload),
            "time": api::rfc3339(msg.ts),
        });
        if !msg.headers.is_empty() {
            m["hdrs"] = json!(api::base64(&msg.headers));
        }
        Ok(json!({"message": m}))
    }

    /// `DIRECT.GET`: the raw message as the answer, with nats-server's headers; statuses for
    /// misses. Only for `allow_direct` streams (others have no responder in nats-server).
    fn direct_get(
        &mut self,
        stream: &str,
        subject: Option<String>,
        reply: Option<&str>,
        payload: &[u8],
    ) {
        let Some(reply) = reply.filter(|r| !r.is_empty()) else { return };
        let Some(s) = self.streams.get_mut(stream) else { return };
        if !s.config.allow_direct {
            return;
        }
        let status = |code, text: &str| Outgoing {
            to: reply.to_string(),
            subject: reply.to_string(),
            reply: None,
            headers: Some(super::headers::status(code, text, &[])),
            payload: Bytes::new(),
        };
        let found = match subject {
            Some(subj) => s.store.load_last(subj.as_bytes()),
            None => match serde_json::from_slice::<api::MsgGetRequest>(payload) {
                Ok(req) => match (&req.last_by_subj, &req.next_by_subj, req.seq) {
                    (Some(subj), _, _) => s.store.load_last(subj.as_bytes()),
                    (None, Some(subj), seq) => s.store.load_next(subj.as_bytes(), seq.unwrap_or(0)),
                    (None, None, Some(seq)) => s.store.load(seq),
                    (None, None, None) => {
                        self.held.push(status(408, "Empty Request"));
                        return;
                    }
                },
                Err(_) => {
                    self.held.push(status(408, "Bad Request"));
                    return;
                }
            },
        };
        match found {
            Ok(Some(msg)) => {
                let subject = String::from_utf8_lossy(&msg.subject).into_owned();
                let hdr = super::headers::with_direct_get(
                    &msg.headers,
                    stream,
                    &subject,
                    msg.seq,
                    &api::rfc3339(msg.ts),
                );
                self.held.push(Outgoing {
                    to: reply.to_string(),
                    subject: reply.to_string(),
                    reply: None,
                    headers: Some(hdr),
                    payload: msg.payload,
                });
            }
            Ok(None) => self.held.push(status(404, "Message Not Found")),
            Err(_) => self.held.push(status(503, "Unavailable")),
        }
    }

    fn msg_delete(&mut self, name: &str, payload: &[u8]) -> Result<Value, ApiError> {
        let req: api::MsgDeleteRequest =
            serde_json::from_slice(payload).map_err(ApiError::invalid_json)?;
        let s = self.streams.get_mut(name).ok_or_else(ApiError::stream_not_found)?;
        if s.config.deny_delete {
            return Err(ApiError::stream_delete_denied());
        }
        if s.config.sealed {
            return Err(ApiError::sealed());
        }
        let removed = if req.no_erase { s.store.remove(req.seq) } else { s.store.erase(req.seq) }
            .map_err(stream::store_error)?;
        if !removed {
            return Err(ApiError::sequence_not_found(req.seq));
        }
        s.sourcing.write_now = true;
        Ok(json!({"success": true}))
    }

    fn consumer_info_value(s: &Stream, c: &Consumer, now: Instant) -> Value {
        // No `cluster`: nats-server reports it for a consumer in a Raft group only.
        let mut info = json!({
            "stream_name": s.name(), "name": c.name, "created": api::rfc3339(c.created),
            "config": c.config,
            "delivered": c.state.delivered, "ack_floor": c.state.ack_floor,
            "num_ack_pending": c.num_ack_pending(), "num_redelivered": c.num_redelivered(),
            "num_waiting": c.num_waiting(), "num_pending": c.num_pending(s.store.as_store_ref()),
            "ts": api::rfc3339(c.created),
        });
        if let Some(remaining) = c.pause_remaining(now) {
            info["paused"] = json!(true);
            info["pause_remaining"] = json!(remaining);
        }
        info
    }

    /// `CONSUMER.PAUSE`: sets (or with no time, clears) `pause_until`, persisted like any
    /// config change before the answer.
    fn consumer_pause(
        &mut self,
        now: Now,
        stream: &str,
        name: &str,
        payload: &[u8],
    ) -> Result<Value, ApiError> {
        let req: api::PauseRequest = body(payload)?;
        let until = req.pause_until.as_deref().and_then(api::parse_rfc3339).filter(|t| *t > 0);
        let s = self.streams.get_mut(stream).ok_or_else(ApiError::stream_not_found)?;
        let c = s.consumers.get_mut(name).ok_or_else(ApiError::consumer_not_found)?;
        c.config.pause_until = until.map(api::rfc3339);
        c.refresh_pause(now.mono, now.wall);
        let remaining = c.pause_remaining(now.mono);
        self.write_consumer(stream, name).map_err(ApiError::consumer_create)?;
        let mut v = json!({
            "paused": remaining.is_some(),
            "pause_until": api::rfc3339(until.unwrap_or(0)),
        });
        if let Some(r) = remaining {
            v["pause_remaining"] = json!(r);
        }
        Ok(v)
    }

    fn consumer_create(
        &mut self,
        now: Now,
        stream: &str,
        name: Option<&str>,
        filter: Option<String>,
        durable_form: bool,
        payload: &[u8],
    ) -> Result<Value, ApiError> {
        let req: api::CreateConsumerRequest =
            serde_json::from_slice(payload).map_err(ApiError::invalid_json)?;
        // jsConsumerCreateRequest's checks, in its order.
        if req.stream_name != stream {
            return Err(ApiError::stream_name_mismatch());
        }
        let mut config = req.config;
        let durable = config.durable_name.clone().filter(|d| !d.is_empty());
        if name.is_some_and(|n| n.contains(['\\', '/'])) {
            return Err(ApiError::consumer_name_path_separators());
        }
        match (name, durable_form) {
            // DURABLE.CREATE.<stream>.<durable>
            (Some(name), true) => {
                let Some(durable) = durable else { return Err(ApiError::durable_name_not_set()) };
                if durable != name {
                    return Err(ApiError::durable_name_mismatch());
                }
                config.name = Some(name.to_string());
            }
            // CREATE.<stream>.<name>[.<filter>]: the subject's name wins.
            (Some(name), false) => {
                if durable.is_some_and(|d| d != name) {
                    return Err(ApiError::durable_name_mismatch());
                }
                config.name = Some(name.to_string());
            }
            // CREATE.<stream>: the old ephemeral form.
            (None, _) => {
                if durable.is_some() {
                    return Err(ApiError::ephemeral_with_durable_name());
                }
            }
        }
        if let Some(filter) = &filter {
            if !config.filter_subjects.is_empty() {
                return Err(ApiError::multiple_filters_with_subject_api());
            }
            if config.filter_subject.as_deref() != Some(filter.as_str()) {
                return Err(ApiError::consumer_filter_mismatch());
            }
        }
        let limits = self.stream(stream)?.config.consumer_limits.clone();
        let mut config = config.with_stream_defaults(&limits).normalize()?;
        config.check_stream_limits(&limits)?;
        let s = self.streams.get_mut(stream).ok_or_else(ApiError::stream_not_found)?;
        let cname = match config.id() {
            Some(id) => id.to_string(),
            None => {
                let id: String = (0..8)
                    .map(|_| {
                        const A: &[u8] =
                            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
                        A[self.rng.random_range(0..A.len())] as char
                    })
                    .collect();
                config.name = Some(id.clone());
                id
            }
        };
        // Any filter is accepted, even one no stream subject can match: nats-server stopped
        // refusing those in 2.10 (a subject transform or a later stream update may make it
        // match), and 2.15.1 creates such a consumer, which simply has nothing to deliver.
        let workqueue = s.config.retention == api::Retention::Workqueue;
        if workqueue && !config.is_push() && config.ack_policy == api::AckPolicy::None {
            return Err(ApiError::pull_requires_ack());
        }
        // nats-server's order (`addConsumerWithAssignment`): an existing consumer is checked
        // for partition overlap only, then max_consumers, then the work-queue rules.
        let exists = s.consumers.contains_key(&cname);
        let partition_unique = |s: &Stream, mine: &[String]| {
            mine.iter().all(|a| {
                s.consumers.iter().filter(|(n, _)| **n != cname).all(|(_, o)| {
                    let theirs = o.config.filters();
                    !theirs.is_empty() && !theirs.iter().any(|b| api::overlaps(a, b))
                })
            })
        };
        if exists && workqueue && !partition_unique(s, &config.filters()) {
            return Err(ApiError::workqueue_overlapping_filters());
        }
        if !exists
            && s.config.max_consumers > 0
            && s.consumers.len() as i64 >= s.config.max_consumers
        {
            return Err(ApiError::maximum_consumers());
        }
        if workqueue && !exists {
            if config.ack_policy != api::AckPolicy::Explicit {
                return Err(ApiError::workqueue_needs_explicit_ack());
            }
            if config.deliver_policy != api::DeliverPolicy::All {
                return Err(ApiError::workqueue_needs_deliver_all());
            }
            if !s.consumers.is_empty() {
                let mine = config.filters();
                if mine.is_empty() {
                    return Err(ApiError::workqueue_multiple_unfiltered());
                }
                if !partition_unique(s, &mine) {
                    return Err(ApiError::workqueue_overlapping_filters());
                }
            }
        }
        match (s.consumers.get(&cname), req.action.as_str()) {
            (Some(c), action) => {
                // An update never changes the pause (CONSUMER.PAUSE does), as in nats-server.
                config.pause_until = c.config.pause_until.clone();
                if c.config == config {
                    return Ok(Self::consumer_info_value(s, c, now.mono));
                }
                if action == "create" {
                    return Err(ApiError::consumer_exists());
                }
                if let Some(c) = s.consumers.get_mut(&cname) {
                    c.config = config;
                    c.refresh_pause(now.mono, now.wall);
                }
            }
            (None, "update") => return Err(ApiError::consumer_does_not_exist()),
            (None, _) => {
                let mut c =
                    Consumer::new(stream, &cname, config, now.wall, s.store.as_store(), now.mono);
                c.refresh_pause(now.mono, now.wall);
                s.consumers.insert(cname.clone(), c);
            }
        }
        if let Err(e) = self.write_consumer(stream, &cname) {
            if let Some(s) = self.streams.get_mut(stream) {
                s.consumers.remove(&cname);
            }
            return Err(ApiError::consumer_create(e));
        }
        let s = self.stream(stream)?;
        let c = s.consumers.get(&cname).ok_or_else(ApiError::consumer_not_found)?;
        Ok(Self::consumer_info_value(s, c, now.mono))
    }

    fn consumer_info(&self, now: Now, stream: &str, name: &str) -> Result<Value, ApiError> {
        let s = self.stream(stream)?;
        let c = s.consumers.get(name).ok_or_else(ApiError::consumer_not_found)?;
        Ok(Self::consumer_info_value(s, c, now.mono))
    }

    fn consumer_delete(&mut self, stream: &str, name: &str) -> Result<Value, ApiError> {
        let s = self.streams.get_mut(stream).ok_or_else(ApiError::stream_not_found)?;
        let mut c = s.consumers.remove(name).ok_or_else(ApiError::consumer_not_found)?;
        c.close(&mut self.held);
        s.sweep_interest();
        self.remove_file(CONSUMERS_DIR, &format!("{stream}.{name}.json"))
            .map_err(ApiError::consumer_create)?;
        Ok(json!({"success": true}))
    }

    fn consumer_list(
        &self,
        now: Now,
        stream: &str,
        payload: &[u8],
        names: bool,
    ) -> Result<Value, ApiError> {
        let req: api::PagedRequest = body(payload)?;
        let s = self.stream(stream)?;
        let limit = if names { NAMES_LIMIT } else { LIST_LIMIT };
        let page = s.consumers.values().skip(req.offset).take(limit);
        let items: Vec<Value> = if names {
            page.map(|c| json!(c.name)).collect()
        } else {
            page.map(|c| Self::consumer_info_value(s, c, now.mono)).collect()
        };
        Ok(
            json!({"total": s.consumers.len(), "offset": req.offset, "limit": limit, "consumers": items}),
        )
    }

    fn next(&mut self, now: Now, stream: &str, name: &str, reply: Option<&str>, payload: &[u8]) {
        let Some(reply) = reply.filter(|r| !r.is_empty()) else { return };
        let Some(s) = self.streams.get_mut(stream) else { return };
        let Some(c) = s.consumers.get_mut(name) else { return };
        let text = std::str::from_utf8(payload).unwrap_or("").trim();
        let req = if text.is_empty() {
            api::NextRequest::default()
        } else if let Ok(n) = text.parse::<i64>() {
            api::NextRequest { batch: Some(n), ..Default::default() }
        } else {
            match serde_json::from_str(text) {
                Ok(r) => r,
                Err(_) => {
                    let hdr = super::headers::status(400, "Bad Request", &[]);
                    self.held.push(Outgoing {
                        to: reply.into(),
                        subject: reply.into(),
                        reply: None,
                        headers: Some(hdr),
                        payload: Bytes::new(),
                    });
                    return;
                }
            }
        };
        c.request(now.mono, reply, req, &mut self.held);
        // Delivery happens in `flush`, after the stream's store is synced.
    }
}

/// A stream with `first_seq` starts there: a store that has never assigned a sequence (a new
/// stream, or one whose recovery finds nothing assigned) skips to it, durably, before anything
/// is stored. nats-server also purges a recovered file stream
/// whose first sequence is below a `first_seq` raised by an update; fjord never removes
/// messages for that.
fn start_at_first_seq(store: &mut dyn Store, first_seq: u64) -> Result<(), StoreError> {
    if first_seq > 1 && store.state().last_seq == 0 {
        store.compact(first_seq)?;
        store.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::disk::{FaultConfig, MemDisk};

    /// One `MemDisk` seen through many handles, as the real filesystem is by many `FsDisk`s.
    #[derive(Clone)]
    pub(super) struct Shared(pub(super) Arc<Mutex<MemDisk>>);

    impl Shared {
        pub(super) fn with<T>(&self, f: impl FnOnce(&mut MemDisk) -> T) -> T {
            f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
        }
    }

    impl Disk for Shared {
        fn create(&mut self, p: &str) -> Result<(), DiskError> {
            self.with(|d| d.create(p))
        }
        fn exists(&mut self, p: &str) -> Result<bool, DiskError> {
            self.with(|d| d.exists(p))
        }
        fn len(&mut self, p: &str) -> Result<u64, DiskError> {
            self.with(|d| d.len(p))
        }
        fn read_at(&mut self, p: &str, o: u64, b: &mut [u8]) -> Result<usize, DiskError> {
            self.with(|d| d.read_at(p, o, b))
        }
        fn write_at(&mut self, p: &str, o: u64, b: &[u8]) -> Result<(), DiskError> {
            self.with(|d| d.write_at(p, o, b))
        }
        fn append(&mut self, p: &str, b: &[u8]) -> Result<u64, DiskError> {
            self.with(|d| d.append(p, b))
        }
        fn sync(&mut self, p: &str) -> Result<(), DiskError> {
            self.with(|d| d.sync(p))
        }
        fn truncate(&mut self, p: &str, l: u64) -> Result<(), DiskError> {
            self.with(|d| d.truncate(p, l))
        }
        fn rename(&mut self, a: &str, b: &str) -> Result<(), DiskError> {
            self.with(|d| d.rename(a, b))
        }
        fn remove(&mut self, p: &str) -> Result<(), DiskError> {
            self.with(|d| d.remove(p))
        }
        fn list(&mut self, p: &str) -> Result<Vec<String>, DiskError> {
            self.with(|d| d.list(p))
        }
        fn sync_dir(&mut self, p: &str) -> Result<(), DiskError> {
            self.with(|d| d.sync_dir(p))
        }
        fn create_dir_all(&mut self, p: &str) -> Result<(), DiskError> {
            self.with(|d| d.create_dir_all(p))
        }
    }

    pub(super) fn open(disk: &Shared) -> Manager<Shared> {
        let factory_disk = disk.clone();
        let factory: DiskFactory<Shared> = Box::new(move || Ok(factory_disk.clone()));
        Manager::open(disk.clone(), factory, Now::default(), 1).expect("open")
    }

    /// Everything but advisories (`events.rs` has tests of its own).
    pub(super) fn outputs(m: &mut Manager<Shared>) -> Vec<Outgoing> {
        std::iter::from_fn(|| m.poll_output())
            .filter(|o| !o.to.starts_with("$JS.EVENT.ADVISORY."))
            .collect()
    }

    pub(super) fn json(o: &Outgoing) -> Value {
        serde_json::from_slice(&o.payload).expect("json")
    }

    #[test]
    fn power_loss_keeps_every_acknowledged_message_and_the_stream() {
        let disk = Shared(Arc::new(Mutex::new(MemDisk::new(7, FaultConfig::default()))));
        let mut m = open(&disk);
        let now = Now { mono: Instant::ZERO, wall: 1_000 };
        m.handle(
            now,
            "$JS.API.STREAM.CREATE.S",
            Some("r"),
            None,
            br#"{"name":"S","subjects":["s.>"]}"#,
        );
        m.flush(now, &|_| true);
        let out = outputs(&mut m);
        assert_eq!(json(&out[0])["type"], "io.nats.jetstream.api.v1.stream_create_response");
        for i in 0..5 {
            m.handle(now, "s.a", Some(&format!("ack{i}")), None, b"x");
        }
        assert!(outputs(&mut m).is_empty(), "no PubAck before the flush");
        m.flush(now, &|_| true);
        let acks = outputs(&mut m);
        assert_eq!(acks.len(), 5);
        assert_eq!(json(&acks[4])["seq"], 5);
        // Published but never flushed, so never acknowledged: may be lost.
        m.handle(now, "s.a", Some("late"), None, b"x");
        drop(m);
        disk.with(MemDisk::crash);

        let mut m = open(&disk);
        m.handle(now, "$JS.API.STREAM.INFO.S", Some("r"), None, b"");
        m.flush(now, &|_| true);
        let info = json(&outputs(&mut m)[0]);
        assert_eq!(info["config"]["subjects"][0], "s.>");
        assert!(info["state"]["messages"].as_u64().unwrap() >= 5, "{info}");
        assert!(m.subjects().contains(&"s.>".to_string()));
    }

    #[test]
    fn server_limits_refuse_reservations_and_publishes_past_them() {
        let disk = Shared(Arc::new(Mutex::new(MemDisk::new(7, FaultConfig::default()))));
        let mut m = open(&disk);
        m.set_limits(resources::ServerLimits { max_memory: 100, max_store: -1 });
        let now = Now::default();
        let answer = |m: &mut Manager<Shared>, subject: &str, body: &[u8]| -> Value {
            m.handle(now, subject, Some("r"), None, body);
            m.flush(now, &|_| true);
            let answers: Vec<Value> = outputs(m).iter().filter(|o| o.to == "r").map(json).collect();
            assert_eq!(answers.len(), 1, "{answers:?}");
            answers[0].clone()
        };
        let memory = |name: &str, max_bytes: i64| {
            json!({"name": name, "subjects": [name], "storage": "memory", "max_bytes": max_bytes})
                .to_string()
        };
        let a = answer(&mut m, "$JS.API.STREAM.CREATE.M", memory("M", 60).as_bytes());
        assert!(a.get("error").is_none(), "{a}");
        let a = answer(&mut m, "$JS.API.STREAM.CREATE.M2", memory("M2", 41).as_bytes());
        assert_eq!(a["error"]["err_code"], 10028, "{a}");
        // Without max_bytes a stream needs one byte; the file limit is apart (none here).
        let a = answer(&mut m, "$JS.API.STREAM.CREATE.N", memory("N", -1).as_bytes());
        assert!(a.get("error").is_none(), "{a}");
        let a = answer(&mut m, "$JS.API.STREAM.CREATE.F", br#"{"name":"F","max_bytes":1000}"#);
        assert!(a.get("error").is_none(), "{a}");
        let info = answer(&mut m, "$JS.API.INFO", b"");
        assert_eq!(
            (&info["reserved_memory"], &info["reserved_storage"]),
            (&json!(60), &json!(1000))
        );

        // Stored while the use is at most the limit; the publish after the crossing is refused.
        let payload = [b'x'; 45];
        let mut seqs = Vec::new();
        let refused = loop {
            let ack = answer(&mut m, "N", &payload);
            if ack.get("error").is_some() {
                break ack;
            }
            seqs.push(ack["seq"].clone());
            assert!(seqs.len() < 10, "never refused");
        };
        assert_eq!(
            refused,
            json!({"error": {"code": 503, "err_code": 10023, "description": "insufficient resources"},
                   "stream": "N", "seq": 0})
        );
        let info = answer(&mut m, "$JS.API.INFO", b"");
        let used = info["memory"].as_u64().unwrap();
        assert!(used > 100 && used - used / seqs.len() as u64 <= 100, "{info}");
        // The file stream is not affected.
        let ack = answer(&mut m, "F", &payload);
        assert_eq!(ack, json!({"stream": "F", "seq": 1}));
    }

    #[test]
    fn first_seq_is_where_a_stream_starts_and_stays_after_a_power_loss() {
        let disk = Shared(Arc::new(Mutex::new(MemDisk::new(7, FaultConfig::default()))));
        let mut m = open(&disk);
        let now = Now { mono: Instant::ZERO, wall: 1_000 };
        let create = br#"{"name":"F","subjects":["f"],"first_seq":100}"#;
        m.handle(now, "$JS.API.STREAM.CREATE.F", Some("r"), None, create);
        m.flush(now, &|_| true);
        let created = json(&outputs(&mut m)[0]);
        assert_eq!(
            (created["state"]["first_seq"].clone(), created["state"]["last_seq"].clone()),
            (100.into(), 99.into())
        );
        drop(m);
        // Acknowledged creation: the skip to 100 was durable before the answer.
        disk.with(MemDisk::crash);
        let mut m = open(&disk);
        m.handle(now, "f", Some("a"), None, b"x");
        m.flush(now, &|_| true);
        assert_eq!(json(&outputs(&mut m)[0])["seq"], 100);
        drop(m);
        disk.with(MemDisk::crash);
        // Recovery sees sequences assigned and moves nothing.
        let mut m = open(&disk);
        m.handle(now, "f", Some("b"), None, b"y");
        m.flush(now, &|_| true);
        assert_eq!(json(&outputs(&mut m)[0])["seq"], 101);
    }

    #[test]
    fn api_errors_carry_nats_server_codes() {
        let disk = Shared(Arc::new(Mutex::new(MemDisk::new(7, FaultConfig::default()))));
        let mut m = open(&disk);
        let now = Now::default();
        m.handle(now, "$JS.API.STREAM.INFO.NOPE", Some("a"), None, b"");
        m.handle(now, "$JS.API.STREAM.CREATE.X", Some("b"), None, br#"{"name":"Y"}"#);
        m.handle(
            now,
            "$JS.API.STREAM.CREATE.X",
            Some("c"),
            None,
            br#"{"name":"X","num_replicas":3}"#,
        );
        m.handle(now, "$JS.API.STREAM.CREATE.X", Some("d"), None, b"{not json");
        m.handle(
            now,
            "$JS.API.STREAM.CREATE.A",
            Some("e"),
            None,
            br#"{"name":"A","subjects":["x.*"]}"#,
        );
        m.handle(
            now,
            "$JS.API.STREAM.CREATE.B",
            Some("f"),
            None,
            br#"{"name":"B","subjects":["x.y"]}"#,
        );
        m.handle(now, "$JS.API.CONSUMER.INFO.A.nope", Some("g"), None, b"");
        m.flush(now, &|_| true);
        let codes: Vec<Value> =
            outputs(&mut m).iter().map(|o| json(o)["error"]["err_code"].clone()).collect();
        assert_eq!(
            codes,
            vec![
                json!(10059),
                json!(10056),
                json!(10074),
                json!(10025),
                Value::Null,
                json!(10065),
                json!(10014)
            ]
        );
    }

    #[test]
    fn ack_confirmation_waits_for_the_consumer_state_write_plain_acks_do_not_force_one() {
        let disk = Shared(Arc::new(Mutex::new(MemDisk::new(7, FaultConfig::default()))));
        let mut m = open(&disk);
        let now = Now::default();
        let yes = |_: &str| true;
        m.handle(now, "$JS.API.STREAM.CREATE.S", Some("r"), None, br#"{"name":"S"}"#);
        m.handle(now, "S", None, None, b"1");
        m.handle(now, "S", None, None, b"2");
        let cfg = br#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit"}}"#;
        m.handle(now, "$JS.API.CONSUMER.CREATE.S.C", Some("r"), None, cfg);
        m.handle(now, "$JS.API.CONSUMER.MSG.NEXT.S.C", Some("inbox"), None, b"2");
        m.flush(now, &yes);
        let acks: Vec<String> = outputs(&mut m).into_iter().filter_map(|o| o.reply).collect();
        assert_eq!(acks.len(), 2);
        let state = |d: &Shared| -> Value {
            let bytes = d.with(|d| d.read_all("jetstream/consumers/S.C.json")).unwrap();
            serde_json::from_slice::<Value>(&bytes).unwrap()["state"]["ack_floor"]["stream_seq"]
                .clone()
        };
        m.handle(now, &acks[0], None, None, b"+ACK");
        m.flush(now, &yes);
        assert_eq!(state(&disk), json!(0), "a plain ack is written lazily");
        m.handle(now, &acks[1], Some("confirm"), None, b"+ACK");
        m.flush(now, &yes);
        assert_eq!(state(&disk), json!(2), "written before the confirmation goes out");
        assert_eq!(outputs(&mut m).iter().filter(|o| o.to == "confirm").count(), 1);
    }

    #[test]
    fn mirrors_keep_origin_sequences_and_sources_resume_after_a_crash() {
        let disk = Shared(Arc::new(Mutex::new(MemDisk::new(7, FaultConfig::default()))));
        let mut m = open(&disk);
        let now = Now { mono: Instant::ZERO, wall: 1_000 };
        let yes = |_: &str| true;
        let api = |m: &mut Manager<Shared>, subject: &str, body: &str| -> Value {
            m.handle(now, subject, Some("r"), None, body.as_bytes());
            m.flush(now, &|_| true);
            let out = outputs(m);
            json(out.iter().rfind(|o| o.to == "r").expect("an answer"))
        };
        api(&mut m, "$JS.API.STREAM.CREATE.O", r#"{"name":"O","subjects":["o.>"]}"#);
        for subject in ["o.a", "o.b", "o.a", "o.c"] {
            m.handle(now, subject, None, None, b"x");
        }
        m.flush(now, &yes);
        // Gaps at the origin (2 and the last, 4) before the mirror exists.
        api(&mut m, "$JS.API.STREAM.MSG.DELETE.O", r#"{"seq":2}"#);
        api(&mut m, "$JS.API.STREAM.MSG.DELETE.O", r#"{"seq":4}"#);
        let created =
            api(&mut m, "$JS.API.STREAM.CREATE.M", r#"{"name":"M","mirror":{"name":"O"}}"#);
        assert_eq!(created["mirror"]["name"], "O");
        assert!(created["config"].get("subjects").is_none(), "{created}");
        let sources = r#"{"name":"S","sources":[{"name":"O","filter_subject":"o.a"}]}"#;
        api(&mut m, "$JS.API.STREAM.CREATE.S", sources);
        m.flush(now, &yes);
        let info = api(&mut m, "$JS.API.STREAM.INFO.M", "");
        assert_eq!(info["state"]["last_seq"], 3);
        assert_eq!(info["state"]["messages"], 2);
        assert_eq!(info["state"]["num_deleted"], 1);
        assert_eq!(info["mirror"]["lag"], 0);
        m.handle(now, "o.a", None, None, b"y");
        m.flush(now, &yes);
        let info = api(&mut m, "$JS.API.STREAM.INFO.M", "");
        assert_eq!(
            (info["state"]["last_seq"].clone(), info["state"]["num_deleted"].clone()),
            (json!(5), json!(2))
        );
        let info = api(&mut m, "$JS.API.STREAM.INFO.S", "");
        assert_eq!(info["state"]["messages"], 3, "o.a at 1, 3 and 5");
        assert_eq!(info["sources"][0]["seq"], 5);
        let got = api(&mut m, "$JS.API.STREAM.MSG.GET.S", r#"{"seq":3}"#);
        let hdrs = got["message"]["hdrs"].as_str().unwrap().to_string();
        assert!(!hdrs.is_empty());
        drop(m);
        disk.with(MemDisk::crash);

        let mut m = open(&disk);
        m.flush(now, &yes);
        m.handle(now, "o.a", None, None, b"z");
        m.flush(now, &yes);
        let info = api(&mut m, "$JS.API.STREAM.INFO.S", "");
        assert_eq!(info["state"]["messages"], 4, "nothing sourced twice after the restart");
        let info = api(&mut m, "$JS.API.STREAM.INFO.M", "");
        assert_eq!(info["state"]["last_seq"], 6);
        assert_eq!(info["state"]["messages"], 4);
        // A mirror's config cannot change, only go (promotion).
        let other = r#"{"name":"M","mirror":{"name":"S"}}"#;
        assert_eq!(api(&mut m, "$JS.API.STREAM.UPDATE.M", other)["error"]["err_code"], 10055);
        let promoted = api(&mut m, "$JS.API.STREAM.UPDATE.M", r#"{"name":"M"}"#);
        assert!(promoted.get("mirror").is_none(), "{promoted}");
        assert_eq!(promoted["config"]["subjects"], json!(["M"]));
        // Cycles are refused (nats-server's walk: a source whose subjects flow back).
        let cycle = r#"{"name":"X","subjects":["x.>"],"sources":[{"name":"X"}]}"#;
        assert_eq!(api(&mut m, "$JS.API.STREAM.CREATE.X", cycle)["error"]["err_code"], 10052);
        let back = r#"{"name":"O","subjects":["o.>"],"sources":[{"name":"S"}]}"#;
        assert!(api(&mut m, "$JS.API.STREAM.UPDATE.O", back).get("error").is_none());
    }
}
