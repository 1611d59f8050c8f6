"""Groups `perf report --sort dso,symbol --stdio` lines (stdin) into engine categories.

The first pattern that matches a symbol names its category; the order matters (an
activation quantizer is `from_float`, which must not fall into the generic matmul bucket).
"""
import re
import sys

GROUPS = [
    ("matmul Q4_1 weights (dot products, f16 scales)", r"BlockQ4_1|f16_to_f32|q4_1|Q4_1"),
    ("matmul Q8_0 output layer", r"q8_0_q8_0|BlockQ8_0.*vec_dot|Q8_0.*dot|rows_q8_0"),
    ("matmul K-quants", r"q4k|q6k|Q4K|Q6K|BlockQ[2-6]K"),
    ("activation quantization (f32 -> Q8)", r"from_float|quantize_row|quantize_q8|roundf|quantize_block|set_scales|Q8Rows"),
    ("matmul driver (chunking, dispatch)", r"k_quants::matmul|qmatmul|landauer_engine::kernels"),
    ("thread pool: spin, barrier, wake-up", r"Barrier|rust_begin_short_backtrace|sched_yield|futex|rayon|crossbeam|call_trampoline|execute_chunked|finish_task_switch|schedule|try_to_wake"),
    ("entropy, surprisal (physics)", r"landauer_physics|log2|__log|__ieee754_exp"),
    ("attention (f32 GEMM, softmax, exp)", r"cpu_attention|gemm|SoftmaxLastDim|softmax_last_dim|expf"),
    ("norms, RoPE, SiLU, elementwise", r"RmsNorm|rms_norm|rope|Rope|silu|unary_map|binary_map|Affine|copy_strided|index_select|IndexSelect"),
    ("sampling", r"sampler::|Sampler"),
    ("tracing, output (sinks, JSON, text, I/O)", r"landauer_trace|serde|fmt|write|Write|vsnprintf|format_decode|seq_printf|string|number|tokenizers|memchr|CharSearcher|read|vfs_|filemap|show_cpuinfo|_copy_to_iter"),
    ("allocation, copies, page faults", r"malloc|free|_int_|memmove|memcpy|memset|unlink_chunk|page|clear_page|mm_fault|realloc|alloc::"),
]


def main() -> None:
    totals: dict[str, float] = {}
    for line in sys.stdin:
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*?)\s+-\s+-\s*$", line)
        if not m:
            continue
        pct, dso, kind, sym = float(m[1]), m[2], m[3], m[4]
        name = "other"
        for group, pat in GROUPS:
            if re.search(pat, sym):
                name = group
                break
        else:
            if kind == "k":
                name = "kernel, other"
        totals[name] = totals.get(name, 0.0) + pct
    width = max(len(k) for k in totals)
    for name, pct in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"{name:<{width}}  {pct:6.2f}%")


if __name__ == "__main__":
    main()
