use crate::{EnergyMeter, EnergyReading, MeterError};
use std::time::Instant;

/// Default assumed power of one fully busy x86 core, package share included, in watts.
///
/// A rough middle of current parts: a 64-core server CPU at 280 W spends ~4.4 W per core,
/// a 16-core desktop CPU at 170 W ~10 W, a laptop core under turbo 10-15 W. Override it with
/// `--cpu-watts` for your machine; the figure is always labeled estimated.
pub const DEFAULT_CPU_WATTS_PER_CORE: f64 = 10.0;

/// CPU time (user + system, all threads) this process has used, in seconds.
pub fn process_cpu_seconds() -> Result<f64, MeterError> {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// CPU time the calling thread has used, in seconds.
pub fn thread_cpu_seconds() -> Result<f64, MeterError> {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn cpu_clock(clock: libc::clockid_t) -> Result<f64, MeterError> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return Err(MeterError::CpuTime(std::io::Error::last_os_error()));
    }
    Ok(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
}

/// An estimate, not a measurement: this process's CPU time × watts per busy core.
///
/// It ignores idle and uncore power, DRAM, and everything other processes do, and it
/// assumes every busy core draws the same power. Use it to compare runs on one machine,
/// never as a physical figure.
pub struct CpuTimeEstimate {
    watts_per_core: f64,
    cpu_at_open: f64,
}

impl CpuTimeEstimate {
    pub fn new(watts_per_core: f64) -> Self {
        let cpu_at_open = process_cpu_seconds().unwrap_or(0.0);
        Self {
            watts_per_core,
            cpu_at_open,
        }
    }

    pub fn watts_per_core(&self) -> f64 {
        self.watts_per_core
    }
}

impl EnergyMeter for CpuTimeEstimate {
    fn name(&self) -> &'static str {
        "cpu-time-estimate"
    }

    fn describe(&self) -> String {
        format!(
            "ESTIMATED: process CPU time x {} W per busy core (not a measurement; set --cpu-watts)",
            self.watts_per_core
        )
    }

    fn estimated(&self) -> bool {
        true
    }

    fn read(&mut self) -> Result<EnergyReading, MeterError> {
        let cpu = process_cpu_seconds()?;
        Ok(EnergyReading {
            joules: (cpu - self.cpu_at_open).max(0.0) * self.watts_per_core,
            at: Instant::now(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_tracks_cpu_time() {
        let mut m = CpuTimeEstimate::new(7.0);
        let a = m.read().unwrap();
        let c0 = process_cpu_seconds().unwrap();
        // Burn ~50 ms of CPU.
        let t = Instant::now();
        let mut x = 1u64;
        while t.elapsed().as_millis() < 50 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let c1 = process_cpu_seconds().unwrap();
        let b = m.read().unwrap();
        let burned = c1 - c0;
        assert!(burned > 0.02, "burned only {burned}s of CPU");
        let joules = b.joules - a.joules;
        // Energy is 7 W x the CPU time between the reads (which brackets the burn).
        assert!(joules >= 7.0 * burned * 0.99, "{joules} J for {burned} s");
        assert!(joules <= 7.0 * (burned + 0.05), "{joules} J for {burned} s");
        assert!(b.at > a.at);
    }
}
