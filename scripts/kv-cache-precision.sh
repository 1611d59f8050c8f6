#!/usr/bin/env bash
# What the f16 KV cache does to the default model's output, against what switching to
# candle-transformers' forward pass does: greedy runs of TOKENS tokens on six prompts with
# the f16 cache (the default), the f32 cache and candle's model (f32), each compared with the
# f32 cache's run token by token until their greedy texts part: mean and largest |Δ entropy|
# and where they part.
#
#   scripts/kv-cache-precision.sh [TOKENS]
set -euo pipefail
cd "$(dirname "$0")/.."
tokens="${1:-256}"
cargo build --release --quiet
model="$(./target/release/landauer fetch 2>/dev/null)"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
prompts=(
  "The history of the steam engine begins"
  "Once upon a time, in a small village by the sea,"
  "Explain why the sky is blue in simple terms."
  "def fibonacci(n):"
  "The three laws of thermodynamics are"
  "Write a short poem about autumn leaves."
)
for i in "${!prompts[@]}"; do
  gen() { ./target/release/landauer generate -m "$model" -p "${prompts[$i]}" -n "$tokens" \
    --greedy --ignore-eos --meter none -q --trace "$dir/$1-$i.jsonl" "${@:2}" >/dev/null; }
  gen f16
  gen f32 --kv-cache f32
  LANDAUER_FORWARD=candle gen candle
done
python3 - "$dir" "${#prompts[@]}" <<'PY'
import json, statistics, sys
d, n = sys.argv[1], int(sys.argv[2])
def load(f):
    return [r for r in map(json.loads, open(f)) if r.get("type") == "token"]
for other, label in [("f16", "f16 cache"), ("candle", "candle's forward pass")]:
    dh, parts = [], []
    for i in range(n):
        a, b = load(f"{d}/f32-{i}.jsonl"), load(f"{d}/{other}-{i}.jsonl")
        k = next((j for j, (x, y) in enumerate(zip(a, b)) if x["token_id"] != y["token_id"]), None)
        parts.append("-" if k is None else str(k))
        m = min(len(a), len(b)) if k is None else k
        dh += [abs(x["entropy_bits"] - y["entropy_bits"]) for x, y in zip(a[:m], b[:m])]
    print(f"{label:>22} vs f32 cache: |Δ entropy| mean {statistics.mean(dh):.3f} bits, "
          f"median {statistics.median(dh):.3f}, max {max(dh):.3f} over {len(dh)} tokens; "
          f"greedy text parts at token {', '.join(parts)}")
PY
