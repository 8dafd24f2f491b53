#!/usr/bin/env bash
# Fuzzes the parsers for a while; exits non-zero if anything crashes or fails.
#
#   fuzz/run-ci.sh [SECONDS]   (default 60)
#
# With a nightly toolchain, runs the libFuzzer target(s) in fuzz/cargo-fuzz for SECONDS each
# (installing cargo-fuzz if it is missing). Without one, runs the stable seed-driven fuzzer
# (`fjord-fuzz parser <seed>`) over consecutive seeds for SECONDS instead; FJORD_FUZZ_STABLE=1
# forces that path.
set -euo pipefail

secs="${1:-60}"
if ! [[ "$secs" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 [SECONDS]" >&2
    exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
targets=(parser store_record store_checkpoint store_crypt)

have_nightly() { [[ "${FJORD_FUZZ_STABLE:-}" != 1 ]] && cargo +nightly --version >/dev/null 2>&1; }
have_cargo_fuzz() { cargo +nightly fuzz --version >/dev/null 2>&1; }

if have_nightly; then
    if ! have_cargo_fuzz; then
        echo "cargo-fuzz missing: installing it"
        cargo install cargo-fuzz --locked
    fi
fi

if have_nightly && have_cargo_fuzz; then
    cd "$here/cargo-fuzz"
    for t in "${targets[@]}"; do
        # Grow a scratch copy so the checked-in seeds stay small; new crashes land in artifacts/.
        mkdir -p "corpus-run/$t"
        cp -n "corpus/$t"/* "corpus-run/$t"/ 2>/dev/null || true
        echo "cargo fuzz: $t for ${secs}s"
        cargo +nightly fuzz run --fuzz-dir . "$t" "corpus-run/$t" -- \
            -max_total_time="$secs" -max_len=4096 -print_final_stats=1
    done
    echo "cargo fuzz: no crashes"
    exit 0
fi

echo "cargo +nightly fuzz is not available: running the stable seed-driven fuzzer for ${secs}s"
cd "$root"
cargo build --release -p fjord-fuzz
bin="${CARGO_TARGET_DIR:-$root/target}/release/fjord-fuzz"
failed=0
for t in "${targets[@]}"; do
    end=$((SECONDS + secs))
    seed=0
    while ((SECONDS < end)); do
        if ! "$bin" "$t" "$seed" --iterations 2000; then
            failed=1
        fi
        seed=$((seed + 1))
    done
    echo "fjord-fuzz $t: seeds 0..$((seed - 1)) x 2000 cases"
done
exit "$failed"
