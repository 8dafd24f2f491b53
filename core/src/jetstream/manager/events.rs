//! Where the manager raises the advisories of `jetstream::advisories`: stream and consumer
//! actions, read off the answer of a successful API request, and the audit of every API
//! request. They join the held outputs, so they go out with (after the sync of) the change.

use super::super::advisories::{self, Action, Audit};
use super::*;

impl<D: Disk + Send + 'static> Manager<D> {
    /// A fresh 22-character id (nats-server uses NUIDs of that length).
    pub(super) fn next_id(&mut self) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..22).map(|_| A[self.ids.random_range(0..A.len())] as char).collect()
    }

    /// The action advisory a successful API request calls for, if any.
    pub(super) fn action_advisory(
        &mut self,
        now: Now,
        kind: &str,
        tokens: &[&str],
        answer: &Value,
        consumers_before: usize,
        deleted_consumers: &[String],
    ) {
        let stream = tokens.get(2).copied().unwrap_or_default();
        let event = match kind {
            // An identical create of an existing stream changes nothing and says nothing.
            "stream_create" if answer["did_create"] == true => Some((stream, None, Action::Create)),
            "stream_update" => Some((stream, None, Action::Modify)),
            "stream_delete" => {
                for c in deleted_consumers {
                    let id = self.next_id();
                    let out = advisories::consumer_action(stream, c, Action::Delete, &id, now.wall);
                    self.held.push(out);
                }
                Some((stream, None, Action::Delete))
            }
            "consumer_create" => {
                let now_total: usize = self.streams.values().map(|s| s.consumers.len()).sum();
                // The answer names both (`DURABLE.CREATE` puts the stream at another token).
                let stream = answer["stream_name"].as_str().unwrap_or_default();
                let name = answer["name"].as_str().unwrap_or_default();
                (now_total > consumers_before).then_some((stream, Some(name), Action::Create))
            }
            "consumer_delete" => {
                Some((stream, Some(tokens.get(3).copied().unwrap_or_default()), Action::Delete))
            }
            _ => None,
        };
        let Some((stream, consumer, action)) = event else { return };
        let (stream, consumer) = (stream.to_string(), consumer.map(str::to_string));
        let id = self.next_id();
        let out = match consumer {
            Some(c) => advisories::consumer_action(&stream, &c, action, &id, now.wall),
            None => advisories::stream_action(&stream, action, &id, now.wall),
        };
        self.held.push(out);
    }

    /// `STREAM.CREATED` for a stream a restore brought in, as nats-server's `addStream` sends.
    pub(super) fn restored_advisory(&mut self, now: Now, stream: &str) {
        let id = self.next_id();
        self.held.push(advisories::stream_action(stream, Action::Create, &id, now.wall));
    }

    /// `$JS.EVENT.ADVISORY.API` for one answered request (`op` is the subject after `$JS.API.`).
    pub(super) fn audit(&mut self, now: Now, op: &str, request: &[u8], response: &[u8]) {
        let out = self.audit_message(now, op, request, response);
        self.held.push(out);
    }

    pub(super) fn audit_message(
        &mut self,
        now: Now,
        op: &str,
        request: &[u8],
        response: &[u8],
    ) -> Outgoing {
        let id = self.next_id();
        let subject = format!("$JS.API.{op}");
        let audit = Audit { server: &self.server_name, subject: &subject, request, response };
        advisories::api_audit(&audit, &id, now.wall)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::super::tests::{open, Shared};
    use super::*;
    use crate::disk::{FaultConfig, MemDisk};

    #[test]
    fn actions_and_audits_go_out_with_the_answer_at_the_flush() {
        let disk = Shared(Arc::new(Mutex::new(MemDisk::new(1, FaultConfig::default()))));
        let mut m = open(&disk);
        m.set_server_name("n1");
        let now = Now::default();
        m.handle(now, "$JS.API.STREAM.CREATE.S", Some("r1"), None, br#"{"name":"S"}"#);
        assert!(m.poll_output().is_none(), "nothing before the flush");
        let cfg = br#"{"stream_name":"S","config":{"durable_name":"C"}}"#;
        m.handle(now, "$JS.API.CONSUMER.DURABLE.CREATE.S.C", Some("r2"), None, cfg);
        // The same create again: answered, audited, but no action.
        m.handle(now, "$JS.API.CONSUMER.DURABLE.CREATE.S.C", Some("r3"), None, cfg);
        m.handle(now, "$JS.API.CONSUMER.DELETE.S.C", None, None, b"");
        m.handle(now, "$JS.API.STREAM.DELETE.S", None, None, b"");
        m.flush(now, &|_| true);
        let out: Vec<Outgoing> = std::iter::from_fn(|| m.poll_output()).collect();
        let to: Vec<&str> = out.iter().map(|o| o.to.as_str()).collect();
        let actions: Vec<&str> =
            to.iter().copied().filter(|t| t.starts_with("$JS.EVENT.ADVISORY.S")).collect();
        let consumers: Vec<&str> =
            to.iter().copied().filter(|t| t.starts_with("$JS.EVENT.ADVISORY.C")).collect();
        assert_eq!(
            actions,
            ["$JS.EVENT.ADVISORY.STREAM.CREATED.S", "$JS.EVENT.ADVISORY.STREAM.DELETED.S"]
        );
        assert_eq!(
            consumers,
            ["$JS.EVENT.ADVISORY.CONSUMER.CREATED.S.C", "$JS.EVENT.ADVISORY.CONSUMER.DELETED.S.C"]
        );
        let audits: Vec<Value> = out
            .iter()
            .filter(|o| o.to == advisories::API_AUDIT_SUBJECT)
            .map(|o| serde_json::from_slice(&o.payload).unwrap())
            .collect();
        assert_eq!(audits.len(), 5, "every request, answered or not");
        assert_eq!(audits[4]["subject"], "$JS.API.STREAM.DELETE.S");
        assert_eq!(audits[4]["server"], "n1");
        let ids: std::collections::BTreeSet<&str> =
            audits.iter().map(|a| a["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), 5, "ids are unique");
    }
}
