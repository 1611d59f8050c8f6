#!/usr/bin/env python3
"""A bounded load test of `landauer serve` (loopback only): the serving curve.

    python3 scripts/serve-load.py OUT_DIR --server NAME=BASE_URL [--server NAME=BASE_URL ...]
                                  [--rates 0.5,1,2,4] [--requests 16] [--max-tokens 32] [--seed 7]
                                  [--check-alone]

For each arrival rate, and each server in turn at that rate (interleaved, so that servers
started with different settings, e.g. --max-batch 1 and 8, meet the same machine state),
--requests streamed chat requests arrive as a Poisson process (seeded; every server gets the
same arrival times) and run to the end; each records its time to first token (the first
content chunk), its latency, its tokens and the joules its usage reports. Per rate and
server: requests/s and tokens/s served, p50/p99 latency and time to first token, 429s, the
mean batch size over the window (from /metrics' landauer_batch_size), J/token (the meter's
energy over the engine's busy time, landauer_busy_energy_joules_total, over the tokens) and
the responses' billed joules beside it. With --pid NAME=PID, the same J/token estimated for
any server, landauer or a peer (llama.cpp's llama-server, whose /metrics has none of
landauer's figures): its process CPU time over the window, from /proc, x --cpu-watts (the
definition of landauer's CPU-time estimate). With --check-alone, every prompt is first sent alone
to each server, and each response under load is compared with it (greedy: the same text is
expected where the batch's arithmetic is each row's own, as on landauer's CPU pass; a GPU's
matrix products may round differently at another batch size, so this counts, not fails).
Writes OUT_DIR/serve-load.json and serve-load.md. Standard library only.
"""
import argparse
import json
import os
import random
import statistics
import threading
import time
import urllib.error
import urllib.request

PROMPTS = [
    "Tell me a short story about a lighthouse keeper.",
    "What is the capital of France?",
    "Explain entropy in one paragraph.",
    "Write a haiku about the sea.",
    "List three uses of copper.",
    "Why is the sky blue?",
]


def metrics(base):
    try:
        text = urllib.request.urlopen(base + "/metrics").read().decode()
    except (urllib.error.URLError, OSError):
        return {}  # a peer without landauer's metrics
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def one(base, i, max_tokens, result, system=None):
    messages = [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]
    if system:
        messages.insert(0, {"role": "system", "content": system})
    body = json.dumps({
        "messages": messages,
        "max_tokens": max_tokens, "temperature": 0, "stream": True,
        "stream_options": {"include_usage": True},
    }).encode()
    req = urllib.request.Request(base + "/v1/chat/completions", body, {"content-type": "application/json"})
    t0 = time.monotonic()
    ttft, tokens, energy, text, usage_tokens = None, 0, None, [], None
    try:
        with urllib.request.urlopen(req) as r:
            for raw in r:
                line = raw.decode().strip()
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                piece = "".join(c.get("delta", {}).get("content") or "" for c in chunk.get("choices", []))
                text.append(piece)
                if "landauer" in chunk:
                    tokens += 1
                if ttft is None and (piece or "landauer" in chunk):
                    ttft = time.monotonic() - t0
                if chunk.get("usage"):
                    energy = chunk["usage"].get("energy_j")
                    usage_tokens = chunk["usage"].get("completion_tokens")
        # The usage's count where the server gives one (a peer without landauer's chunks).
        tokens = usage_tokens if usage_tokens is not None else tokens
        result.update(ok=True, latency=time.monotonic() - t0, ttft=ttft, tokens=tokens, energy=energy,
                      text="".join(text))
    except urllib.error.HTTPError as e:
        result.update(ok=False, status=e.code)


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None


def cpu_seconds(pid):
    """User + system CPU time of process `pid` (all its threads), from /proc."""
    if pid is None:
        return None
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_rate(base, rate, arrivals, max_tokens, pid=None, system=None):
    """One server at one rate: the requests at their arrival times, to the end."""
    before = metrics(base)
    cpu0 = cpu_seconds(pid)
    t0 = time.monotonic()
    threads, results = [], []
    for i, at in enumerate(arrivals):
        time.sleep(max(0.0, t0 + at - time.monotonic()))
        r = {}
        results.append(r)
        t = threading.Thread(target=one, args=(base, i, max_tokens, r, system))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    # The meter's busy energy is read once it has passed the last step: give it a moment.
    time.sleep(0.5)
    after = metrics(base)
    cpu = None if pid is None else cpu_seconds(pid) - cpu0
    return results, wall, before, after, cpu


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--server", action="append", required=True, help="NAME=BASE_URL")
    p.add_argument("--rates", default="0.5,1,2,4")
    p.add_argument("--requests", type=int, default=16)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--check-alone", action="store_true")
    p.add_argument("--pid", action="append", default=[], help="NAME=PID: also estimate the "
                   "server's J/token as its process CPU time x --cpu-watts, read from /proc "
                   "(the same estimate for any server, landauer or a peer)")
    p.add_argument("--system", help="a system message for every request (so that servers whose "
                   "chat templates add a default one, as llama-server's Jinja rendering of "
                   "SmolLM2's does, all get the same prompt)")
    p.add_argument("--cpu-watts", type=float, default=10.0,
                   help="watts per busy core for --pid's estimate (landauer's default)")
    a = p.parse_args()
    servers = [s.split("=", 1) for s in a.server]
    pids = {k: int(v) for k, v in (x.split("=", 1) for x in a.pid)}
    rng = random.Random(a.seed)
    rows = []
    alone = {}
    if a.check_alone:
        for name, base in servers:
            texts = []
            for i in range(len(PROMPTS)):
                r = {}
                one(base, i, a.max_tokens, r, a.system)
                texts.append(r.get("text"))
            alone[name] = texts
    for rate in [float(r) for r in a.rates.split(",")]:
        at, arrivals = 0.0, []
        for _ in range(a.requests):
            at += rng.expovariate(rate)
            arrivals.append(at)
        for name, base in servers:
            results, wall, before, after, cpu = run_rate(base, rate, arrivals, a.max_tokens,
                                                         pids.get(name), a.system)
            rows.append(summarize(name, rate, a.requests, results, wall, before, after))
            if cpu is not None:
                tokens = sum(r["tokens"] for r in results if r.get("ok"))
                rows[-1]["cpu_s"] = cpu
                rows[-1]["cpu_joules_per_token"] = cpu * a.cpu_watts / tokens if tokens else None
            if name in alone:
                rows[-1]["differs_from_alone"] = sum(
                    1 for i, r in enumerate(results)
                    if r.get("ok") and r["text"] != alone[name][i % len(PROMPTS)])
            print(json.dumps(rows[-1]), flush=True)
    write(a, rows)


def summarize(name, rate, requests, results, wall, before, after):
    ok = [r for r in results if r.get("ok")]
    tokens = sum(r["tokens"] for r in ok)
    d = lambda k: after.get(k, 0.0) - before.get(k, 0.0)
    steps = d("landauer_batch_size_count")
    busy = d("landauer_busy_energy_joules_total")
    return {
        "server": name,
        "arrival_rate_per_s": rate,
        "requests": requests,
        "served": len(ok),
        "refused_429": sum(1 for r in results if r.get("status") == 429),
        "wall_s": wall,
        "requests_per_s": len(ok) / wall,
        "tokens_per_s": tokens / wall,
        "tokens_per_response": tokens / len(ok) if ok else None,
        "latency_p50_s": pct([r["latency"] for r in ok], 0.5),
        "latency_p99_s": pct([r["latency"] for r in ok], 0.99),
        "ttft_p50_s": pct([r["ttft"] for r in ok if r["ttft"] is not None], 0.5),
        "ttft_p99_s": pct([r["ttft"] for r in ok if r["ttft"] is not None], 0.99),
        "mean_batch_size": d("landauer_batch_size_sum") / steps if steps else None,
        "joules_per_token": busy / tokens if tokens and busy else None,
        "billed_joules": sum(r["energy"] or 0.0 for r in ok),
        "busy_joules": busy,
    }


def write(a, rows):
    os.makedirs(a.out, exist_ok=True)
    meta = {"servers": a.server, "max_tokens": a.max_tokens, "seed": a.seed, "requests_per_rate": a.requests,
            "method": "Poisson arrivals per rate, streamed greedy chat requests, loopback; figures per rate over its own window"}
    with open(os.path.join(a.out, "serve-load.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)
    head = "| server | arrivals/s | served | 429 | req/s | tok/s | latency p50 / p99 s | TTFT p50 / p99 s | mean batch | J/token | billed / metered | J/token, /proc CPU time | tokens/response |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    fmt = lambda x, n=2: "–" if x is None else f"{x:.{n}f}"
    body = "".join(
        f"| {r['server']} | {r['arrival_rate_per_s']} | {r['served']} | {r['refused_429']} | {fmt(r['requests_per_s'])} | "
        f"{fmt(r['tokens_per_s'], 1)} | {fmt(r['latency_p50_s'])} / {fmt(r['latency_p99_s'])} | "
        f"{fmt(r['ttft_p50_s'], 3)} / {fmt(r['ttft_p99_s'], 3)} | {fmt(r['mean_batch_size'])} | {fmt(r['joules_per_token'], 4)} | "
        f"{fmt(r['billed_joules'] / r['busy_joules'] if r['busy_joules'] else None, 4)} | "
        f"{fmt(r.get('cpu_joules_per_token'), 4)} | {fmt(r['tokens_per_response'], 1)} |\n"
        for r in rows
    )
    with open(os.path.join(a.out, "serve-load.md"), "w") as f:
        f.write(head + body)
    print(head + body)


if __name__ == "__main__":
    main()
