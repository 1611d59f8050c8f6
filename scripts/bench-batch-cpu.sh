#!/usr/bin/env bash
# The CPU batch curve of the default model: decode tokens/s and energy per token against
# batch size, medians of RUNS runs per batch size, all in one process, measured in rounds
# (--interleave: every batch size once per round, so that the VM's drifting speed shifts
# all of them alike).
#
#   scripts/bench-batch-cpu.sh [RUNS] [THREADS] [TOKENS] [BATCHES]
#
# Writes benches/results/cpu-<date>-sweep/ (sweep.json, sweep.csv, sweep.svg) and prints the
# table and the batch-8 / batch-1 decode ratio. Run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
threads="${2:-2}"
tokens="${3:-64}"
batches="${4:-1,2,4,8,16}"
out="benches/results/cpu-$(date -u +%Y-%m-%d)-sweep"

cargo build --release --quiet
model="$(./target/release/landauer fetch 2>/dev/null)"
./target/release/landauer sweep --model "$model" --threads "$threads" --batch "$batches" --interleave \
  -n "$tokens" --runs "$runs" --out "$out"
python3 - "$out/sweep.json" <<'PY'
import json, sys
rows = {r["batch"]: r for r in json.load(open(sys.argv[1]))["rows"]}
if 1 in rows and 8 in rows:
    r = rows[8]["decode_tokens_per_s"] / rows[1]["decode_tokens_per_s"]
    print(f"decode tokens/s, batch 8 over batch 1: {r:.2f}x")
PY
