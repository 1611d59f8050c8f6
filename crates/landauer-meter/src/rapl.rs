use crate::{EnergyMeter, EnergyReading, MeterError};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where Linux exposes RAPL counters.
pub const DEFAULT_POWERCAP_ROOT: &str = "/sys/class/powercap";

/// One counted RAPL domain (a CPU package, or DRAM beside it).
#[derive(Debug, Clone)]
pub struct RaplDomain {
    /// The domain's own name (`package-0`, `dram`, ...).
    pub name: String,
    /// The `energy_uj` file.
    pub path: PathBuf,
    /// Counter range in µJ, after which it wraps to zero.
    pub max_range_uj: u64,
    last_uj: u64,
    accumulated_uj: u128,
}

/// The sum of every CPU package and DRAM domain under a powercap tree.
///
/// Nested domains (`core`, `uncore`) lie inside their package and are not counted again;
/// `dram` subdomains are outside the package counter and are added. `psys` (whole SoC)
/// would double-count the packages and is skipped. Wraparound is undone with
/// `max_energy_range_uj`.
pub struct RaplMeter {
    domains: Vec<RaplDomain>,
}

fn read_u64(path: &Path) -> Result<u64, MeterError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            MeterError::RaplPermission(path.display().to_string())
        } else {
            MeterError::Io {
                path: path.display().to_string(),
                source: e,
            }
        }
    })?;
    text.trim().parse().map_err(|_| MeterError::Parse {
        path: path.display().to_string(),
        contents: text.trim().to_string(),
    })
}

impl RaplMeter {
    /// Finds the counted domains under `root` (normally [`DEFAULT_POWERCAP_ROOT`]).
    pub fn open(root: impl AsRef<Path>) -> Result<Self, MeterError> {
        let root = root.as_ref();
        let absent = || MeterError::RaplAbsent(root.display().to_string());
        let entries = std::fs::read_dir(root).map_err(|_| absent())?;
        let mut dirs: Vec<(String, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .filter(|(n, _)| n.starts_with("intel-rapl:") || n.starts_with("amd-rapl:"))
            .collect();
        dirs.sort();
        let mut domains = Vec::new();
        for (zone, dir) in dirs {
            // intel-rapl:0 is a top-level zone; intel-rapl:0:1 a nested one.
            let nested = zone.matches(':').count() > 1;
            let name = std::fs::read_to_string(dir.join("name"))
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| zone.clone());
            let counted = if nested {
                name == "dram"
            } else {
                name != "psys"
            };
            if !counted {
                continue;
            }
            let path = dir.join("energy_uj");
            let last_uj = read_u64(&path)?;
            let max_range_uj = read_u64(&dir.join("max_energy_range_uj")).unwrap_or(u64::MAX);
            domains.push(RaplDomain {
                name,
                path,
                max_range_uj,
                last_uj,
                accumulated_uj: 0,
            });
        }
        if domains.is_empty() {
            return Err(absent());
        }
        Ok(Self { domains })
    }

    /// The domains being summed.
    pub fn domains(&self) -> &[RaplDomain] {
        &self.domains
    }
}

impl EnergyMeter for RaplMeter {
    fn name(&self) -> &'static str {
        "rapl"
    }

    fn describe(&self) -> String {
        let names: Vec<&str> = self.domains.iter().map(|d| d.name.as_str()).collect();
        format!(
            "RAPL energy counters ({}): whole-socket CPU energy, not just this process",
            names.join(" + ")
        )
    }

    fn estimated(&self) -> bool {
        false
    }

    fn parts(&self) -> Vec<crate::MeterPart> {
        if self.domains.len() < 2 {
            return Vec::new();
        }
        self.domains
            .iter()
            .map(|d| crate::MeterPart {
                name: d.name.clone(),
                joules: d.accumulated_uj as f64 * 1e-6,
            })
            .collect()
    }

    fn read(&mut self) -> Result<EnergyReading, MeterError> {
        let mut total_uj: u128 = 0;
        for d in &mut self.domains {
            let now = read_u64(&d.path)?;
            let delta = if now >= d.last_uj {
                now - d.last_uj
            } else {
                // The counter wrapped at max_energy_range_uj.
                d.max_range_uj.saturating_sub(d.last_uj) + now
            };
            d.accumulated_uj += delta as u128;
            d.last_uj = now;
            total_uj += d.accumulated_uj;
        }
        Ok(EnergyReading {
            joules: total_uj as f64 * 1e-6,
            at: Instant::now(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn zone(root: &Path, zone: &str, name: &str, energy: u64, max: u64) {
        let d = root.join(zone);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("name"), format!("{name}\n")).unwrap();
        fs::write(d.join("energy_uj"), format!("{energy}\n")).unwrap();
        fs::write(d.join("max_energy_range_uj"), format!("{max}\n")).unwrap();
    }

    fn set(root: &Path, zone: &str, energy: u64) {
        fs::write(root.join(zone).join("energy_uj"), format!("{energy}\n")).unwrap();
    }

    #[test]
    fn sums_packages_and_dram_not_core() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        zone(r, "intel-rapl:0", "package-0", 1_000, 1_000_000);
        zone(r, "intel-rapl:0:0", "core", 500, 1_000_000);
        zone(r, "intel-rapl:0:1", "dram", 100, 1_000_000);
        zone(r, "intel-rapl:1", "package-1", 2_000, 1_000_000);
        let mut m = RaplMeter::open(r).unwrap();
        let names: Vec<_> = m.domains().iter().map(|d| d.name.clone()).collect();
        assert_eq!(names, ["package-0", "dram", "package-1"]);
        assert_eq!(m.read().unwrap().joules, 0.0);
        set(r, "intel-rapl:0", 201_000); // +0.2 J
        set(r, "intel-rapl:0:0", 900_000); // core moves: must not count
        set(r, "intel-rapl:0:1", 50_100); // +0.05 J
        let j = m.read().unwrap().joules;
        // package-0: 1_000 -> 201_000 = 200_000 uJ; dram: 100 -> 50_100 = 50_000 uJ;
        // package-1: 2_000 -> 2_000 = 0.
        assert!((j - 0.25).abs() < 1e-12, "{j}");
        // The breakdown keeps each domain and adds up to the total.
        let parts = m.parts();
        let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["package-0", "dram", "package-1"]);
        for (p, want) in parts.iter().zip([0.2, 0.05, 0.0]) {
            assert!((p.joules - want).abs() < 1e-12, "{}: {}", p.name, p.joules);
        }
    }

    #[test]
    fn wraparound_is_undone() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        zone(r, "intel-rapl:0", "package-0", 999_000, 1_000_000);
        let mut m = RaplMeter::open(r).unwrap();
        set(r, "intel-rapl:0", 4_000); // wrapped: 1_000 to the top, 4_000 after
        let j = m.read().unwrap().joules;
        assert!((j - 0.005).abs() < 1e-12, "{j}");
        set(r, "intel-rapl:0", 10_000);
        let j = m.read().unwrap().joules;
        assert!((j - 0.011).abs() < 1e-12, "{j}");
    }

    #[test]
    fn absent_tree_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let err = RaplMeter::open(tmp.path().join("nope")).err().unwrap();
        assert!(matches!(err, MeterError::RaplAbsent(_)));
        assert!(err.to_string().contains("--meter estimate"));
    }

    #[test]
    fn permission_denied_names_file_and_fix() {
        // Root reads any file regardless of mode; emulate denial with a directory in the
        // file's place only when not root.
        if unsafe { libc::geteuid() } == 0 {
            let err = MeterError::RaplPermission("/x/energy_uj".into());
            assert!(err.to_string().contains("/x/energy_uj"));
            assert!(err.to_string().contains("chmod"));
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        zone(r, "intel-rapl:0", "package-0", 1, 10);
        let f = r.join("intel-rapl:0/energy_uj");
        fs::set_permissions(&f, fs::Permissions::from_mode(0o000)).unwrap();
        let err = RaplMeter::open(r).err().unwrap();
        assert!(err.to_string().contains("energy_uj"), "{err}");
    }
}
