#!/usr/bin/env python3
"""Medians of several rounds of scripts/serve-load.py (each its own OUT_DIR).

    python3 scripts/serve-load-medians.py OUT.json ROUND_DIR [ROUND_DIR ...]

Per server and arrival rate: the median of each figure over the rounds and its range, the
responses served, and each round's billed/metered energy ratio. Prints two Markdown tables:
the medians, and per rate the second server's ratios to the first (tokens/s, J/token).
Standard library only.
"""
import json, statistics, sys
dirs = sys.argv[2:]
rounds = [json.load(open(f"{d}/serve-load.json"))["rows"] for d in dirs]
keys = [(r["server"], r["arrival_rate_per_s"]) for r in rounds[0]]
med = lambda xs: statistics.median(xs)
out = []
for k in keys:
    rs = [next(r for r in rows if (r["server"], r["arrival_rate_per_s"]) == k) for rows in rounds]
    m = {"server": k[0], "arrival_rate_per_s": k[1], "rounds": len(rs)}
    for f in ["requests_per_s","tokens_per_s","latency_p50_s","latency_p99_s","ttft_p50_s","ttft_p99_s","mean_batch_size","joules_per_token"]:
        m[f] = med([r[f] for r in rs])
        m[f+"_range"] = [min(r[f] for r in rs), max(r[f] for r in rs)]
    m["served"] = sum(r["served"] for r in rs); m["requests"] = sum(r["requests"] for r in rs)
    m["refused_429"] = sum(r["refused_429"] for r in rs)
    m["billed_over_metered"] = [r["billed_joules"]/r["busy_joules"] for r in rs]
    out.append(m)
json.dump({"method": f"medians of {len(dirs)} rounds of scripts/serve-load.py: {', '.join(dirs)}", "rows": out}, open(sys.argv[1], "w"), indent=2)
fmt = lambda x, n=2: f"{x:.{n}f}"
print("| server | arrivals/s | served | req/s | tok/s | latency p50 / p99 s | TTFT p50 / p99 s | mean batch | J/token (ESTIMATED) |")
print("|---|---|---|---|---|---|---|---|---|")
for m in out:
    print(f"| {m['server']} | {m['arrival_rate_per_s']:g} | {m['served']}/{m['requests']} | {fmt(m['requests_per_s'])} | {fmt(m['tokens_per_s'],1)} | {fmt(m['latency_p50_s'])} / {fmt(m['latency_p99_s'])} | {fmt(m['ttft_p50_s'],3)} / {fmt(m['ttft_p99_s'],3)} | {fmt(m['mean_batch_size'])} | {fmt(m['joules_per_token'],4)} |")
print()
names = list(dict.fromkeys(k[0] for k in keys))
a_name, b_name = names[0], names[-1]
print(f"| arrivals/s | tok/s {b_name} / {a_name} | J/token {b_name} / {a_name} | tok/s range {a_name} | tok/s range {b_name} | J/token range {a_name} | J/token range {b_name} | billed/metered (all rounds) |")
print("|---|---|---|---|---|---|---|---|")
for rate in sorted(set(k[1] for k in keys)):
    b1 = next(m for m in out if m["server"]==a_name and m["arrival_rate_per_s"]==rate)
    b8 = next(m for m in out if m["server"]==b_name and m["arrival_rate_per_s"]==rate)
    bm = b1["billed_over_metered"]+b8["billed_over_metered"]
    print(f"| {rate:g} | {b8['tokens_per_s']/b1['tokens_per_s']:.2f}× | {b8['joules_per_token']/b1['joules_per_token']:.2f}× | {b1['tokens_per_s_range'][0]:.0f}–{b1['tokens_per_s_range'][1]:.0f} | {b8['tokens_per_s_range'][0]:.0f}–{b8['tokens_per_s_range'][1]:.0f} | {b1['joules_per_token_range'][0]:.4f}–{b1['joules_per_token_range'][1]:.4f} | {b8['joules_per_token_range'][0]:.4f}–{b8['joules_per_token_range'][1]:.4f} | {min(bm):.6f}–{max(bm):.6f} |")
