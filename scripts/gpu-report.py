#!/usr/bin/env python3
"""Turns a gpu-study.sh output folder into one results JSON and a Markdown table.

    python3 scripts/gpu-report.py STUDY_DIR RESULT.json

Per model: decode tokens/s (median, tracing off and on), decode power, J/token (total and
active), tokens/Wh, and the fraction of the memory-bandwidth roofline reached: bytes one
decode step must read (weights, plus the f32 KV cache at the run's mean position) over the
measured copy bandwidth gives the roofline tokens/s; measured / roofline is the fraction.
"""
import glob
import json
import os
import sys

study, result = sys.argv[1], sys.argv[2]
bw = json.load(open(os.path.join(study, "copy_bandwidth.json")))
meters = json.load(open(os.path.join(study, "meters.json")))
# KV cache shapes (layers, kv dim) of the synthetic architectures, for the KV bytes per step.
KV = {
    "smollm2-135m": (30, 3 * 64), "smollm2-360m": (32, 5 * 64), "qwen2.5-0.5b": (24, 2 * 64),
    "llama-3.2-1b": (16, 8 * 64), "llama-3.2-3b": (28, 8 * 128), "llama-3.1-8b": (32, 8 * 128),
    "qwen2.5-7b": (28, 4 * 128),
}
rows = []
for path in sorted(glob.glob(os.path.join(study, "bench-*.json"))):
    b = json.load(open(path))
    arch = b["model"].split(":")[1]
    layers, kv_dim = KV[arch]
    mean_pos = b["prompt_tokens"] + b["generated_tokens"] / 2
    kv_bytes = 2 * layers * kv_dim * mean_pos * 4
    bytes_per_token = b["weight_bytes_per_token"] + kv_bytes
    roofline = bw["bandwidth_bytes_per_s"] / bytes_per_token
    off = b["tracing_off"]["decode_tokens_per_s_median"]
    on = b["tracing_on"]["decode_tokens_per_s_median"]
    e = b.get("energy") or {}
    rows.append({
        "model": b["model"],
        "parameters": b["parameters"],
        "quantization_dominant": b["quantization"],
        "device": b["device"],
        "device_name": b["device_name"],
        "runs": b["runs"],
        "prompt_tokens": b["prompt_tokens"],
        "generated_tokens": b["generated_tokens"],
        "decode_tokens_per_s_median_tracing_off": off,
        "decode_tokens_per_s_median_tracing_on": on,
        "decode_tokens_per_s_runs_tracing_on": b["tracing_on"]["decode_tokens_per_s"],
        "decode_power_w_median": e.get("decode_power_w_median"),
        "idle_power_w": e.get("idle_power_w"),
        "decode_joules_per_token_median": e.get("decode_joules_per_token_median"),
        "decode_joules_per_token_runs": e.get("decode_joules_per_token"),
        "decode_active_joules_per_token_median": e.get("decode_active_joules_per_token_median"),
        "decode_tokens_per_wh_median": e.get("decode_tokens_per_wh_median"),
        "meter": e.get("meter"),
        "meter_resolution_s": e.get("meter_resolution_s"),
        "temperature_c_mean": e.get("temperature_c_mean"),
        "sm_clock_mhz_mean": e.get("sm_clock_mhz_mean"),
        "untraced_decode_joules_per_token_median": e.get("untraced_decode_joules_per_token_median"),
        "untraced_decode_joules_per_token_runs": e.get("untraced_decode_joules_per_token"),
        "untraced_decode_active_joules_per_token_median": e.get("untraced_decode_active_joules_per_token_median"),
        "untraced_decode_tokens_per_wh_median": e.get("untraced_decode_tokens_per_wh_median"),
        "untraced_decode_power_w_median": e.get("untraced_decode_power_w_median"),
        "weight_bytes_per_token": b["weight_bytes_per_token"],
        "kv_bytes_per_token_mean": kv_bytes,
        "roofline_tokens_per_s": roofline,
        "roofline_fraction_tracing_off": off / roofline,
    })
out = {
    "what": "issue 4: synthetic models (random weights, real shapes) in q4_k, batch 1, "
            "256 generated tokens, greedy, NVML meter, landauer bench medians",
    "copy_bandwidth": bw,
    "meters": meters,
    "models": rows,
}
json.dump(out, open(result, "w"), indent=1)
print("| model | params | tracing | decode tok/s | decode W | J/token | active J/token | tokens/Wh | bytes/token | roofline tok/s | of roofline |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
f = lambda v, p: "-" if v is None else f"{v:.{p}f}"
for r in rows:
    gb = (r['weight_bytes_per_token'] + r['kv_bytes_per_token_mean']) / 1e9
    name = r['model'].replace("synthetic:", "")
    for traced in (False, True):
        k = "" if traced else "untraced_"
        tps = r["decode_tokens_per_s_median_tracing_" + ("on" if traced else "off")]
        print(f"| {name} | {r['parameters']/1e9:.2f}B | {'on' if traced else 'off'} | {tps:.1f} | "
              f"{f(r[k + 'decode_power_w_median'], 0)} | {f(r[k + 'decode_joules_per_token_median'], 3)} | "
              f"{f(r[k + 'decode_active_joules_per_token_median'], 3)} | {f(r[k + 'decode_tokens_per_wh_median'], 0)} | "
              f"{gb:.3f} GB | {r['roofline_tokens_per_s']:.0f} | {100 * tps / r['roofline_tokens_per_s']:.0f}% |")
