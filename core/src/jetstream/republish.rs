//! RePublish (stream config `republish {src, dest, headers_only}`): every stored message whose
//! subject matches `src` is published again, once durable, on `src` mapped to `dest`, with the
//! headers nats-server adds (`Nats-Stream`, `Nats-Subject`, `Nats-Sequence`, `Nats-Time-Stamp`,
//! `Nats-Last-Sequence`, and with `headers_only` no payload but `Nats-Msg-Size`).
//!
//! The mapping is nats-server's subject transform restricted to what a republish needs: literal
//! tokens, `$N` and `{{wildcard(N)}}` for the source's N-th `*`, and a trailing `>` on both
//! sides. The other transform functions (`partition`, `split`, `slice...`, `left`, `right`,
//! `random`) are refused as an invalid transform (docs/compatibility.md says so).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::api::StreamConfig;
use super::errors::ApiError;
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

#[derive(Clone, Debug, PartialEq, Eq)]
enum DestToken {
    Literal(String),
    /// The source token at this index.
    Wildcard(usize),
    /// The tokens the source's `>` covered.
    Rest,
}

/// A `src` → `dest` pair nats-server would refuse to compile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidTransform;

/// A compiled `src` → `dest` mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transform {
    source: String,
    dest: Vec<DestToken>,
    /// Index of the source's `>` token, if it has one.
    source_rest: Option<usize>,
}

/// `$N`, or `{{wildcard(N)}}` with any spacing and either case of the first letter. `Some(Err)`
/// for a mustache function this transform does not support or a malformed index.
fn placeholder(token: &str) -> Option<Result<usize, InvalidTransform>> {
    if let Some(n) = token.strip_prefix('$') {
        // nats-server leaves a `$` token that is not a number as a literal.
        return n.parse().ok().map(Ok);
    }
    let inner = token.strip_prefix("{{")?.strip_suffix("}}")?.trim();
    let args = inner
        .strip_prefix("wildcard")
        .or_else(|| inner.strip_prefix("Wildcard"))
        .map(str::trim_start)
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.trim_end().strip_suffix(')'));
    Some(args.and_then(|a| a.trim().parse().ok()).ok_or(InvalidTransform))
}

impl Transform {
    /// nats-server's rules: both valid subjects, `>` on both sides or neither, no `*` in the
    /// destination, every placeholder naming an existing source `*`.
    pub fn new(source: &str, dest: &str) -> Result<Transform, InvalidTransform> {
        let source = if source.is_empty() { ">" } else { source };
        crate::subject::validate_subscription(source.as_bytes()).map_err(|_| InvalidTransform)?;
        crate::subject::validate_subscription(dest.as_bytes()).map_err(|_| InvalidTransform)?;
        let stoks: Vec<&str> = source.split('.').collect();
        let dtoks: Vec<&str> = dest.split('.').collect();
        if dtoks.contains(&"*") || (stoks.last() == Some(&">")) != (dtoks.last() == Some(&">")) {
            return Err(InvalidTransform);
        }
        let stars: Vec<usize> =
            stoks.iter().enumerate().filter(|(_, t)| **t == "*").map(|(i, _)| i).collect();
        let mut out = Vec::with_capacity(dtoks.len());
        for t in dtoks {
            out.push(match (t, placeholder(t)) {
                (">", _) => DestToken::Rest,
                (_, None) => DestToken::Literal(t.to_string()),
                (_, Some(Err(e))) => return Err(e),
                (_, Some(Ok(n))) => {
                    let at = n.checked_sub(1).and_then(|i| stars.get(i)).ok_or(InvalidTransform)?;
                    DestToken::Wildcard(*at)
                }
            });
        }
        let source_rest = (stoks.last() == Some(&">")).then(|| stoks.len() - 1);
        Ok(Transform { source: source.to_string(), dest: out, source_rest })
    }

    /// The destination for `subject`, or `None` when it does not match the source (or maps to
    /// something that is not a valid subject: nats-server suppresses those).
    pub fn apply(&self, subject: &str) -> Option<String> {
        if !crate::subject::matches(self.source.as_bytes(), subject.as_bytes()) {
            return None;
        }
        let toks: Vec<&str> = subject.split('.').collect();
        let mut parts: Vec<&str> = Vec::with_capacity(self.dest.len() + 4);
        for d in &self.dest {
            match d {
                DestToken::Literal(t) => parts.push(t),
                DestToken::Wildcard(i) => parts.push(toks.get(*i)?),
                DestToken::Rest => parts.extend(&toks[self.source_rest?..]),
            }
        }
        let mapped = parts.join(".");
        crate::subject::validate_literal(mapped.as_bytes()).ok()?;
        Some(mapped)
    }
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
    Transform::new(&rp.source, &rp.destination).map_err(|InvalidTransform| {
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
    let to = Transform::new(&rp.source, &rp.destination).ok()?.apply(m.subject)?;
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
    fn transforms_map_like_nats_server() {
        let t = Transform::new("orders.*.*", "repub.$2.{{wildcard(1)}}").unwrap();
        assert_eq!(t.apply("orders.a.b").as_deref(), Some("repub.b.a"));
        assert_eq!(t.apply("orders.a"), None);
        let t = Transform::new("a.>", "b.>").unwrap();
        assert_eq!(t.apply("a.x.y").as_deref(), Some("b.x.y"));
        let t = Transform::new(">", "all.>").unwrap();
        assert_eq!(t.apply("x.y").as_deref(), Some("all.x.y"));
        let t = Transform::new("a.*", "fixed").unwrap();
        assert_eq!(t.apply("a.q").as_deref(), Some("fixed"));
        let t = Transform::new("a.*", "b.{{Wildcard(1)}}").unwrap();
        assert_eq!(t.apply("a.q").as_deref(), Some("b.q"));
    }

    #[test]
    fn invalid_transforms_are_refused() {
        for (s, d) in [
            ("a.*", "b.*"),
            ("a.>", "b"),
            ("a.*", "b.>"),
            ("a.*", "b.$2"),
            ("a.*", "b.{{wildcard(0)}}"),
            ("a.*", "b.{{partition(3,1)}}"),
            ("a..b", "c"),
            ("a.*", ""),
        ] {
            assert!(Transform::new(s, d).is_err(), "{s} -> {d}");
        }
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
