#!/usr/bin/env bash
# The first GPU study (issue 4), run on a GPU machine from a bundle made by gpu-bundle.sh:
# NVML probe, memory bandwidth, then synthetic models in q4_k at batch 1, 256 tokens,
# NVML meter, medians of --runs traced runs each.
#
#   scripts/gpu-study.sh BUNDLE_DIR OUT_DIR [RUNS] [MODELS...]
#
# Writes into OUT_DIR: meters.json, copy_bandwidth.json, bench-MODEL.json per model,
# traces.tar.xz (every traced run's JSONL and CSV) and log.txt. Keeps going past a failure
# so that one broken step does not lose the others.
set -uo pipefail
bundle="${1:?usage: gpu-study.sh BUNDLE_DIR OUT_DIR [RUNS] [MODELS...]}"
out="${2:?usage: gpu-study.sh BUNDLE_DIR OUT_DIR [RUNS] [MODELS...]}"
runs="${3:-3}"
shift 3 2>/dev/null || shift $#
models=("$@")
[[ ${#models[@]} -gt 0 ]] || models=(smollm2-135m llama-3.2-1b llama-3.1-8b)
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$out" /tmp/gpu-study-traces
exec > >(tee -a "$out/log.txt") 2>&1

step() { echo; echo "== $* ($(date -u +%H:%M:%S))"; }
step "machine"
nvidia-smi --query-gpu=name,driver_version,pci.bus_id,power.limit,clocks.max.sm,clocks.max.mem,memory.total --format=csv || true
step "landauer meters (NVML probe, 2 s)"
"$bundle/launch.sh" meters --seconds 2 --json >"$out/meters.json" && cat "$out/meters.json"
step "copy bandwidth"
python3 "$here/copy-bandwidth.py" --gib 4 --reps 20 >"$out/copy_bandwidth.json" && cat "$out/copy_bandwidth.json"
for m in "${models[@]}"; do
  step "bench synthetic:$m:q4_k, 256 tokens, $runs runs"
  "$bundle/launch.sh" bench --device cuda --model "synthetic:$m:q4_k" -n 256 --runs "$runs" --warmup 1 \
    --trace-dir "/tmp/gpu-study-traces/$m" --out "$out/bench-$m.json" \
    || echo "gpu-study: bench of $m failed (exit $?)"
done
step "traces"
tar -C /tmp/gpu-study-traces -cJf "$out/traces.tar.xz" . && ls -la "$out"
