//! The report of a trace: the text shaded token by token (with a tooltip each), the
//! per-token figures, the ladder, and the run's settings and caveats.

use super::ladder::{footprint_cards, ladder_cards, ladder_section};
use super::page::{
    card, caveats_html, esc, figure, fmt_opt, page_foot, page_head, settings_table, utc, Figures,
};
use crate::charts;
use crate::ladder::GapReport;
use landauer_physics::floor::Ladder;
use landauer_trace::{TokenRecord, Trace};
use std::fmt::Write as _;

/// A token's text as shown (escaped; whitespace kept by the container's pre-wrap).
fn token_html(s: &str) -> String {
    esc(s).replace("&#10;", "\n")
}

/// An alternative's text for a tooltip: visible whitespace, quoted.
fn quoted(s: &str) -> String {
    format!("{:?}", s)
}

/// The shade of a token by its entropy: pale at 0 bits, deep red at `max` bits.
fn shade(bits: f64, max: f64) -> String {
    let x = if max > 0.0 {
        (bits / max).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let hue = 45.0 - 40.0 * x;
    let light = 97.0 - 39.0 * x;
    format!("hsl({hue:.0},90%,{light:.0}%)")
}

/// A token's tooltip: its numbers and the alternatives the model weighed.
fn tooltip(t: &TokenRecord) -> String {
    let mut s = format!(
        "token {} {}\nentropy {:.3} bits · surprisal {:.3} bits · p {:.4}\nenergy {}{}",
        t.index,
        quoted(&t.text),
        t.entropy_bits,
        t.surprisal_bits,
        t.prob,
        fmt_opt(t.energy_j, |j| format!("{:.3} mJ", j * 1e3)),
        if t.energy_estimated {
            " (ESTIMATED)"
        } else {
            ""
        }
    );
    if !t.top.is_empty() {
        s.push_str("\nalternatives:");
        for a in &t.top {
            let mark = if a.token_id == t.token_id { "▶" } else { " " };
            let _ = write!(s, "\n {mark} {:<18} {:.4}", quoted(&a.text), a.prob);
        }
    }
    s
}

/// The text, each token shaded by its entropy, one block per batch row.
fn text_section(t: &Trace, out: &mut String) {
    let max_bits = t
        .tokens
        .iter()
        .map(|x| x.entropy_bits)
        .fold(0.0f64, f64::max)
        .max(1.0);
    let batch = t.run.batch.max(1);
    let prompts: Vec<&str> = if batch > 1 {
        t.run.prompt.lines().collect()
    } else {
        vec![t.run.prompt.as_str()]
    };
    const MAX_ROWS: usize = 16;
    let _ = write!(
        out,
        r#"<section id="text"><h2>The text</h2><p class="lead">Each generated token is shaded by the entropy of the distribution it was drawn from (how unsure the model was); hover over a token for its entropy, surprisal, energy and the alternatives the model weighed.</p>
<div class="legend">0 bits<span class="bar"></span>{max_bits:.1} bits</div>"#
    );
    for seq in 0..batch.min(MAX_ROWS) {
        if batch > 1 {
            let _ = write!(out, r#"<div class="row-label">row {seq}</div>"#);
        }
        out.push_str(r#"<div class="text">"#);
        if let Some(p) = prompts.get(seq) {
            let _ = write!(out, r#"<span class="prompt">{}</span>"#, token_html(p));
        }
        for tok in t.tokens.iter().filter(|x| x.seq == seq) {
            let _ = write!(
                out,
                r#"<span class="tok" style="background:{}" data-tip="{}">{}</span>"#,
                shade(tok.entropy_bits, max_bits),
                esc(&tooltip(tok)),
                token_html(&tok.text)
            );
        }
        out.push_str("</div>");
    }
    if batch > MAX_ROWS {
        let _ = write!(
            out,
            r#"<p class="lead">{} more rows are in the trace.</p>"#,
            batch - MAX_ROWS
        );
    }
    out.push_str("</section>\n");
}

/// The report of a trace: summary, text, per-token figures, ladder, settings and caveats.
pub(super) fn trace_report(
    t: &Trace,
    g: &GapReport,
    galton_steps: usize,
    figs: &mut Figures,
) -> anyhow::Result<String> {
    let run = &t.run;
    let mut out = String::new();
    page_head(
        &mut out,
        &format!("landauer report: {}", run.model),
        &format!(
            "{} {} on {} · {} tokens · {}",
            run.model,
            run.quantization,
            run.device_name.as_deref().unwrap_or(&run.device),
            t.tokens.len(),
            utc(run.started_unix_s)
        ),
        &[
            ("summary", "summary"),
            ("text", "text"),
            ("sequence", "per token"),
            ("bits", "bits per token"),
            ("cumulative", "joules vs bits"),
            ("galton", "Galton board"),
            ("ladder", "ladder"),
            ("settings", "settings & caveats"),
        ],
    );
    summary_section(t, g, &mut out);
    text_section(t, &mut out);
    token_figures(t, galton_steps, figs, &mut out)?;
    ladder_section(g, figs, &mut out)?;
    settings_section(t, &g.ladders[0].ladder, &mut out);
    page_foot(&mut out);
    Ok(out)
}

/// The summary: cards of tokens, energy, speed, bits, the ladder and the footprint.
fn summary_section(t: &Trace, g: &GapReport, out: &mut String) {
    let s = t.summary.as_ref();
    let est = if t.run.estimated { " (ESTIMATED)" } else { "" };
    out.push_str(r#"<section id="summary"><h2>Summary</h2><div class="cards">"#);
    let n = t.tokens.len().max(1) as f64;
    let mean = |f: fn(&TokenRecord) -> f64| t.tokens.iter().map(f).sum::<f64>() / n;
    card(out, format!("{}", t.tokens.len()), "tokens generated");
    let jpt = s
        .and_then(|s| s.joules_per_token)
        .or(g.ladders[0]
            .ladder
            .rungs
            .iter()
            .find(|r| r.name == landauer_physics::floor::RUNG_MEASURED)
            .map(|r| r.j_per_token))
        .filter(|_| t.tokens.iter().any(|x| x.energy_j.is_some()));
    card(
        out,
        fmt_opt(jpt, |j| format!("{j:.4} J")),
        &format!("per token{est}"),
    );
    card(
        out,
        fmt_opt(jpt.filter(|&j| j > 0.0), |j| format!("{:.0}", 3600.0 / j)),
        &format!("tokens per Wh{est}"),
    );
    card(
        out,
        fmt_opt(s.and_then(|s| s.decode_tokens_per_s), |v| format!("{v:.1}")),
        "decode tokens/s",
    );
    card(
        out,
        format!("{:.3}", mean(|x| x.entropy_bits)),
        "bits/token (mean entropy)",
    );
    card(
        out,
        format!("{:.3}", mean(|x| x.surprisal_bits)),
        "bits/token (mean surprisal)",
    );
    let l = &g.ladders[0].ladder;
    ladder_cards(out, l);
    footprint_cards(out, g, jpt, est);
    let _ = writeln!(
        out,
        r#"</div><p class="lead">Money and carbon at {}.</p></section>"#,
        esc(&g.footprint.describe())
    );
}

/// The per-token figures: sequence, bits, cumulative, Galton board.
fn token_figures(
    t: &Trace,
    galton_steps: usize,
    figs: &mut Figures,
    out: &mut String,
) -> anyhow::Result<()> {
    let run = &t.run;
    // The per-token figures follow one sequence: row 0 of a batch.
    let row0: Vec<TokenRecord> = t.tokens.iter().filter(|x| x.seq == 0).cloned().collect();
    let which = if run.batch > 1 {
        format!(" (row 0 of {})", run.batch)
    } else {
        String::new()
    };
    let svg = figs.add("sequence", charts::sequence_svg(&row0)?);
    figure(
        out,
        "sequence",
        &format!("Entropy, surprisal and energy along the sequence{which}"),
        "Entropy: how spread the model's distribution was (bits). Surprisal: how unlikely the token it took was under it. Energy: the meter's energy attributed to each token.",
        &svg,
        if t.tokens.iter().any(|x| !x.energy_resolved) {
            "Tokens shorter than one counter update get a time-proportional share of that update's energy, not a measurement of their own."
        } else {
            ""
        },
    );
    let svg = figs.add("bits", charts::bits_histogram_svg(&t.tokens)?);
    figure(
        out,
        "bits",
        "The distribution of bits per token",
        "How many tokens carried how many bits: a calibrated model's mean surprisal on its own samples converges to its mean entropy.",
        &svg,
        "",
    );
    let svg = figs.add(
        "cumulative",
        charts::cumulative_svg(&row0, run.landauer_j_per_bit)?,
    );
    figure(
        out,
        "cumulative",
        &format!("Cumulative joules against cumulative bits{which}"),
        &format!(
            "The run's energy as its bits accumulate, beside the Landauer line at {} K ({:.3e} J per bit). Landauer bounds the erasure of a bit; sampling does not erase the token's entropy, so the line is a yardstick, not a bound.",
            run.kelvin, run.landauer_j_per_bit
        ),
        &svg,
        "",
    );
    let svg = figs.add("galton", charts::galton_svg(&row0, galton_steps)?);
    figure(
        out,
        "galton",
        &format!("The Galton board{which}"),
        &format!(
            "At each step (left to right) the model's {} most likely tokens are pegs, larger for likelier; the line is the path the sampler took through them (\"other\": a token outside the recorded alternatives). First {} steps.",
            run.top_n,
            galton_steps.min(row0.len())
        ),
        &svg,
        "",
    );
    Ok(())
}

/// The settings of the run, its meter, and the caveats of the run and of its ladder.
fn settings_section(t: &Trace, l: &Ladder, out: &mut String) {
    let s = t.summary.as_ref();
    out.push_str(r#"<section id="settings"><h2>Settings, meter and caveats</h2>"#);
    settings_table(out, &settings(t));
    let mut caveats: Vec<String> = s.map(|s| s.caveats.clone()).unwrap_or_default();
    if s.is_none() {
        caveats.push("the trace has no summary line (the run was interrupted): figures come from its token records".into());
    }
    caveats.extend(l.caveats.iter().cloned());
    caveats_html(out, &caveats);
    out.push_str("</section>\n");
}

/// The run's settings as (name, value) rows: model, device, meter, sampling, prompt, ...
fn settings(t: &Trace) -> Vec<(&'static str, String)> {
    let run = &t.run;
    let s = t.summary.as_ref();
    let sm = &run.sampling;
    let mut rows: Vec<(&str, String)> = vec![
        ("model", format!("{} ({})", run.model, run.model_path)),
        ("sha256", run.model_sha256.clone()),
        (
            "architecture",
            format!(
                "{}, {}, {:.1}M parameters{}",
                run.architecture,
                run.quantization,
                run.parameters as f64 / 1e6,
                if run.synthetic {
                    " — SYNTHETIC (random weights)"
                } else {
                    ""
                }
            ),
        ),
        (
            "device",
            format!(
                "{}{} · {} thread(s)",
                run.device,
                run.device_name
                    .as_ref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default(),
                run.threads
            ),
        ),
        (
            "meter",
            format!("{}: {}", run.meter, run.meter_description),
        ),
        ("meter chosen", run.meter_reason.clone()),
        (
            "resolution",
            format!(
                "counter updates every {} ms (probed before the run; {} ms over the run), polled every {} ms",
                fmt_opt(run.meter_resolution_s, |v| format!("{:.1}", v * 1e3)),
                fmt_opt(s.and_then(|s| s.meter_resolution_s), |v| format!("{:.1}", v * 1e3)),
                fmt_opt(run.meter_interval_s, |v| format!("{:.1}", v * 1e3)),
            ),
        ),
        (
            "idle",
            if run.idle_seconds > 0.0 {
                format!(
                    "{} W over {} s before the run",
                    fmt_opt(run.idle_power_w, |v| format!("{v:.2}")),
                    run.idle_seconds
                )
            } else {
                "not measured (no active energy)".into()
            },
        ),
        (
            "sampling",
            format!(
                "temperature {}, top-k {}, top-p {}, seed {}{}",
                sm.temperature,
                sm.top_k.map_or("off".into(), |k| k.to_string()),
                sm.top_p.map_or("off".into(), |p| p.to_string()),
                sm.seed,
                if sm.greedy { " (greedy)" } else { "" }
            ),
        ),
        (
            "prompt",
            format!(
                "{} tokens{}{}",
                run.prompt_tokens,
                if run.chat { ", chat template" } else { "" },
                if run.batch > 1 {
                    format!(", {} rows decoded as one batch", run.batch)
                } else {
                    String::new()
                }
            ),
        ),
        (
            "yardstick",
            format!(
                "k_B·T·ln 2 at {} K = {:.4e} J/bit",
                run.kelvin, run.landauer_j_per_bit
            ),
        ),
        ("trace", t.path.display().to_string()),
    ];
    if let Some(s) = s {
        rows.push(("steady state", s.steady_note.clone()));
        rows.push((
            "stop",
            format!(
                "{} after {} tokens, {:.2} s",
                s.stop_reason, s.tokens, s.wall_s
            ),
        ));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shades_run_from_pale_to_red() {
        assert_eq!(shade(0.0, 4.0), "hsl(45,90%,97%)");
        assert_eq!(shade(4.0, 4.0), "hsl(5,90%,58%)");
        assert_eq!(shade(9.0, 4.0), shade(4.0, 4.0));
        assert_eq!(shade(1.0, 0.0), shade(0.0, 1.0));
    }
}
