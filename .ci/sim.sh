#!/usr/bin/env bash
# The simulator in CI: regressions, determinism, and a time-boxed explore (about 3 minutes).
# Seeds: one derived from the commit hash (the same on every run of a commit) plus a random
# start, printed so any failure replays with the one line fjord-sim prints.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build -p fjord-sim --release
SIM="$CARGO_TARGET_DIR/release/fjord-sim"

echo "== fjord-sim regressions"
"$SIM" regressions

COMMIT="$(git rev-parse HEAD 2>/dev/null || echo 0000000000000000000000000000000000000000)"
RANDOM_SEED="$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')"

echo "== fjord-sim determinism"
"$SIM" run 1 --check-determinism | tail -1
"$SIM" run "$COMMIT" --check-determinism | tail -1

echo "== fjord-sim explore from the commit hash ($COMMIT)"
"$SIM" explore --from "$COMMIT" --seeds 1000000 --time-budget "${SIM_COMMIT_BUDGET:-60s}"

echo "== fjord-sim explore from random seed $RANDOM_SEED"
"$SIM" explore --from "$RANDOM_SEED" --seeds 1000000 --time-budget "${SIM_RANDOM_BUDGET:-120s}"

echo "== fjord-sim bench (10 clients)"
"$SIM" bench --seeds 30 --clients 10
