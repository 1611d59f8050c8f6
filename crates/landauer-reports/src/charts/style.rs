//! The figures' look: their width, type sizes and palette, and text styles.

use plotters::prelude::*;

/// Width of every figure, pixels.
pub(super) const WIDTH: u32 = 1080;
/// The generic family the SVG asks for; svg_to_png maps it to an installed font.
const FONT: &str = "sans-serif";
/// Font sizes as plotters takes them (it writes font-size = size / 1.24).
pub(super) const TITLE_PT: f64 = 25.0;
pub(super) const CAPTION_PT: f64 = 19.0;
const DESC_PT: f64 = 18.0;
pub(super) const LABEL_PT: f64 = 16.5;
pub(super) const SMALL_PT: f64 = 15.5;
/// Pixels left of a plot for the y tick labels and the y axis title.
pub(super) const Y_AREA: u32 = 78;

pub(super) const INK: RGBColor = RGBColor(30, 30, 30);
pub(super) const MUTED: RGBColor = RGBColor(100, 100, 100);
pub(super) const GRID_BOLD: RGBColor = RGBColor(215, 215, 215);
pub(super) const GRID_LIGHT: RGBColor = RGBColor(238, 238, 238);
pub(super) const ENTROPY: RGBColor = RGBColor(31, 119, 180);
pub(super) const SURPRISAL: RGBColor = RGBColor(230, 120, 20);
pub(super) const ENERGY: RGBColor = RGBColor(44, 150, 44);
pub(super) const PREFILL: RGBColor = RGBColor(150, 90, 40);
pub(super) const MEASURED: RGBColor = RGBColor(200, 40, 40);
pub(super) const LANDAUER: RGBColor = RGBColor(120, 80, 180);
pub(super) const PEG: RGBColor = RGBColor(60, 100, 150);
/// The sampler's path in the Galton board (tests find the path by this colour).
pub(super) const PATH: RGBColor = RGBColor(214, 39, 40);
pub(super) const BAR: RGBColor = RGBColor(70, 130, 180);

pub(super) fn text_style(size: f64, color: RGBColor) -> TextStyle<'static> {
    (FONT, size).into_font().color(&color)
}

/// Titles and captions: bold, in ink.
pub(super) fn bold_style(size: f64) -> TextStyle<'static> {
    (FONT, size).into_font().style(FontStyle::Bold).color(&INK)
}

pub(super) fn label_style() -> TextStyle<'static> {
    text_style(LABEL_PT, INK)
}

pub(super) fn desc_style() -> TextStyle<'static> {
    text_style(DESC_PT, INK)
}

/// A rough width of `text` in pixels at plotters size `size` (DejaVu Sans averages ~0.55 em;
/// a little more, so that estimates err on the side of room).
pub(super) fn text_px(text: &str, size: f64) -> f64 {
    text.chars().count() as f64 * size / 1.24 * 0.57
}
