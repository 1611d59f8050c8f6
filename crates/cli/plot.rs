//! Figures, drawn with plotters.

use landauer_trace::SweepRow;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// The founding figures (../shared/reference/energy-anchors.md).
const DESK_RTX3090: f64 = 160.0;
const DATACENTER_A100: f64 = 1500.0;

/// ML.ENERGY leaderboard v3: Llama-3.1-8B bf16 on one H100 with vLLM, (batch, J/token).
const MLENERGY_H100_8B: &[(f64, f64)] =
    &[(8.0, 0.455), (64.0, 0.119), (256.0, 0.077), (512.0, 0.070)];

/// tokens/Wh and decode tokens/s against batch size (log2 axes), with reference lines,
/// written to `path` (1200 x 520 px).
pub fn sweep_svg(path: &Path, title: &str, rows: &[SweepRow]) -> anyhow::Result<()> {
    let svg = sweep_svg_string(title, rows, (1200, 520))
        .map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))?;
    std::fs::write(path, svg).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// The figure of [`sweep_svg`] as an SVG document in a String, `size` pixels (width, height).
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

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type DrawResult<T> = Result<T, DrawingAreaErrorKind<std::io::Error>>;

/// What a legend entry shows before its text.
#[derive(Clone, Copy)]
enum Key {
    Line(RGBColor),
    Triangle(RGBColor),
}

/// The legend's type size and row height, pixels.
const LEGEND_FONT: f64 = 14.0;
const LEGEND_ROW: u32 = 22;
/// Pixels from the start of an entry's key to its text.
const KEY_W: i32 = 26;
/// Pixels between one entry's text and the next entry's key.
const GAP: i32 = 28;

/// An entry's width, key and text, pixels.
fn entry_width(text: &str) -> i32 {
    KEY_W + crate::charts::text_px(text, LEGEND_FONT) as i32
}

/// The legend's entries (indices into `keys`) in rows at most `width` pixels wide.
fn legend_rows(keys: &[(Key, &str)], width: i32) -> Vec<Vec<usize>> {
    let mut rows: Vec<Vec<usize>> = Vec::new();
    let mut used = 0;
    for (i, (_, text)) in keys.iter().enumerate() {
        let w = entry_width(text);
        match rows.last_mut() {
            Some(row) if used + GAP + w <= width => {
                row.push(i);
                used += GAP + w;
            }
            _ => {
                rows.push(vec![i]);
                used = w;
            }
        }
    }
    rows
}

/// The strip's height for `rows` rows of the legend.
fn legend_height(rows: usize) -> u32 {
    rows as u32 * LEGEND_ROW + 14
}

/// The legend in `area`: its rows centred, in one frame.
fn draw_legend(area: &Area<'_>, keys: &[(Key, &str)], rows: &[Vec<usize>]) -> DrawResult<()> {
    let row_width = |row: &[usize]| {
        row.iter().map(|&i| entry_width(keys[i].1)).sum::<i32>() + GAP * (row.len() as i32 - 1)
    };
    let (width, _) = area.dim_in_pixel();
    let widest = rows.iter().map(|r| row_width(r)).max().unwrap_or(0);
    let (x0, y0) = ((width as i32 - widest) / 2, 4);
    let bottom = y0 + (rows.len() as u32 * LEGEND_ROW) as i32;
    area.draw(&Rectangle::new(
        [(x0 - 12, y0), (x0 + widest + 12, bottom)],
        BLACK.stroke_width(1),
    ))?;
    let font = ("sans-serif", LEGEND_FONT).into_font().color(&BLACK);
    let font = font.pos(Pos::new(HPos::Left, VPos::Center));
    for (r, row) in rows.iter().enumerate() {
        let y = y0 + (LEGEND_ROW * r as u32 + LEGEND_ROW / 2) as i32;
        let mut x = (width as i32 - row_width(row)) / 2;
        for &i in row {
            let (key, text) = keys[i];
            match key {
                Key::Line(c) => area.draw(&PathElement::new(vec![(x, y), (x + 20, y)], c))?,
                Key::Triangle(c) => area.draw(&TriangleMarker::new((x + 10, y), 6, c.filled()))?,
            }
            area.draw(&Text::new(text, (x + KEY_W, y), font.clone()))?;
            x += entry_width(text) + GAP;
        }
    }
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
