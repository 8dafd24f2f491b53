//! `$JS.API` request and response bodies, in nats-server's JSON shapes.
//!
//! Durations are integer nanoseconds and times RFC 3339, as in nats-server; responses carry a
//! `type` string `io.nats.jetstream.api.v1.<op>_response`. Configs deserialize leniently (every
//! field optional, unknown fields ignored) and serialize the way nats-server echoes them back
//! after applying its defaults, because clients (async-nats) require some of those fields.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::errors::ApiError;

pub const TYPE_PREFIX: &str = "io.nats.jetstream.api.v1.";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    #[default]
    Limits,
    Interest,
    Workqueue,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    #[default]
    File,
    Memory,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscardPolicy {
    #[default]
    Old,
    New,
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero(n: &i64) -> bool {
    *n == 0
}
fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// A field that clients may send as `null` meaning "unset".
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `StreamConfig` (server/stream.go). Limits use −1 for "unlimited" once defaulted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamConfig {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Empty (and omitted, as nats-server omits it) only on mirrors and sourcing streams.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub subjects: Vec<String>,
    pub retention: Retention,
    pub max_consumers: i64,
    pub max_msgs: i64,
    pub max_bytes: i64,
    pub max_age: i64,
    pub max_msgs_per_subject: i64,
    pub max_msg_size: i64,
    pub discard: DiscardPolicy,
    pub storage: Storage,
    pub num_replicas: i64,
    /// Zero (and then omitted, as nats-server omits it) only on mirrors and sourcing streams,
    /// which get no default window.
    #[serde(skip_serializing_if = "is_zero")]
    pub duplicate_window: i64,
    #[serde(skip_serializing_if = "is_false")]
    pub no_ack: bool,
    pub sealed: bool,
    pub deny_delete: bool,
    pub deny_purge: bool,
    pub allow_rollup_hdrs: bool,
    pub allow_direct: bool,
    pub mirror_direct: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub discard_new_per_subject: bool,
    /// The sequence the stream's first message gets (nats-server's is unsigned: a negative
    /// one is invalid JSON, 10025).
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub first_seq: u64,
    /// Defaults and ceilings for the stream's consumers (async-nats sends `null` for none).
    #[serde(deserialize_with = "null_as_default")]
    pub consumer_limits: ConsumerLimits,
    /// Per-message TTLs (`Nats-TTL`) are accepted.
    pub allow_msg_ttl: bool,
    /// Nanoseconds: when age or a TTL removes the last message of a subject, a delete marker
    /// with this TTL takes its place.
    #[serde(skip_serializing_if = "is_zero")]
    pub subject_delete_marker_ttl: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    /// This stream replicates another one, sequence numbers and all (see `sourcing`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<StreamSource>,
    /// Streams whose messages this one also takes in (see `sourcing`).
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub sources: Vec<StreamSource>,
    /// Rewrites the subject of every message published to the stream before it is stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_transform: Option<SubjectTransformConfig>,
    /// Stored messages published again on a mapped subject (`republish.rs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub republish: Option<super::republish::RePublish>,
}

/// `StreamSource` (server/stream.go): the origin of a mirror or of one source.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamSource {
    pub name: String,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub opt_start_seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opt_start_time: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "null_as_default")]
    pub filter_subject: String,
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub subject_transforms: Vec<SubjectTransformConfig>,
    /// Another account's or domain's API prefix: accepted and echoed, never followed (one
    /// server, one account here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalStream>,
}

/// `SubjectTransformConfig`: messages matching `src` get subject `dest` (see `transform`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubjectTransformConfig {
    pub src: String,
    pub dest: String,
}

/// `ExternalStream`: where another domain's or account's stream is reached.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExternalStream {
    pub api: String,
    pub deliver: String,
}

/// `StreamConsumerLimits`: an `inactive_threshold` and `max_ack_pending` that consumers get when
/// they set none, the latter also a ceiling. Always reported (as `{}` when unset).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsumerLimits {
    #[serde(skip_serializing_if = "is_zero")]
    pub inactive_threshold: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max_ack_pending: i64,
}

/// Durations below this are refused, as nats-server does for `max_age` and `duplicate_window`.
pub const MIN_DURATION: i64 = 100_000_000;
pub const DEFAULT_DUPLICATE_WINDOW: i64 = 120_000_000_000;

impl StreamConfig {
    /// Applies nats-server's defaults and checks (`checkStreamCfg`).
    pub fn normalize(mut self) -> Result<StreamConfig, ApiError> {
        check_name(&self.name).map_err(ApiError::stream_invalid_config)?;
        if self.num_replicas == 0 {
            self.num_replicas = 1;
        }
        if self.num_replicas > 1 {
            return Err(ApiError::replicas_not_supported());
        }
        if self.num_replicas < 0 || self.num_replicas > 5 {
            return Err(ApiError::stream_invalid_config("replicas > 5 not supported"));
        }
        for limit in [
            &mut self.max_msgs,
            &mut self.max_bytes,
            &mut self.max_msgs_per_subject,
            &mut self.max_msg_size,
            &mut self.max_consumers,
        ] {
            if *limit == 0 {
                *limit = -1;
            }
            if *limit < -1 {
                *limit = -1;
            }
        }
        if self.max_age < 0 {
            return Err(ApiError::stream_invalid_config("max age needs to be >= 0"));
        }
        if self.max_age != 0 && self.max_age < MIN_DURATION {
            return Err(ApiError::stream_invalid_config("max age needs to be >= 100ms"));
        }
        if self.duplicate_window < 0 {
            return Err(ApiError::stream_invalid_config("duplicates window can not be negative"));
        }
        let sourcing = self.mirror.is_some() || !self.sources.is_empty();
        if self.duplicate_window == 0 && !sourcing {
            self.duplicate_window = DEFAULT_DUPLICATE_WINDOW;
            // The window may not outlive the messages it refers to.
            if self.max_age != 0 && self.max_age < self.duplicate_window {
                self.duplicate_window = self.max_age;
            }
        } else if self.max_age != 0 && self.duplicate_window > self.max_age {
            return Err(ApiError::stream_invalid_config(
                "duplicates window can not be larger then max age",
            ));
        }
        if self.discard_new_per_subject
            && (self.discard != DiscardPolicy::New || self.max_msgs_per_subject <= 0)
        {
            return Err(ApiError::stream_invalid_config(
                "discard new per subject requires discard new policy to be set",
            ));
        }
        if self.subject_delete_marker_ttl > 0 {
            if self.subject_delete_marker_ttl < 1_000_000_000 {
                return Err(ApiError::stream_invalid_config(
                    "subject delete marker TTL must be at least 1 second",
                ));
            }
            // As nats-server (without pedantic mode): markers need TTLs and roll-ups.
            self.allow_msg_ttl = true;
            self.allow_rollup_hdrs = true;
            self.deny_purge = false;
        } else if self.subject_delete_marker_ttl < 0 {
            return Err(ApiError::stream_invalid_config(
                "subject delete marker TTL must not be negative",
            ));
        }
        super::sourcing::check_config(&self)?;
        if self.subjects.is_empty() && !sourcing {
            self.subjects = vec![self.name.clone()];
        }
        if let Some(t) = &self.subject_transform {
            super::transform::check_stream_transform(t)?;
        }
        for (i, s) in self.subjects.iter().enumerate() {
            if crate::subject::validate_subscription(s.as_bytes()).is_err() {
                return Err(ApiError::stream_invalid_config("invalid subject"));
            }
            // A stream may not listen to its own API or to acks: that would loop.
            if s.starts_with("$JS.API") || s == ">" {
                return Err(ApiError::stream_invalid_config(
                    "subjects that overlap with jetstream api require no-ack to be true",
                ));
            }
            for t in &self.subjects[i + 1..] {
                if overlaps(s, t) {
                    return Err(ApiError::stream_invalid_config("duplicate subjects detected"));
                }
            }
        }
        super::republish::check(&mut self)?;
        if self.compression.as_deref() == Some("") {
            self.compression = None;
        }
        if self.compression.is_none() {
            self.compression = Some("none".into());
        }
        Ok(self)
    }
}

/// Stream and consumer names: non-empty, ≤ 255 bytes, none of `. * > \ /` or whitespace.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("stream name is required");
    }
    if name.len() > 255 {
        return Err("stream name is too long, maximum allowed is 255");
    }
    if name.chars().any(|c| matches!(c, '.' | '*' | '>' | '\\' | '/') || c.is_whitespace()) {
        return Err("stream name can not contain whitespace, '.', '*', '>', path separators");
    }
    Ok(())
}

/// Two subject filters overlap when some literal subject matches both.
pub fn overlaps(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    crate::subject::is_subset(a, b) || crate::subject::is_subset(b, a) || {
        // Neither contains the other, yet `a.*` and `*.b` share `a.b`: compare token by token.
        let (mut ta, mut tb) = (crate::subject::tokens(a), crate::subject::tokens(b));
        loop {
            match (ta.next(), tb.next()) {
                (None, None) => break true,
                (Some(b">"), _) | (_, Some(b">")) => break true,
                (Some(x), Some(y)) if x == b"*" || y == b"*" || x == y => {}
                _ => break false,
            }
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliverPolicy {
    #[default]
    All,
    Last,
    New,
    ByStartSequence,
    ByStartTime,
    LastPerSubject,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckPolicy {
    #[default]
    None,
    All,
    Explicit,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayPolicy {
    #[default]
    Instant,
    Original,
}

/// `ConsumerConfig` (server/consumer.go).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsumerConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub durable_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliver_subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliver_group: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub flow_control: bool,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub rate_limit_bps: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub idle_heartbeat: i64,
    pub deliver_policy: DeliverPolicy,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opt_start_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opt_start_time: Option<String>,
    pub ack_policy: AckPolicy,
    pub ack_wait: i64,
    pub max_deliver: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter_subject: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filter_subjects: Vec<String>,
    pub replay_policy: ReplayPolicy,
    #[serde(skip_serializing_if = "is_zero")]
    pub max_waiting: i64,
    pub max_ack_pending: i64,
    #[serde(skip_serializing_if = "is_false")]
    pub headers_only: bool,
    #[serde(skip_serializing_if = "is_zero")]
    pub max_batch: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max_bytes: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max_expires: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub inactive_threshold: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backoff: Vec<i64>,
    pub num_replicas: i64,
    #[serde(skip_serializing_if = "is_false")]
    pub mem_storage: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// RFC 3339: the consumer delivers nothing before then (`CONSUMER.PAUSE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_until: Option<String>,
}

pub const DEFAULT_ACK_WAIT: i64 = 30_000_000_000;
pub const DEFAULT_MAX_ACK_PENDING: i64 = 1000;
pub const DEFAULT_MAX_WAITING: i64 = 512;
pub const DEFAULT_INACTIVE_THRESHOLD: i64 = 5_000_000_000;

impl ConsumerConfig {
    /// The consumer's name: `name`, else `durable_name`.
    pub fn id(&self) -> Option<&str> {
        self.name.as_deref().or(self.durable_name.as_deref()).filter(|n| !n.is_empty())
    }

    pub fn is_durable(&self) -> bool {
        self.durable_name.as_deref().is_some_and(|d| !d.is_empty())
    }

    pub fn is_push(&self) -> bool {
        self.deliver_subject.as_deref().is_some_and(|d| !d.is_empty())
    }

    /// The stream's consumer limits, as nats-server's setConsumerConfigDefaults and
    /// checkConsumerCfg apply them: defaults for what is unset (before `normalize`), then the
    /// max_ack_pending ceiling (after).
    pub fn with_stream_defaults(mut self, limits: &ConsumerLimits) -> Self {
        if self.max_ack_pending == 0 && limits.max_ack_pending > 0 {
            self.max_ack_pending = limits.max_ack_pending;
        }
        if self.inactive_threshold == 0 && limits.inactive_threshold > 0 {
            self.inactive_threshold = limits.inactive_threshold;
        }
        self
    }

    pub fn check_stream_limits(&self, limits: &ConsumerLimits) -> Result<(), ApiError> {
        if limits.max_ack_pending > 0 && self.max_ack_pending > limits.max_ack_pending {
            return Err(ApiError::max_ack_pending_excess(limits.max_ack_pending));
        }
        Ok(())
    }

    /// `pause_until` as Unix nanoseconds (an unparsable or zero time is no pause).
    pub fn pause_until_nanos(&self) -> Option<i64> {
        self.pause_until.as_deref().and_then(parse_rfc3339).filter(|t| *t > 0)
    }

    /// The filters this consumer selects by; empty means every message.
    pub fn filters(&self) -> Vec<String> {
        match &self.filter_subject {
            Some(f) if !f.is_empty() => vec![f.clone()],
            _ => self.filter_subjects.clone(),
        }
    }

    /// nats-server's `setConsumerConfigDefaults` and the checks this slice supports.
    pub fn normalize(mut self) -> Result<ConsumerConfig, ApiError> {
        if let (Some(n), Some(d)) = (&self.name, &self.durable_name) {
            if !n.is_empty() && !d.is_empty() && n != d {
                return Err(ApiError::durable_and_name_differ());
            }
        }
        // checkConsumerCfg's asset-name checks (name first, then durable).
        if self.name.as_deref().is_some_and(|n| !n.is_empty() && check_name(n).is_err()) {
            return Err(ApiError::stream_invalid_config(
                "consumer name can not contain '.', '*', '>', '\\', '/'",
            ));
        }
        if self.durable_name.as_deref().is_some_and(|d| !d.is_empty() && check_name(d).is_err()) {
            return Err(ApiError::stream_invalid_config(
                "consumer durable name can not contain '.', '*', '>', '\\', '/'",
            ));
        }
        if self.filter_subject.as_deref() == Some("") {
            self.filter_subject = None;
        }
        // checkConsumerCfg's filter checks, in its order. Whether a filter can match the
        // stream's subjects is not checked: nats-server accepts any valid filter.
        if self.filter_subject.is_some() && !self.filter_subjects.is_empty() {
            return Err(ApiError::duplicate_filter_subjects());
        }
        let valid = |f: &str| crate::subject::validate_subscription(f.as_bytes()).is_ok();
        if self.filter_subject.as_deref().is_some_and(|f| !valid(f)) {
            return Err(ApiError::stream_invalid_config("invalid subject"));
        }
        if self.filter_subjects.iter().any(String::is_empty) {
            return Err(ApiError::empty_filter());
        }
        let filters = self.filters();
        for (i, f) in filters.iter().enumerate() {
            if !valid(f) {
                return Err(ApiError::stream_invalid_config("invalid subject"));
            }
            let within = |g: &String| crate::subject::is_subset(f.as_bytes(), g.as_bytes());
            if filters.iter().enumerate().any(|(j, g)| j != i && within(g)) {
                return Err(ApiError::overlapping_filter_subjects());
            }
        }
        if self.deliver_subject.as_deref() == Some("") {
            self.deliver_subject = None;
        }
        // nats-server's checkConsumerCfg order and codes.
        if self.deliver_subject.is_some() {
            if self.idle_heartbeat > 0 && self.idle_heartbeat < 100_000_000 {
                return Err(ApiError::small_heartbeat());
            }
        } else {
            if self.rate_limit_bps > 0 {
                return Err(ApiError::pull_with_rate_limit());
            }
            if self.idle_heartbeat > 0 {
                return Err(ApiError::heartbeat_requires_push());
            }
            if self.flow_control {
                return Err(ApiError::flow_control_requires_push());
            }
        }
        if self.flow_control && self.idle_heartbeat <= 0 {
            return Err(ApiError::flow_control_needs_heartbeats());
        }
        if self.ack_policy != AckPolicy::None && self.ack_wait == 0 {
            self.ack_wait = DEFAULT_ACK_WAIT;
        }
        // A backoff list overrides ack_wait with its first entry (nats-server's
        // setConsumerConfigDefaults), and max_deliver must outlast it.
        if let Some(first) = self.backoff.first() {
            self.ack_wait = *first;
        }
        if self.ack_wait < 0 {
            return Err(ApiError::consumer_create("consumer ack wait needs to be positive"));
        }
        if self.max_deliver == 0 || self.max_deliver < -1 {
            self.max_deliver = -1;
        }
        if self.backoff.iter().any(|b| *b < 0) {
            return Err(ApiError::backoff_negative());
        }
        if !self.backoff.is_empty()
            && self.max_deliver != -1
            && self.backoff.len() as i64 > self.max_deliver
        {
            return Err(ApiError::max_deliver_backoff());
        }
        if self.max_ack_pending == 0 && self.ack_policy != AckPolicy::None {
            self.max_ack_pending = DEFAULT_MAX_ACK_PENDING;
        }
        if self.max_ack_pending == 0 {
            self.max_ack_pending = -1;
        }
        if self.max_waiting == 0 && self.deliver_subject.is_none() {
            self.max_waiting = DEFAULT_MAX_WAITING;
        }
        if self.deliver_policy == DeliverPolicy::ByStartSequence
            && self.opt_start_seq.unwrap_or(0) == 0
        {
            return Err(ApiError::consumer_create(
                "consumer deliver policy by start sequence requires an optional start sequence",
            ));
        }
        if self.deliver_policy == DeliverPolicy::ByStartTime && self.opt_start_time.is_none() {
            return Err(ApiError::consumer_create(
                "consumer deliver policy by start time requires an optional start time",
            ));
        }
        if !self.is_durable() && self.inactive_threshold == 0 {
            self.inactive_threshold = DEFAULT_INACTIVE_THRESHOLD;
        }
        Ok(self)
    }
}

/// `$JS.API.CONSUMER.CREATE` body.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct CreateConsumerRequest {
    pub stream_name: String,
    pub config: ConsumerConfig,
    pub action: String,
}

/// `$JS.API.CONSUMER.PAUSE` body: no time (or Go's zero time) resumes.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct PauseRequest {
    pub pause_until: Option<String>,
}

/// `$JS.API.CONSUMER.MSG.NEXT` body (or a bare integer batch, or empty for one message).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct NextRequest {
    pub batch: Option<i64>,
    pub expires: Option<i64>,
    pub no_wait: Option<bool>,
    pub max_bytes: Option<i64>,
    pub idle_heartbeat: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct PagedRequest {
    pub offset: usize,
    pub subject: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct PurgeRequest {
    pub filter: Option<String>,
    pub seq: Option<u64>,
    pub keep: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct MsgGetRequest {
    pub seq: Option<u64>,
    pub last_by_subj: Option<String>,
    pub next_by_subj: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct MsgDeleteRequest {
    pub seq: u64,
    pub no_erase: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceInfo {
    pub consumer_seq: u64,
    pub stream_seq: u64,
}

/// Formats Unix nanoseconds as RFC 3339 in UTC, as Go's `time.Time` marshals (`0` is Go's zero
/// time, which nats-server reports for an empty stream's `first_ts`).
pub fn rfc3339(unix_nanos: i64) -> String {
    if unix_nanos == 0 {
        return "0001-01-01T00:00:00Z".into();
    }
    let secs = unix_nanos.div_euclid(1_000_000_000);
    let nanos = unix_nanos.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if nanos == 0 {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
    } else {
        // Go's RFC3339Nano drops trailing zeros of the fraction.
        let fraction = format!("{nanos:09}");
        let fraction = fraction.trim_end_matches('0');
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{fraction}Z")
    }
}

/// Parses the RFC 3339 times clients send (`opt_start_time`) back to Unix nanoseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, m, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    let mut nanos = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        let mut n: i64 = frac.get(..digits.min(9))?.parse().ok()?;
        for _ in digits.min(9)..9 {
            n *= 10;
        }
        nanos = n;
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o.get(1..3)?.parse::<i64>().ok()? * 3600
                + o.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + m * 60 + sec - offset;
    Some(secs * 1_000_000_000 + nanos)
}

/// Standard base64 with padding, as Go's `[]byte` JSON encoding (MSG.GET's `data`, `hdrs`).
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        let t = 1_764_268_800_123_456_789;
        let s = rfc3339(t);
        assert_eq!(s, "2025-11-27T18:40:00.123456789Z");
        assert_eq!(parse_rfc3339(&s), Some(t));
        assert_eq!(parse_rfc3339("2025-11-27T19:40:00+01:00"), Some(1_764_268_800_000_000_000));
        assert_eq!(rfc3339(1_764_268_800_120_000_000), "2025-11-27T18:40:00.12Z", "as Go trims");
    }

    #[test]
    fn base64_matches_go() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"hello world"), "aGVsbG8gd29ybGQ=");
    }

    #[test]
    fn stream_defaults_as_nats_server() {
        let c = StreamConfig { name: "S".into(), ..Default::default() }.normalize().unwrap();
        assert_eq!(c.subjects, vec!["S".to_string()]);
        assert_eq!((c.max_msgs, c.max_bytes, c.max_consumers), (-1, -1, -1));
        assert_eq!(c.duplicate_window, DEFAULT_DUPLICATE_WINDOW);
        assert_eq!(c.num_replicas, 1);
        let r =
            StreamConfig { name: "S".into(), num_replicas: 3, ..Default::default() }.normalize();
        assert_eq!(r.unwrap_err().err_code, 10074);
        assert!(StreamConfig { name: "a.b".into(), ..Default::default() }.normalize().is_err());
    }

    #[test]
    fn null_consumer_limits_read_as_unset() {
        let c: StreamConfig =
            serde_json::from_str(r#"{"name":"S","consumer_limits":null}"#).unwrap();
        assert_eq!(c.consumer_limits, ConsumerLimits::default());
        let shown = serde_json::to_value(&c).unwrap();
        assert_eq!(shown["consumer_limits"], serde_json::json!({}), "reported as {{}}");
    }

    #[test]
    fn subject_overlap() {
        assert!(overlaps("a.*", "*.b"));
        assert!(overlaps("a.>", "a.b.c"));
        assert!(!overlaps("a.b", "a.c"));
        assert!(!overlaps("a.*", "b.*"));
    }
}
