//! Raft on the real disk: proposals committed per second by a 3-node group, each node on its
//! own thread and its own `FsDisk` directory, messages passed in memory (loopback, no
//! encoding), group commit (a node writes every `Ready` its inputs produced, then syncs once
//! for all of them before it reports them persisted). A benchmark, not a test: see
//! BENCHMARKS.md, "Raft".
//!
//! ```sh
//! FJORD_BENCH_DIR=/work/bench cargo run --release -p fjord --example raft_bench
//! ```
//!
//! Clients are modelled as a number of proposals kept outstanding at the leader (1, 16,
//! 256): a proposal is done when the leader applies it (committed on a majority, synced).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use fjord::disk::FsDisk;
use fjord_core::raft::{Config, EntryKind, Message, RaftNode, Role, Storage, StorageMutations};
use fjord_core::time::Instant;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const NODES: u64 = 3;
const RUN: Duration = Duration::from_secs(3);
const PAYLOAD: usize = 128;

struct Shared {
    stop: AtomicBool,
    /// Proposals the leader applied since the measurement started.
    committed: AtomicU64,
    /// fsyncs across the three nodes.
    syncs: AtomicU64,
    measuring: AtomicBool,
    leader_seen: AtomicBool,
}

fn now(start: StdInstant) -> Instant {
    Instant(start.elapsed().as_nanos() as u64 + 1)
}

/// One node's thread: inputs, then every `Ready`, then one sync for them all.
fn run_node(
    id: u64,
    dir: PathBuf,
    inbox: Receiver<Message>,
    peers: Vec<Sender<Message>>,
    outstanding: u64,
    shared: Arc<Shared>,
    start: StdInstant,
) {
    let mut disk = FsDisk::new(&dir).expect("bench dir");
    let (mut storage, rec) =
        Storage::open(&mut disk, "raft", StorageMutations::default()).expect("open storage");
    let mut cfg = Config::new(id, (1..=NODES).collect());
    cfg.max_batch = 256;
    cfg.max_in_flight = 4096;
    let rng = ChaCha8Rng::seed_from_u64(id);
    let mut node = RaftNode::new(cfg, rec, rng, now(start));
    // Proposals of this leader's term not yet applied: (index, term) is ours when applied.
    let mut pending: u64 = 0;
    let payload = vec![7u8; PAYLOAD];
    while !shared.stop.load(Ordering::Relaxed) {
        let wait = node
            .poll_timeout()
            .map_or(Duration::from_millis(10), |t| {
                Duration::from_nanos(t.0.saturating_sub(now(start).0))
            })
            .min(Duration::from_millis(10));
        let wait = if node.role() == Role::Leader && pending < outstanding {
            Duration::ZERO
        } else {
            wait
        };
        match inbox.recv_timeout(wait) {
            Ok(m) => node.step(now(start), m),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        while let Ok(m) = inbox.try_recv() {
            node.step(now(start), m);
        }
        let t = now(start);
        if node.poll_timeout().is_some_and(|d| d <= t) {
            node.tick(t);
        }
        if node.role() == Role::Leader {
            shared.leader_seen.store(true, Ordering::Relaxed);
            while pending < outstanding && node.propose(t, payload.clone()).is_ok() {
                pending += 1;
            }
        } else {
            pending = 0;
        }
        // Every batch the inputs produced is written; one sync covers them all.
        loop {
            let (mut last, mut need_sync) = (None, false);
            while node.has_ready() {
                let rd = node.ready();
                let must_persist = rd.must_persist();
                if let Some(hs) = &rd.hard_state {
                    storage.write_hard_state(&mut disk, hs).expect("hard state");
                }
                if let Some(snap) = &rd.snapshot {
                    storage.install_snapshot(&mut disk, snap, rd.snapshot_keeps_log).expect("snap");
                }
                storage.append(&mut disk, &rd.entries).expect("append");
                for m in rd.messages {
                    let _ = peers[(m.to - 1) as usize].send(m);
                }
                for e in &rd.committed {
                    if e.kind == EntryKind::Normal && node.role() == Role::Leader {
                        pending = pending.saturating_sub(1);
                        if shared.measuring.load(Ordering::Relaxed) {
                            shared.committed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                last = Some(rd.number);
                need_sync |= must_persist;
            }
            let Some(number) = last else { break };
            if need_sync {
                storage.sync(&mut disk).expect("sync");
                shared.syncs.fetch_add(1, Ordering::Relaxed);
            }
            node.on_persisted(now(start), number);
            if !node.has_ready() {
                break;
            }
        }
    }
}

/// Committed proposals per second and fsyncs per second (all nodes) for one run.
fn run(outstanding: u64) -> (f64, f64) {
    let base =
        std::env::var("FJORD_BENCH_DIR").map_or_else(|_| std::env::temp_dir(), PathBuf::from);
    let root = base.join(format!("fjord-raft-bench-{}-{outstanding}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        committed: AtomicU64::new(0),
        syncs: AtomicU64::new(0),
        measuring: AtomicBool::new(false),
        leader_seen: AtomicBool::new(false),
    });
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..NODES).map(|_| channel()).unzip();
    let start = StdInstant::now();
    let threads: Vec<_> = receivers
        .into_iter()
        .enumerate()
        .map(|(i, inbox)| {
            let (peers, shared) = (senders.clone(), shared.clone());
            let dir = root.join(format!("n{}", i + 1));
            std::thread::spawn(move || {
                run_node(i as u64 + 1, dir, inbox, peers, outstanding, shared, start)
            })
        })
        .collect();
    while !shared.leader_seen.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Let the elected leader's first round settle, then measure.
    std::thread::sleep(Duration::from_millis(200));
    let syncs0 = shared.syncs.load(Ordering::Relaxed);
    shared.measuring.store(true, Ordering::Relaxed);
    let t0 = StdInstant::now();
    std::thread::sleep(RUN);
    let committed = shared.committed.load(Ordering::Relaxed);
    let syncs = shared.syncs.load(Ordering::Relaxed) - syncs0;
    let secs = t0.elapsed().as_secs_f64();
    shared.stop.store(true, Ordering::Relaxed);
    drop(senders);
    for t in threads {
        t.join().expect("node thread");
    }
    let _ = std::fs::remove_dir_all(&root);
    (committed as f64 / secs, syncs as f64 / secs)
}

fn main() {
    for outstanding in [1u64, 16, 256] {
        let mut runs: Vec<(f64, f64)> = (0..3).map(|_| run(outstanding)).collect();
        let all: Vec<String> = runs.iter().map(|r| format!("{:.0}", r.0)).collect();
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (median, syncs) = runs[1];
        println!(
            "3 nodes, {outstanding:>3} outstanding, {PAYLOAD} B: median {median:>8.0} proposals committed/s (runs {}), {syncs:.0} fsyncs/s in all",
            all.join(" / ")
        );
    }
}
