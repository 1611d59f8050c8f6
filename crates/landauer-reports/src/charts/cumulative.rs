//! Cumulative joules against cumulative bits, with the Landauer line.

use super::axes::{decade_label, decade_ticks, frame, nice_ticks, styled_mesh, Chart, Ticked};
use super::canvas::{header, no_data, render};
use super::data::fin;
use super::legend::{legend_column, Key};
use super::style::{text_style, CAPTION_PT, INK, LANDAUER, MEASURED, MUTED, WIDTH};
use super::text::{fmt_num, plural, sci};
use anyhow::Result;
use landauer_trace::TokenRecord;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

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

/// A curve 2 px wide with a dot at its end (a curve of one point is just the dot).
fn curve_with_end(chart: &mut Chart<'_, '_>, points: &[(f64, f64)], color: RGBColor) -> Result<()> {
    chart.draw_series(LineSeries::new(points.to_vec(), color.stroke_width(2)))?;
    chart.draw_series(points.last().map(|&p| Circle::new(p, 4, color.filled())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charts::testing::*;

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
}
