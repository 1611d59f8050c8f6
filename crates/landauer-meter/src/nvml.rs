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
    /// `GPU i NAME (PCI)`, made once: the sampler asks for the parts at every read.
    label: String,
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
    /// Each device's millijoules since opening, at the last read.
    last_mj: Vec<u64>,
}

/// Parses a PCI bus id (`domain:bus:device.function`, hex; NVML writes an 8-digit domain,
/// CUDA a 4-digit one) into (domain, bus, device), so that the two spellings compare equal.
pub fn parse_pci_bus_id(s: &str) -> Option<(u32, u32, u32)> {
    let s = s.trim();
    let (rest, _function) = s.rsplit_once('.')?;
    let mut it = rest.split(':');
    let (a, b, c) = (it.next()?, it.next()?, it.next());
    let hex = |x: &str| u32::from_str_radix(x, 16).ok();
    match c {
        Some(c) if it.next().is_none() => Some((hex(a)?, hex(b)?, hex(c)?)),
        None => Some((0, hex(a)?, hex(b)?)),
        _ => None,
    }
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
                        Err(_) => match parse_pci_bus_id(s) {
                            // Compare numerically: CUDA and NVML pad the domain differently.
                            Some(want) => {
                                let n = nvml.device_count().map_err(nvml_err)?;
                                let found = (0..n).find(|&i| {
                                    nvml.device_by_index(i)
                                        .and_then(|d| d.pci_info())
                                        .is_ok_and(|p| (p.domain, p.bus, p.device) == want)
                                });
                                match found {
                                    Some(i) => return Ok(i),
                                    None => {
                                        return Err(MeterError::Nvml(format!(
                                            "no GPU at PCI bus id `{s}` among {n}; `landauer meters` lists them"
                                        )))
                                    }
                                }
                            }
                            None => {
                                return Err(MeterError::Nvml(format!(
                                    "`{s}` is not a GPU index, UUID (GPU-...) or PCI bus id (0000:19:00.0)"
                                )))
                            }
                        },
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
            let name = d.name().unwrap_or_default();
            let pci_bus_id = d.pci_info().map(|p| p.bus_id).unwrap_or_default();
            devices.push(NvmlDevice {
                index,
                label: format!("GPU {index} {name} ({pci_bus_id})"),
                name,
                uuid: d.uuid().unwrap_or_default(),
                pci_bus_id,
                start_mj,
            });
        }
        let last_mj = vec![0; devices.len()];
        Ok(Self {
            nvml,
            devices,
            last_mj,
        })
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
        let names: Vec<&str> = self.devices.iter().map(|d| d.label.as_str()).collect();
        format!("NVML total energy counter of {}", names.join(" + "))
    }

    fn estimated(&self) -> bool {
        false
    }

    fn read(&mut self) -> Result<EnergyReading, MeterError> {
        let mut mj = 0u64;
        for (i, dev) in self.devices.iter().enumerate() {
            let d = self.nvml.device_by_index(dev.index).map_err(nvml_err)?;
            let now = d
                .total_energy_consumption()
                .map_err(nvml_err)?
                .saturating_sub(dev.start_mj);
            self.last_mj[i] = now;
            mj += now;
        }
        Ok(EnergyReading {
            joules: mj as f64 / 1000.0,
            at: Instant::now(),
        })
    }

    fn parts(&self) -> Vec<crate::MeterPart> {
        self.devices
            .iter()
            .zip(&self.last_mj)
            .map(|(d, &mj)| crate::MeterPart {
                name: d.label.clone(),
                joules: mj as f64 / 1000.0,
            })
            .collect()
    }

    fn telemetry(&mut self) -> Option<crate::Telemetry> {
        let all = NvmlMeter::telemetry(self);
        if all.is_empty() {
            return None;
        }
        Some(combine_telemetry(&all))
    }

    fn default_interval(&self) -> Duration {
        Duration::from_millis(2)
    }
}

/// Several GPUs as one: the hottest temperature, mean clocks, summed power (None unless
/// every GPU reports it).
pub(crate) fn combine_telemetry(all: &[GpuTelemetry]) -> crate::Telemetry {
    let n = all.len() as f64;
    let mean = |f: &dyn Fn(&GpuTelemetry) -> Option<u32>| {
        all.iter()
            .map(|g| f(g).map(f64::from))
            .sum::<Option<f64>>()
            .map(|s| s / n)
    };
    crate::Telemetry {
        temperature_c: all
            .iter()
            .filter_map(|g| g.temperature_c)
            .max()
            .map(f64::from),
        sm_clock_mhz: mean(&|g| g.sm_clock_mhz),
        mem_clock_mhz: mean(&|g| g.mem_clock_mhz),
        power_instant_w: all.iter().map(|g| g.power_instant_w).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_bus_ids_compare_across_spellings() {
        let nvml = parse_pci_bus_id("00000000:19:00.0").unwrap();
        let cuda = parse_pci_bus_id("0000:19:00.0").unwrap();
        assert_eq!(nvml, cuda);
        assert_eq!(nvml, (0, 0x19, 0));
        assert_eq!(parse_pci_bus_id("19:00.0"), Some((0, 0x19, 0)));
        assert_ne!(parse_pci_bus_id("0000:1a:00.0"), Some(nvml));
        assert_eq!(parse_pci_bus_id("GPU-1234"), None);
        assert_eq!(parse_pci_bus_id("0000:zz:00.0"), None);
    }

    #[test]
    fn several_gpus_combine_hottest_mean_and_sum() {
        let g = |t, sm, p| GpuTelemetry {
            temperature_c: Some(t),
            sm_clock_mhz: Some(sm),
            mem_clock_mhz: Some(2619),
            power_instant_w: p,
            ..Default::default()
        };
        let c = combine_telemetry(&[g(40, 1000, Some(100.0)), g(55, 2000, Some(250.0))]);
        assert_eq!(c.temperature_c, Some(55.0));
        assert_eq!(c.sm_clock_mhz, Some(1500.0));
        assert_eq!(c.mem_clock_mhz, Some(2619.0));
        assert_eq!(c.power_instant_w, Some(350.0));
        let c = combine_telemetry(&[g(40, 1000, Some(100.0)), g(41, 1000, None)]);
        assert_eq!(
            c.power_instant_w, None,
            "a sum over part of the GPUs would mislead"
        );
    }
}
