//! A figure's canvas: a white SVG document, its title and subtitle, panel captions, and a
//! "no data" figure for inputs with nothing to draw.

use super::style::{bold_style, text_px, text_style, CAPTION_PT, MUTED, SMALL_PT, TITLE_PT, WIDTH};
use super::text::{clean, wrap};
use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

pub(super) type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Draws into a fresh white SVG of `size` pixels and returns the document.
pub(super) fn render(
    size: (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> Result<()>,
) -> Result<String> {
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
pub(super) fn no_data(title: &str, message: &str) -> Result<String> {
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
pub(super) fn header<'a>(root: &Area<'a>, title: &str, subtitle: Option<&str>) -> Result<Area<'a>> {
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
pub(super) const TITLE_LINE: i32 = 32;

/// The title's lines in a figure `width` pixels wide: at most two.
pub(super) fn title_lines(title: &str, width: u32) -> Vec<String> {
    // Bold type is about a tenth wider.
    wrap(
        &clean(title),
        width as f64 - 40.0,
        |t| text_px(t, TITLE_PT) * 1.1,
        2,
    )
}

/// A panel's caption, left-aligned above its plot (y is the text's baseline region).
pub(super) fn panel_caption(root: &Area<'_>, text: &str, x: i32, y: i32) -> Result<()> {
    root.draw(&Text::new(
        clean(text),
        (x, y),
        bold_style(CAPTION_PT).pos(Pos::new(HPos::Left, VPos::Center)),
    ))?;
    Ok(())
}

/// The document from its `<svg` tag on, without an XML declaration, doctype or comment before
/// it, for inlining in HTML.
pub fn trim_svg_header(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg.trim_start(),
    }
}
