//! Workload 1, core pub/sub: clients that subscribe (plain, wildcard, queue), unsubscribe (now
//! or after `max`), publish (with and without headers), request (with no-responders) and
//! answer requests, with echo on or off, speaking protocol bytes. Every op they send and every
//! frame they receive is reported to the [`PubSubChecker`].

use std::collections::BTreeMap;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::proto::{self, ServerOp};
use crate::checker::pubsub::{Delivery, PubSubChecker};
use crate::checker::Violation;
use crate::world::World;

/// Live subscriptions per connection, so fan-out (and the run's cost) stays bounded.
const MAX_SUBS: usize = 8;

#[derive(Debug)]
struct LocalSub {
    unsubscribed: bool,
}

/// One connection of a client.
#[derive(Debug)]
pub struct Session {
    pub conn: u64,
    pub got_info: bool,
    inbuf: Vec<u8>,
    echo: bool,
    headers: bool,
    no_responders: bool,
    verbose: bool,
    next_sid: u64,
    subs: BTreeMap<u64, LocalSub>,
    seq: u64,
    inbox: String,
    next_request: u64,
    pings_sent: u64,
    pongs: u64,
    /// Requests this connection answered: a responder answers each once, however many of its
    /// subscriptions the request reached.
    answered: rustc_hash::FxHashSet<u64>,
    final_ping: Option<u64>,
    /// The final PING barrier was answered.
    pub done: bool,
}

#[derive(Debug)]
pub struct SimClient {
    pub slot: usize,
    rng: ChaCha8Rng,
    responder: bool,
    payload_max: usize,
    pub session: Option<Session>,
    /// A `ClientConnect` event is scheduled.
    pub connect_pending: bool,
}

/// What a client's input left to do: bytes to write to its connection.
#[derive(Debug, Default)]
pub struct ClientOut {
    pub bytes: Vec<u8>,
}

impl SimClient {
    pub fn new(slot: usize, world: &World, mut rng: ChaCha8Rng) -> Self {
        let responder = rng.random_bool(world.responder_prob);
        SimClient {
            slot,
            rng,
            responder,
            payload_max: world.payload_max,
            session: None,
            connect_pending: false,
        }
    }

    /// A new connection was opened (not yet accepted): draw its options.
    pub fn start_session(&mut self, conn: u64, world: &World, checker: &mut PubSubChecker) {
        let headers = self.rng.random_bool(world.headers_prob);
        let session = Session {
            conn,
            got_info: false,
            inbuf: Vec::new(),
            echo: !self.rng.random_bool(world.echo_off_prob),
            headers,
            no_responders: headers && self.rng.random_bool(0.7),
            verbose: self.rng.random_bool(world.verbose_prob),
            next_sid: 1,
            subs: BTreeMap::new(),
            seq: 0,
            inbox: format!("_INBOX.{conn}"),
            next_request: 0,
            pings_sent: 0,
            pongs: 0,
            answered: Default::default(),
            final_ping: None,
            done: false,
        };
        checker.conn_opened(conn, self.slot, session.echo, session.headers);
        self.session = Some(session);
    }

    /// The connection ended, whoever ended it.
    pub fn end_session(&mut self, now: u64, checker: &mut PubSubChecker) -> Option<u64> {
        let s = self.session.take()?;
        checker.conn_ended(now, s.conn);
        Some(s.conn)
    }

    /// Bytes from the server.
    pub fn on_bytes(
        &mut self,
        now: u64,
        bytes: &[u8],
        safety: bool,
        checker: &mut PubSubChecker,
        out: &mut ClientOut,
    ) -> Result<(), Violation> {
        let Some(s) = self.session.as_mut() else { return Ok(()) };
        s.inbuf.extend_from_slice(bytes);
        let mut pos = 0;
        let mut replies = Vec::new();
        let mut first_info = false;
        loop {
            let parsed = proto::parse(&s.inbuf[pos..])
                .map_err(|e| Violation(format!("conn {}: client parser: {e}", s.conn)))?;
            let Some((op, used)) = parsed else { break };
            pos += used;
            match op {
                ServerOp::Info => {
                    if !s.got_info {
                        s.got_info = true;
                        first_info = true;
                    }
                }
                ServerOp::Ping => out.bytes.extend_from_slice(b"PONG\r\n"),
                ServerOp::Pong => {
                    s.pongs += 1;
                    checker.pong_received(now, s.conn)?;
                    if s.final_ping.is_some_and(|f| s.pongs >= f) {
                        s.done = true;
                    }
                }
                ServerOp::Ok => {}
                ServerOp::Err(text) => {
                    // The server may close a connection it finds stale; anything else means
                    // the server rejected bytes a correct client sent.
                    if !text.contains("Stale Connection")
                        && !text.contains("maximum connections exceeded")
                    {
                        return Err(Violation(format!("conn {}: server sent -ERR {text}", s.conn)));
                    }
                }
                ServerOp::Msg { subject, sid, reply, headers, payload } => {
                    let d = Delivery {
                        conn: s.conn,
                        subject: &subject,
                        sid: &sid,
                        reply: reply.as_deref(),
                        headers: headers.as_deref(),
                        payload: &payload,
                    };
                    let id = checker.delivered(now, d)?;
                    if let (Some(id), Some(reply)) = (id, reply) {
                        if self.responder
                            && safety
                            && reply.starts_with(b"_INBOX.")
                            && s.answered.insert(id)
                        {
                            replies.push((id, String::from_utf8_lossy(&reply).into_owned()));
                        }
                    }
                }
            }
        }
        s.inbuf.drain(..pos);
        if first_info {
            self.on_info(now, safety, checker, out);
        }
        for (request, reply) in replies {
            self.publish(now, &reply, None, Some(request), checker, out);
        }
        Ok(())
    }

    fn on_info(
        &mut self,
        now: u64,
        safety: bool,
        checker: &mut PubSubChecker,
        out: &mut ClientOut,
    ) {
        let Some(s) = self.session.as_mut() else { return };
        proto::connect(&mut out.bytes, s.verbose, s.echo, s.headers, s.no_responders);
        let inbox = format!("{}.*", s.inbox);
        self.subscribe(now, &inbox, None, checker, out);
        self.ping(now, false, checker, out);
        if !safety {
            self.final_ping(now, checker, out);
        }
    }

    /// A burst of operations.
    pub fn tick(
        &mut self,
        now: u64,
        world: &World,
        checker: &mut PubSubChecker,
        out: &mut ClientOut,
    ) {
        if !self.session.as_ref().is_some_and(|s| s.got_info) {
            return;
        }
        let n = self.rng.random_range(1..=world.burst_max);
        for _ in 0..n {
            let roll: f64 = self.rng.random();
            if roll < 0.45 {
                let subject = self.literal(world);
                let request = self.rng.random_bool(world.request_prob);
                if request {
                    self.request(now, &subject, checker, out);
                } else {
                    self.publish(now, &subject, None, None, checker, out);
                }
            } else if roll < 0.62 && self.live_subs() < MAX_SUBS {
                let subject = if self.rng.random_bool(world.wildcard_prob) {
                    self.pattern(world)
                } else {
                    self.literal(world)
                };
                let queue = self
                    .rng
                    .random_bool(world.queue_prob)
                    .then(|| format!("q{}", self.rng.random_range(0..3)));
                self.subscribe(now, &subject, queue.as_deref(), checker, out);
            } else if roll < 0.72 || self.live_subs() >= MAX_SUBS {
                self.unsubscribe(now, world, checker, out);
            } else {
                self.ping(now, false, checker, out);
            }
        }
        if self.rng.random_bool(0.5) {
            self.ping(now, false, checker, out);
        }
    }

    fn live_subs(&self) -> usize {
        self.session.as_ref().map_or(0, |s| s.subs.values().filter(|l| !l.unsubscribed).count())
    }

    /// The end-of-run barrier.
    pub fn final_ping(&mut self, now: u64, checker: &mut PubSubChecker, out: &mut ClientOut) {
        let Some(s) = self.session.as_mut() else { return };
        if !s.got_info || s.final_ping.is_some() {
            return;
        }
        self.ping(now, true, checker, out);
    }

    fn ping(&mut self, now: u64, last: bool, checker: &mut PubSubChecker, out: &mut ClientOut) {
        let Some(s) = self.session.as_mut() else { return };
        s.pings_sent += 1;
        if last {
            s.final_ping = Some(s.pings_sent);
        }
        out.bytes.extend_from_slice(b"PING\r\n");
        checker.ping_sent(now, s.conn, last);
    }

    fn literal(&mut self, world: &World) -> String {
        let w = world.subject_width;
        format!("s.{}.{}", self.rng.random_range(0..w), self.rng.random_range(0..w))
    }

    fn pattern(&mut self, world: &World) -> String {
        let w = world.subject_width;
        let a = self.rng.random_range(0..w);
        let b = self.rng.random_range(0..w);
        match self.rng.random_range(0..6) {
            0 => format!("s.*.{b}"),
            1 => format!("s.{a}.*"),
            2 => "s.*.*".to_string(),
            3 => "s.>".to_string(),
            4 => format!("s.{a}.>"),
            _ => ">".to_string(),
        }
    }

    fn subscribe(
        &mut self,
        now: u64,
        subject: &str,
        queue: Option<&str>,
        checker: &mut PubSubChecker,
        out: &mut ClientOut,
    ) {
        let Some(s) = self.session.as_mut() else { return };
        let sid = s.next_sid;
        s.next_sid += 1;
        proto::sub(&mut out.bytes, subject, queue, sid);
        s.subs.insert(sid, LocalSub { unsubscribed: false });
        checker.sub_sent(now, s.conn, sid, subject, queue);
    }

    fn unsubscribe(
        &mut self,
        now: u64,
        world: &World,
        checker: &mut PubSubChecker,
        out: &mut ClientOut,
    ) {
        let Some(s) = self.session.as_mut() else { return };
        // Never the inbox (sid 1): requests need it for the whole connection.
        let live: Vec<u64> = s
            .subs
            .iter()
            .filter(|(&sid, l)| sid != 1 && !l.unsubscribed)
            .map(|(&sid, _)| sid)
            .collect();
        if live.is_empty() {
            return;
        }
        let sid = live[self.rng.random_range(0..live.len())];
        let max =
            self.rng.random_bool(world.unsub_max_prob).then(|| self.rng.random_range(1..=5u64));
        proto::unsub(&mut out.bytes, sid, max);
        if let Some(l) = s.subs.get_mut(&sid) {
            l.unsubscribed = true;
        }
        checker.unsub_sent(now, s.conn, sid, max);
    }

    fn request(
        &mut self,
        now: u64,
        subject: &str,
        checker: &mut PubSubChecker,
        out: &mut ClientOut,
    ) {
        let Some(s) = self.session.as_mut() else { return };
        s.next_request += 1;
        let reply = format!("{}.{}", s.inbox, s.next_request);
        self.publish(now, subject, Some(&reply), None, checker, out);
    }

    fn publish(
        &mut self,
        now: u64,
        subject: &str,
        reply: Option<&str>,
        answering: Option<u64>,
        checker: &mut PubSubChecker,
        out: &mut ClientOut,
    ) {
        let Some(s) = self.session.as_mut() else { return };
        let with_headers = s.headers && self.rng.random_bool(0.3);
        s.seq += 1;
        let id = checker.pub_sent(now, s.conn, s.seq, subject, reply, with_headers);
        let mut payload = id.to_string().into_bytes();
        if let Some(request) = answering {
            payload.extend_from_slice(format!(" re {request}").as_bytes());
        }
        let filler = payload_filler(&mut self.rng, self.payload_max);
        payload.extend(std::iter::repeat_n(b'x', filler));
        let headers = with_headers.then(|| format!("NATS/1.0\r\nId: {id}\r\n\r\n").into_bytes());
        proto::publish(&mut out.bytes, subject, reply, headers.as_deref(), &payload);
    }
}

fn payload_filler(rng: &mut ChaCha8Rng, max: usize) -> usize {
    // Mostly small, sometimes up to the world's maximum (slow-consumer pressure).
    if max == 0 {
        0
    } else if rng.random_bool(0.1) {
        rng.random_range(0..=max)
    } else {
        rng.random_range(0..=max.min(16))
    }
}
