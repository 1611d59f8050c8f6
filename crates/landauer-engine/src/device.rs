//! Choosing the device a model runs on, and describing it for records and meters.

use crate::{EngineError, Result};
use candle_core::Device;

/// What a run's device is, for the run record and for matching the energy meter to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `cpu` or `cuda:N`.
    pub label: String,
    /// The GPU's name, for CUDA.
    pub name: Option<String>,
    /// The GPU's PCI bus id (`0000:19:00.0`), for CUDA: NVML finds the same GPU by it.
    pub pci_bus_id: Option<String>,
    /// The GPU's UUID (`GPU-…`), for CUDA.
    pub uuid: Option<String>,
}

/// Whether this build can run on CUDA (`--features cuda`).
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// Parses `cpu`, `cuda` or `cuda:N` and opens the device.
pub fn open_device(spec: &str) -> Result<Device> {
    let s = spec.trim().to_ascii_lowercase();
    if s == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = match s.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| bad_device(spec))?,
        None => return Err(bad_device(spec)),
    };
    if !CUDA_BUILT {
        return Err(EngineError::Device(format!(
            "`{spec}`: this landauer was built without CUDA; build it with scripts/build-cuda.sh (cargo build --features cuda)"
        )));
    }
    Device::new_cuda(ordinal).map_err(|e| {
        EngineError::Device(format!(
            "cannot open CUDA device {ordinal}: {} (is the NVIDIA driver loaded? `nvidia-smi` lists the GPUs)",
            crate::gguf::one_line(&e.to_string())
        ))
    })
}

fn bad_device(spec: &str) -> EngineError {
    EngineError::Device(format!("`{spec}` is not a device; use cpu, cuda or cuda:N"))
}

/// Describes `device`: label, and for CUDA the GPU's name, PCI bus id and UUID.
pub fn device_info(device: &Device) -> DeviceInfo {
    match device {
        Device::Cpu => DeviceInfo {
            label: "cpu".into(),
            name: None,
            pci_bus_id: None,
            uuid: None,
        },
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => cuda_info(d),
        other => DeviceInfo {
            label: format!("{:?}", other.location()).to_lowercase(),
            name: None,
            pci_bus_id: None,
            uuid: None,
        },
    }
}

/// Bytes the device has free for new allocations: the GPU's free memory (CUDA), or the
/// system's available memory (`MemAvailable`, Linux) for the CPU. None where unknown.
pub fn free_memory(device: &Device) -> Option<u64> {
    match device {
        Device::Cpu => std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
                .map(|kb| kb * 1024)
        }),
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => {
            let stream = d.cuda_stream();
            stream.context().bind_to_thread().ok()?;
            candle_core::cuda_backend::cudarc::driver::result::mem_get_info()
                .ok()
                .map(|(free, _total)| free as u64)
        }
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

#[cfg(feature = "cuda")]
fn cuda_info(d: &candle_core::CudaDevice) -> DeviceInfo {
    use candle_core::cuda_backend::cudarc::driver::sys::CUdevice_attribute as A;
    let stream = d.cuda_stream();
    let ctx = stream.context();
    let attr = |a| ctx.attribute(a).ok();
    let pci_bus_id = match (
        attr(A::CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID),
        attr(A::CU_DEVICE_ATTRIBUTE_PCI_BUS_ID),
        attr(A::CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID),
    ) {
        (Some(dom), Some(bus), Some(dev)) => Some(format!("{dom:04x}:{bus:02x}:{dev:02x}.0")),
        _ => None,
    };
    let uuid = ctx.uuid().ok().map(|u| {
        let b: Vec<u8> = u.bytes.iter().map(|&x| x as u8).collect();
        let hex =
            |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02x}")).collect::<String>();
        format!(
            "GPU-{}-{}-{}-{}-{}",
            hex(0..4),
            hex(4..6),
            hex(6..8),
            hex(8..10),
            hex(10..16)
        )
    });
    DeviceInfo {
        label: format!("cuda:{}", ctx.ordinal()),
        name: ctx.name().ok(),
        pci_bus_id,
        uuid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices_and_refuses_nonsense() {
        assert!(matches!(open_device("cpu").unwrap(), Device::Cpu));
        assert!(matches!(open_device(" CPU ").unwrap(), Device::Cpu));
        for bad in ["gpu", "cuda:x", "cuda0", "metal", ""] {
            let e = open_device(bad).unwrap_err().to_string();
            assert!(e.contains("use cpu, cuda or cuda:N"), "{bad}: {e}");
        }
        if !CUDA_BUILT {
            let e = open_device("cuda:0").unwrap_err().to_string();
            assert!(
                e.contains("built without CUDA") && e.contains("build-cuda.sh"),
                "{e}"
            );
        }
        assert_eq!(device_info(&Device::Cpu).label, "cpu");
    }
}
