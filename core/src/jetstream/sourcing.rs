//! Mirrors and sources between streams of this server.
//!
//! nats-server feeds a mirror or a source through an internal push consumer on the origin
//! stream. On one server fjord reads the origin's store directly instead (the manager does it
//! in `flush`, see `Manager::pump_sourcing`), so what clients see is the same without a
//! consumer, flow control or heartbeats:
//! - a mirror stores each origin message at the origin's sequence, with its subject (after the
//!   mirror's transforms), headers, payload and timestamp; sequences the origin no longer has
//!   (deleted, expired, filtered out) are gaps in the mirror too;
//! - a source republishes each origin message through the sourcing stream's publish path
//!   (limits, dedup), stamped `Nats-Stream-Source: <stream> <seq> <filter> <dest> <subject>
//!   <identity>` as nats-server stamps it;
//! - only messages the origin has made durable are taken, so a crash of the server never
//!   leaves a mirror or source ahead of its origin.
//!
//! Positions survive a restart without a file of their own: a mirror resumes after its own last
//! sequence, a source after the newest origin sequence named by a `Nats-Stream-Source` header
//! in the sourcing stream (nats-server's `startingSequenceForSources`). Both are durable with
//! the messages themselves, so nothing is taken twice or skipped across a restart.

use super::api::{StreamConfig, StreamSource, SubjectTransformConfig};
use super::errors::ApiError;
use super::headers;
use super::transform::{self, Transform, TransformError};
use crate::store::{StoredMsg, StreamStore};
use crate::time::Instant;

/// One feed: the mirror, or one source, of a stream.
#[derive(Clone, Debug)]
pub struct Feed {
    pub config: StreamSource,
    /// nats-server's index name parts: the filter(s) and destination(s), `>` when unset,
    /// several joined by a form feed. They identify the feed in `Nats-Stream-Source`.
    iname_filter: String,
    iname_dest: String,
    /// Subjects taken (empty: all).
    filters: Vec<String>,
    transforms: Vec<Transform>,
    /// The next origin sequence to look at; `None` until positioned (start options apply).
    pub next: Option<u64>,
    /// The newest origin sequence taken.
    pub last_taken: u64,
    /// When the origin was last found and read: the info's `active`.
    pub last_seen: Option<Instant>,
}

impl Feed {
    pub fn new(config: &StreamSource) -> Feed {
        let mut filters = Vec::new();
        let mut transforms = Vec::new();
        let (iname_filter, iname_dest);
        if config.subject_transforms.is_empty() {
            if !config.filter_subject.is_empty() {
                filters.push(config.filter_subject.clone());
            }
            iname_filter = or_all(&config.filter_subject);
            iname_dest = ">".to_string();
        } else {
            let mut srcs = Vec::new();
            let mut dests = Vec::new();
            for t in &config.subject_transforms {
                filters.push(or_all(&t.src));
                // Validated at config time; an invalid one would transform nothing.
                if let Ok(Some(tr)) = Transform::from_config(t) {
                    transforms.push(tr);
                }
                srcs.push(or_all(&t.src));
                dests.push(or_all(&t.dest));
            }
            iname_filter = srcs.join("\u{c}");
            iname_dest = dests.join("\u{c}");
        }
        if filters.iter().any(|f| f == ">") {
            filters.clear();
        }
        Feed {
            config: config.clone(),
            iname_filter,
            iname_dest,
            filters,
            transforms,
            next: None,
            last_taken: 0,
            last_seen: None,
        }
    }

    /// Whether the feed reads this server's stream (an external one is never reached here).
    pub fn is_local(&self) -> bool {
        self.config.external.is_none()
    }

    /// What identifies the feed in the positions file: nats-server's index name.
    fn key(&self) -> String {
        format!("{} {} {}", self.config.name, self.iname_filter, self.iname_dest)
    }

    fn same_feed(&self, other: &Feed) -> bool {
        self.config.name == other.config.name
            && self.iname_filter == other.iname_filter
            && self.iname_dest == other.iname_dest
            && self.config.external == other.config.external
    }

    fn wants(&self, subject: &[u8]) -> bool {
        self.filters.is_empty()
            || self.filters.iter().any(|f| crate::subject::matches(f.as_bytes(), subject))
    }

    /// The first origin sequence to take when the feed starts from nothing.
    fn start(&self, origin: &dyn StreamStore) -> u64 {
        if self.config.opt_start_seq > 0 {
            return self.config.opt_start_seq;
        }
        if let Some(t) = self.config.opt_start_time.as_deref().and_then(super::api::parse_rfc3339) {
            return origin.seq_at_time(t);
        }
        1
    }

    /// Up to `max` origin messages this feed takes, at or below `durable`, from its position
    /// on; and the sequence to look at next once all of them are stored.
    pub fn batch(
        &mut self,
        origin: &mut dyn StreamStore,
        durable: u64,
        max: usize,
    ) -> (Vec<StoredMsg>, u64) {
        let next = match self.next {
            Some(n) => n,
            None => {
                let n = self.start(origin);
                self.next = Some(n);
                n
            }
        };
        let single = match self.filters.as_slice() {
            [] => Some(">"),
            [one] => Some(one.as_str()),
            _ => None,
        };
        let mut out = Vec::new();
        let mut seq = next;
        while seq <= durable && out.len() < max {
            let found = origin.load_next(single.unwrap_or(">").as_bytes(), seq);
            let Ok(Some(msg)) = found else {
                // Nothing more (or unreadable: retried at the next flush from here).
                if found.is_ok() {
                    seq = durable + 1;
                }
                break;
            };
            if msg.seq > durable {
                seq = durable + 1;
                break;
            }
            seq = msg.seq + 1;
            if self.wants(&msg.subject) {
                out.push(msg);
            }
        }
        (out, seq.max(next))
    }

    /// Whether the origin holds durable messages this feed has not looked at.
    pub fn behind(&self, durable: u64) -> bool {
        self.next.is_none_or(|n| n <= durable)
    }

    /// Messages of the origin this feed has still to take (nats-server's `lag`).
    pub fn lag(&self, origin: &dyn StreamStore) -> u64 {
        let next = self.next.unwrap_or_else(|| self.start(origin));
        if self.filters.is_empty() {
            return origin.num_pending(b">", next, false);
        }
        self.filters.iter().map(|f| origin.num_pending(f.as_bytes(), next, false)).sum()
    }

    /// The subject the message is stored under.
    pub fn subject(&self, subject: &str) -> String {
        transform::apply_first(&self.transforms, subject)
    }

    /// The `Nats-Stream-Source` value of origin message `seq` on `subject`.
    pub fn source_header(&self, seq: u64, subject: &str, identity: &str) -> String {
        format!(
            "{} {seq} {} {} {subject} {identity}",
            self.config.name, self.iname_filter, self.iname_dest
        )
    }

    /// Whether a `Nats-Stream-Source` value names this feed; its origin sequence if so.
    fn taken_in(&self, value: &str) -> Option<u64> {
        let fields: Vec<&str> = value.split(' ').collect();
        if fields.len() < 4 {
            return None;
        }
        let same = fields[0] == self.config.name
            && fields[2] == self.iname_filter
            && fields[3] == self.iname_dest;
        same.then(|| fields[1].parse().ok()).flatten()
    }

    /// The info entry (`StreamSourceInfo`), `lag` computed by the caller against the origin.
    pub fn info(&self, lag: u64, now: Instant, with_seq: bool) -> serde_json::Value {
        let active = match self.last_seen {
            Some(t) => now.saturating_since(t).as_nanos().min(i64::MAX as u128) as i64,
            None => -1,
        };
        let mut v = serde_json::json!({"name": self.config.name, "lag": lag, "active": active});
        if with_seq && self.last_taken > 0 {
            v["seq"] = serde_json::json!(self.last_taken);
        }
        if !self.config.filter_subject.is_empty() {
            v["filter_subject"] = serde_json::json!(self.config.filter_subject);
        }
        if !self.config.subject_transforms.is_empty() {
            v["subject_transforms"] = serde_json::json!(self.config.subject_transforms);
        }
        if let Some(ext) = &self.config.external {
            v["external"] = serde_json::json!(ext);
        }
        v
    }
}

fn or_all(s: &str) -> String {
    if s.is_empty() {
        ">".into()
    } else {
        s.into()
    }
}

/// A stream's feeds: its mirror or its sources (never both).
#[derive(Clone, Debug, Default)]
pub struct Sourcing {
    pub mirror: Option<Feed>,
    pub sources: Vec<Feed>,
    /// The sources' positions as last written to the positions file, and when.
    pub written: Positions,
    pub written_at: Option<Instant>,
    /// Write the positions at the next flush whatever the time: messages that named them
    /// were removed (purge, delete), so only the file still knows.
    pub write_now: bool,
}

/// Source key (`<stream> <filter> <dest>`) → the next origin sequence to look at.
pub type Positions = std::collections::BTreeMap<String, u64>;

impl Sourcing {
    /// The feeds of `config`, positioned from what `store` already holds.
    pub fn new(config: &StreamConfig, store: &mut dyn StreamStore) -> Sourcing {
        let mut s = Sourcing {
            mirror: config.mirror.as_ref().map(Feed::new),
            sources: config.sources.iter().map(Feed::new).collect(),
            ..Default::default()
        };
        s.position(store);
        s
    }

    /// Where each positioned source has got to (what the positions file keeps).
    pub fn positions(&self) -> Positions {
        self.sources.iter().filter_map(|f| Some((f.key(), f.next?))).collect()
    }

    /// Positions read back from the file at recovery: a source resumes after the further of
    /// the file's position and what its stamped messages say (the file is written lazily, the
    /// messages may have been removed since).
    pub fn restore(&mut self, positions: &Positions) {
        for f in &mut self.sources {
            if let Some(&p) = positions.get(&f.key()) {
                f.next = Some(f.next.map_or(p, |n| n.max(p)));
                f.last_taken = f.last_taken.max(p.saturating_sub(1));
            }
        }
        self.written = positions.clone();
    }

    pub fn is_empty(&self) -> bool {
        self.mirror.is_none() && self.sources.is_empty()
    }

    /// After `STREAM.UPDATE`: the feeds of `config`, those already running keeping their
    /// position.
    pub fn update(&mut self, config: &StreamConfig, store: &mut dyn StreamStore) {
        let old = std::mem::take(self);
        let mut new = Sourcing {
            mirror: config.mirror.as_ref().map(Feed::new),
            sources: config.sources.iter().map(Feed::new).collect(),
            written: old.written.clone(),
            written_at: old.written_at,
            write_now: old.write_now,
        };
        let olds: Vec<&Feed> = old.mirror.iter().chain(&old.sources).collect();
        for feed in new.mirror.iter_mut().chain(new.sources.iter_mut()) {
            if let Some(o) = olds.iter().find(|o| o.same_feed(feed)) {
                feed.next = o.next;
                feed.last_taken = o.last_taken;
                feed.last_seen = o.last_seen;
            }
        }
        new.position(store);
        *self = new;
    }

    /// Positions unpositioned feeds from the store: a mirror after its last sequence, sources
    /// after the newest origin sequence their `Nats-Stream-Source` headers name.
    fn position(&mut self, store: &mut dyn StreamStore) {
        let state = store.state();
        if let Some(m) = &mut self.mirror {
            if m.next.is_none() && state.last_seq > 0 {
                m.next = Some(state.last_seq + 1);
                m.last_taken = state.last_seq;
            }
        }
        let mut missing: Vec<usize> =
            (0..self.sources.len()).filter(|i| self.sources[*i].next.is_none()).collect();
        let mut seq = state.last_seq;
        while !missing.is_empty() && seq >= state.first_seq && seq > 0 {
            let Ok(Some(msg)) = store.load_prev(b">", seq) else { break };
            seq = msg.seq.saturating_sub(1);
            let Some(value) = headers::get(&msg.headers, headers::STREAM_SOURCE) else { continue };
            missing.retain(|&i| {
                let feed = &mut self.sources[i];
                match feed.taken_in(value) {
                    Some(origin_seq) => {
                        feed.next = Some(origin_seq + 1);
                        feed.last_taken = origin_seq;
                        false
                    }
                    None => true,
                }
            });
            if msg.seq <= 1 {
                break;
            }
        }
    }

    pub fn feeds(&self) -> impl Iterator<Item = &Feed> {
        self.mirror.iter().chain(&self.sources)
    }
}

/// The identity of an origin stream, as sourced messages carry it: a short hash of its
/// creation time, which changes when the origin is deleted and created again.
pub fn identity(created: i64) -> String {
    // FNV-1a over the creation time, printed in base 62: opaque and stable.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in created.to_be_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    const A: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..8)
        .map(|_| {
            let c = A[(h % 62) as usize] as char;
            h /= 62;
            c
        })
        .collect()
}

/// The headers a sourced message is stored with: the origin's, without its own source stamp
/// (daisy chains), expectations (they were checked at the origin) or batch headers, then
/// stamped with `stamp`.
pub fn sourced_headers(origin: &[u8], stamp: &str) -> Vec<u8> {
    let kept = headers::without_matching(origin, |k| {
        k.eq_ignore_ascii_case(headers::STREAM_SOURCE)
            || starts_with_ignore_case(k, "Nats-Expected-")
            || starts_with_ignore_case(k, "Nats-Batch-")
    });
    headers::with_extra(&kept, &[(headers::STREAM_SOURCE, stamp.to_string())])
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// One mirror or source transform: its source must be a subject (`bad_filter`), the whole a
/// mapping (`bad_dest`, nats-server's `ValidateMapping`).
fn check_transform(
    t: &SubjectTransformConfig,
    bad_filter: fn(String) -> ApiError,
    bad_dest: fn(String) -> ApiError,
) -> Result<(), ApiError> {
    if !t.src.is_empty() && crate::subject::validate_subscription(t.src.as_bytes()).is_err() {
        return Err(bad_filter(format!("invalid subject {}", t.src)));
    }
    match Transform::from_config(t) {
        Ok(_) => Ok(()),
        Err(TransformError::BadSource(e) | TransformError::BadDestination(e)) => Err(bad_dest(e)),
    }
}

/// The checks of `checkStreamCfg` that need no other stream, in its order.
pub fn check_config(cfg: &StreamConfig) -> Result<(), ApiError> {
    if let Some(m) = &cfg.mirror {
        if cfg.first_seq > 0 {
            return Err(ApiError::mirror_with_first_seq());
        }
        if !cfg.subjects.is_empty() {
            return Err(ApiError::mirror_with_subjects());
        }
        if !cfg.sources.is_empty() {
            return Err(ApiError::mirror_with_sources());
        }
        if !m.filter_subject.is_empty() && !m.subject_transforms.is_empty() {
            return Err(ApiError::mirror_multiple_filters_not_allowed());
        }
        if cfg.subject_delete_marker_ttl > 0 {
            return Err(ApiError::stream_invalid_config(
                "subject delete markers forbidden on mirrors",
            ));
        }
        for (i, t) in m.subject_transforms.iter().enumerate() {
            check_transform(
                t,
                ApiError::mirror_invalid_subject_filter,
                ApiError::mirror_invalid_transform_destination,
            )?;
            let collide = m
                .subject_transforms
                .iter()
                .enumerate()
                .any(|(j, o)| j != i && super::api::overlaps(&or_all(&t.src), &or_all(&o.src)));
            if collide {
                return Err(ApiError::mirror_overlapping_subject_filters());
            }
        }
        if m.external.is_none() && super::api::check_name(&m.name).is_err() {
            return Err(ApiError::mirror_invalid_stream_name());
        }
    }
    let mut seen: Vec<(String, String, String)> = Vec::new();
    for src in &cfg.sources {
        if super::api::check_name(&src.name).is_err() {
            return Err(ApiError::source_invalid_stream_name());
        }
        let feed = Feed::new(src);
        let mut key = src.name.clone();
        if let Some(ext) = &src.external {
            key = format!("{key}:{}", ext.api);
        }
        let id = (key, feed.iname_filter.clone(), feed.iname_dest.clone());
        if seen.contains(&id) {
            return Err(ApiError::source_duplicate_detected());
        }
        seen.push(id);
        if !src.filter_subject.is_empty() && !src.subject_transforms.is_empty() {
            return Err(ApiError::source_multiple_filters_not_allowed());
        }
        for t in &src.subject_transforms {
            check_transform(
                t,
                ApiError::source_invalid_subject_filter,
                ApiError::source_invalid_transform_destination,
            )?;
        }
        for (i, t) in src.subject_transforms.iter().enumerate() {
            let nested = src.subject_transforms.iter().enumerate().any(|(j, o)| {
                j != i
                    && crate::subject::is_subset(
                        or_all(&t.src).as_bytes(),
                        or_all(&o.src).as_bytes(),
                    )
            });
            if nested {
                return Err(ApiError::source_overlapping_subject_filters());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Limits, MemStore};

    fn source(name: &str) -> StreamSource {
        StreamSource { name: name.into(), ..Default::default() }
    }

    fn config(f: impl FnOnce(&mut StreamConfig)) -> StreamConfig {
        let mut c = StreamConfig { name: "T".into(), ..Default::default() };
        f(&mut c);
        c
    }

    fn code(c: StreamConfig) -> u16 {
        check_config(&c).unwrap_err().err_code
    }

    #[test]
    fn config_errors_carry_nats_server_codes() {
        let m = || Some(source("O"));
        assert_eq!(code(config(|c| (c.mirror, c.first_seq) = (m(), 5))), 10143);
        assert_eq!(code(config(|c| (c.mirror, c.subjects) = (m(), vec!["x".into()]))), 10034);
        assert_eq!(code(config(|c| (c.mirror, c.sources) = (m(), vec![source("P")]))), 10031);
        assert_eq!(code(config(|c| c.mirror = Some(source("a.b")))), 10142);
        assert_eq!(code(config(|c| c.sources = vec![source("a b")])), 10141);
        assert_eq!(code(config(|c| c.sources = vec![source("O"), source("O")])), 10140);
        let tr =
            |src: &str, dest: &str| SubjectTransformConfig { src: src.into(), dest: dest.into() };
        let both = StreamSource {
            filter_subject: "a".into(),
            subject_transforms: vec![tr("a", "b")],
            ..source("O")
        };
        assert_eq!(code(config(|c| c.mirror = Some(both.clone()))), 10150);
        assert_eq!(code(config(|c| c.sources = vec![both])), 10144);
        let bad_dest = StreamSource { subject_transforms: vec![tr("a.*", "b.$2")], ..source("O") };
        assert_eq!(code(config(|c| c.sources = vec![bad_dest.clone()])), 10146);
        assert_eq!(code(config(|c| c.mirror = Some(bad_dest))), 10154);
        let overlap = StreamSource {
            subject_transforms: vec![tr("a.>", "b.>"), tr("a.b", "c")],
            ..source("O")
        };
        assert_eq!(code(config(|c| c.sources = vec![overlap.clone()])), 10147);
        assert_eq!(code(config(|c| c.mirror = Some(overlap))), 10152);
        // Two sources of one stream with different filters are two feeds.
        let a = StreamSource { filter_subject: "a".into(), ..source("O") };
        assert!(check_config(&config(|c| c.sources = vec![a, source("O")])).is_ok());
    }

    fn store_with(subjects: &[&str]) -> MemStore {
        let mut s = MemStore::new(Limits::default());
        for (i, subj) in subjects.iter().enumerate() {
            s.store(subj.as_bytes(), b"", b"x", i as i64, None).unwrap();
        }
        s
    }

    #[test]
    fn batches_take_only_durable_matching_messages_from_the_start_options() {
        let mut origin = store_with(&["o.a", "o.b", "o.a", "o.c", "o.a"]);
        let mut feed = Feed::new(&StreamSource { filter_subject: "o.a".into(), ..source("O") });
        let (msgs, next) = feed.batch(&mut origin, 4, 10);
        assert_eq!(msgs.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(next, 5, "looked at everything durable");
        feed.next = Some(next);
        assert!(feed.behind(5) && !feed.behind(4));
        assert_eq!(feed.lag(&origin), 1);
        let (msgs, _) = feed.batch(&mut origin, 5, 10);
        assert_eq!(msgs.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![5]);

        let mut late = Feed::new(&StreamSource { opt_start_seq: 4, ..source("O") });
        let (msgs, next) = late.batch(&mut origin, 5, 1);
        assert_eq!((msgs[0].seq, next), (4, 5), "batch size respected");
        let tr = SubjectTransformConfig { src: "o.*".into(), dest: "t.$1".into() };
        let multi = Feed::new(&StreamSource { subject_transforms: vec![tr], ..source("O") });
        assert_eq!(multi.subject("o.b"), "t.b");
        assert_eq!(multi.source_header(2, "o.b", "id"), "O 2 o.* t.$1 o.b id");
    }

    #[test]
    fn sources_resume_after_the_newest_origin_sequence_their_headers_name() {
        let a = StreamSource { filter_subject: "o.a".into(), ..source("O") };
        let cfg = config(|c| c.sources = vec![a.clone(), source("P")]);
        let mut target = MemStore::new(Limits::default());
        let fa = Feed::new(&a);
        let fp = Feed::new(&source("P"));
        let h = |f: &Feed, seq| sourced_headers(b"", &f.source_header(seq, "s", "id"));
        target.store(b"s", &h(&fa, 3), b"x", 0, None).unwrap();
        target.store(b"s", &h(&fp, 7), b"x", 0, None).unwrap();
        target.store(b"s", &h(&fa, 9), b"x", 0, None).unwrap();
        target.store(b"s", b"", b"x", 0, None).unwrap();
        let s = Sourcing::new(&cfg, &mut target);
        assert_eq!(s.sources[0].next, Some(10));
        assert_eq!(s.sources[1].next, Some(8));
        // A new source of the same stream with another filter starts from nothing.
        let b = StreamSource { filter_subject: "o.b".into(), ..source("O") };
        let s = Sourcing::new(&config(|c| c.sources = vec![b]), &mut target);
        assert_eq!(s.sources[0].next, None);
    }

    #[test]
    fn positions_from_the_file_and_from_the_stamps_take_the_further() {
        let a = StreamSource { filter_subject: "o.a".into(), ..source("O") };
        let cfg = config(|c| c.sources = vec![a.clone(), source("P")]);
        let mut target = MemStore::new(Limits::default());
        let stamp = Feed::new(&a).source_header(9, "o.a", "id");
        target.store(b"o.a", &sourced_headers(b"", &stamp), b"x", 0, None).unwrap();
        let mut s = Sourcing::new(&cfg, &mut target);
        let file: Positions =
            [("O o.a >".to_string(), 4), ("P > >".to_string(), 7)].into_iter().collect();
        s.restore(&file);
        assert_eq!(s.sources[0].next, Some(10), "the stamp is newer than the file");
        assert_eq!(s.sources[1].next, Some(7), "only the file knows P's (purged) position");
        assert_eq!(s.positions(), [("O o.a >".to_string(), 10), ("P > >".to_string(), 7)].into());
    }

    #[test]
    fn sourced_headers_drop_expectations_and_old_stamps() {
        let origin = b"NATS/1.0\r\nNats-Msg-Id: 1\r\nNats-Expected-Last-Sequence: 4\r\nNats-Stream-Source: X 1 > > a\r\n\r\n";
        let out = sourced_headers(origin, "O 2 > > s id");
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "NATS/1.0\r\nNats-Msg-Id: 1\r\nNats-Stream-Source: O 2 > > s id\r\n\r\n"
        );
        assert_eq!(
            std::str::from_utf8(&sourced_headers(b"", "O 2 > > s id")).unwrap(),
            "NATS/1.0\r\nNats-Stream-Source: O 2 > > s id\r\n\r\n"
        );
        assert_eq!(identity(5).len(), 8);
        assert_ne!(identity(5), identity(6));
    }
}
