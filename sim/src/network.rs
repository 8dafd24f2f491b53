//! The simulated network: byte streams between clients and nodes, with latency, and writes
//! split and coalesced at random points (as TCP may), resets and clean closes.
//!
//! Sans-IO like everything else: it owns the bytes in flight and tells the event loop when
//! each segment arrives ([`Event::Segment`]); the loop pops the segment and hands it to the
//! receiving state machine. A stream is FIFO: a segment never overtakes an earlier one of the
//! same direction. Node-to-node links (routes, Raft) will be added beside client streams,
//! with loss, duplication, reordering and partitions, which only make sense between nodes.

use std::collections::{BTreeMap, VecDeque};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::engine::{Event, Queue};
use crate::world::World;

/// The receiving end of one direction of a client stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    Client,
    Server,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// The connection request (to the server side only).
    Open,
    Data(Vec<u8>),
    /// The sender closed cleanly after everything before it.
    Fin,
}

#[derive(Debug, Default)]
struct Dir {
    queue: VecDeque<Segment>,
    last_at: u64,
}

#[derive(Debug)]
pub struct Stream {
    pub client: usize,
    pub node: usize,
    to_server: Dir,
    to_client: Dir,
}

impl Stream {
    fn dir(&mut self, to: Side) -> &mut Dir {
        match to {
            Side::Client => &mut self.to_client,
            Side::Server => &mut self.to_server,
        }
    }
}

pub struct Network {
    streams: BTreeMap<u64, Stream>,
    next_conn: u64,
    rng: ChaCha8Rng,
    latency_min: u64,
    latency_max: u64,
    split_prob: f64,
    coalesce_prob: f64,
}

impl Network {
    pub fn new(world: &World, rng: ChaCha8Rng) -> Self {
        Network {
            streams: BTreeMap::new(),
            next_conn: 1,
            rng,
            latency_min: world.latency_min.as_nanos() as u64,
            latency_max: world.latency_max.as_nanos() as u64,
            split_prob: world.split_prob,
            coalesce_prob: world.coalesce_prob,
        }
    }

    pub fn latency(&mut self) -> u64 {
        self.rng.random_range(self.latency_min..=self.latency_max)
    }

    /// Opens a stream from `client` to `node`; connection ids are never reused.
    pub fn connect(&mut self, now: u64, client: usize, node: usize, q: &mut Queue) -> u64 {
        let conn = self.next_conn;
        self.next_conn += 1;
        self.streams.insert(
            conn,
            Stream { client, node, to_server: Dir::default(), to_client: Dir::default() },
        );
        self.enqueue(now, conn, Side::Server, Segment::Open, q);
        conn
    }

    pub fn stream(&self, conn: u64) -> Option<&Stream> {
        self.streams.get(&conn)
    }

    pub fn streams_of_node(&self, node: usize) -> Vec<u64> {
        self.streams.iter().filter(|(_, s)| s.node == node).map(|(&c, _)| c).collect()
    }

    /// Writes `bytes` into the stream: maybe joined to the previous undelivered segment, maybe
    /// cut into pieces that arrive at different times.
    pub fn send(&mut self, now: u64, conn: u64, to: Side, bytes: Vec<u8>, q: &mut Queue) {
        if bytes.is_empty() || !self.streams.contains_key(&conn) {
            return;
        }
        if self.coalesce_prob > 0.0 && self.rng.random_bool(self.coalesce_prob) {
            if let Some(stream) = self.streams.get_mut(&conn) {
                if let Some(Segment::Data(last)) = stream.dir(to).queue.back_mut() {
                    last.extend_from_slice(&bytes);
                    return;
                }
            }
        }
        if bytes.len() > 1 && self.split_prob > 0.0 && self.rng.random_bool(self.split_prob) {
            let pieces = self.rng.random_range(2..=4usize).min(bytes.len());
            let mut cuts: Vec<usize> =
                (1..pieces).map(|_| self.rng.random_range(1..bytes.len())).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let mut start = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                self.enqueue(now, conn, to, Segment::Data(bytes[start..cut].to_vec()), q);
                start = cut;
            }
            return;
        }
        self.enqueue(now, conn, to, Segment::Data(bytes), q);
    }

    /// A clean close: arrives after the bytes already written.
    pub fn fin(&mut self, now: u64, conn: u64, to: Side, q: &mut Queue) {
        self.enqueue(now, conn, to, Segment::Fin, q);
    }

    /// Ends the stream at once, dropping what is in flight both ways. The far side hears of it
    /// after a latency (`Event::Reset`); the caller has dealt with the near side.
    pub fn reset(&mut self, now: u64, conn: u64, notify: Side, q: &mut Queue) {
        if let Some(stream) = self.streams.remove(&conn) {
            let at = now + self.latency();
            q.push(at, Event::Reset { conn, to: notify, client: stream.client, node: stream.node });
        }
    }

    /// Forgets a stream both sides are done with.
    pub fn remove(&mut self, conn: u64) {
        self.streams.remove(&conn);
    }

    /// The segment whose arrival event fired.
    pub fn pop(&mut self, conn: u64, to: Side) -> Option<Segment> {
        self.streams.get_mut(&conn)?.dir(to).queue.pop_front()
    }

    fn enqueue(&mut self, now: u64, conn: u64, to: Side, segment: Segment, q: &mut Queue) {
        let latency = self.latency();
        let Some(stream) = self.streams.get_mut(&conn) else { return };
        let dir = stream.dir(to);
        let at = (now + latency).max(dir.last_at);
        dir.last_at = at;
        dir.queue.push_back(segment);
        q.push(at, Event::Segment { conn, to });
    }
}
