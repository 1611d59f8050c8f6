#!/usr/bin/env python3
"""llama.cpp CPU baseline benchmark (via llama-cpp-python).

Measures prompt-processing (prefill) and decode speed of llama.cpp on a GGUF
model, so landauer's own figures can be compared against a reference engine
on the same machine.  Not part of the default build or CI; run it through
scripts/bench-llamacpp.sh, which installs llama-cpp-python (built from source
with -DGGML_NATIVE=ON) into a private virtualenv first.

Method:
  * the model is loaded once (n_ctx=2048, n_threads = n_threads_batch = --threads);
  * one warm-up generation, not reported;
  * --runs timed runs of greedy generation (temperature 0) of exactly
    --max-tokens tokens.  End-of-generation tokens are masked out of the
    logits so the model never picks them; should that fail, generation simply
    continues past them, so every run still produces --max-tokens tokens;
  * the KV cache is cleared before each run so the whole prompt is prefilled
    every time (llama-cpp-python would otherwise reuse the cached prefix);
  * figures come from llama.cpp's own perf counters (llama_perf_context:
    t_p_eval_ms / n_p_eval for prefill, t_eval_ms / n_eval for decode), which
    are reset before each run.  They time the forward passes only, not
    sampling or Python overhead.  If the counters are unavailable the script
    falls back to wall-clock timing and says so.

Note that the first generated token is sampled from the prefill logits, so a
run of N generated tokens performs N-1 single-token decode steps.
"""

import argparse
import inspect
import json
import statistics
import sys
import time

DEFAULT_PROMPT = "Once upon a time, there was a little girl named Lily. She"


def die(msg, code=1):
    print(f"bench-llamacpp: error: {msg}", file=sys.stderr)
    sys.exit(code)


def parse_args():
    p = argparse.ArgumentParser(
        description="llama.cpp (llama-cpp-python) CPU prefill/decode baseline benchmark"
    )
    p.add_argument("--model", required=True, help="path to a GGUF model file")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    p.add_argument("--prompt", default=DEFAULT_PROMPT, help="prompt text")
    p.add_argument(
        "--max-tokens", type=int, default=128, help="tokens to generate per run (default 128)"
    )
    p.add_argument("--runs", type=int, default=5, help="timed runs (default 5)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    a = p.parse_args()
    if a.threads < 1:
        p.error("--threads must be >= 1")
    if a.max_tokens < 2:
        p.error("--max-tokens must be >= 2")
    if a.runs < 1:
        p.error("--runs must be >= 1")
    return a


def import_llama_cpp():
    try:
        import llama_cpp  # noqa: F401
    except ImportError as e:
        die(
            f"cannot import llama_cpp ({e}).\n"
            "  llama-cpp-python is not installed for this Python "
            f"({sys.executable}).\n"
            "  Run scripts/bench-llamacpp.sh instead: it creates a virtualenv, builds\n"
            "  llama-cpp-python from source and runs this script with it."
        )
    return llama_cpp


def eog_token_ids(llama_cpp, llm):
    """Token ids that end generation (EOS, EOT, <|im_end|>, ...)."""
    ids = set()
    try:
        ids.add(int(llm.token_eos()))
    except Exception:
        pass
    is_eog = getattr(llama_cpp, "llama_vocab_is_eog", None)
    get_vocab = getattr(llama_cpp, "llama_model_get_vocab", None)
    if is_eog is not None and get_vocab is not None:
        try:
            vocab = get_vocab(llm._model.model)
            for t in range(llm.n_vocab()):
                if is_eog(vocab, t):
                    ids.add(t)
        except Exception:
            pass
    return sorted(i for i in ids if i >= 0)


def make_eog_mask(eog_ids):
    if not eog_ids:
        return None
    import numpy as np

    ids = np.asarray(eog_ids, dtype=np.intp)

    def mask(_input_ids, scores):
        scores[ids] = -np.inf
        return scores

    return mask


class PerfCounters:
    """Wraps llama_perf_context / llama_perf_context_reset if present."""

    def __init__(self, llama_cpp, llm):
        self.ok = False
        self.why = ""
        get = getattr(llama_cpp, "llama_perf_context", None)
        reset = getattr(llama_cpp, "llama_perf_context_reset", None)
        ctx = getattr(getattr(llm, "_ctx", None), "ctx", None)
        if get is None or reset is None:
            self.why = "llama_perf_context/llama_perf_context_reset not exported"
            return
        if ctx is None:
            self.why = "raw llama_context pointer not reachable (llm._ctx.ctx)"
            return
        self._get, self._reset, self._ctx = get, reset, ctx
        self.ok = True

    def reset(self):
        self._reset(self._ctx)

    def read(self):
        d = self._get(self._ctx)
        return {
            "t_p_eval_ms": float(d.t_p_eval_ms),
            "n_p_eval": int(d.n_p_eval),
            "t_eval_ms": float(d.t_eval_ms),
            "n_eval": int(d.n_eval),
        }


def generate(llm, prompt_tokens, n, mask):
    """Greedy-generate exactly n tokens; returns (tokens, t_start, t_first, t_end)."""
    llm.reset()  # forget the cached prefix: the whole prompt is prefilled each run
    kwargs = dict(temp=0.0, top_k=1, repeat_penalty=1.0, reset=True)
    if mask is not None:
        kwargs["logits_processor"] = [mask]
    out = []
    t_first = None
    t0 = time.perf_counter()
    for tok in llm.generate(prompt_tokens, **kwargs):
        if t_first is None:
            t_first = time.perf_counter()
        out.append(tok)
        if len(out) >= n:
            break
    t_end = time.perf_counter()
    return out, t0, t_first, t_end


def main():
    args = parse_args()
    llama_cpp = import_llama_cpp()
    version = getattr(llama_cpp, "__version__", "unknown")

    init_kwargs = dict(
        model_path=args.model,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        n_ctx=2048,
        verbose=False,
    )
    try:
        if "no_perf" in inspect.signature(llama_cpp.Llama.__init__).parameters:
            init_kwargs["no_perf"] = False  # make sure the perf counters are kept
    except (TypeError, ValueError):
        pass
    try:
        llm = llama_cpp.Llama(**init_kwargs)
    except Exception as e:
        die(f"failed to load model {args.model!r}: {e}")

    prompt_tokens = llm.tokenize(args.prompt.encode("utf-8"), add_bos=True, special=False)
    if len(prompt_tokens) + args.max_tokens > 2048:
        die("prompt + --max-tokens exceeds n_ctx=2048")
    if len(prompt_tokens) < 2:
        print(
            "bench-llamacpp: warning: a 1-token prompt is counted by llama.cpp as decode, "
            "not prefill",
            file=sys.stderr,
        )

    eog_ids = eog_token_ids(llama_cpp, llm)
    mask = make_eog_mask(eog_ids)

    perf = PerfCounters(llama_cpp, llm)

    # Warm-up; also checks that EOG masking works (the custom-sampler hook in
    # llama-cpp-python is marked as fragile upstream).
    try:
        generate(llm, prompt_tokens, args.max_tokens, mask)
    except Exception as e:
        if mask is None:
            raise
        print(
            f"bench-llamacpp: warning: EOG masking failed ({e}); "
            "generating past end-of-generation tokens instead",
            file=sys.stderr,
        )
        mask = None
        generate(llm, prompt_tokens, args.max_tokens, mask)

    eog_set = set(eog_ids)
    runs = []
    for _ in range(args.runs):
        if perf.ok:
            perf.reset()
        toks, t0, t_first, t_end = generate(llm, prompt_tokens, args.max_tokens, mask)
        r = {"generated_tokens": len(toks), "eog_tokens": sum(1 for t in toks if t in eog_set)}
        c = perf.read() if perf.ok else None
        if c is not None and c["t_p_eval_ms"] > 0 and c["t_eval_ms"] > 0:
            r.update(c)
            r["prefill_tps"] = c["n_p_eval"] / (c["t_p_eval_ms"] / 1e3)
            r["decode_tps"] = c["n_eval"] / (c["t_eval_ms"] / 1e3)
            r["timing"] = "llama.cpp perf counters"
        else:
            # Wall clock: prefill = start .. first token (includes one sampling
            # step); decode = first token .. last token over n-1 steps.
            pre_s = t_first - t0
            dec_s = t_end - t_first
            r.update(
                t_p_eval_ms=pre_s * 1e3,
                n_p_eval=len(prompt_tokens),
                t_eval_ms=dec_s * 1e3,
                n_eval=len(toks) - 1,
            )
            r["prefill_tps"] = len(prompt_tokens) / pre_s
            r["decode_tps"] = (len(toks) - 1) / dec_s if dec_s > 0 else float("nan")
            r["timing"] = "wall clock (perf counters unavailable: %s)" % (
                perf.why or "counters read as zero"
            )
        runs.append(r)

    timing_sources = sorted({r["timing"] for r in runs})
    prefill = [r["prefill_tps"] for r in runs]
    decode = [r["decode_tps"] for r in runs]
    gen_counts = sorted({r["generated_tokens"] for r in runs})
    result = {
        "engine": "llama.cpp",
        "llama_cpp_python_version": version,
        "model": args.model,
        "threads": args.threads,
        "runs": args.runs,
        "prefill_tokens_per_s_median": round(statistics.median(prefill), 2),
        "decode_tokens_per_s_median": round(statistics.median(decode), 2),
        "decode_tokens_per_s_runs": [round(x, 2) for x in decode],
        "prefill_tokens_per_s_runs": [round(x, 2) for x in prefill],
        "generated_tokens": gen_counts[0] if len(gen_counts) == 1 else gen_counts,
        "prompt_tokens": len(prompt_tokens),
        "decode_steps": runs[0]["n_eval"],
        "eog_masked": mask is not None,
        "timing": timing_sources[0] if len(timing_sources) == 1 else timing_sources,
    }

    if args.json:
        print(json.dumps(result))
        return

    print(f"llama.cpp baseline (llama-cpp-python {version})")
    print(f"model:   {args.model}")
    print(
        f"threads: {args.threads}   prompt tokens: {len(prompt_tokens)}   "
        f"max tokens: {args.max_tokens}   runs: {args.runs}"
    )
    print(f"timing:  {result['timing']}")
    print(f"EOG tokens masked: {'yes' if mask is not None else 'no (generation continued past them)'}")
    print()
    hdr = f"{'run':>4} {'prompt':>7} {'prefill ms':>11} {'prefill t/s':>12} {'gen':>5} {'decode steps':>13} {'decode ms':>10} {'decode t/s':>11}"
    print(hdr)
    print("-" * len(hdr))
    for i, r in enumerate(runs, 1):
        print(
            f"{i:>4} {r['n_p_eval']:>7} {r['t_p_eval_ms']:>11.2f} {r['prefill_tps']:>12.2f} "
            f"{r['generated_tokens']:>5} {r['n_eval']:>13} {r['t_eval_ms']:>10.2f} {r['decode_tps']:>11.2f}"
        )
    print("-" * len(hdr))
    print(
        f"{'median':>4} {'':>7} {'':>11} {result['prefill_tokens_per_s_median']:>12.2f} "
        f"{'':>5} {'':>13} {'':>10} {result['decode_tokens_per_s_median']:>11.2f}"
    )
    short = [r["generated_tokens"] for r in runs if r["generated_tokens"] < args.max_tokens]
    if short:
        print(f"warning: some runs generated fewer than {args.max_tokens} tokens: {short}")


if __name__ == "__main__":
    main()
