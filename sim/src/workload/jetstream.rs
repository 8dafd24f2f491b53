//! The JetStream workload: one node running the sans-IO JetStream core (`Manager`, streams,
//! consumers) over a faulty MemDisk, driven by simulated clients with real JetStream subjects
//! and bodies, with time as an input.
//!
//! A file stream (`js.>`, retention limits, interest or work queue) and one to three durable
//! pull consumers (explicit ack, ack_wait, max_deliver, max_ack_pending, filters) are created
//! first; clients also delete messages (`STREAM.MSG.DELETE`), pending ones included. Publishers
//! publish with a reply subject and wait for PubAcks; consumer clients pull batches with
//! expiry and, for each delivery, ack (plainly or as a "double ack" whose confirmation they
//! wait for), NAK (with or without a delay), terminate, say in-progress, or ignore it so its
//! ack_wait runs out. The node flushes (group commit) and ticks at the world's gaps, and loses
//! power at random (unsynced writes lost, torn with `torn_writes`), then restarts and recovers.
//! After the safety phase faults stop: one last power loss, then a drain phase in which every
//! client acks everything, and the end checks. `checker::jetstream` says what is checked.
//!
//! The world comes from its own stream (`js-world`), so the other workloads' seeds are
//! untouched; the event queue is local as in the store workload.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fjord_core::disk::{Disk, DiskError, FaultConfig, MemDisk};
use fjord_core::jetstream::manager::{DiskFactory, Manager};
use fjord_core::jetstream::{Now, Outgoing};
use fjord_core::time::Instant;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use crate::checker::jetstream::{ConsumerModel, JsChecker, JsStats, Retention, StoredView};
use crate::checker::Violation;
use crate::clock::WALL_ORIGIN;
use crate::engine::SimTime;
use crate::rng::{self, Fnv64};
use crate::sim::Outcome;
use crate::workload::store::{exp_gap, rate};
use crate::world::{Canary, World};

const STREAM: &str = "S";
const SUBJECTS: &[&str] = &["js.a", "js.b"];
/// Where the manager keeps stream messages (the ack-before-sync canary skips their syncs).
const MSGS_DIR: &str = "jetstream/msgs/";
/// After the drain phase's planned length, the end checks are tried this often, and the
/// consumers' backlog must shrink at least once every `DRAIN_STALL` until it is gone. A bound on
/// progress, not on the total: a consumer with max_ack_pending 1 behind a backlog of 16,000
/// messages needs more than a minute (seed 4242424678) and is still live.
const DRAIN_POLL: Duration = Duration::from_millis(500);
const DRAIN_STALL: Duration = Duration::from_secs(60);
const DRAIN_BATCH: u32 = 100;
const DRAIN_GAP: Duration = Duration::from_millis(2);

/// One consumer as the seed draws it.
#[derive(Clone, Debug)]
pub struct ConsumerSpec {
    pub name: String,
    pub filter: Option<&'static str>,
    pub ack_wait: Duration,
    /// -1: unlimited.
    pub max_deliver: i64,
    /// 0: the server's default.
    pub max_ack_pending: i64,
}

/// What a seed draws for the JetStream workload.
#[derive(Clone, Debug)]
pub struct JsWorld {
    pub seed: u64,
    pub publishers: usize,
    pub safety: Duration,
    pub pub_gap: Duration,
    pub burst_max: u32,
    pub payload_max: usize,
    pub flush_gap: Duration,
    pub tick_gap: Duration,
    pub retention: Retention,
    pub consumers: Vec<ConsumerSpec>,
    pub pull_gap: Duration,
    pub batch_max: u32,
    pub expires: Duration,
    pub process_gap: Duration,
    /// Per delivery: chances of ack, NAK, term and in-progress (the rest is ignored); and the
    /// share of acks and terms sent as "double acks" that wait for a confirmation.
    pub ack_prob: f64,
    pub nak_prob: f64,
    pub term_prob: f64,
    pub wpi_prob: f64,
    pub confirm_share: f64,
    /// Power losses per simulated second; how long the node stays down.
    pub crash_rate: f64,
    pub down_max: Duration,
    pub torn_writes: bool,
    pub tear_block: u64,
    pub canary: Canary,
    /// `STREAM.MSG.DELETE` requests per simulated second (a pending message may vanish).
    pub delete_rate: f64,
}

fn ms(r: &mut impl Rng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(r.random_range(lo..=hi))
}

impl JsWorld {
    pub fn draw(world: &World) -> JsWorld {
        let r = &mut rng::stream(world.seed, "js-world", 0);
        let retention = [Retention::Limits, Retention::Interest, Retention::Workqueue]
            [r.random_range(0..3usize)];
        let n = r.random_range(1..=3usize);
        let consumers = (0..n)
            .map(|i| {
                // A work queue takes at most one consumer per subject: one without a filter,
                // or one per subject.
                let filter = match retention {
                    Retention::Workqueue if n > 1 => Some(SUBJECTS[i % 2]),
                    Retention::Workqueue => None,
                    _ if r.random_bool(0.3) => Some(SUBJECTS[r.random_range(0..2usize)]),
                    _ => None,
                };
                ConsumerSpec {
                    name: format!("C{i}"),
                    filter,
                    ack_wait: ms(r, 30, 1_500),
                    max_deliver: [-1, -1, 2, 3, 5][r.random_range(0..5usize)],
                    max_ack_pending: 0,
                }
            })
            .collect::<Vec<_>>();
        // A work queue with two consumers has one per subject: at most two.
        let consumers = if retention == Retention::Workqueue {
            consumers.into_iter().take(2).collect()
        } else {
            consumers
        };
        JsWorld {
            seed: world.seed,
            publishers: r.random_range(1..=4),
            safety: ms(r, 1_000, 6_000),
            pub_gap: Duration::from_micros(r.random_range(1_000..=60_000)),
            burst_max: r.random_range(1..=4),
            payload_max: [0, 16, 300][r.random_range(0..3usize)],
            flush_gap: Duration::from_micros(r.random_range(300..=30_000)),
            tick_gap: ms(r, 5, 100),
            retention,
            consumers,
            pull_gap: ms(r, 2, 80),
            batch_max: r.random_range(1..=10),
            expires: ms(r, 20, 500),
            process_gap: ms(r, 1, 60),
            ack_prob: r.random_range(0.3..0.9),
            nak_prob: r.random_range(0.0..0.2),
            term_prob: r.random_range(0.0..0.05),
            wpi_prob: r.random_range(0.0..0.05),
            confirm_share: r.random_range(0.0..1.0),
            crash_rate: rate(r, 0.15, 3.0),
            down_max: ms(r, 1, 300),
            torn_writes: r.random_bool(0.7),
            tear_block: [16, 64, 512, 4096][r.random_range(0..4usize)],
            canary: world.canary,
            delete_rate: 0.0,
        }
        .draw_more()
    }

    /// Later draws, from their own stream so the draws above keep their values.
    fn draw_more(mut self) -> JsWorld {
        let r = &mut rng::stream(self.seed, "js-world-more", 0);
        for c in &mut self.consumers {
            if r.random_bool(0.3) {
                c.max_ack_pending = r.random_range(1..=20);
            }
        }
        self.delete_rate = rate(r, 0.5, 4.0);
        self
    }

    /// The drain phase: long enough for every pending message's ack wait to run out twice.
    fn drain(&self) -> Duration {
        let wait = self.consumers.iter().map(|c| c.ack_wait).max().unwrap_or_default();
        wait * 3 + self.expires + Duration::from_secs(2)
    }
}

impl fmt::Display for JsWorld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "world seed={} workload=jetstream", self.seed)?;
        writeln!(
            f,
            "  publishers={} safety={:?} pub_gap={:?} burst<={} payload<={} flush_gap={:?} tick_gap={:?}",
            self.publishers,
            self.safety,
            self.pub_gap,
            self.burst_max,
            self.payload_max,
            self.flush_gap,
            self.tick_gap
        )?;
        writeln!(f, "  stream: retention={}", self.retention.name())?;
        for c in &self.consumers {
            writeln!(
                f,
                "  consumer {}: filter={:?} ack_wait={:?} max_deliver={} max_ack_pending={}",
                c.name, c.filter, c.ack_wait, c.max_deliver, c.max_ack_pending
            )?;
        }
        writeln!(
            f,
            "  clients: pull_gap={:?} batch<={} expires={:?} process_gap={:?} ack={:.2} nak={:.2} term={:.2} wpi={:.2} confirm={:.2}",
            self.pull_gap,
            self.batch_max,
            self.expires,
            self.process_gap,
            self.ack_prob,
            self.nak_prob,
            self.term_prob,
            self.wpi_prob,
            self.confirm_share
        )?;
        writeln!(
            f,
            "  faults: power_loss={:.3}/s down<={:?} torn_writes={} tear_block={} msg_deletes={:.3}/s",
            self.crash_rate, self.down_max, self.torn_writes, self.tear_block, self.delete_rate
        )?;
        if self.canary != Canary::None {
            writeln!(f, "  CANARY: {}", self.canary.name())?;
        }
        Ok(())
    }
}

/// The node's one disk, seen through many handles (the manager's metadata and each store's),
/// as a real filesystem is. The ack-before-sync canary turns syncs of message files into
/// no-ops, so PubAcks go out for data a power loss takes back.
#[derive(Clone)]
pub struct SimDisk {
    inner: Arc<Mutex<MemDisk>>,
    skip_msg_syncs: bool,
}

impl SimDisk {
    fn with<T>(&self, f: impl FnOnce(&mut MemDisk) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Disk for SimDisk {
    fn create(&mut self, p: &str) -> Result<(), DiskError> {
        self.with(|d| d.create(p))
    }
    fn exists(&mut self, p: &str) -> Result<bool, DiskError> {
        self.with(|d| d.exists(p))
    }
    fn len(&mut self, p: &str) -> Result<u64, DiskError> {
        self.with(|d| d.len(p))
    }
    fn read_at(&mut self, p: &str, o: u64, b: &mut [u8]) -> Result<usize, DiskError> {
        self.with(|d| d.read_at(p, o, b))
    }
    fn write_at(&mut self, p: &str, o: u64, b: &[u8]) -> Result<(), DiskError> {
        self.with(|d| d.write_at(p, o, b))
    }
    fn append(&mut self, p: &str, b: &[u8]) -> Result<u64, DiskError> {
        self.with(|d| d.append(p, b))
    }
    fn sync(&mut self, p: &str) -> Result<(), DiskError> {
        if self.skip_msg_syncs && p.starts_with(MSGS_DIR) {
            return Ok(());
        }
        self.with(|d| d.sync(p))
    }
    fn truncate(&mut self, p: &str, l: u64) -> Result<(), DiskError> {
        self.with(|d| d.truncate(p, l))
    }
    fn rename(&mut self, a: &str, b: &str) -> Result<(), DiskError> {
        self.with(|d| d.rename(a, b))
    }
    fn remove(&mut self, p: &str) -> Result<(), DiskError> {
        self.with(|d| d.remove(p))
    }
    fn list(&mut self, p: &str) -> Result<Vec<String>, DiskError> {
        self.with(|d| d.list(p))
    }
    fn sync_dir(&mut self, p: &str) -> Result<(), DiskError> {
        self.with(|d| d.sync_dir(p))
    }
    fn create_dir_all(&mut self, p: &str) -> Result<(), DiskError> {
        self.with(|d| d.create_dir_all(p))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Publish { client: usize },
    Flush,
    Tick,
    Pull { consumer: usize },
    Process { consumer: usize },
    Crash,
    Restart,
    End,
    Finish,
    Delete,
}

impl Ev {
    fn tag(self) -> u8 {
        match self {
            Ev::Publish { .. } => 1,
            Ev::Flush => 2,
            Ev::Tick => 3,
            Ev::Pull { .. } => 4,
            Ev::Process { .. } => 5,
            Ev::Crash => 6,
            Ev::Restart => 7,
            Ev::End => 8,
            Ev::Finish => 9,
            Ev::Delete => 10,
        }
    }
}

/// A delivery in a consumer client's hands.
struct Delivery {
    sseq: u64,
    ack_subject: String,
    /// The node's incarnation (crashes before it) that made the delivery.
    epoch: u64,
}

#[derive(Default)]
struct ConsumerClient {
    /// The pull requests it believes are waiting: reply subject → (expiry, messages still
    /// wanted).
    outstanding: std::collections::BTreeMap<String, (u64, u64)>,
    inbox: Vec<Delivery>,
}

struct Run {
    w: JsWorld,
    now: u64,
    heap: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    next_id: u64,
    work: ChaCha8Rng,
    faults: ChaCha8Rng,
    disk: SimDisk,
    node: Option<Manager<SimDisk>>,
    checker: JsChecker,
    clients: Vec<ConsumerClient>,
    /// Reply subjects of requests, numbered.
    next_reply: u64,
    /// Consumers that had an ack confirmed in the flush being routed.
    confirmed_now: Vec<bool>,
    /// Faults on (the safety phase).
    faulty: bool,
    /// The drain phase: clients ack everything, with confirmations.
    draining: bool,
    digest: Fnv64,
    events: u64,
    trace: bool,
}

/// Runs the JetStream workload for `world`; the second value is what it did, for reports.
pub fn run(world: World, trace: bool) -> (Outcome, JsStats) {
    let w = JsWorld::draw(&world);
    let disk_seed = rng::stream(w.seed, "js-disk", 0).random();
    let faults = FaultConfig {
        torn_writes: w.torn_writes,
        tear_block: w.tear_block,
        ..FaultConfig::default()
    };
    let disk = SimDisk {
        inner: Arc::new(Mutex::new(MemDisk::new(disk_seed, faults))),
        skip_msg_syncs: w.canary == Canary::JsAckBeforeSync,
    };
    let models = w
        .consumers
        .iter()
        .map(|c| ConsumerModel {
            name: c.name.clone(),
            filter: c.filter.map(str::to_string),
            ..ConsumerModel::default()
        })
        .collect();
    let n = w.consumers.len();
    let mut run = Run {
        work: rng::stream(w.seed, "js-workload", 0),
        faults: rng::stream(w.seed, "js-faults", 0),
        checker: JsChecker::new(w.retention, models),
        w,
        now: 0,
        heap: BinaryHeap::new(),
        next_id: 0,
        disk,
        node: None,
        clients: (0..n).map(|_| ConsumerClient::default()).collect(),
        next_reply: 0,
        confirmed_now: vec![false; n],
        faulty: true,
        draining: false,
        digest: Fnv64::default(),
        events: 0,
        trace,
    };
    let failure = run.go().err();
    let outcome = Outcome {
        seed: run.w.seed,
        digest: run.digest.finish(),
        events: run.events,
        sim_nanos: run.now,
        failure: failure.map(|f| format!("at {}: {f}", SimTime(run.now).to_string().trim())),
        stats: Default::default(),
        crashes: run.checker.stats.recoveries,
        drops: 0,
        undecided: false,
    };
    (outcome, run.checker.stats)
}

fn fail(v: Violation) -> String {
    v.0
}

impl Run {
    fn push(&mut self, at: u64, ev: Ev) {
        self.next_id += 1;
        self.heap.push(Reverse((at, self.next_id, ev)));
    }

    fn now(&self) -> Now {
        Now { mono: Instant(self.now), wall: WALL_ORIGIN + self.now as i64 }
    }

    /// A client or flush gap: short in the drain phase, where a backlog is consumed as fast
    /// as the consumers' limits (max_ack_pending) allow.
    fn gap(&self, gap: Duration) -> Duration {
        if self.draining {
            gap.min(DRAIN_GAP)
        } else {
            gap
        }
    }

    fn reply(&mut self, kind: &str) -> String {
        self.next_reply += 1;
        format!("{kind}.{}", self.next_reply)
    }

    fn go(&mut self) -> Result<(), String> {
        self.open()?;
        self.setup()?;
        for client in 0..self.w.publishers {
            let at = exp_gap(&mut self.faults, self.w.pub_gap);
            self.push(at, Ev::Publish { client });
        }
        for consumer in 0..self.w.consumers.len() {
            let at = exp_gap(&mut self.faults, self.w.pull_gap);
            self.push(at, Ev::Pull { consumer });
            let at = exp_gap(&mut self.faults, self.w.process_gap);
            self.push(at, Ev::Process { consumer });
        }
        let at = exp_gap(&mut self.faults, self.w.flush_gap);
        self.push(at, Ev::Flush);
        let at = exp_gap(&mut self.faults, self.w.tick_gap);
        self.push(at, Ev::Tick);
        if self.w.crash_rate > 0.0 {
            let at = exp_gap(&mut self.faults, Duration::from_secs_f64(1.0 / self.w.crash_rate));
            self.push(at, Ev::Crash);
        }
        if self.w.delete_rate > 0.0 {
            let at = exp_gap(&mut self.faults, Duration::from_secs_f64(1.0 / self.w.delete_rate));
            self.push(at, Ev::Delete);
        }
        let end = self.w.safety.as_nanos() as u64;
        self.push(end, Ev::End);
        let mut finish_by = u64::MAX;
        let mut least_left = u64::MAX;
        while let Some(Reverse((at, id, ev))) = self.heap.pop() {
            self.now = at;
            self.events += 1;
            self.digest.write_u64(at);
            self.digest.write_u64(id);
            self.digest.write(&[ev.tag()]);
            if self.trace {
                println!("{} {ev:?}", SimTime(at));
            }
            match ev {
                Ev::Publish { client } if self.faulty => {
                    let burst = self.work.random_range(1..=self.w.burst_max);
                    for _ in 0..burst {
                        self.publish();
                    }
                    let at = self.now + exp_gap(&mut self.faults, self.w.pub_gap);
                    self.push(at, Ev::Publish { client });
                }
                Ev::Flush => {
                    self.flush()?;
                    let gap = self.gap(self.w.flush_gap);
                    let at = self.now + exp_gap(&mut self.faults, gap).max(1);
                    self.push(at, Ev::Flush);
                }
                Ev::Tick => {
                    if let Some(m) = self.node.as_mut() {
                        m.tick(Now {
                            mono: Instant(self.now),
                            wall: WALL_ORIGIN + self.now as i64,
                        });
                    }
                    let at = self.now + self.w.tick_gap.as_nanos() as u64;
                    self.push(at, Ev::Tick);
                }
                Ev::Pull { consumer } => {
                    self.pull(consumer);
                    let gap = self.gap(self.w.pull_gap);
                    let at = self.now + exp_gap(&mut self.faults, gap).max(1);
                    self.push(at, Ev::Pull { consumer });
                }
                Ev::Process { consumer } => {
                    self.process(consumer);
                    let gap = self.gap(self.w.process_gap);
                    let at = self.now + exp_gap(&mut self.faults, gap).max(1);
                    self.push(at, Ev::Process { consumer });
                }
                Ev::Crash if self.faulty => {
                    if self.node.is_some() {
                        self.crash();
                        let down = self.faults.random_range(0..=self.w.down_max.as_nanos() as u64);
                        self.push(self.now + down, Ev::Restart);
                    }
                    let mean = Duration::from_secs_f64(1.0 / self.w.crash_rate);
                    let at = self.now + exp_gap(&mut self.faults, mean);
                    self.push(at, Ev::Crash);
                }
                Ev::Restart if self.node.is_none() => self.restart()?,
                Ev::Delete if self.faulty => {
                    self.delete();
                    let mean = Duration::from_secs_f64(1.0 / self.w.delete_rate);
                    let at = self.now + exp_gap(&mut self.faults, mean);
                    self.push(at, Ev::Delete);
                }
                Ev::End => {
                    // Faults stop: the node is brought up if down, flushed, loses power once
                    // more and recovers; then every client acks everything until the end.
                    self.faulty = false;
                    self.draining = true;
                    if self.node.is_none() {
                        self.restart()?;
                    }
                    self.flush()?;
                    self.crash();
                    self.restart()?;
                    let at = self.now + self.w.drain().as_nanos() as u64;
                    self.push(at, Ev::Finish);
                    finish_by = at + DRAIN_STALL.as_nanos() as u64;
                }
                Ev::Finish => {
                    let Some(left) = self.finish(self.now >= finish_by)? else {
                        return Ok(());
                    };
                    if left < least_left {
                        least_left = left;
                        finish_by = self.now + DRAIN_STALL.as_nanos() as u64;
                    }
                    self.push(self.now + DRAIN_POLL.as_nanos() as u64, Ev::Finish);
                }
                _ => {}
            }
        }
        Err("the event queue ran dry before the end".into())
    }

    fn open(&mut self) -> Result<(), String> {
        let factory_disk = self.disk.clone();
        let factory: DiskFactory<SimDisk> = Box::new(move || Ok(factory_disk.clone()));
        let seed = self.faults.random();
        let mut m = Manager::open(self.disk.clone(), factory, self.now(), seed)
            .map_err(|e| format!("recovery failed: {e}"))?;
        m.canary_confirm_unwritten_acks = self.w.canary == Canary::JsConfirmUnwrittenAcks;
        self.node = Some(m);
        Ok(())
    }

    /// An API request answered at once: handled, flushed, and its answer picked from the
    /// outputs (everything else is routed as usual).
    fn call(&mut self, subject: &str, body: &[u8]) -> Result<Value, String> {
        let mut answers = self.call_many(subject, &[body.to_vec()])?;
        answers.pop().ok_or_else(|| format!("{subject}: no answer"))
    }

    /// Requests to one API subject in one batch (one flush), their answers in order.
    fn call_many(&mut self, subject: &str, bodies: &[Vec<u8>]) -> Result<Vec<Value>, String> {
        let replies: Vec<String> = bodies.iter().map(|_| self.reply("api")).collect();
        let now = self.now();
        let m = self.node.as_mut().ok_or("the node is down")?;
        for (reply, body) in replies.iter().zip(bodies) {
            m.handle(now, subject, Some(reply), None, body);
        }
        let outs = Self::flush_node(m, now);
        let mut answers = std::collections::BTreeMap::new();
        let mut rest = Vec::new();
        for o in outs {
            if o.to.starts_with("api.") {
                answers.insert(o.to.clone(), o);
            } else {
                rest.push(o);
            }
        }
        self.route(rest)?;
        replies
            .iter()
            .map(|r| {
                let o = answers.remove(r).ok_or_else(|| format!("{subject}: no answer"))?;
                serde_json::from_slice(&o.payload)
                    .map_err(|e| format!("{subject}: answer not JSON: {e}"))
            })
            .collect()
    }

    fn flush_node(m: &mut Manager<SimDisk>, now: Now) -> Vec<Outgoing> {
        m.flush(now, &|_| false);
        std::iter::from_fn(|| m.poll_output()).collect()
    }

    fn setup(&mut self) -> Result<(), String> {
        let retention = self.w.retention.name();
        let cfg = json!({"name": STREAM, "subjects": ["js.>"], "retention": retention, "storage": "file"});
        let v =
            self.call(&format!("$JS.API.STREAM.CREATE.{STREAM}"), cfg.to_string().as_bytes())?;
        if v.get("error").is_some() {
            return Err(format!("stream create refused: {v}"));
        }
        for c in self.w.consumers.clone() {
            let mut config = json!({
                "durable_name": c.name, "ack_policy": "explicit",
                "ack_wait": c.ack_wait.as_nanos() as u64, "max_deliver": c.max_deliver,
            });
            if let Some(f) = c.filter {
                config["filter_subject"] = json!(f);
            }
            if c.max_ack_pending > 0 {
                config["max_ack_pending"] = json!(c.max_ack_pending);
            }
            let body = json!({"stream_name": STREAM, "config": config}).to_string();
            let subject = format!("$JS.API.CONSUMER.CREATE.{STREAM}.{}", c.name);
            let v = self.call(&subject, body.as_bytes())?;
            if v.get("error").is_some() {
                return Err(format!("consumer create refused: {v}"));
            }
        }
        Ok(())
    }

    fn publish(&mut self) {
        if self.node.is_none() {
            return;
        }
        let subject = SUBJECTS[self.work.random_range(0..SUBJECTS.len())];
        let pad = self.work.random_range(0..=self.w.payload_max);
        let id_next = self.checker.stats.published as usize;
        let payload = JsChecker::payload_of(id_next, pad);
        let id = self.checker.published(subject, payload.clone());
        let reply = format!("pub.{id}");
        let now = self.now();
        if let Some(m) = self.node.as_mut() {
            m.handle(now, subject, Some(&reply), None, &payload);
        }
    }

    /// A client deletes a message, most often one it knows to be there.
    fn delete(&mut self) {
        if self.node.is_none() {
            return;
        }
        let known = self.checker.acked_seqs();
        let seq = match known.len() {
            0 => return,
            n => known[self.work.random_range(0..n)],
        };
        // Whether or not its answer comes back, the message may be gone.
        self.checker.delete_sent(seq);
        let reply = self.reply("del");
        let body = json!({"seq": seq}).to_string();
        let now = self.now();
        if let Some(m) = self.node.as_mut() {
            m.handle(
                now,
                &format!("$JS.API.STREAM.MSG.DELETE.{STREAM}"),
                Some(&reply),
                None,
                body.as_bytes(),
            );
        }
    }

    fn pull(&mut self, c: usize) {
        let now = self.now;
        self.clients[c].outstanding.retain(|_, (e, _)| *e > now);
        if self.node.is_none() || self.clients[c].outstanding.len() >= 2 {
            return;
        }
        let mut batch = self.work.random_range(1..=self.w.batch_max);
        if self.draining {
            // Catching up on the backlog.
            batch = DRAIN_BATCH;
        }
        let expires = self.w.expires.as_nanos() as u64;
        let reply = self.reply(&format!("pull.{c}"));
        self.clients[c].outstanding.insert(reply.clone(), (now + expires, u64::from(batch)));
        let body = json!({"batch": batch, "expires": expires}).to_string();
        let subject = format!("$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{}", self.w.consumers[c].name);
        let at = self.now();
        if let Some(m) = self.node.as_mut() {
            m.handle(at, &subject, Some(&reply), None, body.as_bytes());
        }
    }

    /// The consumer client works through what it received.
    fn process(&mut self, c: usize) {
        if self.node.is_none() {
            return;
        }
        let inbox = std::mem::take(&mut self.clients[c].inbox);
        for d in inbox {
            let roll: f64 = self.work.random_range(0.0..1.0);
            let w = &self.w;
            let (body, done): (String, bool) = if self.draining || roll < w.ack_prob {
                ("+ACK".into(), true)
            } else if roll < w.ack_prob + w.nak_prob {
                if self.work.random_bool(0.5) {
                    let delay = self.work.random_range(1..200u64) * 1_000_000;
                    (format!("-NAK {{\"delay\": {delay}}}"), false)
                } else {
                    ("-NAK".into(), false)
                }
            } else if roll < w.ack_prob + w.nak_prob + w.term_prob {
                ("+TERM".into(), true)
            } else if roll < w.ack_prob + w.nak_prob + w.term_prob + w.wpi_prob {
                ("+WPI".into(), false)
            } else {
                // Ignored: its ack wait runs out and it comes back.
                continue;
            };
            let confirm = done && (self.draining || self.work.random_bool(self.w.confirm_share));
            match body.as_str() {
                "+ACK" => self.checker.stats.acks += 1,
                "+TERM" => self.checker.stats.terms += 1,
                b if b.starts_with("-NAK") => self.checker.stats.naks += 1,
                _ => {}
            }
            let reply = confirm.then(|| self.reply(&format!("ackc.{c}.{}", d.sseq)));
            let now = self.now();
            let info = confirm.then(|| self.reply(&format!("info.{c}")));
            let Some(m) = self.node.as_mut() else { return };
            m.handle(now, &d.ack_subject, reply.as_deref(), None, body.as_bytes());
            if let Some(info) = info {
                // Its answer comes out in the same flush as the confirmation: the floor it
                // reports is then known durable.
                let subject =
                    format!("$JS.API.CONSUMER.INFO.{STREAM}.{}", self.w.consumers[c].name);
                m.handle(now, &subject, Some(&info), None, b"");
            }
            // An ack of a delivery the running incarnation made is applied. One from before a
            // crash may name a message the recovered state never handed out (its state was
            // written lazily): ignored, as nats-server ignores acks above its delivered
            // sequence, so it promises nothing.
            if done {
                let applied = d.epoch == self.checker.epoch();
                self.checker.ack_sent(c, d.sseq, applied);
            }
        }
    }

    fn flush(&mut self) -> Result<(), String> {
        let now = self.now();
        let Some(m) = self.node.as_mut() else { return Ok(()) };
        let outs = Self::flush_node(m, now);
        self.route(outs)
    }

    /// What the node sent, to the clients it was for.
    fn route(&mut self, outs: Vec<Outgoing>) -> Result<(), String> {
        self.confirmed_now.iter_mut().for_each(|b| *b = false);
        for o in outs {
            self.digest.write(o.to.as_bytes());
            self.digest.write(o.reply.as_deref().unwrap_or_default().as_bytes());
            let mut parts = o.to.split('.');
            let kind = parts.next().unwrap_or("");
            let a: Option<u64> = parts.next().and_then(|p| p.parse().ok());
            let b: Option<u64> = parts.next().and_then(|p| p.parse().ok());
            match (kind, a, b) {
                ("pub", Some(id), _) => {
                    let v: Value = serde_json::from_slice(&o.payload)
                        .map_err(|e| format!("PubAck not JSON: {e}"))?;
                    let Some(seq) =
                        v.get("seq").and_then(Value::as_u64).filter(|_| v.get("error").is_none())
                    else {
                        return Err(format!("publish {id} refused: {v}"));
                    };
                    if self.trace {
                        println!("               PubAck publish {id} seq {seq}");
                    }
                    self.checker.puback(id as usize, seq).map_err(fail)?;
                }
                ("pull", Some(c), _) => {
                    let client = &mut self.clients[c as usize];
                    let Some(ack) = o.reply.filter(|r| r.starts_with("$JS.ACK.")) else {
                        // A status (timeout, no messages, refused): the request is over.
                        client.outstanding.remove(&o.to);
                        continue;
                    };
                    if let Some((_, left)) = client.outstanding.get_mut(&o.to) {
                        *left = left.saturating_sub(1);
                        if *left == 0 {
                            client.outstanding.remove(&o.to);
                        }
                    }
                    let sseq: u64 = ack
                        .split('.')
                        .nth(5)
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| format!("bad ack subject {ack}"))?;
                    if self.trace {
                        println!("               deliver {ack}");
                    }
                    let c = c as usize;
                    self.checker.delivery(c, sseq, &o.subject, &o.payload).map_err(fail)?;
                    let epoch = self.checker.epoch();
                    self.clients[c].inbox.push(Delivery { sseq, ack_subject: ack, epoch });
                }
                ("ackc", Some(c), Some(sseq)) => {
                    if self.trace {
                        println!("               ack of {sseq} confirmed to consumer {c}");
                    }
                    self.checker.confirmed(c as usize, sseq);
                    self.confirmed_now[c as usize] = true;
                }
                ("info", Some(c), _) => {
                    let c = c as usize;
                    if self.confirmed_now[c] {
                        let v: Value = serde_json::from_slice(&o.payload)
                            .map_err(|e| format!("consumer info not JSON: {e}"))?;
                        if let Some(floor) = v["ack_floor"]["stream_seq"].as_u64() {
                            self.checker.durable_floor(c, floor);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Power loss: the process and its unsynced writes are gone.
    fn crash(&mut self) {
        if self.trace {
            println!("               power loss");
        }
        self.node = None;
        self.disk.with(MemDisk::crash);
        self.checker.crashed();
        for c in &mut self.clients {
            c.outstanding.clear();
        }
    }

    /// Recovery, then the checks of what it brought back.
    fn restart(&mut self) -> Result<(), String> {
        self.open()?;
        let info = self.call(&format!("$JS.API.STREAM.INFO.{STREAM}"), b"")?;
        let state = &info["state"];
        let (Some(first), Some(last), Some(msgs)) =
            (state["first_seq"].as_u64(), state["last_seq"].as_u64(), state["messages"].as_u64())
        else {
            return Err(format!("stream lost or unreadable after recovery: {info}"));
        };
        self.digest.write_u64(last);
        self.digest.write_u64(msgs);
        if self.trace {
            println!("               recovered: {msgs} messages in {first}..={last}");
        }
        let seqs = self.checker.acked_seqs();
        let bodies: Vec<Vec<u8>> =
            seqs.iter().map(|seq| json!({"seq": seq}).to_string().into_bytes()).collect();
        let answers = self.call_many(&format!("$JS.API.STREAM.MSG.GET.{STREAM}"), &bodies)?;
        let mut held = std::collections::BTreeMap::new();
        for (seq, v) in seqs.into_iter().zip(answers) {
            let m = &v["message"];
            let view = v.get("error").is_none().then(|| StoredView {
                subject: m["subject"].as_str().unwrap_or_default().to_string(),
                data_b64: m["data"].as_str().unwrap_or_default().to_string(),
            });
            held.insert(seq, view);
        }
        self.checker.recovered(first, last, msgs, &held).map_err(fail)?;
        for c in 0..self.w.consumers.len() {
            let v = self.consumer_info(c)?;
            let floor = v["ack_floor"]["stream_seq"].as_u64().unwrap_or(0);
            self.checker.recovered_floor(c, floor).map_err(fail)?;
        }
        Ok(())
    }

    fn consumer_info(&mut self, c: usize) -> Result<Value, String> {
        let name = self.w.consumers[c].name.clone();
        let v = self.call(&format!("$JS.API.CONSUMER.INFO.{STREAM}.{name}"), b"")?;
        if v.get("error").is_some() {
            return Err(format!("consumer {name} lost after recovery: {v}"));
        }
        Ok(v)
    }

    /// The end checks once every consumer is done, or when `last`; `Some(messages left)` (pending
    /// plus awaiting an ack, over all consumers) while they are still working.
    fn finish(&mut self, last: bool) -> Result<Option<u64>, String> {
        self.flush()?;
        let mut left = Vec::new();
        for c in 0..self.w.consumers.len() {
            let v = self.consumer_info(c)?;
            left.push((
                v["num_pending"].as_u64().unwrap_or(0),
                v["num_ack_pending"].as_u64().unwrap_or(0),
            ));
        }
        if !last && left.iter().any(|&(p, a)| p > 0 || a > 0) {
            return Ok(Some(left.iter().map(|&(p, a)| p + a).sum()));
        }
        self.checker.finish(&left).map_err(fail)?;
        // Every consumer is done with every message: retention must have removed them all,
        // unless some were out of deliveries (interest keeps those).
        let unlimited = self.w.consumers.iter().all(|c| c.max_deliver < 0);
        if self.w.retention != Retention::Limits && unlimited {
            let info = self.call(&format!("$JS.API.STREAM.INFO.{STREAM}"), b"")?;
            let msgs = info["state"]["messages"].as_u64().unwrap_or(0);
            if msgs > 0 {
                return Err(format!(
                    "{} retention kept {msgs} messages every consumer is done with: {}",
                    self.w.retention.name(),
                    info["state"]
                ));
            }
        }
        Ok(None)
    }
}
