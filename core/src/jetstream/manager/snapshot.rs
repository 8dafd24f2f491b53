//! `$JS.API.STREAM.SNAPSHOT.<stream>` and `$JS.API.STREAM.RESTORE.<stream>`: the protocol of
//! `nats stream backup` / `nats stream restore`, as nats-server 2.15 speaks it.
//!
//! Snapshot: the request `{deliver_subject, no_consumers, chunk_size, window_size, jsck}` is
//! answered `{config, state}`, then the archive (`archive.rs`) goes to `deliver_subject` in
//! chunks of `chunk_size` (clamped to 1 KiB..1 MiB, default 128 KiB). Each full chunk carries
//! the reply subject `$JS.SNAPSHOT.ACK.<stream>.<id>.<len>.<index>`; at most
//! `window_size / chunk_size` chunks are unacknowledged (window clamped to 1 KiB..32 MiB,
//! default 8 MiB). A short last chunk carries no reply. The end is an empty message: with the
//! header `NATS/1.0 204` once a full chunk went out (and without headers otherwise, exactly as
//! nats-server does it), or `NATS/1.0 408 No Flow Response` when no ack came for 5 s, or
//! `NATS/1.0 408 No Interest` when the receiver unsubscribed. The sender waits up to 2 s for a
//! subscriber to the deliver subject to appear before the first chunk.
//!
//! The archive is taken at a flush, after the stream's store was synced: a backup never holds
//! a message whose publish could still be lost.
//!
//! Restore: the request `{config, state}` is checked like a create (and refused if the stream
//! exists), then answered `{deliver_subject: "$JS.SNAPSHOT.RESTORE.<stream>.<id>"}`. The
//! client sends the archive there in chunks, each a request answered with an empty message;
//! an empty chunk ends the upload and its reply gets the outcome, a `stream_create_response`
//! with the stream info or a `restore failed` error. Before that answer, the archive is
//! checked whole (nothing is created from a damaged or truncated one), the store is filled and
//! synced, the consumers' files and then the stream's config (the commit point) are written
//! with `replace_atomically`. A chunk without a reply subject, or 5 s without a chunk, drops
//! the upload, as nats-server does.

use std::time::Duration;

use std::collections::VecDeque;

use super::super::{advisories, archive};
use super::*;

const ACK_PREFIX: &str = "$JS.SNAPSHOT.ACK.";
const RESTORE_PREFIX: &str = "$JS.SNAPSHOT.RESTORE.";
const DEFAULT_CHUNK: i64 = 128 * 1024;
const DEFAULT_WINDOW: i64 = 8 * 1024 * 1024;
/// No ack for this long while the window is full ends the snapshot (408 No Flow Response).
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the first chunk waits for a subscriber on the deliver subject.
const INTEREST_WAIT: Duration = Duration::from_secs(2);
/// An upload with no chunk for this long is dropped.
const RESTORE_STALL: Duration = Duration::from_secs(5);

#[derive(Deserialize, Default)]
#[serde(default)]
struct SnapshotRequest {
    deliver_subject: String,
    no_consumers: bool,
    chunk_size: i64,
    window_size: i64,
    /// Check every message's checksum first: fjord's snapshot always reads (and so checks)
    /// every message.
    #[allow(dead_code)]
    jsck: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RestoreRequest {
    config: StreamConfig,
}

/// What the archive holds beside the store snapshot.
#[derive(Serialize, Deserialize)]
struct ArchiveMeta {
    config: StreamConfig,
    created: i64,
    consumers: Vec<ArchivedConsumer>,
}

#[derive(Serialize, Deserialize)]
struct ArchivedConsumer {
    name: String,
    config: ConsumerConfig,
    created: i64,
    state: ConsumerState,
}

/// Snapshot and restore sessions of one manager.
#[derive(Default)]
pub(super) struct Snapshots {
    /// Accepted snapshot requests, served at the next flush (after the store sync).
    /// (stream, reply, request, the request's bytes for the audit).
    requested: Vec<(String, Option<String>, SnapshotRequest, Vec<u8>)>,
    senders: Vec<Sender>,
    /// Uploads by their deliver subject.
    restores: BTreeMap<String, Restore>,
}

/// One archive going out in chunks under flow control.
struct Sender {
    to: String,
    /// `$JS.SNAPSHOT.ACK.<stream>.<id>`: acks arrive below it.
    ack_subject: String,
    data: Bytes,
    offset: usize,
    chunk: usize,
    window: usize,
    /// Chunks that may go out before the next ack.
    slots: usize,
    index: u64,
    full_chunk_sent: bool,
    seen_interest: bool,
    started: Instant,
    last_sent: Instant,
    done: bool,
    /// For the completion advisory: the stream, when it started (wall clock), and why it was
    /// given up, if it was.
    stream: String,
    started_wall: i64,
    error: Option<&'static str>,
}

struct Restore {
    config: StreamConfig,
    data: Vec<u8>,
    last_active: Instant,
    /// Wall clock at the request, for the completion advisory.
    started_wall: i64,
}

fn end_header(code: u16, text: &str) -> Vec<u8> {
    if text.is_empty() {
        format!("NATS/1.0 {code}\r\n\r\n").into_bytes()
    } else {
        format!("NATS/1.0 {code} {text}\r\n\r\n").into_bytes()
    }
}

impl Sender {
    fn message(&self, reply: Option<String>, headers: Option<Vec<u8>>, payload: Bytes) -> Outgoing {
        Outgoing { to: self.to.clone(), subject: self.to.clone(), reply, headers, payload }
    }

    fn finish(&mut self, headers: Option<Vec<u8>>, out: &mut VecDeque<Outgoing>) {
        out.push_back(self.message(None, headers, Bytes::new()));
        self.done = true;
    }

    /// Sends what the window allows; ends on lost interest or an ack timeout.
    fn pump(&mut self, now: Instant, interest: bool, out: &mut VecDeque<Outgoing>) {
        if interest {
            self.seen_interest = true;
        } else if self.seen_interest {
            self.error = Some("no interest");
            self.finish(Some(end_header(408, "No Interest")), out);
            return;
        } else if now.saturating_since(self.started) < INTEREST_WAIT {
            // nats-server waits up to 2 s for the receiver, then sends regardless.
            return;
        }
        while self.slots > 0 {
            self.slots -= 1;
            let rest = self.data.len() - self.offset;
            if rest >= self.chunk && rest > 0 {
                let chunk = self.data.slice(self.offset..self.offset + self.chunk);
                self.offset += self.chunk;
                let reply = format!("{}.{}.{}", self.ack_subject, chunk.len(), self.index);
                out.push_back(self.message(Some(reply), None, chunk));
                self.index += 1;
                self.full_chunk_sent = true;
                self.last_sent = now;
                continue;
            }
            if rest > 0 {
                // A short last chunk goes without a reply: nothing waits for its ack.
                let chunk = self.data.slice(self.offset..);
                self.offset = self.data.len();
                out.push_back(self.message(None, None, chunk));
            }
            let end = self.full_chunk_sent.then(|| end_header(204, ""));
            self.finish(end, out);
            return;
        }
        if now.saturating_since(self.last_sent) >= ACK_TIMEOUT {
            self.error = Some("no flow response");
            self.finish(Some(end_header(408, "No Flow Response")), out);
        }
    }

    fn deadline(&self) -> Option<Instant> {
        if !self.seen_interest {
            Some(self.started + INTEREST_WAIT)
        } else if self.slots == 0 {
            Some(self.last_sent + ACK_TIMEOUT)
        } else {
            None
        }
    }
}

/// nats-server's `isEmptyRequest`: no bytes, or a JSON object without keys.
fn is_empty_request(payload: &[u8]) -> bool {
    payload.is_empty()
        || matches!(serde_json::from_slice::<Value>(payload), Ok(Value::Object(m)) if m.is_empty())
}

impl<D: Disk + Send + 'static> Manager<D> {
    /// `STREAM.SNAPSHOT`: checks in nats-server's order; the answer and the chunks go out at
    /// the next flush.
    pub(super) fn snapshot_request(
        &mut self,
        name: &str,
        reply: Option<&str>,
        payload: &[u8],
    ) -> Result<(), ApiError> {
        if is_empty_request(payload) {
            return Err(ApiError::bad_request());
        }
        self.stream(name)?;
        let req: SnapshotRequest =
            serde_json::from_slice(payload).map_err(ApiError::invalid_json)?;
        if crate::subject::validate_literal(req.deliver_subject.as_bytes()).is_err() {
            return Err(ApiError::snapshot_deliver_subject_invalid());
        }
        let reply = reply.filter(|r| !r.is_empty()).map(str::to_string);
        self.snapshots.requested.push((name.to_string(), reply, req, payload.to_vec()));
        Ok(())
    }

    fn archive(&mut self, name: &str, consumers: bool) -> Result<(Value, Bytes), ApiError> {
        let s = self.streams.get_mut(name).ok_or_else(ApiError::stream_not_found)?;
        let mut store = Vec::new();
        s.store.snapshot(&mut store).map_err(ApiError::stream_snapshot)?;
        let consumers = if consumers {
            s.consumers
                .values()
                .filter(|c| c.config.is_durable())
                .map(|c| ArchivedConsumer {
                    name: c.name.clone(),
                    config: c.config.clone(),
                    created: c.created,
                    state: c.state.clone(),
                })
                .collect()
        } else {
            Vec::new()
        };
        let meta = ArchiveMeta { config: s.config.clone(), created: s.created, consumers };
        let meta = serde_json::to_vec(&meta).map_err(ApiError::stream_snapshot)?;
        let data = archive::encode(&meta, &store).map_err(ApiError::stream_snapshot)?;
        let info = self.stream_info(self.stream(name)?);
        let answer = json!({"config": info["config"], "state": info["state"]});
        Ok((answer, Bytes::from(data)))
    }

    /// At the end of a flush: answer the snapshot requests of the batch (their stores are
    /// synced now), send what each window allows, and drop stalled uploads.
    pub(super) fn serve_snapshots(&mut self, now: Now, interest: &dyn Fn(&str) -> bool) {
        for (name, reply, req, request) in std::mem::take(&mut self.snapshots.requested) {
            let result = self.archive(&name, !req.no_consumers);
            let (answer, data) = match result {
                Ok((answer, data)) => (Ok(answer), Some(data)),
                Err(e) => {
                    self.api_errors += 1;
                    (Err(e), None)
                }
            };
            let body = response("stream_snapshot", answer);
            if let Some(reply) = &reply {
                self.ready.push_back(Outgoing::reply(reply, body.clone()));
            }
            // Audited here, where the answer is made (the flush already released `held`).
            let audit =
                self.audit_message(now, &format!("STREAM.SNAPSHOT.{name}"), &request, &body);
            self.ready.push_back(audit);
            let Some(data) = data else { continue };
            let state = serde_json::from_slice::<Value>(&body).map(|v| v["state"].clone());
            let id = self.next_id();
            let create =
                advisories::snapshot_create(&name, &state.unwrap_or_default(), &id, now.wall);
            self.ready.push_back(create);
            let pick = |v: i64, default: i64| if v == 0 { default } else { v };
            let chunk = pick(req.chunk_size, DEFAULT_CHUNK).clamp(1024, 1024 * 1024) as usize;
            let window = (pick(req.window_size, DEFAULT_WINDOW).clamp(1024, 32 * 1024 * 1024)
                as usize)
                .max(chunk);
            let id = self.next_id();
            self.snapshots.senders.push(Sender {
                to: req.deliver_subject,
                ack_subject: format!("{ACK_PREFIX}{name}.{id}"),
                data,
                offset: 0,
                chunk,
                window: window / chunk,
                slots: window / chunk,
                index: 1,
                full_chunk_sent: false,
                seen_interest: false,
                started: now.mono,
                last_sent: now.mono,
                done: false,
                stream: name.clone(),
                started_wall: now.wall,
                error: None,
            });
        }
        for sender in &mut self.snapshots.senders {
            let has = interest(&sender.to);
            sender.pump(now.mono, has, &mut self.ready);
        }
        let finished: Vec<(String, i64, Option<&str>)> = self
            .snapshots
            .senders
            .iter()
            .filter(|s| s.done)
            .map(|s| (s.stream.clone(), s.started_wall, s.error))
            .collect();
        for (stream, start, error) in finished {
            let id = self.next_id();
            let done = advisories::snapshot_complete(&stream, start, error, &id, now.wall);
            self.ready.push_back(done);
        }
        self.snapshots.senders.retain(|s| !s.done);
        self.snapshots
            .restores
            .retain(|_, r| now.mono.saturating_since(r.last_active) < RESTORE_STALL);
    }

    /// When a snapshot or an upload next needs a look without any message arriving.
    pub(super) fn snapshot_timeout(&self) -> Option<Instant> {
        let senders = self.snapshots.senders.iter().filter_map(Sender::deadline);
        let restores = self.snapshots.restores.values().map(|r| r.last_active + RESTORE_STALL);
        senders.chain(restores).min()
    }

    /// A snapshot waits for its receiver to subscribe.
    pub(super) fn snapshot_awaiting_interest(&self) -> bool {
        self.snapshots.senders.iter().any(|s| !s.seen_interest)
    }

    /// `$JS.SNAPSHOT.>`: a chunk ack of a snapshot, or a chunk of an upload.
    pub(super) fn snapshot_message(
        &mut self,
        now: Now,
        subject: &str,
        reply: Option<&str>,
        payload: &[u8],
    ) {
        if subject.starts_with(ACK_PREFIX) {
            let sender = self.snapshots.senders.iter_mut().find(|s| {
                subject.strip_prefix(s.ack_subject.as_str()).is_some_and(|r| r.starts_with('.'))
            });
            if let Some(s) = sender {
                s.slots = (s.slots + 1).min(s.window);
            }
            return;
        }
        if !subject.starts_with(RESTORE_PREFIX) {
            return;
        }
        let Some(upload) = self.snapshots.restores.get_mut(subject) else { return };
        let Some(reply) = reply.filter(|r| !r.is_empty()) else {
            // nats-server gives up on an upload whose chunk has nowhere to send a failure.
            if let Some(upload) = self.snapshots.restores.remove(subject) {
                let (start, bytes) = (upload.started_wall, upload.data.len());
                self.restore_complete_advisory(now, &upload.config.name, start, bytes);
            }
            return;
        };
        if !payload.is_empty() {
            upload.data.extend_from_slice(payload);
            upload.last_active = now.mono;
            self.held.push(Outgoing::reply(reply, Bytes::new()));
            return;
        }
        let Some(upload) = self.snapshots.restores.remove(subject) else { return };
        let name = upload.config.name.clone();
        let (start, bytes) = (upload.started_wall, upload.data.len());
        let result = self.restore_finish(now, upload);
        self.api_total += 1;
        match &result {
            Ok(_) => self.restored_advisory(now, &name),
            Err(_) => self.api_errors += 1,
        }
        // As nats-server: the stream's creation (during the restore), then the completion.
        self.restore_complete_advisory(now, &name, start, bytes);
        self.held.push(Outgoing::reply(reply, response("stream_create", result)));
    }

    /// `STREAM.RESTORE`: nats-server's checks, then the upload subject.
    pub(super) fn restore_request(
        &mut self,
        now: Now,
        name: &str,
        payload: &[u8],
    ) -> Result<Value, ApiError> {
        if is_empty_request(payload) {
            return Err(ApiError::bad_request());
        }
        let mut req: RestoreRequest =
            serde_json::from_slice(payload).map_err(ApiError::invalid_json)?;
        if req.config.name.is_empty() {
            req.config.name = name.to_string();
        }
        if req.config.name != name {
            return Err(ApiError::stream_name_mismatch());
        }
        if name.contains(['\\', '/']) {
            return Err(ApiError::stream_name_path_separators());
        }
        let config = req.config.normalize()?;
        if self.streams.contains_key(name) {
            return Err(ApiError::stream_name_exists_restore());
        }
        let subject = format!("{RESTORE_PREFIX}{name}.{}", self.next_id());
        let upload =
            Restore { config, data: Vec::new(), last_active: now.mono, started_wall: now.wall };
        self.snapshots.restores.insert(subject.clone(), upload);
        let id = self.next_id();
        self.held.push(advisories::restore_create(name, &id, now.wall));
        Ok(json!({ "deliver_subject": subject }))
    }

    /// `RESTORE_COMPLETE` for an upload that ended, restored or not.
    fn restore_complete_advisory(&mut self, now: Now, name: &str, start: i64, bytes: usize) {
        let id = self.next_id();
        self.held.push(advisories::restore_complete(name, start, bytes as u64, &id, now.wall));
    }

    /// Builds the stream from a whole upload and makes it durable; the stream info on success.
    fn restore_finish(&mut self, now: Now, upload: Restore) -> Result<Value, ApiError> {
        let (meta, store_bytes) =
            archive::decode(&upload.data).map_err(ApiError::stream_restore)?;
        let meta: ArchiveMeta = serde_json::from_slice(&meta)
            .map_err(|e| ApiError::stream_restore(format!("snapshot metadata: {e}")))?;
        let config = upload.config;
        let name = config.name.clone();
        if meta.config.name != name {
            return Err(ApiError::stream_restore("stream names do not match"));
        }
        for c in &meta.consumers {
            // The names become file names: a crafted archive must not pick paths.
            if api::check_name(&c.name).is_err() {
                return Err(ApiError::stream_restore(format!(
                    "invalid consumer name {:?} in snapshot",
                    c.name
                )));
            }
        }
        if self.streams.contains_key(&name) {
            return Err(ApiError::stream_name_exists_restore());
        }
        self.check_overlap(&name, &config)?;
        // Leftovers of an earlier stream of this name (a crash mid-delete or mid-restore)
        // must not be taken for part of this one.
        self.clear_stream_files(&name).map_err(ApiError::stream_restore)?;
        let mut store = self.open_store(&config).map_err(ApiError::stream_restore)?;
        let filled = store
            .restore(&store_bytes)
            .map_err(ApiError::stream_restore)
            .and_then(|_| store.flush().map_err(ApiError::stream_restore));
        if let Err(e) = filled {
            drop(store);
            let _ = self.clear_stream_files(&name);
            return Err(e);
        }
        let mut s = Stream::new(config, meta.created, store, now.wall);
        for c in meta.consumers {
            let mut consumer =
                Consumer::recovered(&name, &c.name, c.config, c.created, c.state, now.mono);
            consumer.refresh_pause(now.mono, now.wall);
            s.consumers.insert(c.name, consumer);
        }
        let consumer_names: Vec<String> = s.consumers.keys().cloned().collect();
        self.streams.insert(name.clone(), s);
        // Consumers first, the stream's config last: without the config, recovery ignores the
        // rest, and the next create or restore of the name clears it.
        let written = consumer_names
            .iter()
            .try_for_each(|c| self.write_consumer(&name, c))
            .and_then(|_| self.write_stream(&name));
        if let Err(e) = written {
            self.streams.remove(&name);
            let _ = self.clear_stream_files(&name);
            return Err(ApiError::stream_restore(e));
        }
        self.interest_changed = true;
        let mut info = self.stream_info(self.stream(&name)?);
        if let Value::Object(map) = &mut info {
            // nats-server's restore answer carries no cluster section.
            map.remove("cluster");
        }
        Ok(info)
    }

    /// Removes a stream name's config, consumer files and messages, if any.
    fn clear_stream_files(&mut self, name: &str) -> Result<(), DiskError> {
        self.remove_file(STREAMS_DIR, &format!("{name}.json"))?;
        let prefix = format!("{name}.");
        for f in self.meta.list(CONSUMERS_DIR)? {
            if f.starts_with(&prefix) {
                self.remove_file(CONSUMERS_DIR, &f)?;
            }
        }
        self.remove_msgs(name)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::super::tests::{json, open, outputs, Shared};
    use super::*;
    use crate::disk::{FaultConfig, MemDisk};

    fn backup(m: &mut Manager<Shared>, now: Now) -> (Value, Vec<u8>) {
        m.handle(now, "$JS.API.STREAM.SNAPSHOT.S", Some("r"), None, br#"{"deliver_subject":"d"}"#);
        m.flush(now, &|_| true);
        let out = outputs(m);
        let answer = json(&out[0]);
        let mut data = Vec::new();
        for o in &out[1..] {
            assert_eq!(o.to, "d");
            data.extend_from_slice(&o.payload);
        }
        assert!(out.last().is_some_and(|o| o.payload.is_empty()), "closed by an empty message");
        (answer, data)
    }

    #[test]
    fn a_restore_is_durable_before_it_is_answered() {
        let disk = Shared(Arc::new(Mutex::new(MemDisk::new(3, FaultConfig::default()))));
        let mut m = open(&disk);
        let now = Now { mono: Instant::ZERO, wall: 5_000 };
        m.handle(
            now,
            "$JS.API.STREAM.CREATE.S",
            Some("r"),
            None,
            br#"{"name":"S","subjects":["s.>"]}"#,
        );
        for i in 0..20 {
            m.handle(now, &format!("s.{i}"), None, None, format!("payload {i}").as_bytes());
        }
        let cfg = br#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit"}}"#;
        m.handle(now, "$JS.API.CONSUMER.CREATE.S.C", Some("r"), None, cfg);
        m.flush(now, &|_| true);
        outputs(&mut m);
        let (answer, data) = backup(&mut m, now);
        assert_eq!(answer["state"]["messages"], 20, "{answer}");
        m.handle(now, "$JS.API.STREAM.DELETE.S", Some("r"), None, b"");
        let meta = json!({"config": answer["config"], "state": answer["state"]}).to_string();
        m.handle(now, "$JS.API.STREAM.RESTORE.S", Some("r"), None, meta.as_bytes());
        m.flush(now, &|_| true);
        let out = outputs(&mut m);
        let upload = json(&out[1])["deliver_subject"].as_str().unwrap().to_string();
        for (i, part) in data.chunks(100).enumerate() {
            m.handle(now, &upload, Some(&format!("ack{i}")), None, part);
        }
        m.handle(now, &upload, Some("done"), None, b"");
        // The answer is out at the next flush; the power goes right after it.
        m.flush(now, &|_| true);
        let done = outputs(&mut m).into_iter().find(|o| o.to == "done").expect("answered");
        let done = json(&done);
        assert!(done.get("error").is_none(), "{done}");
        assert_eq!(done["state"]["messages"], 20);
        drop(m);
        disk.with(MemDisk::crash);

        let mut m = open(&disk);
        m.handle(now, "$JS.API.STREAM.INFO.S", Some("i"), None, b"");
        m.handle(now, "$JS.API.CONSUMER.INFO.S.C", Some("c"), None, b"");
        m.handle(now, "$JS.API.STREAM.MSG.GET.S", Some("g"), None, br#"{"seq":20}"#);
        m.flush(now, &|_| true);
        let out = outputs(&mut m);
        assert_eq!(json(&out[0])["state"]["messages"], 20, "{}", json(&out[0]));
        assert_eq!(json(&out[1])["name"], "C", "{}", json(&out[1]));
        assert_eq!(json(&out[2])["message"]["subject"], "s.19");
    }

    #[test]
    fn a_truncated_upload_creates_nothing_and_a_chunk_without_reply_drops_the_upload() {
        let disk = Shared(Arc::new(Mutex::new(MemDisk::new(3, FaultConfig::default()))));
        let mut m = open(&disk);
        let now = Now { mono: Instant::ZERO, wall: 5_000 };
        m.handle(now, "$JS.API.STREAM.CREATE.S", Some("r"), None, br#"{"name":"S"}"#);
        m.handle(now, "S", None, None, b"x");
        m.flush(now, &|_| true);
        outputs(&mut m);
        let (answer, data) = backup(&mut m, now);
        m.handle(now, "$JS.API.STREAM.DELETE.S", Some("r"), None, b"");
        let meta = json!({"config": answer["config"]}).to_string();
        let mut seen = Vec::new();
        let restore = |m: &mut Manager<Shared>, seen: &mut Vec<Outgoing>| {
            m.handle(now, "$JS.API.STREAM.RESTORE.S", Some("r"), None, meta.as_bytes());
            m.flush(now, &|_| true);
            seen.extend(outputs(m));
            json(seen.last().unwrap())["deliver_subject"].as_str().unwrap().to_string()
        };
        let upload = restore(&mut m, &mut seen);
        m.handle(now, &upload, Some("a"), None, &data[..data.len() - 1]);
        m.handle(now, &upload, Some("done"), None, b"");
        let upload = restore(&mut m, &mut seen);
        m.handle(now, &upload, None, None, &data);
        m.handle(now, &upload, Some("late"), None, b"");
        m.handle(now, "$JS.API.STREAM.INFO.S", Some("i"), None, b"");
        m.flush(now, &|_| true);
        let mut out = seen;
        out.extend(outputs(&mut m));
        let done = json(out.iter().find(|o| o.to == "done").unwrap());
        assert_eq!(done["error"]["err_code"], 10062, "{done}");
        assert!(out.iter().all(|o| o.to != "late"), "a dropped upload answers nothing");
        let info = json(out.iter().find(|o| o.to == "i").unwrap());
        assert_eq!(info["error"]["err_code"], 10059, "{info}");
        assert!(disk.with(|d| d.list(STREAMS_DIR)).unwrap().is_empty());
    }

    #[test]
    fn a_crash_before_the_answer_leaves_no_stream_or_the_whole_stream() {
        let disk = Shared(Arc::new(Mutex::new(MemDisk::new(5, FaultConfig::default()))));
        let mut m = open(&disk);
        let now = Now { mono: Instant::ZERO, wall: 5_000 };
        m.handle(now, "$JS.API.STREAM.CREATE.S", Some("r"), None, br#"{"name":"S"}"#);
        for i in 0..50 {
            m.handle(now, "S", None, None, format!("m{i}").as_bytes());
        }
        m.flush(now, &|_| true);
        outputs(&mut m);
        let (answer, data) = backup(&mut m, now);
        m.handle(now, "$JS.API.STREAM.DELETE.S", Some("r"), None, b"");
        let meta = json!({"config": answer["config"]}).to_string();
        m.handle(now, "$JS.API.STREAM.RESTORE.S", Some("r"), None, meta.as_bytes());
        m.flush(now, &|_| true);
        let upload = json(&outputs(&mut m)[1])["deliver_subject"].as_str().unwrap().to_string();
        m.handle(now, &upload, Some("a"), None, &data);
        m.handle(now, &upload, Some("done"), None, b"");
        // No flush: the power goes before the answer could go out.
        drop(m);
        disk.with(MemDisk::crash);
        let mut m = open(&disk);
        m.handle(now, "$JS.API.STREAM.INFO.S", Some("i"), None, b"");
        m.flush(now, &|_| true);
        let info = json(&outputs(&mut m)[0]);
        let whole = info["state"]["messages"] == 50;
        let absent = info["error"]["err_code"] == 10059;
        assert!(whole || absent, "a partial stream after the crash: {info}");
    }
}
