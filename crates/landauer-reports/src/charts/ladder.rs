//! The ladder: joules per token, rung by rung, on a log axis.

use super::axes::{decade_label, decade_ticks, frame, styled_mesh, Ticked};
use super::canvas::{header, no_data, render, title_lines, TITLE_LINE};
use super::style::{text_px, text_style, BAR, INK, LABEL_PT, MEASURED, MUTED, SMALL_PT, WIDTH};
use super::text::{clean, ratio_text, sci, truncate, wrap};
use anyhow::Result;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One rung of the energy ladder: joules per token, with an optional range.
#[derive(Debug, Clone, PartialEq)]
pub struct LadderBar {
    pub label: String,
    pub j_per_token: f64,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub note: String,
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charts::style::TITLE_PT;
    use crate::charts::testing::*;

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

    #[test]
    fn long_titles_and_notes_wrap() {
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
}
