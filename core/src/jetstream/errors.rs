//! JetStream API errors as nats-server reports them: `{code, err_code, description}`, with the
//! codes of nats-server's `server/errors.json`. Clients branch on `err_code` (async-nats'
//! `ErrorCode`, nats.go's `ErrStreamNotFound`...), so the numbers must be exactly these.

use serde::{Deserialize, Serialize};

/// One API error, serialized as nats-server's `ApiError`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// HTTP-like status.
    pub code: u16,
    pub err_code: u16,
    pub description: String,
}

impl ApiError {
    fn new(code: u16, err_code: u16, description: impl Into<String>) -> Self {
        ApiError { code, err_code, description: description.into() }
    }

    pub fn bad_request() -> Self {
        Self::new(400, 10003, "bad request")
    }
    pub fn consumer_create(why: impl std::fmt::Display) -> Self {
        Self::new(500, 10012, format!("{why}"))
    }
    pub fn consumer_name_exists() -> Self {
        Self::new(400, 10013, "consumer name already in use")
    }
    pub fn consumer_not_found() -> Self {
        Self::new(404, 10014, "consumer not found")
    }
    pub fn invalid_json(why: impl std::fmt::Display) -> Self {
        Self::new(400, 10025, format!("invalid JSON: {why}"))
    }
    pub fn no_message_found() -> Self {
        Self::new(404, 10037, "no message found")
    }
    pub fn sequence_not_found(seq: u64) -> Self {
        Self::new(400, 10043, format!("sequence {seq} not found"))
    }
    pub fn stream_create(why: impl std::fmt::Display) -> Self {
        Self::new(500, 10049, format!("{why}"))
    }
    pub fn stream_invalid_config(why: impl std::fmt::Display) -> Self {
        Self::new(500, 10052, format!("{why}"))
    }
    pub fn insufficient_resources() -> Self {
        Self::new(503, 10023, "insufficient resources")
    }
    pub fn memory_resources_exceeded() -> Self {
        Self::new(500, 10028, "insufficient memory resources available")
    }
    pub fn storage_resources_exceeded() -> Self {
        Self::new(500, 10047, "insufficient storage resources available")
    }
    pub fn message_too_large() -> Self {
        Self::new(400, 10054, "message size exceeds maximum allowed")
    }
    pub fn stream_name_mismatch() -> Self {
        Self::new(400, 10056, "stream name in subject does not match request")
    }
    pub fn stream_name_exists() -> Self {
        Self::new(400, 10058, "stream name already in use with a different configuration")
    }
    pub fn stream_not_found() -> Self {
        Self::new(404, 10059, "stream not found")
    }
    pub fn expected_stream_mismatch() -> Self {
        Self::new(400, 10060, "expected stream does not match")
    }
    pub fn subjects_overlap() -> Self {
        Self::new(400, 10065, "subjects overlap with an existing stream")
    }
    pub fn stream_update(why: impl std::fmt::Display) -> Self {
        Self::new(500, 10069, format!("{why}"))
    }
    pub fn wrong_last_msg_id(id: &str) -> Self {
        Self::new(400, 10070, format!("wrong last msg ID: {id}"))
    }
    pub fn wrong_last_sequence(seq: u64) -> Self {
        Self::new(400, 10071, format!("wrong last sequence: {seq}"))
    }
    pub fn replicas_not_supported() -> Self {
        Self::new(500, 10074, "replicas > 1 not supported in non-clustered mode")
    }
    pub fn store_failed(why: impl std::fmt::Display) -> Self {
        Self::new(503, 10077, format!("{why}"))
    }
    pub fn sealed() -> Self {
        Self::new(400, 10109, "invalid operation on sealed stream")
    }
    /// nats-server's `JSStreamRollupFailedF`.
    pub fn rollup_denied() -> Self {
        Self::new(500, 10111, "rollup not permitted")
    }
    pub fn rollup_invalid(value: &str) -> Self {
        Self::new(500, 10111, format!("rollup value invalid: {value:?}"))
    }
    pub fn pull_requires_ack() -> Self {
        Self::new(
            400,
            10084,
            "consumer in pull mode requires explicit ack policy on workqueue stream",
        )
    }
    pub fn workqueue_needs_explicit_ack() -> Self {
        Self::new(400, 10098, "workqueue stream requires explicit ack")
    }
    pub fn workqueue_needs_deliver_all() -> Self {
        Self::new(400, 10101, "consumer must be deliver all on workqueue stream")
    }
    pub fn maximum_consumers() -> Self {
        Self::new(400, 10026, "maximum consumers limit reached")
    }
    pub fn max_deliver_backoff() -> Self {
        Self::new(400, 10116, "max deliver is required to be > length of backoff values")
    }
    pub fn heartbeat_requires_push() -> Self {
        Self::new(400, 10088, "consumer idle heartbeat requires a push based consumer")
    }
    pub fn flow_control_requires_push() -> Self {
        Self::new(400, 10089, "consumer flow control requires a push based consumer")
    }
    pub fn flow_control_needs_heartbeats() -> Self {
        Self::new(400, 10108, "consumer with flow control also needs heartbeats")
    }
    pub fn message_ttl_invalid() -> Self {
        Self::new(400, 10165, "invalid per-message TTL")
    }
    pub fn message_ttl_disabled() -> Self {
        Self::new(400, 10166, "per-message TTL is disabled")
    }
    pub fn max_ack_pending_excess(limit: i64) -> Self {
        Self::new(400, 10121, format!("consumer max ack pending exceeds system limit of {limit}"))
    }
    pub fn small_heartbeat() -> Self {
        Self::new(400, 10083, "consumer idle heartbeat needs to be >= 100ms")
    }
    pub fn pull_with_rate_limit() -> Self {
        Self::new(400, 10086, "consumer in pull mode can not have rate limit set")
    }
    pub fn backoff_negative() -> Self {
        Self::new(400, 10184, "consumer backoff needs to be positive")
    }
    pub fn workqueue_multiple_unfiltered() -> Self {
        Self::new(400, 10099, "multiple non-filtered consumers not allowed on workqueue stream")
    }
    pub fn workqueue_overlapping_filters() -> Self {
        Self::new(400, 10100, "filtered consumer not unique on workqueue stream")
    }
    pub fn consumer_exists() -> Self {
        Self::new(400, 10148, "consumer already exists")
    }
    pub fn consumer_does_not_exist() -> Self {
        Self::new(400, 10149, "consumer does not exist")
    }
    pub fn consumer_filter_mismatch() -> Self {
        Self::new(
            400,
            10131,
            "Consumer create request did not match filtered subject from create subject",
        )
    }
    pub fn durable_name_mismatch() -> Self {
        Self::new(400, 10017, "consumer name in subject does not match durable name in request")
    }
    pub fn durable_and_name_differ() -> Self {
        Self::new(400, 10132, "Consumer Durable and Name have to be equal if both are provided")
    }
    pub fn durable_name_not_set() -> Self {
        Self::new(400, 10018, "consumer expected to be durable but a durable name was not set")
    }
    pub fn ephemeral_with_durable_name() -> Self {
        Self::new(
            400,
            10020,
            "consumer expected to be ephemeral but a durable name was set in request",
        )
    }
    pub fn consumer_name_path_separators() -> Self {
        Self::new(400, 10127, "Consumer name can not contain path separators")
    }
    pub fn duplicate_filter_subjects() -> Self {
        Self::new(
            400,
            10136,
            "consumer cannot have both FilterSubject and FilterSubjects specified",
        )
    }
    pub fn overlapping_filter_subjects() -> Self {
        Self::new(400, 10138, "consumer subject filters cannot overlap")
    }
    pub fn empty_filter() -> Self {
        Self::new(400, 10139, "consumer filter in FilterSubjects cannot be empty")
    }
    pub fn multiple_filters_with_subject_api() -> Self {
        Self::new(400, 10137, "consumer with multiple subject filters cannot use subject based API")
    }
    pub fn stream_delete_denied() -> Self {
        Self::new(400, 10050, "message delete not permitted")
    }
    pub fn purge_denied() -> Self {
        Self::new(400, 10050, "stream purge not permitted")
    }

    // Mirrors and sources (`sourcing`), nats-server's texts and codes.
    pub fn mirror_max_message_size_too_big() -> Self {
        Self::new(400, 10030, "stream mirror must have max message size >= source")
    }
    pub fn mirror_with_sources() -> Self {
        Self::new(400, 10031, "stream mirrors can not also contain other sources")
    }
    pub fn mirror_with_subjects() -> Self {
        Self::new(400, 10034, "stream mirrors can not contain subjects")
    }
    pub fn source_max_message_size_too_big() -> Self {
        Self::new(400, 10046, "stream source must have max message size >= target")
    }
    pub fn mirror_not_updatable() -> Self {
        Self::new(400, 10055, "stream mirror configuration can not be updated")
    }
    pub fn source_duplicate_detected() -> Self {
        Self::new(400, 10140, "duplicate source configuration detected")
    }
    pub fn source_invalid_stream_name() -> Self {
        Self::new(400, 10141, "sourced stream name is invalid")
    }
    pub fn mirror_invalid_stream_name() -> Self {
        Self::new(400, 10142, "mirrored stream name is invalid")
    }
    pub fn mirror_with_first_seq() -> Self {
        Self::new(400, 10143, "stream mirrors can not have first sequence configured")
    }
    pub fn source_multiple_filters_not_allowed() -> Self {
        Self::new(
            400,
            10144,
            "source with multiple subject transforms cannot also have a single subject filter",
        )
    }
    pub fn source_invalid_subject_filter(why: impl std::fmt::Display) -> Self {
        Self::new(400, 10145, format!("source transform source: {why}"))
    }
    pub fn source_invalid_transform_destination(why: impl std::fmt::Display) -> Self {
        Self::new(400, 10146, format!("source transform: {why}"))
    }
    pub fn source_overlapping_subject_filters() -> Self {
        Self::new(400, 10147, "source filters can not overlap")
    }
    pub fn mirror_multiple_filters_not_allowed() -> Self {
        Self::new(
            400,
            10150,
            "mirror with multiple subject transforms cannot also have a single subject filter",
        )
    }
    pub fn mirror_invalid_subject_filter(why: impl std::fmt::Display) -> Self {
        Self::new(400, 10151, format!("mirror transform source: {why}"))
    }
    pub fn mirror_overlapping_subject_filters() -> Self {
        Self::new(400, 10152, "mirror subject filters can not overlap")
    }
    pub fn mirror_invalid_transform_destination(why: impl std::fmt::Display) -> Self {
        Self::new(400, 10154, format!("mirror transform: {why}"))
    }
    pub fn stream_transform_invalid_source(why: impl std::fmt::Display) -> Self {
        Self::new(400, 10155, format!("stream transform source: {why}"))
    }
    pub fn stream_transform_invalid_destination(why: impl std::fmt::Display) -> Self {
        Self::new(400, 10156, format!("stream transform: {why}"))
    }
    pub fn source_header_not_allowed() -> Self {
        Self::new(400, 10227, "message stream source header is not allowed")
    }
    pub fn snapshot_deliver_subject_invalid() -> Self {
        Self::new(400, 10015, "deliver subject not valid")
    }
    pub fn stream_restore(why: impl std::fmt::Display) -> Self {
        Self::new(500, 10062, format!("restore failed: {why}"))
    }
    pub fn stream_snapshot(why: impl std::fmt::Display) -> Self {
        Self::new(500, 10064, format!("snapshot failed: {why}"))
    }
    pub fn stream_name_path_separators() -> Self {
        Self::new(400, 10128, "Stream name can not contain path separators")
    }
    pub fn stream_name_exists_restore() -> Self {
        Self::new(400, 10130, "stream name already in use, cannot restore")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {}, err_code {})", self.description, self.code, self.err_code)
    }
}
