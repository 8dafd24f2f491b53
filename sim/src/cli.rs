//! The `fjord-sim` command line.
//!
//! ```text
//! fjord-sim run <seed> [--check-determinism] [--trace]
//! fjord-sim explore --seeds N [--from S] [--time-budget 10m]
//! fjord-sim regressions [--file sim/regressions.txt]
//! fjord-sim bench [--seeds N] [--clients 10]
//! ```
//!
//! A seed is a u64 or a 40-hex commit hash. A failure prints its details on stderr and exactly
//! one line on stdout, the command that replays it, and the process exits non-zero. The wall
//! clock is read only to report speed and to stop `explore` at its time budget; it never
//! reaches a run.

use std::time::{Duration, Instant as WallInstant};

use crate::rng::parse_seed;
use crate::world::{Canary, Overrides, Workload, World};
use crate::{run_world, Outcome};

pub const USAGE: &str = "usage:
  fjord-sim run <seed> [--check-determinism] [--trace]
  fjord-sim explore --seeds N [--from S] [--time-budget 10m]
  fjord-sim regressions [--file PATH]
  fjord-sim bench [--seeds N] [--clients N]
Every command takes --workload pubsub|store|raft|jetstream (default pubsub).
A seed is a u64 or a 40-hex commit hash.";

#[derive(Debug, Default)]
struct Args {
    positional: Vec<String>,
    check_determinism: bool,
    trace: bool,
    seeds: Option<u64>,
    from: Option<u64>,
    budget: Option<Duration>,
    file: Option<String>,
    clients: Option<usize>,
    canary: Canary,
    workload: Workload,
    quiet: bool,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value =
            |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--check-determinism" => a.check_determinism = true,
            "--trace" => a.trace = true,
            "--quiet" => a.quiet = true,
            "--seeds" => {
                a.seeds = Some(value("--seeds")?.parse().map_err(|_| "--seeds takes a number")?)
            }
            "--from" => a.from = Some(parse_seed(&value("--from")?)?),
            "--time-budget" => a.budget = Some(parse_duration(&value("--time-budget")?)?),
            "--file" => a.file = Some(value("--file")?),
            "--clients" => {
                let n: usize =
                    value("--clients")?.parse().map_err(|_| "--clients takes a number")?;
                a.clients = Some(n.clamp(1, 64));
            }
            // Hidden: plants a known bug (see `world::Canary`), for the canary tests.
            "--canary" => {
                let name = value("--canary")?;
                a.canary = Canary::parse(&name).ok_or_else(|| format!("unknown canary {name}"))?;
            }
            "--workload" => {
                let name = value("--workload")?;
                a.workload =
                    Workload::parse(&name).ok_or_else(|| format!("unknown workload {name}"))?;
            }
            flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}")),
            _ => a.positional.push(arg.clone()),
        }
    }
    Ok(a)
}

/// `90`, `90s`, `10m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (num, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = num.parse().map_err(|_| format!("bad duration {text:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("bad duration unit in {text:?}")),
    };
    Ok(Duration::from_secs(secs))
}

/// The one line a failure prints on stdout.
pub fn replay_line(seed: u64, overrides: Overrides) -> String {
    let mut line = format!("replay: cargo run -p fjord-sim --release -- run {seed}");
    if let Some(n) = overrides.clients {
        line.push_str(&format!(" --clients {n}"));
    }
    if overrides.workload != Workload::PubSub {
        line.push_str(&format!(" --workload {}", overrides.workload.name()));
    }
    if overrides.canary != Canary::None {
        line.push_str(&format!(" --canary {}", overrides.canary.name()));
    }
    line
}

/// Runs the command line; returns the process exit code.
pub fn main(args: &[String]) -> i32 {
    // Panics inside a run are caught and reported as failures; keep the default hook's
    // backtrace noise off stdout/stderr (the failure message carries the panic text).
    std::panic::set_hook(Box::new(|_| {}));
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return 2;
    };
    let a = match parse_args(rest) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return 2;
        }
    };
    let overrides = Overrides { clients: a.clients, canary: a.canary, workload: a.workload };
    match command.as_str() {
        "run" => {
            let Some(seed) = a.positional.first() else {
                eprintln!("{USAGE}");
                return 2;
            };
            match parse_seed(seed) {
                Ok(seed) => run_one(seed, overrides, a.check_determinism, a.trace),
                Err(e) => {
                    eprintln!("{e}");
                    2
                }
            }
        }
        "explore" => {
            let n = a.seeds.unwrap_or(u64::MAX);
            if a.seeds.is_none() && a.budget.is_none() {
                eprintln!("explore needs --seeds N or --time-budget");
                return 2;
            }
            let report = explore(a.from.unwrap_or(0), n, a.budget, overrides, a.quiet);
            report.print();
            i32::from(!report.failures.is_empty())
        }
        "regressions" => regressions(a.file.as_deref().unwrap_or(default_regressions_path())),
        "bench" => {
            let overrides = Overrides { clients: Some(a.clients.unwrap_or(10)), ..overrides };
            let report = explore(a.from.unwrap_or(0), a.seeds.unwrap_or(50), None, overrides, true);
            report.print();
            i32::from(!report.failures.is_empty())
        }
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            0
        }
        other => {
            eprintln!("unknown command {other}\n{USAGE}");
            2
        }
    }
}

fn default_regressions_path() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/regressions.txt")
}

fn run_one(seed: u64, overrides: Overrides, check_determinism: bool, trace: bool) -> i32 {
    let world = World::draw(seed, overrides);
    print!("{world}");
    let started = WallInstant::now();
    let outcome = run_world(world.clone(), trace);
    let wall = started.elapsed();
    summary(&outcome, wall);
    if let Some(f) = &outcome.failure {
        eprintln!("FAIL seed {seed}: {f}");
        println!("{}", replay_line(seed, overrides));
        return 1;
    }
    if check_determinism {
        let again = run_world(world, false);
        if again.digest != outcome.digest || again.events != outcome.events {
            eprintln!(
                "FAIL seed {seed}: not deterministic: digest {:016x} ({} events) then {:016x} ({} events)",
                outcome.digest, outcome.events, again.digest, again.events
            );
            println!("{} --check-determinism", replay_line(seed, overrides));
            return 1;
        }
        println!("deterministic: digest {:016x} twice", outcome.digest);
    }
    0
}

fn summary(o: &Outcome, wall: Duration) {
    let sim = o.sim_nanos as f64 / 1e9;
    println!(
        "seed {} {}: {} events, {:.3} simulated s in {:.3} wall s ({:.0}x), digest {:016x}; published {}, delivered {}, must-checks {}, 503s {}, connections {}, drops {}, crashes {}",
        o.seed,
        if o.failure.is_some() { "FAILED" } else { "ok" },
        o.events,
        sim,
        wall.as_secs_f64(),
        sim / wall.as_secs_f64().max(1e-9),
        o.digest,
        o.stats.published,
        o.stats.delivered,
        o.stats.must_checked,
        o.stats.no_responders,
        o.stats.conns,
        o.drops,
        o.crashes
    );
    if o.undecided {
        println!("seed {}: UNDECIDED: the linearizability search ran out of budget", o.seed);
    }
}

/// What `explore` found.
#[derive(Debug, Default)]
pub struct ExploreReport {
    pub seeds_run: u64,
    /// (seed, message, replay line), in the order found.
    pub failures: Vec<(u64, String, String)>,
    pub sim_nanos: u64,
    pub wall: Duration,
    pub events: u64,
    /// Seeds whose history check ran out of budget undecided (neither failed nor passed).
    pub undecided: Vec<u64>,
}

impl ExploreReport {
    pub fn print(&self) {
        let wall = self.wall.as_secs_f64().max(1e-9);
        let sim = self.sim_nanos as f64 / 1e9;
        println!(
            "explored {} seeds, {} failed; {:.1} simulated s in {:.2} wall s: {:.0} simulated s per wall s, {:.0} seeds per minute, {:.0} events per wall s",
            self.seeds_run,
            self.failures.len(),
            sim,
            wall,
            sim / wall,
            self.seeds_run as f64 * 60.0 / wall,
            self.events as f64 / wall
        );
        if !self.undecided.is_empty() {
            println!(
                "{} seeds undecided (linearizability search budget ran out): {:?}",
                self.undecided.len(),
                self.undecided
            );
        }
    }
}

/// Runs seeds `from`, `from + 1`, ... until `n` ran or the wall-clock budget is spent.
pub fn explore(
    from: u64,
    n: u64,
    budget: Option<Duration>,
    overrides: Overrides,
    quiet: bool,
) -> ExploreReport {
    let started = WallInstant::now();
    let mut report = ExploreReport::default();
    for i in 0..n {
        if budget.is_some_and(|b| started.elapsed() >= b) {
            break;
        }
        let seed = from.wrapping_add(i);
        let outcome = run_world(World::draw(seed, overrides), false);
        report.seeds_run += 1;
        report.sim_nanos += outcome.sim_nanos;
        report.events += outcome.events;
        if outcome.undecided {
            report.undecided.push(seed);
        }
        if let Some(f) = outcome.failure {
            let line = replay_line(seed, overrides);
            if !quiet {
                eprintln!("FAIL seed {seed}: {f}");
            }
            println!("{line}");
            report.failures.push((seed, f, line));
        }
    }
    report.wall = started.elapsed();
    report
}

/// Replays every seed in the regressions file (`<seed> [--clients N] # why`).
fn regressions(path: &str) -> i32 {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read {path}: {e}");
            return 2;
        }
    };
    let mut failed = 0;
    let mut ran = 0;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        let Ok(a) = parse_args(&words) else {
            eprintln!("bad regressions line: {line}");
            return 2;
        };
        let Some(Ok(seed)) = a.positional.first().map(|s| parse_seed(s)) else {
            eprintln!("bad regressions line: {line}");
            return 2;
        };
        let overrides = Overrides { clients: a.clients, canary: a.canary, workload: a.workload };
        ran += 1;
        let outcome = run_world(World::draw(seed, overrides), false);
        if let Some(f) = outcome.failure {
            failed += 1;
            eprintln!("FAIL seed {seed}: {f}");
            println!("{}", replay_line(seed, overrides));
        }
    }
    println!("regressions: {ran} seeds replayed, {failed} failed");
    i32::from(failed > 0)
}
