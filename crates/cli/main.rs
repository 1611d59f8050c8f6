//! `landauer`, the command line: arguments, wiring and terminal output over the library
//! crates (engine, meter, trace, studies, reports). One file per command.

// Doc comments here are clap's help texts, written for a terminal (`synthetic:ARCH[:QUANT]`),
// not rustdoc links.
#![allow(rustdoc::broken_intra_doc_links)]

mod args;
mod bench;
mod gap;
mod generate;
mod meters;
mod progress;
mod report;
mod serve;
mod study;
mod sweep;
mod synthetic_gguf;

pub use args::{set_threads, FootprintArgs, GpuArgs, MeterArg, ModelArgs, SamplingArgs};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "landauer",
    version,
    about = "Generate text and measure the energy and information of every token"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text, streaming it with a per-token entropy and energy trace.
    Generate(generate::GenerateArgs),
    /// Download the default model into the cache and verify its sha256.
    Fetch,
    /// Benchmark decode speed with tracing on and off (medians of several runs).
    Bench(bench::BenchArgs),
    /// List the energy meters on this machine and probe each: resolution, idle power, cost.
    Meters(meters::MetersArgs),
    /// Measure decode speed and energy per token against batch size (JSON, CSV and SVG).
    Sweep(sweep::SweepArgs),
    /// What each precision and size buys: models x quantizations x batch sizes, speed and
    /// energy beside the quality each keeps on a reference text (JSON, CSV and SVG).
    Study(study::StudyArgs),
    /// The ladder: measured J/token, the roofline energy floor of the model on its
    /// hardware, and the Landauer yardstick of its bits, with the ratios between them.
    Gap(gap::GapArgs),
    /// Write one self-contained HTML report (inline SVG figures) for a trace or a sweep.
    Report(report::ReportArgs),
    /// Serve the model over HTTP, OpenAI's API, every response billed in joules and bits.
    Serve(serve::ServeArgs),
    /// Write a synthetic model (real shapes, random weights) as a GGUF file that llama.cpp
    /// and landauer both load, with llama-quantize's type mix and optionally a real tokenizer.
    SyntheticGguf(synthetic_gguf::SyntheticGgufArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(args) => generate::run(args),
        Command::Fetch => fetch(),
        Command::Bench(args) => bench::run(args),
        Command::Meters(args) => meters::run(args),
        Command::Sweep(args) => sweep::run(args),
        Command::Study(args) => study::run(args),
        Command::Gap(args) => gap::run(args),
        Command::Report(args) => report::run(args),
        Command::SyntheticGguf(args) => synthetic_gguf::run(args),
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line: what is wrong and what to do.
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("landauer: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn fetch() -> anyhow::Result<ExitCode> {
    let m = landauer_engine::fetch::Manifest::default_model();
    let path = landauer_engine::fetch::ensure_default_model(&m, true)?;
    eprintln!(
        "landauer: {} {} ({}) verified (sha256 {})",
        m.name, m.quantization, m.license, m.sha256
    );
    println!("{}", path.display());
    Ok(ExitCode::SUCCESS)
}
