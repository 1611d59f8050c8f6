use crate::{EnergyMeter, EnergyReading, MeterError};
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::enums::device::SampleValue;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::Nvml;
use std::time::{Duration, Instant};

/// `NVML_FI_DEV_POWER_INSTANT`: instantaneous board power, mW (Hopper and newer drivers).
const FI_DEV_POWER_INSTANT: u32 = 186;

/// One GPU counted by an [`NvmlMeter`].
#[derive(Debug, Clone)]
pub struct NvmlDevice {
    pub index: u32,
    pub name: String,
    pub uuid: String,
    pub pci_bus_id: String,
    start_mj: u64,
}

/// What a GPU reports beside energy, read on demand.
#[derive(Debug, Clone, Default)]
pub struct GpuTelemetry {
    pub index: u32,
    /// Joules since the meter was opened.
    pub energy_j: f64,
    /// Instantaneous power from `NVML_FI_DEV_POWER_INSTANT`, watts (None where unsupported).
    pub power_instant_w: Option<f64>,
    /// `nvmlDeviceGetPowerUsage`: a 1-second average on Ampere and newer, never integrated.
    pub power_avg_w: Option<f64>,
    pub temperature_c: Option<u32>,
    pub sm_clock_mhz: Option<u32>,
    pub mem_clock_mhz: Option<u32>,
}

/// GPU energy from NVML's cumulative counter (`nvmlDeviceGetTotalEnergyConsumption`, mJ since
/// the driver loaded; Volta and newer), summed over the chosen GPUs.
///
/// libnvidia-ml is loaded at run time: this builds and runs where it is absent, and opening
/// the meter then fails with an error that says so. The counter updates every ~20-100 ms:
/// shorter windows are interpolated, and marked unresolved by the attribution.
pub struct NvmlMeter {
    nvml: Nvml,
    devices: Vec<NvmlDevice>,
}

fn nvml_err(e: impl std::fmt::Display) -> MeterError {
    MeterError::Nvml(e.to_string())
}

impl NvmlMeter {
    /// Opens NVML and the GPUs named by `selectors` (an index, a UUID or a PCI bus id each;
    /// all GPUs when empty).
    pub fn open(selectors: &[String]) -> Result<Self, MeterError> {
        let nvml = Nvml::init().map_err(nvml_err)?;
        let indices: Vec<u32> = if selectors.is_empty() {
            (0..nvml.device_count().map_err(nvml_err)?).collect()
        } else {
            selectors
                .iter()
                .map(|s| {
                    let dev = match s.parse::<u32>() {
                        Ok(i) => nvml.device_by_index(i),
                        Err(_) if s.starts_with("GPU-") || s.starts_with("MIG-") => {
                            nvml.device_by_uuid(s.as_str())
                        }
                        Err(_) => nvml.device_by_pci_bus_id(s.as_str()),
                    }
                    .map_err(|e| MeterError::Nvml(format!("no GPU `{s}`: {e}")))?;
                    dev.index().map_err(nvml_err)
                })
                .collect::<Result<_, _>>()?
        };
        if indices.is_empty() {
            return Err(MeterError::Nvml("NVML sees no GPU".into()));
        }
        let mut devices = Vec::new();
        for index in indices {
            let d = nvml.device_by_index(index).map_err(nvml_err)?;
            let start_mj = d.total_energy_consumption().map_err(|e| {
                MeterError::Nvml(format!(
                    "GPU {index} has no total energy counter ({e}); it needs a Volta or newer GPU"
                ))
            })?;
            devices.push(NvmlDevice {
                index,
                name: d.name().unwrap_or_default(),
                uuid: d.uuid().unwrap_or_default(),
                pci_bus_id: d.pci_info().map(|p| p.bus_id).unwrap_or_default(),
                start_mj,
            });
        }
        Ok(Self { nvml, devices })
    }

    pub fn devices(&self) -> &[NvmlDevice] {
        &self.devices
    }

    /// Power, temperature and clocks of every counted GPU, with its energy so far.
    pub fn telemetry(&self) -> Vec<GpuTelemetry> {
        self.devices
            .iter()
            .filter_map(|dev| {
                let d = self.nvml.device_by_index(dev.index).ok()?;
                let instant = d
                    .field_values_for(&[FieldId(FI_DEV_POWER_INSTANT)])
                    .ok()
                    .and_then(|v| v.into_iter().next())
                    .and_then(|r| r.ok())
                    .and_then(|s| s.value.ok())
                    .map(|v| match v {
                        SampleValue::F64(x) => x,
                        SampleValue::U32(x) => x as f64,
                        SampleValue::U64(x) => x as f64,
                        SampleValue::I64(x) => x as f64,
                    } / 1000.0);
                Some(GpuTelemetry {
                    index: dev.index,
                    energy_j: d
                        .total_energy_consumption()
                        .map(|mj| mj.saturating_sub(dev.start_mj) as f64 / 1000.0)
                        .unwrap_or(0.0),
                    power_instant_w: instant,
                    power_avg_w: d.power_usage().ok().map(|mw| mw as f64 / 1000.0),
                    temperature_c: d.temperature(TemperatureSensor::Gpu).ok(),
                    sm_clock_mhz: d.clock_info(Clock::SM).ok(),
                    mem_clock_mhz: d.clock_info(Clock::Memory).ok(),
                })
            })
            .collect()
    }
}

impl EnergyMeter for NvmlMeter {
    fn name(&self) -> &'static str {
        "nvml"
    }

    fn describe(&self) -> String {
        let names: Vec<String> = self
            .devices
            .iter()
            .map(|d| format!("GPU {} {} ({})", d.index, d.name, d.pci_bus_id))
            .collect();
        format!("NVML total energy counter of {}", names.join(" + "))
    }

    fn estimated(&self) -> bool {
        false
    }

    fn read(&mut self) -> Result<EnergyReading, MeterError> {
        let mut mj = 0u64;
        for dev in &self.devices {
            let d = self.nvml.device_by_index(dev.index).map_err(nvml_err)?;
            mj += d
                .total_energy_consumption()
                .map_err(nvml_err)?
                .saturating_sub(dev.start_mj);
        }
        Ok(EnergyReading {
            joules: mj as f64 / 1000.0,
            at: Instant::now(),
        })
    }

    fn default_interval(&self) -> Duration {
        Duration::from_millis(2)
    }
}
