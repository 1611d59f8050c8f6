//! Reading traces and sweep files back: the input of `gap`, `report` and `sweep --replot`.

use crate::{Record, RunRecord, SummaryRecord, SweepFile, SweepRow, TokenRecord};
use std::path::{Path, PathBuf};

/// A trace, read back.
#[derive(Debug, Clone)]
pub struct Trace {
    pub path: PathBuf,
    pub run: RunRecord,
    pub tokens: Vec<TokenRecord>,
    /// None for an interrupted run (no summary line).
    pub summary: Option<SummaryRecord>,
}

/// A sweep, read back.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub path: PathBuf,
    pub file: SweepFile,
}

impl Sweep {
    /// The measured batch sizes.
    pub fn rows(&self) -> &[SweepRow] {
        &self.file.rows
    }
    /// The sweep figure's title, as `sweep` wrote it.
    pub fn title(&self) -> String {
        self.file.header.title()
    }
}

/// A study, read back.
#[derive(Debug, Clone)]
pub struct Study {
    pub path: PathBuf,
    pub file: crate::StudyFile,
}

/// A trace, a sweep or a study.
#[derive(Debug, Clone)]
pub enum Input {
    Trace(Box<Trace>),
    Sweep(Box<Sweep>),
    Study(Box<Study>),
}

/// Why a file could not be read as a trace or a sweep, in one line that says what it
/// should have been.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError(pub String);

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReadError {}

/// Reads a trace or a sweep; a directory means its sweep.json. A torn last line (an
/// interrupted writer) is dropped; everything before it is kept.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let err = landauer_trace::read_input(&dir.path().join("missing.jsonl")).unwrap_err();
/// assert!(err.to_string().contains("give a trace (generate --trace FILE.jsonl)"));
/// ```
pub fn read_input(path: &Path) -> Result<Input, ReadError> {
    let path = if path.is_dir() && path.join("study.json").is_file() {
        path.join("study.json")
    } else if path.is_dir() {
        path.join("sweep.json")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ReadError(format!(
            "cannot read {}; give a trace (generate --trace FILE.jsonl) or a sweep (sweep --out DIR): {e}",
            path.display()
        ))
    })?;
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(ReadError(format!(
            "{} is empty; give a trace or a sweep.json",
            path.display()
        )));
    }
    // A sweep.json is one pretty-printed object with rows; a trace is one record a line.
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
        if v.get("cells").is_some() {
            let file: crate::StudyFile = serde_json::from_value(v).map_err(|e| {
                ReadError(format!("{} is a malformed study.json: {e}", path.display()))
            })?;
            if file.cells.is_empty() {
                return Err(ReadError(format!("{} has no cells", path.display())));
            }
            return Ok(Input::Study(Box::new(Study { path, file })));
        }
        if let Some(rows) = v.get("rows") {
            let rows: Vec<SweepRow> = serde_json::from_value(rows.clone()).map_err(|e| {
                ReadError(format!("{} has malformed sweep rows: {e}", path.display()))
            })?;
            if rows.is_empty() {
                return Err(ReadError(format!(
                    "{} has no measured batch sizes",
                    path.display()
                )));
            }
            let mut file: SweepFile = serde_json::from_value(v).map_err(|e| {
                ReadError(format!(
                    "{} has a malformed sweep header: {e}",
                    path.display()
                ))
            })?;
            file.rows = rows;
            return Ok(Input::Sweep(Box::new(Sweep { path, file })));
        }
    }
    let mut run = None;
    let mut tokens = Vec::new();
    let mut summary = None;
    let lines = text.lines().count();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let rec: Record = match serde_json::from_str(line) {
            Ok(r) => r,
            // An interrupted writer can leave a torn last line: keep what came before.
            Err(_) if i + 1 == lines && run.is_some() => break,
            Err(e) => return Err(ReadError(format!(
                "{} line {} is not a landauer trace record ({e}); give a trace written by generate --trace, or a sweep.json",
                path.display(),
                i + 1
            ))),
        };
        match rec {
            Record::Run(r) => run = Some(*r),
            Record::Token(t) => tokens.push(*t),
            Record::Summary(s) => summary = Some(*s),
        }
    }
    let run = run.ok_or_else(|| {
        ReadError(format!(
            "{} has no run record (its first line); is it a landauer trace?",
            path.display()
        ))
    })?;
    Ok(Input::Trace(Box::new(Trace {
        path,
        run,
        tokens,
        summary,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SweepHeader, SweepRuns};

    fn row(batch: usize) -> SweepRow {
        serde_json::from_value(serde_json::json!({
            "batch": batch, "runs": 1, "prompt_tokens": 4, "generated_tokens": 8,
            "prefill_s": 0.1, "prefill_tokens_per_s": 40.0, "prefill_energy_j": null,
            "decode_window_s": 1.0, "decode_tokens_per_s": 7.0, "mean_power_w": 3.5,
            "joules_per_token": 0.5, "active_joules_per_token": null, "tokens_per_wh": 7200.0,
            "mean_entropy_bits": 2.0, "bits_per_joule": 4.0, "landauer_gap": 1e20, "steady": false
        }))
        .unwrap()
    }

    #[test]
    fn a_sweep_file_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = SweepFile {
            landauer_version: "0.1.0".into(),
            header: SweepHeader {
                model: "m".into(),
                device: "cpu".into(),
                estimated: true,
                kelvin: 310.0,
                ..Default::default()
            },
            method: "how".into(),
            caveats: vec!["c".into()],
            rows: vec![row(1), row(4)],
            runs: vec![SweepRuns {
                batch: 1,
                decode_tokens_per_s: vec![7.0],
                started_s: vec![0.0],
            }],
        };
        let text = serde_json::to_string_pretty(&file).unwrap();
        // The header's fields sit at the top level, after the version, as sweep wrote them.
        assert!(text.find("\"landauer_version\"").unwrap() < text.find("\"model\"").unwrap());
        assert!(text.find("\"kelvin\"").unwrap() < text.find("\"method\"").unwrap());
        std::fs::write(dir.path().join("sweep.json"), &text).unwrap();
        let Input::Sweep(s) = read_input(dir.path()).unwrap() else {
            panic!("read a sweep as a trace")
        };
        assert_eq!(serde_json::to_string_pretty(&s.file).unwrap(), text);
        assert_eq!(s.title(), "m on cpu (energy ESTIMATED)");
        assert_eq!(s.rows().len(), 2);
    }

    #[test]
    fn an_old_sweep_without_header_fields_reads_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let old = serde_json::json!({"model": "m", "device": "cpu", "rows": [row(2)]});
        std::fs::write(dir.path().join("sweep.json"), old.to_string()).unwrap();
        let Input::Sweep(s) = read_input(&dir.path().join("sweep.json")).unwrap() else {
            panic!("read a sweep as a trace")
        };
        assert_eq!(s.file.header.kelvin, landauer_physics::DEFAULT_KELVIN);
        assert!(s.file.caveats.is_empty() && s.file.runs.is_empty());
    }

    #[test]
    fn bad_files_say_what_they_should_have_been() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        std::fs::write(&p, "  \n").unwrap();
        assert!(read_input(&p).unwrap_err().0.contains("is empty"));
        std::fs::write(&p, r#"{"rows": []}"#).unwrap();
        assert!(read_input(&p)
            .unwrap_err()
            .0
            .contains("no measured batch sizes"));
        std::fs::write(&p, r#"{"rows": [{"batch": "x"}]}"#).unwrap();
        assert!(read_input(&p)
            .unwrap_err()
            .0
            .contains("malformed sweep rows"));
        std::fs::write(&p, "not json\n").unwrap();
        assert!(read_input(&p)
            .unwrap_err()
            .0
            .contains("line 1 is not a landauer trace record"));
    }
}
