#!/usr/bin/env python3
"""Measures a GPU's achievable memory bandwidth with device-to-device copies (PyTorch).

A copy of N bytes reads N and writes N: bandwidth = 2 N / time. Prints JSON with the median
over repetitions. This is the denominator of the decode roofline (bytes a token must read
over bytes the memory can move per second). Used on the lent GPU machines, which have
PyTorch but no Rust; landauer itself does not need Python.

    python3 scripts/copy-bandwidth.py [--gib 4] [--reps 20]
"""
import argparse
import json
import statistics
import sys

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--gib", type=float, default=4.0, help="size of the copied buffer, GiB")
p.add_argument("--reps", type=int, default=20, help="timed copies (median reported)")
a = p.parse_args()
try:
    import torch
except ImportError:
    sys.exit("copy-bandwidth: error: PyTorch is not installed (pip install torch)")
if not torch.cuda.is_available():
    sys.exit("copy-bandwidth: error: no CUDA device visible to PyTorch")
n = int(a.gib * 2**30)
src = torch.empty(n, dtype=torch.uint8, device="cuda").random_(0, 255)
dst = torch.empty_like(src)
for _ in range(3):
    dst.copy_(src)
torch.cuda.synchronize()
times = []
for _ in range(a.reps):
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    dst.copy_(src)
    e.record()
    e.synchronize()
    times.append(s.elapsed_time(e) / 1e3)
t = statistics.median(times)
print(json.dumps({
    "device": torch.cuda.get_device_name(0),
    "method": f"torch device-to-device copy of {a.gib} GiB, {a.reps} reps, median; bandwidth = (read + write bytes) / time",
    "bytes_copied": n,
    "copy_seconds_median": t,
    "bandwidth_bytes_per_s": 2 * n / t,
    "bandwidth_tb_per_s": 2 * n / t / 1e12,
    "bandwidth_min_max_tb_per_s": [2 * n / max(times) / 1e12, 2 * n / min(times) / 1e12],
}, indent=1))
