//! The store workload: one node's FileStore over a faulty MemDisk, driven by simulated clients.
//!
//! Clients issue random operations (store, load, query, remove, erase, purge by filter,
//! compact, truncate, skip, purge) at random times; a group commit (`flush`) runs at its own
//! random times and acknowledges every store since the previous one. Between operations the
//! disk takes the faults the world draws: power loss (the node crashes and recovers: unsynced
//! writes are lost, or a prefix of them survives with the last torn), bit flips in durable
//! bytes (each recorded in the [`FaultAtlas`]), read errors, and spells of a full disk. At the
//! end faults stop, a last flush runs, the power goes once more and everything acknowledged
//! must be back. `checker::store` says what is checked.
//!
//! The world (what a seed draws) comes from its own stream, `store-world`, so the pub/sub
//! world of the same seed is untouched, and so are existing seeds' runs. The event queue is
//! local: these events mean nothing to the pub/sub loop, and keeping them out of the shared
//! `Event` enum lets both grow independently.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use fjord_core::disk::{Disk, FaultConfig, MemDisk};
use fjord_core::store::record::{self, Kind};
use fjord_core::store::{
    plain_block, Canaries, FileStore, FileStoreConfig, Limits, RecoveryReport, StoreError,
    StoredMsg, StreamStore,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::checker::store::{Excuses, Op, Recovered, StoreChecker, StoreStats};
use crate::checker::Violation;
use crate::clock::NodeClock;
use crate::engine::SimTime;
use crate::rng::{self, Fnv64};
use crate::sim::Outcome;
use crate::world::{Canary, World};

const SUBJECTS: &[&[u8]] = &[b"orders.eu", b"orders.us", b"orders.us.west", b"kv.a", b"kv.b"];
const FILTERS: &[&[u8]] = &[b">", b"orders.*", b"orders.>", b"kv.a", b"kv.*", b"nothing.here"];
const DIR: &str = "streams/s1";

/// What a seed draws for the store workload.
#[derive(Clone, Debug)]
pub struct StoreWorld {
    pub seed: u64,
    pub clients: usize,
    pub safety: Duration,
    pub op_gap: Duration,
    pub burst_max: u32,
    pub flush_gap: Duration,
    pub payload_max: usize,
    pub headers_prob: f64,
    pub block_size: u64,
    pub checkpoint_every: u64,
    /// Power losses per simulated second.
    pub crash_rate: f64,
    pub torn_writes: bool,
    pub tear_block: u64,
    /// Bit flips in durable bytes per simulated second.
    pub flip_rate: f64,
    pub read_error_per_million: u32,
    /// Spells of a full disk per simulated second, and their mean length.
    pub full_rate: f64,
    pub full_len: Duration,
    pub canary: Canary,
    /// The store's block cache budget (0: every load reads the disk).
    pub cache_bytes: u64,
    /// Sealed blocks are compressed (snappy).
    pub compress: bool,
    /// Steps of the node's wall clock per simulated second (0: none), and the largest step;
    /// half go backward. Message timestamps and `max_age` read the wall clock.
    pub wall_jump_rate: f64,
    pub wall_jump_max: Duration,
    /// The stream's `max_age` (zero: none), applied by an `expire` every `expire_gap` or so.
    pub max_age: Duration,
    pub expire_gap: Duration,
}

pub(crate) fn rate(r: &mut impl Rng, zero_share: f64, max: f64) -> f64 {
    if r.random_bool(zero_share) {
        0.0
    } else {
        r.random_range(0.0..max)
    }
}

impl StoreWorld {
    /// The clock faults and expiry, from their own stream so the draws above keep their values
    /// (the fields not set here are placeholders, overwritten by `draw`).
    fn draw_clock(seed: u64) -> StoreWorld {
        let r = &mut rng::stream(seed, "store-world-clock", 0);
        StoreWorld {
            seed,
            clients: 0,
            safety: Duration::ZERO,
            op_gap: Duration::ZERO,
            burst_max: 1,
            flush_gap: Duration::ZERO,
            payload_max: 0,
            headers_prob: 0.0,
            block_size: 0,
            checkpoint_every: 0,
            crash_rate: 0.0,
            torn_writes: false,
            tear_block: 0,
            flip_rate: 0.0,
            read_error_per_million: 0,
            full_rate: 0.0,
            full_len: Duration::ZERO,
            canary: Canary::None,
            cache_bytes: 0,
            compress: false,
            wall_jump_rate: rate(r, 0.3, 4.0),
            wall_jump_max: Duration::from_millis(
                [10, 500, 5_000, 3_600_000][r.random_range(0..4usize)],
            ),
            max_age: if r.random_bool(0.3) {
                Duration::ZERO
            } else {
                Duration::from_millis(r.random_range(20..=3_000))
            },
            expire_gap: Duration::from_millis(r.random_range(5..=500)),
        }
    }

    pub fn draw(world: &World) -> StoreWorld {
        let r = &mut rng::stream(world.seed, "store-world", 0);
        StoreWorld {
            seed: world.seed,
            clients: world.clients,
            safety: Duration::from_millis(r.random_range(1_000..=8_000)),
            op_gap: Duration::from_micros(r.random_range(2_000..=100_000)),
            burst_max: r.random_range(1..=4),
            flush_gap: Duration::from_micros(r.random_range(500..=100_000)),
            payload_max: [0, 16, 300, 3000][r.random_range(0..4usize)],
            headers_prob: r.random_range(0.0..0.5),
            block_size: [300, 1024, 4096, 65536][r.random_range(0..4usize)],
            checkpoint_every: r.random_range(0..=6),
            crash_rate: rate(r, 0.15, 4.0),
            torn_writes: r.random_bool(0.7),
            tear_block: [16, 64, 512, 4096][r.random_range(0..4usize)],
            flip_rate: rate(r, 0.25, 6.0),
            read_error_per_million: if r.random_bool(0.5) { 0 } else { r.random_range(1..=20_000) },
            full_rate: rate(r, 0.5, 1.0),
            full_len: Duration::from_millis(r.random_range(5..=500)),
            canary: world.canary,
            // Drawn last so the draws above keep their values.
            cache_bytes: [0, 4096, 65536, 32 << 20][r.random_range(0..4usize)],
            // Also drawn last (it was once behind an environment switch, so seeds kept their
            // other draws when it came on).
            compress: r.random_bool(0.5),
            ..StoreWorld::draw_clock(world.seed)
        }
    }
}

impl fmt::Display for StoreWorld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "world seed={} workload=store", self.seed)?;
        writeln!(
            f,
            "  clients={} safety={:?} op_gap={:?} burst<={} flush_gap={:?} payload<={} headers={:.2}",
            self.clients,
            self.safety,
            self.op_gap,
            self.burst_max,
            self.flush_gap,
            self.payload_max,
            self.headers_prob
        )?;
        writeln!(
            f,
            "  store: block_size={} checkpoint_every={} cache_bytes={} compress={}",
            self.block_size, self.checkpoint_every, self.cache_bytes, self.compress
        )?;
        writeln!(
            f,
            "  disk faults: power_loss={:.3}/s torn_writes={} tear_block={} bit_flips={:.3}/s read_errors={}/M full_disk={:.3}/s for ~{:?}",
            self.crash_rate,
            self.torn_writes,
            self.tear_block,
            self.flip_rate,
            self.read_error_per_million,
            self.full_rate,
            self.full_len
        )?;
        writeln!(
            f,
            "  clock: wall_jumps={:.3}/s (<= {:?}, either way) max_age={:?} expire_gap={:?}",
            self.wall_jump_rate, self.wall_jump_max, self.max_age, self.expire_gap
        )?;
        if self.canary != Canary::None {
            writeln!(f, "  CANARY: {}", self.canary.name())?;
        }
        Ok(())
    }
}

/// What a bit flip hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// A block record: its kind and the sequence its header names.
    Record {
        kind: u8,
        seq: u64,
    },
    Checkpoint,
    /// A compressed block: a flip anywhere loses the whole block, so every sequence its
    /// records name (`first..=last`) is excused.
    Block {
        first: u64,
        last: u64,
    },
    /// Bytes that do not parse as records (already damaged): nothing precise can be said.
    Unknown,
}

/// One injected corruption.
#[derive(Clone, Debug)]
pub struct Hit {
    pub at: u64,
    pub node: usize,
    pub path: String,
    pub bit: u64,
    pub target: Target,
}

/// The record of which data was corrupted where. Replicated workloads ask `allows` before
/// flipping, so a given record is damaged on at most a minority of the replicas (the rest can
/// repair it); with one node every flip is allowed and only recorded.
#[derive(Clone, Debug, Default)]
pub struct FaultAtlas {
    pub nodes: usize,
    pub hits: Vec<Hit>,
}

impl FaultAtlas {
    pub fn new(nodes: usize) -> Self {
        FaultAtlas { nodes, hits: Vec::new() }
    }

    /// May `node` take damage on `target` and leave it intact on a majority?
    pub fn allows(&self, node: usize, target: Target) -> bool {
        if self.nodes <= 1 {
            return true;
        }
        let damaged: BTreeSet<usize> = self
            .hits
            .iter()
            .filter(|h| h.target == target && h.node != node)
            .map(|h| h.node)
            .chain(std::iter::once(node))
            .collect();
        2 * damaged.len() < self.nodes
    }

    pub fn record(&mut self, hit: Hit) {
        self.hits.push(hit);
    }

    /// What the checker must excuse on `node`.
    pub fn excuses(&self, node: usize) -> Excuses {
        let mut ex = Excuses::default();
        for h in self.hits.iter().filter(|h| h.node == node) {
            ex.any = true;
            match h.target {
                Target::Record { kind, seq }
                    if [Kind::Msg, Kind::Tombstone, Kind::Erased, Kind::Skip]
                        .iter()
                        .any(|k| *k as u8 == kind) =>
                {
                    ex.seqs.insert(seq);
                }
                Target::Checkpoint => {}
                Target::Block { first, last } => {
                    ex.seqs.extend(first..=last);
                    ex.relaxed = true;
                }
                _ => ex.relaxed = true,
            }
        }
        ex
    }
}

/// The record holding byte `offset` of a block, walking headers from the start. A record
/// already damaged is stepped over the way recovery does (to the next record whose checksums
/// both hold); a byte inside such damage is `Unknown`.
fn locate(data: &[u8], offset: u64) -> Target {
    let mut off = 0usize;
    while off < data.len() {
        let end = match record::decode_header(&data[off..]) {
            Ok(h) => {
                let end = off + h.record_len();
                if (off as u64..end as u64).contains(&offset) {
                    return Target::Record { kind: h.kind as u8, seq: h.seq };
                }
                end
            }
            Err(_) => {
                let next = (off + 1..data.len())
                    .find(|&o| record::decode(&data[o..], true).is_ok())
                    .unwrap_or(data.len());
                if (off as u64..next as u64).contains(&offset) {
                    return Target::Unknown;
                }
                next
            }
        };
        off = end;
    }
    Target::Unknown
}

/// The sequences a whole (plain) block's records name.
fn block_range(plain: &[u8]) -> Target {
    let (mut first, mut last, mut off) = (u64::MAX, 0, 0usize);
    while off < plain.len() {
        match record::decode_header(&plain[off..]) {
            Ok(h) => {
                first = first.min(h.seq);
                last = last.max(h.seq);
                off += h.record_len();
            }
            // Step over earlier damage the way recovery does.
            Err(_) => {
                match (off + 1..plain.len()).find(|&o| record::decode(&plain[o..], true).is_ok()) {
                    Some(next) => off = next,
                    None => break,
                }
            }
        }
    }
    if first > last {
        return Target::Unknown;
    }
    Target::Block { first, last }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Op { client: usize },
    Flush,
    Crash,
    Flip,
    DiskFull,
    DiskFree,
    End,
    WallJump,
    Expire,
}

impl Ev {
    fn tag(self) -> u8 {
        match self {
            Ev::Op { .. } => 1,
            Ev::Flush => 2,
            Ev::Crash => 3,
            Ev::Flip => 4,
            Ev::DiskFull => 5,
            Ev::DiskFree => 6,
            Ev::End => 7,
            Ev::WallJump => 8,
            Ev::Expire => 9,
        }
    }
}

struct Run {
    w: StoreWorld,
    now: u64,
    heap: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    next_id: u64,
    work: ChaCha8Rng,
    faults: ChaCha8Rng,
    config: FileStoreConfig,
    limits: Limits,
    store: Option<FileStore<MemDisk>>,
    checker: StoreChecker,
    atlas: FaultAtlas,
    full: bool,
    /// The disk's injected read-error rate now (zero once faults stop).
    read_errors: u32,
    digest: Fnv64,
    events: u64,
    trace: bool,
    /// The node's clocks: no drift (one node has nothing to drift against), wall jumps.
    clock: NodeClock,
}

/// An exponentially distributed gap of mean `mean` (Poisson arrivals), in nanoseconds.
pub(crate) fn exp_gap(rng: &mut ChaCha8Rng, mean: Duration) -> u64 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    (-u.ln() * mean.as_nanos() as f64) as u64
}

fn fail(v: Violation) -> Result<(), String> {
    Err(v.0)
}

/// Runs the store workload for `world`; the second value is what it did, for reports.
pub fn run(world: World, trace: bool) -> (Outcome, StoreStats) {
    let w = StoreWorld::draw(&world);
    let mut config = FileStoreConfig::new(DIR);
    let limits = Limits { max_age: w.max_age.as_nanos() as u64, ..Limits::default() };
    config.block_size = w.block_size;
    config.checkpoint_every = w.checkpoint_every;
    config.cache_bytes = w.cache_bytes;
    config.compress = w.compress;
    config.canaries = Canaries {
        ack_before_sync: w.canary == Canary::StoreAckBeforeSync,
        skip_checksum: w.canary == Canary::StoreSkipChecksum,
    };
    let mut run = Run {
        work: rng::stream(w.seed, "workload", 0),
        faults: rng::stream(w.seed, "faults", 0),
        w,
        now: 0,
        heap: BinaryHeap::new(),
        next_id: 0,
        config,
        limits,
        store: None,
        checker: StoreChecker::default(),
        atlas: FaultAtlas::new(1),
        full: false,
        read_errors: 0,
        digest: Fnv64::default(),
        events: 0,
        trace,
        clock: NodeClock::new(0, 0),
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

impl Run {
    fn push(&mut self, at: u64, ev: Ev) {
        self.next_id += 1;
        self.heap.push(Reverse((at, self.next_id, ev)));
    }

    fn go(&mut self) -> Result<(), String> {
        let disk_seed = rng::stream(self.w.seed, "disk", 0).random();
        let faults = FaultConfig {
            torn_writes: self.w.torn_writes,
            tear_block: self.w.tear_block,
            read_error_per_million: self.w.read_error_per_million,
            capacity: None,
        };
        self.read_errors = self.w.read_error_per_million;
        self.recover(MemDisk::new(disk_seed, faults))?;
        for client in 0..self.w.clients {
            let at = exp_gap(&mut self.faults, self.w.op_gap);
            self.push(at, Ev::Op { client });
        }
        let at = exp_gap(&mut self.faults, self.w.flush_gap);
        self.push(at, Ev::Flush);
        for (rate, ev) in [
            (self.w.crash_rate, Ev::Crash),
            (self.w.flip_rate, Ev::Flip),
            (self.w.full_rate, Ev::DiskFull),
        ] {
            if rate > 0.0 {
                let at = exp_gap(&mut self.faults, Duration::from_secs_f64(1.0 / rate));
                self.push(at, ev);
            }
        }
        if self.w.wall_jump_rate > 0.0 {
            let at =
                exp_gap(&mut self.faults, Duration::from_secs_f64(1.0 / self.w.wall_jump_rate));
            self.push(at, Ev::WallJump);
        }
        if !self.w.max_age.is_zero() {
            let at = exp_gap(&mut self.faults, self.w.expire_gap);
            self.push(at, Ev::Expire);
        }
        let end = self.w.safety.as_nanos() as u64;
        self.push(end, Ev::End);
        while let Some(Reverse((at, id, ev))) = self.heap.pop() {
            self.now = at;
            self.events += 1;
            self.digest.write_u64(at);
            self.digest.write_u64(id);
            self.digest.write(&[ev.tag()]);
            if self.trace {
                println!("{} {ev:?}", SimTime(at));
            }
            let safety = at < end;
            match ev {
                Ev::Op { client } if safety => {
                    let burst = self.work.random_range(1..=self.w.burst_max);
                    for _ in 0..burst {
                        self.op()?;
                    }
                    let at = self.now + exp_gap(&mut self.faults, self.w.op_gap);
                    self.push(at, Ev::Op { client });
                }
                Ev::Flush if safety => {
                    self.flush()?;
                    let at = self.now + exp_gap(&mut self.faults, self.w.flush_gap);
                    self.push(at, Ev::Flush);
                }
                Ev::Crash if safety => {
                    self.crash()?;
                    let mean = Duration::from_secs_f64(1.0 / self.w.crash_rate);
                    let at = self.now + exp_gap(&mut self.faults, mean);
                    self.push(at, Ev::Crash);
                }
                Ev::Flip if safety => {
                    self.flip()?;
                    let mean = Duration::from_secs_f64(1.0 / self.w.flip_rate);
                    let at = self.now + exp_gap(&mut self.faults, mean);
                    self.push(at, Ev::Flip);
                }
                Ev::DiskFull if safety => {
                    self.set_full(true)?;
                    let at = self.now + exp_gap(&mut self.faults, self.w.full_len);
                    self.push(at, Ev::DiskFree);
                    let mean = Duration::from_secs_f64(1.0 / self.w.full_rate);
                    let at = self.now + exp_gap(&mut self.faults, mean);
                    self.push(at, Ev::DiskFull);
                }
                Ev::DiskFree => self.set_full(false)?,
                Ev::WallJump if safety => {
                    let most = self.w.wall_jump_max.as_nanos() as i64;
                    let delta = self.faults.random_range(-most..=most);
                    self.clock.jump_wall(delta);
                    self.digest.write_u64(delta as u64);
                    if self.trace {
                        println!("               wall clock steps {delta}ns");
                    }
                    let mean = Duration::from_secs_f64(1.0 / self.w.wall_jump_rate);
                    let at = self.now + exp_gap(&mut self.faults, mean);
                    self.push(at, Ev::WallJump);
                }
                Ev::Expire if safety => {
                    self.expire()?;
                    let at = self.now + exp_gap(&mut self.faults, self.w.expire_gap);
                    self.push(at, Ev::Expire);
                }
                Ev::End => {
                    // Faults stop: the last group commit must succeed, and after one more power
                    // loss everything acknowledged must be back.
                    self.set_full(false)?;
                    self.read_errors = 0;
                    self.disk_mut()?.faults_mut().read_error_per_million = 0;
                    self.flush()?;
                    self.crash()?;
                    return Ok(());
                }
                _ => {}
            }
        }
        Err("the event queue ran dry before the end".into())
    }

    fn store(&mut self) -> Result<&mut FileStore<MemDisk>, String> {
        self.store.as_mut().ok_or_else(|| "no store is open".to_string())
    }

    fn disk_mut(&mut self) -> Result<&mut MemDisk, String> {
        Ok(self.store()?.log_mut().disk_mut())
    }

    fn read_errors_on(&self) -> bool {
        self.read_errors > 0
    }

    /// An error from a mutation: only a full disk excuses one.
    fn mutation_error(&mut self, what: &str, e: StoreError) -> Result<(), String> {
        match e {
            StoreError::Disk(fjord_core::disk::DiskError::NoSpace) if self.full => {
                self.checker.stats.no_space += 1;
                Ok(())
            }
            other => Err(format!("{what}: {other}")),
        }
    }

    fn op(&mut self) -> Result<(), String> {
        let ex = self.atlas.excuses(0);
        let read_errors = self.read_errors_on();
        let model = self.checker.current().clone();
        let first = model.msgs.keys().next().copied().unwrap_or(model.last_seq + 1);
        let last = model.last_seq;
        // A live sequence most of the time, any sequence sometimes.
        let pick = |r: &mut ChaCha8Rng| -> u64 {
            if !model.msgs.is_empty() && r.random_bool(0.8) {
                let i = r.random_range(0..model.msgs.len());
                model.msgs.keys().nth(i).copied().unwrap_or(1)
            } else {
                r.random_range(first.saturating_sub(2)..=last + 2)
            }
        };
        let roll = self.work.random_range(0..100);
        match roll {
            0..=54 => {
                let subject = SUBJECTS[self.work.random_range(0..SUBJECTS.len())];
                let headers: &[u8] = if self.work.random_bool(self.w.headers_prob) {
                    b"NATS/1.0\r\nFjord-Sim: 1\r\n\r\n"
                } else {
                    b""
                };
                let mut payload = vec![0u8; self.work.random_range(0..=self.w.payload_max)];
                self.work.fill(&mut payload[..]);
                let ts = self.wall();
                match self.store()?.store(subject, headers, &payload, ts, None) {
                    Ok(seq) => {
                        self.digest.write_u64(seq);
                        if seq != last + 1 && !ex.any {
                            return Err(format!(
                                "store got seq {seq}, the model's next is {}",
                                last + 1
                            ));
                        }
                        self.record(Op::Store(StoredMsg {
                            seq,
                            subject: Bytes::from_static(subject),
                            headers: Bytes::from_static(headers),
                            payload: payload.into(),
                            ts,
                            ttl: None,
                        }));
                    }
                    Err(e) => self.mutation_error("store", e)?,
                }
            }
            55..=66 => {
                let seq = pick(&mut self.work);
                let got = self.store()?.load(seq);
                self.digest.write(&[u8::from(matches!(got, Ok(Some(_))))]);
                self.checker.check_load(seq, &got, &ex, read_errors).or_else(fail)?;
            }
            67..=71 => {
                let filter = FILTERS[self.work.random_range(0..FILTERS.len())];
                if self.work.random_bool(0.5) {
                    let start = pick(&mut self.work);
                    let got = self.store()?.load_next(filter, start);
                    let want = model.next_matching(filter, start);
                    self.checker
                        .check_query("load_next", want, &got, &ex, read_errors)
                        .or_else(fail)?;
                } else {
                    let got = self.store()?.load_last(filter);
                    let want = model.last_matching(filter);
                    self.checker
                        .check_query("load_last", want, &got, &ex, read_errors)
                        .or_else(fail)?;
                }
            }
            72..=81 => {
                let seq = pick(&mut self.work);
                let erase = roll >= 80;
                let got = if erase { self.store()?.erase(seq) } else { self.store()?.remove(seq) };
                match got {
                    Ok(removed) => {
                        if removed != model.msgs.contains_key(&seq) && !ex.any {
                            return Err(format!(
                                "remove {seq} returned {removed}, the model says the opposite"
                            ));
                        }
                        if removed {
                            self.record(Op::Remove(seq));
                        }
                    }
                    Err(e) => {
                        // An erase whose overwrite failed (a read error on a compressed
                        // block) has still removed the message.
                        if self.store()?.state().msgs < model.msgs.len() as u64 {
                            self.record(Op::Remove(seq));
                        }
                        match e {
                            StoreError::Disk(_) if erase && self.read_errors_on() => {
                                self.checker.stats.read_errors += 1
                            }
                            e => self.mutation_error("remove", e)?,
                        }
                    }
                }
            }
            82..=85 => {
                let filter = FILTERS[self.work.random_range(0..FILTERS.len())];
                let up_to = self.work.random_bool(0.5).then(|| pick(&mut self.work));
                let keep = self.work.random_bool(0.5).then(|| self.work.random_range(0..3));
                let before = self.store()?.state().msgs;
                let got = self.store()?.purge_ex(filter, up_to, keep);
                let after = self.store()?.state().msgs;
                // Each tombstone is its own record, and a power loss may keep a prefix of them:
                // the model gets them one by one. A full disk cuts the purge short after a prefix.
                let ops: Vec<Op> = if filter == b">" && keep.is_none() {
                    vec![match up_to {
                        Some(seq) => Op::Compact(seq),
                        None => Op::Purge,
                    }]
                } else {
                    let mut victims = model.purge_ex_victims(filter, up_to, keep);
                    victims.truncate(before.saturating_sub(after) as usize);
                    victims.into_iter().map(Op::Remove).collect()
                };
                if let Ok(n) = got {
                    if n != before - after && !ex.any {
                        return Err(format!(
                            "purge_ex returned {n}, the message count fell by {}",
                            before - after
                        ));
                    }
                }
                if got.is_ok() || !matches!(ops.first(), Some(Op::Compact(_) | Op::Purge)) {
                    for op in ops {
                        self.record(op);
                    }
                }
                if let Err(e) = got {
                    self.mutation_error("purge_ex", e)?;
                }
            }
            86..=88 => {
                let seq = self.work.random_range(first.saturating_sub(1)..=last + 3);
                match self.store()?.compact(seq) {
                    Ok(_) => self.record(Op::Compact(seq)),
                    Err(e) => self.mutation_error("compact", e)?,
                }
            }
            89..=91 => {
                let seq = self.work.random_range(last.saturating_sub(6)..=last);
                match self.store()?.truncate(seq) {
                    Ok(()) => self.record(Op::Truncate(seq)),
                    Err(e) => self.mutation_error("truncate", e)?,
                }
            }
            92..=95 => {
                let count = self.work.random_range(1..=3);
                let ts = self.wall();
                match self.store()?.skip(count, ts) {
                    Ok(_) => self.record(Op::Skip { count, ts }),
                    Err(e) => self.mutation_error("skip", e)?,
                }
            }
            _ => match self.store()?.purge() {
                Ok(_) => self.record(Op::Purge),
                Err(e) => self.mutation_error("purge", e)?,
            },
        }
        self.compare_state(ex.any)
    }

    /// After a mutation: the store's sequence and message count are the model's (unless a bit
    /// flip excuses a difference).
    fn compare_state(&mut self, excused: bool) -> Result<(), String> {
        let state = self.store()?.state();
        self.digest.write_u64(state.last_seq);
        self.digest.write_u64(state.msgs);
        let model = self.checker.current();
        if !excused && (state.last_seq, state.msgs) != (model.last_seq, model.msgs.len() as u64) {
            return Err(format!(
                "store state (last_seq {}, msgs {}) differs from the model ({}, {})",
                state.last_seq,
                state.msgs,
                model.last_seq,
                model.msgs.len()
            ));
        }
        Ok(())
    }

    /// The node's wall clock now: what message timestamps and expiry read.
    fn wall(&self) -> i64 {
        self.clock.wall(self.now).0
    }

    /// `max_age` expiry at the wall clock's reading. Timestamps need not rise with sequences
    /// (the wall clock steps back), so what expires is every message old enough by its own
    /// timestamp, not a prefix; the model removes exactly those, in ascending order (a power
    /// loss keeps a prefix of the tombstones, as for any other series of removes).
    fn expire(&mut self) -> Result<(), String> {
        let now = self.wall();
        // The canary: expiry fed a clock that ignores the wall clock's steps.
        let seen = if self.w.canary == Canary::StoreExpireMonotonic {
            crate::clock::WALL_ORIGIN + self.now as i64
        } else {
            now
        };
        let ex = self.atlas.excuses(0);
        let cutoff = now.saturating_sub(self.limits.max_age.min(i64::MAX as u64) as i64);
        let mut victims: Vec<u64> = self
            .checker
            .current()
            .msgs
            .values()
            .filter(|m| m.ts <= cutoff)
            .map(|m| m.seq)
            .collect();
        let before = self.store()?.state().msgs;
        let got = self.store()?.expire(seen);
        let after = self.store()?.state().msgs;
        self.digest.write_u64(before - after);
        if let Ok(n) = got {
            if n != victims.len() as u64 && !ex.any {
                return Err(format!(
                    "expire at wall clock {now} (max_age {}ns) removed {n} messages, the model expected {} ({victims:?})",
                    self.limits.max_age,
                    victims.len()
                ));
            }
        }
        victims.truncate(before.saturating_sub(after) as usize);
        self.checker.stats.expired += victims.len() as u64;
        for seq in victims {
            self.record(Op::Remove(seq));
        }
        if let Err(e) = got {
            self.mutation_error("expire", e)?;
        }
        self.compare_state(ex.any)
    }

    fn record(&mut self, op: Op) {
        if self.trace {
            match &op {
                Op::Store(m) => println!(
                    "               store seq {} {:?} {}+{} bytes",
                    m.seq,
                    String::from_utf8_lossy(&m.subject),
                    m.headers.len(),
                    m.payload.len()
                ),
                other => println!("               {other:?}"),
            }
        }
        self.checker.record(op);
    }

    fn flush(&mut self) -> Result<(), String> {
        match self.store()?.flush() {
            Ok(acked) => {
                if self.trace {
                    println!("               flush acknowledged {acked:?}");
                }
                self.digest.write_u64(acked.len() as u64);
                self.checker.flushed(&acked).or_else(fail)
            }
            Err(e) => self.mutation_error("flush", e),
        }
    }

    fn set_full(&mut self, full: bool) -> Result<(), String> {
        self.full = full;
        let headroom = self.faults.random_range(0..2048u64);
        let disk = self.disk_mut()?;
        disk.faults_mut().capacity = if full {
            let mut used = 0;
            for p in disk.paths() {
                used += disk.len(&p).unwrap_or(0);
            }
            Some(used + headroom)
        } else {
            None
        };
        Ok(())
    }

    /// A bit flip in durable bytes, placed with the atlas.
    fn flip(&mut self) -> Result<(), String> {
        let disk = self.disk_mut()?;
        // The durable view: what a power loss would leave, with nothing torn in.
        let mut durable = disk.clone();
        durable.faults_mut().torn_writes = false;
        durable.faults_mut().read_error_per_million = 0;
        durable.crash();
        let paths = durable.paths();
        if paths.is_empty() {
            return Ok(());
        }
        // A random durable byte of the store, so bigger files take proportionally more flips.
        let mut files = Vec::new();
        let mut total = 0u64;
        for p in paths {
            let Ok(data) = durable.read_all(&p) else { continue };
            total += data.len() as u64;
            files.push((p, data));
        }
        if total == 0 {
            return Ok(());
        }
        let mut bit = self.faults.random_range(0..total * 8);
        let mut chosen = None;
        for (p, data) in files {
            let bits = data.len() as u64 * 8;
            if bit < bits {
                chosen = Some((p, data));
                break;
            }
            bit -= bits;
        }
        let Some((path, data)) = chosen else { return Ok(()) };
        let target = if !path.ends_with(".blk") {
            Target::Checkpoint
        } else if data.starts_with(b"FJSZ") {
            match plain_block(&data) {
                Some(plain) => block_range(&plain),
                None => Target::Unknown,
            }
        } else {
            match locate(&data, bit / 8) {
                // Inside earlier damage: excuse every sequence the block names.
                Target::Unknown => block_range(&data),
                t => t,
            }
        };
        if !self.atlas.allows(0, target) {
            return Ok(());
        }
        self.disk_mut()?.flip_bit(&path, bit).map_err(|e| format!("flip: {e}"))?;
        self.checker.stats.flips += 1;
        self.digest.write_u64(bit);
        if self.trace {
            println!("               flip {path} bit {bit}: {target:?}");
        }
        self.atlas.record(Hit { at: self.now, node: 0, path, bit, target });
        Ok(())
    }

    /// Power loss, then recovery and the checks.
    fn crash(&mut self) -> Result<(), String> {
        let store = self.store.take().ok_or("no store is open")?;
        let mut disk = store.into_log().into_disk();
        if self.trace {
            let show = |d: &mut MemDisk| {
                let mut files = Vec::new();
                for p in d.paths() {
                    let len = d.len(&p).unwrap_or(0);
                    files.push(format!("{}={len}", p.rsplit('/').next().unwrap_or("")));
                }
                files.join(" ")
            };
            println!("               before power loss: {}", show(&mut disk));
            disk.crash();
            println!("               after power loss: {}", show(&mut disk));
            return self.recover(disk);
        }
        disk.crash();
        self.recover(disk)
    }

    /// Opens the store (recovery). Injected read errors may fail an attempt, as they would make
    /// a real node's restart fail; the node retries, and the last try has read errors off.
    fn recover(&mut self, mut disk: MemDisk) -> Result<(), String> {
        let read_errors = self.read_errors;
        disk.faults_mut().read_error_per_million = read_errors;
        let mut opened = None;
        for attempt in 0..4 {
            let mut copy = disk.clone();
            if attempt == 3 {
                copy.faults_mut().read_error_per_million = 0;
            }
            match FileStore::open(copy, self.config.clone(), self.limits) {
                Ok(ok) => {
                    opened = Some(ok);
                    break;
                }
                Err(StoreError::Disk(e)) if read_errors > 0 && attempt < 3 => {
                    self.checker.stats.read_errors += 1;
                    if self.trace {
                        println!("               recovery attempt failed: {e}");
                    }
                    // Move the disk's generator on so the retry draws different read errors.
                    let _: u64 = disk.rng().random();
                }
                Err(e) => return Err(format!("recovery failed: {e}")),
            }
        }
        let (mut store, report) = opened.ok_or("recovery failed after retries")?;
        store.log_mut().disk_mut().faults_mut().read_error_per_million = 0;
        let recovered = self.inspect(&mut store, &report);
        store.log_mut().disk_mut().faults_mut().read_error_per_million = read_errors;
        self.checker.stats.torn_bytes += report.torn_bytes;
        self.checker.stats.recoveries_from_checkpoint += u64::from(report.used_checkpoint);
        self.digest.write_u64(report.torn_bytes);
        self.digest.write_u64(report.records_replayed);
        self.digest.write_u64(recovered.live.len() as u64);
        if self.trace {
            println!(
                "               recovered: checkpoint {} torn {} replayed {} corrupt {:?} live {} last {}",
                report.used_checkpoint,
                report.torn_bytes,
                report.records_replayed,
                report.corrupt,
                recovered.live.len(),
                recovered.last_seq
            );
        }
        self.store = Some(store);
        self.checker.recovered(&recovered, &self.atlas.excuses(0)).or_else(fail)
    }

    /// Reads back everything the recovered store holds (read errors are off: the checker is
    /// an observer, not a client).
    fn inspect(&self, store: &mut FileStore<MemDisk>, report: &RecoveryReport) -> Recovered {
        let state = store.state();
        let deleted: BTreeSet<u64> = store.deleted().into_iter().collect();
        let live: BTreeSet<u64> = if state.msgs == 0 {
            BTreeSet::new()
        } else {
            (state.first_seq..=state.last_seq).filter(|s| !deleted.contains(s)).collect()
        };
        let mut loads = BTreeMap::new();
        for &seq in &live {
            let got = match store.load(seq) {
                Ok(Some(m)) => Ok(m),
                Ok(None) => Err(StoreError::Corrupt { from: seq, to: Some(seq) }),
                Err(e) => Err(e),
            };
            loads.insert(seq, got);
        }
        let mut missing_loads = BTreeMap::new();
        for seq in self.checker.current().msgs.keys().filter(|s| !live.contains(s)) {
            missing_loads.insert(*seq, store.load(*seq));
        }
        let mut corrupt = report.corrupt.clone();
        corrupt.extend(store.corrupt().iter().copied());
        Recovered { last_seq: state.last_seq, live, loads, corrupt, missing_loads }
    }
}
