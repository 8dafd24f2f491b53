//! JetStream on one server, sans-IO: streams, pull and push consumers and the `$JS.API`
//! handlers.
//!
//! Rooms: `api` (request/response bodies, nats-server's JSON shapes), `errors` (nats-server's
//! error codes), `headers` (header blocks), `stream` (config, publish path, dedup, group-commit
//! PubAcks, retention, TTL expiry), `consumer` (consumer state machine), `manager` (routes
//! `$JS.API.>`, `$JS.ACK.>`, `$JS.FC.>`, `$JS.SNAPSHOT.>` and stream subjects to the above,
//! persists metadata; `manager/snapshot.rs` serves backup and restore, `manager/events.rs`
//! raises advisories), `archive` (the backup archive format), `republish` (RePublish's subject
//! mapping and headers), `advisories` (the `$JS.EVENT.ADVISORY` messages), `resources` (the
//! server-wide memory and file store limits).
//!
//! How a driver runs it (the runtime's actor does exactly this; a simulator can too):
//! 1. for each message that reached a JetStream subscription, `Manager::handle(now, ...)`;
//! 2. after a batch of them (or a `tick(now)` at `poll_timeout()`), `Manager::flush(now)`: one
//!    store flush per stream that changed (group commit), then consumer state writes, then the
//!    outputs are released;
//! 3. drain `poll_output()` and deliver each `Outgoing` like a publish from the server.
//!
//! Durability rules, and why: every answer produced while handling a batch is held back until
//! `flush` has synced what it describes, so a PubAck, an API answer that shows new state, or an
//! ack confirmation is never ahead of the disk. Consumers only hand out messages at or below the
//! stream's durable sequence, so a client never processes a message a crash could take back.
//! Stream and consumer configs are written with `Disk::replace_atomically` (temp, sync, rename,
//! sync_dir) before the API answers. A durable consumer's state (delivered, ack floor, pending)
//! is written the same way before any ack confirmation ("double ack") that depends on it goes
//! out, and otherwise at most once a second: a plain ack promises nothing, and losing one to a
//! crash only means a redelivery, which at-least-once delivery allows.
//!
//! Push consumers deliver only while their deliver subject has a subscriber (the driver answers
//! `interest` at each flush): clients create the consumer first and subscribe after.
//!
//! Time is an input (`Now`): monotonic for ack waits and request expiry, wall clock for message
//! timestamps and the duplicate window.

pub mod advisories;
pub mod api;
pub mod archive;
pub mod consumer;
pub mod errors;
pub mod headers;
pub mod manager;
pub mod republish;
pub mod resources;
pub mod sourcing;
pub mod stream;
pub mod transform;

use bytes::Bytes;

use crate::time::Instant;

/// The driver's clocks at one input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    pub mono: Instant,
    /// Unix nanoseconds.
    pub wall: i64,
}

/// A message the server publishes: routed like a publish to `to`, carried with the subject
/// `subject` (deliveries to a pull request's inbox keep the stored message's subject).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub to: String,
    pub subject: String,
    pub reply: Option<String>,
    pub headers: Option<Vec<u8>>,
    pub payload: Bytes,
}

impl Outgoing {
    /// An answer to a request: a plain message on the reply subject.
    pub fn reply(to: &str, payload: impl Into<Bytes>) -> Outgoing {
        Outgoing {
            to: to.to_string(),
            subject: to.to_string(),
            reply: None,
            headers: None,
            payload: payload.into(),
        }
    }
}
