#!/usr/bin/env python3
"""landauer's quantize-at-load against llama.cpp's llama-quantize, tensor by tensor.

    scripts/quantize-vs-llamacpp.py [--landauer BIN] [--model GGUF] [--out DIR] [PRESET ...]

1. The model (default: the default model, SmolLM2-135M-Instruct Q4_1) is written as an F16
   GGUF by landauer (`--quantize f16 --save-gguf`): the common source of both.
2. For each preset (default: every file type landauer's --quantize offers that llama-quantize
   also writes: q8_0 q4_0 q4_1 q5_0 q5_1 q6_k q5_k_m q4_k_m q4_k_s q5_k_s), llama.cpp's `llama-quantize` (built by scripts/llamacpp-tools.sh) and landauer
   (`--quantize PRESET --save-gguf`) each quantize that F16 file.
3. The two files are compared tensor by tensor: the type each gives the tensor, whether the
   bytes are identical, and what fraction of the bytes differ where they are not; then as
   models: both files run greedily in landauer on the same prompt (64 tokens, traced), and
   the tokens that agree and the per-token entropies are compared.

Writes DIR/quantize.json and DIR/table.md (default DIR: benches/results/quantize-DATE) and
prints the table. Exit status 1 if any tensor's type differs.
"""

import argparse
import datetime
import json
import os
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.expanduser("~/.cache/landauer/llamacpp-tools/llama.cpp/build/bin")
DEFAULT_MODEL = os.path.expanduser("~/.cache/landauer/models/SmolLM2-135M-Instruct.Q4_1.gguf")
PRESETS = ["q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q6_k", "q5_k_m", "q4_k_m", "q4_k_s",
           "q5_k_s"]
# ggml type id: (name, block size, bytes per block)
TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
         6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 10: ("Q2_K", 256, 84),
         11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
         14: ("Q6_K", 256, 210), 30: ("BF16", 1, 2)}


def read_gguf(path):
    """{tensor name: (type name, bytes)} of a GGUF file."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("Q")
        s = data[pos:pos + n].decode("utf-8", "replace")
        pos += n
        return s

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q",
              11: "q", 12: "d"}

    def value(t):
        if t in scalar:
            return take(scalar[t])
        if t == 8:
            return string()
        if t == 9:
            et, n = take("I"), take("Q")
            return [value(et) for _ in range(n)]
        raise ValueError(f"unknown GGUF value type {t}")

    assert data[:4] == b"GGUF", f"{path} is not a GGUF file"
    pos = 4
    take("I")
    n_tensors, n_kv = take("Q"), take("Q")
    meta = {}
    for _ in range(n_kv):
        k = string()
        meta[k] = value(take("I"))
    infos = []
    for _ in range(n_tensors):
        name = string()
        dims = [take("Q") for _ in range(take("I"))]
        infos.append((name, dims, take("I"), take("Q")))
    align = meta.get("general.alignment", 32)
    start = (pos + align - 1) // align * align
    out = {}
    for name, dims, t, off in infos:
        tname, bs, ts = TYPES[t]
        n = 1
        for d in dims:
            n *= d
        size = n // bs * ts
        out[name] = (tname, data[start + off:start + off + size])
    return out


def sh(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return p


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("presets", nargs="*", default=PRESETS)
    ap.add_argument("--landauer", default=os.path.join(ROOT, "target/release/landauer"))
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--out", default=os.path.join(
        ROOT, "benches/results", f"quantize-{datetime.date.today().isoformat()}"))
    a = ap.parse_args()
    quantize = os.path.join(TOOLS, "llama-quantize")
    if not os.path.exists(quantize):
        sys.exit(f"no {quantize}: run scripts/llamacpp-tools.sh first")
    env = {**os.environ, "LD_LIBRARY_PATH": TOOLS}
    os.makedirs(a.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="quantize-")
    src = os.path.join(work, "f16.gguf")
    gen = [a.landauer, "generate", "-n", "1", "-q", "--meter", "none", "--greedy"]
    sh(gen + ["-m", a.model, "--quantize", "f16", "--save-gguf", src, "Hi"])
    rows = []
    for preset in a.presets:
        ours, theirs = os.path.join(work, f"landauer-{preset}.gguf"), os.path.join(
            work, f"llama-{preset}.gguf")
        sh(gen + ["-m", src, "--quantize", preset, "--save-gguf", ours, "Hi"])
        p = subprocess.run([quantize, src, theirs, preset.upper()], capture_output=True,
                           text=True, env=env)
        if p.returncode != 0:
            sys.exit(f"llama-quantize {preset} failed:\n{p.stderr[-2000:]}")
        x, y = read_gguf(ours), read_gguf(theirs)
        same_type = sum(1 for n in y if n in x and x[n][0] == y[n][0])
        same_bytes = sum(1 for n in y if n in x and x[n] == y[n])
        differ = sorted(n for n in y if n not in x or x[n][0] != y[n][0])
        byte_diff = sorted(n for n in y if n in x and x[n][0] == y[n][0] and x[n] != y[n])
        diff_bytes = sum(sum(1 for u, v in zip(x[n][1], y[n][1]) if u != v) for n in byte_diff)
        all_bytes = sum(len(y[n][1]) for n in y)
        traces = []
        for f in (ours, theirs):
            t = f + ".jsonl"
            sh(gen[:2] + ["-n", "64", "-q", "--meter", "none", "--greedy", "--ignore-eos",
                          "-m", f, "--trace", t, "Once upon a time, there was a little girl"])
            with open(t) as fh:
                traces.append([json.loads(l) for l in fh if '"type":"token"' in l])
        agree = 0
        for u, v in zip(*traces):
            if u["token_id"] != v["token_id"]:
                break
            agree += 1
        dh = [abs(u["entropy_bits"] - v["entropy_bits"]) for u, v in zip(*traces)][:agree]
        rows.append({
            "greedy_tokens_agreeing": agree,
            "mean_abs_entropy_diff_bits": sum(dh) / len(dh) if dh else None,
            "max_abs_entropy_diff_bits": max(dh) if dh else None,
            "differing_byte_fraction": diff_bytes / all_bytes,
            "preset": preset, "tensors": len(y), "same_type": same_type,
            "same_bytes": same_bytes, "type_differs": differ[:10],
            "bytes_differ": byte_diff[:10],
            "bytes_differ_types": sorted({y[n][0] for n in byte_diff}),
            "landauer_bytes": os.path.getsize(ours), "llama_bytes": os.path.getsize(theirs),
        })
        for f in (ours, theirs, ours + ".jsonl", theirs + ".jsonl"):
            os.remove(f)
        r = rows[-1]
        print(f"{preset}: {same_type}/{len(y)} tensors typed alike, "
              f"{same_bytes}/{len(y)} byte-identical ({r['differing_byte_fraction']:.4%} of "
              f"bytes differ); greedy tokens agree for {agree}/64", flush=True)
    lines = ["| preset | tensors | same type | byte-identical | bytes differing (in types) | greedy tokens agreeing of 64 | mean / max abs. entropy difference, bits | file sizes (landauer / llama.cpp) |",
             "|---|---|---|---|---|---|---|---|"]
    fmt = lambda v: "-" if v is None else f"{v:.2g}"
    for r in rows:
        lines.append(f"| {r['preset']} | {r['tensors']} | {r['same_type']} | {r['same_bytes']} | "
                     f"{r['differing_byte_fraction']:.3%} ({', '.join(r['bytes_differ_types']) or '-'}) | "
                     f"{r['greedy_tokens_agreeing']} | {fmt(r['mean_abs_entropy_diff_bits'])} / "
                     f"{fmt(r['max_abs_entropy_diff_bits'])} | "
                     f"{r['landauer_bytes']:,} / {r['llama_bytes']:,} |")
    table = "\n".join(lines)
    print("\n" + table)
    with open(os.path.join(a.out, "quantize.json"), "w") as f:
        json.dump({"model": a.model, "source": "landauer --quantize f16 of the model",
                   "llama_quantize": quantize, "rows": rows}, f, indent=2)
    with open(os.path.join(a.out, "table.md"), "w") as f:
        f.write(table + "\n")
    return 1 if any(r["type_differs"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
