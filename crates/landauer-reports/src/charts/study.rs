//! The precision and size study: the quality each cell keeps against the energy it costs
//! (one line per model across its quantizations: the frontier), tokens per watt-hour against
//! bits per weight, and against the number of parameters.

use super::legend::strip::{draw_legend, legend_height, legend_rows, Key};
use super::text::clean;
use landauer_trace::{StudyCell, StudyFile};
use plotters::prelude::*;
use std::path::Path;

const PALETTE: [RGBColor; 6] = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];

/// One model at one batch size: its color, whether it is the larger batch (thin), and its
/// points.
type Series = (RGBColor, bool, Vec<(f64, f64)>);

/// The three panels (1500 × 520 px) as an SVG document.
pub fn study_svg_string(file: &StudyFile) -> anyhow::Result<String> {
    let mut svg = String::new();
    draw(&mut svg, (1500, 520), file).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(svg)
}

/// Writes study.svg.
pub fn write_study_svg(path: &Path, file: &StudyFile) -> anyhow::Result<()> {
    let svg = study_svg_string(file)
        .map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))?;
    std::fs::write(path, svg).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// The models in order of first appearance.
fn models(cells: &[StudyCell]) -> Vec<&str> {
    let mut v: Vec<&str> = Vec::new();
    for c in cells {
        if !v.contains(&c.model.as_str()) {
            v.push(&c.model);
        }
    }
    v
}

/// A range that holds `values` with a margin (log: a factor), or `fallback`.
fn span(values: impl Iterator<Item = f64>, log: bool, fallback: (f64, f64)) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && (!log || *v > 0.0))
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    if lo > hi {
        return fallback;
    }
    match log {
        true => (lo / 1.5, hi * 1.5),
        false => {
            let pad = ((hi - lo) * 0.1).max(hi.abs() * 0.02).max(1e-3);
            (lo - pad, hi + pad)
        }
    }
}

fn draw(
    svg: &mut String,
    size: (u32, u32),
    file: &StudyFile,
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    let root = SVGBackend::with_string(svg, size).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(&clean(&file.title()), ("sans-serif", 22))?;
    let names = models(&file.cells);
    let smallest = file.cells.iter().map(|c| c.batch).min().unwrap_or(1);
    let largest = file.cells.iter().map(|c| c.batch).max().unwrap_or(1);
    let mut keys: Vec<(Key, String)> = names
        .iter()
        .enumerate()
        .map(|(i, m)| (Key::Line(PALETTE[i % PALETTE.len()]), m.to_string()))
        .collect();
    if largest != smallest {
        keys.push((
            Key::Line(RGBColor(150, 150, 150)),
            format!("thick: batch {smallest}; thin: batch {largest}"),
        ));
    }
    let key_refs: Vec<(Key, &str)> = keys.iter().map(|(k, s)| (*k, s.as_str())).collect();
    let (width, height) = root.dim_in_pixel();
    let legend = legend_rows(&key_refs, width as i32 - 24);
    let (panels, strip) = root.split_vertically(height - legend_height(legend.len()));
    let parts = panels.split_evenly((1, 3));
    let at = |b: usize| file.cells.iter().filter(move |c| c.batch == b);

    // Left: quality (cross-entropy on the reference) against J/token at the smallest batch.
    let (x0, x1) = span(
        at(smallest).filter_map(|c| c.joules_per_token),
        true,
        (0.01, 1.0),
    );
    let (y0, y1) = span(
        at(smallest).map(|c| c.cross_entropy_bits),
        false,
        (0.0, 10.0),
    );
    let mut chart = ChartBuilder::on(&parts[0])
        .caption(
            format!("quality against energy (batch {smallest})"),
            ("sans-serif", 17),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((x0..x1).log_scale(), y0..y1)?;
    chart
        .configure_mesh()
        .x_labels(4)
        .x_desc("J/token (log)")
        .y_desc("cross-entropy, bits/token")
        .x_label_formatter(&|v| format!("{v:.3}"))
        .y_label_formatter(&|v| format!("{v:.2}"))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .max_light_lines(1)
        .draw()?;
    for (i, m) in names.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let mut pts: Vec<(f64, f64, String)> = at(smallest)
            .filter(|c| c.model == *m)
            .filter_map(|c| {
                Some((
                    c.joules_per_token?,
                    c.cross_entropy_bits,
                    c.quantize.clone().unwrap_or_else(|| c.quantization.clone()),
                ))
            })
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart.draw_series(LineSeries::new(
            pts.iter().map(|p| (p.0, p.1)),
            color.stroke_width(2),
        ))?;
        chart.draw_series(pts.iter().map(|p| {
            EmptyElement::at((p.0, p.1))
                + Circle::new((0, 0), 4, color.filled())
                + Text::new(p.2.clone(), (6, -14), ("sans-serif", 13))
        }))?;
    }

    // Middle and right: tokens/Wh against bits per weight, and against parameters.
    for (panel, by_params) in [(&parts[1], false), (&parts[2], true)] {
        let x = |c: &StudyCell| match by_params {
            true => c.parameters as f64,
            false => c.bits_per_weight,
        };
        let (x0, x1) = span(file.cells.iter().map(x), by_params, (1.0, 32.0));
        let (y0, y1) = span(
            file.cells.iter().filter_map(|c| c.tokens_per_wh),
            true,
            (1.0, 1e5),
        );
        let caption = match by_params {
            true => "tokens per Wh against parameters",
            false => "tokens per Wh against bits per weight",
        };
        let mut chart = ChartBuilder::on(panel);
        chart
            .caption(caption, ("sans-serif", 17))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60);
        let desc = if by_params {
            "parameters (log)"
        } else {
            "bits per weight"
        };
        let batches = [smallest, largest];
        let mut series: Vec<Series> = Vec::new();
        for (i, m) in names.iter().enumerate() {
            for (k, &b) in batches.iter().enumerate() {
                if k == 1 && largest == smallest {
                    continue;
                }
                let mut pts: Vec<(f64, f64)> = at(b)
                    .filter(|c| c.model == *m)
                    .filter_map(|c| Some((x(c), c.tokens_per_wh?)))
                    .collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                series.push((PALETTE[i % PALETTE.len()], k == 1, pts));
            }
        }
        if by_params {
            let mut c = chart.build_cartesian_2d((x0..x1).log_scale(), y0..y1)?;
            c.configure_mesh()
                .x_labels(4)
                .x_desc(desc)
                .y_desc("tokens/Wh")
                .x_label_formatter(&|v| format!("{:.0}M", v / 1e6))
                .y_labels(6)
                .y_label_formatter(&|v| format!("{v:.0}"))
                .label_style(("sans-serif", 14))
                .axis_desc_style(("sans-serif", 15))
                .max_light_lines(1)
                .draw()?;
            // Points only: a model's quantizations share its parameter count.
            for (color, thin, pts) in series {
                let r = if thin { 3 } else { 5 };
                c.draw_series(pts.iter().map(|&p| Circle::new(p, r, color.filled())))?;
            }
        } else {
            let mut c = chart.build_cartesian_2d(x0..x1, y0..y1)?;
            c.configure_mesh()
                .x_desc(desc)
                .y_desc("tokens/Wh")
                .x_label_formatter(&|v| format!("{v:.1}"))
                .y_labels(6)
                .y_label_formatter(&|v| format!("{v:.0}"))
                .label_style(("sans-serif", 14))
                .axis_desc_style(("sans-serif", 15))
                .max_light_lines(1)
                .draw()?;
            for (color, thin, pts) in series {
                let style = color.stroke_width(if thin { 1 } else { 2 });
                c.draw_series(LineSeries::new(pts.clone(), style))?;
                c.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
            }
        }
    }
    draw_legend(&strip, &key_refs, &legend)?;
    root.present()?;
    Ok(())
}
