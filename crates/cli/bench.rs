//! `landauer bench`: decode and prefill speed, with tracing on and off in the same process.

use crate::ModelArgs;
use clap::Args;
use landauer_studies::{bench, BenchConfig, BenchReport, Loaded};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub gpu: crate::GpuArgs,
    /// Measured repetitions of each configuration (medians are reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Unmeasured warm-up generations before the first measured one.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Tokens generated per run (end-of-sequence is ignored so that every run is this long).
    #[arg(long, short = 'n', default_value_t = 128)]
    pub max_tokens: usize,
    /// Rows decoded together, each with the prompt (landauer's batched pass): tracing's
    /// cost and the energy per token at that batch size.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Prompt for every run.
    #[arg(
        long,
        default_value = "Once upon a time, there was a little girl named Lily. She"
    )]
    pub prompt: String,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the results as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Keep the traced runs' JSONL and CSV traces in this directory (default: discarded).
    #[arg(long, value_name = "DIR")]
    pub trace_dir: Option<PathBuf>,
    /// Seconds of idle power measured before each traced run (default: 2 on a GPU, else 0),
    /// for active energy.
    #[arg(long)]
    pub idle_seconds: Option<f64>,
    /// Skip scoring the last traced run in exact mode (f32 weights and activations), which
    /// reports how far the default mode's entropies are from the model's own.
    #[arg(long)]
    pub no_exact_check: bool,
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let cfg = BenchConfig {
        runs: args.runs,
        warmup: args.warmup,
        max_tokens: args.max_tokens,
        prompt: args.prompt.clone(),
        batch: args.batch,
        trace_dir: args.trace_dir.clone(),
        idle_seconds: args.idle_seconds,
        meter: Default::default(),
        exact_check: match args.no_exact_check {
            true => None,
            false => Some(args.model.options(false)?),
        },
    };
    cfg.check()?;
    let threads = crate::set_threads(args.model.threads)?;
    let mut term = crate::progress::Terminal::default();
    let mut loaded = Loaded::load(&args.model.options(args.batch > 1)?, &mut term)?;
    let cfg = BenchConfig {
        meter: args.gpu.meter(
            crate::MeterArg::Auto,
            landauer_meter::DEFAULT_CPU_WATTS_PER_CORE,
        )?,
        ..cfg
    };
    let report = bench::run(&mut loaded, threads, &cfg, &mut term)?;
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(p) = &args.out {
        std::fs::write(p, &json)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?;
    }
    if args.json {
        println!("{json}");
    } else {
        print_table(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// The bench's figures as text.
fn print_table(report: &BenchReport) {
    let threads = report.threads;
    let generated = report.generated_tokens;
    let rows = match report.batch {
        1 => String::new(),
        b => format!(", batch {b} ({} tokens a row)", generated / b),
    };
    println!(
        "landauer bench: {} {}, {} threads, {}-token prompt, {} tokens{rows}, {} runs (medians)",
        report.model, report.quantization, threads, report.prompt_tokens, generated, report.runs
    );
    println!(
        "{:<14} {:>12} {:>13}",
        "tracing", "decode tok/s", "prefill tok/s"
    );
    println!(
        "{:<14} {:>12.2} {:>13.2}",
        "off",
        report.tracing_off.decode_tokens_per_s_median,
        report.tracing_off.prefill_tokens_per_s_median
    );
    println!(
        "{:<14} {:>12.2} {:>13.2}",
        "on",
        report.tracing_on.decode_tokens_per_s_median,
        report.tracing_on.prefill_tokens_per_s_median
    );
    println!(
        "tracing: {:.3} ms per token inside the sinks ({:.3} ms of CPU) = {:.2}% of untraced decode time; end to end {:+.2}% (ratio of medians), {:+.2}% (median of run pairs)",
        report.tracing_ms_per_token,
        report.tracing_cpu_ms_per_token,
        report.tracing_cost_fraction * 100.0,
        report.tracing_overhead * 100.0,
        report.tracing_overhead_paired * 100.0
    );
    if let Some(r) = &report.roofline {
        println!(
            "roofline: {:.1} GB/s read ({threads} threads); a decode token reads {:.1} MB (weights {:.1}{}, KV cache {:.1}) -> {:.0} tokens/s; untraced decode is at {:.0}% of it",
            r.read_bandwidth_bytes_per_s / 1e9,
            r.bytes_per_token / 1e6,
            report.weight_bytes_per_token as f64 / 1e6,
            match report.batch {
                1 => String::new(),
                b => format!(" a step, shared by {b} rows"),
            },
            r.kv_bytes_per_token_mean / 1e6,
            r.roofline_tokens_per_s,
            r.fraction_tracing_off * 100.0
        );
    }
    if let Some(e) = &report.energy {
        let est = if e.estimated { " ESTIMATED" } else { "" };
        println!(
            "energy with tracing ({}{est}): decode {:.4} J/token, {:.0} tokens/Wh, {:.1} W{}",
            e.meter,
            e.decode_joules_per_token_median,
            e.decode_tokens_per_wh_median,
            e.decode_power_w_median,
            e.decode_active_joules_per_token_median
                .map(|a| format!(
                    "; active {a:.4} J/token (idle {:.1} W)",
                    e.idle_power_w.unwrap_or(0.0)
                ))
                .unwrap_or_default()
        );
    }
    if let Some(j) = report
        .energy
        .as_ref()
        .and_then(|e| e.untraced_decode_joules_per_token_median)
    {
        println!(
            "energy without tracing: decode {j:.4} J/token, {:.0} tokens/Wh",
            3600.0 / j
        );
    }
    if let Some(e) = &report.entropy_error_vs_exact {
        println!(
            "entropy against exact mode (f32 activations), same {} tokens: mean {:.4}, p95 {:.4}, max {:.4} bits",
            e.tokens, e.mean_bits, e.p95_bits, e.max_bits
        );
    }
    if report.synthetic {
        println!(
            "synthetic model: random weights; speed and energy are real, entropy is meaningless"
        );
    }
}
