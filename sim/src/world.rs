//! The world a seed draws before anything runs (swarm testing): sizes, fault rates, latencies,
//! timeouts, buffer sizes, workload mix. Printed first in every run, so a failure's
//! environment is on screen before its events.
//!
//! Later issues add fields here (cluster size, disk fault rates, partition schedules); draw
//! them at the end of [`World::draw`] so existing seeds keep their worlds.

use std::fmt;
use std::time::Duration;

use rand::Rng;

use crate::rng;

/// Bugs planted on purpose between the server and its clients, to prove the checkers can
/// fail. Never set by a seed: only by tests or the hidden `--canary` flag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Canary {
    #[default]
    None,
    /// Some MSG frames are delivered twice.
    DuplicateDelivery,
    /// Some MSG frames are dropped.
    DropDelivery,
    /// Some MSG frames are also delivered to a subscription whose subject does not match.
    MisrouteDelivery,
    /// Some queue-group MSG frames are also delivered to another member of the group.
    QueueDoubleDelivery,
    /// The simulated server panics at some delivery (the "nothing panics" checker).
    Panic,
    /// Store workload: the FileStore acknowledges (`flush`) without syncing.
    StoreAckBeforeSync,
    /// Store workload: the FileStore skips record checksums on reads and recovery.
    StoreSkipChecksum,
    /// Raft workload: a batch is reported durable before its sync (acks leave unsynced).
    RaftAckBeforeSync,
    /// Raft workload: a leader commits an earlier term's entry by counting replicas (and, as
    /// the implementations Figure 8 was written about, appends no no-op when elected).
    RaftCommitPrevTerm,
    /// Raft workload: a restarted node forgets whom it voted for.
    RaftForgetVote,
    /// Store workload: expiry is fed a clock that ignores the wall clock's steps (the
    /// monotonic one), so `max_age` disagrees with the timestamps the messages carry.
    StoreExpireMonotonic,
    /// Raft workload: a node that lost its disk comes back as a blank voter (plain Raft's
    /// unsafe behaviour) instead of the fenced, non-voting replacement the fault models.
    RaftWipeUnfenced,
    /// Pub/sub and Raft workloads: a paused node is never resumed (not even when the faults
    /// stop), so the liveness checks must report it.
    PauseForever,
    /// Raft workload: after the first simulated second the driver stops calling `tick` when a
    /// node's timer is due (the spin check must report the node's timer staying due).
    RaftSkipTick,
    /// Raft workload: a key-value `get` is answered from the contacted node's local register
    /// at once, without a round through the log (a stale read the linearizability check must
    /// report).
    KvStaleRead,
    /// Raft workload: recovery truncates the log at an entry whose body fails its checksum
    /// (as if it were a torn, never-acknowledged tail) instead of keeping it faulty for repair.
    RaftTruncateCorrupt,
    /// JetStream workload: syncs of stream message files do nothing, so PubAcks go out for
    /// data a power loss takes back (acknowledge before sync).
    JsAckBeforeSync,
    /// JetStream workload: ack confirmations go out before the consumer state is written
    /// (persisted lazily), so a power loss forgets a confirmed ack.
    JsConfirmUnwrittenAcks,
}

impl Canary {
    pub const ALL: [Canary; 18] = [
        Canary::DuplicateDelivery,
        Canary::DropDelivery,
        Canary::MisrouteDelivery,
        Canary::QueueDoubleDelivery,
        Canary::Panic,
        Canary::StoreAckBeforeSync,
        Canary::StoreSkipChecksum,
        Canary::RaftAckBeforeSync,
        Canary::RaftCommitPrevTerm,
        Canary::RaftForgetVote,
        Canary::StoreExpireMonotonic,
        Canary::RaftWipeUnfenced,
        Canary::PauseForever,
        Canary::RaftSkipTick,
        Canary::KvStaleRead,
        Canary::RaftTruncateCorrupt,
        Canary::JsAckBeforeSync,
        Canary::JsConfirmUnwrittenAcks,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Canary::None => "none",
            Canary::DuplicateDelivery => "duplicate",
            Canary::DropDelivery => "drop",
            Canary::MisrouteDelivery => "misroute",
            Canary::QueueDoubleDelivery => "queue-double",
            Canary::Panic => "panic",
            Canary::StoreAckBeforeSync => "ack-before-sync",
            Canary::StoreSkipChecksum => "skip-checksum",
            Canary::RaftAckBeforeSync => "raft-ack-before-sync",
            Canary::RaftCommitPrevTerm => "raft-commit-prev-term",
            Canary::RaftForgetVote => "raft-forget-vote",
            Canary::StoreExpireMonotonic => "store-expire-monotonic",
            Canary::RaftWipeUnfenced => "raft-wipe-unfenced",
            Canary::PauseForever => "pause-forever",
            Canary::RaftSkipTick => "raft-skip-tick",
            Canary::KvStaleRead => "kv-stale-read",
            Canary::RaftTruncateCorrupt => "raft-truncate-corrupt",
            Canary::JsAckBeforeSync => "js-ack-before-sync",
            Canary::JsConfirmUnwrittenAcks => "js-confirm-unwritten-acks",
        }
    }

    pub fn parse(text: &str) -> Option<Canary> {
        [Canary::None].into_iter().chain(Canary::ALL).find(|c| c.name() == text)
    }
}

/// Which workload a run drives. Pub/sub is the default, so existing seeds keep their runs;
/// the others are chosen with `--workload`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Workload {
    #[default]
    PubSub,
    /// One FileStore on a faulty MemDisk (see `workload::store`).
    Store,
    /// A Raft cluster of 1, 3 or 5 nodes (see `workload::raft`).
    Raft,
    /// One node's JetStream (stream, pull consumers) on a faulty MemDisk (see
    /// `workload::jetstream`).
    JetStream,
}

impl Workload {
    pub const ALL: [Workload; 4] =
        [Workload::PubSub, Workload::Store, Workload::Raft, Workload::JetStream];

    pub fn name(self) -> &'static str {
        match self {
            Workload::PubSub => "pubsub",
            Workload::Store => "store",
            Workload::Raft => "raft",
            Workload::JetStream => "jetstream",
        }
    }

    pub fn parse(text: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == text)
    }
}

/// Settings a caller forces on top of what the seed draws (the benchmark's fixed client count,
/// canaries). The seed's draws happen regardless, so overriding one field leaves the others.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    pub clients: Option<usize>,
    pub canary: Canary,
    pub workload: Workload,
}

#[derive(Clone, Debug)]
pub struct World {
    pub seed: u64,
    pub nodes: usize,
    pub clients: usize,
    /// Length of the safety phase (faults on).
    pub safety: Duration,
    /// After the safety phase, every client must be connected and pass a PING barrier within this.
    pub liveness_bound: Duration,
    pub latency_min: Duration,
    pub latency_max: Duration,
    /// Chance a write is cut into several segments.
    pub split_prob: f64,
    /// Chance a write joins the previous undelivered segment of the same stream.
    pub coalesce_prob: f64,
    /// Expected client connection drops per client per simulated second.
    pub drop_rate: f64,
    /// Share of drops that reset (in-flight bytes lost) rather than close cleanly.
    pub reset_share: f64,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Expected server crashes per simulated second.
    pub crash_rate: f64,
    pub restart_min: Duration,
    pub restart_max: Duration,
    /// Per-node clock drift, parts per million.
    pub drift_ppm: Vec<i64>,
    pub ping_interval: Duration,
    pub ping_max: u32,
    pub max_pending: usize,
    /// Mean gap between a client's bursts of operations.
    pub op_gap: Duration,
    pub burst_max: u32,
    /// Values per subject token (`s.<a>.<b>`, a and b below this).
    pub subject_width: u32,
    pub payload_max: usize,
    pub wildcard_prob: f64,
    pub queue_prob: f64,
    pub unsub_max_prob: f64,
    pub request_prob: f64,
    pub responder_prob: f64,
    pub echo_off_prob: f64,
    pub headers_prob: f64,
    pub verbose_prob: f64,
    pub canary: Canary,
    pub workload: Workload,
    /// Node process pauses per simulated second, and the longest pause.
    pub pause_rate: f64,
    pub pause_max: Duration,
}

fn dur_ms(rng: &mut impl Rng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(rng.random_range(lo..=hi))
}

fn dur_us(rng: &mut impl Rng, lo: u64, hi: u64) -> Duration {
    Duration::from_micros(rng.random_range(lo..=hi))
}

/// A rate that is zero in some worlds, so fault-free worlds are explored too.
fn rate(rng: &mut impl Rng, zero_share: f64, max: f64) -> f64 {
    if rng.random_bool(zero_share) {
        0.0
    } else {
        rng.random_range(0.0..max)
    }
}

impl World {
    pub fn draw(seed: u64, overrides: Overrides) -> World {
        let mut r = rng::stream(seed, "world", 0);
        let r = &mut r;
        let nodes = 1;
        let mut clients = r.random_range(1..=12usize);
        let safety = dur_ms(r, 2_000, 20_000);
        let latency_min = dur_us(r, 10, 2_000);
        let latency_max = latency_min + dur_us(r, 0, 20_000);
        let split_prob = rate(r, 0.2, 0.9);
        let coalesce_prob = rate(r, 0.2, 0.9);
        let drop_rate = rate(r, 0.3, 0.5);
        let reset_share = r.random_range(0.0..1.0);
        let reconnect_min = dur_ms(r, 1, 50);
        let reconnect_max = reconnect_min + dur_ms(r, 0, 500);
        let crash_rate = rate(r, 0.5, 0.2);
        let restart_min = dur_ms(r, 1, 100);
        let restart_max = restart_min + dur_ms(r, 0, 1000);
        let drift_ppm = (0..nodes).map(|_| r.random_range(-200..=200)).collect();
        let ping_interval = dur_ms(r, 200, 5_000);
        let ping_max = r.random_range(1..=3);
        let max_pending =
            if r.random_bool(0.3) { r.random_range(2_000..=64_000) } else { 64 * 1024 * 1024 };
        let op_gap = dur_ms(r, 10, 300);
        let burst_max = r.random_range(1..=6);
        let subject_width = r.random_range(1..=4);
        let payload_max = [0, 16, 200, 4000][r.random_range(0..4usize)];
        let wildcard_prob = r.random_range(0.0..0.6);
        let queue_prob = r.random_range(0.0..0.5);
        let unsub_max_prob = r.random_range(0.0..0.5);
        let request_prob = r.random_range(0.0..0.3);
        let responder_prob = r.random_range(0.0..1.0);
        let echo_off_prob = r.random_range(0.0..0.5);
        let headers_prob = r.random_range(0.0..1.0);
        let verbose_prob = r.random_range(0.0..0.5);
        if let Some(n) = overrides.clients {
            clients = n;
        }
        // Process pauses, from their own stream so the draws above keep their values.
        let p = &mut rng::stream(seed, "world-process", 0);
        let pause_rate = rate(p, 0.4, 0.5);
        let pause_max = dur_ms(p, 10, 5_000);
        World {
            seed,
            nodes,
            clients,
            safety,
            liveness_bound: Duration::from_secs(30),
            latency_min,
            latency_max,
            split_prob,
            coalesce_prob,
            drop_rate,
            reset_share,
            reconnect_min,
            reconnect_max,
            crash_rate,
            restart_min,
            restart_max,
            drift_ppm,
            ping_interval,
            ping_max,
            max_pending,
            op_gap,
            burst_max,
            subject_width,
            payload_max,
            wildcard_prob,
            queue_prob,
            unsub_max_prob,
            request_prob,
            responder_prob,
            echo_off_prob,
            headers_prob,
            verbose_prob,
            canary: overrides.canary,
            workload: overrides.workload,
            pause_rate,
            pause_max,
        }
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.workload == Workload::Store {
            return write!(f, "{}", crate::workload::store::StoreWorld::draw(self));
        }
        if self.workload == Workload::Raft {
            return write!(f, "{}", crate::workload::raft::RaftWorld::draw(self));
        }
        if self.workload == Workload::JetStream {
            return write!(f, "{}", crate::workload::jetstream::JsWorld::draw(self));
        }
        writeln!(f, "world seed={}", self.seed)?;
        writeln!(
            f,
            "  nodes={} clients={} safety={:?} liveness_bound={:?}",
            self.nodes, self.clients, self.safety, self.liveness_bound
        )?;
        writeln!(
            f,
            "  network: latency={:?}..{:?} split={:.2} coalesce={:.2}",
            self.latency_min, self.latency_max, self.split_prob, self.coalesce_prob
        )?;
        writeln!(
            f,
            "  faults: client_drops={:.3}/s (reset share {:.2}) reconnect={:?}..{:?} crashes={:.3}/s restart={:?}..{:?} drift_ppm={:?}",
            self.drop_rate,
            self.reset_share,
            self.reconnect_min,
            self.reconnect_max,
            self.crash_rate,
            self.restart_min,
            self.restart_max,
            self.drift_ppm
        )?;
        writeln!(f, "  process: pauses={:.3}/s (<= {:?})", self.pause_rate, self.pause_max)?;
        writeln!(
            f,
            "  server: ping_interval={:?} ping_max={} max_pending={}",
            self.ping_interval, self.ping_max, self.max_pending
        )?;
        writeln!(
            f,
            "  workload: op_gap={:?} burst<={} subject_width={} payload<={} wildcard={:.2} queue={:.2} unsub_max={:.2} request={:.2} responder={:.2} echo_off={:.2} headers={:.2} verbose={:.2}",
            self.op_gap,
            self.burst_max,
            self.subject_width,
            self.payload_max,
            self.wildcard_prob,
            self.queue_prob,
            self.unsub_max_prob,
            self.request_prob,
            self.responder_prob,
            self.echo_off_prob,
            self.headers_prob,
            self.verbose_prob
        )?;
        if self.canary != Canary::None {
            writeln!(f, "  CANARY: {}", self.canary.name())?;
        }
        Ok(())
    }
}
