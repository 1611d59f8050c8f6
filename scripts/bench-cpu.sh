#!/usr/bin/env bash
# Decode and prefill speed of landauer (tracing off and on) and of llama.cpp on the same GGUF,
# the same prompt, token count and thread count, one after the other on a quiet machine.
#
#   scripts/bench-cpu.sh [RUNS] [THREADS] [TOKENS]
#
# Writes benches/results/cpu-<date>-landauer.json and -llamacpp.json and prints both tables.
# Needs the default model (`cargo run --release -- fetch`); builds llama.cpp through
# scripts/bench-llamacpp.sh on first use (tens of minutes). Kept out of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-7}"
threads="${2:-2}"
tokens="${3:-128}"
prompt="Once upon a time, there was a little girl named Lily. She"
stamp="$(date -u +%Y-%m-%d)"
out="benches/results"
mkdir -p "$out"

cargo build --release --quiet
model="$(./target/release/landauer fetch 2>/dev/null)"

echo "== landauer ($runs runs, $threads threads, $tokens tokens)"
./target/release/landauer bench --model "$model" --runs "$runs" --threads "$threads" \
  -n "$tokens" --prompt "$prompt" --out "$out/cpu-$stamp-landauer.json"

echo "== llama.cpp ($runs runs, $threads threads, $tokens tokens)"
scripts/bench-llamacpp.sh --model "$model" --runs "$runs" --threads "$threads" \
  --max-tokens "$tokens" --prompt "$prompt" --json > "$out/cpu-$stamp-llamacpp.json"
python3 - "$out/cpu-$stamp-landauer.json" "$out/cpu-$stamp-llamacpp.json" <<'PY'
import json, sys
l = json.load(open(sys.argv[1])); c = json.load(open(sys.argv[2]))
lo, ln = l["tracing_off"], l["tracing_on"]
print(f"{'engine':<26}{'decode tok/s':>14}{'prefill tok/s':>15}")
print(f"{'landauer, tracing off':<26}{lo['decode_tokens_per_s_median']:>14.1f}{lo['prefill_tokens_per_s_median']:>15.1f}")
print(f"{'landauer, tracing on':<26}{ln['decode_tokens_per_s_median']:>14.1f}{ln['prefill_tokens_per_s_median']:>15.1f}")
print(f"{'llama.cpp':<26}{c['decode_tokens_per_s_median']:>14.1f}{c['prefill_tokens_per_s_median']:>15.1f}")
print(f"landauer / llama.cpp decode: {lo['decode_tokens_per_s_median']/c['decode_tokens_per_s_median']:.2f}x, "
      f"prefill: {lo['prefill_tokens_per_s_median']/c['prefill_tokens_per_s_median']:.2f}x")
print(f"tracing: {l['tracing_ms_per_token']:.3f} ms/token in the sinks = {100*l['tracing_cost_fraction']:.2f}% "
      f"of untraced decode time (end-to-end difference of medians {100*l['tracing_overhead']:+.2f}%)")
PY
