#!/usr/bin/env bash
# Fuzz the decode paths that hostile input reaches (DESIGN.md: "the decode path is
# fuzzed"). Not a test and not part of scripts/test.sh: it runs each target for a
# while, starting from the committed seeds (fuzz/seeds/<target>/, real clients' traffic),
# and stops at the first crash, leaving the input in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh                  every target, FUZZ_SECONDS each
#   scripts/fuzz.sh request          one target
#
# Targets (fuzz/fuzz_targets/):
#   request        a request frame: header, then the body of any API and version the
#                  broker serves, decoded with its message type
#   record_batch   record batches: iteration, header checks, the uncompressed framing
#                  walk, decompression and the record walk (CRC fixed up first)
#   handler        a request frame through the broker's router (`handlers::dispatch`)
#                  into one long-lived broker in a temp dir; delayed replies are polled.
#                  The broker keeps its state across inputs, so a crash input may need
#                  the inputs before it to reproduce.
#
# Environment:
#   FUZZ_SECONDS=60       seconds per target
#   FUZZ_RSS_LIMIT_MB=1024, FUZZ_MALLOC_LIMIT_MB=300
#                         a decoder that allocates from a length on the wire fails here
#
# It installs cargo-fuzz (crates.io) if missing. cargo-fuzz needs nightly compiler
# flags; on a stable toolchain RUSTC_BOOTSTRAP=1 unlocks them for this build only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/fuzz"

SECONDS_EACH="${FUZZ_SECONDS:-60}"
RSS_LIMIT="${FUZZ_RSS_LIMIT_MB:-1024}"
MALLOC_LIMIT="${FUZZ_MALLOC_LIMIT_MB:-300}"
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(request record_batch handler)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
mkdir -p target
rm -rf target/handler-broker-*  # the handler target's brokers from earlier runs
for t in "${TARGETS[@]}"; do
    echo "==> fuzzing $t for ${SECONDS_EACH}s" >&2
    mkdir -p "corpus/$t"
    # New inputs go to corpus/ (not committed); seeds/ holds real clients' requests and
    # batches, recorded by fuzz/capture_seeds.py (the handler target takes requests).
    if [ "$t" = handler ]; then seeds=seeds/request; else seeds="seeds/$t"; fi
    cargo fuzz run "$t" "corpus/$t" "$seeds" -- \
        -max_total_time="$SECONDS_EACH" -rss_limit_mb="$RSS_LIMIT" -malloc_limit_mb="$MALLOC_LIMIT" \
        -print_final_stats=1
done
echo "==> no crash in ${TARGETS[*]}" >&2
