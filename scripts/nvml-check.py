#!/usr/bin/env python3
"""An independent reading of a landauer run's energy: NVML's energy counter, polled by this
process (pynvml, from PyPI's nvidia-ml-py) while landauer runs, over the run's own window.

    python3 scripts/nvml-check.py --trace T.jsonl [--gpu 0] [--interval-ms 5] \
        [--out check.json] -- landauer generate ... --trace T.jsonl

The command runs as a child process. A thread reads nvmlDeviceGetTotalEnergyConsumption
(millijoules since the driver loaded) every --interval-ms, with the wall-clock time of each
read. Afterwards the trace gives the run's window: its run record's `started_unix_s` (the
wall-clock time of the run's time zero) and its summary's `wall_s`; the counter's readings,
interpolated linearly to the window's two ends, give the energy NVML counted over exactly that
window. landauer's figure is the summary's `energy_j` (the sum of its tokens' energies, which
tile the same window). Prints and writes JSON: both energies, their ratio and difference.

The counter updates every ~20-100 ms on recent GPUs: a window of a few seconds or more keeps
that granularity under a percent. --fake-watts W replaces NVML with a counter rising at W watts
(for a dry run of the plumbing on a machine without a GPU; the comparison is then meaningless).
"""
import argparse
import json
import subprocess
import sys
import threading
import time


def counter(args):
    """A function returning (unix time, joules) for one read of the chosen counter."""
    if args.fake_watts is not None:
        t0 = time.time()
        return lambda: (time.time(), (time.time() - t0) * args.fake_watts)
    import pynvml  # noqa: PLC0415 (only needed with a GPU)

    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(args.gpu)

    def read():
        mj = pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
        return time.time(), mj / 1000.0

    return read


def at(samples, t):
    """The counter at time t, interpolated between the two reads around it."""
    for (t0, e0), (t1, e1) in zip(samples, samples[1:]):
        if t0 <= t <= t1:
            return e0 if t1 == t0 else e0 + (e1 - e0) * (t - t0) / (t1 - t0)
    raise ValueError(f"time {t} is outside the polled span {samples[0][0]}..{samples[-1][0]}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trace", required=True, help="the JSONL trace the command writes")
    p.add_argument("--gpu", type=int, default=0, help="NVML index of the GPU (default 0)")
    p.add_argument("--interval-ms", type=float, default=5.0)
    p.add_argument("--fake-watts", type=float, help="no NVML: a counter rising at W watts")
    p.add_argument("--out", help="also write the JSON result here")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ...")
    args = p.parse_args()
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        p.error("no command given (put it after --)")
    read = counter(args)
    samples, stop = [], threading.Event()

    def poll():
        while not stop.is_set():
            samples.append(read())
            time.sleep(args.interval_ms / 1000.0)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    rc = subprocess.call(cmd)
    time.sleep(0.2)  # a few reads past the end of the run
    stop.set()
    thread.join()
    samples.append(read())
    if rc != 0:
        sys.exit(f"nvml-check: the command failed (exit {rc})")
    records = [json.loads(line) for line in open(args.trace) if line.strip()]
    run = next(r for r in records if r.get("type") == "run")
    summary = next(r for r in records if r.get("type") == "summary")
    t0 = run["started_unix_s"]
    t1 = t0 + summary["wall_s"]
    counted = at(samples, t1) - at(samples, t0)
    ours = summary.get("energy_j")
    result = {
        "meter": summary.get("meter"),
        "window_s": summary["wall_s"],
        "counter_reads": len(samples),
        "read_interval_s": (samples[-1][0] - samples[0][0]) / max(len(samples) - 1, 1),
        "landauer_j": ours,
        "independent_j": counted,
        "ratio": ours / counted if ours and counted else None,
        "difference_pct": 100.0 * (ours - counted) / counted if ours and counted else None,
        "independent_source": "fake counter" if args.fake_watts is not None else "pynvml",
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
