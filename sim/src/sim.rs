//! One run of one world: the discrete-event loop that connects nodes, network and clients.
//!
//! Each event goes to one state machine (a node's server, a client, the network, the fault
//! injector); what it outputs becomes future events through the network. Time jumps from
//! event to event. Every event is folded into a digest (FNV-1a over its time, kind, fields
//! and bytes), so two runs of a seed can be compared event by event.
//!
//! Process faults: a node crashes (every connection reset, all state lost) and restarts, or
//! pauses: it handles nothing (bytes wait in its socket buffers, its timers fire late) and
//! then carries on with its memory intact, typically finding its clients' PONGs overdue.
//!
//! Phases: the safety phase (faults and workload on) lasts `world.safety`; then faults and
//! new operations stop, a crashed node restarts, every client must reconnect and pass a final
//! PING barrier within `world.liveness_bound`, and the end-of-run checks run.

use std::time::Duration;

use fjord_core::server::ServerOutput;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::checker::pubsub::{PubSubChecker, Stats};
use crate::checker::Violation;
use crate::clock::NodeClock;
use crate::engine::{Event, Queue, SimTime};
use crate::network::{Network, Segment, Side};
use crate::node::{self, Node};
use crate::rng::{self, Fnv64};
use crate::workload::proto::show;
use crate::workload::pubsub::{ClientOut, SimClient};
use crate::world::{Canary, World};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Safety,
    Liveness,
    Done,
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub seed: u64,
    pub digest: u64,
    pub events: u64,
    /// Simulated nanoseconds the run covered.
    pub sim_nanos: u64,
    pub failure: Option<String>,
    pub stats: Stats,
    pub crashes: u64,
    pub drops: u64,
    /// Whether a history check ran out of search budget without a verdict (the Raft
    /// workload's key-value linearizability check): not a failure, not a pass either.
    pub undecided: bool,
}

pub struct Sim {
    world: World,
    now: u64,
    q: Queue,
    net: Network,
    nodes: Vec<Node>,
    clients: Vec<SimClient>,
    checker: PubSubChecker,
    faults: ChaCha8Rng,
    /// Process pauses: their own stream, so the other faults keep their draws.
    pauses: ChaCha8Rng,
    phase: Phase,
    digest: Fnv64,
    events: u64,
    trace: bool,
    failure: Option<String>,
    outputs: Vec<ServerOutput>,
    crashes: u64,
    drops: u64,
    paused: u64,
}

impl Sim {
    pub fn new(world: World, trace: bool) -> Self {
        let seed = world.seed;
        let nodes = (0..world.nodes)
            .map(|i| {
                let mut clock_rng = rng::stream(seed, "clock", i as u64);
                let origin = clock_rng.random_range(0..1u64 << 40);
                let drift = world.drift_ppm.get(i).copied().unwrap_or(0);
                Node::new(i, &world, NodeClock::new(drift, origin))
            })
            .collect();
        let clients = (0..world.clients)
            .map(|i| SimClient::new(i, &world, rng::stream(seed, "workload", i as u64)))
            .collect();
        Sim {
            net: Network::new(&world, rng::stream(seed, "network", 0)),
            faults: rng::stream(seed, "faults", 0),
            pauses: rng::stream(seed, "pause", 0),
            world,
            now: 0,
            q: Queue::default(),
            nodes,
            clients,
            checker: PubSubChecker::default(),
            phase: Phase::Safety,
            digest: Fnv64::default(),
            events: 0,
            trace,
            failure: None,
            outputs: Vec::new(),
            crashes: 0,
            drops: 0,
            paused: 0,
        }
    }

    fn after(&mut self, d: Duration) -> u64 {
        self.now + d.as_nanos() as u64
    }

    /// An exponential gap with the given rate per simulated second.
    fn exp_gap(rng: &mut ChaCha8Rng, rate: f64) -> u64 {
        let u: f64 = rng.random_range(f64::EPSILON..1.0);
        (-u.ln() / rate * 1e9) as u64
    }

    pub fn run(mut self) -> Outcome {
        for node in &mut self.nodes {
            node.start();
        }
        for c in 0..self.clients.len() {
            let at = self.faults.random_range(0..100_000_000u64);
            self.clients[c].connect_pending = true;
            self.q.push(at, Event::ClientConnect { client: c });
            let gap = self.tick_gap();
            self.q.push(at + gap, Event::ClientTick { client: c });
            if self.world.drop_rate > 0.0 {
                let gap = Self::exp_gap(&mut self.faults, self.world.drop_rate);
                self.q.push(gap, Event::ClientDrop { client: c });
            }
        }
        if self.world.crash_rate > 0.0 {
            for n in 0..self.nodes.len() {
                let gap = Self::exp_gap(&mut self.faults, self.world.crash_rate);
                self.q.push(gap, Event::NodeCrash { node: n });
            }
        }
        if self.world.pause_rate > 0.0 {
            for n in 0..self.nodes.len() {
                let gap = Self::exp_gap(&mut self.pauses, self.world.pause_rate);
                self.q.push(gap, Event::NodePause { node: n });
            }
        }
        let safety = self.world.safety.as_nanos() as u64;
        self.q.push(safety, Event::Quiesce);
        self.q.push(safety + self.world.liveness_bound.as_nanos() as u64, Event::Deadline);

        while self.phase != Phase::Done && self.failure.is_none() {
            let Some((at, seq, event)) = self.q.pop() else { break };
            self.now = at;
            self.events += 1;
            self.digest.write_u64(at);
            self.digest.write_u64(seq);
            self.digest.write(&[event.tag()]);
            if self.trace {
                println!("{} {}", SimTime(at), self.describe(&event));
            }
            self.handle(event);
        }
        if self.failure.is_none() && self.phase != Phase::Done {
            self.failure = Some("the event queue ran dry before the run ended".into());
        }
        if self.trace {
            println!(
                "pubsub: node crashes {} pauses {} client drops {}",
                self.crashes, self.paused, self.drops
            );
        }
        Outcome {
            seed: self.world.seed,
            digest: self.digest.finish(),
            events: self.events,
            sim_nanos: self.now,
            failure: self
                .failure
                .map(|f| format!("at {}: {f}", SimTime(self.now).to_string().trim())),
            stats: self.checker.stats,
            crashes: self.crashes,
            drops: self.drops,
            undecided: false,
        }
    }

    fn describe(&self, event: &Event) -> String {
        match event {
            Event::Segment { conn, to } => {
                let who = self
                    .net
                    .stream(*conn)
                    .map(|s| format!("node{} client{}", s.node, s.client))
                    .unwrap_or_else(|| "closed".into());
                let dir = match to {
                    Side::Server => "client->server",
                    Side::Client => "server->client",
                };
                format!("conn{conn} [{who}] {dir} segment")
            }
            other => format!("{other:?}"),
        }
    }

    fn tick_gap(&mut self) -> u64 {
        let mean = self.world.op_gap.as_secs_f64().max(1e-6);
        Self::exp_gap(&mut self.faults, 1.0 / mean)
    }

    fn fail(&mut self, v: Violation) {
        if self.failure.is_none() {
            self.failure = Some(v.0);
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Segment { conn, to } => self.segment(conn, to),
            Event::Reset { conn, to, client, node } => {
                if let (Side::Server, Some(until)) = (to, self.nodes[node].paused_until) {
                    // A stopped process sees the reset when it resumes.
                    self.q.push(until, Event::Reset { conn, to, client, node });
                    return;
                }
                self.digest.write_u64(conn);
                match to {
                    Side::Server => {
                        let now = self.nodes[node].local(self.now);
                        if let Some(server) = self.nodes[node].server() {
                            server.client_closed(now, conn);
                        }
                        self.after_node_input(node);
                    }
                    Side::Client => {
                        if self.clients[client].session.as_ref().is_some_and(|s| s.conn == conn) {
                            self.lose_session(client);
                        }
                    }
                }
            }
            Event::NodeTimer { node, incarnation } => {
                let n = &mut self.nodes[node];
                if n.incarnation != incarnation
                    || n.armed != Some(self.now)
                    || n.paused_until.is_some()
                {
                    // A paused node's timer fires when it resumes (late).
                    return;
                }
                n.armed = None;
                let now = n.local(self.now);
                if let Some(server) = n.server() {
                    server.handle_timeout(now);
                }
                self.after_node_input(node);
            }
            Event::NodeCrash { node } => {
                if self.phase != Phase::Safety || !self.nodes[node].is_up() {
                    return;
                }
                self.crashes += 1;
                for conn in self.net.streams_of_node(node) {
                    self.net.reset(self.now, conn, Side::Client, &mut self.q);
                }
                self.nodes[node].crash();
                let delay = node::restart_delay(&self.world, &mut self.faults);
                let at = self.after(delay);
                self.q.push(at, Event::NodeRestart { node });
                let gap = Self::exp_gap(&mut self.faults, self.world.crash_rate);
                self.q.push(self.now + gap, Event::NodeCrash { node });
            }
            Event::NodeRestart { node } => {
                if !self.nodes[node].is_up() {
                    self.nodes[node].start();
                    self.after_node_input(node);
                }
            }
            Event::ClientTick { client } => {
                if self.phase != Phase::Safety {
                    return;
                }
                let mut out = ClientOut::default();
                let c = &mut self.clients[client];
                c.tick(self.now, &self.world, &mut self.checker, &mut out);
                self.client_write(client, out);
                let gap = self.tick_gap();
                self.q.push(self.now + gap, Event::ClientTick { client });
            }
            Event::ClientConnect { client } => {
                self.digest.write_u64(client as u64);
                let c = &mut self.clients[client];
                c.connect_pending = false;
                if c.session.is_some() {
                    return;
                }
                let conn = self.net.connect(self.now, client, 0, &mut self.q);
                c.start_session(conn, &self.world, &mut self.checker);
            }
            Event::ClientDrop { client } => {
                if self.phase != Phase::Safety {
                    return;
                }
                if let Some(conn) = self.clients[client].session.as_ref().map(|s| s.conn) {
                    self.drops += 1;
                    if self.faults.random_bool(self.world.reset_share) {
                        self.net.reset(self.now, conn, Side::Server, &mut self.q);
                    } else {
                        self.net.fin(self.now, conn, Side::Server, &mut self.q);
                    }
                    self.lose_session(client);
                }
                let gap = Self::exp_gap(&mut self.faults, self.world.drop_rate);
                self.q.push(self.now + gap, Event::ClientDrop { client });
            }
            Event::NodePause { node } => {
                if self.phase != Phase::Safety {
                    return;
                }
                let n = &mut self.nodes[node];
                if n.is_up() && n.paused_until.is_none() {
                    let length =
                        self.pauses.random_range(1..=self.world.pause_max.as_nanos() as u64);
                    if self.world.canary == Canary::PauseForever {
                        n.paused_until = Some(u64::MAX);
                    } else {
                        n.paused_until = Some(self.now + length);
                        let incarnation = n.incarnation;
                        self.q.push(self.now + length, Event::NodeResume { node, incarnation });
                    }
                    self.paused += 1;
                }
                let gap = Self::exp_gap(&mut self.pauses, self.world.pause_rate);
                self.q.push(self.now + gap, Event::NodePause { node });
            }
            Event::NodeResume { node, incarnation } => {
                let n = &self.nodes[node];
                if n.incarnation == incarnation && n.paused_until.is_some() {
                    self.resume(node);
                }
            }
            Event::Quiesce => {
                self.phase = Phase::Liveness;
                for node in 0..self.nodes.len() {
                    if self.nodes[node].paused_until.is_some()
                        && self.world.canary != Canary::PauseForever
                    {
                        self.resume(node);
                    }
                    if !self.nodes[node].is_up() {
                        self.nodes[node].start();
                        self.after_node_input(node);
                    }
                }
                for client in 0..self.clients.len() {
                    let mut out = ClientOut::default();
                    self.clients[client].final_ping(self.now, &mut self.checker, &mut out);
                    self.client_write(client, out);
                }
                self.check_done();
            }
            Event::Deadline => {
                let stuck: Vec<String> = self
                    .clients
                    .iter()
                    .filter(|c| !c.session.as_ref().is_some_and(|s| s.done))
                    .map(|c| format!("client{}", c.slot))
                    .collect();
                self.fail(Violation(format!(
                    "liveness: {} did not reconnect and pass a PING barrier within {:?} after faults stopped",
                    stuck.join(","),
                    self.world.liveness_bound
                )));
            }
        }
    }

    fn segment(&mut self, conn: u64, to: Side) {
        let Some(stream) = self.net.stream(conn) else {
            self.digest.write_u64(conn);
            return;
        };
        let (client, node) = (stream.client, stream.node);
        if to == Side::Server && self.nodes[node].is_up() {
            if let Some(until) = self.nodes[node].paused_until {
                // The bytes wait in the stopped process's socket buffer until it resumes; the
                // stream stays FIFO since each event takes the front segment.
                self.q.push(until, Event::Segment { conn, to });
                return;
            }
        }
        self.digest.write_u64(conn);
        let Some(segment) = self.net.pop(conn, to) else { return };
        match &segment {
            Segment::Data(bytes) => {
                self.digest.write(bytes);
                if self.trace {
                    println!("               {}", show(bytes));
                }
            }
            Segment::Open | Segment::Fin if self.trace => {
                println!(
                    "               ({})",
                    if segment == Segment::Open { "open" } else { "fin" }
                );
            }
            _ => {}
        }
        match to {
            Side::Server => {
                let now = self.nodes[node].local(self.now);
                let Some(server) = self.nodes[node].server() else {
                    // Nobody listens: refuse (or drop what a dead node's stream still carried).
                    self.net.reset(self.now, conn, Side::Client, &mut self.q);
                    return;
                };
                match segment {
                    Segment::Open => server.accept(now, conn, &format!("10.0.0.{}", client + 1)),
                    Segment::Data(bytes) => server.handle_bytes(now, conn, &bytes),
                    Segment::Fin => {
                        server.client_closed(now, conn);
                        self.net.remove(conn);
                    }
                }
                self.after_node_input(node);
            }
            Side::Client => {
                let current = self.clients[client].session.as_ref().is_some_and(|s| s.conn == conn);
                match segment {
                    Segment::Data(bytes) => {
                        let now = self.nodes[node].local(self.now);
                        if self.nodes[node].paused_until.is_some() {
                            self.nodes[node].written_while_paused.push((conn, bytes.len()));
                        } else if let Some(server) = self.nodes[node].server() {
                            server.handle_written(now, conn, bytes.len());
                        }
                        if !current {
                            return;
                        }
                        let mut out = ClientOut::default();
                        let safety = self.phase == Phase::Safety;
                        let r = self.clients[client].on_bytes(
                            self.now,
                            &bytes,
                            safety,
                            &mut self.checker,
                            &mut out,
                        );
                        if let Err(v) = r {
                            self.fail(v);
                            return;
                        }
                        self.client_write(client, out);
                        self.check_done();
                    }
                    Segment::Fin => {
                        self.net.remove(conn);
                        if current {
                            self.lose_session(client);
                        }
                    }
                    Segment::Open => {}
                }
            }
        }
    }

    fn client_write(&mut self, client: usize, out: ClientOut) {
        if out.bytes.is_empty() {
            return;
        }
        if let Some(conn) = self.clients[client].session.as_ref().map(|s| s.conn) {
            self.net.send(self.now, conn, Side::Server, out.bytes, &mut self.q);
        }
    }

    /// The pause ends: what the network carried off meanwhile is reported, the overdue timer
    /// fires now (late), and the segments that waited follow (re-queued at this time).
    fn resume(&mut self, node: usize) {
        let now = self.nodes[node].local(self.now);
        let n = &mut self.nodes[node];
        n.paused_until = None;
        n.armed = None;
        let written = std::mem::take(&mut n.written_while_paused);
        if let Some(server) = n.server() {
            for (conn, len) in written {
                server.handle_written(now, conn, len);
            }
            server.handle_timeout(now);
        }
        self.after_node_input(node);
    }

    /// The client's connection is gone; it reconnects after a while.
    fn lose_session(&mut self, client: usize) {
        let c = &mut self.clients[client];
        c.end_session(self.now, &mut self.checker);
        if !c.connect_pending {
            c.connect_pending = true;
            let lo = self.world.reconnect_min.as_nanos() as u64;
            let hi = self.world.reconnect_max.as_nanos() as u64;
            let at = self.now + self.faults.random_range(lo..=hi);
            self.q.push(at, Event::ClientConnect { client });
        }
    }

    /// Routes what a node output and re-arms its timer.
    fn after_node_input(&mut self, node: usize) {
        let mut outputs = std::mem::take(&mut self.outputs);
        self.nodes[node].drain(&mut outputs);
        for out in outputs.drain(..) {
            match out {
                ServerOutput::Send { client: conn, bytes } => {
                    self.net.send(self.now, conn, Side::Client, bytes, &mut self.q)
                }
                ServerOutput::Close { client: conn, reason } => {
                    if self.trace {
                        println!("               node{node} closes conn{conn}: {reason}");
                    }
                    if node::is_abort(&reason) {
                        self.net.reset(self.now, conn, Side::Client, &mut self.q);
                    } else {
                        self.net.fin(self.now, conn, Side::Client, &mut self.q);
                    }
                }
            }
        }
        self.outputs = outputs;
        let n = &mut self.nodes[node];
        if let Some(at) = n.next_timer(self.now) {
            if n.armed != Some(at) {
                n.armed = Some(at);
                let incarnation = n.incarnation;
                self.q.push(at, Event::NodeTimer { node, incarnation });
            }
        }
    }

    fn check_done(&mut self) {
        if self.phase != Phase::Liveness {
            return;
        }
        if self.clients.iter().all(|c| c.session.as_ref().is_some_and(|s| s.done)) {
            if let Err(v) = self.checker.finish() {
                self.fail(v);
            }
            self.phase = Phase::Done;
        }
    }
}
