//! The batch sweep: tokens per watt-hour and decode speed against batch size, beside
//! published reference figures (the figure of `landauer sweep`, and of the sweep report).

use super::canvas::no_data;
use super::legend::strip::{draw_legend, legend_height, legend_rows, Key};
use super::style::WIDTH;
use super::text::clean;
use anyhow::Result;
use landauer_trace::SweepRow;
use plotters::prelude::*;
use std::path::Path;

/// The founding figures (../shared/reference/energy-anchors.md).
const DESK_RTX3090: f64 = 160.0;
const DATACENTER_A100: f64 = 1500.0;

/// ML.ENERGY leaderboard v3: Llama-3.1-8B bf16 on one H100 with vLLM, (batch, J/token).
const MLENERGY_H100_8B: &[(f64, f64)] =
    &[(8.0, 0.455), (64.0, 0.119), (256.0, 0.077), (512.0, 0.070)];

/// tokens/Wh and decode tokens/s against batch size (log2 axes), with reference lines,
/// written to `path` (1200 x 520 px): `landauer sweep`'s sweep.svg, and `--replot`'s.
pub fn write_sweep_svg(path: &Path, title: &str, rows: &[SweepRow]) -> anyhow::Result<()> {
    let svg = sweep_svg_string(title, rows, (1200, 520))
        .map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))?;
    std::fs::write(path, svg).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// tokens/Wh and decode tokens/s against batch size, with the reference points (the figure of
/// `landauer sweep`, at the report's width).
pub fn sweep_curves_svg(title: &str, rows: &[SweepRow]) -> Result<String> {
    if rows.is_empty() {
        return no_data(title, "no data: the sweep has no rows");
    }
    sweep_svg_string(&clean(title), rows, (WIDTH, 500))
}

/// tokens/Wh and decode tokens/s against batch size (log2 axes), with reference lines, as an
/// SVG document in a String, `size` pixels (width, height).
pub fn sweep_svg_string(
    title: &str,
    rows: &[SweepRow],
    size: (u32, u32),
) -> anyhow::Result<String> {
    let mut svg = String::new();
    draw_sweep(&mut svg, size, title, rows).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(svg)
}

fn draw_sweep(
    svg: &mut String,
    size: (u32, u32),
    title: &str,
    rows: &[SweepRow],
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    let root = SVGBackend::with_string(svg, size).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 22))?;
    let references = [
        (DESK_RTX3090, RED, "desk RTX 3090: ~160 tokens/Wh"),
        (DATACENTER_A100, MAGENTA, "A100 cluster: ~1,500 tokens/Wh"),
    ];
    let mut keys: Vec<(Key, &str)> = references
        .iter()
        .map(|&(_, color, label)| (Key::Line(color), label))
        .collect();
    keys.push((
        Key::Triangle(GREEN),
        "ML.ENERGY v3: Llama-3.1-8B bf16, 1xH100, vLLM",
    ));
    keys.push((Key::Line(BLUE), "this sweep"));
    // The legend goes in a strip below both panels, where it covers no data (the reference
    // lines cross the whole panel, and the legend is nearly as wide as one).
    let (width, height) = root.dim_in_pixel();
    let legend = legend_rows(&keys, width as i32 - 24);
    let (panels, strip) = root.split_vertically(height - legend_height(legend.len()));
    let (left, right) = panels.split_horizontally(size.0 / 2);

    // The x axis is log2(batch), labelled with the batch sizes themselves.
    let published: Vec<(f64, f64)> = MLENERGY_H100_8B
        .iter()
        .map(|&(b, j)| (b.log2(), 3600.0 / j))
        .collect();
    let ours_wh: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.tokens_per_wh.map(|t| ((r.batch.max(1) as f64).log2(), t)))
        .filter(|p| p.1.is_finite() && p.1 > 0.0)
        .collect();
    let ours_tps: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| {
            (
                (r.batch.max(1) as f64).log2(),
                r.decode_tokens_per_s.max(1e-3),
            )
        })
        .filter(|p| p.1.is_finite())
        .collect();
    let max_batch = rows.iter().map(|r| r.batch).max().unwrap_or(1) as f64;
    let x = -0.4..(max_batch.max(512.0).log2() + 0.4);

    // Left: tokens per watt-hour.
    let ys = ours_wh
        .iter()
        .chain(&published)
        .map(|p| p.1)
        .chain([DESK_RTX3090, DATACENTER_A100]);
    let (lo, hi) = ys.fold((f64::MAX, 0f64), |(a, b), y| (a.min(y), b.max(y)));
    let mut chart = batch_chart(
        &left,
        "tokens per watt-hour (decode)",
        x.clone(),
        lo / 2.0..hi * 2.0,
        "tokens/Wh",
    )?;
    for (y, color, _) in references {
        chart.draw_series(LineSeries::new(
            vec![(x.start, y), (x.end, y)],
            color.stroke_width(1),
        ))?;
    }
    chart.draw_series(
        published
            .iter()
            .map(|&p| TriangleMarker::new(p, 6, GREEN.filled())),
    )?;
    chart.draw_series(LineSeries::new(ours_wh.clone(), BLUE.stroke_width(2)))?;
    chart.draw_series(ours_wh.iter().map(|&p| Circle::new(p, 4, BLUE.filled())))?;

    // Right: decode throughput.
    let (lo, hi) = match ours_tps
        .iter()
        .fold((f64::MAX, 0f64), |(a, b), p| (a.min(p.1), b.max(p.1)))
    {
        (lo, hi) if lo <= hi => (lo, hi),
        _ => (1.0, 10.0),
    };
    let mut chart = batch_chart(
        &right,
        "decode tokens per second",
        x,
        lo / 2.0..hi * 2.0,
        "tokens/s",
    )?;
    chart.draw_series(LineSeries::new(ours_tps.clone(), BLUE.stroke_width(2)))?;
    chart.draw_series(ours_tps.iter().map(|&p| Circle::new(p, 4, BLUE.filled())))?;
    draw_legend(&strip, &keys, &legend)?;
    root.present()?;
    Ok(())
}

type BatchChart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, LogCoord<f64>>,
>;

/// A panel with log2(batch) across, labelled with the batch sizes, and a log y axis.
fn batch_chart<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    caption: &str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
    y_desc: &str,
) -> Result<BatchChart<'a, 'b>, DrawingAreaErrorKind<std::io::Error>> {
    let x_ticks = x.end.floor() as usize + 1;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x, y.log_scale())?;
    chart
        .configure_mesh()
        .x_labels(x_ticks)
        .x_label_formatter(&|v| format!("{}", 2f64.powf(*v).round()))
        .y_labels(6)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .max_light_lines(1)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .x_desc("batch size (log2)")
        .y_desc(y_desc)
        .draw()?;
    Ok(chart)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charts::testing::*;

    #[test]
    fn sweep_curves_draw_the_reference_points() {
        let rows = [
            sweep_row(1, 30.0, Some(9000.0)),
            sweep_row(4, 90.0, Some(20000.0)),
        ];
        let svg = sweep_curves_svg("SmolLM2 on cpu", &rows).unwrap();
        let doc = valid(&svg);
        assert!(doc.starts_with(&format!("<svg width=\"{WIDTH}\"")));
        let all = texts(doc).join("\n");
        for want in [
            "SmolLM2 on cpu",
            "tokens/Wh",
            "ML.ENERGY",
            "RTX 3090",
            "A100",
            "batch size (log2)",
        ] {
            assert!(all.contains(want), "no {want:?}");
        }
        assert!(texts(valid(&sweep_curves_svg("t", &[]).unwrap()))
            .join(" ")
            .contains("no data"));
        valid(&sweep_curves_svg("t", &[sweep_row(1, 0.0, None)]).unwrap());
    }
}
