#!/usr/bin/env bash
# CPU speed of landauer against llama.cpp on the same GGUF file, machine and thread count, in
# one run (nothing else should be running). The VM's speed drifts by 10-30% within minutes, so
# the engines take turns: ROUNDS rounds, each running, with RUNS runs apiece,
#   - landauer decode (and a short prefill), tracing off and on alternating (`landauer bench`,
#     which also measures the memory-bandwidth roofline),
#   - llama.cpp the same (llama-cpp-python, built from source with -DGGML_NATIVE=ON, timed by
#     llama.cpp's own counters),
#   - prefill of a 128-token prompt (benches/prompt-128.txt, 128 tokens in both engines), landauer
#     then llama.cpp;
# medians are over all runs of all rounds. Once, at the end: candle-transformers' model and
# kernels (LANDAUER_FORWARD=candle), the baseline landauer's own forward pass replaced.
#
#   scripts/bench-cpu.sh [ROUNDS] [RUNS] [THREADS] [TOKENS]
#
# Writes benches/results/cpu-<date>/ (every round's JSON and summary.json) and prints one
# table with the ratios. Needs the default model (`landauer fetch`); builds llama.cpp through
# scripts/bench-llamacpp.sh on first use. Kept out of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
runs="${2:-3}"
threads="${3:-2}"
tokens="${4:-128}"
prompt="Once upon a time, there was a little girl named Lily. She"
long_prompt="$(cat benches/prompt-128.txt)"
out="benches/results/cpu-$(date -u +%Y-%m-%d)"
mkdir -p "$out"

cargo build --release --quiet
model="$(./target/release/landauer fetch 2>/dev/null)"
bench() { ./target/release/landauer bench --model "$model" --runs "$runs" --threads "$threads" "$@"; }
llama() { scripts/bench-llamacpp.sh --model "$model" --runs "$runs" --threads "$threads" --json "$@"; }

for r in $(seq 1 "$rounds"); do
  echo "== round $r/$rounds: landauer, llama.cpp ($runs runs each, $threads threads, $tokens tokens)"
  bench -n "$tokens" --prompt "$prompt" --out "$out/landauer-$r.json" > /dev/null
  llama --max-tokens "$tokens" --prompt "$prompt" > "$out/llamacpp-$r.json"
  echo "== round $r/$rounds: 128-token prompt"
  bench -n 16 --prompt "$long_prompt" --out "$out/landauer-p128-$r.json" > /dev/null
  llama --max-tokens 16 --prompt "$long_prompt" > "$out/llamacpp-p128-$r.json"
done
echo "== candle-transformers' model and kernels ($runs runs)"
LANDAUER_FORWARD=candle bench -n "$tokens" --prompt "$prompt" --out "$out/candle.json" > /dev/null

python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
load = lambda name: json.load(open(f"{out}/{name}.json"))
def runs(kind, key):
    v = []
    for r in range(1, rounds + 1):
        d = load(f"{kind}-{r}")
        if kind.startswith("landauer"):
            cfg, k = key.split(".")
            v += d[cfg][k]
        else:
            v += d[key]
    return v
med = statistics.median
lo_d, ln_d = runs("landauer", "tracing_off.decode_tokens_per_s"), runs("landauer", "tracing_on.decode_tokens_per_s")
lo_p, ln_p = runs("landauer", "tracing_off.prefill_tokens_per_s"), runs("landauer", "tracing_on.prefill_tokens_per_s")
lo_p128 = runs("landauer-p128", "tracing_off.prefill_tokens_per_s")
ln_p128 = runs("landauer-p128", "tracing_on.prefill_tokens_per_s")
ll_d, ll_p = runs("llamacpp", "decode_tokens_per_s_runs"), runs("llamacpp", "prefill_tokens_per_s_runs")
ll_p128 = runs("llamacpp-p128", "prefill_tokens_per_s_runs")
c = load("candle")
first = load("landauer-1")
per_round = [load(f"landauer-{r}") for r in range(1, rounds + 1)]
s = {
    "rounds": rounds, "runs_per_round": len(lo_d) // rounds, "threads": first["threads"],
    "prompt_tokens": first["prompt_tokens"], "generated_tokens": first["generated_tokens"],
    "landauer_tracing_off": {"decode": med(lo_d), "prefill": med(lo_p), "prefill_128": med(lo_p128)},
    "landauer_tracing_on": {"decode": med(ln_d), "prefill": med(ln_p), "prefill_128": med(ln_p128)},
    "llamacpp": {"decode": med(ll_d), "prefill": med(ll_p), "prefill_128": med(ll_p128)},
    "candle_model_tracing_off": {"decode": c["tracing_off"]["decode_tokens_per_s_median"],
                                  "prefill": c["tracing_off"]["prefill_tokens_per_s_median"]},
    "tracing_cost_fraction_median": med([d["tracing_cost_fraction"] for d in per_round]),
    "tracing_ms_per_token_median": med([d["tracing_ms_per_token"] for d in per_round]),
    "tracing_overhead_paired_all_runs": med([a / b - 1 for a, b in zip(lo_d, ln_d)]),
    "roofline_tokens_per_s_median": med([d["roofline"]["roofline_tokens_per_s"] for d in per_round]),
    "read_bandwidth_bytes_per_s_median": med([d["roofline"]["read_bandwidth_bytes_per_s"] for d in per_round]),
    "bytes_per_token": first["roofline"]["bytes_per_token"],
}
json.dump(s, open(f"{out}/summary.json", "w"), indent=2)
L, T, C, Q = s["landauer_tracing_off"], s["landauer_tracing_on"], s["candle_model_tracing_off"], s["llamacpp"]
print(f"{'engine':<30}{'decode tok/s':>14}{'prefill ' + str(s['prompt_tokens']) + ' tok':>16}{'prefill 128 tok':>17}")
for name, x in [("landauer, tracing off", L), ("landauer, tracing on", T), ("candle's model, tracing off", C), ("llama.cpp", Q)]:
    p128 = x.get("prefill_128")
    print(f"{name:<30}{x['decode']:>14.1f}{x['prefill']:>16.1f}{(f'{p128:.1f}' if p128 else '-'):>17}")
print(f"landauer / llama.cpp: decode {L['decode']/Q['decode']:.2f}x, prefill {L['prefill']/Q['prefill']:.2f}x "
      f"({s['prompt_tokens']} tokens), {L['prefill_128']/Q['prefill_128']:.2f}x (128 tokens)")
print(f"landauer / candle's model: decode {L['decode']/C['decode']:.2f}x, prefill {L['prefill']/C['prefill']:.2f}x")
print(f"tracing: {s['tracing_ms_per_token_median']:.3f} ms/token in the sinks = {100*s['tracing_cost_fraction_median']:.2f}% "
      f"of untraced decode time; end to end {100*s['tracing_overhead_paired_all_runs']:+.2f}% (median over all paired runs)")
rl = s["roofline_tokens_per_s_median"]
print(f"roofline: {s['read_bandwidth_bytes_per_s_median']/1e9:.1f} GB/s read, {s['bytes_per_token']/1e6:.1f} MB per decode token "
      f"-> {rl:.0f} tokens/s; landauer at {100*L['decode']/rl:.0f}%, llama.cpp at {100*Q['decode']/rl:.0f}%")
PY
