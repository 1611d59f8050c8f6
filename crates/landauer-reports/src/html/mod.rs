//! The HTML report (`landauer report`): one self-contained file for a trace or a sweep.
//!
//! Everything is inline: the figures are SVG drawn with plotters ([`crate::charts`]), the
//! token tooltips are CSS only, and there is no script and no network request, so the file
//! opens from disk, offline, and prints.

mod ladder;
mod page;
mod study;
mod sweep;
mod trace;

use crate::charts;
use crate::ladder::{gap_report, FootprintOverrides, HardwareChoice};
use landauer_trace::Input;
use page::Figures;
use std::path::{Path, PathBuf};

/// A report: the page and the figures in it.
#[derive(Debug, Clone)]
pub struct Report {
    /// The HTML page, self-contained.
    pub html: String,
    /// The page's figures as (name, SVG document), in the page's order: what
    /// [`write_png`] rasterizes.
    pub figures: Vec<(&'static str, String)>,
}

/// Builds the report's HTML and its figures (name, SVG) from an input: its ladder on the
/// hardware `hw` chooses, money and carbon at the grid `fp` overrides, and (for a trace)
/// the Galton board's first `galton_steps` tokens.
pub fn build(
    input: &Input,
    hw: &HardwareChoice,
    fp: &FootprintOverrides,
    galton_steps: usize,
) -> anyhow::Result<Report> {
    let g = gap_report(input, hw, fp)?;
    let mut figs = Figures(Vec::new());
    let html = match input {
        Input::Trace(t) => {
            if t.tokens.is_empty() {
                anyhow::bail!(
                    "{} has no token records: nothing to report",
                    t.path.display()
                );
            }
            trace::trace_report(t, &g, galton_steps, &mut figs)?
        }
        Input::Sweep(s) => sweep::sweep_report(s, &g, &mut figs)?,
        Input::Study(s) => study::study_report(s, &g, &mut figs)?,
    };
    Ok(Report {
        html,
        figures: figs.0,
    })
}

/// `REPORT-name.png` beside the report.
pub fn png_path(output: &Path, name: &str) -> PathBuf {
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    output.with_file_name(format!("{stem}-{name}.png"))
}

/// Writes the figure `name` as a PNG beside the report at `output` ([`png_path`]) and
/// returns the PNG's path.
pub fn write_png(output: &Path, name: &str, svg: &str) -> anyhow::Result<PathBuf> {
    let path = png_path(output, name);
    charts::svg_to_png(svg, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_names_sit_beside_the_report() {
        assert_eq!(
            png_path(Path::new("/tmp/r/run.html"), "ladder"),
            PathBuf::from("/tmp/r/run-ladder.png")
        );
    }
}
