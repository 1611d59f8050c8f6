//! PNG: the figures rasterized with resvg, text in the system's fonts.

use anyhow::{anyhow, Result};
use resvg::{tiny_skia, usvg};
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// PNG pixels per SVG pixel.
const PNG_SCALE: f32 = 2.0;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charts::ladder::{ladder_svg, LadderBar};
    use crate::charts::style::WIDTH;

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
}
