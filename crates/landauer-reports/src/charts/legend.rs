//! Legends: a key before each entry's text. The report's figures put theirs in one line
//! above a plot or in a column over it ([`legend`], [`legend_column`]); the sweep figure puts
//! its own, in its own type and keys, in rows in a strip below its panels ([`strip`]).

use super::canvas::Area;
use super::style::{text_px, text_style, GRID_BOLD, INK, LABEL_PT};
use super::text::clean;
use anyhow::Result;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// What a legend entry shows beside its text.
#[derive(Clone, Copy)]
pub(super) enum Key {
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
pub(super) fn legend(root: &Area<'_>, items: &[(Key, String)], right: i32, y: i32) -> Result<()> {
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
pub(super) fn legend_column(
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

/// The sweep figure's legend: rows of entries centred in a framed strip below its panels.
/// Its keys (thin lines, triangles), type size and spacing are not the report legends', and
/// drawing both with one would change the figures, so it keeps its own.
pub(super) mod strip {
    use crate::charts::canvas::Area;
    use crate::charts::style::text_px;
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};

    type DrawResult<T> = Result<T, DrawingAreaErrorKind<std::io::Error>>;

    /// What a legend entry shows before its text.
    #[derive(Clone, Copy)]
    pub(in crate::charts) enum Key {
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
        KEY_W + text_px(text, LEGEND_FONT) as i32
    }

    /// The legend's entries (indices into `keys`) in rows at most `width` pixels wide.
    pub(in crate::charts) fn legend_rows(keys: &[(Key, &str)], width: i32) -> Vec<Vec<usize>> {
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
    pub(in crate::charts) fn legend_height(rows: usize) -> u32 {
        rows as u32 * LEGEND_ROW + 14
    }

    /// The legend in `area`: its rows centred, in one frame.
    pub(in crate::charts) fn draw_legend(
        area: &Area<'_>,
        keys: &[(Key, &str)],
        rows: &[Vec<usize>],
    ) -> DrawResult<()> {
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
                    Key::Triangle(c) => {
                        area.draw(&TriangleMarker::new((x + 10, y), 6, c.filled()))?
                    }
                }
                area.draw(&Text::new(text, (x + KEY_W, y), font.clone()))?;
                x += entry_width(text) + GAP;
            }
        }
        Ok(())
    }
}
