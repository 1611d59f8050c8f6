//! `landauer meters`: which energy meters this machine has, and what each can resolve.

use clap::Args;
use landauer_meter::attribution::EnergyTimeline;
use landauer_meter::sampler::MeterSampler;
use landauer_meter::{CpuTimeEstimate, EnergyMeter, NvmlMeter, RaplMeter, DEFAULT_POWERCAP_ROOT};
use serde::Serialize;
use std::process::ExitCode;
use std::time::Duration;

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

#[derive(Serialize)]
struct Probe {
    meter: &'static str,
    available: bool,
    /// What it measures, or why it is not available.
    description: String,
    estimated: bool,
    poll_interval_s: Option<f64>,
    /// Median interval between changes of the counter's value.
    resolution_s: Option<f64>,
    /// Mean power over the probe (this process is idle meanwhile), watts.
    idle_power_w: Option<f64>,
    /// CPU time of the sampler thread over the probe's length.
    sampler_cpu_fraction: Option<f64>,
    /// Per-GPU readings beside energy (NVML only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    gpus: Vec<GpuProbe>,
}

#[derive(Serialize)]
struct GpuProbe {
    index: u32,
    name: String,
    uuid: String,
    pci_bus_id: String,
    /// What the driver answers to `NVML_FI_DEV_POWER_INSTANT` (null: not supported).
    power_instant_w: Option<f64>,
    /// `nvmlDeviceGetPowerUsage`, a 1 s average on Ampere and newer.
    power_avg_w: Option<f64>,
    temperature_c: Option<u32>,
    sm_clock_mhz: Option<u32>,
    mem_clock_mhz: Option<u32>,
}

/// NVML's readings beside energy, for each GPU it counts.
fn gpu_probes(m: &NvmlMeter) -> Vec<GpuProbe> {
    m.telemetry()
        .into_iter()
        .zip(m.devices())
        .map(|(t, d)| GpuProbe {
            index: d.index,
            name: d.name.clone(),
            uuid: d.uuid.clone(),
            pci_bus_id: d.pci_bus_id.clone(),
            power_instant_w: t.power_instant_w,
            power_avg_w: t.power_avg_w,
            temperature_c: t.temperature_c,
            sm_clock_mhz: t.sm_clock_mhz,
            mem_clock_mhz: t.mem_clock_mhz,
        })
        .collect()
}

fn probe(meter: Box<dyn EnergyMeter>, seconds: f64, interval: Option<Duration>) -> Probe {
    let name = meter.name();
    let interval = interval.unwrap_or_else(|| meter.default_interval());
    let sampler = MeterSampler::start(meter, interval);
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let info = sampler.info().clone();
    let report = sampler.stop();
    let timeline = EnergyTimeline::from_samples(&report.samples);
    let (a, b) = (
        report.samples.first().map_or(0.0, |s| s.t),
        report.samples.last().map_or(0.0, |s| s.t),
    );
    Probe {
        meter: name,
        available: true,
        description: info.description,
        estimated: info.estimated,
        poll_interval_s: Some(interval.as_secs_f64()),
        resolution_s: timeline.update_period(),
        idle_power_w: timeline.mean_power(a, b),
        sampler_cpu_fraction: (report.wall_s > 0.0).then(|| report.cpu_s / report.wall_s),
        gpus: Vec::new(),
    }
}

fn unavailable(meter: &'static str, why: String) -> Probe {
    Probe {
        meter,
        available: false,
        description: why,
        estimated: false,
        poll_interval_s: None,
        resolution_s: None,
        idle_power_w: None,
        sampler_cpu_fraction: None,
        gpus: Vec::new(),
    }
}

pub fn run(args: MetersArgs) -> anyhow::Result<ExitCode> {
    if !(args.seconds.is_finite() && args.seconds > 0.0) {
        anyhow::bail!("--seconds must be positive, got {}", args.seconds);
    }
    let interval = args.gpu.interval()?;
    let probes = vec![
        match NvmlMeter::open(&args.gpu.gpus) {
            Ok(m) => {
                let gpus = gpu_probes(&m);
                let mut p = probe(Box::new(m), args.seconds, interval);
                p.gpus = gpus;
                p
            }
            Err(e) => unavailable("nvml", e.to_string()),
        },
        match RaplMeter::open(DEFAULT_POWERCAP_ROOT) {
            Ok(m) => probe(Box::new(m), args.seconds, interval),
            Err(e) => unavailable("rapl", e.to_string()),
        },
        probe(
            Box::new(CpuTimeEstimate::new(args.cpu_watts)),
            args.seconds,
            interval,
        ),
    ];
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
