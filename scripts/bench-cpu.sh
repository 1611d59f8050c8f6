#!/usr/bin/env bash
# CPU speed of landauer against llama.cpp on the same GGUF file, machine and thread count, in
# one run (nothing else should be running):
#   1. decode (and a short prefill): landauer with its own kernels, tracing off and on
#      (`landauer bench`, which also measures the memory-bandwidth roofline);
#   2. the same with candle-transformers' model and kernels (LANDAUER_FORWARD=candle): the
#      baseline landauer's own forward pass replaced;
#   3. llama.cpp (llama-cpp-python, built from source with -DGGML_NATIVE=ON);
#   4. prefill of a 128-token prompt (benches/prompt-128.txt, 128 tokens in both engines),
#      landauer then llama.cpp.
#
#   scripts/bench-cpu.sh [RUNS] [THREADS] [TOKENS]
#
# Writes benches/results/cpu-<date>-{landauer,candle,llamacpp,landauer-p128,llamacpp-p128}.json
# and prints one table with the ratios. Needs the default model (`landauer fetch`); builds
# llama.cpp through scripts/bench-llamacpp.sh on first use. Kept out of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-7}"
threads="${2:-2}"
tokens="${3:-128}"
prompt="Once upon a time, there was a little girl named Lily. She"
long_prompt="$(cat benches/prompt-128.txt)"
stamp="$(date -u +%Y-%m-%d)"
out="benches/results"
mkdir -p "$out"

cargo build --release --quiet
model="$(./target/release/landauer fetch 2>/dev/null)"
bench() { ./target/release/landauer bench --model "$model" --runs "$runs" --threads "$threads" "$@"; }
llama() { scripts/bench-llamacpp.sh --model "$model" --runs "$runs" --threads "$threads" --json "$@"; }

echo "== landauer ($runs runs, $threads threads, $tokens tokens)"
bench -n "$tokens" --prompt "$prompt" --out "$out/cpu-$stamp-landauer.json"
echo "== landauer with candle-transformers' model and kernels"
LANDAUER_FORWARD=candle bench -n "$tokens" --prompt "$prompt" --out "$out/cpu-$stamp-candle.json"
echo "== llama.cpp"
llama --max-tokens "$tokens" --prompt "$prompt" > "$out/cpu-$stamp-llamacpp.json"
echo "== 128-token prompt: landauer, then llama.cpp"
bench -n 16 --prompt "$long_prompt" --out "$out/cpu-$stamp-landauer-p128.json"
llama --max-tokens 16 --prompt "$long_prompt" > "$out/cpu-$stamp-llamacpp-p128.json"

python3 - "$out/cpu-$stamp" <<'PY'
import json, sys
base = sys.argv[1]
l, c, ll = (json.load(open(f"{base}-{n}.json")) for n in ("landauer", "candle", "llamacpp"))
lp, llp = (json.load(open(f"{base}-{n}.json")) for n in ("landauer-p128", "llamacpp-p128"))
lo, ln, co = l["tracing_off"], l["tracing_on"], c["tracing_off"]
rows = [
    ("landauer, tracing off", lo["decode_tokens_per_s_median"], lo["prefill_tokens_per_s_median"], lp["tracing_off"]["prefill_tokens_per_s_median"]),
    ("landauer, tracing on", ln["decode_tokens_per_s_median"], ln["prefill_tokens_per_s_median"], lp["tracing_on"]["prefill_tokens_per_s_median"]),
    ("candle's model, tracing off", co["decode_tokens_per_s_median"], co["prefill_tokens_per_s_median"], None),
    ("llama.cpp", ll["decode_tokens_per_s_median"], ll["prefill_tokens_per_s_median"], llp["prefill_tokens_per_s_median"]),
]
print(f"{'engine':<30}{'decode tok/s':>14}{'prefill ' + str(l['prompt_tokens']) + ' tok':>16}{'prefill 128 tok':>17}")
for name, d, p, p128 in rows:
    print(f"{name:<30}{d:>14.1f}{p:>16.1f}{(f'{p128:.1f}' if p128 else '-'):>17}")
ref = rows[3]
print(f"landauer / llama.cpp: decode {rows[0][1]/ref[1]:.2f}x, prefill {rows[0][2]/ref[2]:.2f}x "
      f"({l['prompt_tokens']} tokens), {rows[0][3]/ref[3]:.2f}x (128 tokens)")
print(f"landauer / candle's model: decode {rows[0][1]/rows[2][1]:.2f}x, prefill {rows[0][2]/rows[2][2]:.2f}x")
print(f"tracing: {l['tracing_ms_per_token']:.3f} ms/token in the sinks = {100*l['tracing_cost_fraction']:.2f}% "
      f"of untraced decode time (end-to-end difference of medians {100*l['tracing_overhead']:+.2f}%)")
r = l["roofline"]
print(f"roofline: {r['read_bandwidth_bytes_per_s']/1e9:.1f} GB/s read, {r['bytes_per_token']/1e6:.1f} MB per decode token "
      f"-> {r['roofline_tokens_per_s']:.0f} tokens/s; landauer at {100*r['fraction_tracing_off']:.0f}%, "
      f"llama.cpp at {100*ref[1]/r['roofline_tokens_per_s']:.0f}%")
PY
