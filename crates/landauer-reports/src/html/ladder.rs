//! The ladder in the report: its section (figure, rungs, ratios, hardware constants) and the
//! summary's cards of how far above the floor and Landauer a run is, and what a million of
//! its tokens cost in energy, carbon and money.

use super::page::{card, esc, fmt_opt, Figures};
use crate::charts::{self, LadderBar};
use crate::ladder::GapReport;
use anyhow::Context;
use landauer_physics::floor::{Ladder, RUNG_FLOOR, RUNG_FLOOR_COMPUTE, RUNG_FLOOR_MEMORY};
use std::fmt::Write as _;

/// The ladder's main rungs as bars: the floor's memory and compute parts are said in the
/// floor's note instead of bars of their own, so that the ratios between consecutive bars
/// are the ratios between rungs.
fn ladder_bars(l: &Ladder) -> Vec<LadderBar> {
    let part = |name: &str| {
        l.rungs
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.j_per_token)
    };
    l.rungs
        .iter()
        .filter(|r| r.name != RUNG_FLOOR_MEMORY && r.name != RUNG_FLOOR_COMPUTE)
        .map(|r| LadderBar {
            label: r.name.clone(),
            j_per_token: r.j_per_token,
            low: r.low,
            high: r.high,
            note: match (r.name == RUNG_FLOOR, part(RUNG_FLOOR_MEMORY), part(RUNG_FLOOR_COMPUTE)) {
                (true, Some(m), Some(c)) => {
                    format!("memory {m:.2e} J + compute {c:.2e} J (bytes and FLOPs of a decode step at the profile's pJ/bit and pJ/FLOP)")
                }
                _ => r.note.clone(),
            },
        })
        .collect()
}

/// The ladder's section: its figure (the largest batch's), its rungs and ratios, the floor's
/// tokens/Wh, and the hardware constants and model figures behind the floor.
pub(super) fn ladder_section(
    g: &GapReport,
    figs: &mut Figures,
    out: &mut String,
) -> anyhow::Result<()> {
    // The sweep's largest batch is the one nearest the floor; a trace has one ladder.
    let row = g
        .ladders
        .iter()
        .max_by_key(|r| r.batch)
        .context("no ladder")?;
    let l = &row.ladder;
    let svg = charts::ladder_svg(
        &format!(
            "J per token, batch {}: measured, roofline floor on {}, Landauer",
            row.batch, g.hardware.name
        ),
        &ladder_bars(l),
    )?;
    let svg = figs.add("ladder", svg);
    let _ = write!(
        out,
        r#"<section id="ladder"><h2>The ladder: how far above the floor, how far above Landauer</h2>
<p class="lead">Measured energy per token beside the roofline floor (the bytes a decode step must move × the memory's energy per bit, plus its FLOPs × the energy per FLOP, amortized over the batch) of this model on <b>{}</b> ({}), and the Landauer yardstick of the bits each token carries. Log scale.</p><figure>{svg}</figure>
<table><tr><th>rung</th><th class="num">J/token</th><th class="num">range</th><th>what it is</th></tr>"#,
        esc(&g.hardware.name),
        esc(&g.hardware_chosen)
    );
    for r in &l.rungs {
        let range = match (r.low, r.high) {
            (Some(a), Some(b)) => format!("{a:.2e} – {b:.2e}"),
            _ => String::new(),
        };
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td class="num">{:.3e}</td><td class="num">{range}</td><td>{}</td></tr>"#,
            esc(&r.name),
            r.j_per_token,
            esc(&r.note)
        );
    }
    out.push_str("</table><p>");
    for q in &l.ratios {
        let _ = write!(
            out,
            "{} / {} = <b>{:.3e}</b><br>",
            esc(&q.upper),
            esc(&q.lower),
            q.ratio
        );
    }
    let _ = write!(
        out,
        "Theoretical minimum for this model on this hardware at batch {}: <b>{:.3e} J/token</b>, i.e. <b>{:.3e} tokens/Wh</b>{}.</p>",
        row.batch,
        l.floor.j_per_token,
        l.min_tokens_per_wh,
        match l.measured_tokens_per_wh {
            Some(t) => format!(" (measured: {t:.1} tokens/Wh)"),
            None => String::new(),
        }
    );
    hardware_table(g, l, out);
    Ok(())
}

/// The hardware constants behind the floor with their ranges and sources, and the model's
/// bytes and FLOPs per token; closes the ladder's section.
fn hardware_table(g: &GapReport, l: &Ladder, out: &mut String) {
    let hw = g.hardware;
    let _ = write!(
        out,
        r#"<table><tr><th>hardware constant</th><th class="num">value</th><th class="num">range</th><th>source</th></tr>
<tr><td>memory bandwidth ({})</td><td class="num">{} GB/s</td><td class="num">{} – {}</td><td>{}</td></tr>
<tr><td>memory energy</td><td class="num">{} pJ/bit</td><td class="num">{} – {}</td><td>{}</td></tr>
<tr><td>compute energy</td><td class="num">{} pJ/FLOP</td><td class="num">{} – {}</td><td>{} ({})</td></tr></table>
<p class="lead">Model: {:.1} MB of weights read per decode step, {:.1} kB of f16 KV cache per cached position, {:.0} positions per row on average; {:.3e} FLOPs per token.</p></section>
"#,
        esc(&hw.memory),
        hw.memory_bandwidth_gb_s.value,
        hw.memory_bandwidth_gb_s.low,
        hw.memory_bandwidth_gb_s.high,
        esc(&hw.memory_bandwidth_gb_s.source),
        hw.memory_pj_per_bit.value,
        hw.memory_pj_per_bit.low,
        hw.memory_pj_per_bit.high,
        esc(&hw.memory_pj_per_bit.source),
        hw.compute_pj_per_flop.value,
        hw.compute_pj_per_flop.low,
        hw.compute_pj_per_flop.high,
        esc(&hw.compute_pj_per_flop.source),
        esc(&hw.compute_note),
        g.shape.weight_bytes_per_step as f64 / 1e6,
        g.shape.kv_bytes_per_position() / 1e3,
        l.floor.context,
        l.floor.flops_per_token,
    );
}

/// How far above the floor and above Landauer, and the floor's tokens/Wh.
pub(super) fn ladder_cards(out: &mut String, l: &Ladder) {
    card(
        out,
        fmt_opt(l.measured_over_floor, |v| format!("{v:.1}×")),
        "above the roofline floor",
    );
    card(
        out,
        format!("{:.3e}", l.min_tokens_per_wh),
        "tokens/Wh at the floor (theoretical minimum energy)",
    );
    card(
        out,
        fmt_opt(l.measured_over_landauer, |v| format!("{v:.2e}×")),
        "above k_B·T·ln 2 per bit",
    );
}

pub(super) fn footprint_cards(out: &mut String, g: &GapReport, j: Option<f64>, est: &str) {
    if let Some(j) = j {
        let m = g.footprint.per_million_tokens(j);
        card(
            out,
            format!("{:.3} kWh", m.kwh),
            &format!("per million tokens{est}"),
        );
        card(
            out,
            format!("{:.1} g CO2", m.gco2),
            &format!(
                "per million tokens at {} g/kWh",
                g.footprint.grid_gco2_per_kwh
            ),
        );
        card(
            out,
            format!("{:.4}", m.cost),
            &format!(
                "cost per million tokens at {}/kWh",
                g.footprint.price_per_kwh
            ),
        );
    }
}
