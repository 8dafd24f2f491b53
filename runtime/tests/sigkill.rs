//! A FileStore on the real disk (`FsDisk`) survives SIGKILL in the middle of its writes.
//!
//! The test re-runs its own binary as a child (`writer_child`, which does nothing unless
//! `FJORD_SIGKILL_DIR` is set). The child opens the store, appends batches of messages whose
//! bytes are a function of their sequence, group-commits each batch with `flush`, and prints
//! `ACK <seq>` for every sequence the flush acknowledged, only after it returned. The parent
//! reads those lines, kills the child with SIGKILL at a varying point (usually mid-batch, with
//! appends and syncs in flight), reads what was already printed, reopens the store and checks
//! that every acknowledged sequence is there with identical bytes. Several rounds continue the
//! same store, so recovery also runs over earlier recoveries' truncated tails and checkpoints.
//!
//! SIGKILL is a process crash, not a power loss: the kernel keeps what was written. What it
//! checks is that nothing the store acknowledged depends on work the process had not finished
//! (a write still in a user-space buffer, a checkpoint half-renamed, a torn record at the tail).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fjord::disk::FsDisk;
use fjord_core::store::{FileStore, FileStoreConfig, Limits, StreamStore};

const DIR_ENV: &str = "FJORD_SIGKILL_DIR";

/// The message stored at `seq`: its length and bytes depend only on the sequence, so the parent
/// knows what every acknowledged sequence must hold without being told.
fn payload(seq: u64) -> Vec<u8> {
    let len = (seq.wrapping_mul(7919) % 3000) as usize;
    let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn subject(seq: u64) -> &'static [u8] {
    [b"orders.eu".as_slice(), b"orders.us", b"kv.a"][(seq % 3) as usize]
}

fn config() -> FileStoreConfig {
    let mut cfg = FileStoreConfig::new("streams/s1");
    // Small blocks and frequent checkpoints: kills land during seals and checkpoint renames too.
    cfg.block_size = 256 * 1024;
    cfg.checkpoint_every = 8;
    cfg
}

/// The child: writes until killed.
#[test]
fn writer_child() {
    let Ok(dir) = std::env::var(DIR_ENV) else { return };
    let disk = FsDisk::new(&dir).expect("store dir");
    let (mut store, _) = FileStore::open(disk, config(), Limits::default()).expect("open");
    let mut batch = 1u64;
    loop {
        for _ in 0..batch {
            let seq = store.state().last_seq + 1;
            let got =
                store.store(subject(seq), b"", &payload(seq), seq as i64, None).expect("store");
            assert_eq!(got, seq);
        }
        for seq in store.flush().expect("flush") {
            // Printed only now: the flush that covers it has returned.
            println!("ACK {seq}");
        }
        batch = batch % 64 + 1;
    }
}

/// Runs one child until it has acknowledged `kill_after` sequences, SIGKILLs it, and returns
/// every sequence it acknowledged.
fn round(dir: &std::path::Path, kill_after: usize) -> Vec<u64> {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "writer_child", "--nocapture", "--test-threads=1"])
        .env(DIR_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the writer");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut acked = Vec::new();
    let started = Instant::now();
    while acked.len() < kill_after {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(seq) = line.strip_prefix("ACK ") {
                    acked.push(seq.trim().parse().expect("ACK <seq>"));
                }
            }
            _ => panic!("the writer stopped before being killed ({} acks)", acked.len()),
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the writer is too slow");
    }
    // std's `kill` is SIGKILL on Unix: no destructor, no flush, no chance to finish a write.
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    // Acknowledgements already in the pipe count too: they were printed after their flush.
    for line in lines.map_while(Result::ok) {
        if let Some(seq) = line.strip_prefix("ACK ") {
            if let Ok(seq) = seq.trim().parse() {
                acked.push(seq);
            }
        }
    }
    acked
}

#[test]
fn acknowledged_writes_survive_sigkill_on_the_real_disk() {
    let dir = std::env::temp_dir().join(format!("fjord-sigkill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut acked: BTreeMap<u64, ()> = BTreeMap::new();
    let mut torn = 0;
    // Kill points vary per round: early (first blocks), mid-batch, after several checkpoints.
    for (i, kill_after) in [150usize, 1_300, 40, 2_500, 700].into_iter().enumerate() {
        let got = round(&dir, kill_after);
        assert!(got.len() >= kill_after, "round {i}: {} acks", got.len());
        acked.extend(got.into_iter().map(|s| (s, ())));

        let disk = FsDisk::new(&dir).expect("store dir");
        let (mut store, report) =
            FileStore::open(disk, config(), Limits::default()).expect("recovery after SIGKILL");
        assert!(
            report.corrupt.is_empty(),
            "round {i}: SIGKILL alone reported corruption: {report:?}"
        );
        torn += report.torn_bytes;
        let last = store.state().last_seq;
        for &seq in acked.keys() {
            let msg = store
                .load(seq)
                .unwrap_or_else(|e| panic!("round {i}: acknowledged seq {seq}: {e}"))
                .unwrap_or_else(|| {
                    panic!("round {i}: acknowledged seq {seq} lost (last_seq {last})")
                });
            assert_eq!(&msg.subject[..], subject(seq), "round {i}: seq {seq} subject");
            assert!(msg.payload[..] == payload(seq)[..], "round {i}: seq {seq} payload differs");
        }
        // Every sequence the store kept, acknowledged or not, holds what was written there.
        for seq in 1..=last {
            if let Ok(Some(msg)) = store.load(seq) {
                assert!(
                    msg.payload[..] == payload(seq)[..],
                    "round {i}: unacked seq {seq} damaged"
                );
            }
        }
        println!(
            "round {i}: {} acknowledged so far, recovered last_seq {last}, torn bytes {}, checkpoint used {}",
            acked.len(),
            report.torn_bytes,
            report.used_checkpoint
        );
    }
    println!("torn bytes cut over all rounds: {torn}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}
