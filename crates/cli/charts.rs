//! The report's figures, drawn with plotters into SVG strings (and rasterized for --png).
//!
//! Every figure is one `<svg>` document about 1080 px wide. plotters has no font backend here:
//! text is written as SVG `<text>` in the generic `sans-serif` family and laid out by whoever
//! displays the figure (a browser, or resvg with the system fonts for PNG). Degenerate inputs
//! (no tokens, no energy, zero entropy) give a small figure that says so, never an error.

use anyhow::{anyhow, Result};
use landauer_trace::SweepRow;
use landauer_trace::TokenRecord;
use plotters::chart::MeshStyle;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use resvg::{tiny_skia, usvg};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// Width of every figure, pixels.
const WIDTH: u32 = 1080;
/// The generic family the SVG asks for; svg_to_png maps it to an installed font.
const FONT: &str = "sans-serif";
/// Font sizes as plotters takes them (it writes font-size = size / 1.24).
const TITLE_PT: f64 = 25.0;
const CAPTION_PT: f64 = 19.0;
const DESC_PT: f64 = 18.0;
const LABEL_PT: f64 = 16.5;
const SMALL_PT: f64 = 15.5;
/// PNG pixels per SVG pixel.
const PNG_SCALE: f32 = 2.0;
/// Pixels left of a plot for the y tick labels and the y axis title.
const Y_AREA: u32 = 78;

const INK: RGBColor = RGBColor(30, 30, 30);
const MUTED: RGBColor = RGBColor(100, 100, 100);
const GRID_BOLD: RGBColor = RGBColor(215, 215, 215);
const GRID_LIGHT: RGBColor = RGBColor(238, 238, 238);
const ENTROPY: RGBColor = RGBColor(31, 119, 180);
const SURPRISAL: RGBColor = RGBColor(230, 120, 20);
const ENERGY: RGBColor = RGBColor(44, 150, 44);
const PREFILL: RGBColor = RGBColor(150, 90, 40);
const MEASURED: RGBColor = RGBColor(200, 40, 40);
const LANDAUER: RGBColor = RGBColor(120, 80, 180);
const PEG: RGBColor = RGBColor(60, 100, 150);
/// The sampler's path in the Galton board (tests find the path by this colour).
const PATH: RGBColor = RGBColor(214, 39, 40);
const BAR: RGBColor = RGBColor(70, 130, 180);

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
/// A figure's plot: both axes with the ticks given.
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<Ticked, Ticked>>;

/// One rung of the energy ladder: joules per token, with an optional range.
#[derive(Debug, Clone, PartialEq)]
pub struct LadderBar {
    pub label: String,
    pub j_per_token: f64,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub note: String,
}

// ---------------------------------------------------------------------------------------------
// 1. The sequence: entropy, surprisal and energy per token.

/// Entropy and surprisal (bits, top panel) and energy (mJ, bottom panel) against token index.
/// A batch trace shows its first row.
pub fn sequence_svg(tokens: &[TokenRecord]) -> Result<String> {
    const TITLE: &str = "Entropy, surprisal (bits) and energy (mJ) per token";
    let (row, rows) = first_row(tokens);
    if row.is_empty() {
        return no_data(TITLE, "no data: the trace has no tokens");
    }
    let n = row.len();
    let x_lo = row[0].index as f64 - 0.5;
    let x_hi = row[n - 1].index as f64 + 0.5;
    let series = |f: fn(&TokenRecord) -> f64| -> Vec<(f64, f64)> {
        row.iter()
            .filter_map(|t| fin(f(t)).map(|v| (t.index as f64, v.max(0.0))))
            .collect()
    };
    let ent = series(|t| t.entropy_bits);
    let sur = series(|t| t.surprisal_bits);
    let energy: Vec<(f64, f64, bool)> = row
        .iter()
        .filter_map(|t| {
            let e = t.energy_j.and_then(fin)?;
            Some((t.index as f64, e.max(0.0) * 1e3, t.phase == "prefill"))
        })
        .collect();
    let estimated = row
        .iter()
        .any(|t| t.energy_j.is_some() && t.energy_estimated);
    let subtitle = if rows > 1 {
        format!(
            "{n} tokens of row {} (the trace holds {rows} rows)",
            row[0].seq
        )
    } else {
        plural(n, "token")
    };
    let x_ticks = int_ticks(x_lo, x_hi, 16);
    let markers = n <= 80;

    render((WIDTH, 680), |root| {
        let area = header(root, TITLE, Some(&subtitle))?;
        let (top, bottom) = area.split_vertically(345);

        // Top: bits.
        let y_max = ent.iter().chain(&sur).map(|p| p.1).fold(0.0, f64::max);
        let y_hi = if y_max > 0.0 { y_max * 1.06 } else { 1.0 };
        let mut chart = frame(&top, 34, 0, 30).build_cartesian_2d(
            Ticked::linear(x_lo..x_hi, x_ticks.clone()),
            Ticked::linear(0.0..y_hi, nice_ticks(0.0, y_hi, 7)),
        )?;
        styled_mesh(&mut chart).y_desc("bits").draw()?;
        chart.draw_series(LineSeries::new(sur.clone(), SURPRISAL.stroke_width(1)))?;
        chart.draw_series(LineSeries::new(ent.clone(), ENTROPY.stroke_width(2)))?;
        if markers {
            chart.draw_series(sur.iter().map(|&p| Circle::new(p, 2, SURPRISAL.filled())))?;
            chart.draw_series(ent.iter().map(|&p| Circle::new(p, 3, ENTROPY.filled())))?;
        }
        let (px, py) = chart.plotting_area().get_pixel_range();
        panel_caption(
            root,
            "entropy and surprisal per token",
            px.start,
            py.start - 12,
        )?;
        legend(
            root,
            &[
                (
                    Key::Line(ENTROPY),
                    format!("entropy H (mean {:.2} bits)", mean(&ent)),
                ),
                (
                    Key::Line(SURPRISAL),
                    format!("surprisal (mean {:.2} bits)", mean(&sur)),
                ),
            ],
            px.end,
            py.start - 12,
        )?;

        // Bottom: energy.
        let e_max = energy.iter().map(|p| p.1).fold(0.0, f64::max);
        let e_hi = if e_max > 0.0 { e_max * 1.06 } else { 1.0 };
        let e_ticks = if energy.is_empty() {
            Vec::new()
        } else {
            nice_ticks(0.0, e_hi, 6)
        };
        let mut chart = frame(&bottom, 34, 6, 52).build_cartesian_2d(
            Ticked::linear(x_lo..x_hi, x_ticks.clone()),
            Ticked::linear(0.0..e_hi, e_ticks),
        )?;
        styled_mesh(&mut chart)
            .x_desc("token index")
            .y_desc("mJ")
            .draw()?;
        let (px, py) = chart.plotting_area().get_pixel_range();
        let caption = if estimated {
            "energy per token, ESTIMATED (not measured)"
        } else {
            "energy per token"
        };
        panel_caption(root, caption, px.start, py.start - 12)?;
        if energy.is_empty() {
            root.draw(&Text::new(
                "no energy meter: the trace records no energy per token",
                ((px.start + px.end) / 2, (py.start + py.end) / 2),
                text_style(CAPTION_PT, MUTED).pos(Pos::new(HPos::Center, VPos::Center)),
            ))?;
            return Ok(());
        }
        let color = |prefill: bool| if prefill { PREFILL } else { ENERGY };
        if n <= 400 {
            chart.draw_series(energy.iter().map(|&(x, e, p)| {
                Rectangle::new([(x - 0.4, 0.0), (x + 0.4, e)], color(p).filled())
            }))?;
        } else {
            let line: Vec<(f64, f64)> = energy.iter().map(|p| (p.0, p.1)).collect();
            chart.draw_series(LineSeries::new(line, ENERGY.stroke_width(1)))?;
        }
        let decode: Vec<(f64, f64)> = energy.iter().filter(|p| !p.2).map(|p| (p.0, p.1)).collect();
        let mut keys = Vec::new();
        if !decode.is_empty() {
            keys.push((
                Key::Bar(ENERGY),
                format!("decode (mean {} mJ)", fmt_num(mean(&decode))),
            ));
        }
        if let Some(p) = energy.iter().find(|p| p.2) {
            keys.push((
                Key::Bar(PREFILL),
                format!("prefill, with the prompt pass ({} mJ)", fmt_num(p.1)),
            ));
        }
        legend(root, &keys, px.end, py.start - 12)?;
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// 2. The distribution of bits per token.

/// Histograms of entropy (filled) and surprisal (outlined), bits per token, with their means.
pub fn bits_histogram_svg(tokens: &[TokenRecord]) -> Result<String> {
    const TITLE: &str = "Distribution of bits per token";
    let clean_bits = |f: fn(&TokenRecord) -> f64| -> Vec<f64> {
        tokens
            .iter()
            .filter_map(|t| fin(f(t)).map(|v| v.max(0.0)))
            .collect()
    };
    let ent = clean_bits(|t| t.entropy_bits);
    let sur = clean_bits(|t| t.surprisal_bits);
    if ent.is_empty() && sur.is_empty() {
        return no_data(TITLE, "no data: the trace has no tokens");
    }
    let max = ent.iter().chain(&sur).copied().fold(0.0, f64::max);
    // At least one bit across, so that all-zero entropies (greedy or synthetic runs) show as
    // one bar at 0 rather than filling the figure.
    let span = max.max(1.0);
    let width = nice_bin(span / 22.0);
    let bins = (span / width).floor() as usize + 1;
    let count = |v: &[f64]| {
        let mut c = vec![0usize; bins];
        for &x in v {
            c[((x / width).floor() as usize).min(bins - 1)] += 1;
        }
        c
    };
    let (ce, cs) = (count(&ent), count(&sur));
    let top = ce.iter().chain(&cs).copied().max().unwrap_or(1).max(1);
    let x_hi = bins as f64 * width;
    let y_hi = top as f64 * 1.22;
    let (me, ms) = (
        ent.iter().sum::<f64>() / ent.len().max(1) as f64,
        sur.iter().sum::<f64>() / sur.len().max(1) as f64,
    );
    let subtitle = format!(
        "{}, bins of {} bits; the vertical lines mark the means",
        plural(tokens.len(), "token"),
        fmt_num(width)
    );
    let y_ticks = int_ticks(0.0, y_hi, 8);

    render((WIDTH, 480), |root| {
        let area = header(root, TITLE, Some(&subtitle))?;
        let mut chart = frame(&area, 34, 6, 52).build_cartesian_2d(
            Ticked::linear(0.0..x_hi, nice_ticks(0.0, x_hi, 12)),
            Ticked::linear(0.0..y_hi, y_ticks),
        )?;
        styled_mesh(&mut chart)
            .disable_x_mesh()
            .x_desc("bits per token")
            .y_desc("tokens")
            .draw()?;
        let bar = |i: usize, c: usize| {
            let x0 = i as f64 * width;
            [(x0, 0.0), (x0 + width, c as f64)]
        };
        chart.draw_series(
            ce.iter()
                .enumerate()
                .filter(|p| *p.1 > 0)
                .map(|(i, &c)| Rectangle::new(bar(i, c), ENTROPY.mix(0.55).filled())),
        )?;
        chart.draw_series(
            cs.iter()
                .enumerate()
                .filter(|p| *p.1 > 0)
                .map(|(i, &c)| Rectangle::new(bar(i, c), SURPRISAL.stroke_width(2))),
        )?;
        let (px, py) = chart.plotting_area().get_pixel_range();
        // The means, labelled at the top: the smaller one's label on its left, the larger
        // one's on its right (where there is room), so that neither crosses the other line;
        // surprisal's a line lower.
        for (m, other_m, color, what, dy) in [
            (me, ms, ENTROPY, "entropy", 8),
            (ms, me, SURPRISAL, "surprisal", 30),
        ] {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(m, 0.0), (m, y_hi)],
                color.stroke_width(2),
            )))?;
            let (x, _) = chart.backend_coord(&(m, 0.0));
            let label = format!("mean {what} {m:.2} bits");
            let w = text_px(&label, SMALL_PT) as i32 + 8;
            let fits_left = x - w > px.start;
            let fits_right = x + w < px.end;
            let left = (m < other_m && fits_left) || !fits_right;
            let (anchor, dx) = if left {
                (HPos::Right, -6)
            } else {
                (HPos::Left, 6)
            };
            root.draw(&Text::new(
                label,
                (x + dx, py.start + dy),
                text_style(SMALL_PT, color).pos(Pos::new(anchor, VPos::Top)),
            ))?;
        }
        panel_caption(root, "tokens per bin", px.start, py.start - 12)?;
        legend(
            root,
            &[
                (
                    Key::Bar(ENTROPY),
                    "entropy H of the distribution".to_string(),
                ),
                (
                    Key::Outline(SURPRISAL),
                    "surprisal of the chosen token".to_string(),
                ),
            ],
            px.end,
            py.start - 12,
        )?;
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// 3. Cumulative joules against cumulative bits, with the Landauer line.

/// Cumulative energy (J, log axis) against cumulative entropy (bits), with the Landauer line
/// y = bits × `landauer_j_per_bit` and the ratio between them at the end of the run.
pub fn cumulative_svg(tokens: &[TokenRecord], landauer_j_per_bit: f64) -> Result<String> {
    const TITLE: &str = "Cumulative energy (J, log scale) against cumulative information (bits)";
    if tokens.is_empty() {
        return no_data(TITLE, "no data: the trace has no tokens");
    }
    let k = landauer_j_per_bit;
    if !(k.is_finite() && k > 0.0) {
        return no_data(
            TITLE,
            "no data: no Landauer yardstick (k_B·T·ln 2) was given",
        );
    }
    let has_energy = tokens.iter().any(|t| t.energy_j.and_then(fin).is_some());
    let estimated = tokens
        .iter()
        .any(|t| t.energy_j.is_some() && t.energy_estimated);
    let (mut bits, mut joules) = (0.0f64, 0.0f64);
    let (mut measured, mut landauer) = (Vec::new(), Vec::new());
    for t in tokens {
        bits += fin(t.entropy_bits).unwrap_or(0.0).max(0.0);
        joules += t.energy_j.and_then(fin).unwrap_or(0.0).max(0.0);
        if bits > 0.0 {
            landauer.push((bits, bits * k));
        }
        if has_energy && joules > 0.0 {
            measured.push((bits, joules));
        }
    }
    if landauer.is_empty() {
        return no_data(
            TITLE,
            "no information: every distribution had zero entropy, nothing to set against Landauer",
        );
    }
    let ys = measured.iter().chain(&landauer).map(|p| p.1);
    let (y_min, y_max) = ys.fold((f64::MAX, 0.0f64), |(a, b), y| (a.min(y), b.max(y)));
    let lo = 10f64.powi(y_min.log10().floor() as i32);
    let mut hi = 10f64.powi(y_max.log10().ceil() as i32);
    if hi <= lo {
        hi = lo * 10.0;
    }
    let (bold, light) = decade_ticks(lo, hi, 12);
    let x_hi = bits * 1.03;
    let ratio = (has_energy && joules > 0.0).then(|| joules / (bits * k));
    let subtitle = format!(
        "{}, {} bits of entropy{}",
        plural(tokens.len(), "token"),
        fmt_num(bits),
        match (has_energy, estimated) {
            (false, _) => ", no energy meter".to_string(),
            (true, true) => format!(", {} J ESTIMATED", fmt_num(joules)),
            (true, false) => format!(", {} J measured", fmt_num(joules)),
        }
    );

    render((WIDTH, 520), |root| {
        let area = header(root, TITLE, Some(&subtitle))?;
        let mut chart = frame(&area, 14, 6, 52).build_cartesian_2d(
            Ticked::linear(0.0..x_hi, nice_ticks(0.0, x_hi, 12)),
            Ticked::log(lo..hi, bold, light),
        )?;
        styled_mesh(&mut chart)
            .y_label_formatter(&decade_label)
            .x_desc("cumulative entropy (bits)")
            .y_desc("cumulative energy (J)")
            .draw()?;
        curve_with_end(&mut chart, &landauer, LANDAUER)?;
        let (px, py) = chart.plotting_area().get_pixel_range();
        let mut keys = Vec::new();
        if !measured.is_empty() {
            curve_with_end(&mut chart, &measured, MEASURED)?;
            keys.push((
                Key::Line(MEASURED),
                if estimated {
                    "measured energy (ESTIMATED)".to_string()
                } else {
                    "measured energy".to_string()
                },
            ));
        }
        keys.push((
            Key::Line(LANDAUER),
            format!("Landauer yardstick k_B·T·ln 2 per bit ({} J/bit)", sci(k)),
        ));
        if has_energy {
            // In the empty band between the two curves.
            let mid_y = chart.backend_coord(&(0.0, (lo * hi).sqrt())).1;
            legend_column(root, &keys, Some(px.start + 16), mid_y - 16)?;
        } else {
            // Below the (rising, concave) Landauer curve.
            legend_column(root, &keys, None, py.end - 16 - 34)?;
        }
        if let (Some(r), Some(&(xe, je))) = (ratio, measured.last()) {
            let le = xe * k;
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(xe, le), (xe, je)],
                MUTED.stroke_width(1),
            )))?;
            let (x, y) = chart.backend_coord(&(xe, (le * je).sqrt()));
            root.draw(&Text::new(
                format!("measured / Landauer ≈ {}", sci(r)),
                (x - 8, y),
                text_style(CAPTION_PT, INK).pos(Pos::new(HPos::Right, VPos::Center)),
            ))?;
        }
        if !has_energy {
            root.draw(&Text::new(
                "no energy meter: only the Landauer yardstick is drawn",
                ((px.start + px.end) / 2, py.start + 14),
                text_style(CAPTION_PT, MUTED).pos(Pos::new(HPos::Center, VPos::Top)),
            ))?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// 4. The Galton board: alternatives as pegs, the sampler's path through them.

/// The first `max_steps` tokens as a Galton board: at each step (x) the recorded alternatives
/// are pegs at their rank (y, most likely at the top, "other" below) sized by probability, and
/// one line follows the rank of the token actually chosen. A batch trace shows its first row.
pub fn galton_svg(tokens: &[TokenRecord], max_steps: usize) -> Result<String> {
    const TITLE: &str = "The sampler's path through the alternatives";
    let (row, rows) = first_row(tokens);
    let steps: Vec<&TokenRecord> = row.into_iter().take(max_steps).collect();
    if steps.is_empty() {
        return no_data(TITLE, "no data: no tokens to draw");
    }
    let n = steps.len();
    let top_n = steps.iter().map(|t| t.top.len()).max().unwrap_or(0);
    let other = top_n; // the rank of "other"
    let n_ranks = top_n + 1;
    let chosen: Vec<usize> = steps
        .iter()
        .map(|t| {
            t.top
                .iter()
                .position(|a| a.token_id == t.token_id)
                .unwrap_or(other)
        })
        .collect();
    let off_top = chosen.iter().filter(|&&r| r == other).count();
    let total = tokens.iter().filter(|t| t.seq == steps[0].seq).count();
    let subtitle = format!(
        "{}{}: peg area ∝ probability at temperature 1; red: the token sampled ({} of {n} outside the top {top_n})",
        if n < total {
            format!("first {n} of {total} tokens")
        } else {
            plural(n, "token")
        },
        if rows > 1 {
            format!(" of row {}", steps[0].seq)
        } else {
            String::new()
        },
        off_top,
    );

    // Layout: a strip above the board for the chosen texts (short runs only).
    let x_lo = steps[0].index as f64 - 0.5;
    let x_hi = steps[n - 1].index as f64 + 0.5;
    let plot_w = (WIDTH - Y_AREA - 35) as f64;
    let cell_w = plot_w / n as f64;
    let show_text = n <= 48;
    let horizontal = cell_w >= 64.0;
    let labels: Vec<String> = steps.iter().map(|t| token_label(&t.text, 10)).collect();
    let strip = if !show_text {
        8
    } else if horizontal {
        30
    } else {
        let longest = labels.iter().map(|s| s.chars().count()).max().unwrap_or(1);
        (text_px(&"M".repeat(longest), SMALL_PT) * 0.9) as u32 + 16
    };
    let row_h = 54u32;
    let height = 66 + strip + n_ranks as u32 * row_h + 56;
    let cell_h = row_h as f64;
    let r_max = (0.46 * cell_w.min(cell_h)).clamp(2.0, 20.0);
    let radius = |p: f64| (r_max * p.clamp(0.0, 1.0).sqrt()).max(1.5);
    let y_ticks: Vec<f64> = (0..n_ranks).map(|r| -(r as f64)).collect();
    let x_ticks = int_ticks(x_lo, x_hi, 16);
    let rank_label = move |v: &f64| {
        let r = (-v).round() as usize;
        if r == other {
            "other".to_string()
        } else {
            ordinal(r + 1)
        }
    };

    render((WIDTH, height), |root| {
        let area = header(root, TITLE, Some(&subtitle))?;
        let mut chart = frame(&area, strip, 6, 50).build_cartesian_2d(
            Ticked::linear(x_lo..x_hi, x_ticks),
            Ticked::linear(-(n_ranks as f64) + 0.5..0.5, y_ticks),
        )?;
        // Light rank lines only: the pegs sit on them.
        styled_mesh(&mut chart)
            .disable_x_mesh()
            .bold_line_style(GRID_LIGHT)
            .y_label_formatter(&rank_label)
            .x_desc("step (token index)")
            .y_desc("rank")
            .draw()?;
        // Pegs: the recorded alternatives, then the mass outside them as "other".
        for t in &steps {
            let x = t.index as f64;
            chart.draw_series(t.top.iter().enumerate().map(|(r, a)| {
                let p = fin(a.prob).unwrap_or(0.0).clamp(0.0, 1.0);
                Circle::new(
                    (x, -(r as f64)),
                    radius(p),
                    PEG.mix(0.25 + 0.6 * p).filled(),
                )
            }))?;
            let listed: f64 = t.top.iter().filter_map(|a| fin(a.prob)).sum();
            let rest = (1.0 - listed).clamp(0.0, 1.0);
            chart.draw_series(std::iter::once(Circle::new(
                (x, -(other as f64)),
                radius(rest),
                MUTED.mix(0.6).stroke_width(1),
            )))?;
        }
        // The path the sampler took: one polyline through the chosen ranks.
        let path: Vec<(f64, f64)> = steps
            .iter()
            .zip(&chosen)
            .map(|(t, &r)| (t.index as f64, -(r as f64)))
            .collect();
        chart.draw_series(LineSeries::new(path.clone(), PATH.mix(0.8).stroke_width(2)))?;
        chart.draw_series(steps.iter().zip(&chosen).map(|(t, &r)| {
            let p = if r == other {
                fin(t.prob).unwrap_or(0.0)
            } else {
                fin(t.top[r].prob).unwrap_or(0.0)
            };
            Circle::new(
                (t.index as f64, -(r as f64)),
                radius(p) + 3.0,
                PATH.stroke_width(2),
            )
        }))?;
        if show_text {
            let (_, py) = chart.plotting_area().get_pixel_range();
            for (t, label) in steps.iter().zip(&labels) {
                let (x, _) = chart.backend_coord(&(t.index as f64, 0.0));
                let style = text_style(SMALL_PT, INK);
                if horizontal {
                    root.draw(&Text::new(
                        label.as_str(),
                        (x, py.start - 8),
                        style.pos(Pos::new(HPos::Center, VPos::Bottom)),
                    ))?;
                } else {
                    root.draw(&Text::new(
                        label.as_str(),
                        (x, py.start - 8),
                        style
                            .transform(FontTransform::Rotate270)
                            .pos(Pos::new(HPos::Left, VPos::Center)),
                    ))?;
                }
            }
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// 5. The ladder: joules per token, rung by rung, on a log axis.

/// Horizontal bars of joules per token on a log axis, one per rung in the given order, with
/// whiskers for `low`..`high`, the value beside each bar and the ratio between neighbours.
pub fn ladder_svg(title: &str, bars: &[LadderBar]) -> Result<String> {
    let valid = |v: f64| v.is_finite() && v > 0.0;
    let ends: Vec<f64> = bars
        .iter()
        .filter(|b| valid(b.j_per_token))
        .map(|b| {
            b.high
                .filter(|&h| valid(h))
                .unwrap_or(0.0)
                .max(b.j_per_token)
        })
        .collect();
    if ends.is_empty() {
        return no_data(title, "no data: no rung has a positive energy per token");
    }
    let min = bars
        .iter()
        .filter(|b| valid(b.j_per_token))
        .map(|b| {
            b.low
                .filter(|&l| valid(l))
                .unwrap_or(f64::MAX)
                .min(b.j_per_token)
        })
        .fold(f64::MAX, f64::min);
    let n = bars.len();
    // Each rung's label, and its note in smaller type below it, right-aligned at the axis.
    let labels: Vec<String> = bars
        .iter()
        .map(|b| truncate(&clean(&b.label), 44))
        .collect();
    let notes: Vec<Vec<String>> = bars
        .iter()
        .map(|b| wrap(&clean(&b.note), 400.0, |t| text_px(t, SMALL_PT), 2))
        .collect();
    let longest = labels
        .iter()
        .map(|s| text_px(s, LABEL_PT))
        .chain(notes.iter().flatten().map(|s| text_px(s, SMALL_PT)))
        .fold(0.0, f64::max);
    let row_h = if notes.iter().any(|n| n.len() > 1) {
        78
    } else {
        62
    };
    let y_area = (longest + 30.0).clamp(90.0, 460.0) as u32;
    let plot_w = (WIDTH - y_area - 35) as f64;
    // The log axis: a little below the smallest value, and far enough right that every
    // bar's value fits after it.
    let l = (min.log10() - 0.3).floor();
    let mut h = ends.iter().fold(f64::MIN, |a, &e| a.max(e.log10() + 0.15));
    for b in bars.iter().filter(|b| valid(b.j_per_token)) {
        let end = b
            .high
            .filter(|&x| valid(x))
            .unwrap_or(0.0)
            .max(b.j_per_token);
        let text = text_px(&format!("{} J", sci(b.j_per_token)), LABEL_PT) + 24.0;
        let f = (text / plot_w).min(0.5);
        h = h.max(l + (end.log10() - l) / (1.0 - f));
    }
    let (lo, hi) = (10f64.powf(l), 10f64.powf(h));
    let (bold, light) = decade_ticks(lo, hi, 12);
    let extra_title = (title_lines(title, WIDTH).len().max(1) - 1) as u32 * TITLE_LINE as u32;
    let height = 66 + extra_title + n as u32 * row_h + 60;
    let y_ticks: Vec<f64> = (0..n).map(|i| -(i as f64)).collect();

    render((WIDTH, height), |root| {
        let area = header(
            root,
            title,
            Some("joules per token, log scale; whiskers: the range where one is known"),
        )?;
        // The rungs' labels and notes are drawn by hand, in the wider label area.
        let mut chart = frame(&area, 6, 6, 54)
            .y_label_area_size(y_area)
            .build_cartesian_2d(
                Ticked::log(lo..hi, bold, light),
                Ticked::linear(-(n as f64) + 0.5..0.5, y_ticks),
            )?;
        styled_mesh(&mut chart)
            .disable_y_mesh()
            .x_label_formatter(&decade_label)
            .y_label_formatter(&|_| String::new())
            .x_desc("joules per token (log scale)")
            .draw()?;
        let (px, _) = chart.plotting_area().get_pixel_range();
        for (i, (b, (label, note))) in bars.iter().zip(labels.iter().zip(&notes)).enumerate() {
            let y = -(i as f64);
            let (_, row_y) = chart.backend_coord(&(lo, y));
            let right = Pos::new(HPos::Right, VPos::Center);
            // The label and the note's lines, centred as a block on the bar.
            let top = row_y - 9 * note.len() as i32;
            root.draw(&Text::new(
                label.as_str(),
                (px.start - 12, top),
                text_style(LABEL_PT, INK).pos(right),
            ))?;
            for (k, line) in note.iter().enumerate() {
                root.draw(&Text::new(
                    line.as_str(),
                    (px.start - 12, top + 20 + 17 * k as i32),
                    text_style(SMALL_PT, MUTED).pos(right),
                ))?;
            }
            if !valid(b.j_per_token) {
                let (x, yy) = chart.backend_coord(&(lo, y));
                root.draw(&Text::new(
                    "no value",
                    (x + 8, yy),
                    text_style(LABEL_PT, MUTED).pos(Pos::new(HPos::Left, VPos::Center)),
                ))?;
                continue;
            }
            let v = b.j_per_token;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(lo, y - 0.22), (v, y + 0.22)],
                BAR.filled(),
            )))?;
            let low = b.low.filter(|&x| valid(x)).map(|x| x.min(v));
            let high = b.high.filter(|&x| valid(x)).map(|x| x.max(v));
            if low.is_some() || high.is_some() {
                let (a, c) = (low.unwrap_or(v), high.unwrap_or(v));
                let whisker = INK.stroke_width(2);
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(a, y), (c, y)],
                    whisker,
                )))?;
                for e in [low, high].into_iter().flatten() {
                    chart.draw_series(std::iter::once(PathElement::new(
                        vec![(e, y - 0.14), (e, y + 0.14)],
                        whisker,
                    )))?;
                }
            }
            let end = high.unwrap_or(v);
            let (x, yy) = chart.backend_coord(&(end, y));
            let value = format!("{} J", sci(v));
            root.draw(&Text::new(
                value,
                (x + 8, yy),
                text_style(LABEL_PT, INK).pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
        }
        // The ratio between neighbours, written in the gap between them.
        for (i, pair) in bars.windows(2).enumerate() {
            let (a, b) = (pair[0].j_per_token, pair[1].j_per_token);
            if !(valid(a) && valid(b)) {
                continue;
            }
            let (ya, yb) = (-(i as f64) - 0.22, -(i as f64) - 0.78);
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(a, ya), (b, yb)],
                MUTED.mix(0.7).stroke_width(1),
            )))?;
            let (x, y) = chart.backend_coord(&(a.max(b), -(i as f64) - 0.5));
            root.draw(&Text::new(
                format!("× {}", ratio_text(a / b)),
                (x + 10, y),
                text_style(SMALL_PT, MEASURED).pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// 6. The batch sweep.

/// tokens/Wh and decode tokens/s against batch size, with the reference points (plot.rs's
/// figure of `landauer sweep`, at the report's width).
pub fn sweep_curves_svg(title: &str, rows: &[SweepRow]) -> Result<String> {
    if rows.is_empty() {
        return no_data(title, "no data: the sweep has no rows");
    }
    crate::plot::sweep_svg_string(&clean(title), rows, (WIDTH, 500))
}

// ---------------------------------------------------------------------------------------------
// 7. PNG.

/// Rasterizes `svg` to a PNG at `path`, at twice the SVG's pixel size, on white.
pub fn svg_to_png(svg: &str, path: &Path) -> Result<()> {
    svg_to_png_scaled(svg, path, PNG_SCALE)
}

/// [`svg_to_png`] at `scale` PNG pixels per SVG pixel.
pub fn svg_to_png_scaled(svg: &str, path: &Path, scale: f32) -> Result<()> {
    let fail = |why: String| anyhow!("cannot write {}: {why}", path.display());
    if !(scale.is_finite() && scale > 0.0) {
        return Err(fail(format!("bad scale {scale}")));
    }
    let (fontdb, family) = fonts();
    let options = usvg::Options {
        font_family: family.to_string(),
        fontdb: fontdb.clone(),
        ..Default::default()
    };
    let tree = usvg::Tree::from_str(svg, &options)
        .map_err(|e| fail(format!("the SVG does not parse: {e}")))?;
    let size = tree.size();
    let (w, h) = (
        (size.width() * scale).ceil() as u32,
        (size.height() * scale).ceil() as u32,
    );
    let mut pixmap = tiny_skia::Pixmap::new(w.max(1), h.max(1))
        .ok_or_else(|| fail(format!("cannot allocate a {w} x {h} image")))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap.save_png(path).map_err(|e| fail(e.to_string()))
}

/// The system fonts, loaded once, and the family that stands in for `sans-serif`. Warns once
/// on stderr when there are none (the PNGs then have no text).
fn fonts() -> &'static (Arc<usvg::fontdb::Database>, String) {
    static FONTS: OnceLock<(Arc<usvg::fontdb::Database>, String)> = OnceLock::new();
    FONTS.get_or_init(|| {
        let mut db = usvg::fontdb::Database::new();
        db.load_system_fonts();
        let has = |name: &str| {
            db.faces()
                .any(|f| f.families.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)))
        };
        let family = [
            "DejaVu Sans",
            "Liberation Sans",
            "Noto Sans",
            "Arial",
            "Helvetica",
            "FreeSans",
        ]
        .into_iter()
        .find(|f| has(f))
        .map(String::from)
        .or_else(|| {
            db.faces()
                .next()
                .and_then(|f| f.families.first().map(|(n, _)| n.clone()))
        });
        let family = match family {
            Some(f) => {
                db.set_sans_serif_family(f.clone());
                f
            }
            None => {
                eprintln!(
                    "warning: no system fonts found; PNG figures are drawn without text (install fonts-dejavu-core)"
                );
                "sans-serif".to_string()
            }
        };
        (Arc::new(db), family)
    })
}

/// The document from its `<svg` tag on, without an XML declaration, doctype or comment before
/// it, for inlining in HTML.
pub fn trim_svg_header(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg.trim_start(),
    }
}

// ---------------------------------------------------------------------------------------------
// Drawing helpers.

/// Draws into a fresh white SVG of `size` pixels and returns the document.
fn render(size: (u32, u32), draw: impl FnOnce(&Area<'_>) -> Result<()>) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root).map_err(|e| anyhow!("cannot draw the figure: {e}"))?;
        root.present()?;
    }
    Ok(svg)
}

/// A small figure: the title and a line saying why there is nothing to draw.
fn no_data(title: &str, message: &str) -> Result<String> {
    render((WIDTH, 150), |root| {
        header(root, title, None)?;
        root.draw(&Text::new(
            clean(message),
            (WIDTH as i32 / 2, 90),
            text_style(CAPTION_PT, MUTED).pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
        Ok(())
    })
}

/// Draws the title (and a smaller subtitle) across the top; returns the area below them.
/// A title too wide for the figure wraps onto a second line (and is cut short after it).
fn header<'a>(root: &Area<'a>, title: &str, subtitle: Option<&str>) -> Result<Area<'a>> {
    let width = root.dim_in_pixel().0;
    let mid = width as i32 / 2;
    let mut y = 12;
    for line in title_lines(title, width) {
        root.draw(&Text::new(
            line,
            (mid, y),
            bold_style(TITLE_PT).pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
        y += TITLE_LINE;
    }
    if let Some(s) = subtitle {
        let max = width as f64 - 40.0;
        let line = wrap(&clean(s), max, |t| text_px(t, SMALL_PT), 1);
        root.draw(&Text::new(
            line.into_iter().next().unwrap_or_default(),
            (mid, y),
            text_style(SMALL_PT, MUTED).pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
        y += 22;
    }
    Ok(root.split_vertically(y + 2).1)
}

/// Pixels a title line takes.
const TITLE_LINE: i32 = 32;

/// The title's lines in a figure `width` pixels wide: at most two.
fn title_lines(title: &str, width: u32) -> Vec<String> {
    // Bold type is about a tenth wider.
    wrap(
        &clean(title),
        width as f64 - 40.0,
        |t| text_px(t, TITLE_PT) * 1.1,
        2,
    )
}

/// `text` broken at spaces into lines at most `max` pixels wide (by `px`), at most `lines` of
/// them; what does not fit is cut short with "…".
fn wrap(text: &str, max: f64, px: impl Fn(&str) -> f64, lines: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut words = text.split_whitespace().peekable();
    while words.peek().is_some() && out.len() < lines {
        let mut line = String::new();
        while let Some(&w) = words.peek() {
            let candidate = if line.is_empty() {
                w.to_string()
            } else {
                format!("{line} {w}")
            };
            if px(&candidate) <= max || line.is_empty() {
                line = candidate;
                words.next();
                if px(&line) > max {
                    break;
                }
            } else {
                break;
            }
        }
        out.push(line);
    }
    let cut = words.peek().is_some();
    if let Some(last) = out.last_mut() {
        if cut || px(last) > max {
            // Shorten until the line and its ellipsis fit.
            let mut chars: Vec<char> = last.chars().collect();
            while !chars.is_empty() && px(&format!("{}…", chars.iter().collect::<String>())) > max
            {
                chars.pop();
            }
            *last = format!("{}…", chars.iter().collect::<String>().trim_end());
        }
    }
    out
}

/// A panel's caption, left-aligned above its plot (y is the text's baseline region).
fn panel_caption(root: &Area<'_>, text: &str, x: i32, y: i32) -> Result<()> {
    root.draw(&Text::new(
        clean(text),
        (x, y),
        bold_style(CAPTION_PT).pos(Pos::new(HPos::Left, VPos::Center)),
    ))?;
    Ok(())
}

/// What a legend entry shows beside its text.
#[derive(Clone, Copy)]
enum Key {
    Line(RGBColor),
    Bar(RGBColor),
    Outline(RGBColor),
}

fn draw_key(root: &Area<'_>, key: Key, x: i32, y: i32) -> Result<()> {
    match key {
        Key::Line(c) => root.draw(&PathElement::new(
            vec![(x, y), (x + 26, y)],
            c.stroke_width(3),
        ))?,
        Key::Bar(c) => root.draw(&Rectangle::new(
            [(x + 4, y - 7), (x + 22, y + 7)],
            c.mix(0.7).filled(),
        ))?,
        Key::Outline(c) => root.draw(&Rectangle::new(
            [(x + 4, y - 7), (x + 22, y + 7)],
            c.stroke_width(2),
        ))?,
    }
    Ok(())
}

/// A one-line legend ending at about `right`, centred on `y`.
fn legend(root: &Area<'_>, items: &[(Key, String)], right: i32, y: i32) -> Result<()> {
    let width = |t: &str| text_px(t, LABEL_PT) as i32;
    let total: i32 = items.iter().map(|(_, t)| 34 + width(t) + 24).sum::<i32>() - 24;
    let mut x = right - total;
    for (key, text) in items {
        draw_key(root, *key, x, y)?;
        root.draw(&Text::new(
            clean(text),
            (x + 34, y),
            text_style(LABEL_PT, INK).pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
        x += 34 + width(text) + 24;
    }
    Ok(())
}

/// A legend of one entry per line from (`left`, `top`), on a white box; `left` None: ending
/// 16 px inside the right edge of the figure.
fn legend_column(
    root: &Area<'_>,
    items: &[(Key, String)],
    left: Option<i32>,
    top: i32,
) -> Result<()> {
    let line = 26;
    let w = items
        .iter()
        .map(|(_, t)| text_px(t, LABEL_PT) as i32)
        .max()
        .unwrap_or(0)
        + 56;
    let left = left.unwrap_or(root.dim_in_pixel().0 as i32 - 41 - w);
    root.draw(&Rectangle::new(
        [(left, top), (left + w, top + line * items.len() as i32 + 8)],
        WHITE.mix(0.9).filled(),
    ))?;
    root.draw(&Rectangle::new(
        [(left, top), (left + w, top + line * items.len() as i32 + 8)],
        GRID_BOLD.stroke_width(1),
    ))?;
    for (i, (key, text)) in items.iter().enumerate() {
        let y = top + 4 + line / 2 + line * i as i32;
        draw_key(root, *key, left + 10, y)?;
        root.draw(&Text::new(
            clean(text),
            (left + 46, y),
            text_style(LABEL_PT, INK).pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }
    Ok(())
}

fn text_style(size: f64, color: RGBColor) -> TextStyle<'static> {
    (FONT, size).into_font().color(&color)
}

/// Titles and captions: bold, in ink.
fn bold_style(size: f64) -> TextStyle<'static> {
    (FONT, size).into_font().style(FontStyle::Bold).color(&INK)
}

fn label_style() -> TextStyle<'static> {
    text_style(LABEL_PT, INK)
}

fn desc_style() -> TextStyle<'static> {
    text_style(DESC_PT, INK)
}

/// A chart on `area` in the figures' frame: margins of 10 px on the left, 25 on the right and
/// `top` and `bottom` as given; `x_labels` px below the plot for the x tick labels and axis
/// title, [`Y_AREA`] px left of it for the y ones.
fn frame<'a, 'b, 'c>(
    area: &'a Area<'c>,
    top: u32,
    bottom: u32,
    x_labels: u32,
) -> ChartBuilder<'a, 'b, SVGBackend<'c>> {
    let mut builder = ChartBuilder::on(area);
    builder
        .margin_left(10)
        .margin_right(25)
        .margin_top(top)
        .margin_bottom(bottom)
        .x_label_area_size(x_labels)
        .y_label_area_size(Y_AREA);
    builder
}

/// The figures' mesh on `chart`: bold and light grid lines, tick labels and axis titles in the
/// figures' type, and both axes' ticks written by [`fmt_num`]. The caller adds the axis titles,
/// any other formatter or style, and draws it.
fn styled_mesh<'a, 'b, X, Y, DB>(
    chart: &'b mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
) -> MeshStyle<'a, 'b, X, Y, DB>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    DB: DrawingBackend,
{
    let mut mesh = chart.configure_mesh();
    mesh.bold_line_style(GRID_BOLD)
        .light_line_style(GRID_LIGHT)
        .label_style(label_style())
        .axis_desc_style(desc_style())
        .x_label_formatter(&tick_label)
        .y_label_formatter(&tick_label);
    mesh
}

/// A curve 2 px wide with a dot at its end (a curve of one point is just the dot).
fn curve_with_end(chart: &mut Chart<'_, '_>, points: &[(f64, f64)], color: RGBColor) -> Result<()> {
    chart.draw_series(LineSeries::new(points.to_vec(), color.stroke_width(2)))?;
    chart.draw_series(points.last().map(|&p| Circle::new(p, 4, color.filled())))?;
    Ok(())
}

/// A linear axis' tick label.
fn tick_label(v: &f64) -> String {
    fmt_num(*v)
}

/// A log axis' tick label: its decade, "10⁻²⁰".
fn decade_label(v: &f64) -> String {
    pow10(v.log10().round() as i32)
}

/// A rough width of `text` in pixels at plotters size `size` (DejaVu Sans averages ~0.55 em;
/// a little more, so that estimates err on the side of room).
pub(crate) fn text_px(text: &str, size: f64) -> f64 {
    text.chars().count() as f64 * size / 1.24 * 0.57
}

/// A linear or log axis with the tick positions given (plotters' own choice of ticks cannot be
/// told to keep to whole ranks or decades).
#[derive(Clone)]
struct Ticked {
    range: std::ops::Range<f64>,
    log: bool,
    bold: Vec<f64>,
    light: Vec<f64>,
}

impl Ticked {
    fn linear(range: std::ops::Range<f64>, ticks: Vec<f64>) -> Self {
        Ticked {
            range,
            log: false,
            bold: ticks,
            light: Vec::new(),
        }
    }

    /// `range` must be positive; `light` are grid lines without labels.
    fn log(range: std::ops::Range<f64>, bold: Vec<f64>, light: Vec<f64>) -> Self {
        Ticked {
            range,
            log: true,
            bold,
            light,
        }
    }

    fn scale(&self, v: f64) -> f64 {
        if self.log {
            v.max(f64::MIN_POSITIVE).log10()
        } else {
            v
        }
    }
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let (a, b) = (self.scale(self.range.start), self.scale(self.range.end));
        let pixels = f64::from(limit.1 - limit.0);
        if a == b || pixels == 0.0 {
            return (limit.0 + limit.1) / 2;
        }
        let f = (self.scale(*value) - a) / (b - a);
        if !f.is_finite() {
            return if f > 0.0 { limit.1 } else { limit.0 };
        }
        // Far outside the axis, clamp rather than overflow i32.
        limit.0 + (pixels * f.clamp(-10.0, 10.0)).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.light.clone()
        } else {
            self.bold.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.range.clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Data helpers.

/// The tokens of the trace's first row (lowest `seq`) in index order, and how many rows it has.
fn first_row(tokens: &[TokenRecord]) -> (Vec<&TokenRecord>, usize) {
    let seqs: BTreeSet<usize> = tokens.iter().map(|t| t.seq).collect();
    let Some(&first) = seqs.iter().next() else {
        return (Vec::new(), 0);
    };
    let mut row: Vec<&TokenRecord> = tokens.iter().filter(|t| t.seq == first).collect();
    row.sort_by_key(|t| t.index);
    (row, seqs.len())
}

fn fin(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn mean(points: &[(f64, f64)]) -> f64 {
    if points.is_empty() {
        return 0.0;
    }
    points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64
}

/// Tick positions from `lo` to `hi`, at most `max` of them, at a 1-2-5 step.
fn nice_ticks(lo: f64, hi: f64, max: usize) -> Vec<f64> {
    ticks(lo, hi, max, -12)
}

/// Whole-number tick positions from `lo` to `hi`, at most about `max` of them, at a 1-2-5 step.
fn int_ticks(lo: f64, hi: f64, max: usize) -> Vec<f64> {
    ticks(lo, hi, max, 0)
}

/// Ticks at multiples of m × 10^k (m in 1, 2, 5; k at least `min_exp`), at most `max`.
fn ticks(lo: f64, hi: f64, max: usize, min_exp: i32) -> Vec<f64> {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        return Vec::new();
    }
    let max = max.max(1) as f64;
    let mut k = ((span / max).log10().floor() as i32).max(min_exp);
    // m × 10^k, computed as a division for negative k so that 0.1 × 3 prints as 0.3.
    let value = |i: i64, m: f64, k: i32| {
        if k < 0 {
            i as f64 * m / 10f64.powi(-k)
        } else {
            i as f64 * m * 10f64.powi(k)
        }
    };
    loop {
        for m in [1.0, 2.0, 5.0] {
            let step = value(1, m, k);
            if span / step <= max {
                let first = (lo / step).ceil() as i64;
                let last = (hi / step).floor() as i64;
                return (first..=last).map(|i| value(i, m, k)).collect();
            }
        }
        k += 1;
    }
}

/// Decades between `lo` and `hi`: every `step`-th labelled (at most about `max` labels), all
/// of them as light grid lines.
fn decade_ticks(lo: f64, hi: f64, max: usize) -> (Vec<f64>, Vec<f64>) {
    let (a, b) = (lo.log10().ceil() as i32, hi.log10().floor() as i32);
    let count = (b - a + 1).max(1) as usize;
    let step = count.div_ceil(max.max(1)).max(1) as i32;
    let all: Vec<i32> = (a..=b).collect();
    let bold = all
        .iter()
        .filter(|e| e.rem_euclid(step) == 0)
        .map(|&e| 10f64.powi(e))
        .collect();
    (bold, all.iter().map(|&e| 10f64.powi(e)).collect())
}

/// A histogram bin width at or below `w` from 1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8 × 10^k.
fn nice_bin(w: f64) -> f64 {
    let w = if w.is_finite() && w > 0.0 { w } else { 1.0 };
    let e = w.log10().floor() as i32;
    // Dividing by 10^-e keeps 0.6 as 0.6 (6 × 0.1 is 0.6000000000000001).
    let scaled = |m: f64| {
        if e < 0 {
            m / 10f64.powi(-e)
        } else {
            m * 10f64.powi(e)
        }
    };
    let p = scaled(1.0);
    [8.0, 6.0, 5.0, 4.0, 3.0, 2.5, 2.0, 1.5, 1.25, 1.0]
        .into_iter()
        .map(scaled)
        .find(|&c| c <= w * (1.0 + 1e-9))
        .unwrap_or(p)
}

/// 10 to the power `e`, with a superscript exponent: "10⁻²⁰".
fn pow10(e: i32) -> String {
    let sup: String = e
        .to_string()
        .chars()
        .map(|c| match c {
            '-' => '⁻',
            '0' => '⁰',
            '1' => '¹',
            '2' => '²',
            '3' => '³',
            '4' => '⁴',
            '5' => '⁵',
            '6' => '⁶',
            '7' => '⁷',
            '8' => '⁸',
            _ => '⁹',
        })
        .collect();
    format!("10{sup}")
}

/// Two significant figures in scientific notation: "2.3e-1".
fn sci(v: f64) -> String {
    format!("{v:.1e}")
}

/// A ratio: two significant figures, plainly from 0.01 to 1000, else "4.1e3".
fn ratio_text(r: f64) -> String {
    if (0.01..999.5).contains(&r) {
        let digits = 1 - r.log10().floor() as i32;
        let rounded = (r * 10f64.powi(digits)).round() / 10f64.powi(digits);
        fmt_num(rounded)
    } else {
        sci(r)
    }
}

/// A tick or legend number: about three significant figures, no trailing zeros.
fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    let a = v.abs();
    if a < 1e-12 {
        return "0".to_string();
    }
    if a >= 1e6 {
        return sci(v);
    }
    let decimals = (2 - a.log10().floor() as i32).clamp(0, 8) as usize;
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" {
        "0".to_string()
    } else {
        s
    }
}

/// "1 token", "2 tokens".
fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, r) if r != 11 => "st",
        (2, r) if r != 12 => "nd",
        (3, r) if r != 13 => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// Text safe for an SVG `<text>`: no control characters (which XML forbids), one line.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A token's text for a label: visible whitespace, at most `max` characters.
fn token_label(text: &str, max: usize) -> String {
    let shown: String = text
        .trim_matches(' ')
        .chars()
        .map(|c| match c {
            '\n' => '↵',
            '\t' => '⇥',
            '\r' => '␍',
            c if c.is_control() => '�',
            c => c,
        })
        .collect();
    if shown.is_empty() {
        "␣".to_string()
    } else {
        truncate(&shown, max)
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const K: f64 = 2.870978885078724e-21;

    /// Token `i` of row `seq`: entropy and energy vary with i; the chosen token is at rank
    /// i % 3 of five alternatives, except every fourth token (4, 8, ...), which is outside them.
    fn record(seq: usize, i: usize, entropy: f64, energy: Option<f64>) -> TokenRecord {
        let chosen = 1000 + i as u32;
        let in_top = i == 0 || !i.is_multiple_of(4);
        let probs: [f64; 5] = [0.45, 0.2, 0.1, 0.05, 0.02];
        let top: Vec<_> = probs
            .iter()
            .enumerate()
            .map(|(r, &p)| {
                let id = if in_top && r == i % 3 {
                    chosen
                } else {
                    5000 + (i * 10 + r) as u32
                };
                json!({"token_id": id, "text": format!("alt{r}"), "prob": p})
            })
            .collect();
        let prob: f64 = if in_top { probs[i % 3] } else { 0.004 };
        serde_json::from_value(json!({
            "seq": seq, "index": i, "position": 5 + i, "token_id": chosen,
            "text": format!(" tok{i}"), "eos": false,
            "phase": if i == 0 { "prefill" } else { "decode" },
            "entropy_bits": entropy, "sampling_entropy_bits": entropy * 0.7,
            "surprisal_bits": -prob.log2(), "prob": prob, "top": top,
            "t_start_s": i as f64 * 0.01, "t_end_s": (i + 1) as f64 * 0.01,
            "step_tokens": 1, "energy_j": energy, "energy_estimated": true,
            "energy_resolved": false, "meter_gap": false,
            "landauer_j": entropy * K, "landauer_gap": null
        }))
        .expect("a token record")
    }

    /// n tokens of one row: entropy 0.5..5.5 bits, energy 0.1 + 0.01 i J (the first 0.9 J).
    fn tokens(n: usize) -> Vec<TokenRecord> {
        (0..n)
            .map(|i| {
                let e = if i == 0 { 0.9 } else { 0.1 + 0.01 * i as f64 };
                record(0, i, 0.5 + (i * 7 % 11) as f64 * 0.5, Some(e))
            })
            .collect()
    }

    fn without_energy(mut t: Vec<TokenRecord>) -> Vec<TokenRecord> {
        t.iter_mut().for_each(|t| t.energy_j = None);
        t
    }

    fn zero_entropy(mut t: Vec<TokenRecord>) -> Vec<TokenRecord> {
        for t in &mut t {
            t.entropy_bits = 0.0;
            t.surprisal_bits = 0.0;
            t.prob = 1.0;
        }
        t
    }

    /// Checks the document is one parsable SVG and returns it trimmed.
    fn valid(svg: &str) -> &str {
        let doc = trim_svg_header(svg);
        assert!(
            doc.starts_with("<svg"),
            "not an SVG: {}",
            &doc[..doc.len().min(80)]
        );
        assert!(doc.trim_end().ends_with("</svg>"));
        usvg::Tree::from_str(doc, &usvg::Options::default()).expect("usvg parses the figure");
        doc
    }

    /// The texts of the document's <text> elements.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .map(|s| {
                let body = &s[s.find('>').unwrap() + 1..];
                body[..body.find("</text>").unwrap()].trim().to_string()
            })
            .collect()
    }

    /// The exponents of the "10ⁿ" tick labels.
    fn exponents(svg: &str) -> Vec<i32> {
        texts(svg)
            .iter()
            .filter_map(|t| t.strip_prefix("10"))
            .filter(|e| !e.is_empty() && e.chars().all(|c| "⁻⁰¹²³⁴⁵⁶⁷⁸⁹".contains(c)))
            .map(|e| {
                let digits: String = e
                    .chars()
                    .map(|c| match c {
                        '⁻' => '-',
                        c => char::from_digit(
                            "⁰¹²³⁴⁵⁶⁷⁸⁹".chars().position(|d| d == c).unwrap() as u32,
                            10,
                        )
                        .unwrap(),
                    })
                    .collect();
                digits.parse().unwrap()
            })
            .collect()
    }

    /// The point lists of the polylines stroked in `color` ("#RRGGBB").
    fn polylines(svg: &str, color: &str) -> Vec<Vec<(i32, i32)>> {
        svg.split("<polyline")
            .skip(1)
            .map(|s| &s[..s.find("/>").unwrap()])
            .filter(|s| s.contains(&format!("stroke=\"{color}\"")))
            .map(|s| {
                let p = &s[s.find("points=\"").unwrap() + 8..];
                p[..p.find('"').unwrap()]
                    .split_whitespace()
                    .map(|xy| {
                        let (x, y) = xy.split_once(',').unwrap();
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect()
            })
            .collect()
    }

    fn count(svg: &str, needle: &str) -> usize {
        svg.matches(needle).count()
    }

    #[test]
    fn sequence_draws_bits_and_energy_panels() {
        let t = tokens(40);
        let svg = sequence_svg(&t).unwrap();
        let doc = valid(&svg);
        let all = texts(doc).join("\n");
        for label in [
            "entropy H (mean",
            "surprisal (mean",
            "token index",
            "mJ",
            "bits",
            "ESTIMATED",
            "prefill, with the prompt pass (900 mJ)",
        ] {
            assert!(all.contains(label), "missing {label:?} in {all}");
        }
        assert!(!all.contains("no energy meter"));
        // One energy bar per token (energy green for decode, brown for the prefill token).
        assert_eq!(
            count(doc, "fill=\"#2C962C\" stroke=\"none\"/>") - 1,
            39,
            "decode bars (+ legend key)"
        );
        // The entropy line has a point per token.
        let lines = polylines(doc, "#1F77B4");
        assert!(
            lines.iter().any(|l| l.len() == 40),
            "no 40-point entropy line"
        );
    }

    #[test]
    fn sequence_without_energy_says_no_energy_meter() {
        let svg = sequence_svg(&without_energy(tokens(12))).unwrap();
        let all = texts(valid(&svg)).join("\n");
        assert!(all.contains("no energy meter"));
        assert!(!all.contains("decode (mean"));
    }

    #[test]
    fn sequence_of_a_batch_shows_the_first_row() {
        let mut t: Vec<TokenRecord> = (0..6).map(|i| record(1, i, 1.0, Some(0.1))).collect();
        t.extend((0..9).map(|i| record(0, i, 2.0, Some(0.1))));
        let svg = sequence_svg(&t).unwrap();
        let all = texts(valid(&svg)).join("\n");
        assert!(
            all.contains("9 tokens of row 0 (the trace holds 2 rows)"),
            "{all}"
        );
    }

    #[test]
    fn histogram_marks_the_means() {
        let t = tokens(30);
        let me = t.iter().map(|t| t.entropy_bits).sum::<f64>() / 30.0;
        let ms = t.iter().map(|t| t.surprisal_bits).sum::<f64>() / 30.0;
        let svg = bits_histogram_svg(&t).unwrap();
        let all = texts(valid(&svg)).join("\n");
        assert!(all.contains(&format!("mean entropy {me:.2} bits")), "{all}");
        assert!(
            all.contains(&format!("mean surprisal {ms:.2} bits")),
            "{all}"
        );
        assert!(all.contains("bits per token") && all.contains("30 tokens"));
        // Entropies are 0.5, 1.0, ... 5.5 bits (8 of them 3 times, 3 twice), the largest
        // surprisal -log2(0.004) = 7.97 bits: bins of 0.3 bits, 27 of them.
        assert!(all.contains("bins of 0.3 bits"), "{all}");
        let heights = |fill: &str| -> Vec<i32> {
            svg.split("<rect")
                .skip(1)
                .filter(|s| s.contains(fill))
                .map(|s| {
                    let v = &s[s.find(" height=\"").unwrap() + 9..];
                    v[..v.find('"').unwrap()].parse().unwrap()
                })
                .collect()
        };
        let mut entropy = heights("opacity=\"0.55\" fill=\"#1F77B4\"");
        assert_eq!(entropy.len(), 11, "one bar per distinct entropy");
        entropy.sort();
        let (short, tall) = (entropy[0], entropy[10]);
        assert_eq!(entropy.iter().filter(|&&h| h == short).count(), 3);
        assert!(
            (tall as f64 / short as f64 - 1.5).abs() < 0.05,
            "{entropy:?}"
        );
        // Surprisals: 1.15, 2.32, 3.32 and 7.97 bits, drawn as outlines (legend key aside).
        assert_eq!(heights("fill=\"none\" stroke=\"#E67814\"").len(), 4 + 1);
    }

    #[test]
    fn cumulative_spans_both_curves_and_states_the_ratio() {
        let t = tokens(50);
        let bits: f64 = t.iter().map(|t| t.entropy_bits).sum();
        let joules: f64 = t.iter().map(|t| t.energy_j.unwrap()).sum();
        let svg = cumulative_svg(&t, K).unwrap();
        let doc = valid(&svg);
        let all = texts(doc).join("\n");
        assert!(
            all.contains("Landauer yardstick k_B·T·ln 2 per bit"),
            "{all}"
        );
        let ratio = format!("measured / Landauer ≈ {:.1e}", joules / (bits * K));
        assert!(all.contains(&ratio), "{ratio} not in {all}");
        assert!(all.contains("cumulative energy (J)") && all.contains("cumulative entropy (bits)"));
        // The log axis spans both: from below the first Landauer point to above the total.
        let e = exponents(doc);
        let (lo, hi) = (*e.iter().min().unwrap(), *e.iter().max().unwrap());
        assert!(lo <= -20 && hi >= 0, "ticks 10^{lo}..10^{hi}");
        // Both curves have a point per token (the first token has bits > 0).
        assert_eq!(
            polylines(doc, "#C82828").iter().map(|l| l.len()).max(),
            Some(50)
        );
        assert_eq!(
            polylines(doc, "#7850B4").iter().map(|l| l.len()).max(),
            Some(50)
        );
    }

    #[test]
    fn cumulative_without_energy_draws_only_landauer() {
        let svg = cumulative_svg(&without_energy(tokens(20)), K).unwrap();
        let doc = valid(&svg);
        let all = texts(doc).join("\n");
        assert!(all.contains("Landauer yardstick"));
        assert!(all.contains("no energy meter: only the Landauer yardstick is drawn"));
        assert!(!all.contains("measured / Landauer"));
        assert!(polylines(doc, "#C82828").is_empty());
    }

    #[test]
    fn galton_draws_one_path_through_the_chosen_ranks() {
        let t = tokens(30);
        let svg = galton_svg(&t, 24).unwrap();
        let doc = valid(&svg);
        let all = texts(doc);
        for label in ["1st", "2nd", "3rd", "4th", "5th", "other"] {
            assert!(all.iter().any(|t| t == label), "no rank label {label}");
        }
        assert!(
            all.iter().any(|t| t == "tok3"),
            "the chosen texts are written on top"
        );
        assert!(all.join(" ").contains("first 24 of 30 tokens"));
        let paths = polylines(doc, "#D62728");
        assert_eq!(paths.len(), 1, "one chosen path");
        let path = &paths[0];
        assert_eq!(path.len(), 24, "one point per step");
        // x increases step by step; y follows the rank: i % 3, or "other" for i = 4, 8, ...
        assert!(path.windows(2).all(|w| w[1].0 > w[0].0));
        let y = |i: usize| path[i].1;
        assert!(y(0) < y(1) && y(1) < y(2), "ranks 1st, 2nd, 3rd go down");
        assert_eq!(y(0), y(3));
        assert_eq!(y(4), y(8));
        assert!(
            (0..24)
                .filter(|i| i % 4 != 0 || *i == 0)
                .all(|i| y(i) < y(4)),
            "other is the lowest row"
        );
        // The chosen pegs are ringed in the path's colour, one per step.
        assert_eq!(
            count(doc, "fill=\"none\" stroke=\"#D62728\" stroke-width=\"2\"/>"),
            24
        );
    }

    #[test]
    fn galton_of_a_long_run_has_no_texts_and_copes_without_alternatives() {
        let t = tokens(100);
        let doc = galton_svg(&t, 100).unwrap();
        assert_eq!(polylines(valid(&doc), "#D62728")[0].len(), 100);
        assert!(!texts(&doc).iter().any(|t| t == "tok3"));
        let mut bare = tokens(5);
        bare.iter_mut().for_each(|t| t.top.clear());
        let doc = galton_svg(&bare, 10).unwrap();
        assert!(texts(valid(&doc)).iter().any(|t| t == "other"));
        assert_eq!(polylines(&doc, "#D62728")[0].len(), 5);
    }

    #[test]
    fn ladder_spans_twenty_decades_with_values_and_ratios() {
        let bar = |label: &str, j: f64, low, high| LadderBar {
            label: label.into(),
            j_per_token: j,
            low,
            high,
            note: format!("note for {label}"),
        };
        let bars = [
            bar("measured", 0.23, Some(0.2), Some(0.3)),
            bar("roofline floor", 1e-3, None, Some(2e-3)),
            bar("Landauer", 1e-20, None, None),
        ];
        let svg = ladder_svg("Energy per token", &bars).unwrap();
        let doc = valid(&svg);
        let all = texts(doc);
        for want in [
            "measured",
            "roofline floor",
            "Landauer",
            "2.3e-1 J",
            "1.0e-3 J",
            "1.0e-20 J",
            "× 230",
            "× 1.0e17",
            "note for Landauer",
        ] {
            assert!(all.iter().any(|t| t == want), "no {want:?} in {all:?}");
        }
        let e = exponents(doc);
        assert!(
            *e.iter().min().unwrap() <= -20 && *e.iter().max().unwrap() >= 0,
            "{e:?}"
        );
        // Bars top to bottom in order, longest first here.
        let rects: Vec<(i32, i32)> = doc
            .split("<rect")
            .skip(1)
            .filter(|s| s.contains("fill=\"#4682B4\""))
            .map(|s| {
                let attr = |a: &str| {
                    let v = &s[s.find(&format!(" {a}=\"")).unwrap() + a.len() + 3..];
                    v[..v.find('"').unwrap()].parse::<i32>().unwrap()
                };
                (attr("y"), attr("width"))
            })
            .collect();
        assert_eq!(rects.len(), 3);
        assert!(rects[0].0 < rects[1].0 && rects[1].0 < rects[2].0);
        assert!(rects[0].1 > rects[1].1 && rects[1].1 > rects[2].1 && rects[2].1 > 0);
    }

    #[test]
    fn ladder_copes_with_missing_values() {
        let none = ladder_svg("t", &[]).unwrap();
        assert!(texts(valid(&none)).join(" ").contains("no data"));
        let bars = [
            LadderBar {
                label: "a".into(),
                j_per_token: 0.0,
                low: None,
                high: None,
                note: String::new(),
            },
            LadderBar {
                label: "b".into(),
                j_per_token: 5.0,
                low: Some(f64::NAN),
                high: Some(-1.0),
                note: String::new(),
            },
        ];
        let doc = ladder_svg("t", &bars).unwrap();
        assert!(texts(valid(&doc)).iter().any(|t| t == "no value"));
        let one = [LadderBar {
            label: "only".into(),
            j_per_token: 1.0,
            low: None,
            high: None,
            note: "n".into(),
        }];
        valid(&ladder_svg("t", &one).unwrap());
    }

    fn sweep_row(batch: usize, tps: f64, wh: Option<f64>) -> SweepRow {
        serde_json::from_value(json!({
            "batch": batch, "runs": 3, "prompt_tokens": 10, "generated_tokens": 64,
            "prefill_s": 0.1, "prefill_tokens_per_s": 100.0, "prefill_energy_j": 1.0,
            "decode_window_s": 3.0, "decode_tokens_per_s": tps, "mean_power_w": 20.0,
            "joules_per_token": wh.map(|w| 3600.0 / w), "active_joules_per_token": null,
            "tokens_per_wh": wh, "mean_entropy_bits": 2.0, "bits_per_joule": 10.0,
            "landauer_gap": 1e19, "steady": true
        }))
        .expect("a sweep row")
    }

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

    #[test]
    fn degenerate_inputs_draw_without_panicking() {
        let cases: Vec<(&str, Vec<TokenRecord>)> = vec![
            ("empty", vec![]),
            ("one", tokens(1)),
            ("two", tokens(2)),
            ("no energy", without_energy(tokens(10))),
            ("zero entropy", zero_entropy(tokens(10))),
            (
                "one, zero entropy, no energy",
                without_energy(zero_entropy(tokens(1))),
            ),
        ];
        for (what, t) in &cases {
            for (figure, svg) in [
                ("sequence", sequence_svg(t)),
                ("histogram", bits_histogram_svg(t)),
                ("cumulative", cumulative_svg(t, K)),
                ("cumulative, no yardstick", cumulative_svg(t, 0.0)),
                ("galton", galton_svg(t, 48)),
                ("galton, no steps", galton_svg(t, 0)),
            ] {
                let svg = svg.unwrap_or_else(|e| panic!("{figure} of {what}: {e}"));
                valid(&svg);
            }
        }
        let no_data = |svg: String| texts(valid(&svg)).join(" ").contains("no data");
        assert!(no_data(sequence_svg(&[]).unwrap()));
        assert!(no_data(bits_histogram_svg(&[]).unwrap()));
        assert!(no_data(galton_svg(&tokens(3), 0).unwrap()));
        let zero = cumulative_svg(&zero_entropy(tokens(5)), K).unwrap();
        assert!(texts(valid(&zero)).join(" ").contains("zero entropy"));
    }

    #[test]
    fn awkward_token_texts_stay_valid_xml() {
        let mut t = tokens(6);
        let nasty = [
            "<b>&amp;\"'",
            "\u{1}\u{7}",
            "\n\n",
            "",
            "   ",
            "\u{fffd}é漢",
        ];
        for (t, s) in t.iter_mut().zip(nasty) {
            t.text = s.to_string();
            t.top[0].text = s.to_string();
        }
        let svg = galton_svg(&t, 10).unwrap();
        let all = texts(valid(&svg));
        assert!(all.iter().any(|s| s == "↵↵") && all.iter().any(|s| s == "␣"));
        valid(&sequence_svg(&t).unwrap());
        let bars = [LadderBar {
            label: "<x>\u{2}".into(),
            j_per_token: 1.0,
            low: None,
            high: None,
            note: "&".into(),
        }];
        valid(&ladder_svg("a\u{0}b", &bars).unwrap());
    }

    #[test]
    fn svg_to_png_writes_a_png_at_twice_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let svg = ladder_svg(
            "ladder",
            &[LadderBar {
                label: "x".into(),
                j_per_token: 0.5,
                low: None,
                high: None,
                note: String::new(),
            }],
        )
        .unwrap();
        let height: u32 = {
            let s = &svg[svg.find("height=\"").unwrap() + 8..];
            s[..s.find('"').unwrap()].parse().unwrap()
        };
        let path = dir.path().join("ladder.png");
        svg_to_png(&svg, &path).unwrap();
        let png = std::fs::read(&path).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        assert_eq!(
            (be(&png[16..20]), be(&png[20..24])),
            (2 * WIDTH, 2 * height)
        );
        let one = dir.path().join("one.png");
        svg_to_png_scaled(&svg, &one, 1.0).unwrap();
        assert_eq!(be(&std::fs::read(&one).unwrap()[16..20]), WIDTH);

        let bad = dir.path().join("missing").join("x.png");
        let e = svg_to_png(&svg, &bad).unwrap_err().to_string();
        assert!(
            e.contains(&bad.display().to_string()) && !e.contains('\n'),
            "{e}"
        );
        let e = svg_to_png("<svg", &path).unwrap_err().to_string();
        assert!(e.contains("ladder.png") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn trim_svg_header_strips_the_declaration() {
        let doc = "<?xml version=\"1.0\"?>\n<!-- c -->\n<svg width=\"1\"></svg>";
        assert_eq!(trim_svg_header(doc), "<svg width=\"1\"></svg>");
        assert_eq!(trim_svg_header("  <svg/>"), "<svg/>");
        let fig = sequence_svg(&tokens(3)).unwrap();
        assert_eq!(trim_svg_header(&fig), fig.as_str());
    }

    #[test]
    fn long_titles_and_notes_wrap() {
        let px = |t: &str| t.chars().count() as f64 * 10.0;
        assert_eq!(wrap("aa bb cc", 50.0, px, 2), ["aa bb", "cc"]);
        assert_eq!(wrap("aa bb cc dd ee ff", 50.0, px, 2), ["aa bb", "cc d…"]);
        assert_eq!(wrap("abcdefghij", 50.0, px, 1), ["abcd…"]);
        assert!(wrap("", 50.0, px, 2).is_empty());
        let title = "Batch 1: measured, roofline floor on Generic DDR5 server CPU (AMD EPYC 9654 class, 12 x DDR5-4800), and Landauer at 300 K for this model";
        let note = "ESTIMATED (CPU-time model), not a meter reading: energy is process CPU time times 10 W per busy core";
        let bars = [LadderBar {
            label: "measured".into(),
            j_per_token: 0.33,
            low: None,
            high: None,
            note: note.into(),
        }];
        let svg = ladder_svg(title, &bars).unwrap();
        let all = texts(valid(&svg));
        // The title on two lines.
        let pieces: Vec<&String> = all
            .iter()
            .filter(|t| t.len() > 12 && title.contains(t.trim_end_matches('…')))
            .collect();
        assert_eq!(pieces.len(), 2, "{all:?}");
        assert!(
            pieces[0].starts_with("Batch 1: measured") && pieces[1].ends_with("for this model")
        );
        // Every title and note line fits the figure (by the estimate the layout uses).
        for t in &all {
            assert!(text_px(t, TITLE_PT) * 1.1 < WIDTH as f64, "too wide: {t}");
        }
        assert!(all
            .iter()
            .any(|t| t.starts_with("ESTIMATED (CPU-time model)")));
        assert!(
            all.iter().any(|t| t.contains("busy core")),
            "the note's second line: {all:?}"
        );
    }

    #[test]
    fn number_helpers() {
        assert_eq!(pow10(-20), "10⁻²⁰");
        assert_eq!(pow10(0), "10⁰");
        assert_eq!(pow10(19), "10¹⁹");
        assert_eq!(sci(0.23), "2.3e-1");
        assert_eq!(
            [1.12, 19.4, 163.0, 0.236, 4100.0, 1.4e16, 0.001].map(ratio_text),
            ["1.1", "19", "160", "0.24", "4.1e3", "1.4e16", "1.0e-3"]
        );
        assert_eq!(fmt_num(0.30000000000000004), "0.3");
        assert_eq!(fmt_num(12.0), "12");
        assert_eq!(fmt_num(1234.6), "1235");
        assert_eq!(fmt_num(0.00123), "0.00123");
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(
            [1, 2, 3, 4, 11, 12, 13, 21, 22, 111].map(ordinal),
            ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "111th"]
        );
        assert_eq!(nice_bin(0.26), 0.25);
        assert_eq!(nice_bin(0.7), 0.6);
        assert_eq!(
            int_ticks(-0.5, 9.5, 16),
            (0..10).map(f64::from).collect::<Vec<_>>()
        );
        assert_eq!(
            int_ticks(-0.5, 59.5, 16),
            (0..12).map(|i| f64::from(i) * 5.0).collect::<Vec<_>>()
        );
        let (bold, light) = decade_ticks(1e-21, 10.0, 12);
        assert_eq!(light.len(), 23);
        assert!(bold.len() <= 12 && bold.contains(&1.0));
    }
}
