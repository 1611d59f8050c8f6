//! The sequence: entropy, surprisal and energy per token.

use super::axes::{frame, int_ticks, nice_ticks, styled_mesh, Ticked};
use super::canvas::{header, no_data, panel_caption, render};
use super::data::{fin, first_row, mean};
use super::legend::{legend, Key};
use super::style::{text_style, CAPTION_PT, ENERGY, ENTROPY, MUTED, PREFILL, SURPRISAL, WIDTH};
use super::text::{fmt_num, plural};
use anyhow::Result;
use landauer_trace::TokenRecord;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charts::testing::*;

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
}
