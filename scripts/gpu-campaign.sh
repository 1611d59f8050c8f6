#!/usr/bin/env bash
# Issue 21's GPU campaign in one run: landauer and llama.cpp side by side on one GGUF file,
# batch 1 to 512, sampling on the host against on the device, tracing on against off at every
# batch size, f16 cuBLAS GEMM against candle's MMQ kernels, an independent NVML energy reading,
# and kernel launches per token. Sized for 8 minutes of an H100/H200; every step is time-boxed
# and the campaign stops starting steps at $DEADLINE_S seconds.
#
#   scripts/gpu-campaign.sh BUNDLE_DIR OUT_DIR      on the GPU machine (bundle: gpu-bundle.sh
#                                                   --llamacpp, with llamacpp/ and py/ in it)
#   scripts/gpu-campaign.sh --dry-run OUT_DIR       here, on the CPU: every step on a small
#                                                   synthetic model with the CPU builds of both
#                                                   engines, to check the plumbing before a GPU
#                                                   is spent on it (the figures mean nothing)
#
# Settings (environment): MODEL (llama-3.1-8b), QUANT (q4_k), BATCHES (1,8,64,128,256,512),
# TRACE_BATCHES (1,64,512: bench tracing on/off), ROUNDS (2: interleaved batch-1 rounds),
# F16_BATCHES (64,256,512), DEADLINE_S (450). Steps run most important first. Writes into OUT_DIR: one file per step (JSON where the tool writes JSON,
# else its text output), log.txt, and campaign.json + campaign.md from gpu-campaign-report.py.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dry=0
if [[ "${1:-}" == "--dry-run" ]]; then
  dry=1
  shift
  bundle=""
else
  bundle="$(cd "${1:?usage: gpu-campaign.sh BUNDLE_DIR|--dry-run OUT_DIR}" && pwd)"
  shift
fi
out="${1:?usage: gpu-campaign.sh BUNDLE_DIR|--dry-run OUT_DIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
work="${CAMPAIGN_WORK:-/tmp/gpu-campaign}"
mkdir -p "$work"
exec > >(tee -a "$out/log.txt") 2>&1
start=$(date +%s)

# `landauer` and `llama TOOL` on PATH as small executables (timeout runs executables, not
# shell functions).
mkdir -p "$work/bin"
export PATH="$work/bin:$PATH"
if [[ $dry == 1 ]]; then
  MODEL="${MODEL:-smollm2-135m}" QUANT="${QUANT:-q4_k}" BATCHES="${BATCHES:-1,4}"
  TRACE_BATCHES="${TRACE_BATCHES:-1,4}" ROUNDS="${ROUNDS:-1}" DEADLINE_S="${DEADLINE_S:-900}"
  llamacpp_bin="$("$here/llamacpp-tools.sh")"
  printf '#!/bin/sh\nexec "%s" "$@"\n' "$here/../target/release/landauer" >"$work/bin/landauer"
  printf '#!/bin/sh\nt="$1"; shift; LD_LIBRARY_PATH="%s" exec "%s/$t" "$@"\n' "$llamacpp_bin" "$llamacpp_bin" >"$work/bin/llama"
  dev=(--device cpu) ngl=(-ngl 0) n_tokens=16 n_bench=32 fake=(--fake-watts 20) meter=estimate
  nvml_rows=4 nvml_tokens=32 serve_rows=4 serve_rates=2,8 serve_requests=12
else
  MODEL="${MODEL:-llama-3.1-8b}" QUANT="${QUANT:-q4_k}" BATCHES="${BATCHES:-1,8,64,128,256,512}"
  TRACE_BATCHES="${TRACE_BATCHES:-1,64,512}" ROUNDS="${ROUNDS:-2}" DEADLINE_S="${DEADLINE_S:-450}"
  F16_BATCHES="${F16_BATCHES:-64,256,512}"
  printf '#!/bin/sh\nexec "%s/launch.sh" "$@"\n' "$bundle" >"$work/bin/landauer"
  printf '#!/bin/sh\nLANDAUER_CUDA_LIBS="$("%s/launch.sh" --cuda-libs)" exec "%s/llamacpp/run.sh" "$@"\n' "$bundle" "$bundle" >"$work/bin/llama"
  export PYTHONPATH="$bundle/py${PYTHONPATH:+:$PYTHONPATH}"
  # 32 tokens a row: 16k tokens, several seconds, at batch 512 (estimated time of the whole
  # campaign on an H100 at ~2,000 tokens/s there: 7-8 minutes, most of it model loads).
  dev=(--device cuda) ngl=(-ngl 99) n_tokens=32 n_bench=128 fake=() meter=nvml
  nvml_rows=64 nvml_tokens=256 serve_rows=64 serve_rates=16,64 serve_requests=128
fi
chmod +x "$work/bin/landauer" "$work/bin/llama"
model="$work/$MODEL-$QUANT.gguf"
ok=()
failed=()

step() { echo; echo "== $* (t+$(( $(date +%s) - start ))s)"; }
# run NAME SECONDS CMD...: a step, time-boxed, never stopping the campaign; skipped past the
# deadline.
run() {
  local name="$1" secs="$2"
  shift 2
  if (( $(date +%s) - start > DEADLINE_S )); then
    echo "gpu-campaign: $name skipped: past the ${DEADLINE_S} s deadline"
    failed+=("$name (skipped)")
    return
  fi
  step "$name"
  if timeout "$secs" "$@"; then ok+=("$name"); else
    echo "gpu-campaign: $name failed (exit $?)"
    failed+=("$name")
  fi
}

step "machine"
if [[ $dry == 1 ]]; then lscpu | head -20; else
  nvidia-smi --query-gpu=name,driver_version,pci.bus_id,power.limit,clocks.max.sm,clocks.max.mem,memory.total --format=csv
fi
echo "MODEL=$MODEL QUANT=$QUANT BATCHES=$BATCHES TRACE_BATCHES=$TRACE_BATCHES ROUNDS=$ROUNDS"

# One file for both engines: the synthetic model written as a GGUF.
[[ -s "$model" ]] || run model-file 120 landauer synthetic-gguf "$MODEL:$QUANT" -o "$model"

# Batch 1, interleaved rounds: landauer sampling on the device and on the host, and
# llama-bench's tg and pp512, the order rotating each round.
for r in $(seq 1 "$ROUNDS"); do
  order=(device host llama)
  (( r % 2 == 0 )) && order=(llama host device)
  for who in "${order[@]}"; do
    case $who in
      llama) run "llama-bench-r$r" 120 sh -c "llama llama-bench -m '$model' ${ngl[*]} -p 512 -n $n_bench -r 3 -o json >'$out/llama-bench-r$r.json'" ;;
      *) run "landauer-b1-$who-r$r" 120 landauer bench --model "$model" "${dev[@]}" -n "$n_bench" --runs 3 \
           --warmup 1 --no-exact-check --sample-on "$who" --out "$out/landauer-b1-$who-r$r.json" ;;
    esac
  done
done

# Batch 1 on landauer's batched pass (a GPU's default for one sequence is candle-transformers').
run landauer-b1-batched-pass 120 env LANDAUER_FORWARD=batched landauer bench --model "$model" "${dev[@]}" \
  -n "$n_bench" --runs 3 --warmup 1 --no-exact-check --out "$out/landauer-b1-batched-pass.json"
# The batch sweep (J/token, tokens/Wh against batch size): one model load, interleaved rounds.
run sweep 150 landauer sweep --model "$model" "${dev[@]}" --batch "$BATCHES" -n "$n_tokens" \
  --runs 2 --interleave --out "$out/sweep"
# llama.cpp's batched decode on the same file.
max_b="${BATCHES##*,}"
run llama-batched-bench 150 sh -c "llama llama-batched-bench -m '$model' ${ngl[*]} -c $(( max_b * (128 + n_tokens) + 256 )) -npp 128 -ntg $n_tokens -npl $BATCHES --output-format jsonl >'$out/llama-batched-bench.jsonl'"
# Tracing on against off at several batch sizes (bench alternates them in every round).
IFS=, read -ra tb <<<"$TRACE_BATCHES"
for b in "${tb[@]}"; do
  run "tracing-b$b" 90 landauer bench --model "$model" "${dev[@]}" --batch "$b" -n "$n_tokens" --runs 2 \
    --warmup 1 --no-exact-check --out "$out/tracing-b$b.json"
done
# An independent energy reading over one run's window: a batch big enough to draw power.
prompts="$work/prompts.txt"
for i in $(seq 1 "$nvml_rows"); do echo "Story $i: once upon a time, in a town by the sea,"; done >"$prompts"
run nvml-check 90 python3 "$here/nvml-check.py" "${fake[@]}" --trace "$work/nvml.jsonl" \
  --out "$out/nvml-check.json" -- "$work/bin/landauer" generate --model "$model" "${dev[@]}" \
  --meter "$meter" -q --max-tokens "$nvml_tokens" --greedy --ignore-eos --prompts "$prompts" \
  --trace "$work/nvml.jsonl"
# landauer serve's continuous batch on the device: every prompt alone, then Poisson load at
# two rates; responses against alone, the bills against the meter's busy energy.
run serve 150 "$here/serve-check.sh" "$out/serve" "$serve_rates" "$serve_requests" -- \
  landauer serve --model "$model" "${dev[@]}" --max-batch "$serve_rows" --max-context 512 \
  --queue 1024 --meter "$meter"
# Quantized weights dequantized to f16 for cuBLAS from 64 rows, against candle's MMQ kernels
# (the sweep above): the batch sizes after the first.
run sweep-f16-gemm 120 env LANDAUER_F16_GEMM_ROWS=64 landauer sweep --model "$model" "${dev[@]}" \
  --batch "${F16_BATCHES:-${BATCHES#*,}}" -n "$n_tokens" --runs 1 --out "$out/sweep-f16-gemm"
# Kernel launches per decode token, with nsys where the machine has it: candle-transformers'
# forward pass (a single prompt) and landauer's batched pass (a one-line --prompts).
if command -v nsys >/dev/null && [[ $dry == 0 ]]; then
  head -n 1 "$prompts" >"$work/one-prompt.txt"
  for fwd in batched candle; do
    input=("Once upon a time"); [[ $fwd == batched ]] && input=(--prompts "$work/one-prompt.txt")
    run "nsys-$fwd" 90 nsys profile -o "$work/nsys-$fwd" --force-overwrite true --trace cuda \
      "$bundle/launch.sh" generate --model "$model" --device cuda --meter none -q --max-tokens 64 \
      --greedy --ignore-eos --trace "$out/nsys-$fwd.jsonl" "${input[@]}"
    nsys stats --report cuda_gpu_kern_sum --format csv --output "$out/nsys-$fwd" "$work/nsys-$fwd.nsys-rep" || true
  done
else
  echo "gpu-campaign: no nsys here: kernel launches per token not counted"
fi

step "report"
python3 "$here/gpu-campaign-report.py" "$out" || failed+=(report)
echo "gpu-campaign: done in $(( $(date +%s) - start )) s; ok: ${ok[*]:-none}; failed: ${failed[*]:-none}"
