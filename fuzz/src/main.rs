//! Seed-driven fuzzers for Fjord's parsers and state machines.
//!
//! `fjord-fuzz <target> <seed> [--iterations N] [--case I]` runs N cases of a target, each from
//! its own random stream derived from the seed, and prints one line per failure: the command
//! that replays exactly that case. Exit status: 0 clean, 1 a case failed, 2 bad usage.
//!
//! A target is a function from (seed, case) to a verdict; add one by writing a module with a
//! `run_case` and listing it in `TARGETS`.

mod archive;
mod conn;
mod consumer;
mod parser;
mod raft;
mod store;
mod store_crypt;
mod sublist;

use std::panic;
use std::process::ExitCode;

/// Runs one case: `Err(reason)` when it found a bug.
type CaseFn = fn(seed: u64, case: u64) -> Result<(), String>;

/// `store_record` and `store_checkpoint` are the names of the libFuzzer targets for the two
/// decoders; on the stable path both run `store`, which fuzzes both (and recovery over them).
const TARGETS: &[(&str, CaseFn)] = &[
    ("parser", parser::run_case),
    ("store", store::run_case),
    ("store_record", store::run_case),
    ("store_checkpoint", store::run_case),
    ("store_crypt", store_crypt::run_case),
    ("raft", raft::run_case),
    ("conn", conn::run_case),
    ("sublist", sublist::run_case),
    ("consumer", consumer::run_case),
    ("archive", archive::run_case),
];

const DEFAULT_ITERATIONS: u64 = 10_000;

fn usage() -> ExitCode {
    let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    eprintln!(
        "usage: fjord-fuzz <target> <seed> [--iterations N] [--case I]\ntargets: {}",
        names.join(", ")
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(target), Some(seed)) = (args.first(), args.get(1)) else {
        return usage();
    };
    let Some(&(name, run_case)) = TARGETS.iter().find(|(n, _)| n == target) else {
        return usage();
    };
    let Ok(seed) = seed.parse::<u64>() else {
        return usage();
    };
    let mut iterations = DEFAULT_ITERATIONS;
    let mut only_case = None;
    let mut rest = args[2..].iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().and_then(|v| v.parse::<u64>().ok());
        match (flag.as_str(), value) {
            ("--iterations", Some(n)) => iterations = n,
            ("--case", Some(i)) => only_case = Some(i),
            _ => return usage(),
        }
    }

    // A panic is a finding: keep its message for the one failure line instead of letting the
    // default hook print a backtrace banner per case.
    panic::set_hook(Box::new(|info| {
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line()));
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        LAST_PANIC.with(|p| *p.borrow_mut() = format!("panic: {msg}{}", at.unwrap_or_default()));
    }));

    let cases: Box<dyn Iterator<Item = u64>> = match only_case {
        Some(i) => Box::new(std::iter::once(i)),
        None => Box::new(0..iterations),
    };
    let mut failed = false;
    for case in cases {
        let verdict = panic::catch_unwind(|| run_case(seed, case))
            .unwrap_or_else(|_| Err(LAST_PANIC.with(|p| p.borrow().clone())));
        if let Err(reason) = verdict {
            failed = true;
            // One line per failure, whatever the reason contains.
            let mut reason = reason.replace(['\n', '\r'], " ");
            if reason.len() > 300 {
                let mut cut = 300;
                while !reason.is_char_boundary(cut) {
                    cut -= 1;
                }
                reason.truncate(cut);
                reason.push_str("...");
            }
            println!(
                "FAIL {name} seed {seed} case {case}: {reason} | replay: cargo run -p fjord-fuzz -- {name} {seed} --case {case}"
            );
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

thread_local! {
    static LAST_PANIC: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

#[cfg(test)]
mod tests {
    use super::TARGETS;

    /// Every target runs clean on a few cases of seed 0 (CI fuzzes them for longer), in a debug
    /// build, so with overflow checks (`store` seed 0 case 5 once overflowed in `Engine::state`).
    #[test]
    fn every_target_passes_its_first_cases() {
        for (name, run_case) in TARGETS.iter() {
            for case in 0..30 {
                if let Err(why) = run_case(0, case) {
                    panic!("{name} seed 0 case {case}: {why}");
                }
            }
        }
    }
}
