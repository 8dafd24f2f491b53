//! `fjord-bench`: core NATS throughput and latency benchmark speaking the raw protocol
//! over TCP, and JetStream benchmarks through async-nats, runnable against any
//! NATS-compatible server (JetStream ones need it started with JetStream enabled).
//!
//! ```text
//! fjord-bench --url nats://127.0.0.1:4222 pubsub --size 128 --msgs 1000000 --runs 3
//! fjord-bench --url nats://127.0.0.1:4222 all --runs 3 [--json] [--only pubsub-16,reqrep-128]
//! fjord-bench --url nats://127.0.0.1:4222 js-all --runs 3 [--json] [--only js-pub-128]
//! ```

#[path = "../bench/conn.rs"]
mod conn;
#[path = "../bench/jetstream.rs"]
mod jetstream;
#[path = "../bench/scenarios.rs"]
mod scenarios;

use clap::{Parser, ValueEnum};
use jetstream::JsSample;
use scenarios::{Delivery, Latency, Throughput};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// 1 publisher -> 1 subscriber; throughput measured at the subscriber.
    Pubsub,
    /// 1 publisher -> N subscribers (default 4) on one subject; aggregate delivered rate.
    Fanout,
    /// 1 publisher -> N members (default 4) of one queue group; each message exactly once.
    Queue,
    /// Request/reply round-trip latency, one request at a time.
    Reqrep,
    /// Every core scenario above with default sizes and counts; prints a table.
    All,
    /// JetStream publish to a file stream, each PubAck awaited before the next publish.
    JsPub,
    /// JetStream publish to a file stream with --inflight PubAcks outstanding.
    JsPubAsync,
    /// Durable pull consumer fetching a pre-filled file stream in --batch batches, acking each.
    JsConsume,
    /// KV put (file bucket, history 1, 1000 keys) with --inflight puts outstanding.
    KvPut,
    /// KV get of 1000 pre-filled keys with --inflight gets outstanding.
    KvGet,
    /// Every JetStream scenario above with default sizes and counts; prints a table.
    JsAll,
}

#[derive(Debug, Parser)]
#[command(
    name = "fjord-bench",
    about = "Core NATS benchmark over raw protocol (no client library)"
)]
struct Cli {
    /// Server URL.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    url: String,
    scenario: Scenario,
    /// Messages per run (for `all`: overrides every scenario's default count).
    #[arg(long)]
    msgs: Option<u64>,
    /// Payload size in bytes (ignored by `all`, which uses fixed sizes).
    #[arg(long)]
    size: Option<usize>,
    /// Repetitions of each scenario; the median of each figure is reported.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Subscribers (fanout) or queue-group members (queue).
    #[arg(long, default_value_t = 4)]
    subs: usize,
    /// Warm-up requests for reqrep (default: 5% of --msgs, at least 100, at most 2000).
    #[arg(long)]
    warmup: Option<u64>,
    /// Per-run timeout in seconds; the run fails with an error when exceeded.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// For `all`: comma-separated subset of case names (see --list).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// For `all`: list the case names with their defaults and exit.
    #[arg(long)]
    list: bool,
    /// Publisher flow control: send a PING every this many messages and wait for the
    /// previous PING's PONG before sending the next one.
    #[arg(long, default_value_t = 10_000)]
    ping_every: u64,
    /// JetStream: PubAcks (js-pub-async) or KV operations (kv-put, kv-get) outstanding.
    #[arg(long, default_value_t = 256)]
    inflight: usize,
    /// JetStream: messages per pull request (js-consume).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Print machine-readable JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    scenario: Scenario,
    msgs: u64,
    size: usize,
}

/// The cases `all` runs, in order.
fn default_cases() -> Vec<Case> {
    let c = |name: &str, scenario, msgs, size| Case { name: name.into(), scenario, msgs, size };
    vec![
        c("pubsub-16", Scenario::Pubsub, 2_000_000, 16),
        c("pubsub-128", Scenario::Pubsub, 1_000_000, 128),
        c("pubsub-1024", Scenario::Pubsub, 500_000, 1024),
        c("fanout-128", Scenario::Fanout, 500_000, 128),
        c("queue-128", Scenario::Queue, 500_000, 128),
        c("reqrep-128", Scenario::Reqrep, 20_000, 128),
    ]
}

/// The cases `js-all` runs, in order. Counts are small because a server that syncs each
/// message on its own (nats-server with `sync_interval: always`) stores only about 500-1,000
/// a second on a slow disk, whatever the number of publishers.
fn default_js_cases() -> Vec<Case> {
    let c = |name: &str, scenario, msgs, size| Case { name: name.into(), scenario, msgs, size };
    vec![
        c("js-pub-128", Scenario::JsPub, 1_000, 128),
        c("js-pub-1k", Scenario::JsPub, 1_000, 1024),
        c("js-pub-async-128", Scenario::JsPubAsync, 10_000, 128),
        c("js-pub-async-1k", Scenario::JsPubAsync, 10_000, 1024),
        c("js-consume-128", Scenario::JsConsume, 50_000, 128),
        c("kv-put-128", Scenario::KvPut, 10_000, 128),
        c("kv-get-128", Scenario::KvGet, 50_000, 128),
    ]
}

enum Sample {
    Tput(Throughput),
    Lat(Latency),
    Js(JsSample),
}

fn run_once(cli: &Cli, addr: &str, case: &Case) -> Result<Sample, String> {
    let timeout = Duration::from_secs(cli.timeout);
    let (n, size) = (case.msgs, case.size);
    match case.scenario {
        Scenario::Pubsub => {
            scenarios::throughput(addr, case.msgs, case.size, 1, Delivery::All, timeout)
                .map(Sample::Tput)
        }
        Scenario::Fanout => {
            scenarios::throughput(addr, case.msgs, case.size, cli.subs, Delivery::All, timeout)
                .map(Sample::Tput)
        }
        Scenario::Queue => {
            scenarios::throughput(addr, case.msgs, case.size, cli.subs, Delivery::Queue, timeout)
                .map(Sample::Tput)
        }
        Scenario::Reqrep => {
            let warmup = cli.warmup.unwrap_or((case.msgs / 20).clamp(100, 2000));
            scenarios::reqrep(addr, case.msgs, warmup, case.size, timeout).map(Sample::Lat)
        }
        Scenario::JsPub => jetstream::publish(&cli.url, n, size, 1, timeout).map(Sample::Js),
        Scenario::JsPubAsync => {
            jetstream::publish(&cli.url, n, size, cli.inflight, timeout).map(Sample::Js)
        }
        Scenario::JsConsume => {
            jetstream::consume(&cli.url, n, size, cli.batch, timeout).map(Sample::Js)
        }
        Scenario::KvPut => {
            jetstream::kv_put(&cli.url, n, size, cli.inflight, timeout).map(Sample::Js)
        }
        Scenario::KvGet => {
            jetstream::kv_get(&cli.url, n, size, cli.inflight, timeout).map(Sample::Js)
        }
        Scenario::All | Scenario::JsAll => unreachable!(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Runs one case `runs` times; returns its JSON record (medians plus every run).
fn run_case(cli: &Cli, addr: &str, case: &Case) -> Result<Value, String> {
    let mut samples = Vec::new();
    for r in 0..cli.runs {
        if r > 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
        let s =
            run_once(cli, addr, case).map_err(|e| format!("{} run {}: {e}", case.name, r + 1))?;
        if !cli.json {
            match &s {
                Sample::Tput(t) => eprintln!(
                    "  {} run {}: {:.0} msgs/s, {:.1} MB/s ({} msgs in {:.3}s; publisher \
                     blocked {:.0} ms on the subscriber window, {:.0} ms on PONGs)",
                    case.name,
                    r + 1,
                    t.msgs_per_sec,
                    t.mb_per_sec,
                    t.delivered,
                    t.secs,
                    t.pub_wait_window.as_secs_f64() * 1e3,
                    t.pub_wait_pong.as_secs_f64() * 1e3,
                ),
                Sample::Lat(l) => eprintln!(
                    "  {} run {}: p50 {:.1}us p90 {:.1}us p99 {:.1}us",
                    case.name,
                    r + 1,
                    l.p50_us,
                    l.p90_us,
                    l.p99_us
                ),
                Sample::Js(j) => eprintln!(
                    "  {} run {}: {:.0} ops/s, {:.1} MB/s ({} ops in {:.3}s){}",
                    case.name,
                    r + 1,
                    j.ops_per_sec,
                    j.mb_per_sec,
                    j.ops,
                    j.secs,
                    j.lat
                        .map(|l| format!("; p50 {:.0}us p99 {:.0}us", l.p50_us, l.p99_us))
                        .unwrap_or_default(),
                ),
            }
        }
        samples.push(s);
    }
    let base = json!({
        "name": case.name,
        "scenario": case.scenario.to_possible_value().map(|v| v.get_name().to_string()),
        "msgs": case.msgs,
        "size": case.size,
        "runs": cli.runs,
    });
    let mut rec = base.as_object().unwrap().clone();
    let tputs: Vec<&Throughput> = samples
        .iter()
        .filter_map(|s| if let Sample::Tput(t) = s { Some(t) } else { None })
        .collect();
    let lats: Vec<&Latency> = samples
        .iter()
        .filter_map(|s| if let Sample::Lat(l) = s { Some(l) } else { None })
        .collect();
    if !tputs.is_empty() {
        let m = |f: fn(&Throughput) -> f64| median(tputs.iter().map(|t| f(t)).collect());
        rec.insert("msgs_per_sec".into(), json!(m(|t| t.msgs_per_sec).round()));
        rec.insert("mb_per_sec".into(), json!(round2(m(|t| t.mb_per_sec))));
        rec.insert(
            "samples_msgs_per_sec".into(),
            json!(tputs.iter().map(|t| t.msgs_per_sec.round()).collect::<Vec<_>>()),
        );
        rec.insert("delivered".into(), json!(tputs[0].delivered));
        if case.scenario == Scenario::Queue {
            rec.insert("member_min".into(), json!(tputs[0].min_member));
            rec.insert("member_max".into(), json!(tputs[0].max_member));
        }
    }
    let js: Vec<&JsSample> =
        samples.iter().filter_map(|s| if let Sample::Js(j) = s { Some(j) } else { None }).collect();
    if !js.is_empty() {
        let m = |f: fn(&JsSample) -> f64| median(js.iter().map(|j| f(j)).collect());
        rec.insert("msgs_per_sec".into(), json!(m(|j| j.ops_per_sec).round()));
        rec.insert("mb_per_sec".into(), json!(round2(m(|j| j.mb_per_sec))));
        rec.insert(
            "samples_msgs_per_sec".into(),
            json!(js.iter().map(|j| j.ops_per_sec.round()).collect::<Vec<_>>()),
        );
        match case.scenario {
            Scenario::JsPub => rec.insert("inflight".into(), json!(1)),
            Scenario::JsConsume => rec.insert("batch".into(), json!(cli.batch)),
            _ => rec.insert("inflight".into(), json!(cli.inflight)),
        };
        let lat: Vec<jetstream::Percentiles> = js.iter().filter_map(|j| j.lat).collect();
        if !lat.is_empty() {
            let m =
                |f: fn(&jetstream::Percentiles) -> f64| round2(median(lat.iter().map(f).collect()));
            rec.insert("p50_us".into(), json!(m(|l| l.p50_us)));
            rec.insert("p90_us".into(), json!(m(|l| l.p90_us)));
            rec.insert("p99_us".into(), json!(m(|l| l.p99_us)));
            rec.insert("max_us".into(), json!(m(|l| l.max_us)));
        }
    }
    if !lats.is_empty() {
        let m = |f: fn(&Latency) -> f64| round2(median(lats.iter().map(|l| f(l)).collect()));
        rec.insert("p50_us".into(), json!(m(|l| l.p50_us)));
        rec.insert("p90_us".into(), json!(m(|l| l.p90_us)));
        rec.insert("p99_us".into(), json!(m(|l| l.p99_us)));
        rec.insert("max_us".into(), json!(m(|l| l.max_us)));
        rec.insert("mean_us".into(), json!(m(|l| l.mean_us)));
        rec.insert("reqs_per_sec".into(), json!(m(|l| l.reqs_per_sec).round()));
        rec.insert(
            "samples_p50_us".into(),
            json!(lats.iter().map(|l| round2(l.p50_us)).collect::<Vec<_>>()),
        );
    }
    Ok(Value::Object(rec))
}

fn fmt_int(x: f64) -> String {
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn print_table(url: &str, runs: usize, recs: &[Value]) {
    println!("fjord-bench against {url} (median of {runs} run(s))");
    println!(
        "{:<16} {:>9} {:>6} {:>12} {:>9} {:>9} {:>9} {:>9}",
        "case", "msgs", "size", "msgs/s", "MB/s", "p50 us", "p90 us", "p99 us"
    );
    for r in recs {
        let f = |k: &str, int: bool| match r.get(k).and_then(Value::as_f64) {
            Some(v) if int => fmt_int(v),
            Some(v) => format!("{v:.1}"),
            None => "-".to_string(),
        };
        println!(
            "{:<16} {:>9} {:>6} {:>12} {:>9} {:>9} {:>9} {:>9}",
            r["name"].as_str().unwrap_or("?"),
            r["msgs"].as_u64().unwrap_or(0),
            r["size"].as_u64().unwrap_or(0),
            f("msgs_per_sec", true),
            f("mb_per_sec", false),
            f("p50_us", false),
            f("p90_us", false),
            f("p99_us", false),
        );
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    scenarios::PING_EVERY.store(cli.ping_every.max(1), std::sync::atomic::Ordering::Relaxed);
    let group = |s| if s == Scenario::JsAll { default_js_cases() } else { default_cases() };
    if cli.list {
        for c in group(cli.scenario) {
            println!("{:<16} {:?} msgs={} size={}", c.name, c.scenario, c.msgs, c.size);
        }
        return ExitCode::SUCCESS;
    }
    let addr = match conn::parse_url(&cli.url) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fjord-bench: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.runs == 0 || cli.subs == 0 || cli.msgs == Some(0) || cli.inflight == 0 || cli.batch == 0
    {
        eprintln!("fjord-bench: --runs, --subs, --msgs, --inflight and --batch must be at least 1");
        return ExitCode::from(2);
    }
    let cases: Vec<Case> = if matches!(cli.scenario, Scenario::All | Scenario::JsAll) {
        let all = group(cli.scenario);
        for name in &cli.only {
            if !all.iter().any(|c| &c.name == name) {
                eprintln!("fjord-bench: unknown case {name:?} (see --list)");
                return ExitCode::from(2);
            }
        }
        all.into_iter()
            .filter(|c| cli.only.is_empty() || cli.only.contains(&c.name))
            .map(|mut c| {
                if let Some(m) = cli.msgs {
                    c.msgs = m;
                }
                c
            })
            .collect()
    } else {
        let (msgs, size) = match cli.scenario {
            Scenario::Pubsub => (1_000_000, 128),
            Scenario::Fanout | Scenario::Queue => (500_000, 128),
            Scenario::JsPub => (1_000, 128),
            Scenario::JsPubAsync | Scenario::KvPut => (10_000, 128),
            Scenario::JsConsume | Scenario::KvGet => (50_000, 128),
            _ => (20_000, 128),
        };
        let size = cli.size.unwrap_or(size);
        let kind = cli.scenario.to_possible_value().map(|v| v.get_name().to_string());
        let kind = kind.unwrap_or_else(|| format!("{:?}", cli.scenario).to_lowercase());
        vec![Case {
            name: format!("{kind}-{size}"),
            scenario: cli.scenario,
            msgs: cli.msgs.unwrap_or(msgs),
            size,
        }]
    };

    let mut recs = Vec::new();
    for case in &cases {
        match run_case(&cli, &addr, case) {
            Ok(rec) => recs.push(rec),
            Err(e) => {
                eprintln!("fjord-bench: FAILED: {e}");
                if cli.json {
                    println!("{}", json!({"url": cli.url, "error": e, "results": recs}));
                }
                return ExitCode::FAILURE;
            }
        }
    }
    if cli.json {
        println!("{}", json!({"url": cli.url, "runs": cli.runs, "results": recs}));
    } else {
        print_table(&cli.url, cli.runs, &recs);
    }
    ExitCode::SUCCESS
}
