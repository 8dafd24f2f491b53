//! Mutation canaries: each plants a known bug between the server and its clients and asserts
//! that `explore` finds it within a stated number of seeds, with the checker meant for it, and
//! that the printed replay command reproduces the failure.

use std::process::Command;

use fjord_sim::cli::explore;
use fjord_sim::{Canary, Overrides};

/// Every canary must be found within this many seeds from seed 0 (they are found in the first
/// three today; the margin absorbs changes in what the seeds draw).
const WITHIN_SEEDS: u64 = 10;

fn found(canary: Canary, expect: &str) {
    let overrides = Overrides { canary, ..Overrides::default() };
    let report = explore(0, WITHIN_SEEDS, None, overrides, true);
    let Some((seed, message, replay)) = report.failures.first() else {
        panic!("canary {} not found within {WITHIN_SEEDS} seeds", canary.name());
    };
    assert!(
        message.contains(expect),
        "canary {} caught by another check: {message}",
        canary.name()
    );

    // The replay line, run as printed (minus `cargo run ... --`), fails the same way.
    let args: Vec<&str> = replay
        .split_once(" -- ")
        .map(|(_, a)| a.split_whitespace().collect())
        .expect("replay line names the fjord-sim arguments");
    let out = Command::new(env!("CARGO_BIN_EXE_fjord-sim")).args(&args).output().expect("runs");
    assert_eq!(out.status.code(), Some(1), "replay of seed {seed} must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(message.as_str()), "replay differs: {stderr} vs {message}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let replays: Vec<&str> = stdout.lines().filter(|l| l.starts_with("replay: ")).collect();
    assert_eq!(replays, vec![replay.as_str()], "exactly one replay line");
}

#[test]
fn duplicate_delivery_is_found() {
    found(Canary::DuplicateDelivery, "delivered twice");
}

#[test]
fn dropped_delivery_is_found() {
    found(Canary::DropDelivery, "never received");
}

#[test]
fn delivery_to_non_matching_subscriber_is_found() {
    found(Canary::MisrouteDelivery, "does not match the subscription");
}

#[test]
fn queue_message_to_two_members_is_found() {
    found(Canary::QueueDoubleDelivery, "delivered twice to queue group");
}

#[test]
fn panic_is_caught_and_reported() {
    found(Canary::Panic, "panic: canary");
}

#[test]
fn clean_seeds_pass_and_replay_identically() {
    let report = explore(0, 5, None, Overrides::default(), true);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    for seed in 0..3 {
        let a = fjord_sim::run_seed(seed, Overrides::default(), false);
        let b = fjord_sim::run_seed(seed, Overrides::default(), false);
        assert_eq!((a.digest, a.events), (b.digest, b.events), "seed {seed}");
        assert!(a.events > 0);
    }
}

/// A paused server that never resumes leaves its clients without their final PING barrier:
/// proof that a pause really stops the node, and that liveness notices it.
#[test]
fn pause_without_resume_is_found() {
    let overrides = Overrides { canary: Canary::PauseForever, ..Overrides::default() };
    let report = explore(0, 40, None, overrides, true);
    let Some((_, message, _)) = report.failures.first() else {
        panic!("canary pause-forever not found within 40 seeds");
    };
    assert!(message.contains("liveness"), "caught by another check: {message}");
}
