//! JetStream advisories as nats-server publishes them (server/jetstream_events.go): stream and
//! consumer actions, and the API audit, with nats-server's subjects and JSON `type`s.
//!
//! | subject | type |
//! |---|---|
//! | `$JS.EVENT.ADVISORY.STREAM.{CREATED,UPDATED,DELETED}.<stream>` | `io.nats.jetstream.advisory.v1.stream_action` |
//! | `$JS.EVENT.ADVISORY.CONSUMER.{CREATED,DELETED}.<stream>.<consumer>` | `io.nats.jetstream.advisory.v1.consumer_action` |
//! | `$JS.EVENT.ADVISORY.API` | `io.nats.jetstream.advisory.v1.api_audit` |
//! | `$JS.EVENT.ADVISORY.STREAM.{SNAPSHOT,RESTORE}_{CREATE,COMPLETE}.<stream>` | `io.nats.jetstream.advisory.v1.{snapshot,restore}_{create,complete}` |
//!
//! Every advisory carries an `id` (22 characters, like nats-server's NUIDs) and a `timestamp`
//! (RFC 3339 with nanoseconds, UTC). The manager holds them with its other outputs, so an
//! advisory about a change goes out only once the change is durable.

use serde_json::json;

use super::api::rfc3339;
use super::Outgoing;

pub const STREAM_ACTION_TYPE: &str = "io.nats.jetstream.advisory.v1.stream_action";
pub const CONSUMER_ACTION_TYPE: &str = "io.nats.jetstream.advisory.v1.consumer_action";
pub const API_AUDIT_TYPE: &str = "io.nats.jetstream.advisory.v1.api_audit";
pub const API_AUDIT_SUBJECT: &str = "$JS.EVENT.ADVISORY.API";

/// What happened to a stream or consumer (`ActionAdvisoryType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Create,
    Modify,
    Delete,
}

impl Action {
    fn json(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Modify => "modify",
            Action::Delete => "delete",
        }
    }

    fn subject_token(self) -> &'static str {
        match self {
            Action::Create => "CREATED",
            Action::Modify => "UPDATED",
            Action::Delete => "DELETED",
        }
    }
}

fn publish(to: String, body: serde_json::Value) -> Outgoing {
    Outgoing::reply(&to, body.to_string())
}

/// A typed event on `to`: `type`, `id`, `timestamp`, then `fields`.
fn event(to: String, kind: &str, id: &str, wall: i64, fields: serde_json::Value) -> Outgoing {
    let mut body = json!({"type": kind, "id": id, "timestamp": rfc3339(wall)});
    if let (Some(map), serde_json::Value::Object(fields)) = (body.as_object_mut(), fields) {
        map.extend(fields);
    }
    publish(to, body)
}

/// The client of a snapshot or restore advisory: what fjord's manager knows of it.
fn client() -> serde_json::Value {
    json!({"acc": "$G"})
}

/// `JSSnapshotCreateAdvisory`: a snapshot's answer went out; `state` is the stream state in it.
pub fn snapshot_create(stream: &str, state: &serde_json::Value, id: &str, wall: i64) -> Outgoing {
    event(
        format!("$JS.EVENT.ADVISORY.STREAM.SNAPSHOT_CREATE.{stream}"),
        "io.nats.jetstream.advisory.v1.snapshot_create",
        id,
        wall,
        json!({"stream": stream, "state": state, "client": client()}),
    )
}

/// `JSSnapshotCompleteAdvisory`: the last chunk went, or the transfer was given up (`error`).
pub fn snapshot_complete(
    stream: &str,
    start: i64,
    error: Option<&str>,
    id: &str,
    wall: i64,
) -> Outgoing {
    let mut fields = json!({"stream": stream, "start": rfc3339(start), "end": rfc3339(wall),
                            "client": client()});
    if let Some(e) = error {
        fields["error"] = json!(e);
    }
    event(
        format!("$JS.EVENT.ADVISORY.STREAM.SNAPSHOT_COMPLETE.{stream}"),
        "io.nats.jetstream.advisory.v1.snapshot_complete",
        id,
        wall,
        fields,
    )
}

/// `JSRestoreCreateAdvisory`: an upload was accepted.
pub fn restore_create(stream: &str, id: &str, wall: i64) -> Outgoing {
    event(
        format!("$JS.EVENT.ADVISORY.STREAM.RESTORE_CREATE.{stream}"),
        "io.nats.jetstream.advisory.v1.restore_create",
        id,
        wall,
        json!({"stream": stream, "client": client()}),
    )
}

/// `JSRestoreCompleteAdvisory`: an upload ended (restored or refused) after `bytes` bytes.
pub fn restore_complete(stream: &str, start: i64, bytes: u64, id: &str, wall: i64) -> Outgoing {
    event(
        format!("$JS.EVENT.ADVISORY.STREAM.RESTORE_COMPLETE.{stream}"),
        "io.nats.jetstream.advisory.v1.restore_complete",
        id,
        wall,
        json!({"stream": stream, "start": rfc3339(start), "end": rfc3339(wall), "bytes": bytes,
               "client": client()}),
    )
}

/// `JSStreamActionAdvisory`.
pub fn stream_action(stream: &str, action: Action, id: &str, wall: i64) -> Outgoing {
    event(
        format!("$JS.EVENT.ADVISORY.STREAM.{}.{stream}", action.subject_token()),
        STREAM_ACTION_TYPE,
        id,
        wall,
        json!({"stream": stream, "action": action.json()}),
    )
}

/// `JSConsumerActionAdvisory`.
pub fn consumer_action(
    stream: &str,
    consumer: &str,
    action: Action,
    id: &str,
    wall: i64,
) -> Outgoing {
    event(
        format!("$JS.EVENT.ADVISORY.CONSUMER.{}.{stream}.{consumer}", action.subject_token()),
        CONSUMER_ACTION_TYPE,
        id,
        wall,
        json!({"stream": stream, "consumer": consumer, "action": action.json()}),
    )
}

/// One `$JS.API` request and its answer (`JSAPIAudit`). `client` is what the server knows of
/// the requester: fjord's manager sees only the account.
pub struct Audit<'a> {
    pub server: &'a str,
    pub subject: &'a str,
    pub request: &'a [u8],
    pub response: &'a [u8],
}

/// `JSAPIAudit`; `request` is left out when empty, as nats-server's `omitempty` does.
pub fn api_audit(a: &Audit<'_>, id: &str, wall: i64) -> Outgoing {
    let mut fields = json!({
        "server": a.server, "client": client(), "subject": a.subject,
        "response": String::from_utf8_lossy(a.response),
    });
    if !a.request.is_empty() {
        fields["request"] = json!(String::from_utf8_lossy(a.request));
    }
    event(API_AUDIT_SUBJECT.to_string(), API_AUDIT_TYPE, id, wall, fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_bodies_are_nats_servers() {
        let o = consumer_action("S", "C", Action::Delete, "abc", 1_500_000_000);
        assert_eq!(o.to, "$JS.EVENT.ADVISORY.CONSUMER.DELETED.S.C");
        let v: serde_json::Value = serde_json::from_slice(&o.payload).unwrap();
        assert_eq!(v["type"], CONSUMER_ACTION_TYPE);
        assert_eq!(v["action"], "delete");
        assert_eq!(v["timestamp"], "1970-01-01T00:00:01.5Z");
        let o = stream_action("S", Action::Modify, "abc", 1);
        assert_eq!(o.to, "$JS.EVENT.ADVISORY.STREAM.UPDATED.S");
        let a = Audit { server: "n", subject: "$JS.API.INFO", request: b"", response: b"{}" };
        let v: serde_json::Value = serde_json::from_slice(&api_audit(&a, "x", 1).payload).unwrap();
        assert!(v.get("request").is_none());
        assert_eq!(v["response"], "{}");
    }
}
