//! fjord-sim: the deterministic simulator that drives fjord-core's state machines with a
//! seeded network, clock and (with later issues) disk, and checks what clients observe.
//!
//! Rooms: [`world`] (what a seed draws), [`engine`] (the event heap), [`network`],
//! [`clock`], [`node`] (a server with process faults), [`workload`] (simulated clients),
//! [`checker`], [`sim`] (one run), [`cli`] (the `fjord-sim` command).

pub mod checker;
pub mod cli;
pub mod clock;
pub mod engine;
pub mod network;
pub mod node;
pub mod rng;
pub mod sim;
pub mod workload;
pub mod world;

pub use fjord_core;

use std::panic::{self, AssertUnwindSafe};

pub use sim::Outcome;
pub use world::{Canary, Overrides, Workload, World};

/// Runs one seed; a panic anywhere in the run is reported as a failure, never propagated.
pub fn run_seed(seed: u64, overrides: Overrides, trace: bool) -> Outcome {
    let world = World::draw(seed, overrides);
    run_world(world, trace)
}

pub fn run_world(world: World, trace: bool) -> Outcome {
    let seed = world.seed;
    let run = || match world.workload {
        Workload::Store => workload::store::run(world, trace).0,
        Workload::Raft => workload::raft::run(world, trace).0,
        Workload::JetStream => workload::jetstream::run(world, trace).0,
        Workload::PubSub => sim::Sim::new(world, trace).run(),
    };
    match panic::catch_unwind(AssertUnwindSafe(run)) {
        Ok(outcome) => outcome,
        Err(payload) => {
            let text = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic".into());
            Outcome {
                seed,
                digest: 0,
                events: 0,
                sim_nanos: 0,
                failure: Some(format!("panic: {text}")),
                stats: Default::default(),
                crashes: 0,
                drops: 0,
                undecided: false,
            }
        }
    }
}
