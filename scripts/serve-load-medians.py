#!/usr/bin/env python3
"""Medians of several rounds of scripts/serve-load.py (each its own OUT_DIR).

    python3 scripts/serve-load-medians.py OUT.json ROUND_DIR [ROUND_DIR ...]

Per server and arrival rate: the median of each figure over the rounds and its range, the
responses served, and each round's billed/metered energy ratio (landauer servers). Prints two
Markdown tables: the medians, and per rate the last server's ratios to the first (tokens/s,
J/token from landauer's busy energy where both have it, J/token from /proc CPU time where
both have it). Standard library only.
"""
import json
import statistics
import sys

FIELDS = ["requests_per_s", "tokens_per_s", "tokens_per_response", "latency_p50_s",
          "latency_p99_s", "ttft_p50_s", "ttft_p99_s", "mean_batch_size", "joules_per_token",
          "cpu_joules_per_token"]


def fmt(x, n=2):
    return "–" if x is None else f"{x:.{n}f}"


def ratio(a, b):
    return f"{a / b:.2f}×" if a is not None and b else "–"


def main():
    dirs = sys.argv[2:]
    rounds = [json.load(open(f"{d}/serve-load.json"))["rows"] for d in dirs]
    keys = [(r["server"], r["arrival_rate_per_s"]) for r in rounds[0]]
    out = []
    for k in keys:
        rs = [next(r for r in rows if (r["server"], r["arrival_rate_per_s"]) == k) for rows in rounds]
        m = {"server": k[0], "arrival_rate_per_s": k[1], "rounds": len(rs)}
        for f in FIELDS:
            xs = [r.get(f) for r in rs]
            ok = all(x is not None for x in xs)
            m[f] = statistics.median(xs) if ok else None
            m[f + "_range"] = [min(xs), max(xs)] if ok else None
        m["served"] = sum(r["served"] for r in rs)
        m["requests"] = sum(r["requests"] for r in rs)
        m["refused_429"] = sum(r["refused_429"] for r in rs)
        m["billed_over_metered"] = [r["billed_joules"] / r["busy_joules"] for r in rs if r.get("busy_joules")]
        out.append(m)
    json.dump({"method": f"medians of {len(dirs)} rounds of scripts/serve-load.py: {', '.join(dirs)}",
               "rows": out}, open(sys.argv[1], "w"), indent=2)
    print("| server | arrivals/s | served | req/s | tok/s | tokens/response | latency p50 / p99 s | "
          "TTFT p50 / p99 s | mean batch | J/token (busy energy) | J/token (/proc CPU time) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for m in out:
        print(f"| {m['server']} | {m['arrival_rate_per_s']:g} | {m['served']}/{m['requests']} | "
              f"{fmt(m['requests_per_s'])} | {fmt(m['tokens_per_s'], 1)} | {fmt(m['tokens_per_response'], 1)} | "
              f"{fmt(m['latency_p50_s'])} / {fmt(m['latency_p99_s'])} | "
              f"{fmt(m['ttft_p50_s'], 3)} / {fmt(m['ttft_p99_s'], 3)} | {fmt(m['mean_batch_size'])} | "
              f"{fmt(m['joules_per_token'], 4)} | {fmt(m['cpu_joules_per_token'], 4)} |")
    print()
    names = list(dict.fromkeys(k[0] for k in keys))
    a, b = names[0], names[-1]
    rng = lambda m, f: "–" if m[f + "_range"] is None else "–".join(f"{x:.4g}" for x in m[f + "_range"])
    print(f"| arrivals/s | tok/s {b} / {a} | J/token (busy) {b} / {a} | J/token (/proc) {b} / {a} | "
          f"tok/s range {a} | tok/s range {b} | billed/metered (all rounds) |")
    print("|---|---|---|---|---|---|---|")
    for rate in sorted(set(k[1] for k in keys)):
        ma = next(m for m in out if m["server"] == a and m["arrival_rate_per_s"] == rate)
        mb = next(m for m in out if m["server"] == b and m["arrival_rate_per_s"] == rate)
        bm = ma["billed_over_metered"] + mb["billed_over_metered"]
        bm_s = f"{min(bm):.6f}–{max(bm):.6f}" if bm else "–"
        print(f"| {rate:g} | {ratio(mb['tokens_per_s'], ma['tokens_per_s'])} | "
              f"{ratio(mb['joules_per_token'], ma['joules_per_token'])} | "
              f"{ratio(mb['cpu_joules_per_token'], ma['cpu_joules_per_token'])} | "
              f"{rng(ma, 'tokens_per_s')} | {rng(mb, 'tokens_per_s')} | {bm_s} |")


if __name__ == "__main__":
    main()
