//! `landauer report`: one self-contained HTML file for a trace or a sweep.
//!
//! Everything is inline: the figures are SVG drawn with plotters (landauer_reports::charts),
//! the token tooltips are CSS only, and there is no script and no network request, so the
//! file opens from disk, offline, and prints. The page is built by landauer_reports::html;
//! this is its command line.

use crate::gap::HardwareArgs;
use crate::FootprintArgs;
use anyhow::Context;
use clap::Args;
use landauer_reports::html;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct ReportArgs {
    /// A JSONL trace (generate --trace) or a sweep: its sweep.json or its directory.
    #[arg(value_name = "TRACE|SWEEP")]
    pub input: PathBuf,
    /// The HTML file to write.
    #[arg(long, short = 'o', default_value = "report.html")]
    pub output: PathBuf,
    /// Also write the main figures as PNG files beside the report (REPORT-ladder.png, ...).
    #[arg(long)]
    pub png: bool,
    /// Steps drawn in the Galton-board view (the first N tokens).
    #[arg(long, default_value_t = 96)]
    pub galton_steps: usize,
    #[command(flatten)]
    pub hardware: HardwareArgs,
    #[command(flatten)]
    pub footprint: FootprintArgs,
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    if args.galton_steps == 0 {
        anyhow::bail!("--galton-steps must be at least 1");
    }
    let input = landauer_trace::read_input(&args.input)?;
    let report = html::build(
        &input,
        &args.hardware.choice(),
        &args.footprint.overrides(),
        args.galton_steps,
    )?;
    std::fs::write(&args.output, &report.html)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    println!(
        "wrote {} ({:.0} kB, {} figures)",
        args.output.display(),
        report.html.len() as f64 / 1e3,
        report.figures.len()
    );
    if args.png {
        for (name, svg) in &report.figures {
            let p = html::write_png(&args.output, name, svg)?;
            println!("wrote {}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
