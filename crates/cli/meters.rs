//! `landauer meters`: which energy meters this machine has, and what each can resolve.

use clap::Args;
use landauer_meter::probe::probe_all;
use std::process::ExitCode;

#[derive(Args)]
pub struct MetersArgs {
    /// Seconds to probe each meter.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Watts per busy core assumed by the CPU-time estimate.
    #[arg(long, default_value_t = landauer_meter::DEFAULT_CPU_WATTS_PER_CORE)]
    pub cpu_watts: f64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub gpu: crate::GpuArgs,
}

pub fn run(args: MetersArgs) -> anyhow::Result<ExitCode> {
    if !(args.seconds.is_finite() && args.seconds > 0.0) {
        anyhow::bail!("--seconds must be positive, got {}", args.seconds);
    }
    let interval = args.gpu.interval()?;
    let probes = probe_all(args.seconds, interval, &args.gpu.gpus, args.cpu_watts);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&probes)?);
        return Ok(ExitCode::SUCCESS);
    }
    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.2}", v * 1e3));
    println!(
        "{:<20} {:>9} {:>13} {:>14} {:>12}  what it measures",
        "meter", "poll ms", "updates ms", "idle power W", "sampler CPU"
    );
    for p in &probes {
        let name = if p.available {
            p.meter.to_string()
        } else {
            format!("{} (absent)", p.meter)
        };
        println!(
            "{:<20} {:>9} {:>13} {:>14} {:>12}  {}",
            name,
            ms(p.poll_interval_s),
            ms(p.resolution_s),
            p.idle_power_w.map_or("-".into(), |w| format!("{w:.2}")),
            p.sampler_cpu_fraction
                .map_or("-".into(), |f| format!("{:.2}%", f * 100.0)),
            p.description
        );
    }
    for g in probes.iter().flat_map(|p| &p.gpus) {
        println!(
            "  GPU {} {} ({}, {}): instantaneous power {}, 1 s average {}, {}, SM {} MHz, memory {} MHz",
            g.index,
            g.name,
            g.pci_bus_id,
            g.uuid,
            g.power_instant_w
                .map_or("not supported".into(), |w| format!("{w:.1} W")),
            g.power_avg_w.map_or("-".into(), |w| format!("{w:.1} W")),
            g.temperature_c.map_or("-".into(), |c| format!("{c} C")),
            g.sm_clock_mhz.map_or("-".into(), |c| c.to_string()),
            g.mem_clock_mhz.map_or("-".into(), |c| c.to_string()),
        );
    }
    Ok(ExitCode::SUCCESS)
}
