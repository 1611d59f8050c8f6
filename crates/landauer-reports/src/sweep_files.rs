//! A sweep's files: `sweep.json` (the whole [`SweepFile`]), `sweep.csv` (one row per batch
//! size) and `sweep.svg` (the curves). Each exporter is a pure function to a string; [`write()`]
//! writes all three.

use anyhow::Context;
use landauer_trace::SweepFile;
use std::path::Path;

/// sweep.json: the file pretty-printed.
pub fn json(file: &SweepFile) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(file)?)
}

/// sweep.csv: a header and one line per batch size, a column for every row field.
pub fn csv(file: &SweepFile) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in &file.rows {
        w.serialize(r)?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

/// Writes sweep.json, sweep.csv and sweep.svg into `dir` (a sweep calls this after every
/// batch size, so that an interrupted sweep keeps what it measured).
pub fn write(dir: &Path, file: &SweepFile) -> anyhow::Result<()> {
    let out = |name: &str| dir.join(name);
    std::fs::write(out("sweep.json"), json(file)?)
        .with_context(|| format!("cannot write {}", out("sweep.json").display()))?;
    std::fs::write(out("sweep.csv"), csv(file)?)
        .with_context(|| format!("cannot write {}", out("sweep.csv").display()))?;
    crate::charts::write_sweep_svg(&out("sweep.svg"), &file.header.title(), &file.rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> SweepFile {
        let rows: Vec<serde_json::Value> = [1, 4]
            .map(|b| {
                serde_json::json!({
                    "batch": b, "runs": 1, "prompt_tokens": 4, "generated_tokens": 8,
                    "prefill_s": 0.1, "prefill_tokens_per_s": 40.0, "prefill_energy_j": null,
                    "decode_window_s": 1.0, "decode_tokens_per_s": 7.0 * b as f64,
                    "mean_power_w": 3.5, "joules_per_token": 0.5,
                    "active_joules_per_token": null, "tokens_per_wh": 7200.0,
                    "mean_entropy_bits": 2.0, "bits_per_joule": 4.0, "landauer_gap": 1e20,
                    "steady": true
                })
            })
            .into();
        serde_json::from_value(serde_json::json!({"model": "m", "device": "cpu", "rows": rows}))
            .unwrap()
    }

    #[test]
    fn csv_has_a_header_and_a_line_per_batch_size() {
        let text = csv(&file()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("batch,runs,prompt_tokens,"));
        assert!(lines[2].starts_with("4,1,4,8,"));
        // Missing figures are empty cells, not "null".
        assert!(lines[1].contains(",,"));
    }

    #[test]
    fn the_three_files_are_written_and_json_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &file()).unwrap();
        let back: SweepFile =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("sweep.json")).unwrap())
                .unwrap();
        assert_eq!(back.rows.len(), 2);
        let svg = std::fs::read_to_string(dir.path().join("sweep.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("m on cpu"));
        let err = write(&dir.path().join("missing"), &file()).unwrap_err();
        assert!(format!("{err:#}").contains("cannot write"));
    }
}
