#!/usr/bin/env bash
# The CPU batch curve of the default model: decode tokens/s and energy per token against
# batch size, medians of RUNS runs per batch size, all in one process, measured in rounds
# (--interleave: every batch size once per round, so that the VM's drifting speed shifts
# all of them alike).
#
#   scripts/bench-batch-cpu.sh [RUNS] [THREADS] [TOKENS] [BATCHES]
#
# Writes sweep.json, sweep.csv and sweep.svg into $OUT (default: benches/results/cpu-<date>-sweep/)
# and prints the table and the batch-8 / batch-1 decode ratio, of the medians and round by
# round. Run it on a quiet machine. KV=f32 runs with an f32 KV cache (default: f16).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
threads="${2:-2}"
tokens="${3:-64}"
batches="${4:-1,2,4,8,16}"
out="${OUT:-benches/results/cpu-$(date -u +%Y-%m-%d)-sweep}"

cargo build --release --quiet
model="$(./target/release/landauer fetch 2>/dev/null)"
./target/release/landauer sweep --model "$model" --threads "$threads" --batch "$batches" --interleave \
  -n "$tokens" --runs "$runs" --kv-cache "${KV:-f16}" --out "$out"
python3 - "$out/sweep.json" <<'PY'
import json, statistics, sys
report = json.load(open(sys.argv[1]))
rows = {r["batch"]: r for r in report["rows"]}
runs = {r["batch"]: r["decode_tokens_per_s"] for r in report.get("runs", [])}
if 1 in rows and 8 in rows:
    r = rows[8]["decode_tokens_per_s"] / rows[1]["decode_tokens_per_s"]
    print(f"decode tokens/s, batch 8 over batch 1: {r:.2f}x (ratio of the medians)")
if 1 in runs and 8 in runs:
    # Round k's batch 8 over round k's batch 1: each ratio between runs a minute apart.
    per = [b8 / b1 for b1, b8 in zip(runs[1], runs[8])]
    print(f"  round by round: {' '.join(f'{x:.2f}' for x in per)}; median {statistics.median(per):.2f}x")
PY
