#!/usr/bin/env bash
# Fuzzes the decoders and state machines for a while; exits non-zero if anything crashes or
# fails.
#
#   fuzz/run-ci.sh [SECONDS]   (default 60)
#
# 1. With a nightly toolchain, runs each libFuzzer target in fuzz/cargo-fuzz (`targets`) for
#    SECONDS (installing cargo-fuzz if it is missing). Without one, runs the stable seed-driven
#    fuzzer closest to each target (`fjord-fuzz <name> <seed>`) over consecutive seeds for
#    SECONDS instead; FJORD_FUZZ_STABLE=1 forces that path.
# 2. Always: the seed-driven event soups of the state machines (`soups`), SECONDS/3 each
#    (FJORD_SOUP_SECONDS overrides).
# Time: about SECONDS x ${#targets} + SECONDS/3 x ${#soups}, plus the builds; .ci/run picks
# SECONDS so the whole step stays under 6 minutes.
set -euo pipefail

secs="${1:-60}"
if ! [[ "$secs" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 [SECONDS]" >&2
    exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
targets=(parser store_record store_checkpoint store_crypt raft_wal consumer)
soups=(conn sublist raft store archive consumer)
soup_secs="${FJORD_SOUP_SECONDS:-$((secs / 3))}"

# The seed-driven fuzzer standing in for a libFuzzer target on stable.
stable_name() {
    case "$1" in
        raft_wal) echo raft ;;
        store_record | store_checkpoint) echo store ;;
        *) echo "$1" ;;
    esac
}

have_nightly() { [[ "${FJORD_FUZZ_STABLE:-}" != 1 ]] && cargo +nightly --version >/dev/null 2>&1; }
have_cargo_fuzz() { cargo +nightly fuzz --version >/dev/null 2>&1; }

failed=0
bin="${CARGO_TARGET_DIR:-$root/target}/release/fjord-fuzz"

# Runs `fjord-fuzz $1` over consecutive seeds for $2 seconds.
run_stable() {
    local t="$1" budget="$2" end seed=0
    end=$((SECONDS + budget))
    while ((SECONDS < end)); do
        if ! "$bin" "$t" "$seed" --iterations 2000; then
            failed=1
        fi
        seed=$((seed + 1))
    done
    echo "fjord-fuzz $t: seeds 0..$((seed - 1)) x 2000 cases"
}

if have_nightly; then
    if ! have_cargo_fuzz; then
        echo "cargo-fuzz missing: installing it"
        cargo install cargo-fuzz --locked
    fi
fi

if have_nightly && have_cargo_fuzz; then
    (
        cd "$here/cargo-fuzz"
        for t in "${targets[@]}"; do
            # Grow a scratch copy so the checked-in seeds stay small; new crashes land in artifacts/.
            mkdir -p "corpus-run/$t"
            cp -n "corpus/$t"/* "corpus-run/$t"/ 2>/dev/null || true
            echo "cargo fuzz: $t for ${secs}s"
            cargo +nightly fuzz run --fuzz-dir . "$t" "corpus-run/$t" -- \
                -max_total_time="$secs" -max_len=4096 -print_final_stats=1
        done
    )
    echo "cargo fuzz: no crashes"
    cd "$root"
    cargo build --release -p fjord-fuzz
else
    echo "cargo +nightly fuzz is not available: running the stable seed-driven fuzzers instead, ${secs}s each"
    cd "$root"
    cargo build --release -p fjord-fuzz
    declare -A done_stable=()
    for t in "${targets[@]}"; do
        s="$(stable_name "$t")"
        # A soup runs below anyway; each stable fuzzer runs once.
        if [[ " ${soups[*]} " == *" $s "* || -n "${done_stable[$s]:-}" ]]; then
            continue
        fi
        done_stable[$s]=1
        run_stable "$s" "$secs"
    done
fi

echo "event soups: ${soups[*]}, ${soup_secs}s each"
for t in "${soups[@]}"; do
    run_stable "$t" "$soup_secs"
done
exit "$failed"
