//! Probing the meters a machine has: what each measures, how often its counter moves, the
//! idle power it reads and what polling it costs (`landauer meters`).

use crate::attribution::EnergyTimeline;
use crate::sampler::MeterSampler;
use crate::{CpuTimeEstimate, EnergyMeter, NvmlMeter, RaplMeter, DEFAULT_POWERCAP_ROOT};
use serde::Serialize;
use std::time::Duration;

/// What probing a meter found.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub meter: &'static str,
    pub available: bool,
    /// What it measures, or why it is not available.
    pub description: String,
    pub estimated: bool,
    pub poll_interval_s: Option<f64>,
    /// Median interval between changes of the counter's value.
    pub resolution_s: Option<f64>,
    /// Mean power over the probe (this process is idle meanwhile), watts.
    pub idle_power_w: Option<f64>,
    /// CPU time of the sampler thread over the probe's length.
    pub sampler_cpu_fraction: Option<f64>,
    /// Per-GPU readings beside energy (NVML only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<GpuProbe>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GpuProbe {
    pub index: u32,
    pub name: String,
    pub uuid: String,
    pub pci_bus_id: String,
    /// What the driver answers to `NVML_FI_DEV_POWER_INSTANT` (null: not supported).
    pub power_instant_w: Option<f64>,
    /// `nvmlDeviceGetPowerUsage`, a 1 s average on Ampere and newer.
    pub power_avg_w: Option<f64>,
    pub temperature_c: Option<u32>,
    pub sm_clock_mhz: Option<u32>,
    pub mem_clock_mhz: Option<u32>,
}

/// NVML's readings beside energy, for each GPU it counts.
pub fn gpu_probes(m: &NvmlMeter) -> Vec<GpuProbe> {
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

/// Polls one meter for `seconds` while this process idles: its update period, the power it
/// reads, and what its sampler thread costs.
pub fn probe(meter: Box<dyn EnergyMeter>, seconds: f64, interval: Option<Duration>) -> Probe {
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

/// A meter that could not be opened, and why.
pub fn unavailable(meter: &'static str, why: String) -> Probe {
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

/// Probes every meter in turn for `seconds` each: NVML (the GPUs `gpus` names, else all),
/// RAPL, and the CPU-time estimate at `cpu_watts` per busy core. Absent meters say why.
pub fn probe_all(
    seconds: f64,
    interval: Option<Duration>,
    gpus: &[String],
    cpu_watts: f64,
) -> Vec<Probe> {
    vec![
        match NvmlMeter::open(gpus) {
            Ok(m) => {
                let gpus = gpu_probes(&m);
                let mut p = probe(Box::new(m), seconds, interval);
                p.gpus = gpus;
                p
            }
            Err(e) => unavailable("nvml", e.to_string()),
        },
        match RaplMeter::open(DEFAULT_POWERCAP_ROOT) {
            Ok(m) => probe(Box::new(m), seconds, interval),
            Err(e) => unavailable("rapl", e.to_string()),
        },
        probe(Box::new(CpuTimeEstimate::new(cpu_watts)), seconds, interval),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_always_probed_and_absent_meters_say_why() {
        let probes = probe_all(0.2, Some(Duration::from_millis(10)), &[], 10.0);
        assert_eq!(
            probes.iter().map(|p| p.meter).collect::<Vec<_>>(),
            ["nvml", "rapl", "cpu-time-estimate"]
        );
        let est = &probes[2];
        assert!(est.available && est.estimated);
        assert_eq!(est.poll_interval_s, Some(0.01));
        for p in probes.iter().filter(|p| !p.available) {
            assert!(
                !p.description.is_empty(),
                "{} absent without a reason",
                p.meter
            );
            assert!(p.resolution_s.is_none() && p.idle_power_w.is_none());
        }
    }
}
