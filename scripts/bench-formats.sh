#!/usr/bin/env bash
# Every GGUF preset people download, landauer against llama.cpp on the same bytes, same machine,
# same threads, in one run (nothing else should be running):
#   - the default model (SmolLM2-135M-Instruct) requantized by llama.cpp's own llama-quantize
#     into each preset (576 columns: the K-quant presets fall back to q5_0/q5_1/q8_0 there, and
#     ffn_down, 1536 columns, takes the K-quant);
#   - synthetic Llama-3.2-1B written by `landauer synthetic-gguf llama-3.2-1b:PRESET` with the
#     default model's vocabulary (2048 columns: every tensor takes the preset's types).
# For each file and round: decode (TOKENS tokens) and a 128-token prefill (benches/prompt-128.txt)
# from `landauer bench` (tracing off and on, which also measures the read bandwidth that gives
# the roofline) and from `llama-bench` (tg / pp128); batch-8 decode throughput from
# `landauer sweep --batch 8` and `llama-batched-bench -npl 8` (S_TG). The engines take turns
# (order alternating by round), and medians are over all runs of all rounds.
#
#   scripts/bench-formats.sh [ROUNDS] [THREADS]
#
# Environment: PRESETS (default "q4_k_m q5_k_m q6_k q8_0 q4_0"), MODELS (default
# "smollm2-135m llama-3.2-1b"), RUNS per engine and round (default 2), TOKENS decoded per run
# (default 64), BATCH_TOKENS per row at batch 8 (default 32), LLAMACPP_BIN (a folder holding
# llama-bench, llama-batched-bench and llama-quantize; default: scripts/llamacpp-tools.sh builds
# them), BENCH_FILES (where the model files go; default ~/.cache/landauer/bench-files).
# Writes benches/results/formats-<date>/ (every run's JSON, summary.json, table.md) and prints
# the table; SUMMARY_ONLY=1 OUT=DIR remakes summary.json and table.md from DIR's runs. Kept out
# of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
threads="${2:-2}"
presets="${PRESETS:-q4_k_m q5_k_m q6_k q8_0 q4_0}"
models="${MODELS:-smollm2-135m llama-3.2-1b}"
runs="${RUNS:-2}"
tokens="${TOKENS:-64}"
btokens="${BATCH_TOKENS:-32}"
files="${BENCH_FILES:-$HOME/.cache/landauer/bench-files}"
out="${OUT:-benches/results/formats-$(date -u +%Y-%m-%d)}"
mkdir -p "$out" "$files"

if [[ -z "${SUMMARY_ONLY:-}" ]]; then
cargo build --release --quiet
L=./target/release/landauer
bin="${LLAMACPP_BIN:-$(scripts/llamacpp-tools.sh)}"
export LD_LIBRARY_PATH="$bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
default="$($L fetch 2>/dev/null)"
long_prompt="$(cat benches/prompt-128.txt)"

echo "== files"
for model in $models; do
  for preset in $presets; do
    f="$files/$model-$preset.gguf"
    if [[ ! -s "$f" ]]; then
      case "$model" in
        smollm2-135m)
          "$bin/llama-quantize" --allow-requantize "$default" "$f" "${preset^^}" \
            > "$files/$model-$preset.quantize.log" 2>&1 ;;
        *)
          $L synthetic-gguf "$model:$preset" --vocab-from "$default" -o "$f" ;;
      esac
    fi
    # llama.cpp must load and run the very file landauer runs.
    if ! "$bin/llama-bench" -m "$f" -t "$threads" -p 0 -n 1 -r 1 -o json > /dev/null 2>&1; then
      echo "bench-formats: llama.cpp's llama-bench refuses $f" >&2
      exit 1
    fi
    echo "$f: $(du -h "$f" | cut -f1)"
  done
done

landauer_runs() { # FILE TAG
  $L bench --model "$1" --runs "$runs" --threads "$threads" -n "$tokens" \
    --out "$out/$2-landauer.json" > /dev/null 2> "$out/$2-landauer.err"
  $L bench --model "$1" --runs "$runs" --threads "$threads" -n 4 --prompt "$long_prompt" \
    --out "$out/$2-landauer-p128.json" > /dev/null 2>> "$out/$2-landauer.err"
  $L sweep --model "$1" --batch 8 -n "$btokens" --runs "$runs" --threads "$threads" \
    --meter none --out "$out/$2-landauer-b8" > /dev/null 2>> "$out/$2-landauer.err"
}
llama_runs() { # FILE TAG
  "$bin/llama-bench" -m "$1" -t "$threads" -p 128 -n "$tokens" -r "$runs" -o json \
    > "$out/$2-llama.json" 2> /dev/null
  for _ in $(seq 1 "$runs"); do
    "$bin/llama-batched-bench" -m "$1" -c 2048 -b 2048 -ub 512 -npp 14 -ntg "$btokens" -npl 8 \
      -t "$threads" --output-format jsonl 2> /dev/null | grep '^{' >> "$out/$2-llama-b8.jsonl"
  done
}

for r in $(seq 1 "$rounds"); do
  for model in $models; do
    for preset in $presets; do
      f="$files/$model-$preset.gguf"
      tag="$model-$preset-$r"
      echo "== round $r/$rounds: $model $preset"
      if (( r % 2 )); then landauer_runs "$f" "$tag"; llama_runs "$f" "$tag"
      else llama_runs "$f" "$tag"; landauer_runs "$f" "$tag"; fi
    done
  done
done

fi

python3 - "$out" "$rounds" "$models" "$presets" "$threads" <<'PY'
import json, statistics, sys
out, rounds, models, presets, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split(), sys.argv[5]
med = statistics.median
load = lambda p: json.load(open(f"{out}/{p}"))
rows, table = [], []
for model in models:
    for preset in presets:
        tags = [f"{model}-{preset}-{r}" for r in range(1, rounds + 1)]
        L = [load(f"{t}-landauer.json") for t in tags]
        P = [load(f"{t}-landauer-p128.json") for t in tags]
        S = [load(f"{t}-landauer-b8/sweep.json") for t in tags]
        Q = [load(f"{t}-llama.json") for t in tags]
        B = [json.loads(l) for t in tags for l in open(f"{out}/{t}-llama-b8.jsonl") if l.strip()]
        dec = [x for d in L for x in d["tracing_off"]["decode_tokens_per_s"]]
        dec_on = [x for d in L for x in d["tracing_on"]["decode_tokens_per_s"]]
        pre = [x for d in P for x in d["tracing_off"]["prefill_tokens_per_s"]]
        b8 = [x for d in S for run in d["runs"] if run["batch"] == 8 for x in run["decode_tokens_per_s"]]
        q_dec = [x for d in Q for e in d if e["n_gen"] > 0 for x in e["samples_ts"]]
        q_pre = [x for d in Q for e in d if e["n_prompt"] > 0 for x in e["samples_ts"]]
        q_b8 = [e["speed_tg"] for e in B]
        bw = med([d["roofline"]["read_bandwidth_bytes_per_s"] for d in L])
        bpt = L[0]["roofline"]["bytes_per_token"]
        slow = sorted({s["type"] for d in L for s in d.get("slow_tensors", [])})
        row = {
            "model": model, "preset": preset, "llama_cpp_model_type": Q[0][0].get("model_type"),
            "file_bytes": Q[0][0].get("model_size"), "slow_path_types": slow,
            "landauer": {"decode": med(dec), "decode_traced": med(dec_on), "prefill_128": med(pre), "batch8": med(b8)},
            "llama_cpp": {"decode": med(q_dec), "prefill_128": med(q_pre), "batch8": med(q_b8)},
            "runs": {"landauer_decode": dec, "llama_decode": q_dec, "landauer_prefill": pre,
                     "llama_prefill": q_pre, "landauer_b8": b8, "llama_b8": q_b8},
            "read_bandwidth_bytes_per_s": bw, "bytes_per_token": bpt,
            "tracing_overhead_paired": med([d["tracing_overhead_paired"] for d in L]),
            "tracing_cost_fraction": med([d["tracing_cost_fraction"] for d in L]),
        }
        row["ratio"] = {k: row["landauer"][k] / row["llama_cpp"][k] for k in ("decode", "prefill_128", "batch8")}
        row["roofline_fraction"] = {"landauer": row["landauer"]["decode"] * bpt / bw, "llama_cpp": row["llama_cpp"]["decode"] * bpt / bw}
        rows.append(row)
json.dump({"rounds": rounds, "threads": int(threads), "rows": rows}, open(f"{out}/summary.json", "w"), indent=2)
hdr = ("| model | preset (llama.cpp's label) | decode tok/s landauer / llama.cpp | ratio | prefill 128 tok/s | ratio "
       "| batch-8 decode tok/s | ratio | roofline fraction landauer / llama.cpp | tracing: in the sinks, end to end |")
lines = [hdr, "|" + "---|" * 10]
for w in rows:
    a, b, r, f = w["landauer"], w["llama_cpp"], w["ratio"], w["roofline_fraction"]
    lines.append(f"| {w['model']} | {w['preset']} ({w['llama_cpp_model_type']}) | {a['decode']:.1f} / {b['decode']:.1f} | {r['decode']:.2f}x "
                 f"| {a['prefill_128']:.1f} / {b['prefill_128']:.1f} | {r['prefill_128']:.2f}x | {a['batch8']:.1f} / {b['batch8']:.1f} | {r['batch8']:.2f}x "
                 f"| {100*f['landauer']:.0f}% / {100*f['llama_cpp']:.0f}% | {100*w['tracing_cost_fraction']:.1f}%, {100*w['tracing_overhead_paired']:+.1f}% |")
    if w["slow_path_types"]:
        lines.append(f"| | slow path: {', '.join(w['slow_path_types'])} | | | | | | | | |")
open(f"{out}/table.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
