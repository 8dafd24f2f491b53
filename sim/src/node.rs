//! A simulated node: core's [`Server`] behind its own clock, with process faults (crash loses
//! every connection and all state: core pub/sub keeps nothing on disk) and the canaries.
//!
//! Later issues give a node a simulated `Disk` (kept across crashes, with its fault layer) and
//! Raft/JetStream state machines beside the server; their outputs join `NodeOutput`.

use std::time::Duration;

use fjord_core::client::conn::CloseReason;
use fjord_core::config::CoreConfig;
use fjord_core::server::{Server, ServerOutput, SubscriptionInfo};
use fjord_core::time::Instant;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::clock::NodeClock;
use crate::rng;
use crate::workload::proto::{self, ServerOp};
use crate::world::{Canary, World};

pub struct Node {
    pub id: usize,
    server: Option<Server>,
    pub clock: NodeClock,
    seed: u64,
    /// Bumped at each crash and restart: timers of an earlier life are ignored.
    pub incarnation: u64,
    /// The simulated time the pending timer event is for.
    pub armed: Option<u64>,
    config: CoreConfig,
    canary: Canary,
    canary_rng: ChaCha8Rng,
    /// Paused until this simulated time: the process handles nothing until then.
    pub paused_until: Option<u64>,
    /// Bytes the network took off the node's send buffers while it was paused; the process
    /// learns of them when it resumes.
    pub written_while_paused: Vec<(u64, usize)>,
}

impl Node {
    pub fn new(id: usize, world: &World, clock: NodeClock) -> Self {
        let config = CoreConfig {
            server_id: format!("NSIM{id}"),
            server_name: format!("node{id}"),
            ping_interval: world.ping_interval,
            ping_max: world.ping_max,
            max_pending: world.max_pending,
            ..CoreConfig::default()
        };
        Node {
            id,
            server: None,
            clock,
            seed: world.seed,
            incarnation: 0,
            armed: None,
            config,
            canary: world.canary,
            canary_rng: rng::stream(world.seed, "canary", id as u64),
            paused_until: None,
            written_while_paused: Vec::new(),
        }
    }

    pub fn is_up(&self) -> bool {
        self.server.is_some()
    }

    /// Starts (or restarts) with empty state; each life draws its own RNG stream.
    pub fn start(&mut self) {
        self.incarnation += 1;
        self.armed = None;
        let rng = rng::stream(self.seed, "node", ((self.id as u64) << 32) | self.incarnation);
        self.server = Some(Server::new(self.config.clone(), rng));
    }

    pub fn crash(&mut self) {
        self.incarnation += 1;
        self.armed = None;
        self.server = None;
        self.paused_until = None;
        self.written_while_paused.clear();
    }

    pub fn local(&self, sim_now: u64) -> Instant {
        self.clock.local(sim_now)
    }

    pub fn server(&mut self) -> Option<&mut Server> {
        self.server.as_mut()
    }

    /// When the node wants its next timer, in simulated time.
    pub fn next_timer(&self, sim_now: u64) -> Option<u64> {
        let at = self.server.as_ref()?.poll_timeout()?;
        Some(self.clock.sim_time_for(at).max(sim_now))
    }

    /// Drains the server's outputs into `into`, passing them through the canary.
    pub fn drain(&mut self, into: &mut Vec<ServerOutput>) {
        let Some(server) = self.server.as_mut() else { return };
        let start = into.len();
        while let Some(out) = server.poll_output() {
            into.push(out);
        }
        if self.canary != Canary::None {
            self.plant(start, into);
        }
    }

    /// The canaries: known bugs planted in the server's output, to prove the checkers fail.
    fn plant(&mut self, start: usize, outs: &mut Vec<ServerOutput>) {
        let Some(server) = self.server.as_ref() else { return };
        let mut extra: Vec<ServerOutput> = Vec::new();
        let mut subs: Option<Vec<SubscriptionInfo>> = None;
        for out in outs.iter_mut().skip(start) {
            let ServerOutput::Send { client, bytes } = out else { continue };
            let mut rebuilt = Vec::with_capacity(bytes.len());
            let mut pos = 0;
            while let Ok(Some((op, used))) = proto::parse(&bytes[pos..]) {
                let frame = &bytes[pos..pos + used];
                pos += used;
                let ServerOp::Msg { subject, sid, reply, headers, payload } = op else {
                    rebuilt.extend_from_slice(frame);
                    continue;
                };
                let fire = self.canary_rng.random_bool(0.05);
                match self.canary {
                    Canary::DuplicateDelivery if fire => {
                        rebuilt.extend_from_slice(frame);
                        rebuilt.extend_from_slice(frame);
                    }
                    Canary::DropDelivery if fire => {}
                    Canary::Panic if fire && self.canary_rng.random_bool(0.1) => {
                        panic!("canary: planted panic in node {}", self.id)
                    }
                    Canary::MisrouteDelivery | Canary::QueueDoubleDelivery
                        if fire && headers.is_none() =>
                    {
                        rebuilt.extend_from_slice(frame);
                        let all = subs.get_or_insert_with(|| server.subscriptions());
                        let me = all.iter().find(|s| s.client == *client && s.sid == sid);
                        let target = all.iter().find(|s| {
                            if self.canary == Canary::MisrouteDelivery {
                                !fjord_core::subject::matches(&s.subject, &subject)
                            } else {
                                me.is_some_and(|me| {
                                    me.queue.is_some()
                                        && s.queue == me.queue
                                        && (s.client, &s.sid) != (me.client, &me.sid)
                                        && fjord_core::subject::matches(&s.subject, &subject)
                                })
                            }
                        });
                        if let Some(t) = target {
                            let mut copy = Vec::new();
                            fjord_core::proto::encode::msg(
                                &mut copy,
                                &subject,
                                &t.sid,
                                reply.as_deref(),
                                None,
                                &payload,
                                false,
                            );
                            extra.push(ServerOutput::Send { client: t.client, bytes: copy });
                        }
                    }
                    _ => rebuilt.extend_from_slice(frame),
                }
            }
            rebuilt.extend_from_slice(&bytes[pos..]);
            *bytes = rebuilt;
        }
        outs.extend(extra);
    }
}

/// How long the node stays down after a crash.
pub fn restart_delay(world: &World, rng: &mut ChaCha8Rng) -> Duration {
    let lo = world.restart_min.as_nanos() as u64;
    let hi = world.restart_max.as_nanos() as u64;
    Duration::from_nanos(rng.random_range(lo..=hi))
}

pub fn is_abort(reason: &CloseReason) -> bool {
    *reason == CloseReason::SlowConsumer
}
