//! The core pub/sub checker.
//!
//! # What "surely subscribed" means
//!
//! Clients are the only witnesses; the checker knows when each client sent each op and when
//! it received each frame, in simulated time (global: there is one server, so a PUB sent after
//! time t is processed by it after t). A client's PONGs answer its PINGs in order, and the
//! server handles a connection's ops in order, so the k-th PONG proves every op sent before
//! the k-th PING was processed. Call that moment the op's *acknowledgement*.
//!
//! For a subscription `s` (SUB sent at `sub_sent`, acknowledged at `sub_ack`, UNSUB, with or
//! without max, sent at `unsub_sent`, acknowledged at `unsub_ack`) and a message `m` (PUB
//! sent at `pub_sent`, acknowledged at `pub_ack`), with `m`'s subject matching `s` and echo
//! allowed (another connection, or the publisher's CONNECT had echo on):
//!
//! - **must**: if `sub_ack < pub_sent` and `pub_ack < unsub_sent` (or no UNSUB), and `s`'s
//!   connection is still open at the end of the run and its final PING barrier was sent after
//!   `pub_ack`, then `s` received `m` exactly once. (A plain `s`; for queue groups see below.)
//! - **may**: otherwise `s` may receive `m` at most once, and never if `pub_ack < sub_sent`
//!   (published before the SUB existed) or, for an UNSUB without max, `unsub_ack < pub_sent`
//!   (published after the UNSUB was done).
//! - **never**: a message whose subject does not match `s`'s subject, to an unknown sid, with
//!   another subject or reply than published, back to a no-echo publisher, more than `max`
//!   after an `UNSUB max`, with headers to a client that did not ask for them, or out of its
//!   publisher's order (per subscription, per publishing connection, sequence numbers rise).
//! - **queue groups**: each message reaches each queue group (by name) at most once. It
//!   reaches it at least once if some member is a "must" for it, unless some member that
//!   matches, subscribed before `pub_ack`, was on a connection that ended (at any time: the
//!   server learns of a close later than the client, so the message may have gone there and
//!   been lost with the connection).
//! - **no responders**: a 503 status for a request means the request reached nobody: a 503
//!   for a request delivered anywhere, or a delivery of a request that got a 503, fails.
//!
//! A connection that ends (dropped, reset, slow consumer, crash) excuses what it did not
//! receive, never what it received.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use fjord_core::subject;
use rustc_hash::FxHashMap;

use super::Violation;

type Time = u64;

#[derive(Debug)]
struct ConnRec {
    client: usize,
    echo: bool,
    headers: bool,
    ended: Option<Time>,
    pings_sent: u64,
    pongs: u64,
    /// Ops waiting for their acknowledgement: (pings sent before the op, what).
    unacked: VecDeque<(u64, Pending)>,
    final_ping_sent: Option<Time>,
}

#[derive(Clone, Copy, Debug)]
enum Pending {
    Sub(u64),
    Unsub(u64),
    Pub(u64),
}

#[derive(Debug)]
struct SubRec {
    subject: Vec<u8>,
    queue: Option<Vec<u8>>,
    sent: Time,
    ack: Option<Time>,
    unsub_sent: Option<Time>,
    unsub_ack: Option<Time>,
    max: Option<u64>,
    received: u64,
    /// Deliveries received when the UNSUB was acknowledged: every delivery the server made
    /// before it handled the UNSUB precedes that PONG on the stream.
    received_at_unsub_ack: Option<u64>,
    got: rustc_hash::FxHashSet<u64>,
    last_seq: FxHashMap<u64, u64>,
}

#[derive(Debug)]
struct MsgRec {
    conn: u64,
    seq: u64,
    subject: Vec<u8>,
    reply: Option<Vec<u8>>,
    headers: bool,
    sent: Time,
    ack: Option<Time>,
    deliveries: u64,
    queues: BTreeSet<Vec<u8>>,
    no_responders: bool,
}

#[derive(Debug, Default)]
pub struct PubSubChecker {
    conns: BTreeMap<u64, ConnRec>,
    subs: BTreeMap<(u64, u64), SubRec>,
    msgs: Vec<MsgRec>,
    requests: FxHashMap<Vec<u8>, u64>,
    pub stats: Stats,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub published: u64,
    pub delivered: u64,
    pub must_checked: u64,
    pub no_responders: u64,
    pub conns: u64,
}

/// Where a delivered frame says it comes from.
pub struct Delivery<'a> {
    pub conn: u64,
    pub subject: &'a [u8],
    pub sid: &'a [u8],
    pub reply: Option<&'a [u8]>,
    pub headers: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

fn fail<T>(text: String) -> Result<T, Violation> {
    Err(Violation(text))
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl PubSubChecker {
    pub fn conn_opened(&mut self, conn: u64, client: usize, echo: bool, headers: bool) {
        self.stats.conns += 1;
        self.conns.insert(
            conn,
            ConnRec {
                client,
                echo,
                headers,
                ended: None,
                pings_sent: 0,
                pongs: 0,
                unacked: VecDeque::new(),
                final_ping_sent: None,
            },
        );
    }

    pub fn conn_ended(&mut self, now: Time, conn: u64) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.ended.get_or_insert(now);
        }
    }

    pub fn sub_sent(&mut self, now: Time, conn: u64, sid: u64, subject: &str, queue: Option<&str>) {
        self.subs.insert(
            (conn, sid),
            SubRec {
                subject: subject.as_bytes().to_vec(),
                queue: queue.map(|q| q.as_bytes().to_vec()),
                sent: now,
                ack: None,
                unsub_sent: None,
                unsub_ack: None,
                max: None,
                received: 0,
                received_at_unsub_ack: None,
                got: Default::default(),
                last_seq: FxHashMap::default(),
            },
        );
        self.pending(conn, Pending::Sub(sid));
    }

    pub fn unsub_sent(&mut self, now: Time, conn: u64, sid: u64, max: Option<u64>) {
        if let Some(sub) = self.subs.get_mut(&(conn, sid)) {
            // Clients send one UNSUB per sid: its max (if any) bounds all deliveries ever.
            if sub.unsub_sent.is_none() {
                sub.unsub_sent = Some(now);
                sub.max = max;
            }
        }
        self.pending(conn, Pending::Unsub(sid));
    }

    /// Records a PUB; returns the message id to carry in its payload.
    pub fn pub_sent(
        &mut self,
        now: Time,
        conn: u64,
        seq: u64,
        subject: &str,
        reply: Option<&str>,
        headers: bool,
    ) -> u64 {
        let id = self.msgs.len() as u64;
        self.msgs.push(MsgRec {
            conn,
            seq,
            subject: subject.as_bytes().to_vec(),
            reply: reply.map(|r| r.as_bytes().to_vec()),
            headers,
            sent: now,
            ack: None,
            deliveries: 0,
            queues: BTreeSet::new(),
            no_responders: false,
        });
        if let Some(r) = reply {
            self.requests.insert(r.as_bytes().to_vec(), id);
        }
        self.stats.published += 1;
        self.pending(conn, Pending::Pub(id));
        id
    }

    pub fn ping_sent(&mut self, now: Time, conn: u64, last: bool) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.pings_sent += 1;
            if last {
                c.final_ping_sent.get_or_insert(now);
            }
        }
    }

    pub fn pong_received(&mut self, now: Time, conn: u64) -> Result<(), Violation> {
        let Some(c) = self.conns.get_mut(&conn) else { return Ok(()) };
        c.pongs += 1;
        if c.pongs > c.pings_sent {
            return fail(format!("conn {conn}: PONG #{} without a PING", c.pongs));
        }
        while let Some(&(before, what)) = c.unacked.front() {
            if before >= c.pongs {
                break;
            }
            c.unacked.pop_front();
            match what {
                Pending::Sub(sid) => {
                    if let Some(sub) = self.subs.get_mut(&(conn, sid)) {
                        sub.ack.get_or_insert(now);
                    }
                }
                Pending::Unsub(sid) => {
                    if let Some(sub) = self.subs.get_mut(&(conn, sid)) {
                        sub.unsub_ack.get_or_insert(now);
                        sub.received_at_unsub_ack.get_or_insert(sub.received);
                    }
                }
                Pending::Pub(id) => {
                    if let Some(m) = self.msgs.get_mut(id as usize) {
                        m.ack.get_or_insert(now);
                    }
                }
            }
        }
        Ok(())
    }

    fn pending(&mut self, conn: u64, what: Pending) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.unacked.push_back((c.pings_sent, what));
        }
    }

    /// Parses the message id a payload starts with.
    pub fn payload_id(payload: &[u8]) -> Option<u64> {
        let digits = payload.iter().take_while(|b| b.is_ascii_digit()).count();
        std::str::from_utf8(&payload[..digits]).ok()?.parse().ok()
    }

    /// A frame arrived at a client. Returns the message id, if it is a message (not a 503).
    pub fn delivered(&mut self, now: Time, d: Delivery<'_>) -> Result<Option<u64>, Violation> {
        let conn = d.conn;
        let Some(c) = self.conns.get(&conn) else {
            return fail(format!("delivery on unknown conn {conn}"));
        };
        let (client, echo, takes_headers) = (c.client, c.echo, c.headers);
        if d.headers.is_some() && !takes_headers {
            return fail(format!(
                "client {client} conn {conn}: HMSG on {} to a client without headers support",
                s(d.subject)
            ));
        }
        let Some(sid) = std::str::from_utf8(d.sid).ok().and_then(|t| t.parse::<u64>().ok()) else {
            return fail(format!("conn {conn}: delivery with a sid we never used: {}", s(d.sid)));
        };
        let Some(sub) = self.subs.get_mut(&(conn, sid)) else {
            return fail(format!("client {client} conn {conn}: delivery to unknown sid {sid}"));
        };
        if !subject::matches(&sub.subject, d.subject) {
            return fail(format!(
                "client {client} conn {conn} sid {sid}: message on {} does not match the subscription {}",
                s(d.subject),
                s(&sub.subject)
            ));
        }
        if let Some(h) = d.headers {
            if h.starts_with(b"NATS/1.0 503") {
                let id = self.requests.get(d.subject).copied();
                let Some(id) = id else {
                    return fail(format!(
                        "conn {conn}: 503 for {} which is no request",
                        s(d.subject)
                    ));
                };
                let m = &mut self.msgs[id as usize];
                if m.conn != conn {
                    return fail(format!("conn {conn}: 503 for another connection's request {id}"));
                }
                if m.deliveries > 0 {
                    return fail(format!(
                        "conn {conn}: 503 no responders for request {id} on {} that was delivered {} times",
                        s(&m.subject),
                        m.deliveries
                    ));
                }
                m.no_responders = true;
                self.stats.no_responders += 1;
                return Ok(None);
            }
        }
        let Some(id) = Self::payload_id(d.payload) else {
            return fail(format!("conn {conn} sid {sid}: payload without a message id"));
        };
        let Some(m) = self.msgs.get_mut(id as usize) else {
            return fail(format!("conn {conn} sid {sid}: message {id} was never published"));
        };
        let who = format!("client {client} conn {conn} sid {sid} ({})", s(&sub.subject));
        if m.subject != d.subject {
            return fail(format!(
                "{who}: message {id} published on {} arrived on {}",
                s(&m.subject),
                s(d.subject)
            ));
        }
        if m.reply.as_deref() != d.reply {
            return fail(format!("{who}: message {id} arrived with another reply subject"));
        }
        if takes_headers && m.headers != d.headers.is_some() {
            return fail(format!(
                "{who}: message {id} headers published={} delivered={}",
                m.headers,
                d.headers.is_some()
            ));
        }
        if m.conn == conn && !echo {
            return fail(format!("{who}: message {id} echoed to its no-echo publisher"));
        }
        if !sub.got.insert(id) {
            return fail(format!("{who}: message {id} delivered twice"));
        }
        if let Some(&last) = sub.last_seq.get(&m.conn) {
            if m.seq <= last {
                return fail(format!(
                    "{who}: message {id} (seq {} of conn {}) after seq {last}: out of publisher order",
                    m.seq, m.conn
                ));
            }
        }
        sub.last_seq.insert(m.conn, m.seq);
        sub.received += 1;
        // After the UNSUB was handled: nothing more (UNSUB), or up to `max` in all (UNSUB max;
        // deliveries made before it was handled may already exceed max).
        if let Some(at_ack) = sub.received_at_unsub_ack {
            let bound = sub.max.map_or(at_ack, |max| max.max(at_ack));
            if sub.received > bound {
                return fail(format!(
                    "{who}: message {id} is delivery {} after the UNSUB{} was handled with {at_ack} received",
                    sub.received,
                    sub.max.map(|m| format!(" max {m}")).unwrap_or_default()
                ));
            }
        }
        if m.ack.is_some_and(|a| a < sub.sent) {
            return fail(format!(
                "{who}: message {id} was published (acknowledged) before the SUB was sent"
            ));
        }
        if sub.max.is_none() && sub.unsub_ack.is_some_and(|u| u < m.sent) {
            return fail(format!("{who}: message {id} published after the UNSUB was acknowledged"));
        }
        if let Some(q) = &sub.queue {
            if !m.queues.insert(q.clone()) {
                return fail(format!(
                    "{who}: message {id} delivered twice to queue group {}",
                    s(q)
                ));
            }
        }
        if m.no_responders {
            return fail(format!("{who}: request {id} delivered after its 503 no responders"));
        }
        m.deliveries += 1;
        self.stats.delivered += 1;
        let _ = now;
        Ok(Some(id))
    }

    /// The end-of-run check, after every open connection's final PING barrier.
    ///
    /// Walks each subscription's window of messages (ids rise with send time), not every pair,
    /// so the cost is the sum of the windows.
    pub fn finish(&mut self) -> Result<(), Violation> {
        let mut queue_needed: BTreeSet<(u64, Vec<u8>)> = BTreeSet::new();
        for (&(conn, sid), sub) in &self.subs {
            let Some(c) = self.conns.get(&conn) else { continue };
            let (Some(final_ping), Some(sub_ack), None) = (c.final_ping_sent, sub.ack, c.ended)
            else {
                continue;
            };
            let first = self.msgs.partition_point(|m| m.sent <= sub_ack);
            for (offset, m) in self.msgs[first..].iter().enumerate() {
                let id = (first + offset) as u64;
                if sub.unsub_sent.is_some_and(|u| m.sent >= u) || m.sent >= final_ping {
                    break;
                }
                let Some(pub_ack) = m.ack else { continue };
                let publisher_echo = self.conns.get(&m.conn).is_some_and(|p| p.echo);
                let must = pub_ack < final_ping
                    && sub.unsub_sent.is_none_or(|u| pub_ack < u)
                    && (publisher_echo || conn != m.conn)
                    && subject::matches(&sub.subject, &m.subject);
                if !must {
                    continue;
                }
                self.stats.must_checked += 1;
                if let Some(q) = &sub.queue {
                    if !m.queues.contains(q) {
                        queue_needed.insert((id, q.clone()));
                    }
                } else if !sub.got.contains(&id) {
                    return fail(format!(
                        "client {} conn {conn} sid {sid} ({}) never received message {id} on {} from conn {} (published at {}, acknowledged at {pub_ack}; SUB acknowledged at {sub_ack})",
                        c.client,
                        s(&sub.subject),
                        s(&m.subject),
                        m.conn,
                        m.sent,
                    ));
                }
            }
        }
        for (id, q) in queue_needed {
            let m = &self.msgs[id as usize];
            let pub_ack = m.ack.unwrap_or(u64::MAX);
            // The server hears of a closed connection only later than its client, so a member
            // whose connection ended (whenever) may have been picked and lost the message.
            let excused = self.subs.iter().any(|(&(conn, _), sub)| {
                sub.queue.as_ref() == Some(&q)
                    && sub.sent <= pub_ack
                    && self.conns.get(&conn).is_some_and(|c| c.ended.is_some())
                    && subject::matches(&sub.subject, &m.subject)
            });
            if !excused {
                return fail(format!(
                    "queue group {} never received message {id} on {} from conn {} (acknowledged at {pub_ack})",
                    s(&q),
                    s(&m.subject),
                    m.conn
                ));
            }
        }
        Ok(())
    }
}
