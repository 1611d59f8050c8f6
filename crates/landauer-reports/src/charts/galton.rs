//! The Galton board: alternatives as pegs, the sampler's path through them.

use super::axes::{frame, int_ticks, styled_mesh, Ticked};
use super::canvas::{header, no_data, render};
use super::data::{fin, first_row};
use super::style::{
    text_px, text_style, GRID_LIGHT, INK, MUTED, PATH, PEG, SMALL_PT, WIDTH, Y_AREA,
};
use super::text::{ordinal, plural, token_label};
use anyhow::Result;
use landauer_trace::TokenRecord;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charts::testing::*;

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
}
