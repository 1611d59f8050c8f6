//! Energy meters: sources of cumulative joules at monotonic timestamps.
//!
//! A meter is read at the edges of a measurement window; the energy of the window is the
//! difference of two readings (the Zeus model: begin/end, decoupled from the workload).
//!
//! ```
//! use landauer_meter::{CpuTimeEstimate, EnergyMeter};
//!
//! let mut meter = CpuTimeEstimate::new(10.0); // watts per busy core
//! let start = meter.read().unwrap();
//! let mut x = 0u64;
//! for i in 0..1_000_000u64 { x = x.wrapping_add(i * i); }
//! std::hint::black_box(x);
//! let end = meter.read().unwrap();
//! assert!(end.joules >= start.joules);
//! assert!(meter.estimated());
//! ```
//!
//! What the meters can resolve:
//! - [`RaplMeter`] reads the CPU package (and DRAM) energy counters the kernel exposes under
//!   `/sys/class/powercap`. They count the whole socket, not this process, update about every
//!   millisecond, and are usually readable only by root and absent in virtual machines.
//! - [`NvmlMeter`] reads NVIDIA GPUs' cumulative energy counters (mJ), which update every
//!   ~20-100 ms; libnvidia-ml is loaded at run time, so it is optional.
//! - [`CpuTimeEstimate`] is not a measurement: it multiplies this process's CPU time by an
//!   assumed power per busy core. It is always labeled *estimated*.

pub mod attribution;
mod cpu_time;
mod nvml;
pub mod probe;
mod rapl;
pub mod sampler;

pub use cpu_time::{
    process_cpu_seconds, thread_cpu_seconds, CpuTimeEstimate, DEFAULT_CPU_WATTS_PER_CORE,
};
pub use nvml::{parse_pci_bus_id, GpuTelemetry, NvmlDevice, NvmlMeter};
pub use rapl::{RaplDomain, RaplMeter, DEFAULT_POWERCAP_ROOT};

use std::time::Instant;

/// One reading of a meter: cumulative joules since the meter was created, and when.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EnergyReading {
    /// Joules accumulated since the meter was opened (monotonic, wraparound already undone).
    pub joules: f64,
    /// When the counter was read.
    pub at: Instant,
}

/// A meter's energy split by where it was measured: one GPU, one RAPL domain.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterPart {
    /// E.g. `GPU 0 NVIDIA H100 80GB HBM3 (00000000:19:00.0)` or `package-0`.
    pub name: String,
    /// Cumulative joules of this part at the meter's last successful read.
    pub joules: f64,
}

/// What a meter reports beside energy (GPUs do; RAPL and the estimate do not). Several GPUs
/// are combined: the hottest temperature, mean clocks, summed power.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Telemetry {
    pub temperature_c: Option<f64>,
    pub sm_clock_mhz: Option<f64>,
    pub mem_clock_mhz: Option<f64>,
    /// Instantaneous power (`NVML_FI_DEV_POWER_INSTANT`), watts, where supported.
    pub power_instant_w: Option<f64>,
}

/// What can go wrong reading a meter. Every message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum MeterError {
    #[error(
        "no RAPL energy counters under {0} (common in virtual machines); use --meter estimate"
    )]
    RaplAbsent(String),
    #[error("permission denied reading {0}; run as root or `sudo chmod a+r {0}` (RAPL counters are root-only since Linux 5.10), or use --meter estimate")]
    RaplPermission(String),
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unexpected contents in {path}: {contents:?}")]
    Parse { path: String, contents: String },
    #[error("NVML unavailable: {0} (NVML comes with the NVIDIA driver, libnvidia-ml.so.1; on a machine without an NVIDIA GPU use --meter auto)")]
    Nvml(String),
    #[error("cannot read this process's CPU time: {0}")]
    CpuTime(std::io::Error),
}

/// A source of cumulative energy.
pub trait EnergyMeter: Send {
    /// Short identifier used in traces, e.g. `"rapl"` or `"cpu-time-estimate"`.
    fn name(&self) -> &'static str;
    /// One line on what the meter measures and how.
    fn describe(&self) -> String;
    /// True when the figure is a model, not a measurement.
    fn estimated(&self) -> bool;
    /// Cumulative joules since the meter was opened.
    fn read(&mut self) -> Result<EnergyReading, MeterError>;
    /// The total split by part (GPU, RAPL domain), as of the last successful `read`; empty
    /// when the meter has a single part.
    fn parts(&self) -> Vec<MeterPart> {
        Vec::new()
    }
    /// Temperature, clocks and instantaneous power, where the meter has them. Slower than
    /// `read`: the sampler asks every ~100 ms.
    fn telemetry(&mut self) -> Option<Telemetry> {
        None
    }
    /// How often a sampler should poll this meter.
    fn default_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(10)
    }
}

/// Which meter `open_meter` should open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeterChoice {
    /// The best real meter for the device: NVML for CUDA runs; RAPL for CPU runs where
    /// readable; otherwise the CPU-time estimate, labeled as such.
    Auto,
    Nvml,
    Rapl,
    Estimate,
    None,
}

/// What to open: the choice, and what `Auto` and NVML need to know about the run.
#[derive(Debug, Clone)]
pub struct MeterRequest {
    pub choice: MeterChoice,
    /// Assumed watts per busy core for the estimate.
    pub cpu_watts_per_core: f64,
    /// GPUs to count (index, UUID or PCI bus id each); empty: all GPUs, or for a CUDA run
    /// the GPU it runs on.
    pub gpus: Vec<String>,
    /// The CUDA device's PCI bus id when the run is on a GPU: `Auto` then takes NVML, and
    /// NVML counts that GPU unless `gpus` names others.
    pub cuda_pci_bus_id: Option<String>,
}

impl MeterRequest {
    /// A CPU run with the default estimate.
    pub fn cpu(choice: MeterChoice) -> Self {
        Self {
            choice,
            cpu_watts_per_core: DEFAULT_CPU_WATTS_PER_CORE,
            gpus: Vec::new(),
            cuda_pci_bus_id: None,
        }
    }

    fn nvml_selectors(&self) -> Vec<String> {
        match (&self.cuda_pci_bus_id, self.gpus.is_empty()) {
            (Some(pci), true) => vec![pci.clone()],
            _ => self.gpus.clone(),
        }
    }
}

/// The meter that was opened and why it was chosen.
pub struct OpenedMeter {
    pub meter: Option<Box<dyn EnergyMeter>>,
    /// Why this meter (for the run record), e.g. "auto: RAPL absent (...)".
    pub reason: String,
}

/// Opens the meter asked for. `Auto` never fails: it falls back to the estimate and says why.
pub fn open_meter(req: &MeterRequest) -> Result<OpenedMeter, MeterError> {
    let estimate = || Box::new(CpuTimeEstimate::new(req.cpu_watts_per_core));
    let nvml_reason = |how: &str| match &req.cuda_pci_bus_id {
        Some(pci) if req.gpus.is_empty() => {
            format!("{how}: the GPU the run is on, matched by PCI bus id {pci}")
        }
        _ if req.gpus.is_empty() => format!("{how}: every GPU"),
        _ => format!("{how}: GPU(s) {}", req.gpus.join(", ")),
    };
    match req.choice {
        MeterChoice::None => Ok(OpenedMeter {
            meter: None,
            reason: "--meter none: energy not measured".into(),
        }),
        MeterChoice::Estimate => Ok(OpenedMeter {
            meter: Some(estimate()),
            reason: "--meter estimate".into(),
        }),
        MeterChoice::Nvml => Ok(OpenedMeter {
            meter: Some(Box::new(NvmlMeter::open(&req.nvml_selectors())?)),
            reason: nvml_reason("--meter nvml"),
        }),
        MeterChoice::Rapl => Ok(OpenedMeter {
            meter: Some(Box::new(RaplMeter::open(DEFAULT_POWERCAP_ROOT)?)),
            reason: "--meter rapl".into(),
        }),
        MeterChoice::Auto if req.cuda_pci_bus_id.is_some() => {
            match NvmlMeter::open(&req.nvml_selectors()) {
                Ok(m) => Ok(OpenedMeter {
                    meter: Some(Box::new(m)),
                    reason: nvml_reason("auto: CUDA run, NVML"),
                }),
                Err(e) => Ok(OpenedMeter {
                    meter: Some(estimate()),
                    reason: format!(
                        "auto: CUDA run but NVML unavailable ({e}); fell back to the CPU-time estimate, which does not see the GPU"
                    ),
                }),
            }
        }
        MeterChoice::Auto => match RaplMeter::open(DEFAULT_POWERCAP_ROOT) {
            Ok(m) => Ok(OpenedMeter {
                meter: Some(Box::new(m)),
                reason: "auto: RAPL counters readable".into(),
            }),
            Err(e) => Ok(OpenedMeter {
                meter: Some(estimate()),
                reason: format!("auto: RAPL unavailable ({e}); fell back to the CPU-time estimate"),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_on_a_cuda_run_without_nvml_falls_back_and_says_so() {
        if NvmlMeter::open(&[]).is_ok() {
            eprintln!("NVML present: the fallback cannot be exercised here");
            return;
        }
        let req = MeterRequest {
            cuda_pci_bus_id: Some("0000:19:00.0".into()),
            ..MeterRequest::cpu(MeterChoice::Auto)
        };
        let opened = open_meter(&req).unwrap();
        let m = opened.meter.unwrap();
        assert!(m.estimated());
        assert!(
            opened.reason.contains("NVML unavailable")
                && opened.reason.contains("does not see the GPU"),
            "{}",
            opened.reason
        );
        // Asking for NVML outright is an error that says what to do.
        let e = open_meter(&MeterRequest::cpu(MeterChoice::Nvml))
            .err()
            .unwrap();
        assert!(e.to_string().contains("NVML unavailable"), "{e}");
    }

    #[test]
    fn nvml_counts_the_run_gpu_unless_told_otherwise() {
        let mut req = MeterRequest {
            cuda_pci_bus_id: Some("0000:19:00.0".into()),
            ..MeterRequest::cpu(MeterChoice::Nvml)
        };
        assert_eq!(req.nvml_selectors(), ["0000:19:00.0"]);
        req.gpus = vec!["0".into(), "1".into()];
        assert_eq!(req.nvml_selectors(), ["0", "1"]);
        req.cuda_pci_bus_id = None;
        req.gpus.clear();
        assert!(req.nvml_selectors().is_empty(), "all GPUs");
    }
}
