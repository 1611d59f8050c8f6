//! The report's figures, drawn with plotters into SVG strings (and rasterized for --png).
//!
//! Every figure is one `<svg>` document about 1080 px wide. plotters has no font backend here:
//! text is written as SVG `<text>` in the generic `sans-serif` family and laid out by whoever
//! displays the figure (a browser, or resvg with the system fonts for PNG). Degenerate inputs
//! (no tokens, no energy, zero entropy) give a small figure that says so, never an error.
//!
//! Inside, one module per figure (`sequence`, `histogram`, `cumulative`, `galton`, `ladder`,
//! `sweep`) draws on shared parts: the look (`style`), the canvas and its title (`canvas`),
//! axes and ticks (`axes`), legends (`legend`), and text and numbers (`text`); `png`
//! rasterizes a figure.

mod axes;
mod canvas;
mod data;
mod legend;
mod style;
#[cfg(test)]
mod testing;
mod text;

mod cumulative;
mod galton;
mod histogram;
mod ladder;
mod png;
mod sequence;
mod study;
mod sweep;

pub use canvas::trim_svg_header;
pub use cumulative::cumulative_svg;
pub use galton::galton_svg;
pub use histogram::bits_histogram_svg;
pub use ladder::{ladder_svg, LadderBar};
pub use png::{svg_to_png, svg_to_png_scaled};
pub use sequence::sequence_svg;
pub use study::{study_svg_string, write_study_svg};
pub use sweep::{sweep_curves_svg, sweep_svg_string, write_sweep_svg};

#[cfg(test)]
mod tests {
    use super::*;
    use landauer_trace::TokenRecord;
    use testing::*;

    #[test]
    fn degenerate_inputs_draw_without_panicking() {
        let cases: Vec<(&str, Vec<TokenRecord>)> = vec![
            ("empty", vec![]),
            ("one", tokens(1)),
            ("two", tokens(2)),
            ("no energy", without_energy(tokens(10))),
            ("zero entropy", zero_entropy(tokens(10))),
            (
                "one, zero entropy, no energy",
                without_energy(zero_entropy(tokens(1))),
            ),
        ];
        for (what, t) in &cases {
            for (figure, svg) in [
                ("sequence", sequence_svg(t)),
                ("histogram", bits_histogram_svg(t)),
                ("cumulative", cumulative_svg(t, K)),
                ("cumulative, no yardstick", cumulative_svg(t, 0.0)),
                ("galton", galton_svg(t, 48)),
                ("galton, no steps", galton_svg(t, 0)),
            ] {
                let svg = svg.unwrap_or_else(|e| panic!("{figure} of {what}: {e}"));
                valid(&svg);
            }
        }
        let no_data = |svg: String| texts(valid(&svg)).join(" ").contains("no data");
        assert!(no_data(sequence_svg(&[]).unwrap()));
        assert!(no_data(bits_histogram_svg(&[]).unwrap()));
        assert!(no_data(galton_svg(&tokens(3), 0).unwrap()));
        let zero = cumulative_svg(&zero_entropy(tokens(5)), K).unwrap();
        assert!(texts(valid(&zero)).join(" ").contains("zero entropy"));
    }

    #[test]
    fn awkward_token_texts_stay_valid_xml() {
        let mut t = tokens(6);
        let nasty = [
            "<b>&amp;\"'",
            "\u{1}\u{7}",
            "\n\n",
            "",
            "   ",
            "\u{fffd}é漢",
        ];
        for (t, s) in t.iter_mut().zip(nasty) {
            t.text = s.to_string();
            t.top[0].text = s.to_string();
        }
        let svg = galton_svg(&t, 10).unwrap();
        let all = texts(valid(&svg));
        assert!(all.iter().any(|s| s == "↵↵") && all.iter().any(|s| s == "␣"));
        valid(&sequence_svg(&t).unwrap());
        let bars = [LadderBar {
            label: "<x>\u{2}".into(),
            j_per_token: 1.0,
            low: None,
            high: None,
            note: "&".into(),
        }];
        valid(&ladder_svg("a\u{0}b", &bars).unwrap());
    }

    #[test]
    fn trim_svg_header_strips_the_declaration() {
        let doc = "<?xml version=\"1.0\"?>\n<!-- c -->\n<svg width=\"1\"></svg>";
        assert_eq!(trim_svg_header(doc), "<svg width=\"1\"></svg>");
        assert_eq!(trim_svg_header("  <svg/>"), "<svg/>");
        let fig = sequence_svg(&tokens(3)).unwrap();
        assert_eq!(trim_svg_header(&fig), fig.as_str());
    }
}
