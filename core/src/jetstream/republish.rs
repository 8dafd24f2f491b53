//! RePublish (stream config `republish {src, dest, headers_only}`): every stored message whose
//! subject matches `src` is published again, once durable, on `src` mapped to `dest`, with the
//! headers nats-server adds (`Nats-Stream`, `Nats-Subject`, `Nats-Sequence`, `Nats-Time-Stamp`,
//! `Nats-Last-Sequence`, and with `headers_only` no payload but `Nats-Msg-Size`).
//!
//! The mapping is the streams' subject transform (`transform.rs`): literal tokens, `$N` and
//! `{{wildcard(N)}}`, a trailing `>`; nats-server's other mapping functions are refused as an
//! invalid transform (docs/compatibility.md says so).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::api::StreamConfig;
use super::errors::ApiError;
use super::transform::Transform;
use super::Outgoing;

/// `RePublish` (server/stream.go), with its JSON names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RePublish {
    #[serde(rename = "src", skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(rename = "dest")]
    pub destination: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub headers_only: bool,
}

/// `checkStreamCfg`'s republish part: the source defaults to `>`, the destination may not
/// collide with the stream's own subjects (a cycle), and the mapping must compile.
pub fn check(config: &mut StreamConfig) -> Result<(), ApiError> {
    let Some(rp) = config.republish.as_mut() else { return Ok(()) };
    if rp.source.is_empty() {
        rp.source = ">".into();
    }
    let rp = rp.clone();
    if config.subjects.iter().any(|s| super::api::overlaps(&rp.destination, s)) {
        return Err(ApiError::stream_invalid_config(
            "stream configuration for republish destination forms a cycle",
        ));
    }
    Transform::new(&rp.source, &rp.destination).map_err(|_| {
        ApiError::stream_invalid_config(format!(
            "stream configuration for republish with transform from '{}' to '{}' not valid",
            rp.source, rp.destination
        ))
    })?;
    Ok(())
}

/// What goes out for one stored message: `(to, headers, with_payload)`. `last_seq` is the
/// sequence of the previous message on the same subject (0 for none); `time` its RFC 3339 stamp.
pub struct Stored<'a> {
    pub stream: &'a str,
    pub subject: &'a str,
    pub seq: u64,
    pub time: &'a str,
    pub last_seq: u64,
    pub headers: &'a [u8],
    pub payload_len: usize,
}

/// The header block of the republished message: the client's headers (if any) followed by
/// nats-server's, in its order.
pub fn headers(m: &Stored<'_>, headers_only: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.headers.len() + 160);
    match m.headers.strip_suffix(b"\r\n\r\n") {
        Some(head) if !head.is_empty() => {
            out.extend_from_slice(head);
            out.extend_from_slice(b"\r\n");
        }
        _ => out.extend_from_slice(b"NATS/1.0\r\n"),
    }
    let mut add = |k: &str, v: &str| {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    add("Nats-Stream", m.stream);
    add("Nats-Subject", m.subject);
    add("Nats-Sequence", &m.seq.to_string());
    add("Nats-Time-Stamp", m.time);
    add("Nats-Last-Sequence", &m.last_seq.to_string());
    if headers_only {
        add("Nats-Msg-Size", &m.payload_len.to_string());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The message to publish for one stored message, if its subject matches the source.
pub fn message(rp: &RePublish, m: &Stored<'_>, payload: &[u8]) -> Option<Outgoing> {
    // Compiled per message: a handful of tokens, cheaper than keeping it in sync with updates.
    // An empty destination republishes nothing, as in nats-server.
    let to = Transform::new(&rp.source, &rp.destination).ok()??.apply(m.subject)?;
    // A mapping that makes no valid subject is suppressed, as nats-server does.
    crate::subject::validate_literal(to.as_bytes()).ok()?;
    let payload = if rp.headers_only { Bytes::new() } else { Bytes::copy_from_slice(payload) };
    Some(Outgoing {
        to: to.clone(),
        subject: to,
        reply: None,
        headers: Some(headers(m, rp.headers_only)),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_matching_subjects_are_republished_on_the_mapped_subject() {
        let rp = RePublish {
            source: "orders.*".into(),
            destination: "repub.{{wildcard(1)}}".into(),
            headers_only: false,
        };
        let m = |subject| Stored {
            stream: "S",
            subject,
            seq: 1,
            time: "t",
            last_seq: 0,
            headers: b"",
            payload_len: 1,
        };
        let out = message(&rp, &m("orders.a"), b"x").unwrap();
        assert_eq!((out.to.as_str(), &out.payload[..]), ("repub.a", &b"x"[..]));
        assert!(message(&rp, &m("orders.a.b"), b"x").is_none());
        let empty = RePublish { destination: String::new(), ..rp };
        assert!(message(&empty, &m("orders.a"), b"x").is_none());
    }

    #[test]
    fn headers_follow_the_clients_then_nats_servers() {
        let m = Stored {
            stream: "S",
            subject: "a.b",
            seq: 3,
            time: "2026-01-01T00:00:00Z",
            last_seq: 1,
            headers: b"NATS/1.0\r\nX: 1\r\n\r\n",
            payload_len: 5,
        };
        assert_eq!(
            String::from_utf8(headers(&m, true)).unwrap(),
            "NATS/1.0\r\nX: 1\r\nNats-Stream: S\r\nNats-Subject: a.b\r\nNats-Sequence: 3\r\n\
             Nats-Time-Stamp: 2026-01-01T00:00:00Z\r\nNats-Last-Sequence: 1\r\nNats-Msg-Size: 5\r\n\r\n"
        );
    }
}
