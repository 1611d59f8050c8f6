//! The distribution of bits per token.

use super::axes::{frame, int_ticks, nice_bin, nice_ticks, styled_mesh, Ticked};
use super::canvas::{header, no_data, panel_caption, render};
use super::data::fin;
use super::legend::{legend, Key};
use super::style::{text_px, text_style, ENTROPY, SMALL_PT, SURPRISAL, WIDTH};
use super::text::{fmt_num, plural};
use anyhow::Result;
use landauer_trace::TokenRecord;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charts::testing::*;

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
}
