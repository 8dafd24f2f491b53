//! One stream: its config, its store, the publish path and the PubAcks waiting for a flush.
//!
//! Inputs: `publish(now, ...)` for each message on one of the stream's subjects; `flush()` once
//! per batch (group commit); `expire(wall)` from the manager's tick. Outputs: `flush` returns
//! the PubAcks that may now be sent, because the store reported their sequences durable. Nothing
//! is acknowledged before that: an error answer may go at once (it promises nothing), a success
//! or duplicate answer waits (a duplicate may point at a sequence that is still pending).

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use serde_json::json;

use super::api::{DiscardPolicy, Retention, StreamConfig};
use super::consumer::Consumer;
use super::errors::ApiError;
use super::headers;
use super::sourcing::Sourcing;
use crate::store::snapshot::SnapshotError;
use crate::store::{Discard, Engine, Limits, Log, StoreError, StreamStore};

/// A store the stream can also re-limit on `STREAM.UPDATE` (the `StreamStore` trait has no
/// `set_limits`; both store kinds are an `Engine`, which does).
pub trait Store: StreamStore + Send {
    fn set_limits(&mut self, limits: Limits);
    /// What `expire(now)` would remove.
    fn expiring(&self, now: i64) -> Vec<u64>;
    fn as_store(&mut self) -> &mut dyn StreamStore;
    fn as_store_ref(&self) -> &dyn StreamStore;
    /// Appends the store's snapshot (`store::snapshot`) to `out`, for `STREAM.SNAPSHOT`.
    fn snapshot(&mut self, out: &mut Vec<u8>) -> Result<(), StoreError>;
    /// Restores a snapshot into this empty store (pending until `flush`), for `STREAM.RESTORE`.
    fn restore(&mut self, snap: &[u8]) -> Result<u64, SnapshotError>;
}

impl<L: Log> Store for Engine<L>
where
    Engine<L>: StreamStore + Send,
{
    fn set_limits(&mut self, limits: Limits) {
        Engine::set_limits(self, limits)
    }
    fn expiring(&self, now: i64) -> Vec<u64> {
        Engine::expiring(self, now)
    }
    fn as_store(&mut self) -> &mut dyn StreamStore {
        self
    }
    fn as_store_ref(&self) -> &dyn StreamStore {
        self
    }
    fn snapshot(&mut self, out: &mut Vec<u8>) -> Result<(), StoreError> {
        Engine::snapshot(self, out)
    }
    fn restore(&mut self, snap: &[u8]) -> Result<u64, SnapshotError> {
        Engine::restore(self, snap)
    }
}

/// What a publish turned into.
#[derive(Debug, PartialEq, Eq)]
pub enum Published {
    /// Stored at this (pending) sequence; ack after the next flush.
    Stored(u64),
    /// Already stored within the duplicate window at this sequence.
    Duplicate(u64),
    Rejected(ApiError),
}

pub struct Stream {
    pub config: StreamConfig,
    /// Unix nanoseconds of creation.
    pub created: i64,
    pub store: Box<dyn Store>,
    pub consumers: BTreeMap<String, Consumer>,
    /// `Nats-Msg-Id` → (sequence, publish time) within the duplicate window.
    dedup: BTreeMap<String, (u64, i64)>,
    /// Ids in publish order, to prune the window from the front.
    dedup_order: VecDeque<(i64, String)>,
    last_msg_id: Option<String>,
    /// Replies waiting for the flush that makes their sequence durable.
    pending_acks: Vec<(String, Bytes)>,
    /// Every sequence up to here is durable: consumers deliver nothing above it, so a consumer
    /// never hands out a message a crash could still take back.
    pub durable_seq: u64,
    dirty: bool,
    /// The mirror or sources feeding this stream, and where each has got to.
    pub sourcing: Sourcing,
}

/// Store limits from a stream config (−1 means unlimited in the API, 0 in the store).
pub fn limits(config: &StreamConfig) -> Limits {
    let pos = |v: i64| if v > 0 { v as u64 } else { 0 };
    Limits {
        max_msgs: pos(config.max_msgs),
        max_bytes: pos(config.max_bytes),
        max_age: pos(config.max_age),
        max_msgs_per_subject: pos(config.max_msgs_per_subject),
        discard: match config.discard {
            DiscardPolicy::Old => Discard::Old,
            DiscardPolicy::New => Discard::New,
        },
        discard_new_per_subject: config.discard_new_per_subject,
    }
}

impl Stream {
    /// A stream over `store`, which may hold recovered messages: those are durable, and the
    /// dedup window is rebuilt from their `Nats-Msg-Id` headers.
    pub fn new(config: StreamConfig, created: i64, mut store: Box<dyn Store>, wall: i64) -> Self {
        let durable_seq = store.state().last_seq;
        let sourcing = Sourcing::new(&config, store.as_store());
        let mut stream = Stream {
            config,
            created,
            store,
            consumers: BTreeMap::new(),
            dedup: BTreeMap::new(),
            dedup_order: VecDeque::new(),
            last_msg_id: None,
            pending_acks: Vec::new(),
            durable_seq,
            dirty: false,
            sourcing,
        };
        stream.rebuild_dedup(wall);
        stream
    }

    fn rebuild_dedup(&mut self, wall: i64) {
        let since = wall.saturating_sub(self.config.duplicate_window);
        let mut seq = self.store.seq_at_time(since);
        while let Ok(Some(msg)) = self.store.load_next(b">", seq) {
            seq = msg.seq + 1;
            if let Some(id) = headers::get(&msg.headers, headers::MSG_ID) {
                self.dedup.insert(id.to_string(), (msg.seq, msg.ts));
                self.dedup_order.push_back((msg.ts, id.to_string()));
                self.last_msg_id = Some(id.to_string());
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn matches(&self, subject: &str) -> bool {
        self.config
            .subjects
            .iter()
            .any(|p| crate::subject::matches(p.as_bytes(), subject.as_bytes()))
    }

    /// The subject a message published on `subject` is stored under: the stream's
    /// `subject_transform` applied, if it has one that matches.
    pub fn stored_subject<'a>(&self, subject: &'a str) -> std::borrow::Cow<'a, str> {
        let transformed = self.config.subject_transform.as_ref().and_then(|t| {
            super::transform::Transform::from_config(t).ok().flatten()?.apply(subject)
        });
        transformed.map_or(std::borrow::Cow::Borrowed(subject), std::borrow::Cow::Owned)
    }

    /// The publish path. `wall` is Unix nanoseconds (the message's timestamp and the dedup
    /// clock). With a `reply`, the answer is queued (success) or returned (error) as PubAck JSON.
    pub fn publish(
        &mut self,
        wall: i64,
        subject: &str,
        reply: Option<&str>,
        hdrs: Option<&[u8]>,
        payload: &[u8],
    ) -> (Published, Option<(String, Bytes)>) {
        // The stream's own transform comes before anything else (nats-server's order).
        let transformed = self.stored_subject(subject);
        let subject = transformed.as_ref();
        let result = if hdrs.and_then(|h| headers::get(h, headers::STREAM_SOURCE)).is_some() {
            // Only sourcing stamps messages with their origin.
            Published::Rejected(ApiError::source_header_not_allowed())
        } else {
            self.try_publish(wall, subject, hdrs, payload, false)
        };
        let name = self.config.name.clone();
        let Some(reply) = reply.filter(|r| !r.is_empty()) else {
            return (result, None);
        };
        if self.config.no_ack {
            return (result, None);
        }
        let body = match &result {
            Published::Stored(seq) => json!({"stream": name, "seq": seq}),
            Published::Duplicate(seq) => json!({"stream": name, "seq": seq, "duplicate": true}),
            Published::Rejected(e) => json!({"error": e, "stream": name, "seq": 0}),
        };
        let answer = (reply.to_string(), Bytes::from(body.to_string()));
        match result {
            Published::Rejected(_) => (result, Some(answer)),
            _ => {
                self.pending_acks.push(answer);
                (result, None)
            }
        }
    }

    /// A message a source feeds in (its headers already stamped): the publish path without an
    /// answer. A duplicate (by `Nats-Msg-Id`) counts as taken, as in nats-server.
    pub fn publish_sourced(
        &mut self,
        wall: i64,
        subject: &str,
        hdrs: &[u8],
        payload: &[u8],
    ) -> Result<(), ApiError> {
        match self.try_publish(wall, subject, Some(hdrs), payload, true) {
            Published::Stored(_) | Published::Duplicate(_) => Ok(()),
            Published::Rejected(e) => Err(e),
        }
    }

    /// A message the mirror takes at its origin's sequence, timestamp and all. The first one
    /// into an empty mirror moves its first sequence there, as nats-server does, rather than
    /// leaving a run of deleted sequences in front.
    pub fn store_mirrored(
        &mut self,
        seq: u64,
        subject: &str,
        hdrs: &[u8],
        payload: &[u8],
        ts: i64,
    ) -> Result<(), StoreError> {
        let state = self.store.state();
        if state.msgs == 0 && seq > state.last_seq + 1 {
            self.store.compact(seq)?;
        }
        self.dirty = true;
        // The origin's TTL holds here too when this stream allows TTLs (nats-server reads it
        // from the stored `Nats-TTL` header).
        let ttl = headers::get(hdrs, headers::TTL)
            .filter(|_| self.config.allow_msg_ttl)
            .and_then(|v| parse_message_ttl(v).ok())
            .filter(|secs| *secs > 0)
            .map(|secs| (secs as u64).saturating_mul(1_000_000_000));
        self.store.store_at(seq, subject.as_bytes(), hdrs, payload, ts, ttl)
    }

    /// `sourced`: the message comes from a source, checked at its origin already. A TTL or
    /// roll-up this stream does not allow is then ignored rather than refused, as nats-server
    /// does: refusing would stop the source at that message for good.
    fn try_publish(
        &mut self,
        wall: i64,
        subject: &str,
        hdrs: Option<&[u8]>,
        payload: &[u8],
        sourced: bool,
    ) -> Published {
        if self.config.sealed {
            return Published::Rejected(ApiError::sealed());
        }
        let hdrs = hdrs.unwrap_or_default();
        if self.config.max_msg_size > 0
            && (hdrs.len() + payload.len()) as i64 > self.config.max_msg_size
        {
            return Published::Rejected(ApiError::message_too_large());
        }
        self.prune_dedup(wall);
        let msg_id = headers::get(hdrs, headers::MSG_ID).filter(|s| !s.is_empty());
        if let Some(id) = msg_id {
            if let Some((seq, _)) = self.dedup.get(id) {
                return Published::Duplicate(*seq);
            }
        }
        if let Some(expected) = headers::get(hdrs, headers::EXPECTED_STREAM) {
            if expected != self.config.name {
                return Published::Rejected(ApiError::expected_stream_mismatch());
            }
        }
        // A TTL on a stream without them is refused outright; an unparsable one is refused
        // below, after the other checks (nats-server's order).
        let ttl = headers::get(hdrs, headers::TTL)
            .filter(|_| !sourced || self.config.allow_msg_ttl)
            .map(parse_message_ttl);
        let ttl = if sourced { ttl.filter(Result::is_ok) } else { ttl };
        if matches!(ttl, Some(Ok(t)) if t != 0) && !self.config.allow_msg_ttl {
            return Published::Rejected(ApiError::message_ttl_disabled());
        }
        let last_seq = self.store.state().last_seq;
        if let Some(expected) = headers::get(hdrs, headers::EXPECTED_LAST_SEQ) {
            // An unparsable number reads as a wrong sequence, as in nats-server.
            if expected.parse::<u64>().ok() != Some(last_seq) {
                return Published::Rejected(ApiError::wrong_last_sequence(last_seq));
            }
        }
        if let Some(expected) = headers::get(hdrs, headers::EXPECTED_LAST_SUBJ_SEQ) {
            let last = match self.store.load_last(subject.as_bytes()) {
                Ok(m) => m.map_or(0, |m| m.seq),
                Err(e) => return Published::Rejected(ApiError::store_failed(e)),
            };
            if expected.parse::<u64>().ok() != Some(last) {
                return Published::Rejected(ApiError::wrong_last_sequence(last));
            }
        }
        if let Some(expected) = headers::get(hdrs, headers::EXPECTED_LAST_MSG_ID) {
            let last = self.last_msg_id.as_deref().unwrap_or("");
            if expected != last {
                return Published::Rejected(ApiError::wrong_last_msg_id(last));
            }
        }
        let rollup_allowed = self.config.allow_rollup_hdrs && !self.config.deny_purge;
        let rollup = match headers::get(hdrs, headers::ROLLUP) {
            None => None,
            Some(_) if sourced && !rollup_allowed => None,
            Some(_) if !rollup_allowed => {
                return Published::Rejected(ApiError::rollup_denied());
            }
            Some(v) if v.eq_ignore_ascii_case("sub") => Some(subject.to_string()),
            Some(v) if v.eq_ignore_ascii_case("all") => Some(">".to_string()),
            Some(v) => return Published::Rejected(ApiError::rollup_invalid(v)),
        };
        let mut raised_ttl_headers = None;
        let ttl = match ttl {
            None | Some(Ok(0)) => None,
            // "never": no TTL, and `expire` spares it from max age.
            Some(Ok(t)) if t < 0 => None,
            Some(Ok(secs)) => {
                // Markers must outlive nothing they replace: TTLs are at least the marker TTL
                // (unless a subject only ever holds one message), and the header says so.
                let marker = self.config.subject_delete_marker_ttl / 1_000_000_000;
                if marker > secs && self.config.max_msgs_per_subject != 1 {
                    let rest = headers::without(hdrs, headers::TTL);
                    raised_ttl_headers =
                        Some(headers::with_extra(&rest, &[(headers::TTL, marker.to_string())]));
                    Some((marker as u64).saturating_mul(1_000_000_000))
                } else {
                    Some((secs as u64).saturating_mul(1_000_000_000))
                }
            }
            Some(Err(e)) => return Published::Rejected(e),
        };
        let hdrs: &[u8] = raised_ttl_headers.as_deref().unwrap_or(hdrs);
        if !self.has_interest(subject) {
            // Interest retention with no consumer for this subject: nats-server takes the
            // sequence (and acknowledges it) but keeps nothing.
            return match self.store.skip(1, wall) {
                Ok(seq) => {
                    self.dirty = true;
                    if let Some(id) = msg_id {
                        self.dedup.insert(id.to_string(), (seq, wall));
                        self.dedup_order.push_back((wall, id.to_string()));
                        self.last_msg_id = Some(id.to_string());
                    }
                    Published::Stored(seq)
                }
                Err(e) => Published::Rejected(store_error(e)),
            };
        }
        // nats-server lets a roll-up through a subject at its discard-new-per-subject limit:
        // what it rolls up goes right after it is stored.
        let lift = rollup.is_some() && self.config.discard_new_per_subject;
        if lift {
            self.store
                .set_limits(Limits { discard_new_per_subject: false, ..limits(&self.config) });
        }
        let stored = self.store.store(subject.as_bytes(), hdrs, payload, wall, ttl);
        if lift {
            self.store.set_limits(limits(&self.config));
        }
        match stored {
            Ok(seq) => {
                self.dirty = true;
                if let Some(filter) = rollup {
                    // Everything the rollup covers below the new message goes; durable with
                    // the same flush that acknowledges the message.
                    if let Err(e) = self.store.purge_ex(filter.as_bytes(), Some(seq), None) {
                        return Published::Rejected(store_error(e));
                    }
                }
                if let Some(id) = msg_id {
                    self.dedup.insert(id.to_string(), (seq, wall));
                    self.dedup_order.push_back((wall, id.to_string()));
                    self.last_msg_id = Some(id.to_string());
                }
                Published::Stored(seq)
            }
            Err(e) => Published::Rejected(store_error(e)),
        }
    }

    fn prune_dedup(&mut self, wall: i64) {
        let horizon = wall.saturating_sub(self.config.duplicate_window);
        while let Some((ts, _)) = self.dedup_order.front() {
            if *ts > horizon {
                break;
            }
            if let Some((_, id)) = self.dedup_order.pop_front() {
                if self.dedup.get(&id).is_some_and(|(_, t)| *t <= horizon) {
                    self.dedup.remove(&id);
                }
            }
        }
    }

    /// Max age and per-message TTLs at `wall`. On a stream that allows TTLs, each expiring
    /// message is looked at: `Nats-TTL: never` keeps it from max age (nats-server skips it too),
    /// and with subject delete markers a message that is the last of its subject is not just
    /// removed: a marker (`Nats-Marker-Reason: MaxAge`, with the marker TTL) is published on its
    /// subject with a subject rollup, which removes it, so watchers learn the key went
    /// (nats-server's handleRemovalOrSdm). Markers themselves just expire.
    pub fn expire(&mut self, wall: i64) {
        if !self.config.allow_msg_ttl {
            if self.store.expire(wall).is_ok_and(|n| n > 0) {
                self.dirty = true;
            }
            return;
        }
        let marker_ttl = self.config.subject_delete_marker_ttl / 1_000_000_000;
        for seq in self.store.expiring(wall) {
            let Ok(Some(msg)) = self.store.load(seq) else { continue };
            let ttl = headers::get(&msg.headers, headers::TTL).map(parse_message_ttl);
            if matches!(ttl, Some(Ok(t)) if t < 0) {
                continue;
            }
            let subject = String::from_utf8_lossy(&msg.subject).into_owned();
            let is_marker = headers::get(&msg.headers, headers::MARKER_REASON).is_some()
                || headers::get(&msg.headers, "KV-Operation") == Some("PURGE");
            let last = marker_ttl > 0
                && self
                    .store
                    .subjects_totals(subject.as_bytes())
                    .get(subject.as_bytes())
                    .is_some_and(|n| *n == 1);
            if last && !is_marker {
                let hdr = headers::with_extra(
                    b"",
                    &[
                        (headers::MARKER_REASON, "MaxAge".to_string()),
                        (headers::TTL, go_duration_secs(marker_ttl)),
                        (headers::ROLLUP, "sub".to_string()),
                    ],
                );
                let _ = self.try_publish(wall, &subject, Some(&hdr), b"", false);
            } else {
                let _ = self.store.remove(seq);
            }
            self.dirty = true;
        }
    }

    /// Whether a message on `subject` is worth storing: always, except on an interest stream
    /// where no consumer's filter takes the subject (nats-server's consumer sublist check).
    fn has_interest(&self, subject: &str) -> bool {
        if self.config.retention != Retention::Interest {
            return true;
        }
        self.consumers.values().any(|c| {
            let filters = c.config.filters();
            filters.is_empty()
                || filters.iter().any(|f| crate::subject::matches(f.as_bytes(), subject.as_bytes()))
        })
    }

    /// Messages some consumer is done with (acked, terminated, delivered without acks):
    /// work-queue retention removes them; interest retention removes those no consumer still
    /// needs. The removal is durable with the next flush, which also holds back any ack
    /// confirmation.
    pub fn retire(&mut self, seqs: &[u64]) {
        match self.config.retention {
            Retention::Limits => {}
            Retention::Workqueue => {
                for &seq in seqs {
                    // Already gone (limits, purge) is fine; a failing store shows up at flush.
                    let _ = self.store.remove(seq);
                }
            }
            Retention::Interest => {
                for &seq in seqs {
                    self.retire_if_unwanted(seq);
                }
            }
        }
    }

    fn retire_if_unwanted(&mut self, seq: u64) {
        let Ok(Some(msg)) = self.store.load(seq) else { return };
        let subject = String::from_utf8_lossy(&msg.subject);
        if !self.consumers.values().any(|c| c.needs(seq, &subject)) {
            let _ = self.store.remove(seq);
        }
    }

    /// After a consumer left an interest stream: every message nobody needs any more goes, as
    /// nats-server does when a consumer is deleted.
    pub fn sweep_interest(&mut self) {
        if self.config.retention != Retention::Interest {
            return;
        }
        let mut seq = self.store.state().first_seq;
        while let Ok(Some(msg)) = self.store.load_next(b">", seq) {
            seq = msg.seq + 1;
            self.retire_if_unwanted(msg.seq);
        }
    }

    /// Whether a flush has anything to make durable or release.
    pub fn needs_flush(&self) -> bool {
        self.dirty || !self.pending_acks.is_empty() || self.store.lsn() > self.store.durable_lsn()
    }

    /// Group commit: one store flush, then the PubAcks it covers. On failure the waiting
    /// publishers get an error (they may retry with the same `Nats-Msg-Id`) and nothing new
    /// becomes visible to consumers.
    pub fn flush(&mut self) -> Vec<(String, Bytes)> {
        self.dirty = false;
        match self.store.flush() {
            Ok(_) => {
                self.durable_seq = self.store.state().last_seq;
                std::mem::take(&mut self.pending_acks)
            }
            Err(e) => {
                let err = ApiError::store_failed(e);
                let body = json!({"error": err, "stream": self.config.name, "seq": 0}).to_string();
                self.pending_acks
                    .drain(..)
                    .map(|(reply, _)| (reply, Bytes::from(body.clone())))
                    .collect()
            }
        }
    }
}

/// A `Nats-TTL` value as nats-server reads it: a Go duration of at least a second, or whole
/// seconds; seconds out, -1 for `never`, 0 for none.
pub fn parse_message_ttl(text: &str) -> Result<i64, ApiError> {
    if text.eq_ignore_ascii_case("never") {
        return Ok(-1);
    }
    if let Ok(secs) = text.parse::<i64>() {
        return if secs < 0 { Err(ApiError::message_ttl_invalid()) } else { Ok(secs) };
    }
    match crate::time::parse_go_duration(text) {
        Ok(d) if d.as_secs() >= 1 => Ok(d.as_secs() as i64),
        _ => Err(ApiError::message_ttl_invalid()),
    }
}

/// Whole seconds as Go prints a `time.Duration` (`1s`, `1m30s`, `2h0m0s`).
fn go_duration_secs(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// The PubAck error nats-server gives for a store refusal (`NewJSStreamStoreFailedError`).
pub fn store_error(e: StoreError) -> ApiError {
    ApiError::store_failed(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    /// A memory-backed stream over `config` (normalized).
    fn open(config: StreamConfig) -> Stream {
        let config = config.normalize().unwrap();
        let store = MemStore::new(limits(&config));
        Stream::new(config, 1, Box::new(store), 1)
    }

    fn stream() -> Stream {
        open(StreamConfig { name: "S".into(), subjects: vec!["s.>".into()], ..Default::default() })
    }

    fn hdr(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut s = String::from("NATS/1.0\r\n");
        for (k, v) in pairs {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        s.push_str("\r\n");
        s.into_bytes()
    }

    #[test]
    fn sourced_messages_skip_what_only_the_origin_checks() {
        let mut s = stream();
        let h = hdr(&[("Nats-TTL", "5s"), ("Nats-Rollup", "all")]);
        let (r, _) = s.publish(10, "s.a", None, Some(&h), b"x");
        assert_eq!(r, Published::Rejected(ApiError::message_ttl_disabled()), "from a client");
        assert_eq!(s.publish_sourced(10, "s.a", &h, b"x"), Ok(()), "from a source");
        assert_eq!(s.store.load(1).unwrap().unwrap().ttl, None, "the TTL is not applied");
        let stamped = hdr(&[("Nats-Stream-Source", "O 1 > > s.a id")]);
        let (r, _) = s.publish(10, "s.a", None, Some(&stamped), b"x");
        assert_eq!(r, Published::Rejected(ApiError::source_header_not_allowed()));
    }

    #[test]
    fn a_mirror_keeps_origin_sequences_and_its_ttls_when_allowed() {
        let mut s = open(StreamConfig {
            name: "M".into(),
            mirror: Some(super::super::api::StreamSource {
                name: "O".into(),
                ..Default::default()
            }),
            allow_msg_ttl: true,
            ..Default::default()
        });
        let h = hdr(&[("Nats-TTL", "5s")]);
        s.store_mirrored(4, "o.a", &h, b"x", 10).unwrap();
        s.store_mirrored(6, "o.b", b"", b"y", 11).unwrap();
        let st = s.store.state();
        assert_eq!((st.first_seq, st.last_seq, st.msgs, st.num_deleted), (4, 6, 2, 1));
        assert_eq!(s.store.load(4).unwrap().unwrap().ttl, Some(5_000_000_000));
        assert!(s.store_mirrored(6, "o.b", b"", b"y", 11).is_err(), "never below the last");
    }

    #[test]
    fn acks_wait_for_flush() {
        let mut s = stream();
        let (r, now) = s.publish(10, "s.a", Some("r1"), None, b"x");
        assert_eq!(r, Published::Stored(1));
        assert!(now.is_none(), "a success is never answered before the flush");
        assert_eq!(s.durable_seq, 0, "consumers must not see it yet");
        let acks = s.flush();
        assert_eq!(acks, vec![("r1".to_string(), Bytes::from(r#"{"seq":1,"stream":"S"}"#))]);
        assert_eq!(s.durable_seq, 1);
    }

    #[test]
    fn dedup_within_window_only() {
        let mut s = stream();
        let h = hdr(&[("Nats-Msg-Id", "a")]);
        assert_eq!(s.publish(10, "s.a", None, Some(&h), b"x").0, Published::Stored(1));
        assert_eq!(s.publish(20, "s.a", None, Some(&h), b"x").0, Published::Duplicate(1));
        let later = 10 + s.config.duplicate_window + 1;
        assert_eq!(s.publish(later, "s.a", None, Some(&h), b"x").0, Published::Stored(2));
    }

    #[test]
    fn expected_headers() {
        let mut s = stream();
        s.publish(10, "s.a", None, None, b"x");
        let wrong = hdr(&[("Nats-Expected-Last-Sequence", "5")]);
        let (r, answer) = s.publish(10, "s.a", Some("r"), Some(&wrong), b"x");
        assert_eq!(r, Published::Rejected(ApiError::wrong_last_sequence(1)));
        let body: serde_json::Value = serde_json::from_slice(&answer.unwrap().1).unwrap();
        assert_eq!(body["error"]["err_code"], 10071);
        let right = hdr(&[("Nats-Expected-Last-Sequence", "1")]);
        assert_eq!(s.publish(10, "s.a", None, Some(&right), b"x").0, Published::Stored(2));
        let subj = hdr(&[("Nats-Expected-Last-Subject-Sequence", "0")]);
        assert_eq!(s.publish(10, "s.b", None, Some(&subj), b"x").0, Published::Stored(3));
        assert!(matches!(s.publish(10, "s.b", None, Some(&subj), b"x").0, Published::Rejected(_)));
        let other = hdr(&[("Nats-Expected-Stream", "T")]);
        assert_eq!(
            s.publish(10, "s.b", None, Some(&other), b"x").0,
            Published::Rejected(ApiError::expected_stream_mismatch())
        );
    }

    #[test]
    fn rollup_needs_permission_and_keeps_only_the_new_message() {
        let mut s = stream();
        s.publish(10, "s.a", None, None, b"1");
        s.publish(10, "s.b", None, None, b"1");
        let roll = hdr(&[("Nats-Rollup", "sub")]);
        assert_eq!(
            s.publish(10, "s.a", None, Some(&roll), b"2").0,
            Published::Rejected(ApiError::rollup_denied())
        );
        s.config.allow_rollup_hdrs = true;
        assert_eq!(s.publish(10, "s.a", None, Some(&roll), b"2").0, Published::Stored(3));
        assert_eq!(s.store.state().msgs, 2, "s.a rolled up, s.b untouched");
        let all = hdr(&[("Nats-Rollup", "all")]);
        assert_eq!(s.publish(10, "s.c", None, Some(&all), b"3").0, Published::Stored(4));
        assert_eq!(s.store.state().msgs, 1);
    }

    #[test]
    fn discard_new_still_replaces_per_subject_as_kv_needs() {
        let mut s = open(StreamConfig {
            name: "KV".into(),
            subjects: vec!["k.>".into()],
            discard: DiscardPolicy::New,
            max_msgs_per_subject: 1,
            ..Default::default()
        });
        assert_eq!(s.publish(10, "k.a", None, None, b"1").0, Published::Stored(1));
        assert_eq!(s.publish(10, "k.a", None, None, b"2").0, Published::Stored(2));
        assert_eq!(s.store.state().msgs, 1);
        s.config.discard_new_per_subject = true;
        s.config.allow_rollup_hdrs = true;
        s.store.set_limits(limits(&s.config));
        assert!(matches!(s.publish(10, "k.a", None, None, b"3").0, Published::Rejected(_)));
        // A roll-up goes through (as in nats-server) and leaves the subject at its limit.
        let roll = hdr(&[("Nats-Rollup", "sub")]);
        assert_eq!(s.publish(10, "k.a", None, Some(&roll), b"4").0, Published::Stored(3));
        assert_eq!(s.store.state().msgs, 1);
        assert!(matches!(s.publish(10, "k.a", None, None, b"5").0, Published::Rejected(_)));
    }

    /// A value too big for what max_bytes leaves is refused, and the value it would have
    /// replaced stays (fjord once removed it first, then refused the new one).
    #[test]
    fn a_refused_replacement_keeps_the_value_it_would_have_replaced() {
        let mut s = open(StreamConfig {
            name: "KV".into(),
            subjects: vec!["k.>".into()],
            discard: DiscardPolicy::New,
            max_msgs_per_subject: 1,
            // Memory messages of 16 + 3 + 1 bytes: two of them, and not a third.
            max_bytes: 45,
            ..Default::default()
        });
        assert_eq!(s.publish(10, "k.a", None, None, b"1").0, Published::Stored(1));
        assert_eq!(s.publish(10, "k.b", None, None, b"2").0, Published::Stored(2));
        let big = [b'x'; 30];
        assert!(matches!(s.publish(10, "k.a", None, None, &big).0, Published::Rejected(_)));
        assert_eq!(s.store.load_last(b"k.a").unwrap().map(|m| m.payload), Some(b"1"[..].into()));
        // One no bigger than the value it replaces fits, whatever max_bytes says.
        assert_eq!(s.publish(10, "k.a", None, None, b"3").0, Published::Stored(3));
        assert_eq!(s.store.state().msgs, 2);
    }

    #[test]
    fn interest_keeps_only_what_a_consumer_still_needs() {
        use super::super::api::{AckPolicy, ConsumerConfig, Retention};
        use super::super::consumer::AckKind;
        use crate::time::Instant;
        let mut s = open(StreamConfig {
            name: "I".into(),
            subjects: vec!["i.>".into()],
            retention: Retention::Interest,
            ..Default::default()
        });
        assert_eq!(s.publish(10, "i.a", None, None, b"1").0, Published::Stored(1));
        let st = s.store.state();
        assert_eq!((st.msgs, st.first_seq, st.last_seq), (0, 2, 1), "no consumer: not kept");
        let consumer = |name: &str, filter: Option<&str>, s: &mut Stream| {
            let config = ConsumerConfig {
                durable_name: Some(name.into()),
                ack_policy: AckPolicy::Explicit,
                filter_subject: filter.map(Into::into),
                ..Default::default()
            }
            .normalize()
            .unwrap();
            let c = Consumer::new("I", name, config, 0, s.store.as_store(), Instant::ZERO);
            s.consumers.insert(name.into(), c);
        };
        consumer("A", Some("i.a"), &mut s);
        assert_eq!(s.publish(10, "i.b", None, None, b"2").0, Published::Stored(2));
        assert_eq!(s.store.state().msgs, 0, "no consumer takes i.b");
        consumer("B", None, &mut s);
        s.publish(10, "i.a", None, None, b"3");
        s.publish(10, "i.b", None, None, b"4");
        assert_eq!(s.store.state().msgs, 2);
        let mut out = Vec::new();
        let ack_all = |s: &mut Stream, name: &str, out: &mut Vec<_>| {
            let c = s.consumers.get_mut(name).unwrap();
            c.request(
                Instant::ZERO,
                "inbox",
                super::super::api::NextRequest {
                    batch: Some(9),
                    no_wait: Some(true),
                    ..Default::default()
                },
                out,
            );
            c.pump(Instant::ZERO, 0, s.store.as_store(), 4, out);
            let seqs: Vec<u64> = c.state.pending.keys().copied().collect();
            for seq in seqs {
                c.ack(Instant::ZERO, seq, 0, &AckKind::Ack);
            }
            let done = std::mem::take(&mut c.done);
            s.retire(&done);
        };
        ack_all(&mut s, "A", &mut out);
        assert_eq!(s.store.state().msgs, 2, "B has acked nothing yet");
        ack_all(&mut s, "B", &mut out);
        assert_eq!(s.store.state().msgs, 0, "everyone acked both");
        s.publish(10, "i.b", None, None, b"5");
        s.consumers.remove("B");
        s.sweep_interest();
        assert_eq!(s.store.state().msgs, 0, "the only consumer that wanted it left");
    }

    #[test]
    fn message_ttls_and_subject_delete_markers() {
        const SEC: i64 = 1_000_000_000;
        let ttl = |v: &str| hdr(&[("Nats-TTL", v)]);
        let mut plain = stream();
        assert_eq!(
            plain.publish(0, "s.a", None, Some(&ttl("2s")), b"x").0,
            Published::Rejected(ApiError::message_ttl_disabled())
        );
        let mut s = open(StreamConfig {
            name: "T".into(),
            subjects: vec!["t.>".into()],
            subject_delete_marker_ttl: SEC,
            ..Default::default()
        });
        assert!(s.config.allow_msg_ttl && s.config.allow_rollup_hdrs, "markers imply both");
        for bad in ["500ms", "bogus", "-3"] {
            assert_eq!(
                s.publish(0, "t.a", None, Some(&ttl(bad)), b"x").0,
                Published::Rejected(ApiError::message_ttl_invalid()),
                "{bad}"
            );
        }
        assert_eq!(s.publish(0, "t.a", None, Some(&ttl("1")), b"x").0, Published::Stored(1));
        s.config.subject_delete_marker_ttl = 5 * SEC;
        let raised = hdr(&[("Nats-Msg-Id", "r"), ("Nats-TTL", "2s")]);
        assert_eq!(s.publish(0, "t.r", None, Some(&raised), b"r").0, Published::Stored(2));
        let stored = s.store.load(2).unwrap().unwrap();
        assert_eq!(&stored.headers[..], &b"NATS/1.0\r\nNats-Msg-Id: r\r\nNats-TTL: 5\r\n\r\n"[..]);
        s.store.remove(2).unwrap();
        s.config.subject_delete_marker_ttl = SEC;
        assert_eq!(s.publish(0, "t.b", None, Some(&ttl("never")), b"y").0, Published::Stored(3));
        assert_eq!(s.publish(0, "t.c", None, Some(&ttl("2s")), b"z").0, Published::Stored(4));
        assert_eq!(s.publish(0, "t.c", None, None, b"z2").0, Published::Stored(5));
        s.expire(SEC);
        // t.a's only message expired: a marker took its place.
        let marker = s.store.load_last(b"t.a").unwrap().unwrap();
        assert_eq!(marker.seq, 6);
        assert_eq!(
            &marker.headers[..],
            &b"NATS/1.0\r\nNats-Marker-Reason: MaxAge\r\nNats-TTL: 1s\r\nNats-Rollup: sub\r\n\r\n"
                [..]
        );
        assert!(s.store.load(1).unwrap().is_none());
        s.expire(2 * SEC);
        // The marker expired without a marker of its own; t.c keeps its newer message.
        let left: Vec<u64> = (1..=6).filter(|q| s.store.load(*q).unwrap().is_some()).collect();
        assert_eq!(left, vec![3, 5]);
        // Max age spares `never`, and nothing else.
        s.config.max_age = 10 * SEC;
        s.store.set_limits(limits(&s.config));
        s.expire(100 * SEC);
        let left: Vec<u64> = (1..=7).filter(|q| s.store.load(*q).unwrap().is_some()).collect();
        assert_eq!(left, vec![3, 7], "t.c's last message became a marker (7); t.b lives on");
        // A TTL past the end of time is accepted (nats-server takes any whole seconds) and must
        // not overflow.
        let huge = ttl("9223372036854775807");
        assert!(matches!(s.publish(0, "t.z", None, Some(&huge), b"x").0, Published::Stored(_)));
        assert_eq!(go_duration_secs(90), "1m30s");
        assert_eq!(go_duration_secs(7200), "2h0m0s");
    }
}
