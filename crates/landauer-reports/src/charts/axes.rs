//! Axes: the figures' chart frame and mesh, axes with the ticks given ([`Ticked`]), and the
//! choice of ticks (1-2-5 steps, whole numbers, decades) and histogram bins.

use super::canvas::Area;
use super::style::{desc_style, label_style, GRID_BOLD, GRID_LIGHT, Y_AREA};
use super::text::{fmt_num, pow10};
use plotters::chart::MeshStyle;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged, ValueFormatter};
use plotters::prelude::*;

/// A figure's plot: both axes with the ticks given.
pub(super) type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<Ticked, Ticked>>;

/// A chart on `area` in the figures' frame: margins of 10 px on the left, 25 on the right and
/// `top` and `bottom` as given; `x_labels` px below the plot for the x tick labels and axis
/// title, [`Y_AREA`] px left of it for the y ones.
pub(super) fn frame<'a, 'b, 'c>(
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
pub(super) fn styled_mesh<'a, 'b, X, Y, DB>(
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

/// A linear axis' tick label.
fn tick_label(v: &f64) -> String {
    fmt_num(*v)
}

/// A log axis' tick label: its decade, "10⁻²⁰".
pub(super) fn decade_label(v: &f64) -> String {
    pow10(v.log10().round() as i32)
}

/// A linear or log axis with the tick positions given (plotters' own choice of ticks cannot be
/// told to keep to whole ranks or decades).
#[derive(Clone)]
pub(super) struct Ticked {
    range: std::ops::Range<f64>,
    log: bool,
    bold: Vec<f64>,
    light: Vec<f64>,
}

impl Ticked {
    pub(super) fn linear(range: std::ops::Range<f64>, ticks: Vec<f64>) -> Self {
        Ticked {
            range,
            log: false,
            bold: ticks,
            light: Vec::new(),
        }
    }

    /// `range` must be positive; `light` are grid lines without labels.
    pub(super) fn log(range: std::ops::Range<f64>, bold: Vec<f64>, light: Vec<f64>) -> Self {
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

/// Tick positions from `lo` to `hi`, at most `max` of them, at a 1-2-5 step.
pub(super) fn nice_ticks(lo: f64, hi: f64, max: usize) -> Vec<f64> {
    ticks(lo, hi, max, -12)
}

/// Whole-number tick positions from `lo` to `hi`, at most about `max` of them, at a 1-2-5 step.
pub(super) fn int_ticks(lo: f64, hi: f64, max: usize) -> Vec<f64> {
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
pub(super) fn decade_ticks(lo: f64, hi: f64, max: usize) -> (Vec<f64>, Vec<f64>) {
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
pub(super) fn nice_bin(w: f64) -> f64 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_and_bins() {
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
