//! The Raft workload: clean seeds pass and replay identically, each Raft canary is found within
//! a stated number of seeds by the checker meant for it, and the printed replay command
//! reproduces the failure.

use std::process::Command;

use fjord_sim::cli::explore;
use fjord_sim::workload::raft::{self, RaftWorld};
use fjord_sim::{Canary, Overrides, Workload, World};

fn raft_world(canary: Canary) -> Overrides {
    Overrides { canary, workload: Workload::Raft, ..Overrides::default() }
}

fn found(canary: Canary, seeds: std::ops::Range<u64>, expect: &[&str]) {
    // Seed by seed, stopping at the first failure: debug builds are slow.
    let first = seeds.clone().find_map(|seed| {
        explore(seed, 1, None, raft_world(canary), true).failures.into_iter().next()
    });
    let Some((seed, message, replay)) = &first else {
        panic!("canary {} not found in seeds {seeds:?}", canary.name());
    };
    assert!(
        expect.iter().any(|e| message.contains(e)),
        "canary {} caught by another check: {message}",
        canary.name()
    );
    println!("canary {}: first found at seed {seed} (in {seeds:?})", canary.name());
    let args: Vec<&str> = replay
        .split_once(" -- ")
        .map(|(_, a)| a.split_whitespace().collect())
        .expect("replay line names the fjord-sim arguments");
    assert!(args.contains(&"raft"), "replay line selects the raft workload: {replay}");
    let out = Command::new(env!("CARGO_BIN_EXE_fjord-sim")).args(&args).output().expect("runs");
    assert_eq!(out.status.code(), Some(1), "replay of seed {seed} must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(message.as_str()), "replay differs: {stderr} vs {message}");
}

/// Losing acknowledged entries shows as a committed entry that changes (or an acknowledged
/// proposal missing). Today the first failure is at seed 3 (about 1 seed in 35 fails).
#[test]
fn raft_ack_before_sync_is_found() {
    found(
        Canary::RaftAckBeforeSync,
        0..60,
        &["state machine safety", "leader completeness", "acknowledged"],
    );
}

/// Forgetting the vote shows as two leaders in one term (or its consequences). Today the first
/// failure is at seed 64 (a few seeds in 100 fail: it needs a crash between two candidates'
/// requests, which the aimed crashes and leader churn make common; it was 45 before pipelined
/// replication changed the runs' schedules).
#[test]
fn raft_forget_vote_is_found() {
    found(
        Canary::RaftForgetVote,
        0..100,
        &["election safety", "state machine safety", "leader completeness"],
    );
}

#[test]
fn raft_clean_seeds_pass_replay_identically_and_cover_every_cluster_size() {
    let report = explore(0, 30, None, raft_world(Canary::None), true);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let mut sizes = std::collections::BTreeSet::new();
    for seed in 0..30 {
        let world = World::draw(seed, raft_world(Canary::None));
        sizes.insert(RaftWorld::draw(&world).nodes);
    }
    assert_eq!(sizes.into_iter().collect::<Vec<_>>(), vec![1, 3, 5]);
    for seed in 0..3 {
        let a = fjord_sim::run_seed(seed, raft_world(Canary::None), false);
        let b = fjord_sim::run_seed(seed, raft_world(Canary::None), false);
        assert_eq!((a.digest, a.events), (b.digest, b.events), "seed {seed}");
        assert!(a.events > 0);
    }
    // The workload does real work: proposals are acknowledged, elections happen.
    let (outcome, stats) = raft::run(World::draw(1, raft_world(Canary::None)), false);
    assert!(outcome.failure.is_none(), "{:?}", outcome.failure);
    assert!(stats.acked > 50 && stats.elections >= 1, "{stats:?}");
    // Key-value commands are a real share of it, and their history was decided.
    assert!(stats.kv_ops > 20 && stats.kv_unknown == 0, "{stats:?}");
}

/// Committing an earlier term's entry by counting (Figure 8) shows as a new leader without an
/// entry some node counted committed. The interleaving is rare (about 1 seed in 1500), so the
/// test searches a stated window where it is known to occur: since the process faults (pauses,
/// disk loss) joined the worlds, seed 50 no longer fails; the first failure of the first 6000
/// seeds is seed 3190 (leader completeness). If a change in what worlds draw loses it, find a new one with
/// `fjord-sim explore --workload raft --canary raft-commit-prev-term --seeds 5000` and restate.
/// The rule itself is pinned down deterministically by core's
/// `commit_only_current_term_by_counting`.
#[test]
fn raft_commit_previous_term_by_counting_is_found() {
    found(
        Canary::RaftCommitPrevTerm,
        3150..3210,
        &["leader completeness", "state machine safety", "acknowledged"],
    );
}

/// A node that loses its whole disk and comes back as a blank voter (plain Raft, without the
/// fenced replacement the wipe fault models) forgets entries it helped commit and votes again
/// in terms it voted in. Today the first failure is at seed 185 (2 of the first 600 seeds
/// fail, by leader completeness or two leaders in a term: only worlds that draw a disk-loss
/// rate, a 3- or 5-node cluster and no membership changes can).
#[test]
fn raft_disk_loss_without_fence_is_found() {
    found(
        Canary::RaftWipeUnfenced,
        0..250,
        &["leader completeness", "election safety", "state machine safety", "acknowledged"],
    );
}

/// A paused node that never resumes must fail the liveness phase: proof that a pause really
/// stops the node's messages, timers and syncs, and that liveness notices a stuck node. Today
/// the first failure is at seed 4.
#[test]
fn raft_pause_without_resume_is_found() {
    found(Canary::PauseForever, 0..30, &["liveness"]);
}

/// A driver that stops ticking a due timer leaves the node's timer due at the same instant:
/// the spin check must say so (the first such seed is 0).
#[test]
fn raft_timer_that_stays_due_is_found() {
    found(Canary::RaftSkipTick, 0..10, &["spins"]);
}

/// A `get` answered from the contacted node's local register without a round through the log
/// reads stale values (a follower behind, a deposed leader): the linearizability check of the
/// key-value history must say so. Today the first failure is at seed 1 (about half of the
/// first 30 seeds fail).
#[test]
fn raft_kv_stale_read_is_found() {
    found(Canary::KvStaleRead, 0..20, &["linearizability"]);
}

/// Truncating a corrupted entry (as if it were a torn, never-acknowledged tail) instead of
/// keeping it faulty for repair forgets an acknowledged entry: the node then votes for a
/// candidate without it, which shows as a leader without a committed entry (or a committed
/// entry overwritten or applied differently). This canary's worlds flip a WAL bit at every
/// crash of a damageable node. Today the first failure is at seed 188 (22 of the first 2000
/// seeds fail; the same worlds without the mutation pass 3000 of 3000).
#[test]
fn raft_truncate_corrupt_entry_is_found() {
    found(
        Canary::RaftTruncateCorrupt,
        0..250,
        &[
            "leader completeness",
            "state machine safety",
            "overwrite a committed entry",
            "acknowledged",
        ],
    );
}
