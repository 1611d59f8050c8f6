//! The report of a sweep: the batch-size curves and their table, the ladder, and the
//! sweep's settings and caveats.

use super::ladder::{footprint_cards, ladder_cards, ladder_section};
use super::page::{
    card, caveats_html, esc, fmt_opt, page_foot, page_head, settings_table, Figures,
};
use crate::charts;
use crate::ladder::GapReport;
use anyhow::Context;
use landauer_physics::floor::Ladder;
use landauer_trace::Sweep;
use std::fmt::Write as _;

/// The report of a sweep: summary, the batch-size curves and their table, the ladder,
/// settings and caveats.
pub(super) fn sweep_report(s: &Sweep, g: &GapReport, figs: &mut Figures) -> anyhow::Result<String> {
    let h = &s.file.header;
    let rows = s.rows();
    let mut out = String::new();
    let device = h.device_name.clone().unwrap_or_else(|| h.device.clone());
    page_head(
        &mut out,
        &format!("landauer sweep report: {}", h.model),
        &format!(
            "{} {} on {} · batch sizes {}",
            h.model,
            h.quantization,
            device,
            rows.iter()
                .map(|r| r.batch.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        &[
            ("summary", "summary"),
            ("sweep", "batch-size curves"),
            ("ladder", "ladder"),
            ("settings", "settings & caveats"),
        ],
    );
    let l = summary_section(s, g, &mut out)?;
    curves_section(s, g, figs, &mut out)?;
    ladder_section(g, figs, &mut out)?;
    settings_section(s, l, &mut out);
    page_foot(&mut out);
    Ok(out)
}

/// The summary: cards of the batch size with the most tokens/Wh, its ladder and its
/// footprint. Returns that batch size's ladder.
fn summary_section<'g>(
    s: &Sweep,
    g: &'g GapReport,
    out: &mut String,
) -> anyhow::Result<&'g Ladder> {
    let h = &s.file.header;
    let rows = s.rows();
    let est = if h.estimated { " (ESTIMATED)" } else { "" };
    out.push_str(r#"<section id="summary"><h2>Summary</h2><div class="cards">"#);
    let best = rows
        .iter()
        .filter(|r| r.tokens_per_wh.is_some())
        .max_by(|a, b| a.tokens_per_wh.partial_cmp(&b.tokens_per_wh).unwrap())
        .or(rows.last())
        .context("no rows")?;
    card(
        out,
        fmt_opt(best.tokens_per_wh, |v| format!("{v:.0}")),
        &format!("tokens/Wh at batch {}{est}", best.batch),
    );
    card(
        out,
        format!("{:.1}", best.decode_tokens_per_s),
        &format!("decode tokens/s at batch {}", best.batch),
    );
    let l = &g
        .ladders
        .iter()
        .find(|r| r.batch == best.batch)
        .unwrap_or(&g.ladders[0])
        .ladder;
    ladder_cards(out, l);
    footprint_cards(out, g, best.joules_per_token, est);
    let _ = writeln!(
        out,
        r#"</div><p class="lead">Money and carbon at {}.</p></section>"#,
        esc(&g.footprint.describe())
    );
    Ok(l)
}

/// The batch-size curves and a table row per batch size.
fn curves_section(
    s: &Sweep,
    g: &GapReport,
    figs: &mut Figures,
    out: &mut String,
) -> anyhow::Result<()> {
    let rows = s.rows();
    let svg = figs.add("sweep", charts::sweep_curves_svg(&s.title(), rows)?);
    let _ = write!(
        out,
        r#"<section id="sweep"><h2>Tokens per watt-hour and speed against batch size</h2><p class="lead">With the founding figures (a desk RTX 3090 at ~160 tokens/Wh, an A100 cluster at ~1,500) and the ML.ENERGY leaderboard's Llama-3.1-8B on one H100 (vLLM) for reference.</p><figure>{svg}</figure>
<table><tr><th class="num">batch</th><th class="num">decode tok/s</th><th class="num">power W</th><th class="num">J/token</th><th class="num">tokens/Wh</th><th class="num">floor J/token</th><th class="num">× floor</th><th class="num">bits/token</th><th class="num">kWh/Mtok</th><th class="num">g CO2/Mtok</th><th class="num">cost/Mtok</th><th>steady</th></tr>"#
    );
    for (r, lr) in rows.iter().zip(&g.ladders) {
        let pm = r
            .joules_per_token
            .map(|j| g.footprint.per_million_tokens(j));
        let _ = write!(
            out,
            r#"<tr><td class="num">{}</td><td class="num">{:.1}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{:.3e}</td><td class="num">{}</td><td class="num">{:.3}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td></tr>"#,
            r.batch,
            r.decode_tokens_per_s,
            fmt_opt(r.mean_power_w, |v| format!("{v:.1}")),
            fmt_opt(r.joules_per_token, |v| format!("{v:.4}")),
            fmt_opt(r.tokens_per_wh, |v| format!("{v:.0}")),
            lr.ladder.floor.j_per_token,
            fmt_opt(lr.ladder.measured_over_floor, |v| format!("{v:.1}")),
            r.mean_entropy_bits,
            fmt_opt(pm.map(|m| m.kwh), |v| format!("{v:.3}")),
            fmt_opt(pm.map(|m| m.gco2), |v| format!("{v:.1}")),
            fmt_opt(pm.map(|m| m.cost), |v| format!("{v:.4}")),
            if r.steady { "yes" } else { "no" }
        );
    }
    out.push_str("</table></section>\n");
    Ok(())
}

/// The sweep's settings, as its header records them, and the caveats of the sweep and of
/// the ladder of the summary's batch size.
fn settings_section(s: &Sweep, l: &Ladder, out: &mut String) {
    let h = &s.file.header;
    out.push_str(r#"<section id="settings"><h2>Settings, meter and caveats</h2>"#);
    // Each value as JSON writes it (numbers in serde_json's shortest form), "–" for none.
    let v = |k: &str| {
        let value = match k {
            "method" => serde_json::Value::String(s.file.method.clone()),
            _ => serde_json::to_value(h)
                .ok()
                .and_then(|h| h.get(k).cloned())
                .unwrap_or_default(),
        };
        match value {
            serde_json::Value::Null => "–".to_string(),
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        }
    };
    settings_table(
        out,
        &[
            (
                "model",
                format!(
                    "{} ({}, {} parameters)",
                    v("model"),
                    v("quantization"),
                    v("parameters")
                ),
            ),
            (
                "device",
                format!(
                    "{} ({}), {} thread(s)",
                    v("device"),
                    v("device_name"),
                    v("threads")
                ),
            ),
            ("meter", format!("{} — {}", v("meter"), v("meter_reason"))),
            (
                "resolution",
                format!("counter updates every {} s", v("meter_resolution_s")),
            ),
            ("idle power", format!("{} W", v("idle_power_w"))),
            ("tokens per row", v("max_tokens")),
            ("method", v("method")),
            ("sweep", s.path.display().to_string()),
        ],
    );
    let mut caveats = s.file.caveats.clone();
    caveats.extend(l.caveats.iter().cloned());
    caveats_html(out, &caveats);
    out.push_str("</section>\n");
}
