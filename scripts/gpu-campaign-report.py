#!/usr/bin/env python3
"""Turns a gpu-campaign.sh output folder into campaign.json and campaign.md (in that folder).

    python3 scripts/gpu-campaign-report.py OUT_DIR

Tables: batch-1 decode and prefill, landauer (sampling on the device and on the host) against
llama-bench on the same file, medians over the interleaved rounds and their ratio; the batch
sweep (tokens/s, J/token, tokens/Wh) against llama-batched-bench and ML.ENERGY's vLLM figure;
f16 cuBLAS GEMM against candle's MMQ; tracing's cost at each batch size; the independent NVML
reading; kernel launches per decode token. A step that did not run leaves its rows out and is
named under "missing".
"""
import glob
import json
import os
import re
import statistics
import sys

# ML.ENERGY v3 (vLLM 0.11.1, bf16), Llama-3.1-8B on an H100: J/token at these batch sizes
# (../shared/reference/gpu-notes.md).
MLENERGY_J = {256: 0.077, 512: 0.070}


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio(a, b):
    return a / b if a and b else None


def fmt(x, digits=1):
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return str(x)


def main():
    out = sys.argv[1]
    res, missing, md = {}, [], []

    # Batch 1.
    def bench_rows(runs):
        """Medians over rounds of landauer bench reports."""
        return {
            "decode_tokens_per_s": median(r["tracing_off"]["decode_tokens_per_s_median"] for r in runs),
            "decode_traced_tokens_per_s": median(r["tracing_on"]["decode_tokens_per_s_median"] for r in runs),
            "prefill_tokens_per_s": median(r["tracing_off"]["prefill_tokens_per_s_median"] for r in runs),
            "prompt_tokens": runs[0]["prompt_tokens"],
            "rounds": len(runs),
            "decode_joules_per_token": median(
                median(r["energy"]["decode_joules_per_token"]) if r.get("energy") else None for r in runs
            ),
        }

    lb = {}
    for who, pattern in (("device", "landauer-b1-device-r*.json"), ("host", "landauer-b1-host-r*.json"),
                         ("batched pass", "landauer-b1-batched-pass.json")):
        runs = [r for r in (load(p) for p in sorted(glob.glob(os.path.join(out, pattern)))) if r]
        if runs:
            lb[who] = bench_rows(runs)
        else:
            missing.append(f"landauer batch 1 ({who})")
    tg, pp = [], []
    for p in sorted(glob.glob(os.path.join(out, "llama-bench-r*.json"))):
        for row in load(p) or []:
            if row.get("n_gen", 0) > 0 and row.get("n_prompt", 0) == 0:
                tg.append(row["avg_ts"])
            elif row.get("n_prompt", 0) > 0 and row.get("n_gen", 0) == 0:
                pp.append((row["n_prompt"], row["avg_ts"]))
    llama_b1 = {
        "tg_tokens_per_s": median(tg),
        "pp_tokens_per_s": median(x for _, x in pp),
        "pp_tokens": pp[0][0] if pp else None,
        "rounds": len(tg),
    }
    if not tg:
        missing.append("llama-bench")
    res["batch1"] = {"landauer": lb, "llama_cpp": llama_b1}
    md += ["## Batch 1", "", "| engine | decode tok/s | traced | prefill tok/s | decode / llama.cpp |", "|---|---|---|---|---|"]
    for who, v in lb.items():
        md.append(
            f"| landauer, {'sampling on the ' + who if who != 'batched pass' else 'batched pass'} | {fmt(v['decode_tokens_per_s'])} | "
            f"{fmt(v['decode_traced_tokens_per_s'])} | {fmt(v['prefill_tokens_per_s'])} ({v['prompt_tokens']} tokens) | "
            f"{fmt(ratio(v['decode_tokens_per_s'], llama_b1['tg_tokens_per_s']), 2)} |"
        )
    md.append(
        f"| llama.cpp llama-bench | {fmt(llama_b1['tg_tokens_per_s'])} | | "
        f"{fmt(llama_b1['pp_tokens_per_s'])} ({llama_b1['pp_tokens']} tokens) | |"
    )

    # The sweep, llama-batched-bench, f16 GEMM.
    sweep = load(os.path.join(out, "sweep", "sweep.json"))
    f16 = load(os.path.join(out, "sweep-f16-gemm", "sweep.json"))
    lbb = {}
    try:
        for line in open(os.path.join(out, "llama-batched-bench.jsonl")):
            line = line.strip()
            if line.startswith("{"):
                r = json.loads(line)
                if "speed_tg" in r:
                    lbb[r["pl"]] = r["speed_tg"]
    except OSError:
        missing.append("llama-batched-bench")
    rows = []
    if sweep:
        f16_rows = {r["batch"]: r for r in (f16 or {}).get("rows", [])}
        for r in sweep["rows"]:
            b = r["batch"]
            g = f16_rows.get(b, {})
            rows.append({
                "batch": b,
                "decode_tokens_per_s": r["decode_tokens_per_s"],
                "joules_per_token": r.get("joules_per_token"),
                "tokens_per_wh": r.get("tokens_per_wh"),
                "mean_power_w": r.get("mean_power_w"),
                "llama_cpp_tg_tokens_per_s": lbb.get(b),
                "ratio_to_llama_cpp": ratio(r["decode_tokens_per_s"], lbb.get(b)),
                "f16_gemm_decode_tokens_per_s": g.get("decode_tokens_per_s"),
                "f16_gemm_joules_per_token": g.get("joules_per_token"),
                "mlenergy_vllm_joules_per_token": MLENERGY_J.get(b),
            })
        res["sweep_meter"] = sweep.get("meter")
        res["sampled_on"] = sweep.get("sampled_on")
    else:
        missing.append("sweep")
    res["sweep"] = rows
    md += ["", "## Batch sweep", "",
           "| batch | tok/s | J/token | tokens/Wh | W | llama.cpp tok/s | ratio | f16 GEMM tok/s | f16 GEMM J/token | vLLM J/token (ML.ENERGY) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(
            f"| {r['batch']} | {fmt(r['decode_tokens_per_s'])} | {fmt(r['joules_per_token'], 4)} | "
            f"{fmt(r['tokens_per_wh'], 0)} | {fmt(r['mean_power_w'])} | {fmt(r['llama_cpp_tg_tokens_per_s'])} | "
            f"{fmt(r['ratio_to_llama_cpp'], 2)} | {fmt(r['f16_gemm_decode_tokens_per_s'])} | "
            f"{fmt(r['f16_gemm_joules_per_token'], 4)} | {fmt(r['mlenergy_vllm_joules_per_token'], 3)} |"
        )

    # Tracing's cost per batch size.
    tracing = []
    for p in glob.glob(os.path.join(out, "tracing-b*.json")):
        r = load(p)
        if r:
            tracing.append({
                "batch": r.get("batch", 1),
                "untraced_tokens_per_s": r["tracing_off"]["decode_tokens_per_s_median"],
                "traced_tokens_per_s": r["tracing_on"]["decode_tokens_per_s_median"],
                "overhead_pct": 100 * r["tracing_overhead"],
                "overhead_paired_pct": 100 * r["tracing_overhead_paired"],
                "sink_ms_per_token": r["tracing_ms_per_token"],
                "sink_cost_pct": 100 * r["tracing_cost_fraction"],
            })
    tracing.sort(key=lambda r: r["batch"])
    if not tracing:
        missing.append("tracing")
    res["tracing"] = tracing
    md += ["", "## Tracing on against off", "",
           "| batch | untraced tok/s | traced tok/s | end to end | paired | sinks, ms/token | sinks, % of decode |",
           "|---|---|---|---|---|---|---|"]
    for r in tracing:
        md.append(
            f"| {r['batch']} | {fmt(r['untraced_tokens_per_s'])} | {fmt(r['traced_tokens_per_s'])} | "
            f"{r['overhead_pct']:+.2f}% | {r['overhead_paired_pct']:+.2f}% | {r['sink_ms_per_token']:.4f} | "
            f"{r['sink_cost_pct']:.2f}% |"
        )

    # The independent reading.
    nv = load(os.path.join(out, "nvml-check.json"))
    res["nvml_check"] = nv
    if nv:
        md += ["", "## Independent energy reading", "",
               f"landauer {fmt(nv['landauer_j'], 2)} J against {nv['independent_source']} "
               f"{fmt(nv['independent_j'], 2)} J over the same {fmt(nv['window_s'], 2)} s window: "
               f"{fmt(nv['difference_pct'], 2)}% ({nv['counter_reads']} counter reads)."]
    else:
        missing.append("nvml-check")

    # landauer serve's continuous batch under load.
    sv = load(os.path.join(out, "serve", "serve-load.json"))
    res["serve"] = sv
    if sv:
        md += ["", "## landauer serve under load (continuous batching)", "",
               "| arrivals/s | served | tok/s | TTFT p50 / p99 s | mean batch | J/token | billed / metered | differ from alone |",
               "|---|---|---|---|---|---|---|---|"]
        for r in sv["rows"]:
            bm = r["billed_joules"] / r["busy_joules"] if r.get("busy_joules") else None
            md.append(f"| {r['arrival_rate_per_s']:g} | {r['served']}/{r['requests']} | {fmt(r['tokens_per_s'])} | "
                      f"{fmt(r['ttft_p50_s'], 3)} / {fmt(r['ttft_p99_s'], 3)} | {fmt(r['mean_batch_size'], 2)} | "
                      f"{fmt(r['joules_per_token'], 4)} | {fmt(bm, 6)} | {r.get('differs_from_alone', '–')} |")
    else:
        missing.append("serve")

    # Kernel launches per token.
    launches = {}
    for p in glob.glob(os.path.join(out, "nsys-*_cuda_gpu_kern_sum.csv")):
        fwd = re.match(r"nsys-(\w+)_", os.path.basename(p)).group(1)
        trace = os.path.join(out, f"nsys-{fwd}.jsonl")
        try:
            lines = [json.loads(x) for x in open(trace) if x.strip()]
            tokens = next(x for x in lines if x.get("type") == "summary")["tokens"]
            text = open(p).read().splitlines()
            head = next(i for i, x in enumerate(text) if x.startswith('"Time') or x.startswith("Time"))
            cols = [c.strip('"') for c in text[head].split(",")]
            k = cols.index("Instances")
            total = sum(int(row.split(",")[k].strip('"')) for row in text[head + 1:] if row.strip())
            launches[fwd] = {"kernels": total, "tokens": tokens, "per_token": total / tokens}
        except (OSError, StopIteration, ValueError, IndexError):
            continue
    res["launches"] = launches
    if launches:
        md += ["", "## Kernel launches", "", "| forward pass | kernels | tokens | per token |", "|---|---|---|---|"]
        for fwd, v in launches.items():
            md.append(f"| {fwd} | {v['kernels']} | {v['tokens']} | {v['per_token']:.1f} |")
    else:
        missing.append("kernel launches (nsys)")

    res["missing"] = missing
    if missing:
        md += ["", "Missing: " + ", ".join(missing) + "."]
    with open(os.path.join(out, "campaign.json"), "w") as f:
        json.dump(res, f, indent=2)
    with open(os.path.join(out, "campaign.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
