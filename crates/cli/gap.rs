//! `landauer gap`: the ladder from measured energy down to the roofline floor and Landauer.
//!
//! Reads a trace (`generate --trace`) or a sweep (`sweep --out DIR`), picks a hardware
//! profile (named with `--hardware`, else recognized from the GPU's name), and sets the
//! run's J/token beside the roofline floor of its model on that hardware and the Landauer
//! yardstick of its bits. The ladder itself is computed and written by
//! `landauer_reports::ladder`; this is its command line.

use crate::FootprintArgs;
use anyhow::Context;
use clap::Args;
use landauer_reports::ladder::{format_gap, format_hardware_list, gap_report, HardwareChoice};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct GapArgs {
    /// A JSONL trace (generate --trace) or a sweep: its sweep.json or its directory.
    #[arg(value_name = "TRACE|SWEEP", required_unless_present = "list_hardware")]
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub hardware: HardwareArgs,
    /// Print the ladder as JSON.
    #[arg(long)]
    pub json: bool,
    /// List the hardware profiles (each constant with its range and source) and exit.
    #[arg(long)]
    pub list_hardware: bool,
    #[command(flatten)]
    pub footprint: FootprintArgs,
}

/// How the floor's hardware and model shapes are chosen (gap and report).
#[derive(Args, Clone, Default)]
pub struct HardwareArgs {
    /// Hardware profile for the roofline floor: h100-sxm, h200, a100-sxm, rtx-3090,
    /// rtx-4090, ddr5-server-cpu, build-vm (see --list-hardware). Default: recognized from
    /// the GPU's name for CUDA runs; a generic DDR5 server CPU for CPU runs.
    #[arg(long, value_name = "ID")]
    pub hardware: Option<String>,
    /// Where to read the model's shapes when the input predates them: a .gguf file or
    /// synthetic:ARCH[:QUANT] (default: the model path the input records, if it exists).
    #[arg(long = "shapes-from", value_name = "MODEL")]
    pub shapes_from: Option<String>,
}

impl HardwareArgs {
    /// The flags as the reports' plain choice.
    pub fn choice(&self) -> HardwareChoice {
        HardwareChoice {
            hardware: self.hardware.clone(),
            shapes_from: self.shapes_from.clone(),
        }
    }
}

pub fn run(args: GapArgs) -> anyhow::Result<ExitCode> {
    if args.list_hardware {
        print!("{}", format_hardware_list());
        return Ok(ExitCode::SUCCESS);
    }
    let path = args.input.as_deref().context("give a trace or a sweep")?;
    let input = landauer_trace::read_input(path)?;
    let report = gap_report(&input, &args.hardware.choice(), &args.footprint.overrides())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", format_gap(&report));
    }
    Ok(ExitCode::SUCCESS)
}
