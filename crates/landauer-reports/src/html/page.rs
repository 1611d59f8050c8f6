//! The page's parts: its head (title, style sheet, navigation) and foot, HTML escaping,
//! summary cards, tables of settings, lists of caveats, figure sections, and the figures
//! collected for the HTML and for PNG.

use crate::charts;
use std::fmt::Write as _;

/// Escapes text for HTML content and attribute values.
pub(super) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            '\n' => o.push_str("&#10;"),
            c if c.is_control() => {}
            c => o.push(c),
        }
    }
    o
}

/// The page's style sheet (report.css).
const STYLE: &str = include_str!("report.css");

pub(super) fn fmt_opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "–".into())
}

/// The figures a report holds, by name, for the HTML and for --png.
pub(super) struct Figures(pub(super) Vec<(&'static str, String)>);

impl Figures {
    pub(super) fn add(&mut self, name: &'static str, svg: String) -> String {
        let html = charts::trim_svg_header(&svg).to_string();
        self.0.push((name, svg));
        html
    }
}

pub(super) fn figure(
    out: &mut String,
    id: &str,
    title: &str,
    lead: &str,
    svg: &str,
    caption: &str,
) {
    let _ = writeln!(
        out,
        r#"<section id="{id}"><h2>{}</h2><p class="lead">{}</p><figure>{svg}<figcaption>{}</figcaption></figure></section>"#,
        esc(title),
        esc(lead),
        esc(caption)
    );
}

pub(super) fn card(out: &mut String, value: String, label: &str) {
    let _ = write!(
        out,
        r#"<div class="card"><b>{}</b><span>{}</span></div>"#,
        esc(&value),
        esc(label)
    );
}

pub(super) fn settings_table(out: &mut String, rows: &[(&str, String)]) {
    out.push_str("<table>");
    for (k, v) in rows {
        let _ = write!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    }
    out.push_str("</table>");
}

pub(super) fn caveats_html(out: &mut String, caveats: &[String]) {
    out.push_str(r#"<h3>Caveats</h3><ul class="caveats">"#);
    for c in caveats {
        let _ = write!(out, "<li>{}</li>", esc(c));
    }
    out.push_str("</ul>");
}

/// A civil UTC date-time from Unix seconds (Howard Hinnant's days-from-civil, inverted):
/// written by hand to avoid a date crate for one line of a report.
pub(super) fn utc(unix_s: f64) -> String {
    let secs = unix_s.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

pub(super) fn page_head(out: &mut String, title: &str, subtitle: &str, nav: &[(&str, &str)]) {
    let _ = write!(
        out,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{}</title><style>{STYLE}</style></head><body><main>
<header><h1>{}</h1><p>{}</p></header><nav>"#,
        esc(title),
        esc(title),
        esc(subtitle)
    );
    for (id, label) in nav {
        let _ = write!(out, r##"<a href="#{id}">{}</a>"##, esc(label));
    }
    out.push_str("</nav>\n");
}

/// The page's foot. The version is this crate's, which is the workspace's, as the binary's is.
pub(super) fn page_foot(out: &mut String) {
    let _ = writeln!(
        out,
        "<footer>Written by landauer {} (self-contained: no scripts, no network).</footer></main></body></html>",
        env!("CARGO_PKG_VERSION")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_markup_out() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(esc("a\nb"), "a&#10;b");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0.0), "1970-01-01 00:00 UTC");
        // 2026-11-26 06:42 UTC.
        assert_eq!(utc(1_795_675_320.0), "2026-11-26 06:42 UTC");
        assert_eq!(utc(951_782_400.0), "2000-02-29 00:00 UTC");
    }
}
