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
mod rapl;
pub mod sampler;

pub use cpu_time::{
    process_cpu_seconds, thread_cpu_seconds, CpuTimeEstimate, DEFAULT_CPU_WATTS_PER_CORE,
};
pub use nvml::{GpuTelemetry, NvmlDevice, NvmlMeter};
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
    /// How often a sampler should poll this meter.
    fn default_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(10)
    }
}

/// Which meter `open_meter` should open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeterChoice {
    /// The best real meter for the device: RAPL for CPU runs where readable, otherwise the
    /// CPU-time estimate. (NVML is the choice for CUDA runs.)
    Auto,
    Nvml,
    Rapl,
    Estimate,
    None,
}

/// The meter that was opened and why it was chosen.
pub struct OpenedMeter {
    pub meter: Option<Box<dyn EnergyMeter>>,
    /// Why this meter (for the run record), e.g. "auto: RAPL absent (...)".
    pub reason: String,
}

/// Opens the meter asked for. `Auto` never fails: it falls back to the estimate and says why.
pub fn open_meter(choice: MeterChoice, cpu_watts_per_core: f64) -> Result<OpenedMeter, MeterError> {
    match choice {
        MeterChoice::None => Ok(OpenedMeter {
            meter: None,
            reason: "--meter none: energy not measured".into(),
        }),
        MeterChoice::Estimate => Ok(OpenedMeter {
            meter: Some(Box::new(CpuTimeEstimate::new(cpu_watts_per_core))),
            reason: "--meter estimate".into(),
        }),
        MeterChoice::Nvml => Ok(OpenedMeter {
            meter: Some(Box::new(NvmlMeter::open(&[])?)),
            reason: "--meter nvml".into(),
        }),
        MeterChoice::Rapl => Ok(OpenedMeter {
            meter: Some(Box::new(RaplMeter::open(DEFAULT_POWERCAP_ROOT)?)),
            reason: "--meter rapl".into(),
        }),
        MeterChoice::Auto => match RaplMeter::open(DEFAULT_POWERCAP_ROOT) {
            Ok(m) => Ok(OpenedMeter {
                meter: Some(Box::new(m)),
                reason: "auto: RAPL counters readable".into(),
            }),
            Err(e) => Ok(OpenedMeter {
                meter: Some(Box::new(CpuTimeEstimate::new(cpu_watts_per_core))),
                reason: format!("auto: RAPL unavailable ({e}); fell back to the CPU-time estimate"),
            }),
        },
    }
}
