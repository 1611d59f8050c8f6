//! The report of a study: what each precision and size buys. The figure, the cells with
//! their floors, one cell's ladder, and the study's settings and caveats.

use super::ladder::ladder_section;
use super::page::{caveats_html, esc, fmt_opt, page_foot, page_head, settings_table, Figures};
use crate::charts;
use crate::ladder::GapReport;
use landauer_trace::Study;
use std::fmt::Write as _;

pub(super) fn study_report(s: &Study, g: &GapReport, figs: &mut Figures) -> anyhow::Result<String> {
    let f = &s.file;
    let mut out = String::new();
    page_head(
        &mut out,
        &format!("landauer study report: {}", g.model),
        &format!(
            "{} cells on {} · quality on {}",
            f.cells.len(),
            g.device,
            f.reference
        ),
        &[
            ("study", "quality, energy, precision"),
            ("ladder", "ladder"),
            ("settings", "settings & caveats"),
        ],
    );
    let svg = figs.add("study", charts::study_svg_string(f)?);
    let _ = write!(
        out,
        r#"<section id="study"><h2>What each precision and size buys</h2><p class="lead">Quality is teacher-forced on {} ({} tokens): cross-entropy in bits per token, and KL divergence and top-1 agreement against each model's highest-precision cell. Energy is the decode window's J/token at each batch size{}.</p><figure>{svg}</figure>
<table><tr><th>model</th><th>quantize</th><th class="num">bits/weight</th><th class="num">batch</th><th class="num">decode tok/s</th><th class="num">J/token</th><th class="num">tokens/Wh</th><th class="num">floor J/token</th><th class="num">× floor</th><th class="num">cross-entropy bits</th><th class="num">KL bits</th><th class="num">top-1 %</th><th class="num">entropy error vs exact, mean / max bits</th><th>steady</th></tr>"#,
        esc(&f.reference),
        f.cells.first().map_or(0, |c| c.reference_tokens),
        if f.estimated { " (ESTIMATED)" } else { "" }
    );
    for (c, lr) in f.cells.iter().zip(&g.ladders) {
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td>{}</td><td class="num">{:.2}</td><td class="num">{}</td><td class="num">{:.1}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{:.3e}</td><td class="num">{}</td><td class="num">{:.3}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td></tr>"#,
            esc(&c.model),
            esc(c.quantize.as_deref().unwrap_or("as stored")),
            c.bits_per_weight,
            c.batch,
            c.decode_tokens_per_s,
            fmt_opt(c.joules_per_token, |v| format!("{v:.4}")),
            fmt_opt(c.tokens_per_wh, |v| format!("{v:.0}")),
            lr.ladder.floor.j_per_token,
            fmt_opt(lr.ladder.measured_over_floor, |v| format!("{v:.1}")),
            c.cross_entropy_bits,
            fmt_opt(c.kl_bits, |v| format!("{v:.4}")),
            fmt_opt(c.top1_agreement, |v| format!("{:.1}", v * 100.0)),
            c.entropy_error_vs_exact
                .as_ref()
                .map_or("–".to_string(), |e| format!(
                    "{:.4} / {:.4}",
                    e.mean_bits, e.max_bits
                )),
            if c.steady { "yes" } else { "no" }
        );
    }
    out.push_str("</table></section>\n");
    ladder_section(g, figs, &mut out)?;
    out.push_str(r#"<section id="settings"><h2>Settings and caveats</h2>"#);
    settings_table(
        &mut out,
        &[
            ("device", format!("{} ({} threads)", g.device, f.threads)),
            ("meter", f.meter.clone()),
            ("tokens per row", f.max_tokens.to_string()),
            ("runs per batch size", f.runs.to_string()),
            ("method", f.method.clone()),
            ("study", s.path.display().to_string()),
        ],
    );
    caveats_html(&mut out, &f.caveats);
    out.push_str("</section>\n");
    page_foot(&mut out);
    Ok(out)
}
