#!/usr/bin/env python3
"""Do two builds of landauer write the same files for the same inputs?

    scripts/same-outputs.py BEFORE_BIN AFTER_BIN [--model M] [--keep DIR]

Made for refactors that must not change behaviour (issue 19). Build the earlier revision
beside this checkout, e.g.

    git worktree add /tmp/before REV
    cargo build --manifest-path /tmp/before/Cargo.toml --target-dir /tmp/before-target
    cargo build
    scripts/same-outputs.py /tmp/before-target/debug/landauer target/debug/landauer

Two kinds of output are checked:

* Derived outputs (gap, report, sweep --replot, error messages) are computed by both builds
  from the *same* input files, and must be byte-identical.
* Measured outputs (generate's trace, JSONL and CSV; sweep.json and sweep.csv; bench.json;
  stdout) are written by each build from the same model, prompt and seed. Times and energies
  differ from run to run of one build, so BEFORE runs several times (--runs, default 4):
  every field (JSON path, CSV cell, whitespace-separated word of a text line) that differs
  between those runs (which token's energy the counter resolved, for instance) is
  "volatile" and masked; every other field must be equal in AFTER's output, and both must
  have the same fields. The masked fields are listed, so that nothing hides behind them.
  A note that exists only when some token was shorter than one counter update, and the
  fields that say whether a token was (TIMING_NOTES, TIMING_FIELDS), are dropped before
  comparing: timing alone decides them.

Exit status 0 when everything matches; 1 with a list of differences otherwise.
"""

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile

DEFAULT_MODEL = os.path.expanduser("~/.cache/landauer/models/SmolLM2-135M-Instruct.Q4_1.gguf")
PROMPTS = "The capital of France is\nWrite a haiku about energy.\nDear diary, today I\n"


def run(binary, args, cwd):
    p = subprocess.run([binary] + args, cwd=cwd, capture_output=True, text=True,
                       env={**os.environ, "RAYON_NUM_THREADS": "2", "NO_COLOR": "1"})
    return p.returncode, p.stdout, p.stderr


def flatten(value, path="", out=None):
    out = {} if out is None else out
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(v, f"{path}.{k}", out)
        if not value:
            out[path] = {}
    elif isinstance(value, list):
        for i, v in enumerate(value):
            flatten(v, f"{path}[{i}]", out)
        if not value:
            out[path] = []
    else:
        out[path] = value
    return out


# Notes whose presence depends on timing alone: whether any token was shorter than one update
# of the meter's counter. They are dropped before comparing (their counts are volatile anyway).
TIMING_NOTES = ("shorter than one counter update",)
# Fields that say whether a token outlasted one counter update: timing alone decides them.
TIMING_FIELDS = ("energy_resolved", "unresolved_tokens")


def untimed(value):
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k not in TIMING_FIELDS}
    if isinstance(value, list):
        return [untimed(v) for v in value
                if not (isinstance(v, str) and any(n in v for n in TIMING_NOTES))]
    return value


def fields(kind, text):
    """A file's fields as {name: value}."""
    if kind == "json":
        return flatten(untimed(json.loads(text)))
    if kind == "jsonl":
        out = {}
        for i, line in enumerate(text.splitlines()):
            flatten(untimed(json.loads(line)), f"line{i}", out)
        return out
    if kind == "csv":
        rows = list(csv.reader(io.StringIO(text)))
        head = rows[0] if rows else []
        return {f"r{i}.{head[j] if j < len(head) else j}": v
                for i, row in enumerate(rows) for j, v in enumerate(row)
                if i == 0 or j >= len(head) or head[j] not in TIMING_FIELDS}
    # text: words of lines
    lines = [l for l in text.splitlines() if not any(n in l for n in TIMING_NOTES)]
    return {f"l{i}w{j}": w for i, line in enumerate(lines) for j, w in enumerate(line.split())}


def compare_measured(name, kind, befores, b, problems, masked):
    f1, fb = fields(kind, befores[0]), fields(kind, b)
    others = [fields(kind, x) for x in befores[1:]]
    volatile = {k for k in f1 if any(f.get(k, object()) != f1[k] for f in others)}
    if set(f1) != set(fb):
        extra = sorted(set(fb) - set(f1))[:5]
        missing = sorted(set(f1) - set(fb))[:5]
        problems.append(f"{name}: fields differ (new: {extra}, gone: {missing})")
        return
    for k in sorted(f1):
        if k not in volatile and f1[k] != fb[k]:
            problems.append(f"{name}: {k}: before {f1[k]!r}, after {fb[k]!r}")
    masked[name] = (len(volatile), len(f1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--model", default=None,
                    help="model for the measured runs (default: the default model if cached, "
                         "else synthetic:smollm2-135m:q4_0)")
    ap.add_argument("--runs", type=int, default=4,
                    help="runs of BEFORE that find the volatile fields (default 4)")
    ap.add_argument("--keep", default=None, help="keep the outputs in this directory")
    a = ap.parse_args()
    before, after = os.path.abspath(a.before), os.path.abspath(a.after)
    model = a.model or (DEFAULT_MODEL if os.path.exists(DEFAULT_MODEL)
                        else "synthetic:smollm2-135m:q4_0")
    root = a.keep or tempfile.mkdtemp(prefix="same-outputs-")
    os.makedirs(root, exist_ok=True)
    problems, masked = [], {}

    # --- measured outputs: BEFORE RUNS times (b1, b2, ...), AFTER once (a) ---
    measured = {}
    tags = [f"b{i + 1}" for i in range(a.runs)]
    for tag, binary in [(t, before) for t in tags] + [("a", after)]:
        d = os.path.join(root, tag)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        with open(os.path.join(d, "prompts.txt"), "w") as f:
            f.write(PROMPTS)
        outs = {}
        steps = [
            ("generate", ["generate", "-m", model, "--seed", "7", "-n", "20", "--meter", "estimate",
                          "--trace", "g.jsonl", "--csv", "g.csv", "--json",
                          "Once upon a time"]),
            ("generate-batch", ["generate", "-m", model, "--seed", "7", "-n", "8",
                                "--meter", "estimate", "--prompts", "prompts.txt",
                                "--trace", "gb.jsonl"]),
            ("sweep", ["sweep", "-m", model, "--batch", "1,2", "-n", "6", "--runs", "2",
                       "--interleave", "--meter", "estimate", "--out", "sw"]),
            ("bench", ["bench", "-m", model, "-n", "6", "--runs", "2", "--out", "bench.json"]),
        ]
        for name, args in steps:
            rc, out, err = run(binary, args, d)
            if rc != 0:
                problems.append(f"{tag} {name} failed ({rc}): {err.strip()[-300:]}")
            outs[f"{name} exit"] = ("text", str(rc))
            outs[f"{name} stdout"] = ("text", out)
        for f, kind in [("g.jsonl", "jsonl"), ("g.csv", "csv"), ("gb.jsonl", "jsonl"),
                        ("sw/sweep.json", "json"), ("sw/sweep.csv", "csv"),
                        ("bench.json", "json")]:
            p = os.path.join(d, f)
            outs[f] = (kind, open(p).read() if os.path.exists(p) else "")
        measured[tag] = outs
    for name, (kind, text) in measured["b1"].items():
        try:
            compare_measured(name, kind, [measured[t][name][1] for t in tags],
                             measured["a"][name][1], problems, masked)
        except (ValueError, KeyError) as e:
            problems.append(f"{name}: cannot compare ({e})")

    # --- derived outputs: both builds on BEFORE's files, byte for byte ---
    src = os.path.join(root, "b1")
    with open(os.path.join(src, "empty.txt"), "w"):
        pass
    derived = [
        ("gap trace", ["gap", "g.jsonl"], []),
        ("gap trace json", ["gap", "g.jsonl", "--json"], []),
        ("gap batch trace", ["gap", "gb.jsonl", "--json"], []),
        ("gap sweep", ["gap", "sw"], []),
        ("gap sweep json h100", ["gap", "sw/sweep.json", "--json", "--hardware", "h100-sxm"], []),
        ("gap list", ["gap", "--list-hardware"], []),
        ("report trace", ["report", "g.jsonl", "-o", "OUT/r.html", "--png"],
         ["r.html", "r-ladder.png", "r-sequence.png"]),
        ("report batch trace", ["report", "gb.jsonl", "-o", "OUT/rb.html"], ["rb.html"]),
        ("report sweep", ["report", "sw", "-o", "OUT/rs.html", "--grid-gco2-per-kwh", "50"],
         ["rs.html"]),
        ("replot", ["sweep", "--replot", "--out", "OUT/sw"], ["sw/sweep.svg"]),
        ("error: missing file", ["gap", "nope.jsonl"], []),
        ("error: empty file", ["report", "empty.txt", "-o", "OUT/x.html"], []),
        ("error: replot a trace", ["sweep", "--replot", "--out", "g.jsonl"], []),
        ("error: batch 0", ["sweep", "--batch", "0", "-m", model], []),
        ("error: no tokens", ["generate", "-n", "0", "-m", model, "x"], []),
        ("error: bad hardware", ["gap", "g.jsonl", "--hardware", "abacus"], []),
        ("error: bad kelvin", ["generate", "--kelvin", "-1", "-m", model, "x"], []),
    ]
    for name, args, files in derived:
        results = []
        for tag, binary in [("db", before), ("da", after)]:
            out_dir = os.path.join(root, tag)
            os.makedirs(os.path.join(out_dir, "sw"), exist_ok=True)
            if "replot" in name:
                shutil.copy(os.path.join(src, "sw", "sweep.json"), os.path.join(out_dir, "sw"))
            rc, out, err = run(binary, [x.replace("OUT", out_dir) for x in args], src)
            out = out.replace(out_dir, "OUT")
            blobs = []
            for f in files:
                p = os.path.join(out_dir, f)
                blobs.append(open(p, "rb").read() if os.path.exists(p) else b"(missing)")
            results.append((rc, out, err, blobs))
        (rc1, o1, e1, f1), (rc2, o2, e2, f2) = results
        if rc1 != rc2:
            problems.append(f"{name}: exit {rc1} before, {rc2} after")
        if o1 != o2:
            problems.append(f"{name}: stdout differs")
        if e1 != e2 and name.startswith("error"):
            problems.append(f"{name}: stderr differs:\n  before: {e1.strip()}\n  after:  {e2.strip()}")
        for f, x, y in zip(files, f1, f2):
            if x != y:
                problems.append(f"{name}: {f} differs ({len(x)} bytes before, {len(y)} after)")
        masked[name] = (0, len(files) + 2)

    print(f"model: {model}; outputs in {root}")
    for name, (v, n) in masked.items():
        print(f"  {name:<28} {n - v:>5} of {n:>5} fields equal{'' if v == 0 else f', {v} volatile masked'}")
    if problems:
        print(f"\n{len(problems)} difference(s):")
        for p in problems[:60]:
            print("  " + p)
        return 1
    print("\nsame outputs: every derived output byte-identical, every measured output equal "
          "outside its volatile fields")
    if not a.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
