#!/usr/bin/env bash
# Where CPU decode time goes: `perf record` of one traced `landauer generate` of the default
# model, grouped into the categories of benches/README.md.
#
#   scripts/profile-cpu.sh [TOKENS] [THREADS] [-- extra generate args]
#
# Needs perf (Debian: linux-perf) and a release build; writes target/profile/perf.data and
# prints one line per category (share of all samples, every thread and the kernel included).
set -euo pipefail
cd "$(dirname "$0")/.."
tokens="${1:-128}"
threads="${2:-2}"
shift $(( $# > 2 ? 2 : $# )); [[ "${1:-}" == "--" ]] && shift
cargo build --release --quiet
out=target/profile
mkdir -p "$out"
perf record -F 2000 -o "$out/perf.data" -- ./target/release/landauer generate -n "$tokens" \
  --threads "$threads" --ignore-eos --seed 1 --trace "$out/trace.jsonl" "$@" \
  "Once upon a time, there was a little girl named Lily. She" > /dev/null 2> "$out/stderr.txt"
perf report -i "$out/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null \
  | python3 "$(dirname "$0")/profile-groups.py"
